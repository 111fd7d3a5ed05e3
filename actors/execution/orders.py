"""Orders owned by the execution engine, and the strict table of their legal transitions.

An :class:`Order` changes only through :meth:`Order.apply`, one event at a time. The table
:data:`TRANSITIONS` says, for each status, which event types are legal and where they lead;
anything else raises :class:`~actors.core.errors.IllegalTransition` and leaves the order as it
was. Two targets are resolved by quantity rather than read literally:

* ``"OrderFilled"`` leads to ``PARTIALLY_FILLED`` in the table; the order becomes ``FILLED``
  once ``filled_lots`` reaches ``qty_lots``.
* ``"OrderUpdated"`` and ``"OrderAccepted"`` out of a pending state lead to ``ACCEPTED`` in
  the table; an order with lots already filled returns to ``PARTIALLY_FILLED`` instead.

A fill that races a cancel is legal (``PENDING_CANCEL`` + fill); a fill after ``CANCELED`` is
not. A fill beyond the order quantity is an *overfill*: the excess is recorded in
``overfill_lots`` and the order becomes ``FILLED``. A fill or a trigger may race an amend too:
the amend's answer (``OrderUpdated`` / ``OrderModifyRejected``) is then legal from
``PARTIALLY_FILLED`` / ``TRIGGERED``; a trigger may race a cancel. An amend that shrinks
``qty_lots`` to ``filled_lots`` completes the order (``FILLED``).

A :class:`Bracket` links an entry order to its take-profit and stop-loss exits; the execution
engine keeps it (see ``actors.execution.engine``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from actors.core.errors import IllegalTransition, RaydeskError, ValidationError
from actors.core.messages import (
    OrderAccepted,
    OrderEvent,
    OrderFilled,
    OrderSide,
    OrderStatus,
    OrderType,
    SubmitOrder,
    TimeInForce,
)

S = OrderStatus
_E = TypeVar("_E", bound=Enum)


# --- extra order events -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderPendingCancel(OrderEvent):
    """A cancel request was sent to the venue; the order may still fill until it is acked."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderPendingUpdate(OrderEvent):
    """An amend request was sent to the venue."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderUpdated(OrderEvent):
    """The venue applied an amend. ``None`` fields are unchanged."""

    qty_lots: int | None = None
    price_ticks: int | None = None
    trigger_price_ticks: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderModifyRejected(OrderEvent):
    """The venue refused an amend; the order works on unchanged. ``reason`` is a stable code."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderTriggered(OrderEvent):
    """A conditional order's trigger fired at the venue."""


class DuplicateTradeId(RaydeskError):
    """A fill arrived with a ``trade_id`` the order has already seen; the order is unchanged."""

    def __init__(self, client_order_id: str, trade_id: str) -> None:
        self.client_order_id = client_order_id
        self.trade_id = trade_id
        super().__init__(f"order {client_order_id}: trade_id must be new, was {trade_id!r}")


# --- the transition table ---------------------------------------------------------------------
_FILL = "OrderFilled"

