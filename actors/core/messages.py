"""Commands (imperative) and events (past tense): immutable, both clocks in int ns.

Every message turns into a plain record (``to_record``) for the journal: a dict with a ``type``
key and JSON-safe values, so that a replay's journal is byte-for-byte reproducible.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar


class OrderSide(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is OrderSide.BUY else -1


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP_MARKET = "STOP_MARKET"
    STOP_LIMIT = "STOP_LIMIT"

    @property
    def is_stop(self) -> bool:
        return self is OrderType.STOP_MARKET or self is OrderType.STOP_LIMIT

    @property
    def has_limit(self) -> bool:
        return self is OrderType.LIMIT or self is OrderType.STOP_LIMIT


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class OrderStatus(StrEnum):
    INITIALIZED = "INITIALIZED"
    DENIED = "DENIED"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    TRIGGERED = "TRIGGERED"
    PENDING_UPDATE = "PENDING_UPDATE"
    PENDING_CANCEL = "PENDING_CANCEL"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"


class LiquiditySide(StrEnum):
    MAKER = "MAKER"
    TAKER = "TAKER"


def _plain(v: Any) -> Any:
    if isinstance(v, StrEnum):
        return v.value
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of commands and events."""

    ts_event: int
    ts_init: int

    kind: ClassVar[str] = "message"

    def to_record(self) -> dict[str, Any]:
        """Return a JSON-safe dict with a ``type`` key naming the message class."""
        rec: dict[str, Any] = {"type": type(self).__name__}
        for f in dataclasses.fields(self):
            rec[f.name] = _plain(getattr(self, f.name))
        return rec


# --- commands ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitOrder(Message):
    """Ask for a new order. ``price_ticks`` is ``None`` for market orders.

    ``trigger_ts_init`` is the ``ts_init`` of the market event that led to the order: latency
    is measured from it. ``features_ts_ns`` is when the features behind the order were computed
    and ``signal_ts_ns`` when the model output behind it was produced (both on the deciding
    engine's clock; 0 for an order no model drove): risk denies either when too old.

    ``trigger_price_ticks`` is the trigger of a ``STOP_MARKET`` / ``STOP_LIMIT`` order (a buy
    stop triggers when the reference price is ``>=`` it, a sell stop when ``<=``; the
    reference is the book's last trade, else its mid). ``expire_ts_ns`` ends an open order
    (``EXPIRED``) once the execution clock reaches it; 0 = never. ``post_only`` makes a
    ``LIMIT`` / ``GTC`` order maker-only: one that would cross on arrival is rejected.
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
    decision_id: str = ""
    trigger_ts_init: int = 0
    features_ts_ns: int = 0
    signal_ts_ns: int = 0
    trigger_price_ticks: int | None = None
    expire_ts_ns: int = 0
    post_only: bool = False

    kind: ClassVar[str] = "command"


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrder(Message):
    """Ask to cancel a working order."""

    client_order_id: str
    symbol: str

    kind: ClassVar[str] = "command"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModifyOrder(Message):
    """Ask to amend a working order. ``None`` fields stay as they are.

    ``qty_lots`` is the new total quantity (filled lots included): below the filled quantity
    the amend is refused, equal to it the order is done. A price change or a size increase
    sends the order to the back of its level's queue; a size decrease keeps its place.
    ``trigger_price_ticks`` moves the trigger of a stop order that has not triggered yet.
    """

    client_order_id: str
    symbol: str
    qty_lots: int | None = None
    price_ticks: int | None = None
    trigger_price_ticks: int | None = None

    kind: ClassVar[str] = "command"


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitBracket(Message):
    """Ask for an entry order with a take-profit and a stop-loss exit (one-cancels-other).

    The exits are sent when the entry fills, sized to its filled quantity (and grown as it
    fills further), on the opposite side, ``GTC`` and ``reduce_only``: a ``LIMIT`` take-profit
    at ``take_profit_price_ticks`` and a stop-loss triggering at ``stop_loss_trigger_ticks``
    (``STOP_MARKET``, or ``STOP_LIMIT`` at ``stop_loss_price_ticks`` when given). A fill on
    either exit cancels the other's remaining quantity. Exit ids default to
    ``"{entry id}-TP"`` and ``"{entry id}-SL"``.
    """

    entry: SubmitOrder
    take_profit_price_ticks: int
    stop_loss_trigger_ticks: int
    stop_loss_price_ticks: int | None = None
    take_profit_id: str = ""
    stop_loss_id: str = ""

    kind: ClassVar[str] = "command"

    @property
    def client_order_id(self) -> str:
        """The entry's client order id."""
        return self.entry.client_order_id

    @property
    def symbol(self) -> str:
        """The entry's symbol."""
        return self.entry.symbol

    def to_record(self) -> dict[str, Any]:
        """Return a JSON-safe dict; the entry is nested as its own record."""
        rec = Message.to_record(self)
        rec["entry"] = self.entry.to_record()
        return rec


