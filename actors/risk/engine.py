"""Pre-trade risk: every order is checked here before it reaches execution.

:meth:`RiskEngine.check` returns ``None`` (approved) or an :class:`OrderDenied` with a stable
:class:`DenyReason` code and a detail naming the values. Checks run in this order; the first
failure wins:

1. trading state (``HALTED``; ``REDUCING`` lets through only exposure-reducing orders),
2. client order id not still working, instrument known, quantity > 0, limit price > 0,
3. book present, not quarantined, not stale,
4. ``reduce_only`` orders must reduce,
5. notional (limit price, or the far touch for a market order) <= ``max_notional_per_order``,
6. worst-case position ``|position + working same-side lots + order| <= max_position_lots``,
7. the per-symbol token bucket (only an approved order takes a token).

The engine keeps its own :class:`Portfolio` from the fills it is told of (:meth:`on_event`)
and marks it to mid (:meth:`on_marks`); when total PnL (``realised - fees + unrealised``, counted
from the last re-arm) falls to ``-daily_loss_limit`` the kill switch trips: state ``HALTED``,
one :class:`TradingStateChanged`, and every later order is denied until :meth:`rearm`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from actors.core.clock import Clock
from actors.core.errors import ValidationError
from actors.core.instruments import Instrument
from actors.core.messages import (
    Message,
    OrderCanceled,
    OrderDenied,
    OrderError,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderType,
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

if TYPE_CHECKING:
    from cluster.config import RiskConfig


class DenyReason(StrEnum):
    """Stable codes of :class:`OrderDenied`."""

    INSTRUMENT_UNKNOWN = "INSTRUMENT_UNKNOWN"
    QTY_NOT_POSITIVE = "QTY_NOT_POSITIVE"
    PRICE_NOT_POSITIVE = "PRICE_NOT_POSITIVE"
    NOTIONAL_EXCEEDS_MAX_PER_ORDER = "NOTIONAL_EXCEEDS_MAX_PER_ORDER"
    POSITION_EXCEEDS_MAX = "POSITION_EXCEEDS_MAX"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    TRADING_HALTED = "TRADING_HALTED"
    TRADING_REDUCING = "TRADING_REDUCING"
    REDUCE_ONLY_VIOLATION = "REDUCE_ONLY_VIOLATION"
    SYMBOL_QUARANTINED = "SYMBOL_QUARANTINED"
    BOOK_STALE = "BOOK_STALE"
    BOOK_MISSING = "BOOK_MISSING"
    DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"
    INVALID_ORDER = "INVALID_ORDER"


class TradingState(StrEnum):
    """``ACTIVE``: all checks apply. ``REDUCING``: only exposure-reducing orders. ``HALTED``:
    nothing."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


REASON_DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
REASON_REARMED = "REARMED"
_EXEC_DUPLICATE = ERR_DUPLICATE_CLIENT_ORDER_ID  # execution's OrderError reason
# execution's OrderError reasons for a submit it refused outright: the order never worked
_EXEC_NEVER_OPENED = frozenset(
    {_EXEC_DUPLICATE, ERR_INVALID_COMMAND, ERR_UNKNOWN_COMMAND, ERR_SYMBOL_MISMATCH}
)


@dataclass(slots=True)
class _Working:
    symbol: str
    side: OrderSide
    leaves_lots: int


@dataclass(slots=True)
class _Bucket:
    tokens: float
    last_ns: int


def _sweep_notional(inst: Instrument, book: BookView, side: OrderSide, qty_lots: int) -> float:
    """Notional of a market order that sweeps the opposite levels of ``book`` for ``qty_lots``.

    Quantity beyond the visible depth is priced at the worst visible level: the paper venue
    cannot fill beyond the view (it cancels the rest as ``NO_LIQUIDITY``); a live venue could
    fill worse, which is why live strategies should send limit orders.
    """
    if side is OrderSide.BUY:
        prices, sizes = book.ask_ticks, book.ask_sizes
    else:
        prices, sizes = book.bid_ticks, book.bid_sizes
    lot = float(inst.lot_size)
    left, notional = qty_lots, 0.0
    for px, size in zip(prices, sizes, strict=True):
        take = min(left, int(round(size / lot)))
        notional += inst.notional(px, take)
        left -= take
        if left <= 0:
            return notional
    return notional + inst.notional(prices[-1], left)


