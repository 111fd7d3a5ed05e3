"""The execution engine: owns the orders, talks to a venue, keeps the portfolio.

:meth:`ExecutionEngine.execute` is the one entry point: it first expires orders whose
``expire_ts_ns`` has passed, then lets the venue match resting orders against the new books,
then runs the commands in order (:class:`SubmitOrder`, :class:`CancelOrder`,
:class:`ModifyOrder`, :class:`SubmitBracket`). Every event is applied to its order through
:meth:`Order.apply`, so only legal transitions happen; anything illegal, a duplicate, or an
overfill comes out as an :class:`OrderError` event and never as an exception.

Brackets: the engine sends a bracket's exits when its entry fills, sized to the entry's
filled quantity, and amends them up as the entry fills further (an amend that grows an exit
costs it its queue place, as on a real venue). The exits are linked one-cancels-other: the
venue cancels one as soon as the other fills (the engine cancels it itself, after the batch,
for a venue that does not), and an exit that closes unfilled (canceled, expired, rejected)
takes the other with it. Once an exit has filled or closed, the other is never sent; the
surviving exit keeps growing with the entry while it is open (less what its sibling filled).
An amend may not grow an exit beyond that either. Risk never sees the exits: they only
reduce the position the entry opened. Exits are sent
at the time of the entry fill that opened them, with no order-entry latency (they are
venue-side contingent orders).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from actors.core.clock import Clock
from actors.core.errors import IllegalTransition, ValidationError
from actors.core.instruments import Instrument
from actors.core.messages import (
    CancelOrder,
    ModifyOrder,
    OrderError,
    OrderEvent,
    OrderFilled,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    SubmitBracket,
    SubmitOrder,
    TimeInForce,
)
from actors.core.views import BookView
from actors.execution.orders import (
    Bracket,
    DuplicateTradeId,
    Order,
    OrderPendingCancel,
    OrderPendingUpdate,
    next_status,
)
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
ERR_INVALID_MODIFY = "INVALID_MODIFY"
ERR_MODIFY_BELOW_FILLED = "MODIFY_BELOW_FILLED"

Command = SubmitOrder | CancelOrder | ModifyOrder | SubmitBracket

_WORKING = frozenset({OrderStatus.ACCEPTED, OrderStatus.TRIGGERED, OrderStatus.PARTIALLY_FILLED})
_MASK64 = (1 << 64) - 1
_GOLDEN64 = 0x9E3779B97F4A7C15


def splitmix64(state: int) -> int:
    """Return the SplitMix64 output for ``state`` (a 64-bit integer hash, Steele et al. 2014)."""
    z = state & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


class OrderLatency:
    """Order-entry latency: a constant, or draws from a measured distribution.

    With ``samples_us``, draw ``n`` (0, 1, ...) is the sample at index
    ``splitmix64(seed + (n + 1) * 0x9E3779B97F4A7C15) % len(samples_us)``: a bootstrap of the
    measured latencies by a counter-based generator, so the draw count is the whole state and
    a replay (or a restored engine) draws the same sequence.

    Args:
        constant_us: Latency when no samples are given, µs.
        samples_us: Measured latencies, µs (``None``: use ``constant_us``).
        seed: Seed of the draws.
    """

    def __init__(
        self, constant_us: float, samples_us: Sequence[float] | None = None, seed: int = 0
    ) -> None:
        self._constant_ns = int(round(float(constant_us) * 1_000))
        self._samples_ns = (
            None if not samples_us else [int(round(float(x) * 1_000)) for x in samples_us]
        )
        self._seed = int(seed)
        self.draws = 0

    def next_ns(self) -> int:
        """Return the next latency, ns."""
        if self._samples_ns is None:
            return self._constant_ns
        self.draws += 1
        u = splitmix64(self._seed + self.draws * _GOLDEN64)
        return self._samples_ns[u % len(self._samples_ns)]


class ExecutionEngine:
    """Runs order commands against a venue and keeps orders and positions.

    Args:
        config: Execution settings (fees, latency, queue model).
        instruments: Instruments by symbol.
        clock: The injected clock; acceptance times advance it (a no-op on a wall clock).
        venue: Where orders go; a :class:`PaperVenue` built from the config by default.

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
        self._latency = OrderLatency(
            config.order_latency_us, config.latency_samples_us, config.latency_seed
        )
        self._venue: Venue = (
            venue
            if venue is not None
            else PaperVenue(
                self._instruments,
                config.maker_fee_bps,
                config.taker_fee_bps,
                queue_model=config.queue_model,
                queue_prob_power=config.queue_prob_power,
            )
        )
        self._orders: dict[str, Order] = {}  # open orders and the last closed ones
        self._closed: deque[str] = deque()  # closed order ids, oldest first
        self._keep_closed = int(config.closed_orders_kept)
        self._portfolio = Portfolio()
        self._brackets: dict[str, Bracket] = {}  # by entry id
        self._bracket_of: dict[str, str] = {}  # entry and exit ids -> entry id
        self._expiring: dict[str, int] = {}  # open orders with an expiry -> expire_ts_ns
        self._dirty: list[str] = []  # brackets to settle after the current batch
        self._books: Mapping[str, BookView] = {}  # the books of the current call

    # --- the entry point ----------------------------------------------------------------------
    def execute(
        self, commands: Sequence[Command], books: Mapping[str, BookView]
    ) -> list[OrderEvent]:
        """Expire due orders, mark positions to mid, match resting orders against ``books``,
        then run ``commands``.

        Args:
            commands: Submit, cancel, modify and bracket commands, in the order decided.
            books: The latest view of each symbol (resting orders of each are matched first,
                in symbol order; submits, amends and bracket exits use their symbol's view).

        Returns:
            Every order event produced, in order, including :class:`OrderError` events.
        """
        self._books = books
        try:
            out = self._expire_due()
            for symbol in sorted(books):
                book = books[symbol]
                if book.mid_ticks is not None and not book.quarantined:
                    self._portfolio.mark(symbol, book.mid_ticks)
                out.extend(self._apply_all(self._venue.on_market(book, self._clock.now_ns())))
            for cmd in commands:
                out.extend(self._command(cmd))
                if self._dirty:
                    out.extend(self._settle())
        finally:
            self._books = {}
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

    def bracket(self, client_order_id: str) -> Bracket | None:
        """Return a copy of the bracket that ``client_order_id`` (entry or exit) belongs to."""
        entry = self._bracket_of.get(client_order_id)
        return None if entry is None else Bracket.from_dict(self._brackets[entry].to_dict())

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
        """Return a JSON-safe image of orders, brackets, portfolio, the latency draws and (if
        it has one) the venue."""
        snap: dict[str, Any] = {
            "orders": [o.to_dict() for o in self._orders.values()],
            "closed": list(self._closed),
            "brackets": [b.to_dict() for b in self._brackets.values()],
            "latency_draws": self._latency.draws,
            "portfolio": self._portfolio.snapshot(),
        }
        venue_snapshot = getattr(self._venue, "snapshot", None)
        if callable(venue_snapshot):
            snap["venue"] = venue_snapshot()
        return snap

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Replace this engine's state by :meth:`snapshot` output (config and clock stay)."""
        self._orders = {}
        self._expiring = {}
        self._closed = deque(snapshot.get("closed", []))
        for d in snapshot.get("orders", []):
            o = Order.from_dict(d)
            self._orders[o.client_order_id] = o
            if o.expire_ts_ns and not o.is_closed:
                self._expiring[o.client_order_id] = o.expire_ts_ns
        self._brackets = {}
        self._bracket_of = {}
        for d in snapshot.get("brackets", []):
            self._register(Bracket.from_dict(d))
        self._latency.draws = int(snapshot.get("latency_draws", 0))
        self._dirty = []
        self._portfolio = Portfolio.restore(snapshot.get("portfolio", {}))
        venue_restore = getattr(self._venue, "restore", None)
        if "venue" in snapshot and callable(venue_restore):
            venue_restore(snapshot["venue"])

    # --- commands -----------------------------------------------------------------------------
    def _command(self, cmd: object) -> list[OrderEvent]:
        if isinstance(cmd, SubmitOrder):
            return self._submit(cmd)
        if isinstance(cmd, CancelOrder):
            return self._cancel(cmd)
        if isinstance(cmd, ModifyOrder):
            return self._modify(cmd)
        if isinstance(cmd, SubmitBracket):
            return self._submit_bracket(cmd)
        return [
            self._error(
                getattr(cmd, "client_order_id", ""),
                getattr(cmd, "symbol", ""),
                ERR_UNKNOWN_COMMAND,
                type(cmd).__name__,
            )
        ]

    def _submit(self, cmd: SubmitOrder) -> list[OrderEvent]:
        if cmd.client_order_id in self._orders or cmd.client_order_id in self._bracket_of:
            return [self._duplicate(cmd.client_order_id, cmd.symbol)]
        return self._open(cmd)

    def _open(self, cmd: SubmitOrder) -> list[OrderEvent]:
        try:
            order = Order.from_submit(cmd)
        except (ValueError, TypeError) as exc:
            return [self._error(cmd.client_order_id, cmd.symbol, ERR_INVALID_COMMAND, str(exc))]
        self._orders[order.client_order_id] = order
        if order.expire_ts_ns:
            self._expiring[order.client_order_id] = order.expire_ts_ns
        now = self._clock.now_ns()
        return self._send(order, self._arrival(cmd.ts_init), now)

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
        return self._send_cancel(order, cmd.ts_init)

    def _modify(self, cmd: ModifyOrder) -> list[OrderEvent]:
        order = self._orders.get(cmd.client_order_id)
        if order is None:
            return [
                self._error(
                    cmd.client_order_id, cmd.symbol, ERR_UNKNOWN_ORDER, "no such client_order_id"
                )
            ]
        now = self._clock.now_ns()
        pending = OrderPendingUpdate(
            ts_event=now, ts_init=now, client_order_id=order.client_order_id, symbol=order.symbol
        )
        try:
            next_status(order, pending)
        except IllegalTransition as exc:
            return [
                self._error(order.client_order_id, cmd.symbol, ERR_ILLEGAL_TRANSITION, str(exc))
            ]
        problem = _modify_problem(order, cmd) or self._exit_modify_problem(order, cmd.qty_lots)
        if problem is not None:
            reason, detail = problem
            return [self._error(order.client_order_id, cmd.symbol, reason, detail)]
        return self._send_modify(
            order, cmd.qty_lots, cmd.price_ticks, cmd.trigger_price_ticks, cmd.ts_init
        )

    def _submit_bracket(self, cmd: SubmitBracket) -> list[OrderEvent]:
        entry = cmd.entry
        b = Bracket(
            entry_id=entry.client_order_id,
            take_profit_id=cmd.take_profit_id or f"{entry.client_order_id}-TP",
            stop_loss_id=cmd.stop_loss_id or f"{entry.client_order_id}-SL",
            take_profit_price_ticks=cmd.take_profit_price_ticks,
            stop_loss_trigger_ticks=cmd.stop_loss_trigger_ticks,
            stop_loss_price_ticks=cmd.stop_loss_price_ticks,
        )
        ids = (b.entry_id, *b.exit_ids)
        if b.entry_id in self._orders or b.entry_id in self._bracket_of:
            return [self._duplicate(b.entry_id, entry.symbol)]
        for name, i in (("take_profit_id", b.take_profit_id), ("stop_loss_id", b.stop_loss_id)):
            if i in self._orders or i in self._bracket_of:  # reported on the entry's id
                detail = f"{name} {i!r} already used"
                return [
                    self._error(b.entry_id, entry.symbol, ERR_DUPLICATE_CLIENT_ORDER_ID, detail)
                ]
        try:
            detail = _bracket_problem(b, entry, ids)
        except (ValueError, TypeError) as exc:
            detail = str(exc)
        if detail:
            return [self._error(b.entry_id, entry.symbol, ERR_INVALID_COMMAND, detail)]
        self._register(b)
        out = self._open(entry)
        if b.entry_id not in self._orders:  # refused outright: no bracket
            for i in ids:
                del self._bracket_of[i]
            del self._brackets[b.entry_id]
        return out

    # --- sending ------------------------------------------------------------------------------
    def _send(self, order: Order, at: int, now: int) -> list[OrderEvent]:
        """Mark ``order`` submitted at ``now`` and hand it to the venue, arriving at ``at``."""
        out: list[OrderEvent] = []
        submitted = OrderSubmitted(
            ts_event=now, ts_init=now, client_order_id=order.client_order_id, symbol=order.symbol
        )
        self._apply(submitted, out)
        self._apply_raw(self._venue.submit(order, self._books.get(order.symbol), at), out)
        return out

    def _send_cancel(self, order: Order, cmd_ts_init: int | None) -> list[OrderEvent]:
        now = self._clock.now_ns()
        out: list[OrderEvent] = []
        pending = OrderPendingCancel(
            ts_event=now, ts_init=now, client_order_id=order.client_order_id, symbol=order.symbol
        )
        if not self._apply(pending, out):
            return out
        at = now if cmd_ts_init is None else self._arrival(cmd_ts_init)
        self._apply_raw(self._venue.cancel(order, at), out)
        return out

    def _send_modify(
        self,
        order: Order,
        qty_lots: int | None,
        price_ticks: int | None,
        trigger_price_ticks: int | None,
        cmd_ts_init: int | None,
    ) -> list[OrderEvent]:
        now = self._clock.now_ns()
        out: list[OrderEvent] = []
        pending = OrderPendingUpdate(
            ts_event=now, ts_init=now, client_order_id=order.client_order_id, symbol=order.symbol
        )
        if not self._apply(pending, out):
            return out
        at = now if cmd_ts_init is None else self._arrival(cmd_ts_init)
        book = self._books.get(order.symbol)
        events = self._venue.modify(order, qty_lots, price_ticks, trigger_price_ticks, book, at)
        self._apply_raw(events, out)
        return out

    def _arrival(self, cmd_ts_init: int) -> int:
        """Advance the clock to when a command reaches the venue and return that time."""
        target = max(self._clock.now_ns(), int(cmd_ts_init) + self._latency.next_ns())
        self._clock.advance_to(target)
        return max(self._clock.now_ns(), target)

    def _expire_due(self) -> list[OrderEvent]:
        now = self._clock.now_ns()
        out: list[OrderEvent] = []
        for coid, ts in list(self._expiring.items()):
            order = self._orders[coid]
            if order.is_closed:
                del self._expiring[coid]
            elif order.is_open and now >= ts:
                del self._expiring[coid]
                out.extend(self._apply_all(self._venue.expire(order, now)))
        return out

    # --- brackets -----------------------------------------------------------------------------
    def _register(self, b: Bracket) -> None:
        self._brackets[b.entry_id] = b
        for i in (b.entry_id, *b.exit_ids):
            self._bracket_of[i] = b.entry_id

    def _settle(self) -> list[OrderEvent]:
        """Bring every bracket touched by the last batch up to date, one action at a time."""
        out: list[OrderEvent] = []
        while self._dirty:
            events = self._bracket_step(self._brackets[self._dirty[0]])
            if events is None:
                self._dirty.pop(0)
            else:
                out.extend(events)
        return out

    def _bracket_step(self, b: Bracket) -> list[OrderEvent] | None:  # noqa: C901
        """Take the next action a bracket needs (cancel, send or grow an exit), or ``None``."""
        entry = self._orders[b.entry_id]
        exits = {i: self._orders.get(i) for i in b.exit_ids}
        made = [o for o in exits.values() if o is not None]
        if not b.resolved and any(o.filled_lots > 0 or o.is_closed for o in made):
            b.resolved = True
        if b.resolved:
            for o in made:
                if o.is_open and o.filled_lots == 0 and o.client_order_id not in b.canceled:
                    b.canceled.add(o.client_order_id)
                    return self._send_cancel(o, None)
        filled = entry.filled_lots
        if filled <= 0:
            return None
        if not b.resolved:
            for i in b.exit_ids:
                if exits[i] is None:
                    b.sized[i] = filled
                    return self._send_exit(b, entry, i, filled)
        for i, o in exits.items():
            if o is None or o.status not in _WORKING:
                continue
            other = exits[b.other(i)]
            target = filled - (other.filled_lots if other is not None else 0)
            if target > o.qty_lots and target > b.sized.get(i, 0):
                b.sized[i] = target
                return self._send_modify(o, target, None, None, None)
        return None

    def _exit_modify_problem(self, order: Order, qty: int | None) -> tuple[str, str] | None:
        """Refuse to grow a bracket exit beyond what its entry filled (less its sibling's)."""
        entry_id = order.parent_order_id
        if qty is None or not entry_id or entry_id not in self._brackets:
            return None
        b = self._brackets[entry_id]
        other = self._orders.get(b.other(order.client_order_id))
        cap = self._orders[entry_id].filled_lots - (other.filled_lots if other is not None else 0)
        if qty > cap:
            rule = f"<= {cap}, the entry's filled lots less the other exit's (a bracket exit)"
            return ERR_INVALID_MODIFY, str(ValidationError("qty_lots", rule, qty))
        return None

    def _send_exit(self, b: Bracket, entry: Order, exit_id: str, qty: int) -> list[OrderEvent]:
        now = self._clock.now_ns()
        tp = exit_id == b.take_profit_id
        if tp:
            otype, price, trigger = OrderType.LIMIT, b.take_profit_price_ticks, None
        else:
            otype = (
                OrderType.STOP_MARKET if b.stop_loss_price_ticks is None else (OrderType.STOP_LIMIT)
            )
            price, trigger = b.stop_loss_price_ticks, b.stop_loss_trigger_ticks
        order = Order(
            client_order_id=exit_id,
            symbol=entry.symbol,
            side=OrderSide.SELL if entry.side is OrderSide.BUY else OrderSide.BUY,
            order_type=otype,
            qty_lots=qty,
            price_ticks=price,
            tif=TimeInForce.GTC,
            reduce_only=True,
            strategy_id=entry.strategy_id,
            trigger_ts_init=entry.trigger_ts_init,
            trigger_price_ticks=trigger,
            parent_order_id=b.entry_id,
            oco_order_id=b.other(exit_id),
            ts_init=now,
            ts_last=now,
        )
        self._orders[exit_id] = order
        return self._send(order, now, now)

    # --- events -------------------------------------------------------------------------------
    def _apply_all(self, events: Sequence[OrderEvent]) -> list[OrderEvent]:
        out: list[OrderEvent] = []
        self._apply_raw(events, out)
        if self._dirty:
            out.extend(self._settle())
        return out

    def _apply_raw(self, events: Sequence[OrderEvent], out: list[OrderEvent]) -> None:
        for ev in events:
            self._apply(ev, out)

    def _apply(self, ev: OrderEvent, out: list[OrderEvent]) -> bool:
        """Apply one event to its order and append it (plus an overfill error) to ``out``;
        append an error instead, and return False, when it cannot apply."""
        order = self._orders.get(ev.client_order_id)
        if order is None:
            out.append(
                self._error(
                    ev.client_order_id,
                    ev.symbol,
                    ERR_UNKNOWN_ORDER,
                    f"{type(ev).__name__} for an unknown order",
                )
            )
            return False
        overfill_before = order.overfill_lots
        was_closed = order.is_closed
        try:
            order.apply(ev)
        except DuplicateTradeId as exc:
            error = self._error(ev.client_order_id, ev.symbol, ERR_DUPLICATE_TRADE_ID, str(exc))
        except IllegalTransition as exc:
            error = self._error(ev.client_order_id, ev.symbol, ERR_ILLEGAL_TRANSITION, str(exc))
        except ValidationError as exc:
            error = self._error(ev.client_order_id, ev.symbol, ERR_INVALID_EVENT, str(exc))
        else:
            out.append(ev)
            fill = isinstance(ev, OrderFilled)
            entry = self._bracket_of.get(ev.client_order_id)
            if entry is not None and (fill or order.is_closed) and entry not in self._dirty:
                self._dirty.append(entry)
            if fill:
                self._on_fill(ev, order, overfill_before, out)
            if not was_closed and order.is_closed:
                self._retire(ev.client_order_id)
            return True
        out.append(error)
        return False

    def _retire(self, client_order_id: str) -> None:
        """Keep a closed order for ``closed_orders_kept`` more closures (late events for it
        are still judged by the transition table, its id still refused), then forget it:
        memory and checkpoints stay bounded however long the session runs. Orders of a
        bracket are kept while the bracket is."""
        self._closed.append(client_order_id)
        while len(self._closed) > self._keep_closed:
            old = self._closed.popleft()
            o = self._orders.get(old)
            if o is not None and o.is_closed and old not in self._bracket_of:
                del self._orders[old]

    def _on_fill(
        self, ev: OrderFilled, order: Order, overfill_before: int, out: list[OrderEvent]
    ) -> None:
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

    def _duplicate(self, client_order_id: str, symbol: str) -> OrderError:
        return self._error(
            client_order_id, symbol, ERR_DUPLICATE_CLIENT_ORDER_ID, "client_order_id already used"
        )

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


