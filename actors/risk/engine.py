"""Pre-trade risk: every order is checked here before it reaches execution.

:meth:`RiskEngine.check` returns ``None`` (approved) or an :class:`OrderDenied` with a stable
:class:`DenyReason` code and a detail naming the values. The checks run in this order and the
first failure wins (``docs/risk.md`` has the table):

1. trading state: ``HALTED`` denies everything, ``REDUCING`` only lets exposure-reducing orders
   through;
2. the order itself: client order id not still working, known enums, instrument known,
   quantity a whole number of lots within ``[min_qty_lots, max_qty_lots]``, a limit price a
   whole number of ticks > 0;
3. data freshness: symbol not quarantined (by the book or the operator), book present and
   not older than ``max_book_age_ms``, the order's features and model output not older than
   ``max_feature_age_ms`` / ``max_signal_age_ms``;
4. ``reduce_only`` orders must reduce;
5. fat-finger band: a limit price (or the deepest level a market order would sweep) within
   ``price_band_bps`` of the microprice;
6. notional (limit price, or the levels a market order sweeps) within
   ``[min_notional, max_notional_per_order]``;
7. worst-case position ``|position + working same-side lots + order| <= max_position_lots``;
8. open orders per symbol and overall;
9. self-trade prevention: no crossing one of our own working orders;
10. portfolio caps on the worst-case post-trade exposure: gross, net, concentration (symbol
    exposure / equity), then VaR and ES (``actors/risk/monitor.py``), each applied only to
    orders that would raise the measure (a reducing order is never blocked by them);
11. token buckets: per symbol, global, and the message budget (submits and cancels); only an
    approved order spends tokens.

*Worst case* means every working order fills: per symbol the long extreme is
``position + working buys`` and the short extreme ``position - working sells``, valued at the
last mark (the book's mid for the order's own symbol).

Kill switches: the engine keeps its own :class:`Portfolio` from the fills it is told of
(:meth:`on_event`) and marks it to mid (:meth:`on_marks`). When PnL since 00:00 UTC (or the last
re-arm) falls to ``-daily_loss_limit``, or equity falls ``max_drawdown`` below its high-water
mark, the state becomes ``HALTED`` (one :class:`TradingStateChanged` naming the values). Only an
authenticated :meth:`rearm` brings it back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from actors.core.clock import Clock
from actors.core.instruments import Instrument
from actors.core.messages import (
    CancelOrder,
    Message,
    ModifyOrder,
    OrderCanceled,
    OrderDenied,
    OrderError,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderType,
    RiskAlert,
    SubmitOrder,
    TimeInForce,
    TradingStateChanged,
)
from actors.core.views import BookView
from actors.execution.engine import (
    ERR_DUPLICATE_CLIENT_ORDER_ID,
    ERR_INVALID_COMMAND,
    ERR_SYMBOL_MISMATCH,
    ERR_UNKNOWN_COMMAND,
)
from actors.execution.portfolio import Portfolio, Position
from actors.risk.killswitch import (  # noqa: F401 - re-exported: the engine's public API
    REASON_DAILY_LOSS_LIMIT,
    REASON_MAX_DRAWDOWN,
    REASON_REARMED,
    KillSwitch,
    RearmRefused,
)
from actors.risk.limits import (
    Bucket,
    DenyReason,
    SymbolRisk,
    TradingState,
    Working,
    reference,
    sweep,
)
from actors.risk.monitor import (
    DeltaNormalVar,
    ReturnHistory,
    StressScenario,
    normal_var_es_factors,
    risk_report,
)
from actors.risk.persistence import RiskPersistence

if TYPE_CHECKING:
    from cluster.config import RiskConfig


_HALTED, _REDUCING = TradingState.HALTED, TradingState.REDUCING
_BUY, _SELL, _LIMIT, _MARKET = OrderSide.BUY, OrderSide.SELL, OrderType.LIMIT, OrderType.MARKET


ALERT_CORRELATION = "CORRELATION_HIGH"
FLATTEN_PREFIX = "FLATTEN-"
_SIGN = {"BUY": 1, "SELL": -1}
_TYPES = frozenset(t.value for t in OrderType)
_TIFS = frozenset(t.value for t in TimeInForce)
# execution's OrderError reasons for a submit it refused outright: the order never worked
_EXEC_NEVER_OPENED = frozenset(
    {ERR_DUPLICATE_CLIENT_ORDER_ID, ERR_INVALID_COMMAND, ERR_UNKNOWN_COMMAND, ERR_SYMBOL_MISMATCH}
)


def _whole(x: Any) -> bool:
    """A whole number of ticks or lots: an int (numpy's too), never a bool or a float."""
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _denied(
    client_order_id: str, symbol: str, verdict: tuple[DenyReason, str] | None, now: int
) -> OrderDenied | None:
    """The :class:`OrderDenied` of a verdict (``None`` for an approval)."""
    if verdict is None:
        return None
    return OrderDenied(ts_event=now, ts_init=now, client_order_id=client_order_id,
                       symbol=symbol, reason=verdict[0].value, detail=verdict[1])


class RiskEngine(RiskPersistence):
    """Pre-trade checks, portfolio limits, and the kill switches.

    Args:
        config: ``RiskConfig``.
        instruments: Instruments by symbol (their order fixes the VaR vector's order).
        clock: The injected clock (ages, token buckets, sampling, day boundaries, events).
        rearm_secret: The secret :meth:`rearm` requires (the risk actor reads it from the
            environment variable ``config.rearm_token_env``); ``None`` refuses every re-arm.

    Example:
        >>> risk = RiskEngine(RiskConfig(), {"BTCUSDT": btc}, SimClock(0), "s3")  # doctest: +SKIP
        >>> risk.check(submit, view) is None                                    # doctest: +SKIP
        True
    """

    def __init__(
        self,
        config: RiskConfig,
        instruments: Mapping[str, Instrument],
        clock: Clock,
        rearm_secret: str | None = None,
    ) -> None:
        self._cfg = config
        self._instruments = dict(instruments)
        self._clock = clock
        self._syms = {
            s: SymbolRisk(s, inst, i, config)
            for i, (s, inst) in enumerate(self._instruments.items())
        }
        self._order = list(self._syms.values())
        self._max_book_age = config.max_book_age_ms * 1e6
        self._max_feature_age = config.max_feature_age_ms * 1e6
        self._max_signal_age = config.max_signal_age_ms * 1e6
        self._max_gross = float(config.max_gross_exposure)
        self._max_net = float(config.max_net_exposure)
        self._max_conc = float(config.max_concentration)
        self._max_open_all = int(config.max_open_orders)
        self._stp = bool(config.self_trade_prevention)
        self._equity = float(config.capital)  # capital + total PnL, refreshed on fills and marks
        self._global = Bucket(config.max_orders_per_s_global, config.order_burst_global)
        self._messages = Bucket(config.max_messages_per_s, config.message_burst)
        self._working: dict[str, Working] = {}
        self._portfolio = Portfolio()
        self._alerts: list[RiskAlert] = []
        self.counters: dict[str, int] = {"var_warmup_checks": 0}
        self._kill = KillSwitch(config, rearm_secret, self.counters, self._alerts)
        # exposure totals over symbols (worst case), refreshed incrementally and on marks
        self._gross = 0.0
        self._sum_hi = 0.0
        self._sum_lo = 0.0
        # VaR / ES of the worst-case exposures
        vcfg = config.var
        self._var_on = vcfg.var_limit is not None or vcfg.es_limit is not None
        self._var_normal = vcfg.method == "normal"
        self._var_limit = math.inf if vcfg.var_limit is None else float(vcfg.var_limit)
        self._es_limit = math.inf if vcfg.es_limit is None else float(vcfg.es_limit)
        self._z, self._es_factor = normal_var_es_factors(vcfg.alpha)
        sample_ns = int(vcfg.sample_ms * 1e6)
        self._h_samples = max(1.0, vcfg.horizon_s * 1e9 / sample_ns)
        self._history = ReturnHistory(list(self._syms), sample_ns, vcfg.window)
        self._dn = DeltaNormalVar(len(self._syms))
        self._hist_pnl: np.ndarray | None = None  # historical: scenario P&L of the exposures
        self._hist_r: np.ndarray | None = None
        self._last_report_ns: int | None = None

    # --- queries ------------------------------------------------------------------------------
    @property
    def state(self) -> TradingState:
        """The trading state."""
        return self._kill.state

    @property
    def portfolio(self) -> Portfolio:
        """Risk's own portfolio, built from the fills passed to :meth:`on_event`."""
        return self._portfolio

    @property
    def history(self) -> ReturnHistory:
        """The sampled returns behind the VaR limit and the report."""
        return self._history

    def positions(self) -> dict[str, Position]:
        """Return copies of the positions risk knows of, by symbol."""
        return self._portfolio.positions()

    def working_lots(self, symbol: str, side: OrderSide) -> int:
        """Lots of approved, not yet filled or closed orders on ``symbol`` and ``side``."""
        s = self._syms.get(symbol)
        if s is None:
            return 0
        return s.buy_lots if _SIGN[side] > 0 else s.sell_lots

    def open_orders(self, symbol: str | None = None) -> int:
        """Working orders on ``symbol`` (all symbols when ``None``)."""
        if symbol is None:
            return len(self._working)
        s = self._syms[symbol]
        return len(s.buys) + len(s.sells)

    def pnl(self) -> float:
        """PnL the daily loss limit counts: since 00:00 UTC or the last re-arm, whichever is
        later (``realised - fees + unrealised``)."""
        return self._portfolio.total_pnl() - self._kill.day_baseline

    def equity(self) -> float:
        """``capital + realised - fees + unrealised`` (since start)."""
        return self._cfg.capital + self._portfolio.total_pnl()

    def drawdown(self) -> float:
        """Fall of equity from its high-water mark (since start or the last re-arm)."""
        return self._kill.hwm - self.equity()

    def exposure(self) -> dict[str, float]:
        """Worst-case gross and net exposure (quote) over every symbol, at the last marks."""
        return {"gross": self._gross, "net": max(self._sum_hi, -self._sum_lo)}

    def var_es(self) -> tuple[float, float] | None:
        """Pre-trade VaR and ES of the current worst-case exposures (``None`` while warming
        up or with the limits off)."""
        if not self._var_on or self._history.n_returns < self._cfg.var.min_returns:
            return None
        if self._var_normal:
            return self._dn.current(self._z, self._es_factor)
        return self._hist_var_es(None, 0.0)

    # --- the check ----------------------------------------------------------------------------
    def check(self, cmd: SubmitOrder, book: BookView | None) -> OrderDenied | None:
        """Check one order; approve it (``None``) or deny it.

        An approved order spends rate tokens and counts as working (towards the position,
        open-order, exposure and VaR limits) until :meth:`on_event` sees it filled, canceled,
        rejected or expired.

        Args:
            cmd: The order.
            book: The latest view of the order's symbol, or ``None`` if there is none.

        Returns:
            ``None`` if approved, else an :class:`OrderDenied` with a :class:`DenyReason`.
        """
        now = self._clock.now_ns()
        return _denied(cmd.client_order_id, cmd.symbol, self._verdict(cmd, book, now), now)

    def check_batch(
        self, cmds: Sequence[SubmitOrder], views: Mapping[str, BookView]
    ) -> list[OrderDenied | None]:
        """:meth:`check` every order in turn (each sees the ones approved before it)."""
        get, verdict, now = views.get, self._verdict, self._clock.now_ns()
        out: list[OrderDenied | None] = []
        for c in cmds:
            v = verdict(c, get(c.symbol), now)
            out.append(None if v is None else _denied(c.client_order_id, c.symbol, v, now))
        return out

    def _verdict(  # noqa: C901, PLR0911, PLR0912 - one flat list of checks, in order
        self, cmd: SubmitOrder, book: BookView | None, now: int
    ) -> tuple[DenyReason, str] | None:
        state = self._kill.state
        if state is _HALTED:
            return DenyReason.TRADING_HALTED, f"trading halted ({self._kill.reason})"
        coid = cmd.client_order_id
        if coid in self._working:
            return DenyReason.DUPLICATE_CLIENT_ORDER_ID, (
                f"client_order_id {coid!r} is still working"
            )
        # identity first: Enum.__hash__ is a Python call, too slow for the hot path
        side, otype, tif = cmd.side, cmd.order_type, cmd.tif
        sign = 1 if side is _BUY else -1 if side is _SELL else _SIGN.get(side)
        if (
            sign is None
            or (type(otype) is not OrderType and otype not in _TYPES)
            or (type(tif) is not TimeInForce and tif not in _TIFS)
        ):
            return DenyReason.INVALID_ORDER, (
                f"side, order_type and tif must be known values, were "
                f"{cmd.side!r}, {cmd.order_type!r}, {cmd.tif!r}"
            )
        s = self._syms.get(cmd.symbol)
        if s is None:
            return DenyReason.INSTRUMENT_UNKNOWN, f"symbol {cmd.symbol!r} not configured"
        qty = cmd.qty_lots
        if type(qty) is not int and not _whole(qty):
            return DenyReason.QTY_PRECISION, (
                f"qty_lots must be a whole number of lots (lot_size {s.inst.lot_size}), "
                f"was {qty!r}"
            )
        if qty <= 0:
            return DenyReason.QTY_NOT_POSITIVE, f"qty_lots must be > 0, was {qty}"
        if qty < s.min_qty:
            return DenyReason.QTY_BELOW_MIN, f"qty_lots must be >= {s.min_qty}, was {qty}"
        if qty > s.max_qty:
            return DenyReason.QTY_ABOVE_MAX, f"qty_lots must be <= {s.max_qty}, was {qty}"
        is_limit = otype is _LIMIT or otype == "LIMIT"
        # a stop waits off the book for its trigger; a stop-limit then rests at its price
        is_stop = not is_limit and otype is not _MARKET and otype != "MARKET"
        has_price = is_limit or (is_stop and otype == "STOP_LIMIT")
        price = cmd.price_ticks
        if is_stop:
            trig = cmd.trigger_price_ticks
            if type(trig) is not int and not _whole(trig):
                return DenyReason.PRICE_PRECISION, (
                    f"trigger_price_ticks must be a whole number of ticks (tick_size "
                    f"{s.inst.tick_size}), was {trig!r}"
                )
            if trig <= 0:
                return DenyReason.PRICE_NOT_POSITIVE, (
                    f"trigger_price_ticks must be > 0, was {trig}"
                )
        if has_price:
            if type(price) is not int and not _whole(price):
                return DenyReason.PRICE_PRECISION, (
                    f"price_ticks must be a whole number of ticks (tick_size "
                    f"{s.inst.tick_size}), was {price!r}"
                )
            if price <= 0:
                return DenyReason.PRICE_NOT_POSITIVE, f"price_ticks must be > 0, was {price}"
        if s.operator_quarantine:
            return DenyReason.SYMBOL_QUARANTINED, f"{s.symbol} quarantined by the operator"
        if book is None or book.symbol != s.symbol:
            return DenyReason.BOOK_MISSING, f"no book for {s.symbol}"
        if book.quarantined:
            return DenyReason.SYMBOL_QUARANTINED, f"book of {s.symbol} quarantined"
        age = now - book.ts_init
        if age > self._max_book_age:
            return DenyReason.BOOK_STALE, (
                f"book age {age / 1e6} ms > max {self._max_book_age / 1e6} ms"
            )
        fts = cmd.features_ts_ns
        if fts and now - fts > self._max_feature_age:
            return DenyReason.FEATURES_STALE, (
                f"feature age {(now - fts) / 1e6} ms > max {self._max_feature_age / 1e6} ms"
            )
        sts = cmd.signal_ts_ns
        if sts and now - sts > self._max_signal_age:
            return DenyReason.SIGNAL_STALE, (
                f"model output age {(now - sts) / 1e6} ms > max {self._max_signal_age / 1e6} ms"
            )

        pos = s.pos
        same = s.buy_lots if sign > 0 else s.sell_lots
        reducing = pos != 0 and (pos > 0) != (sign > 0) and same + qty <= abs(pos)
        if state is _REDUCING and not reducing:
            return DenyReason.TRADING_REDUCING, (
                f"only reducing orders: position {pos}, working {same}, order "
                f"{cmd.side} {qty}"
            )
        if cmd.reduce_only and not reducing:
            return DenyReason.REDUCE_ONLY_VIOLATION, (
                f"reduce_only order {cmd.side} {qty} would not reduce position {pos} "
                f"(working {same})"
            )

        bids, asks = book.bid_ticks, book.ask_ticks
        if bids and asks:  # microprice of the top level
            bs, as_ = book.bid_sizes[0], book.ask_sizes[0]
            b0, a0 = bids[0], asks[0]
            mid = (b0 + a0) / 2.0
            ref = (b0 * as_ + a0 * bs) / (bs + as_) if bs + as_ > 0 else mid
        else:
            ref = reference(book)
            if ref is None:
                return DenyReason.BOOK_MISSING, f"book of {s.symbol} is empty"
            mid = ref
        if is_limit:
            assert price is not None
            far = price
            notional = price * qty * s.unit
        elif is_stop:
            # no band against today's microprice (a stop sits away from the market by design);
            # a stop-limit's price must sit within the band of its trigger; valued there
            far = price if has_price else trig
            ref = float(trig)
            notional = far * qty * s.unit
        else:
            if not (book.ask_ticks if sign > 0 else book.bid_ticks):
                return DenyReason.BOOK_MISSING, (
                    f"no {'ask' if sign > 0 else 'bid'} to price a market order"
                )
            acc, far = sweep(book, sign, s.lot, qty)
            notional = acc * s.unit
        dev = abs(far - ref) / ref
        if dev > s.band:
            what = "price" if is_limit else "stop price" if is_stop else "sweep price"
            return DenyReason.PRICE_OUTSIDE_BAND, (
                f"{what} {far} is {dev * 1e4:.1f} bps from "
                f"{'trigger' if is_stop else 'microprice'} {ref:.2f}, max {s.band * 1e4:g} bps"
            )
        if notional < s.min_notional:
            return DenyReason.NOTIONAL_BELOW_MIN, (
                f"notional {notional} < min {s.min_notional}"
            )
        if notional > s.max_notional:
            return DenyReason.NOTIONAL_EXCEEDS_MAX_PER_ORDER, (
                f"notional {notional} > max {s.max_notional}"
            )
        post = pos + sign * (same + qty)
        if (post if post >= 0 else -post) > s.max_pos:
            return DenyReason.POSITION_EXCEEDS_MAX, (
                f"position {abs(post)} > max {s.max_pos} (position {pos} + working "
                f"{sign * same} + order {sign * qty})"
            )
        n_open = len(s.buys) + len(s.sells)
        if n_open >= s.max_open:
            return DenyReason.OPEN_ORDERS_EXCEEDS_MAX, (
                f"open orders on {s.symbol} {n_open} + 1 > max {s.max_open}"
            )
        if len(self._working) >= self._max_open_all:
            return DenyReason.OPEN_ORDERS_EXCEEDS_MAX, (
                f"open orders {len(self._working)} + 1 > max {self._max_open_all}"
            )
        if self._stp and not is_stop and (s.sells if sign > 0 else s.buys):
            hit = self._self_trade(s, sign, price if is_limit else None)
            if hit is not None:
                return DenyReason.SELF_TRADE_PREVENTED, hit

        verdict = self._portfolio_verdict(s, sign, qty, mid)
        if verdict is not None:
            return verdict

        sb, gb, mb = s.bucket, self._global, self._messages
        if sb.last_ns != now:
            sb.refill(now)
        if gb.last_ns != now:
            gb.refill(now)
        if mb.last_ns != now:
            mb.refill(now)
        if sb.tokens < 1.0:
            return DenyReason.RATE_LIMIT_EXCEEDED, (
                f"{s.symbol} tokens {sb.tokens:.3f} < 1 (rate {sb.rate_per_ns * 1e9}/s, "
                f"burst {sb.burst:g})"
            )
        if gb.tokens < 1.0:
            return DenyReason.GLOBAL_RATE_LIMIT_EXCEEDED, (
                f"global tokens {gb.tokens:.3f} < 1 (rate {gb.rate_per_ns * 1e9}/s, "
                f"burst {gb.burst:g})"
            )
        if mb.tokens < 1.0:
            return DenyReason.MESSAGE_RATE_EXCEEDED, (
                f"message tokens {mb.tokens:.3f} < 1 (rate {mb.rate_per_ns * 1e9}/s, "
                f"burst {mb.burst:g})"
            )
        # approved
        sb.tokens -= 1.0
        gb.tokens -= 1.0
        mb.tokens -= 1.0
        self._add_working(coid, s, sign, qty, price if has_price else None, mid, not is_stop,
                          otype, cmd.trigger_price_ticks if is_stop else None)
        return None

    def check_modify(self, cmd: ModifyOrder, book: BookView | None) -> OrderDenied | None:
        """Check an amend of a working order; approve it (``None``) or deny it.

        An amend that only lowers the quantity at the same price passes (it reduces risk) and
        spends a message token. Any other amend (more lots, a new price or trigger) is checked
        like the order it would become: the working order is taken out, the amended order runs
        every check of :meth:`check` (its rate budget included), and on a denial the original
        is put back unchanged. An order risk does not know is passed on (execution refuses it).

        Returns:
            ``None`` if approved, else an :class:`OrderDenied` naming the amend; the kernel
            records it as a ``RiskAlert MODIFY_DENIED``, as the order itself stays working.
        """
        now = self._clock.now_ns()
        w = self._working.get(cmd.client_order_id)
        if w is None:
            return None
        total = w.filled_lots + w.leaves_lots
        new_total = total if cmd.qty_lots is None else cmd.qty_lots
        same_price = cmd.price_ticks is None or cmd.price_ticks == w.price
        same_trigger = cmd.trigger_price_ticks is None or cmd.trigger_price_ticks == w.trigger
        if (type(new_total) is int and new_total <= total and same_price and same_trigger):
            cut = min(w.leaves_lots, max(0, total - new_total))
            w.leaves_lots -= cut
            if w.sign > 0:
                w.sym.buy_lots -= cut
            else:
                w.sym.sell_lots -= cut
            self._refresh(w.sym)
            self.on_message_sent()
            return None
        s = self._close_working(cmd.client_order_id)
        assert s is not None
        amended = SubmitOrder(
            ts_event=now, ts_init=now, client_order_id=cmd.client_order_id, symbol=s.symbol,
            side=_BUY if w.sign > 0 else _SELL, order_type=OrderType(w.otype),
            qty_lots=new_total - w.filled_lots if type(new_total) is int else new_total,
            price_ticks=w.price if cmd.price_ticks is None else cmd.price_ticks,
            trigger_price_ticks=w.trigger if cmd.trigger_price_ticks is None
            else cmd.trigger_price_ticks,
        )
        verdict = self._verdict(amended, book, now)
        if verdict is not None:  # put the original back, unchanged
            self._add_working(cmd.client_order_id, s, w.sign, w.leaves_lots, w.price, None,
                              w.rests, w.otype, w.trigger)
        self._working[cmd.client_order_id].filled_lots = w.filled_lots
        if verdict is None:
            return None
        return _denied(cmd.client_order_id, s.symbol, (verdict[0], f"amend: {verdict[1]}"), now)

    def _self_trade(self, s: SymbolRisk, sign: int, price: int | None) -> str | None:
        """Detail naming our working order this one could trade against, or ``None``."""
        other = s.sell_px if sign > 0 else s.buy_px
        side = "SELL" if sign > 0 else "BUY"
        mine = "MARKET" if price is None else price
        if other.market:
            return f"order @ {mine} could trade against our working market {side}"
        best = other.best()
        if best is None:
            return None
        if price is None or (best <= price if sign > 0 else best >= price):
            return f"order @ {mine} could trade against our working {side} @ {best}"
        return None

    def _portfolio_verdict(
        self, s: SymbolRisk, sign: int, qty: int, mid: float
    ) -> tuple[DenyReason, str] | None:
        """Gross, net, concentration, VaR and ES of the worst-case post-trade portfolio.

        Each limit applies only when the order raises its measure above the limit."""
        v = s.unit * mid
        old_hi = (s.pos + s.buy_lots) * v
        old_lo = (s.pos - s.sell_lots) * v
        if sign > 0:
            new_hi, new_lo = old_hi + qty * v, old_lo
        else:
            new_hi, new_lo = old_hi, old_lo - qty * v
        a, b = (old_hi if old_hi >= 0 else -old_hi), (old_lo if old_lo >= 0 else -old_lo)
        old_ex = a if a >= b else b
        a, b = (new_hi if new_hi >= 0 else -new_hi), (new_lo if new_lo >= 0 else -new_lo)
        new_ex = a if a >= b else b
        base = self._gross - s.ex
        gross = base + new_ex
        if gross > self._max_gross and new_ex > old_ex:
            return DenyReason.GROSS_EXPOSURE_EXCEEDS_MAX, (
                f"gross exposure {gross:.2f} > max {self._max_gross}"
            )
        hi_base, lo_base = self._sum_hi - s.hi, self._sum_lo - s.lo
        a, b = hi_base + new_hi, -(lo_base + new_lo)
        net = a if a >= b else b
        if net > self._max_net and net > max(hi_base + old_hi, -(lo_base + old_lo)):
            return DenyReason.NET_EXPOSURE_EXCEEDS_MAX, (
                f"net exposure {net:.2f} > max {self._max_net}"
            )
        if new_ex > old_ex:
            equity = self._equity
            if equity <= 0 or new_ex > self._max_conc * equity:
                return DenyReason.CONCENTRATION_EXCEEDS_MAX, (
                    f"{s.symbol} exposure {new_ex:.2f} > {self._max_conc} × equity "
                    f"{equity:.2f}"
                )
        if not self._var_on:
            return None
        cfg = self._cfg
        if self._history.n_returns < cfg.var.min_returns:
            self.counters["var_warmup_checks"] += 1
            return None
        new_x = new_hi if (new_hi if new_hi >= 0 else -new_hi) == new_ex else new_lo
        # the VaR vector holds s at its last mark; re-value s at this mid, then apply the order
        cur_x = s.hi if (s.hi if s.hi >= 0 else -s.hi) == s.ex else s.lo
        if self._var_normal:
            var1, es1 = self._dn.var_es_after(s.idx, new_x - cur_x, self._z, self._es_factor)
        else:
            var1, es1 = self._hist_var_es(s.idx, new_x - cur_x)
        over_var, over_es = var1 > self._var_limit, es1 > self._es_limit
        if not (over_var or over_es):
            return None
        # over a limit: deny unless the order lowers it (the pre-trade state, re-valued at mid)
        old_x = old_hi if abs(old_hi) >= abs(old_lo) else old_lo
        if self._var_normal:
            var0, es0 = self._dn.var_es_after(s.idx, old_x - cur_x, self._z, self._es_factor)
        else:
            var0, es0 = self._hist_var_es(s.idx, old_x - cur_x)
        if over_var and var1 > var0:
            return DenyReason.VAR_LIMIT_EXCEEDED, (
                f"post-trade VaR {var1:.2f} > limit {self._var_limit} "
                f"({cfg.var.method}, {cfg.var.alpha}, {cfg.var.horizon_s:g} s)"
            )
        if over_es and es1 > es0:
            return DenyReason.ES_LIMIT_EXCEEDED, (
                f"post-trade ES {es1:.2f} > limit {self._es_limit} "
                f"({cfg.var.method}, {cfg.var.alpha}, {cfg.var.horizon_s:g} s)"
            )
        return None

    def _hist_var_es(self, idx: int | None, dx: float) -> tuple[float, float]:
        """Historical VaR / ES of the worst-case exposures moved by ``dx`` in asset ``idx``."""
        pnl, r = self._hist_pnl, self._hist_r
        assert pnl is not None and r is not None
        if idx is not None and dx:
            pnl = pnl + dx * r[:, idx]
        losses = -pnl * math.sqrt(self._h_samples)
        n = losses.size
        k = max(1, int(math.ceil(n * (1.0 - self._cfg.var.alpha))))
        tail = np.partition(losses, n - k)[n - k:]
        var = float(tail.min())
        return max(var, 0.0), max(float(tail.mean()), var, 0.0)

    # --- working orders and exposure ------------------------------------------------------------
    def _add_working(
        self, coid: str, s: SymbolRisk, sign: int, qty: int, price: int | None,
        mid: float | None, rests: bool = True, otype: str = "LIMIT", trigger: int | None = None,
    ) -> None:
        self._working[coid] = Working(s, sign, qty, price, rests, 0, str(otype), trigger)
        if sign > 0:
            s.buys[coid] = price
            if rests:
                s.buy_px.add(price)
            s.buy_lots += qty
        else:
            s.sells[coid] = price
            if rests:
                s.sell_px.add(price)
            s.sell_lots += qty
        if s.mark is None and mid is not None:
            s.mark = mid
        self._refresh(s)

    def _fill_working(self, coid: str, lots: int) -> None:
        """Shrink a working order by a fill (an overfill only empties it)."""
        w = self._working.get(coid)
        if w is None:
            return
        take = min(lots, w.leaves_lots)
        w.leaves_lots -= take
        w.filled_lots += lots
        if w.sign > 0:
            w.sym.buy_lots -= take
        else:
            w.sym.sell_lots -= take
        if w.leaves_lots <= 0:
            self._close_working(coid)

    def _close_working(self, coid: str) -> SymbolRisk | None:
        """End a working order, releasing its leaves; return its symbol's state."""
        w = self._working.pop(coid, None)
        if w is None:
            return None
        s = w.sym
        if w.sign > 0:
            s.buy_lots -= w.leaves_lots
            del s.buys[coid]
            if w.rests:
                s.buy_px.remove(w.price)
        else:
            s.sell_lots -= w.leaves_lots
            del s.sells[coid]
            if w.rests:
                s.sell_px.remove(w.price)
        return s

    def _refresh(self, s: SymbolRisk) -> None:
        """Recompute one symbol's exposure extremes and move the totals and the VaR vector."""
        mark = s.mark
        if mark is None:
            return
        v = s.unit * mark
        hi = (s.pos + s.buy_lots) * v
        lo = (s.pos - s.sell_lots) * v
        ahi, alo = (hi if hi >= 0 else -hi), (lo if lo >= 0 else -lo)
        ex = ahi if ahi >= alo else alo
        old_hi, old_lo, old_ex = s.hi, s.lo, s.ex
        self._gross += ex - old_ex
        self._sum_hi += hi - old_hi
        self._sum_lo += lo - old_lo
        s.hi, s.lo, s.ex = hi, lo, ex
        if self._var_on:
            old_x = old_hi if (old_hi if old_hi >= 0 else -old_hi) == old_ex else old_lo
            new_x = hi if ahi >= alo else lo
            if new_x != old_x:
                self._dn.add_exposure(s.idx, new_x - old_x)
                if self._hist_pnl is not None and self._hist_r is not None:
                    self._hist_pnl += (new_x - old_x) * self._hist_r[:, s.idx]

    def _recompute_all(self) -> None:
        """Recompute every total from scratch (bounds floating drift; after marks and restore)."""
        self._gross = self._sum_hi = self._sum_lo = 0.0
        x = np.zeros(len(self._order))
        for s in self._order:
            if s.mark is None:
                s.hi = s.lo = s.ex = 0.0
                continue
            s.hi, s.lo = s.extremes(s.mark)
            s.ex = max(abs(s.hi), abs(s.lo))
            self._gross += s.ex
            self._sum_hi += s.hi
            self._sum_lo += s.lo
            x[s.idx] = s.hi if abs(s.hi) >= abs(s.lo) else s.lo
        if self._var_on:
            self._dn.set_exposures(x)
            if self._hist_r is not None:
                self._hist_pnl = self._hist_r @ x

    # --- feedback -----------------------------------------------------------------------------
    def on_event(self, ev: Message) -> list[TradingStateChanged]:
        """Learn of an execution event; return the kill switch's transition, if it tripped.

        Fills move the position and shrink the order's working quantity; cancels, rejects,
        expiries and denials end it, and so do execution's errors for a submit it refused
        outright (``DUPLICATE_CLIENT_ORDER_ID``, ...: the order never worked). Other messages
        are ignored.
        """
        if isinstance(ev, OrderFilled):
            s = self._syms.get(ev.symbol)
            if s is None:
                return []
            self._portfolio.apply_fill(ev, s.inst)
            s.pos += _SIGN[ev.side] * int(ev.last_qty_lots)
            self._fill_working(ev.client_order_id, int(ev.last_qty_lots))
            if s.mark is None:
                s.mark = float(ev.last_px_ticks)
                self._portfolio.mark(s.symbol, s.mark)
            self._refresh(s)
            return self._check_kill()
        closed = isinstance(ev, OrderCanceled | OrderRejected | OrderExpired | OrderDenied)
        never = isinstance(ev, OrderError) and ev.reason in _EXEC_NEVER_OPENED
        if closed or never:
            sym = self._close_working(ev.client_order_id)
            if sym is not None:
                self._refresh(sym)
        return []

    def release(self, client_order_id: str) -> None:
        """Forget an approved order that was never sent (a check-only caller's orders)."""
        sym = self._close_working(client_order_id)
        if sym is not None:
            self._refresh(sym)

    def on_message_sent(self, cmd: CancelOrder | ModifyOrder | None = None) -> None:
        """Spend a message token for a cancel or a risk-reducing amend (never denied)."""
        mb = self._messages
        if mb.refill(self._clock.now_ns()) >= 1.0:
            mb.tokens -= 1.0

    def on_marks(self, books: Mapping[str, BookView]) -> list[TradingStateChanged]:
        """Mark positions to the mid of each (non-quarantined) book, sample returns, and check
        the kill switches.

        Returns:
            ``[TradingStateChanged(state="HALTED", ...)]`` when a kill switch trips, else ``[]``.
        """
        mids: dict[str, float] = {}
        for symbol in sorted(books):
            book = books[symbol]
            s = self._syms.get(symbol)
            mid = book.mid_ticks
            if s is None or mid is None or book.quarantined:
                continue
            s.mark = mid
            self._portfolio.mark(symbol, mid)
            mids[symbol] = mid * float(s.inst.tick_size)
        now = self._clock.now_ns()
        if self._history.on_marks(now, mids) and self._var_on:
            self._refit()
        self._recompute_all()
        return self._check_kill()

    def _refit(self) -> None:
        """New return sample: refresh the covariance (normal) or the scenarios (historical)."""
        if self._history.n_returns < 2:
            return
        if self._var_normal:
            self._dn.set_covariance(self._history.covariance(), self._h_samples)
        else:
            self._hist_r = self._history.returns()

    # --- kill switches ------------------------------------------------------------------------
    def _check_kill(self) -> list[TradingStateChanged]:
        total = self._portfolio.total_pnl()
        self._equity = self._cfg.capital + total
        return self._kill.update(total, self._clock.now_ns())

    def flatten_orders(self, views: Mapping[str, BookView]) -> list[SubmitOrder]:
        """Reduce-only market orders closing every position not already being closed.

        They bypass the checks (risk itself sends them on a trip with ``flatten_on_halt``) and
        count as working like any approved order.
        """
        now = self._clock.now_ns()
        out: list[SubmitOrder] = []
        for s in self._order:
            closing = s.sell_lots if s.pos > 0 else s.buy_lots
            qty = abs(s.pos) - closing
            if s.pos == 0 or qty <= 0 or s.symbol not in views:
                continue
            sign = -1 if s.pos > 0 else 1
            self.counters["flatten_orders"] = self.counters.get("flatten_orders", 0) + 1
            coid = f"{FLATTEN_PREFIX}{s.symbol}-{self.counters['flatten_orders']}"
            cmd = SubmitOrder(
                ts_event=now, ts_init=now, client_order_id=coid, symbol=s.symbol,
                side=OrderSide.BUY if sign > 0 else OrderSide.SELL,
                order_type=OrderType.MARKET, qty_lots=qty, tif=TimeInForce.IOC,
                reduce_only=True, strategy_id="risk-flatten",
            )
            self._add_working(coid, s, sign, qty, None, views[s.symbol].mid_ticks)
            out.append(cmd)
        return out

    # --- operator controls --------------------------------------------------------------------
    def rearm(self, operator: str, token: str) -> TradingStateChanged:
        """Return to ``ACTIVE`` by deliberate, authenticated operator action (never automatic).

        The daily loss then counts from the PnL at re-arm, and the drawdown from the equity at
        re-arm, so the losses that halted trading do not trip it again at once.

        Args:
            operator: Who re-armed (recorded in the reason, ``"REARMED:{operator}"``).
            token: The re-arm secret.

        Raises:
            RearmRefused: Wrong or missing token, or no secret configured (counted, and a
                ``REARM_REFUSED`` :class:`RiskAlert` is queued for the journal).
            ValidationError: Empty operator, or trading already ``ACTIVE``.
        """
        return self._kill.rearm(
            operator, token, self._portfolio.total_pnl(), self._clock.now_ns()
        )

    def halt(self, reason: str) -> TradingStateChanged:
        """Halt trading by hand (recorded as ``"MANUAL:{reason}"``)."""
        return self._kill.set(TradingState.HALTED, f"MANUAL:{reason}", "", self._clock.now_ns())

    def reduce_only(self, reason: str) -> TradingStateChanged:
        """Let through only exposure-reducing orders until :meth:`rearm`."""
        return self._kill.set(
            TradingState.REDUCING, f"MANUAL:{reason}", "", self._clock.now_ns()
        )

    def drain_alerts(self) -> list[RiskAlert]:
        """Return and forget the alerts queued since the last call."""
        out = list(self._alerts)
        self._alerts.clear()  # in place: the kill switch queues into the same list
        return out

    # --- the periodic report ------------------------------------------------------------------
    def report_due(self) -> bool:
        """True when ``report.every_s`` has passed on the clock since the last report."""
        now = self._clock.now_ns()
        last = self._last_report_ns
        return last is None or now - last >= self._cfg.report.every_s * 1e9

    def risk_report(self) -> dict[str, Any]:
        """The portfolio-risk report of the held positions (``actors.risk.monitor.risk_report``)
        plus state, PnL, exposure and limits; correlation alerts are queued as
        :class:`RiskAlert`."""
        now = self._clock.now_ns()
        self._last_report_ns = now
        rc = self._cfg.report
        sample_s = self._cfg.var.sample_ms / 1e3
        scenarios = [StressScenario(n, dict(sh)) for n, sh in sorted(rc.scenarios.items())]
        exposures = {s.symbol: s.pos * s.unit * (s.mark or 0.0) for s in self._order}
        rep = risk_report(
            exposures,
            self._history,
            equity=self.equity(),
            alphas=list(rc.alphas),
            horizons=[max(1, round(h / sample_s)) for h in rc.horizons_s],
            scenarios=scenarios,
            mc_paths=rc.mc_paths,
            mc_dof=rc.mc_dof,
            correlation_threshold=rc.correlation_alert,
            min_returns=self._cfg.var.min_returns,
        )
        for a in rep.get("correlation_alerts", []):
            self._alerts.append(RiskAlert(
                ts_event=now, ts_init=now, code=ALERT_CORRELATION,
                detail=f"{a['a']}/{a['b']} rho {a['rho']:.3f} >= {rc.correlation_alert}",
            ))
        pre = self.var_es()
        rep.update({
            "ts_ns": now,
            "sample_s": sample_s,
            "state": self._kill.state.value,
            "pnl_today": self.pnl(),
            "equity": self.equity(),
            "drawdown": self.drawdown(),
            "worst_case_exposure": self.exposure(),
            "pre_trade_var_es": None if pre is None else {"var": pre[0], "es": pre[1]},
            "open_orders": len(self._working),
            "counters": dict(self.counters),
        })
        return rep
