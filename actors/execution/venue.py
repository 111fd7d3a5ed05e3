"""Venues: where orders go. :class:`PaperVenue` matches against the current :class:`BookView`.

Paper matching rules:

* Market orders walk the opposite levels (taker); what the book cannot fill is canceled with
  reason ``"NO_LIQUIDITY"``.
* Limit orders fill their marketable part against levels at or better than the limit (taker);
  then ``IOC`` cancels the rest (``"IOC"``), ``FOK`` is all-or-nothing (``"FOK"``, no fill),
  ``GTC`` rests.
* Liquidity our fills took from one view is gone for the next order on the same view
  (consumption is tracked per symbol and view ``(seq, ts_event, ts_init)``).
* A resting order joins the back of the queue: ``queue_ahead`` is the displayed size at its
  price on arrival. Each later view's trades at its price (aggressor on the other side) first
  eat ``queue_ahead``, then fill it (maker); a trade through its price fills it up to the
  trade's size (shared, in arrival order, by our resting orders it went through); an
  opposite touch that crosses its price fills it at its price, up to the crossing size.
  ``queue_ahead`` never exceeds the size displayed at its price.

Ids are deterministic: venue order ids ``"P-{n}"``, trade ids ``"{client_order_id}-{n}"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from actors.core.instruments import Instrument
from actors.core.messages import (
    LiquiditySide,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderType,
    TimeInForce,
)
from actors.core.views import BookView
from actors.execution.orders import Order

ViewKey = tuple[int, int, int]

# cancel / reject reasons
CANCEL_REQUESTED = "REQUESTED"
CANCEL_NOT_AT_VENUE = "NOT_AT_VENUE"
CANCEL_IOC = "IOC"
CANCEL_FOK = "FOK"
CANCEL_NO_LIQUIDITY = "NO_LIQUIDITY"
REJECT_INSTRUMENT_UNKNOWN = "INSTRUMENT_UNKNOWN"
REJECT_INVALID_QTY = "INVALID_QTY"
REJECT_INVALID_PRICE = "INVALID_PRICE"
REJECT_NO_MARKET_DATA = "NO_MARKET_DATA"
REJECT_BOOK_QUARANTINED = "BOOK_QUARANTINED"


class Venue(Protocol):
    """What the execution engine needs of a venue.

    Every method returns the order events the venue produced, in order; the engine applies
    them to its orders. A venue never mutates an :class:`Order`.
    """

    def submit(self, order: Order, book: BookView | None, now_ns: int) -> list[OrderEvent]:
        """Take a new (``SUBMITTED``) order; return its acceptance or rejection and any fills."""
        ...

    def cancel(self, order: Order, now_ns: int) -> list[OrderEvent]:
        """Cancel a working order; return the cancel (or nothing if the ack comes later)."""
        ...

    def on_market(self, book: BookView, now_ns: int) -> list[OrderEvent]:
        """Match resting orders of ``book.symbol`` against a new view; return their fills."""
        ...


def view_key(book: BookView) -> ViewKey:
    """Return the identity of one view of a book: ``(seq, ts_event, ts_init)``."""
    return (int(book.seq), int(book.ts_event), int(book.ts_init))


def _is_buy_aggressor(aggressor: str) -> bool:
    return aggressor.upper() in ("BUY", "BID", "B")


@dataclass(slots=True)
class RestingOrder:
    """The venue's record of a resting GTC limit order."""

    client_order_id: str
    symbol: str
    side: OrderSide
    price_ticks: int
    leaves_lots: int
    queue_ahead_lots: int
    last_view: ViewKey

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "price_ticks": self.price_ticks,
            "leaves_lots": self.leaves_lots,
            "queue_ahead_lots": self.queue_ahead_lots,
            "last_view": list(self.last_view),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RestingOrder:
        """Rebuild from :meth:`to_dict` output."""
        k = d["last_view"]
        return cls(
            client_order_id=d["client_order_id"],
            symbol=d["symbol"],
            side=OrderSide(d["side"]),
            price_ticks=int(d["price_ticks"]),
            leaves_lots=int(d["leaves_lots"]),
            queue_ahead_lots=int(d["queue_ahead_lots"]),
            last_view=(int(k[0]), int(k[1]), int(k[2])),
        )