TRANSITIONS: dict[OrderStatus, dict[str, OrderStatus]] = {
    S.INITIALIZED: {
        "OrderDenied": S.DENIED,
        "OrderSubmitted": S.SUBMITTED,
    },
    S.SUBMITTED: {
        "OrderAccepted": S.ACCEPTED,
        "OrderRejected": S.REJECTED,
        "OrderCanceled": S.CANCELED,  # e.g. FOK / IOC killed before the ack
        "OrderPendingCancel": S.PENDING_CANCEL,
        "OrderPendingUpdate": S.PENDING_UPDATE,
        "OrderTriggered": S.TRIGGERED,
        _FILL: S.PARTIALLY_FILLED,  # fast venues fill before they ack
    },
    S.ACCEPTED: {
        "OrderCanceled": S.CANCELED,
        "OrderExpired": S.EXPIRED,
        "OrderPendingCancel": S.PENDING_CANCEL,
        "OrderPendingUpdate": S.PENDING_UPDATE,
        "OrderTriggered": S.TRIGGERED,
        _FILL: S.PARTIALLY_FILLED,
    },
    S.TRIGGERED: {
        "OrderCanceled": S.CANCELED,
        "OrderExpired": S.EXPIRED,
        "OrderRejected": S.REJECTED,
        "OrderPendingCancel": S.PENDING_CANCEL,
        "OrderPendingUpdate": S.PENDING_UPDATE,
        "OrderUpdated": S.TRIGGERED,  # the ack of an amend a trigger raced
        "OrderModifyRejected": S.TRIGGERED,
        _FILL: S.PARTIALLY_FILLED,
    },
    S.PENDING_UPDATE: {
        "OrderUpdated": S.ACCEPTED,
        "OrderAccepted": S.ACCEPTED,  # amend refused: back to working
        "OrderModifyRejected": S.ACCEPTED,  # amend refused, with its reason
        "OrderRejected": S.REJECTED,
        "OrderCanceled": S.CANCELED,
        "OrderExpired": S.EXPIRED,
        "OrderPendingCancel": S.PENDING_CANCEL,
        "OrderTriggered": S.TRIGGERED,  # a trigger racing the amend
        _FILL: S.PARTIALLY_FILLED,
    },
    S.PENDING_CANCEL: {
        "OrderCanceled": S.CANCELED,
        "OrderExpired": S.EXPIRED,
        "OrderRejected": S.REJECTED,  # the venue refused the order itself while we canceled
        "OrderAccepted": S.ACCEPTED,  # cancel refused: back to working
        "OrderTriggered": S.TRIGGERED,  # a trigger racing the cancel
        _FILL: S.PARTIALLY_FILLED,  # a fill racing the cancel
    },
    S.PARTIALLY_FILLED: {
        "OrderCanceled": S.CANCELED,
        "OrderExpired": S.EXPIRED,
        "OrderPendingCancel": S.PENDING_CANCEL,
        "OrderPendingUpdate": S.PENDING_UPDATE,
        "OrderUpdated": S.PARTIALLY_FILLED,  # the ack of an amend a fill raced
        "OrderModifyRejected": S.PARTIALLY_FILLED,
        _FILL: S.PARTIALLY_FILLED,
    },
    S.DENIED: {},
    S.REJECTED: {},
    S.FILLED: {},
    S.CANCELED: {},
    S.EXPIRED: {},
}

TERMINAL: frozenset[OrderStatus] = frozenset(
    {S.DENIED, S.REJECTED, S.FILLED, S.CANCELED, S.EXPIRED}
)
"""Statuses an order never leaves."""

_PENDING: frozenset[OrderStatus] = frozenset({S.PENDING_CANCEL, S.PENDING_UPDATE})


def transition(
    status: OrderStatus,
    event_type: str,
    *,
    qty_lots: int = 0,
    filled_lots: int = 0,
    last_qty_lots: int = 0,
    client_order_id: str = "",
) -> OrderStatus:
    """Return where ``event_type`` takes an order in ``status``, resolving fills by quantity.

    This is the table plus its two quantity rules, usable on plain journal records: a fill
    leads to ``FILLED`` once ``filled_lots + last_qty_lots >= qty_lots`` (else
    ``PARTIALLY_FILLED``), and a return to ``ACCEPTED`` out of a pending state leads to
    ``PARTIALLY_FILLED`` when lots are already filled.

    Args:
        status: The order's current status.
        event_type: The event's class name, e.g. ``"OrderFilled"``.
        qty_lots: The order quantity (fills only).
        filled_lots: Lots filled before this event.
        last_qty_lots: Lots of this fill (fills only).
        client_order_id: Named in the error.

    Raises:
        IllegalTransition: The table has no entry for ``(status, event_type)``.
    """
    return _resolve(status, event_type, qty_lots, filled_lots, last_qty_lots, client_order_id)


def next_status(order: Order, event: OrderEvent) -> OrderStatus:
    """Return the status ``event`` would move ``order`` to, without changing it.

    Raises:
        IllegalTransition: The table has no entry for ``(order.status, type(event))``.
    """
    return _resolve(
        order.status,
        type(event).__name__,
        order.qty_lots,
        order.filled_lots,
        event.last_qty_lots if isinstance(event, OrderFilled) else 0,
        order.client_order_id,
    )


def _resolve(
    status: OrderStatus | str,
    event_type: str,
    qty_lots: int,
    filled_lots: int,
    last_qty_lots: int,
    client_order_id: str,
) -> OrderStatus:
    """:func:`transition` with positional arguments (the hot path of :meth:`Order.apply`)."""
    if type(status) is not OrderStatus:  # a member needs no lookup by value
        status = OrderStatus(status)
    target = TRANSITIONS[status].get(event_type)
    if target is None:
        raise IllegalTransition(client_order_id, status.value, event_type)
    if event_type == _FILL:
        return S.FILLED if filled_lots + last_qty_lots >= qty_lots else S.PARTIALLY_FILLED
    if target is S.ACCEPTED and status in _PENDING and filled_lots > 0:
        return S.PARTIALLY_FILLED
    return target