# --- order events -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderEvent(Message):
    client_order_id: str
    symbol: str

    kind: ClassVar[str] = "event"


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderDenied(OrderEvent):
    """Risk refused the order before it reached a venue. ``reason`` is a stable code."""

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderSubmitted(OrderEvent):
    """The order was sent to the venue."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderAccepted(OrderEvent):
    """The venue accepted the order."""

    venue_order_id: str
    trigger_ts_init: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRejected(OrderEvent):
    """The venue refused the order."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFilled(OrderEvent):
    """A (partial) fill. ``fee`` is in quote currency, positive = paid."""

    trade_id: str
    side: OrderSide
    last_qty_lots: int
    last_px_ticks: int
    liquidity: LiquiditySide
    fee: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCanceled(OrderEvent):
    """The order was canceled (on request, or the rest of an IOC order)."""

    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderExpired(OrderEvent):
    """The order's time in force ran out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderError(OrderEvent):
    """Something asked for an illegal transition or a duplicate; the order is unchanged."""

    reason: str
    detail: str = ""


# --- other records ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionMade(Message):
    """A model decision at a decision point, with what risk made of it.

    Attributes:
        decision_id: Unique, deterministic id (``"{symbol}-{n}"``).
        models: ``{model_name: version}`` of every model that voted.
        feature_hash: Hash of the feature vector the models saw.
        inference_latency_ns: As measured by the deciding engine's clock.
        probs: Combined class probabilities ``[down, flat, up]``.
        signal: -1, 0 or +1.
        risk_verdict: ``"ACCEPTED"``, ``"DENIED"`` or ``"NO_ORDER"``.
        risk_reason: Stable denial code, or ``""``.
    """

    decision_id: str
    symbol: str
    models: dict[str, str] = field(default_factory=dict)
    feature_hash: str = ""
    inference_latency_ns: int = 0
    probs: tuple[float, float, float] = (0.0, 1.0, 0.0)
    signal: int = 0
    client_order_id: str = ""
    risk_verdict: str = "NO_ORDER"
    risk_reason: str = ""

    kind: ClassVar[str] = "decision"


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingStateChanged(Message):
    """The risk engine's trading state changed (e.g. the kill switch tripped).

    ``reason`` is a stable code (``DAILY_LOSS_LIMIT``, ``MAX_DRAWDOWN``, ``REARMED:{operator}``,
    ``MANUAL:...``); ``detail`` names the values (``"pnl -5012.5 <= -5000.0"``).
    """

    state: str
    reason: str
    detail: str = ""

    kind: ClassVar[str] = "event"


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskAlert(Message):
    """Something risk wants on the record that is not an order event or a state change.

    ``code`` is stable (``REARM_REFUSED``, ``CORRELATION_HIGH``); ``detail`` names the values.
    """

    code: str
    detail: str

    kind: ClassVar[str] = "event"
