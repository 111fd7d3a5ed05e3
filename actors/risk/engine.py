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

import hashlib
import hmac
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from actors.core.clock import Clock
from actors.core.errors import RaydeskError, ValidationError
from actors.core.instruments import Instrument
from actors.core.messages import (
    CancelOrder,
    Message,
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
from actors.risk.monitor import (
    DeltaNormalVar,
    ReturnHistory,
    StressScenario,
    normal_var_es_factors,
    risk_report,
)

if TYPE_CHECKING:
    from cluster.config import RiskConfig


class DenyReason(StrEnum):
    """Stable codes of :class:`OrderDenied`."""

    TRADING_HALTED = "TRADING_HALTED"
    TRADING_REDUCING = "TRADING_REDUCING"
    DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"
    INVALID_ORDER = "INVALID_ORDER"
    INSTRUMENT_UNKNOWN = "INSTRUMENT_UNKNOWN"
    QTY_PRECISION = "QTY_PRECISION"
    QTY_NOT_POSITIVE = "QTY_NOT_POSITIVE"
    QTY_BELOW_MIN = "QTY_BELOW_MIN"
    QTY_ABOVE_MAX = "QTY_ABOVE_MAX"
    PRICE_PRECISION = "PRICE_PRECISION"
    PRICE_NOT_POSITIVE = "PRICE_NOT_POSITIVE"
    SYMBOL_QUARANTINED = "SYMBOL_QUARANTINED"
    BOOK_MISSING = "BOOK_MISSING"
    BOOK_STALE = "BOOK_STALE"
    FEATURES_STALE = "FEATURES_STALE"
    SIGNAL_STALE = "SIGNAL_STALE"
    REDUCE_ONLY_VIOLATION = "REDUCE_ONLY_VIOLATION"
    PRICE_OUTSIDE_BAND = "PRICE_OUTSIDE_BAND"
    NOTIONAL_BELOW_MIN = "NOTIONAL_BELOW_MIN"
    NOTIONAL_EXCEEDS_MAX_PER_ORDER = "NOTIONAL_EXCEEDS_MAX_PER_ORDER"
    POSITION_EXCEEDS_MAX = "POSITION_EXCEEDS_MAX"
    OPEN_ORDERS_EXCEEDS_MAX = "OPEN_ORDERS_EXCEEDS_MAX"
    SELF_TRADE_PREVENTED = "SELF_TRADE_PREVENTED"
    GROSS_EXPOSURE_EXCEEDS_MAX = "GROSS_EXPOSURE_EXCEEDS_MAX"
    NET_EXPOSURE_EXCEEDS_MAX = "NET_EXPOSURE_EXCEEDS_MAX"
    CONCENTRATION_EXCEEDS_MAX = "CONCENTRATION_EXCEEDS_MAX"
    VAR_LIMIT_EXCEEDED = "VAR_LIMIT_EXCEEDED"
    ES_LIMIT_EXCEEDED = "ES_LIMIT_EXCEEDED"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    GLOBAL_RATE_LIMIT_EXCEEDED = "GLOBAL_RATE_LIMIT_EXCEEDED"
    MESSAGE_RATE_EXCEEDED = "MESSAGE_RATE_EXCEEDED"


class TradingState(StrEnum):
    """``ACTIVE``: all checks apply. ``REDUCING``: only exposure-reducing orders. ``HALTED``:
    nothing."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class RearmRefused(RaydeskError, PermissionError):
    """A re-arm without the right token (or with none configured): refused, counted, recorded."""


REASON_DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
REASON_MAX_DRAWDOWN = "MAX_DRAWDOWN"
REASON_REARMED = "REARMED"
ALERT_REARM_REFUSED = "REARM_REFUSED"
ALERT_CORRELATION = "CORRELATION_HIGH"
FLATTEN_PREFIX = "FLATTEN-"
DAY_NS = 86_400 * 1_000_000_000
_SIGN = {"BUY": 1, "SELL": -1}
_TYPES = frozenset(t.value for t in OrderType)
_TIFS = frozenset(t.value for t in TimeInForce)
# execution's OrderError reasons for a submit it refused outright: the order never worked
_EXEC_NEVER_OPENED = frozenset(
    {ERR_DUPLICATE_CLIENT_ORDER_ID, ERR_INVALID_COMMAND, ERR_UNKNOWN_COMMAND, ERR_SYMBOL_MISMATCH}
)


class _Bucket:
    """Token bucket: ``rate`` tokens per second up to ``burst``."""

    __slots__ = ("tokens", "last_ns", "rate_per_ns", "burst")

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.tokens = float(burst)
        self.last_ns: int | None = None
        self.rate_per_ns = rate_per_s / 1e9
        self.burst = float(burst)

    def refill(self, now: int) -> float:
        last = self.last_ns
        if last is None:
            self.last_ns = now
        elif now > last:
            t = self.tokens + (now - last) * self.rate_per_ns
            self.tokens = t if t < self.burst else self.burst
            self.last_ns = now
        return self.tokens


class _Sym:
    """Everything risk keeps per symbol: limits, working orders, position, exposure cache."""

    __slots__ = (
        "symbol", "inst", "idx", "unit", "max_pos", "max_notional", "min_notional", "min_qty",
        "max_qty", "band", "max_open", "bucket", "operator_quarantine", "pos", "buy_lots",
        "sell_lots", "buys", "sells", "buy_px", "sell_px", "mark", "hi", "lo", "ex",
    )

    def __init__(self, symbol: str, inst: Instrument, idx: int, cfg: RiskConfig) -> None:
        o = cfg.symbols.get(symbol)

        def lim(name: str) -> Any:
            v = getattr(o, name) if o is not None else None
            return getattr(cfg, name) if v is None else v

        self.symbol = symbol
        self.inst = inst
        self.idx = idx
        self.unit = float(inst.lot_size) * float(inst.tick_size)  # quote per lot per tick
        self.max_pos = int(lim("max_position_lots"))
        self.max_notional = float(lim("max_notional_per_order"))
        self.min_notional = float(lim("min_notional"))
        self.min_qty = int(lim("min_qty_lots"))
        self.max_qty = int(lim("max_qty_lots"))
        self.band = float(lim("price_band_bps")) / 1e4
        ov_open = o.max_open_orders if o is not None else None
        self.max_open = int(cfg.max_open_orders_per_symbol if ov_open is None else ov_open)
        self.bucket = _Bucket(float(lim("max_orders_per_s")), int(lim("order_burst")))
        self.operator_quarantine = symbol in cfg.quarantined_symbols
        self.pos = 0
        self.buy_lots = 0
        self.sell_lots = 0
        self.buys: dict[str, int | None] = {}  # working buys: client order id -> limit price
        self.sells: dict[str, int | None] = {}
        self.buy_px = _PriceSet(1)  # prices of working buys (None = market)
        self.sell_px = _PriceSet(-1)
        self.mark: float | None = None  # last mid, ticks
        self.hi = 0.0  # long extreme (position + working buys), quote
        self.lo = 0.0  # short extreme (position - working sells), quote
        self.ex = 0.0  # max(|hi|, |lo|)

    def extremes(self, mark: float, d_buy: int = 0, d_sell: int = 0) -> tuple[float, float]:
        v = self.unit * mark
        return (self.pos + self.buy_lots + d_buy) * v, (self.pos - self.sell_lots - d_sell) * v


class _PriceSet:
    """Multiset of working-order prices on one side, with the most aggressive one cached
    (recomputed lazily after that one leaves). ``None`` is a market order (most aggressive)."""

    __slots__ = ("sign", "counts", "market", "_best", "_dirty")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.counts: dict[int, int] = {}
        self.market = 0
        self._best: int | None = None
        self._dirty = False

    def add(self, price: int | None) -> None:
        if price is None:
            self.market += 1
            return
        self.counts[price] = self.counts.get(price, 0) + 1
        b = self._best
        if not self._dirty and (b is None or (price > b if self.sign > 0 else price < b)):
            self._best = price

    def remove(self, price: int | None) -> None:
        if price is None:
            self.market -= 1
            return
        n = self.counts[price] - 1
        if n:
            self.counts[price] = n
        else:
            del self.counts[price]
            if price == self._best:
                self._dirty = True

    def best(self) -> int | None:
        """Most aggressive limit price (highest buy / lowest sell), ``None`` if none."""
        if self._dirty:
            c = self.counts
            self._best = (max(c) if self.sign > 0 else min(c)) if c else None
            self._dirty = False
        return self._best


@dataclass(slots=True)
class _Working:
    sym: _Sym
    sign: int
    leaves_lots: int
    price: int | None


def _sweep(book: BookView, sign: int, lot: float, qty_lots: int) -> tuple[float, int]:
    """Return (notional in ticks × lots, deepest price in ticks) of a market order sweeping
    ``book`` for ``qty_lots``; quantity beyond the visible depth is priced at the deepest
    level (the paper venue cancels it as ``NO_LIQUIDITY``; a live venue could fill worse)."""
    if sign > 0:
        prices, sizes = book.ask_ticks, book.ask_sizes
    else:
        prices, sizes = book.bid_ticks, book.bid_sizes
    left, acc, px = qty_lots, 0.0, prices[0]
    for px, size in zip(prices, sizes, strict=True):
        take = min(left, int(round(size / lot)))
        acc += px * take
        left -= take
        if left <= 0:
            return acc, px
    return acc + px * left, px


def _reference(book: BookView) -> float | None:
    """Microprice of the top level, or the one side's price when the other is empty."""
    if book.bid_ticks and book.ask_ticks:
        b, a = book.bid_ticks[0], book.ask_ticks[0]
        bs, as_ = book.bid_sizes[0], book.ask_sizes[0]
        tot = bs + as_
        return (b * as_ + a * bs) / tot if tot > 0 else (a + b) / 2.0
    if book.bid_ticks:
        return float(book.bid_ticks[0])
    if book.ask_ticks:
        return float(book.ask_ticks[0])
    return None


class RiskEngine:
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
            s: _Sym(s, inst, i, config) for i, (s, inst) in enumerate(self._instruments.items())
        }
        self._order = list(self._syms.values())
        self._max_book_age = config.max_book_age_ms * 1e6
        self._max_feature_age = config.max_feature_age_ms * 1e6
        self._max_signal_age = config.max_signal_age_ms * 1e6
        self._global = _Bucket(config.max_orders_per_s_global, config.order_burst_global)
        self._messages = _Bucket(config.max_messages_per_s, config.message_burst)
        self._working: dict[str, _Working] = {}
        self._portfolio = Portfolio()
        self._state = TradingState.ACTIVE
        self._state_reason = ""
        self._day: int | None = None
        self._day_baseline = 0.0
        self._hwm = float(config.capital)
        self._secret = (
            hashlib.sha256(rearm_secret.encode()).digest() if rearm_secret else None
        )
        self._alerts: list[RiskAlert] = []
        self.counters: dict[str, int] = {"trips": 0, "rearms": 0, "rearm_refusals": 0,
                                         "var_warmup_checks": 0}
        # exposure totals over symbols (worst case), refreshed incrementally and on marks
        self._gross = 0.0
        self._sum_hi = 0.0
        self._sum_lo = 0.0
        # VaR / ES of the worst-case exposures
        vcfg = config.var
        self._var_on = vcfg.var_limit is not None or vcfg.es_limit is not None
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
        return self._state

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
        return self._portfolio.total_pnl() - self._day_baseline

    def equity(self) -> float:
        """``capital + realised - fees + unrealised`` (since start)."""
        return self._cfg.capital + self._portfolio.total_pnl()

    def drawdown(self) -> float:
        """Fall of equity from its high-water mark (since start or the last re-arm)."""
        return self._hwm - self.equity()

    def exposure(self) -> dict[str, float]:
        """Worst-case gross and net exposure (quote) over every symbol, at the last marks."""
        return {"gross": self._gross, "net": max(self._sum_hi, -self._sum_lo)}

    def position_exposures(self) -> dict[str, float]:
        """Signed exposure of every held position at its last mark, quote currency."""
        return {
            s.symbol: s.pos * s.unit * s.mark
            for s in self._order if s.mark is not None and s.pos != 0
        }

    def var_es(self) -> tuple[float, float] | None:
        """Pre-trade VaR and ES of the current worst-case exposures (``None`` while warming
        up or with the limits off)."""
        if not self._var_on or self._history.n_returns < self._cfg.var.min_returns:
            return None
        if self._cfg.var.method == "normal":
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
        verdict = self._verdict(cmd, book, now)
        if verdict is not None:
            reason, detail = verdict
            return OrderDenied(
                ts_event=now,
                ts_init=now,
                client_order_id=cmd.client_order_id,
                symbol=cmd.symbol,
                reason=reason.value,
                detail=detail,
            )
        return None

    def check_batch(
        self, cmds: Sequence[SubmitOrder], views: Mapping[str, BookView]
    ) -> list[OrderDenied | None]:
        """:meth:`check` every order in turn (each sees the ones approved before it)."""
        get = views.get
        return [self.check(c, get(c.symbol)) for c in cmds]

    def _verdict(  # noqa: C901, PLR0911, PLR0912 - one flat list of checks, in order
        self, cmd: SubmitOrder, book: BookView | None, now: int
    ) -> tuple[DenyReason, str] | None:
        state = self._state
        if state is TradingState.HALTED:
            return DenyReason.TRADING_HALTED, f"trading halted ({self._state_reason})"
        coid = cmd.client_order_id
        if coid in self._working:
            return DenyReason.DUPLICATE_CLIENT_ORDER_ID, (
                f"client_order_id {coid!r} is still working"
            )
        sign = _SIGN.get(cmd.side)
        if sign is None or cmd.order_type not in _TYPES or cmd.tif not in _TIFS:
            return DenyReason.INVALID_ORDER, (
                f"side, order_type and tif must be known values, were "
                f"{cmd.side!r}, {cmd.order_type!r}, {cmd.tif!r}"
            )
        s = self._syms.get(cmd.symbol)
        if s is None:
            return DenyReason.INSTRUMENT_UNKNOWN, f"symbol {cmd.symbol!r} not configured"
        qty = cmd.qty_lots
        if type(qty) is not int and (isinstance(qty, bool) or not isinstance(qty, np.integer)):
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
        is_limit = cmd.order_type == "LIMIT"
        price = cmd.price_ticks
        if is_limit:
            if type(price) is not int and (
                isinstance(price, bool) or not isinstance(price, np.integer)
            ):
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
        if state is TradingState.REDUCING and not reducing:
            return DenyReason.TRADING_REDUCING, (
                f"only reducing orders: position {pos}, working {same}, order "
                f"{cmd.side} {qty}"
            )
        if cmd.reduce_only and not reducing:
            return DenyReason.REDUCE_ONLY_VIOLATION, (
                f"reduce_only order {cmd.side} {qty} would not reduce position {pos} "
                f"(working {same})"
            )

        ref = _reference(book)
        if ref is None:
            return DenyReason.BOOK_MISSING, f"book of {s.symbol} is empty"
        lot = float(s.inst.lot_size)
        if is_limit:
            assert price is not None
            far = price
            notional = price * qty * s.unit
        else:
            if not (book.ask_ticks if sign > 0 else book.bid_ticks):
                return DenyReason.BOOK_MISSING, (
                    f"no {'ask' if sign > 0 else 'bid'} to price a market order"
                )
            acc, far = _sweep(book, sign, lot, qty)
            notional = acc * s.unit
        dev = abs(far - ref) / ref
        if dev > s.band:
            return DenyReason.PRICE_OUTSIDE_BAND, (
                f"{'price' if is_limit else 'sweep price'} {far} is {dev * 1e4:.1f} bps from "
                f"microprice {ref:.2f}, max {s.band * 1e4:g} bps"
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
        if len(self._working) >= self._cfg.max_open_orders:
            return DenyReason.OPEN_ORDERS_EXCEEDS_MAX, (
                f"open orders {len(self._working)} + 1 > max {self._cfg.max_open_orders}"
            )
        if self._cfg.self_trade_prevention:
            hit = self._self_trade(s, sign, price if is_limit else None)
            if hit is not None:
                return DenyReason.SELF_TRADE_PREVENTED, hit

        mid = book.mid_ticks
        if mid is None:
            mid = ref
        verdict = self._portfolio_verdict(s, sign, qty, mid)
        if verdict is not None:
            return verdict

        sb, gb, mb = s.bucket, self._global, self._messages
        if sb.refill(now) < 1.0:
            return DenyReason.RATE_LIMIT_EXCEEDED, (
                f"{s.symbol} tokens {sb.tokens:.3f} < 1 (rate {sb.rate_per_ns * 1e9}/s, "
                f"burst {sb.burst:g})"
            )
        if gb.refill(now) < 1.0:
            return DenyReason.GLOBAL_RATE_LIMIT_EXCEEDED, (
                f"global tokens {gb.tokens:.3f} < 1 (rate {gb.rate_per_ns * 1e9}/s, "
                f"burst {gb.burst:g})"
            )
        if mb.refill(now) < 1.0:
            return DenyReason.MESSAGE_RATE_EXCEEDED, (
                f"message tokens {mb.tokens:.3f} < 1 (rate {mb.rate_per_ns * 1e9}/s, "
                f"burst {mb.burst:g})"
            )
        # approved
        sb.tokens -= 1.0
        gb.tokens -= 1.0
        mb.tokens -= 1.0
        self._add_working(coid, s, sign, qty, price if is_limit else None, mid)
        return None

    def _self_trade(self, s: _Sym, sign: int, price: int | None) -> str | None:
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
        self, s: _Sym, sign: int, qty: int, mid: float
    ) -> tuple[DenyReason, str] | None:
        """Gross, net, concentration, VaR and ES of the worst-case post-trade portfolio.

        Each limit applies only when the order raises its measure above the limit."""
        cfg = self._cfg
        old_hi, old_lo = s.extremes(mid)
        if sign > 0:
            new_hi, new_lo = s.extremes(mid, d_buy=qty)
        else:
            new_hi, new_lo = s.extremes(mid, d_sell=qty)
        old_ex = max(abs(old_hi), abs(old_lo))
        new_ex = max(abs(new_hi), abs(new_lo))
        base = self._gross - s.ex
        gross_before, gross = base + old_ex, base + new_ex
        if gross > cfg.max_gross_exposure and gross > gross_before:
            return DenyReason.GROSS_EXPOSURE_EXCEEDS_MAX, (
                f"gross exposure {gross:.2f} > max {cfg.max_gross_exposure}"
            )
        hi_base, lo_base = self._sum_hi - s.hi, self._sum_lo - s.lo
        net_before = max(hi_base + old_hi, -(lo_base + old_lo))
        net = max(hi_base + new_hi, -(lo_base + new_lo))
        if net > cfg.max_net_exposure and net > net_before:
            return DenyReason.NET_EXPOSURE_EXCEEDS_MAX, (
                f"net exposure {net:.2f} > max {cfg.max_net_exposure}"
            )
        equity = cfg.capital + self._portfolio.total_pnl()
        if new_ex > old_ex and (equity <= 0 or new_ex > cfg.max_concentration * equity):
            return DenyReason.CONCENTRATION_EXCEEDS_MAX, (
                f"{s.symbol} exposure {new_ex:.2f} > {cfg.max_concentration} × equity "
                f"{equity:.2f}"
            )
        if not self._var_on:
            return None
        if self._history.n_returns < cfg.var.min_returns:
            self.counters["var_warmup_checks"] += 1
            return None
        old_x = old_hi if abs(old_hi) >= abs(old_lo) else old_lo
        new_x = new_hi if abs(new_hi) >= abs(new_lo) else new_lo
        # the VaR vector holds s at its last mark; re-value s at this mid, then apply the order
        cur_x = s.hi if abs(s.hi) >= abs(s.lo) else s.lo
        if cfg.var.method == "normal":
            var0, es0 = self._dn.var_es_after(s.idx, old_x - cur_x, self._z, self._es_factor)
            var1, es1 = self._dn.var_es_after(s.idx, new_x - cur_x, self._z, self._es_factor)
        else:
            var0, es0 = self._hist_var_es(s.idx, old_x - cur_x)
            var1, es1 = self._hist_var_es(s.idx, new_x - cur_x)
        if var1 > self._var_limit and var1 > var0:
            return DenyReason.VAR_LIMIT_EXCEEDED, (
                f"post-trade VaR {var1:.2f} > limit {self._var_limit} "
                f"({cfg.var.method}, {cfg.var.alpha}, {cfg.var.horizon_s:g} s)"
            )
        if es1 > self._es_limit and es1 > es0:
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
        self, coid: str, s: _Sym, sign: int, qty: int, price: int | None, mid: float | None
    ) -> None:
        self._working[coid] = _Working(s, sign, qty, price)
        if sign > 0:
            s.buys[coid] = price
            s.buy_px.add(price)
            s.buy_lots += qty
        else:
            s.sells[coid] = price
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
        if w.sign > 0:
            w.sym.buy_lots -= take
        else:
            w.sym.sell_lots -= take
        if w.leaves_lots <= 0:
            self._close_working(coid)

    def _close_working(self, coid: str) -> _Sym | None:
        """End a working order, releasing its leaves; return its symbol's state."""
        w = self._working.pop(coid, None)
        if w is None:
            return None
        s = w.sym
        if w.sign > 0:
            s.buy_lots -= w.leaves_lots
            del s.buys[coid]
            s.buy_px.remove(w.price)
        else:
            s.sell_lots -= w.leaves_lots
            del s.sells[coid]
            s.sell_px.remove(w.price)
        return s

    def _refresh(self, s: _Sym) -> None:
        """Recompute one symbol's exposure extremes and move the totals and the VaR vector."""
        if s.mark is None:
            return
        hi, lo = s.extremes(s.mark)
        ex = max(abs(hi), abs(lo))
        old_x = s.hi if abs(s.hi) >= abs(s.lo) else s.lo
        self._gross += ex - s.ex
        self._sum_hi += hi - s.hi
        self._sum_lo += lo - s.lo
        s.hi, s.lo, s.ex = hi, lo, ex
        if self._var_on:
            new_x = hi if abs(hi) >= abs(lo) else lo
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

    def on_message_sent(self, cmd: CancelOrder) -> None:
        """Spend a message token for a cancel (cancels are never denied: they reduce risk)."""
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
        if self._cfg.var.method == "normal":
            self._dn.set_covariance(self._history.covariance(), self._h_samples)
        else:
            self._hist_r = self._history.returns()

    # --- kill switches ------------------------------------------------------------------------
    def _check_kill(self) -> list[TradingStateChanged]:
        total = self._portfolio.total_pnl()
        day = self._clock.now_ns() // DAY_NS
        if self._day is None:
            self._day = day
        elif day != self._day:  # a new UTC day: the daily loss counts from here
            self._day = day
            self._day_baseline = total
        equity = self._cfg.capital + total
        if equity > self._hwm:
            self._hwm = equity
        if self._state is TradingState.HALTED:
            return []
        day_pnl = total - self._day_baseline
        if day_pnl <= -self._cfg.daily_loss_limit:
            return [self._trip(REASON_DAILY_LOSS_LIMIT,
                               f"pnl {day_pnl:.6f} <= -{self._cfg.daily_loss_limit}")]
        dd_limit = self._cfg.max_drawdown
        if dd_limit is not None and self._hwm - equity >= dd_limit:
            return [self._trip(REASON_MAX_DRAWDOWN,
                               f"drawdown {self._hwm - equity:.6f} >= {dd_limit} (high-water "
                               f"{self._hwm:.6f}, equity {equity:.6f})")]
        return []

    def _trip(self, reason: str, detail: str) -> TradingStateChanged:
        self.counters["trips"] += 1
        self.counters[f"trips_{reason}"] = self.counters.get(f"trips_{reason}", 0) + 1
        return self._set(TradingState.HALTED, reason, detail)

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
        if not operator or not operator.strip():
            raise ValidationError("operator", "non-empty", operator)
        given = hashlib.sha256((token or "").encode()).digest()
        if self._secret is None or not hmac.compare_digest(given, self._secret):
            self.counters["rearm_refusals"] += 1
            why = "no re-arm secret configured" if self._secret is None else "wrong token"
            now = self._clock.now_ns()
            self._alerts.append(RiskAlert(ts_event=now, ts_init=now, code=ALERT_REARM_REFUSED,
                                          detail=f"operator {operator!r}: {why}"))
            raise RearmRefused(f"re-arm by {operator!r} refused: {why}")
        if self._state is TradingState.ACTIVE:
            raise ValidationError("state", "HALTED or REDUCING to re-arm", self._state.value)
        total = self._portfolio.total_pnl()
        self._day_baseline = total
        self._hwm = self._cfg.capital + total
        self.counters["rearms"] += 1
        return self._set(TradingState.ACTIVE, f"{REASON_REARMED}:{operator.strip()}",
                         f"pnl baseline {total:.6f}")

    def halt(self, reason: str) -> TradingStateChanged:
        """Halt trading by hand (recorded as ``"MANUAL:{reason}"``)."""
        return self._set(TradingState.HALTED, f"MANUAL:{reason}", "")

    def reduce_only(self, reason: str) -> TradingStateChanged:
        """Let through only exposure-reducing orders until :meth:`rearm`."""
        return self._set(TradingState.REDUCING, f"MANUAL:{reason}", "")

    def _set(self, state: TradingState, reason: str, detail: str) -> TradingStateChanged:
        self._state = state
        self._state_reason = reason
        now = self._clock.now_ns()
        return TradingStateChanged(
            ts_event=now, ts_init=now, state=state.value, reason=reason, detail=detail
        )

    def drain_alerts(self) -> list[RiskAlert]:
        """Return and forget the alerts queued since the last call."""
        out, self._alerts = self._alerts, []
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
            "state": self._state.value,
            "pnl_today": self.pnl(),
            "equity": self.equity(),
            "drawdown": self.drawdown(),
            "worst_case_exposure": self.exposure(),
            "pre_trade_var_es": None if pre is None else {"var": pre[0], "es": pre[1]},
            "open_orders": len(self._working),
            "counters": dict(self.counters),
        })
        return rep

    # --- persistence --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-safe image of the state, positions, working orders, buckets, marks,
        kill-switch baselines, counters and the return history."""

        def bucket(b: _Bucket) -> dict[str, Any]:
            return {"tokens": b.tokens, "last_ns": b.last_ns}

        return {
            "state": self._state.value,
            "state_reason": self._state_reason,
            "day": self._day,
            "day_baseline": self._day_baseline,
            "hwm": self._hwm,
            "portfolio": self._portfolio.snapshot(),
            "working": {
                k: {"symbol": w.sym.symbol, "sign": w.sign, "leaves_lots": w.leaves_lots,
                    "price": w.price}
                for k, w in self._working.items()
            },
            "buckets": {s.symbol: bucket(s.bucket) for s in self._order},
            "global_bucket": bucket(self._global),
            "message_bucket": bucket(self._messages),
            "marks": {s.symbol: s.mark for s in self._order if s.mark is not None},
            "counters": dict(self.counters),
            "history": self._history.snapshot(),
            "last_report_ns": self._last_report_ns,
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Replace this engine's state by :meth:`snapshot` output (config and clock stay)."""

        def bucket(b: _Bucket, d: Mapping[str, Any] | None) -> None:
            if d:
                b.tokens = float(d["tokens"])
                b.last_ns = None if d["last_ns"] is None else int(d["last_ns"])

        self._state = TradingState(snapshot.get("state", TradingState.ACTIVE.value))
        self._state_reason = str(snapshot.get("state_reason", ""))
        day = snapshot.get("day")
        self._day = None if day is None else int(day)
        self._day_baseline = float(snapshot.get("day_baseline", 0.0))
        self._hwm = float(snapshot.get("hwm", self._cfg.capital))
        self._portfolio = Portfolio.restore(snapshot.get("portfolio", {}))
        self._working = {}
        for s in self._order:
            s.pos = self._portfolio.qty_lots(s.symbol)
            s.buy_lots = s.sell_lots = 0
            s.buys, s.sells = {}, {}
            s.buy_px, s.sell_px = _PriceSet(1), _PriceSet(-1)
            s.mark = None
            bucket(s.bucket, snapshot.get("buckets", {}).get(s.symbol))
        for k, w in snapshot.get("working", {}).items():
            s = self._syms[w["symbol"]]
            price = None if w["price"] is None else int(w["price"])
            self._add_working(k, s, int(w["sign"]), int(w["leaves_lots"]), price, None)
        bucket(self._global, snapshot.get("global_bucket"))
        bucket(self._messages, snapshot.get("message_bucket"))
        for sym, m in snapshot.get("marks", {}).items():
            self._syms[sym].mark = float(m)
        self.counters.update({k: int(v) for k, v in snapshot.get("counters", {}).items()})
        if "history" in snapshot:
            self._history = ReturnHistory.restore(snapshot["history"])
        last = snapshot.get("last_report_ns")
        self._last_report_ns = None if last is None else int(last)
        if self._var_on:
            self._refit()
        self._recompute_all()
