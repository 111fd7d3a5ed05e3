"""The execution engine: owns the orders, talks to a venue, keeps the portfolio.

:meth:`ExecutionEngine.execute` is the one entry point: it first lets the venue match resting
orders against the new books, then runs the commands in order. Every event is applied to its
order through :meth:`Order.apply`, so only legal transitions happen; anything illegal, a
duplicate, or an overfill comes out as an :class:`OrderError` event and never as an exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from actors.core.clock import Clock
from actors.core.errors import IllegalTransition, ValidationError
from actors.core.instruments import Instrument
from actors.core.messages import (
    CancelOrder,
    OrderError,
    OrderEvent,
    OrderFilled,
    OrderSubmitted,
    SubmitOrder,
)
from actors.core.views import BookView
from actors.execution.orders import DuplicateTradeId, Order, OrderPendingCancel
from actors.execution.portfolio import Portfolio, Position
from actors.execution.venue import PaperVenue, Venue

if TYPE_CHECKING:
    from cluster.config import ExecutionConfig

# OrderError reasons (stable codes)
ERR_DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"
ERR_UNKNOWN_ORDER = "UNKNOWN_ORDER"
ERR_ILLEGAL_TRANSITION = "ILLEGAL_TRANSITION"
ERR_DUPLICATE_TRADE_ID = "DUPLICATE_TRADE_ID"
ERR_OVERFILL = "OVERFILL"
ERR_INVALID_EVENT = "INVALID_EVENT"
ERR_SYMBOL_MISMATCH = "SYMBOL_MISMATCH"
ERR_UNKNOWN_COMMAND = "UNKNOWN_COMMAND"
ERR_INVALID_COMMAND = "INVALID_COMMAND"


class ExecutionEngine:
    """Runs order commands against a venue and keeps orders and positions.

    Args:
        config: Execution settings (``maker_fee_bps``, ``taker_fee_bps``, ``order_latency_us``).
        instruments: Instruments by symbol.
        clock: The injected clock; acceptance times advance it (a no-op on a wall clock).
        venue: Where orders go; a :class:`PaperVenue` with the config's fees by default.

    Example:
        >>> eng = ExecutionEngine(ExecutionConfig(), {"BTCUSDT": btc}, clock)  # doctest: +SKIP
        >>> events = eng.execute([submit], {"BTCUSDT": view})              # doctest: +SKIP
    """

    def __init__(
        self,
        config: ExecutionConfig,
        instruments: Mapping[str, Instrument],
        clock: Clock,
        venue: Venue | None = None,
    ) -> None:
        self._instruments = dict(instruments)
        self._clock = clock
        self._latency_ns = int(round(float(config.order_latency_us) * 1_000))
        self._venue: Venue = (
            venue
            if venue is not None
            else PaperVenue(self._instruments, config.maker_fee_bps, config.taker_fee_bps)
        )
        self._orders: dict[str, Order] = {}
        self._portfolio = Portfolio()

    # --- the entry point ----------------------------------------------------------------------
    def execute(
        self,
        commands: Sequence[SubmitOrder | CancelOrder],
        books: Mapping[str, BookView],
    ) -> list[OrderEvent]:
        """Mark positions to mid, match resting orders against ``books``, then run ``commands``.

        Args:
            commands: Submit and cancel commands, in the order they were decided.
            books: The latest view of each symbol (resting orders of each are matched first,
                in symbol order; submits match against their symbol's view).

        Returns:
            Every order event produced, in order, including :class:`OrderError` events.
        """
        out: list[OrderEvent] = []
        for symbol in sorted(books):
            book = books[symbol]
            if book.mid_ticks is not None and not book.quarantined:
                self._portfolio.mark(symbol, book.mid_ticks)
            out.extend(self._apply_all(self._venue.on_market(book, self._clock.now_ns())))
        for cmd in commands:
            if isinstance(cmd, SubmitOrder):
                out.extend(self._submit(cmd, books.get(cmd.symbol)))
            elif isinstance(cmd, CancelOrder):
                out.extend(self._cancel(cmd))
            else:
                out.append(
                    self._error(
                        getattr(cmd, "client_order_id", ""),
                        getattr(cmd, "symbol", ""),
                        ERR_UNKNOWN_COMMAND,
                        type(cmd).__name__,
                    )
                )
        return out

    # --- queries ------------------------------------------------------------------------------
    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Return the open orders (sent and not closed), oldest first."""
        return [
            o for o in self._orders.values() if o.is_open and (symbol is None or o.symbol == symbol)
        ]

    def order(self, client_order_id: str) -> Order | None:
        """Return the order with ``client_order_id``, or ``None``."""
        return self._orders.get(client_order_id)

    def orders(self) -> list[Order]:
        """Return every order known, oldest first."""
        return list(self._orders.values())

    def positions(self) -> dict[str, Position]:
        """Return copies of the positions, by symbol."""
        return self._portfolio.positions()

    @property
    def portfolio(self) -> Portfolio:
        """The live portfolio (fills applied; mark it for unrealised PnL)."""
        return self._portfolio

    @property
    def venue(self) -> Venue:
        """The venue orders go to."""
        return self._venue

    # --- persistence --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-safe image of orders, portfolio and (if it has one) the venue."""
        snap: dict[str, Any] = {
            "orders": [o.to_dict() for o in self._orders.values()],
            "portfolio": self._portfolio.snapshot(),
        }
        venue_snapshot = getattr(self._venue, "snapshot", None)
        if callable(venue_snapshot):
            snap["venue"] = venue_snapshot()
        return snap

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Replace this engine's state by :meth:`snapshot` output (config and clock stay)."""
        self._orders = {}
        for d in snapshot.get("orders", []):
            o = Order.from_dict(d)
            self._orders[o.client_order_id] = o
        self._portfolio = Portfolio.restore(snapshot.get("portfolio", {}))
        venue_restore = getattr(self._venue, "restore", None)
        if "venue" in snapshot and callable(venue_restore):
            venue_restore(snapshot["venue"])

    # --- commands -----------------------------------------------------------------------------
    def _submit(self, cmd: SubmitOrder, book: BookView | None) -> list[OrderEvent]:
        if cmd.client_order_id in self._orders:
            return [
                self._error(
                    cmd.client_order_id,
                    cmd.symbol,
                    ERR_DUPLICATE_CLIENT_ORDER_ID,
                    "client_order_id already used",
                )
            ]
        try:
            order = Order.from_submit(cmd)
        except (ValueError, TypeError) as exc:
            return [self._error(cmd.client_order_id, cmd.symbol, ERR_INVALID_COMMAND, str(exc))]
        now = self._clock.now_ns()
        self._orders[order.client_order_id] = order
        out = self._apply(
            OrderSubmitted(
                ts_event=now,
                ts_init=now,
                client_order_id=order.client_order_id,
                symbol=order.symbol,
            )
        )
        at = self._arrival(cmd.ts_init)
        out.extend(self._apply_all(self._venue.submit(order, book, at)))
        return out

    def _cancel(self, cmd: CancelOrder) -> list[OrderEvent]:
        order = self._orders.get(cmd.client_order_id)
        if order is None:
            return [
                self._error(
                    cmd.client_order_id, cmd.symbol, ERR_UNKNOWN_ORDER, "no such client_order_id"
                )
            ]
        if cmd.symbol and cmd.symbol != order.symbol:
            return [
                self._error(
                    cmd.client_order_id,
                    cmd.symbol,
                    ERR_SYMBOL_MISMATCH,
                    f"order is on {order.symbol}",
                )
            ]
        now = self._clock.now_ns()
        out = self._apply(
            OrderPendingCancel(
                ts_event=now,
                ts_init=now,
                client_order_id=order.client_order_id,
                symbol=order.symbol,
            )
        )
        if isinstance(out[0], OrderError):
            return out
        out.extend(self._apply_all(self._venue.cancel(order, self._arrival(cmd.ts_init))))
        return out

    def _arrival(self, cmd_ts_init: int) -> int:
        """Advance the clock to when a command reaches the venue and return that time."""
        target = max(self._clock.now_ns(), int(cmd_ts_init) + self._latency_ns)
        self._clock.advance_to(target)
        return max(self._clock.now_ns(), target)

    # --- events -------------------------------------------------------------------------------
    def _apply_all(self, events: Sequence[OrderEvent]) -> list[OrderEvent]:
        out: list[OrderEvent] = []
        for ev in events:
            out.extend(self._apply(ev))
        return out

    def _apply(self, ev: OrderEvent) -> list[OrderEvent]:
        """Apply one event to its order; return it (plus an overfill error) or an error."""
        order = self._orders.get(ev.client_order_id)
        if order is None:
            return [
                self._error(
                    ev.client_order_id,
                    ev.symbol,
                    ERR_UNKNOWN_ORDER,
                    f"{type(ev).__name__} for an unknown order",
                )
            ]
        overfill_before = order.overfill_lots
        try:
            order.apply(ev)
        except DuplicateTradeId as exc:
            return [self._error(ev.client_order_id, ev.symbol, ERR_DUPLICATE_TRADE_ID, str(exc))]
        except IllegalTransition as exc:
            return [self._error(ev.client_order_id, ev.symbol, ERR_ILLEGAL_TRANSITION, str(exc))]
        except ValidationError as exc:
            return [self._error(ev.client_order_id, ev.symbol, ERR_INVALID_EVENT, str(exc))]
        out: list[OrderEvent] = [ev]
        if isinstance(ev, OrderFilled):
            inst = self._instruments.get(ev.symbol)
            if inst is not None:
                self._portfolio.apply_fill(ev, inst)
            if order.overfill_lots > overfill_before:
                out.append(
                    self._error(
                        ev.client_order_id,
                        ev.symbol,
                        ERR_OVERFILL,
                        f"fill {ev.trade_id} of {ev.last_qty_lots} lots exceeds qty "
                        f"{order.qty_lots} by {order.overfill_lots - overfill_before}",
                    )
                )
        return out

    def _error(self, client_order_id: str, symbol: str, reason: str, detail: str) -> OrderError:
        now = self._clock.now_ns()
        return OrderError(
            ts_event=now,
            ts_init=now,
            client_order_id=client_order_id,
            symbol=symbol,
            reason=reason,
            detail=detail,
        )