class PaperVenue:
    """A simulated venue that matches against the symbol's current :class:`BookView`.

    Args:
        instruments: Instruments by symbol.
        maker_fee_bps: Maker fee in bps of notional (positive = paid, negative = rebate).
        taker_fee_bps: Taker fee in bps of notional.
    """

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        maker_fee_bps: float = 0.0,
        taker_fee_bps: float = 0.0,
    ) -> None:
        self._instruments = dict(instruments)
        self._maker_bps = float(maker_fee_bps)
        self._taker_bps = float(taker_fee_bps)
        self._resting: dict[str, RestingOrder] = {}
        self._fill_counts: dict[str, int] = {}
        self._order_seq = 0
        # symbol -> (view, {("A"|"B", price): lots consumed by our fills on that view})
        self._consumed: dict[str, tuple[ViewKey, dict[tuple[str, int], int]]] = {}

    # --- queries ------------------------------------------------------------------------------
    def resting(self) -> list[RestingOrder]:
        """Return copies of the resting orders, in arrival order."""
        return [RestingOrder.from_dict(r.to_dict()) for r in self._resting.values()]

    def resting_order(self, client_order_id: str) -> RestingOrder | None:
        """Return the venue's record of a resting order, or ``None``."""
        return self._resting.get(client_order_id)

    # --- Venue --------------------------------------------------------------------------------
    def submit(self, order: Order, book: BookView | None, now_ns: int) -> list[OrderEvent]:
        """Accept (or reject) ``order`` and match it against ``book``; see the module doc."""
        base = {
            "ts_event": now_ns,
            "ts_init": now_ns,
            "client_order_id": order.client_order_id,
            "symbol": order.symbol,
        }
        inst = self._instruments.get(order.symbol)
        qty = order.qty_lots - order.filled_lots
        reason = ""
        if inst is None:
            reason = REJECT_INSTRUMENT_UNKNOWN
        elif qty <= 0:
            reason = REJECT_INVALID_QTY
        elif order.order_type is OrderType.LIMIT and (
            order.price_ticks is None or order.price_ticks <= 0
        ):
            reason = REJECT_INVALID_PRICE
        elif book is None or book.symbol != order.symbol:
            reason = REJECT_NO_MARKET_DATA
        elif book.quarantined:
            reason = REJECT_BOOK_QUARANTINED
        if reason or inst is None or book is None:
            return [OrderRejected(reason=reason, **base)]

        self._order_seq += 1
        events: list[OrderEvent] = [
            OrderAccepted(
                venue_order_id=f"P-{self._order_seq}", trigger_ts_init=order.trigger_ts_init, **base
            )
        ]
        limit = order.price_ticks if order.order_type is OrderType.LIMIT else None
        levels = self._opposite(book, inst, order.side, limit)
        if order.tif is TimeInForce.FOK and sum(lots for _, lots in levels) < qty:
            events.append(OrderCanceled(reason=CANCEL_FOK, **base))
            return events

        book_side = "A" if order.side is OrderSide.BUY else "B"
        consumed = self._consumption(book)
        leaves = qty
        for px, lots in levels:
            if leaves == 0:
                break
            take = min(leaves, lots)
            consumed[(book_side, px)] = consumed.get((book_side, px), 0) + take
            leaves -= take
            events.append(
                self._fill(
                    order.client_order_id,
                    order.symbol,
                    order.side,
                    take,
                    px,
                    LiquiditySide.TAKER,
                    inst,
                    now_ns,
                )
            )
        if leaves == 0:
            self._fill_counts.pop(order.client_order_id, None)
            return events
        if order.order_type is OrderType.MARKET:
            events.append(OrderCanceled(reason=CANCEL_NO_LIQUIDITY, **base))
        elif order.tif is TimeInForce.IOC:
            events.append(OrderCanceled(reason=CANCEL_IOC, **base))
        else:
            assert order.price_ticks is not None
            self._resting[order.client_order_id] = RestingOrder(
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                side=order.side,
                price_ticks=order.price_ticks,
                leaves_lots=leaves,
                queue_ahead_lots=self._displayed(book, inst, order.side, order.price_ticks),
                last_view=view_key(book),
            )
            return events
        self._fill_counts.pop(order.client_order_id, None)
        return events

    def cancel(self, order: Order, now_ns: int) -> list[OrderEvent]:
        """Cancel a resting order at once (reason ``"REQUESTED"``).

        An order the venue does not hold is reported canceled with reason ``"NOT_AT_VENUE"``:
        on a paper venue nothing else can still fill it.
        """
        base = {
            "ts_event": now_ns,
            "ts_init": now_ns,
            "client_order_id": order.client_order_id,
            "symbol": order.symbol,
        }
        rest = self._resting.pop(order.client_order_id, None)
        self._fill_counts.pop(order.client_order_id, None)
        reason = CANCEL_REQUESTED if rest is not None else CANCEL_NOT_AT_VENUE
        return [OrderCanceled(reason=reason, **base)]

    def on_market(self, book: BookView, now_ns: int) -> list[OrderEvent]:
        """Fill resting orders of ``book.symbol`` from its trades and crossing quotes."""
        mine = [r for r in self._resting.values() if r.symbol == book.symbol]
        inst = self._instruments.get(book.symbol)
        if not mine or inst is None or book.quarantined:
            return []
        key = view_key(book)
        events: list[OrderEvent] = []
        fresh = [r for r in mine if r.last_view != key]
        for trade in book.trades:
            avail = self._lots(inst, trade.size)
            buyer = _is_buy_aggressor(trade.aggressor)
            for r in fresh:
                if r.leaves_lots == 0 or buyer == (r.side is OrderSide.BUY):
                    continue
                through = (
                    trade.price_ticks < r.price_ticks
                    if r.side is OrderSide.BUY
                    else trade.price_ticks > r.price_ticks
                )
                if through:
                    fill = min(r.leaves_lots, avail)  # a print fills no more than its size
                    avail -= fill
                elif trade.price_ticks == r.price_ticks:
                    eaten = min(r.queue_ahead_lots, avail)
                    r.queue_ahead_lots -= eaten
                    fill = min(r.leaves_lots, avail - eaten)
                    avail -= fill
                else:
                    continue
                if fill > 0:
                    r.leaves_lots -= fill
                    events.append(
                        self._fill(
                            r.client_order_id,
                            r.symbol,
                            r.side,
                            fill,
                            r.price_ticks,
                            LiquiditySide.MAKER,
                            inst,
                            now_ns,
                        )
                    )
        for r in fresh:
            r.last_view = key
            r.queue_ahead_lots = min(
                r.queue_ahead_lots, self._displayed(book, inst, r.side, r.price_ticks)
            )
        consumed = self._consumption(book)
        for r in mine:
            if r.leaves_lots == 0:
                continue
            book_side = "A" if r.side is OrderSide.BUY else "B"
            crossed = 0
            for px, lots in self._opposite(book, inst, r.side, r.price_ticks):
                take = min(r.leaves_lots - crossed, lots)
                if take == 0:
                    break
                consumed[(book_side, px)] = consumed.get((book_side, px), 0) + take
                crossed += take
            if crossed:
                r.leaves_lots -= crossed
                events.append(
                    self._fill(
                        r.client_order_id,
                        r.symbol,
                        r.side,
                        crossed,
                        r.price_ticks,
                        LiquiditySide.MAKER,
                        inst,
                        now_ns,
                    )
                )
        for r in mine:
            if r.leaves_lots == 0:
                del self._resting[r.client_order_id]
                self._fill_counts.pop(r.client_order_id, None)
        return events

    # --- persistence --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-safe image of the resting orders and id counters."""
        return {
            "order_seq": self._order_seq,
            "fill_counts": dict(sorted(self._fill_counts.items())),
            "resting": [r.to_dict() for r in self._resting.values()],
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Replace this venue's state by :meth:`snapshot` output."""
        self._order_seq = int(snapshot.get("order_seq", 0))
        self._fill_counts = {k: int(v) for k, v in snapshot.get("fill_counts", {}).items()}
        self._resting = {}
        for d in snapshot.get("resting", []):
            r = RestingOrder.from_dict(d)
            self._resting[r.client_order_id] = r
        self._consumed = {}

    # --- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _lots(inst: Instrument, size: float) -> int:
        return max(0, int(round(float(size) / float(inst.lot_size))))

    def _consumption(self, book: BookView) -> dict[tuple[str, int], int]:
        key = view_key(book)
        entry = self._consumed.get(book.symbol)
        if entry is None or entry[0] != key:
            entry = (key, {})
            self._consumed[book.symbol] = entry
        return entry[1]

    def _opposite(
        self, book: BookView, inst: Instrument, side: OrderSide, limit: int | None
    ) -> list[tuple[int, int]]:
        """Opposite levels a ``side`` order may take, best first, net of our consumption."""
        if side is OrderSide.BUY:
            ticks, sizes, book_side = book.ask_ticks, book.ask_sizes, "A"
        else:
            ticks, sizes, book_side = book.bid_ticks, book.bid_sizes, "B"
        consumed = self._consumption(book)
        out: list[tuple[int, int]] = []
        for px, size in zip(ticks, sizes, strict=False):
            if limit is not None and (px > limit if side is OrderSide.BUY else px < limit):
                break
            lots = self._lots(inst, size) - consumed.get((book_side, px), 0)
            if lots > 0:
                out.append((px, lots))
        return out

    def _displayed(self, book: BookView, inst: Instrument, side: OrderSide, price: int) -> int:
        """Displayed lots at ``price`` on our own side of the book."""
        if side is OrderSide.BUY:
            ticks, sizes = book.bid_ticks, book.bid_sizes
        else:
            ticks, sizes = book.ask_ticks, book.ask_sizes
        for px, size in zip(ticks, sizes, strict=False):
            if px == price:
                return self._lots(inst, size)
        return 0

    def _fill(
        self,
        client_order_id: str,
        symbol: str,
        side: OrderSide,
        lots: int,
        px: int,
        liquidity: LiquiditySide,
        inst: Instrument,
        now_ns: int,
    ) -> OrderFilled:
        n = self._fill_counts.get(client_order_id, 0) + 1
        self._fill_counts[client_order_id] = n
        bps = self._maker_bps if liquidity is LiquiditySide.MAKER else self._taker_bps
        return OrderFilled(
            ts_event=now_ns,
            ts_init=now_ns,
            client_order_id=client_order_id,
            symbol=symbol,
            trade_id=f"{client_order_id}-{n}",
            side=side,
            last_qty_lots=lots,
            last_px_ticks=px,
            liquidity=liquidity,
            fee=inst.notional(px, lots) * bps / 10_000.0,
        )