def _member(enum: type[_E], value: Any) -> _E:
    """Return ``value`` as a member of ``enum``: a member as it is (an identity check, no
    lookup by value), anything else through ``enum(value)`` (which validates it)."""
    return value if type(value) is enum else enum(value)


# --- the order --------------------------------------------------------------------------------
@dataclass(slots=True, eq=False)
class Order:
    """A mutable order, owned by the execution engine.

    Attributes:
        client_order_id: Unique id chosen by the strategy.
        symbol: Instrument symbol.
        side: BUY or SELL.
        order_type: MARKET, LIMIT, STOP_MARKET or STOP_LIMIT (kept after a stop triggers).
        qty_lots: Ordered quantity in lots.
        price_ticks: Limit price in ticks (``None`` for market and stop-market orders).
        tif: Time in force.
        reduce_only: The order may only reduce a position.
        strategy_id: Strategy that sent it.
        trigger_ts_init: ``ts_init`` of the market event that led to the order.
        trigger_price_ticks: Stop trigger price in ticks (``None`` for non-stop orders).
        expire_ts_ns: The order expires once the clock reaches this (0 = never).
        post_only: Maker-only limit order.
        parent_order_id: The bracket entry of an exit order (``""`` otherwise).
        oco_order_id: The other exit of a bracket exit order (``""`` otherwise).
        status: Current status.
        venue_order_id: Id given by the venue on acceptance (``""`` before).
        filled_lots: Lots filled, capped at ``qty_lots``.
        overfill_lots: Lots filled beyond ``qty_lots`` (should stay 0).
        avg_px_ticks: Volume-weighted fill price of ``filled_lots``, in (float) ticks.
        trade_ids: Trade ids of every fill applied.
        ts_init: When the order was created.
        ts_last: ``ts_event`` of the last event applied.
        ts_accepted: ``ts_event`` of the acceptance (0 before).
        ts_closed: ``ts_event`` of the event that closed it (0 while open).
        ts_triggered: ``ts_event`` of the stop's trigger (0 before).
        event_count: Events applied so far.
    """

    client_order_id: str
    symbol: str
    side: OrderSide
    order_type: OrderType
    qty_lots: int
    price_ticks: int | None = None
    tif: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    strategy_id: str = "default"
    trigger_ts_init: int = 0
    trigger_price_ticks: int | None = None
    expire_ts_ns: int = 0
    post_only: bool = False
    parent_order_id: str = ""
    oco_order_id: str = ""
    status: OrderStatus = S.INITIALIZED
    venue_order_id: str = ""
    filled_lots: int = 0
    overfill_lots: int = 0
    avg_px_ticks: float = 0.0
    trade_ids: set[str] = field(default_factory=set)
    ts_init: int = 0
    ts_last: int = 0
    ts_accepted: int = 0
    ts_closed: int = 0
    ts_triggered: int = 0
    event_count: int = 0

    @classmethod
    def from_submit(cls, cmd: SubmitOrder) -> Order:
        """Create an ``INITIALIZED`` order from a :class:`SubmitOrder` command."""
        return cls(
            client_order_id=cmd.client_order_id,
            symbol=cmd.symbol,
            side=_member(OrderSide, cmd.side),
            order_type=_member(OrderType, cmd.order_type),
            qty_lots=int(cmd.qty_lots),
            price_ticks=None if cmd.price_ticks is None else int(cmd.price_ticks),
            tif=_member(TimeInForce, cmd.tif),
            reduce_only=bool(cmd.reduce_only),
            strategy_id=cmd.strategy_id,
            trigger_ts_init=int(cmd.trigger_ts_init),
            trigger_price_ticks=_opt_int(cmd.trigger_price_ticks),
            expire_ts_ns=int(cmd.expire_ts_ns),
            post_only=bool(cmd.post_only),
            ts_init=int(cmd.ts_init),
            ts_last=int(cmd.ts_init),
        )

    # --- queries ------------------------------------------------------------------------------
    @property
    def leaves_lots(self) -> int:
        """Lots still to fill (0 once closed)."""
        if self.status in TERMINAL:
            return 0
        return max(0, self.qty_lots - self.filled_lots)

    @property
    def is_closed(self) -> bool:
        """True in a terminal status."""
        return self.status in TERMINAL

    @property
    def is_open(self) -> bool:
        """True once sent to the venue and until closed."""
        return self.status not in TERMINAL and self.status is not S.INITIALIZED

    @property
    def is_triggered(self) -> bool:
        """True once a stop order's trigger has fired (always False for other orders)."""
        return self.ts_triggered > 0

    # --- the only mutator ---------------------------------------------------------------------
    def apply(self, event: OrderEvent) -> OrderStatus:
        """Apply one event and return the new status.

        Args:
            event: An order event for this order.

        Returns:
            The status after the event.

        Raises:
            IllegalTransition: The transition table forbids ``event`` in the current status.
            DuplicateTradeId: A fill repeats a ``trade_id`` already applied.
            ValidationError: The event belongs to another order, or a fill is malformed
                (quantity not positive, wrong side).

        In every error case the order is left exactly as it was.
        """
        if event.client_order_id != self.client_order_id:
            raise ValidationError(
                "client_order_id", repr(self.client_order_id), event.client_order_id
            )
        fill = isinstance(event, OrderFilled)
        target = _resolve(  # next_status(self, event), without a second isinstance
            self.status,
            type(event).__name__,
            self.qty_lots,
            self.filled_lots,
            event.last_qty_lots if fill else 0,
            self.client_order_id,
        )
        if fill:
            self._check_fill(event)
            self._apply_fill(event)
        elif isinstance(event, OrderAccepted):
            if event.venue_order_id:
                self.venue_order_id = event.venue_order_id
            if not self.ts_accepted:
                self.ts_accepted = event.ts_event
        elif isinstance(event, OrderUpdated):
            if event.qty_lots is not None:
                self.qty_lots = int(event.qty_lots)
            if event.price_ticks is not None:
                self.price_ticks = int(event.price_ticks)
            if event.trigger_price_ticks is not None:
                self.trigger_price_ticks = int(event.trigger_price_ticks)
            if self.filled_lots >= self.qty_lots > 0:
                target = S.FILLED
        elif isinstance(event, OrderTriggered):
            self.ts_triggered = event.ts_event
        self.status = target
        self.ts_last = event.ts_event
        self.event_count += 1
        if target in TERMINAL:
            self.ts_closed = event.ts_event
        return target

    def _check_fill(self, fill: OrderFilled) -> None:
        if fill.trade_id in self.trade_ids:
            raise DuplicateTradeId(self.client_order_id, fill.trade_id)
        if fill.last_qty_lots <= 0:
            raise ValidationError("last_qty_lots", "> 0", fill.last_qty_lots)
        if _member(OrderSide, fill.side) is not self.side:
            raise ValidationError("side", f"the order side {self.side.value}", fill.side)

    def _apply_fill(self, fill: OrderFilled) -> None:
        room = max(0, self.qty_lots - self.filled_lots)
        take = min(room, fill.last_qty_lots)
        self.overfill_lots += fill.last_qty_lots - take
        if take:
            total = self.filled_lots + take
            self.avg_px_ticks = (
                self.avg_px_ticks * self.filled_lots + float(fill.last_px_ticks) * take
            ) / total
            self.filled_lots = total
        self.trade_ids.add(fill.trade_id)

    # --- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict of the whole order."""
        return {
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "order_type": self.order_type.value,
            "qty_lots": self.qty_lots,
            "price_ticks": self.price_ticks,
            "tif": self.tif.value,
            "reduce_only": self.reduce_only,
            "strategy_id": self.strategy_id,
            "trigger_ts_init": self.trigger_ts_init,
            "trigger_price_ticks": self.trigger_price_ticks,
            "expire_ts_ns": self.expire_ts_ns,
            "post_only": self.post_only,
            "parent_order_id": self.parent_order_id,
            "oco_order_id": self.oco_order_id,
            "status": self.status.value,
            "venue_order_id": self.venue_order_id,
            "filled_lots": self.filled_lots,
            "overfill_lots": self.overfill_lots,
            "avg_px_ticks": self.avg_px_ticks,
            "trade_ids": sorted(self.trade_ids),
            "ts_init": self.ts_init,
            "ts_last": self.ts_last,
            "ts_accepted": self.ts_accepted,
            "ts_closed": self.ts_closed,
            "ts_triggered": self.ts_triggered,
            "event_count": self.event_count,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Order:
        """Rebuild an order from :meth:`to_dict` output."""
        return cls(
            client_order_id=d["client_order_id"],
            symbol=d["symbol"],
            side=OrderSide(d["side"]),
            order_type=OrderType(d["order_type"]),
            qty_lots=int(d["qty_lots"]),
            price_ticks=None if d["price_ticks"] is None else int(d["price_ticks"]),
            tif=TimeInForce(d["tif"]),
            reduce_only=bool(d["reduce_only"]),
            strategy_id=d["strategy_id"],
            trigger_ts_init=int(d["trigger_ts_init"]),
            trigger_price_ticks=_opt_int(d.get("trigger_price_ticks")),
            expire_ts_ns=int(d.get("expire_ts_ns", 0)),
            post_only=bool(d.get("post_only", False)),
            parent_order_id=str(d.get("parent_order_id", "")),
            oco_order_id=str(d.get("oco_order_id", "")),
            status=OrderStatus(d["status"]),
            venue_order_id=d["venue_order_id"],
            filled_lots=int(d["filled_lots"]),
            overfill_lots=int(d["overfill_lots"]),
            avg_px_ticks=float(d["avg_px_ticks"]),
            trade_ids=set(d["trade_ids"]),
            ts_init=int(d["ts_init"]),
            ts_last=int(d["ts_last"]),
            ts_accepted=int(d["ts_accepted"]),
            ts_closed=int(d["ts_closed"]),
            ts_triggered=int(d.get("ts_triggered", 0)),
            event_count=int(d["event_count"]),
        )


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


# --- brackets ---------------------------------------------------------------------------------
@dataclass(slots=True, eq=False)
class Bracket:
    """An entry order linked to a take-profit and a stop-loss exit (one-cancels-other).

    The exits do not exist until the entry fills; the execution engine then sends them sized
    to the entry's filled quantity and grows them as it fills further.

    Attributes:
        entry_id: Client order id of the entry.
        take_profit_id: Client order id of the take-profit (``LIMIT``) exit.
        stop_loss_id: Client order id of the stop-loss (``STOP_MARKET`` / ``STOP_LIMIT``) exit.
        take_profit_price_ticks: Take-profit limit price.
        stop_loss_trigger_ticks: Stop-loss trigger price.
        stop_loss_price_ticks: Stop-loss limit price (``None``: a stop-market exit).
        resolved: An exit has filled or closed: the other is canceled, none is sent any more.
        sized: Per exit id, the quantity it was last sent or amended to by the engine.
        canceled: Exit ids the engine has asked to cancel (never asked twice).
    """

    entry_id: str
    take_profit_id: str
    stop_loss_id: str
    take_profit_price_ticks: int
    stop_loss_trigger_ticks: int
    stop_loss_price_ticks: int | None = None
    resolved: bool = False
    sized: dict[str, int] = field(default_factory=dict)
    canceled: set[str] = field(default_factory=set)

    @property
    def exit_ids(self) -> tuple[str, str]:
        """``(take_profit_id, stop_loss_id)``."""
        return (self.take_profit_id, self.stop_loss_id)

    def other(self, exit_id: str) -> str:
        """Return the other exit's id."""
        return self.stop_loss_id if exit_id == self.take_profit_id else self.take_profit_id

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {
            "entry_id": self.entry_id,
            "take_profit_id": self.take_profit_id,
            "stop_loss_id": self.stop_loss_id,
            "take_profit_price_ticks": self.take_profit_price_ticks,
            "stop_loss_trigger_ticks": self.stop_loss_trigger_ticks,
            "stop_loss_price_ticks": self.stop_loss_price_ticks,
            "resolved": self.resolved,
            "sized": dict(sorted(self.sized.items())),
            "canceled": sorted(self.canceled),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Bracket:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            entry_id=d["entry_id"],
            take_profit_id=d["take_profit_id"],
            stop_loss_id=d["stop_loss_id"],
            take_profit_price_ticks=int(d["take_profit_price_ticks"]),
            stop_loss_trigger_ticks=int(d["stop_loss_trigger_ticks"]),
            stop_loss_price_ticks=_opt_int(d.get("stop_loss_price_ticks")),
            resolved=bool(d.get("resolved", False)),
            sized={str(k): int(v) for k, v in d.get("sized", {}).items()},
            canceled=set(d.get("canceled", [])),
        )