class RiskEngine:
    """Pre-trade checks, position and loss limits, and the kill switch.

    Args:
        config: Risk limits (``max_position_lots``, ``max_notional_per_order``,
            ``max_orders_per_s``, ``order_burst``, ``daily_loss_limit``, ``max_book_age_ms``).
        instruments: Instruments by symbol.
        clock: The injected clock (book age, token bucket, event times).

    Example:
        >>> risk = RiskEngine(RiskConfig(), {"BTCUSDT": btc}, SimClock(0))  # doctest: +SKIP
        >>> risk.check(submit, view) is None                               # doctest: +SKIP
        True
    """

    def __init__(
        self, config: RiskConfig, instruments: Mapping[str, Instrument], clock: Clock
    ) -> None:
        self._cfg = config
        self._instruments = dict(instruments)
        self._clock = clock
        self._max_pos = int(config.max_position_lots)
        self._max_notional = float(config.max_notional_per_order)
        self._rate = float(config.max_orders_per_s)
        self._burst = int(config.order_burst)
        self._loss_limit = float(config.daily_loss_limit)
        self._max_age_ns = float(config.max_book_age_ms) * 1_000_000.0
        self._state = TradingState.ACTIVE
        self._state_reason = ""
        self._pnl_baseline = 0.0
        self._portfolio = Portfolio()
        self._working: dict[str, _Working] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._marks: dict[str, float] = {}

    # --- queries ------------------------------------------------------------------------------
    @property
    def state(self) -> TradingState:
        """The trading state."""
        return self._state

    @property
    def portfolio(self) -> Portfolio:
        """Risk's own portfolio, built from the fills passed to :meth:`on_event`."""
        return self._portfolio

    def positions(self) -> dict[str, Position]:
        """Return copies of the positions risk knows of, by symbol."""
        return self._portfolio.positions()

    def working_lots(self, symbol: str, side: OrderSide) -> int:
        """Lots of approved, not yet filled or closed orders on ``symbol`` and ``side``."""
        return sum(
            w.leaves_lots for w in self._working.values() if w.symbol == symbol and w.side is side
        )

    def pnl(self) -> float:
        """Total PnL counted by the kill switch (since the last re-arm)."""
        return self._portfolio.total_pnl() - self._pnl_baseline

    # --- the check ----------------------------------------------------------------------------
    def check(self, cmd: SubmitOrder, book: BookView | None) -> OrderDenied | None:
        """Check one order; approve it (``None``) or deny it.

        An approved order takes a rate-limit token and counts as working (towards the position
        limit) until :meth:`on_event` sees it filled, canceled, rejected or expired.

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
        self._buckets[cmd.symbol].tokens -= 1.0
        self._working[cmd.client_order_id] = _Working(
            cmd.symbol, OrderSide(cmd.side), int(cmd.qty_lots)
        )
        return None

    def _verdict(
        self, cmd: SubmitOrder, book: BookView | None, now: int
    ) -> tuple[DenyReason, str] | None:
        if self._state is TradingState.HALTED:
            return DenyReason.TRADING_HALTED, f"trading halted ({self._state_reason})"
        if cmd.client_order_id in self._working:
            return DenyReason.DUPLICATE_CLIENT_ORDER_ID, (
                f"client_order_id {cmd.client_order_id!r} is still working"
            )
        try:
            OrderSide(cmd.side)
            OrderType(cmd.order_type)
            TimeInForce(cmd.tif)
        except ValueError:
            return DenyReason.INVALID_ORDER, (
                f"side, order_type and tif must be known values, were "
                f"{cmd.side!r}, {cmd.order_type!r}, {cmd.tif!r}"
            )
        inst = self._instruments.get(cmd.symbol)
        if inst is None:
            return DenyReason.INSTRUMENT_UNKNOWN, f"symbol {cmd.symbol!r} not configured"
        if cmd.qty_lots <= 0:
            return DenyReason.QTY_NOT_POSITIVE, f"qty_lots {cmd.qty_lots} <= 0"
        is_limit = OrderType(cmd.order_type) is OrderType.LIMIT
        if is_limit and (cmd.price_ticks is None or cmd.price_ticks <= 0):
            return DenyReason.PRICE_NOT_POSITIVE, f"price_ticks {cmd.price_ticks} not > 0"
        if book is None or book.symbol != cmd.symbol:
            return DenyReason.BOOK_MISSING, f"no book for {cmd.symbol}"
        if book.quarantined:
            return DenyReason.SYMBOL_QUARANTINED, f"book of {cmd.symbol} quarantined"
        age_ns = now - book.ts_init
        if age_ns > self._max_age_ns:
            return DenyReason.BOOK_STALE, (
                f"book age {age_ns / 1e6} ms > max {self._max_age_ns / 1e6} ms"
            )

        side = OrderSide(cmd.side)
        pos = self._portfolio.qty_lots(cmd.symbol)
        same_side = self.working_lots(cmd.symbol, side)
        reducing = (
            pos != 0
            and side.sign != (1 if pos > 0 else -1)
            and (same_side + cmd.qty_lots <= abs(pos))
        )
        if self._state is TradingState.REDUCING and not reducing:
            return DenyReason.TRADING_REDUCING, (
                f"only reducing orders: position {pos}, working {same_side}, order "
                f"{side.value} {cmd.qty_lots}"
            )
        if cmd.reduce_only and not reducing:
            return DenyReason.REDUCE_ONLY_VIOLATION, (
                f"reduce_only order {side.value} {cmd.qty_lots} would not reduce position "
                f"{pos} (working {same_side})"
            )

        if is_limit:
            px = cmd.price_ticks
        else:
            px = book.best_ask if side is OrderSide.BUY else book.best_bid
            if px is None:
                return DenyReason.BOOK_MISSING, (
                    f"no {'ask' if side is OrderSide.BUY else 'bid'} to price a market order"
                )
        assert px is not None
        if is_limit:
            notional = inst.notional(px, cmd.qty_lots)
        else:
            notional = _sweep_notional(inst, book, side, cmd.qty_lots)
        if notional > self._max_notional:
            return DenyReason.NOTIONAL_EXCEEDS_MAX_PER_ORDER, (
                f"notional {notional} > max {self._max_notional}"
            )

        post = pos + side.sign * (same_side + cmd.qty_lots)
        if abs(post) > self._max_pos:
            return DenyReason.POSITION_EXCEEDS_MAX, (
                f"position {abs(post)} > max {self._max_pos} (position {pos} + working "
                f"{side.sign * same_side} + order {side.sign * cmd.qty_lots})"
            )

        bucket = self._refill(cmd.symbol, now)
        if bucket.tokens < 1.0:
            return DenyReason.RATE_LIMIT_EXCEEDED, (
                f"tokens {bucket.tokens:.3f} < 1 (rate {self._rate}/s, burst {self._burst})"
            )
        return None

    def _refill(self, symbol: str, now: int) -> _Bucket:
        b = self._buckets.get(symbol)
        if b is None:
            b = self._buckets[symbol] = _Bucket(float(self._burst), now)
        elif now > b.last_ns:
            b.tokens = min(float(self._burst), b.tokens + (now - b.last_ns) * self._rate / 1e9)
            b.last_ns = now
        return b

    # --- feedback -----------------------------------------------------------------------------
    def on_event(self, ev: Message) -> list[TradingStateChanged]:
        """Learn of an execution event; return the kill switch's transition, if it tripped.

        Fills move the position and shrink the order's working quantity; cancels, rejects
        and expiries end it, and so does execution's ``DUPLICATE_CLIENT_ORDER_ID`` error (risk
        denies ids it still sees working, so that error names the order risk just approved).
        Other messages are ignored.
        """
        if isinstance(ev, OrderFilled):
            inst = self._instruments.get(ev.symbol)
            if inst is None:
                return []
            self._portfolio.apply_fill(ev, inst)
            w = self._working.get(ev.client_order_id)
            if w is not None:
                w.leaves_lots -= int(ev.last_qty_lots)
                if w.leaves_lots <= 0:
                    del self._working[ev.client_order_id]
            mark = self._marks.get(ev.symbol)
            if mark is not None:
                self._portfolio.mark(ev.symbol, mark)
            return self._check_loss()
        closed = isinstance(ev, OrderCanceled | OrderRejected | OrderExpired | OrderDenied)
        duplicate = isinstance(ev, OrderError) and ev.reason in _EXEC_NEVER_OPENED
        if closed or duplicate:
            self._working.pop(ev.client_order_id, None)
        return []

    def on_marks(self, books: Mapping[str, BookView]) -> list[TradingStateChanged]:
        """Mark positions to the mid of each (non-quarantined) book; check the loss limit.

        Returns:
            ``[TradingStateChanged(state="HALTED", reason="DAILY_LOSS_LIMIT")]`` the first time
            the loss limit is reached, else ``[]``.
        """
        for symbol in sorted(books):
            book = books[symbol]
            mid = book.mid_ticks
            if mid is None or book.quarantined:
                continue
            self._marks[symbol] = mid
            self._portfolio.mark(symbol, mid)
        return self._check_loss()

    def _check_loss(self) -> list[TradingStateChanged]:
        if self._state is TradingState.HALTED:
            return []
        if self.pnl() <= -self._loss_limit:
            return [self._set(TradingState.HALTED, REASON_DAILY_LOSS_LIMIT)]
        return []

    # --- operator controls --------------------------------------------------------------------
    def rearm(self, operator: str) -> TradingStateChanged:
        """Return to ``ACTIVE`` by deliberate operator action (never automatic).

        The loss limit then counts from the PnL at re-arm time, so a halted engine does not
        trip again on the losses that halted it.

        Args:
            operator: Who re-armed (recorded in the reason, ``"REARMED:{operator}"``).
        """
        if not operator or not operator.strip():
            raise ValidationError("operator", "non-empty", operator)
        self._pnl_baseline = self._portfolio.total_pnl()
        return self._set(TradingState.ACTIVE, f"{REASON_REARMED}:{operator}")

    def halt(self, reason: str) -> TradingStateChanged:
        """Halt trading by hand (``reason`` is recorded)."""
        return self._set(TradingState.HALTED, reason)

    def reduce_only(self, reason: str) -> TradingStateChanged:
        """Let through only exposure-reducing orders until :meth:`rearm`."""
        return self._set(TradingState.REDUCING, reason)

    def _set(self, state: TradingState, reason: str) -> TradingStateChanged:
        self._state = state
        self._state_reason = reason
        now = self._clock.now_ns()
        return TradingStateChanged(ts_event=now, ts_init=now, state=state.value, reason=reason)

    # --- persistence --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-safe image of state, positions, working orders, buckets and marks."""
        return {
            "state": self._state.value,
            "state_reason": self._state_reason,
            "pnl_baseline": self._pnl_baseline,
            "portfolio": self._portfolio.snapshot(),
            "working": {
                k: {"symbol": w.symbol, "side": w.side.value, "leaves_lots": w.leaves_lots}
                for k, w in self._working.items()
            },
            "buckets": {
                s: {"tokens": b.tokens, "last_ns": b.last_ns}
                for s, b in sorted(self._buckets.items())
            },
            "marks": dict(sorted(self._marks.items())),
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Replace this engine's state by :meth:`snapshot` output (config and clock stay)."""
        self._state = TradingState(snapshot.get("state", TradingState.ACTIVE.value))
        self._state_reason = str(snapshot.get("state_reason", ""))
        self._pnl_baseline = float(snapshot.get("pnl_baseline", 0.0))
        self._portfolio = Portfolio.restore(snapshot.get("portfolio", {}))
        self._working = {
            k: _Working(w["symbol"], OrderSide(w["side"]), int(w["leaves_lots"]))
            for k, w in snapshot.get("working", {}).items()
        }
        self._buckets = {
            s: _Bucket(float(b["tokens"]), int(b["last_ns"]))
            for s, b in snapshot.get("buckets", {}).items()
        }
        self._marks = {s: float(m) for s, m in snapshot.get("marks", {}).items()}