def _modify_problem(order: Order, cmd: ModifyOrder) -> tuple[str, str] | None:  # noqa: PLR0911
    """Return ``(reason, detail)`` when ``cmd`` cannot amend ``order``, else ``None``."""
    qty, price, trigger = cmd.qty_lots, cmd.price_ticks, cmd.trigger_price_ticks
    otype = order.order_type
    if cmd.symbol and cmd.symbol != order.symbol:
        return ERR_INVALID_MODIFY, str(ValidationError("symbol", f"{order.symbol!r}", cmd.symbol))
    if qty is None and price is None and trigger is None:
        return ERR_INVALID_MODIFY, (
            "ModifyOrder must change qty_lots, price_ticks or trigger_price_ticks, was no change"
        )
    if qty is not None:
        if qty <= 0:
            return ERR_INVALID_MODIFY, str(ValidationError("qty_lots", "> 0", qty))
        if qty < order.filled_lots:
            return ERR_MODIFY_BELOW_FILLED, str(
                ValidationError("qty_lots", f">= filled_lots {order.filled_lots}", qty)
            )
    if price is not None:
        if not otype.has_limit:
            rule = f"None for a {otype.value} order"
            return ERR_INVALID_MODIFY, str(ValidationError("price_ticks", rule, price))
        if price <= 0:
            return ERR_INVALID_MODIFY, str(ValidationError("price_ticks", "> 0", price))
    if trigger is not None:
        if not otype.is_stop or order.is_triggered:
            rule = "None for an order with no pending trigger"
            return ERR_INVALID_MODIFY, str(ValidationError("trigger_price_ticks", rule, trigger))
        if trigger <= 0:
            return ERR_INVALID_MODIFY, str(ValidationError("trigger_price_ticks", "> 0", trigger))
    return None


def _bracket_problem(b: Bracket, entry: SubmitOrder, ids: tuple[str, ...]) -> str:
    """Return why a bracket is malformed, or ``""``."""
    if len(set(ids)) != len(ids):
        return str(ValidationError("take_profit_id, stop_loss_id", "distinct from the entry", ids))
    if b.take_profit_price_ticks <= 0:
        return str(ValidationError("take_profit_price_ticks", "> 0", b.take_profit_price_ticks))
    if b.stop_loss_trigger_ticks <= 0:
        return str(ValidationError("stop_loss_trigger_ticks", "> 0", b.stop_loss_trigger_ticks))
    if b.stop_loss_price_ticks is not None and b.stop_loss_price_ticks <= 0:
        return str(ValidationError("stop_loss_price_ticks", "> 0", b.stop_loss_price_ticks))
    buy = OrderSide(entry.side) is OrderSide.BUY
    tp, sl = b.take_profit_price_ticks, b.stop_loss_trigger_ticks
    if (tp <= sl) if buy else (tp >= sl):
        rule = f"{'>' if buy else '<'} stop_loss_trigger_ticks {sl} for a {entry.side} entry"
        return str(ValidationError("take_profit_price_ticks", rule, tp))
    return ""
