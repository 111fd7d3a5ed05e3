"""Venues: where orders go. :class:`PaperVenue` matches against the current :class:`BookView`.

Paper matching rules:

* Market orders walk the opposite levels (taker); what the book cannot fill is canceled with
  reason ``"NO_LIQUIDITY"``.
* Limit orders fill their marketable part against levels at or better than the limit (taker);
  then ``IOC`` cancels the rest (``"IOC"``), ``FOK`` is all-or-nothing (``"FOK"``, no fill),
  ``GTC`` rests. A ``post_only`` limit order (``GTC`` only) that would take liquidity on
  arrival is rejected (``"POST_ONLY_WOULD_CROSS"``); resting, it only ever fills as maker.
* Stop orders (``STOP_MARKET`` / ``STOP_LIMIT``) wait at the venue until the reference price
  (the view's last trade, else its mid) reaches the trigger: ``>=`` for a buy stop, ``<=``
  for a sell stop. Checked on arrival and on every view; on trigger the venue emits
  ``OrderTriggered`` and the order then works as a market / limit order (with its ``tif``).
* An order with ``expire_ts_ns`` already past on arrival is rejected (``"EXPIRE_TS_PASSED"``);
  later, the engine expires it through :meth:`PaperVenue.expire`.
* Liquidity our fills took from one view is gone for the next order on the same view
  (consumption is tracked per symbol and view ``(seq, ts_event, ts_init)``).
* A resting order joins the back of the queue: ``queue_ahead`` is the displayed size at its
  price on arrival. Each later view's trades at its price (aggressor on the other side) first
  eat ``queue_ahead``, then fill it (maker); a trade through its price fills it up to the
  trade's size (shared, in arrival order, by our resting orders it went through); an
  opposite touch that crosses its price fills it at its price, up to the crossing size.
  ``queue_ahead`` never exceeds the size displayed at its price.
* Queue models: when the displayed size at the order's price shrinks by more than that
  view's trades there, ``"conservative"`` assumes the cancels were behind us (only the cap
  above moves us forward); ``"probabilistic"`` assumes a share of them was ahead of us (see
  :func:`prob_queue_ahead`). On market-by-order data (views with ``queues``) neither model
  is needed: an order remembers the largest queue priority at its level when it joined, and
  in every later view exactly the orders with a priority up to it are ahead of it (exact
  queue position; an order that lost its place since has a larger priority).
* Amends: a price change or a size increase sends a resting order to the back of the queue
  (a new price may also fill at once, as taker); a size decrease keeps its place.
* One-cancels-other: orders linked by ``oco_order_id`` (bracket exits) are canceled by the
  venue, reason ``"OCO"``, as soon as the other one fills, before anything else matches.

Ids are deterministic: venue order ids ``"P-{n}"``, trade ids ``"{client_order_id}-{n}"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

from actors.core.errors import ValidationError
from actors.core.instruments import Instrument
from actors.core.messages import (
    LiquiditySide,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderType,
    TimeInForce,
)
from actors.core.views import BookView, TradePrint
from actors.execution.orders import Order, OrderModifyRejected, OrderTriggered, OrderUpdated
from actors.execution.venue_book import (  # noqa: F401 - re-exported
    PendingStop,
    RestingOrder,
    ViewKey,
    _exact_ahead,
    _first_lots,
    _is_buy_aggressor,
    _join_prio,
    _Levels,
    _shown,
    _size_lots,
    _takeable,
    prob_queue_ahead,
    reference_price,
    stop_triggered,
    view_key,
)

# cancel / reject reasons
CANCEL_REQUESTED = "REQUESTED"
CANCEL_NOT_AT_VENUE = "NOT_AT_VENUE"
CANCEL_IOC = "IOC"
CANCEL_FOK = "FOK"
CANCEL_NO_LIQUIDITY = "NO_LIQUIDITY"
CANCEL_OCO = "OCO"
REJECT_INSTRUMENT_UNKNOWN = "INSTRUMENT_UNKNOWN"
REJECT_INVALID_QTY = "INVALID_QTY"
REJECT_INVALID_PRICE = "INVALID_PRICE"
REJECT_INVALID_TRIGGER = "INVALID_TRIGGER_PRICE"
REJECT_INVALID_POST_ONLY = "INVALID_POST_ONLY"
REJECT_POST_ONLY_WOULD_CROSS = "POST_ONLY_WOULD_CROSS"
REJECT_EXPIRE_TS_PASSED = "EXPIRE_TS_PASSED"
REJECT_NO_MARKET_DATA = "NO_MARKET_DATA"
REJECT_BOOK_QUARANTINED = "BOOK_QUARANTINED"
REJECT_NOT_AT_VENUE = "NOT_AT_VENUE"

QUEUE_MODELS: tuple[str, ...] = ("conservative", "probabilistic")


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

    def modify(
        self,
        order: Order,
        qty_lots: int | None,
        price_ticks: int | None,
        trigger_price_ticks: int | None,
        book: BookView | None,
        now_ns: int,
    ) -> list[OrderEvent]:
        """Amend a working (``PENDING_UPDATE``) order; return ``OrderUpdated`` (and any
        trigger and fills it causes) or ``OrderModifyRejected``."""
        ...

    def expire(self, order: Order, now_ns: int) -> list[OrderEvent]:
        """Withdraw an order whose ``expire_ts_ns`` has passed; return ``OrderExpired``."""
        ...

    def on_market(self, book: BookView, now_ns: int) -> list[OrderEvent]:
        """Match resting orders of ``book.symbol`` against a new view; return their fills."""
        ...


_LIMIT_TYPES = frozenset(t for t in OrderType if t.has_limit)
_STOP_TYPES = frozenset(t for t in OrderType if t.is_stop)


def _base(order: Order, now_ns: int) -> dict[str, Any]:
    return {
        "ts_event": now_ns,
        "ts_init": now_ns,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
    }


def _canceled(coid: str, symbol: str, reason: str, now_ns: int) -> OrderCanceled:
    return OrderCanceled(
        ts_event=now_ns, ts_init=now_ns, client_order_id=coid, symbol=symbol, reason=reason
    )


class PaperVenue:
    """A simulated venue that matches against the symbol's current :class:`BookView`.

    Args:
        instruments: Instruments by symbol.
        maker_fee_bps: Maker fee in bps of notional (positive = paid, negative = rebate).
        taker_fee_bps: Taker fee in bps of notional.
        queue_model: ``"conservative"`` or ``"probabilistic"`` (see the module doc).
        queue_prob_power: The exponent of the probabilistic model (:func:`prob_queue_ahead`).

    Raises:
        ValidationError: ``queue_model`` is unknown or ``queue_prob_power`` not positive.
    """

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        maker_fee_bps: float = 0.0,
        taker_fee_bps: float = 0.0,
        queue_model: str = "conservative",
        queue_prob_power: float = 2.0,
    ) -> None:
        if queue_model not in QUEUE_MODELS:
            raise ValidationError("queue_model", f"one of {list(QUEUE_MODELS)}", queue_model)
        if not queue_prob_power > 0:
            raise ValidationError("queue_prob_power", "> 0", queue_prob_power)
        self._instruments = dict(instruments)
        self._maker_bps = float(maker_fee_bps)
        self._taker_bps = float(taker_fee_bps)
        self._probabilistic = queue_model == "probabilistic"
        self._power = float(queue_prob_power)
        # per instrument: (tick_size, lot_size) as floats, for fees
        self._float_sizes = {
            s: (float(i.tick_size), float(i.lot_size)) for s, i in self._instruments.items()
        }
        self._resting: dict[str, RestingOrder] = {}  # in arrival order
        self._stops: dict[str, PendingStop] = {}
        # the same records by symbol, in the same order (on_market looks at one symbol)
        self._resting_of: dict[str, dict[str, RestingOrder]] = {}
        self._stops_of: dict[str, dict[str, PendingStop]] = {}
        self._oco: dict[str, str] = {}
        self._fill_counts: dict[str, int] = {}
        self._order_seq = 0
        # symbol -> (view, {("A"|"B", price): lots consumed by our fills on that view})
        self._consumed: dict[str, tuple[ViewKey, dict[tuple[str, int], int]]] = {}
        self._levels_of: dict[str, _Levels] = {}  # symbol -> its last view's levels (a cache)

    # --- queries ------------------------------------------------------------------------------
    def resting(self) -> list[RestingOrder]:
        """Return copies of the resting orders, in arrival order."""
        return [RestingOrder.from_dict(r.to_dict()) for r in self._resting.values()]

    def resting_order(self, client_order_id: str) -> RestingOrder | None:
        """Return the venue's record of a resting order, or ``None``."""
        return self._resting.get(client_order_id)

    def pending_stop(self, client_order_id: str) -> PendingStop | None:
        """Return the venue's record of an untriggered stop order, or ``None``."""
        return self._stops.get(client_order_id)

    # --- Venue --------------------------------------------------------------------------------
    def submit(self, order: Order, book: BookView | None, now_ns: int) -> list[OrderEvent]:
        """Accept (or reject) ``order`` and match it against ``book``; see the module doc."""
        coid, symbol = order.client_order_id, order.symbol
        inst = self._instruments.get(symbol)
        reason = self._refusal(order, book, inst, now_ns)
        if reason or inst is None or book is None:
            return [
                OrderRejected(
                    ts_event=now_ns,
                    ts_init=now_ns,
                    client_order_id=coid,
                    symbol=symbol,
                    reason=reason,
                )
            ]
        self._order_seq += 1
        events: list[OrderEvent] = [
            OrderAccepted(
                ts_event=now_ns,
                ts_init=now_ns,
                client_order_id=coid,
                symbol=symbol,
                venue_order_id=f"P-{self._order_seq}",
                trigger_ts_init=order.trigger_ts_init,
            )
        ]
        if order.oco_order_id:
            self._oco[coid] = order.oco_order_id
        qty = order.qty_lots - order.filled_lots
        if order.order_type in _STOP_TYPES:
            assert order.trigger_price_ticks is not None
            stop = PendingStop(
                client_order_id=coid,
                symbol=symbol,
                side=order.side,
                order_type=order.order_type,
                trigger_ticks=order.trigger_price_ticks,
                price_ticks=order.price_ticks,
                leaves_lots=qty,
                tif=order.tif,
            )
            self._add_stop(stop)
            events.extend(self._check_trigger(stop, book, inst, now_ns))
            return events
        limit = order.price_ticks if order.order_type is OrderType.LIMIT else None
        events.extend(
            self._work(coid, symbol, order.side, qty, limit, order.tif, inst, book, now_ns)
        )
        return events

    def cancel(self, order: Order, now_ns: int) -> list[OrderEvent]:
        """Cancel a resting or pending-stop order at once (reason ``"REQUESTED"``).

        An order the venue does not hold is reported canceled with reason ``"NOT_AT_VENUE"``:
        on a paper venue nothing else can still fill it.
        """
        held = self._drop(order.client_order_id)
        reason = CANCEL_REQUESTED if held else CANCEL_NOT_AT_VENUE
        return [_canceled(order.client_order_id, order.symbol, reason, now_ns)]

    def expire(self, order: Order, now_ns: int) -> list[OrderEvent]:
        """Withdraw ``order`` and report it expired."""
        self._drop(order.client_order_id)
        return [OrderExpired(**_base(order, now_ns))]

    def modify(  # noqa: PLR0911 - one flat list of refusals, then the three amend cases
        self,
        order: Order,
        qty_lots: int | None,
        price_ticks: int | None,
        trigger_price_ticks: int | None,
        book: BookView | None,
        now_ns: int,
    ) -> list[OrderEvent]:
        """Amend a resting or pending-stop order; see the module doc for queue priority."""
        base = _base(order, now_ns)
        coid = order.client_order_id
        inst = self._instruments.get(order.symbol)
        rest, stop = self._resting.get(coid), self._stops.get(coid)
        new_qty = order.qty_lots if qty_lots is None else int(qty_lots)
        leaves = new_qty - order.filled_lots
        old_price = rest.price_ticks if rest is not None else order.price_ticks
        moves = price_ticks is not None and price_ticks != old_price
        usable = book is not None and book.symbol == order.symbol and not book.quarantined
        reason = ""
        if inst is None or (rest is None and stop is None):
            reason = REJECT_NOT_AT_VENUE
        elif leaves < 0 or new_qty <= 0:
            reason = REJECT_INVALID_QTY
        elif price_ticks is not None and (price_ticks <= 0 or not order.order_type.has_limit):
            reason = REJECT_INVALID_PRICE
        elif trigger_price_ticks is not None and (stop is None or trigger_price_ticks <= 0):
            reason = REJECT_INVALID_TRIGGER
        elif moves and rest is not None and not usable:
            reason = REJECT_NO_MARKET_DATA
        elif (
            moves
            and rest is not None
            and order.post_only
            and book is not None
            and inst is not None
            and self._opposite(book, inst, order.side, price_ticks)
        ):
            reason = REJECT_POST_ONLY_WOULD_CROSS
        if reason or inst is None:
            return [OrderModifyRejected(reason=reason, **base)]
        events: list[OrderEvent] = [
            OrderUpdated(
                qty_lots=qty_lots,
                price_ticks=price_ticks,
                trigger_price_ticks=trigger_price_ticks,
                **base,
            )
        ]
        if leaves == 0:
            self._drop(coid)
            return events
        if stop is not None:
            stop.leaves_lots = leaves
            if price_ticks is not None:
                stop.price_ticks = price_ticks
            if trigger_price_ticks is not None:
                stop.trigger_ticks = trigger_price_ticks
            if usable and book is not None:
                events.extend(self._check_trigger(stop, book, inst, now_ns))
            return events
        assert rest is not None
        if moves and book is not None:
            self._remove_resting(coid)
            events.extend(
                self._work(
                    coid,
                    rest.symbol,
                    rest.side,
                    leaves,
                    price_ticks,
                    TimeInForce.GTC,
                    inst,
                    book,
                    now_ns,
                )
            )
            return events
        if leaves > rest.leaves_lots:
            rest.queue_ahead_lots = float(rest.level_lots)  # back of the queue
            rest.join_prio = _join_prio(book, rest.side, rest.price_ticks)
        rest.leaves_lots = leaves
        return events

    def on_market(self, book: BookView, now_ns: int) -> list[OrderEvent]:
        """Fill resting orders of ``book.symbol`` from its trades and crossing quotes, then
        trigger its stop orders."""
        symbol = book.symbol
        inst = self._instruments.get(symbol)
        mine = list(self._resting_of.get(symbol, {}).values())
        stops = list(self._stops_of.get(symbol, {}).values())
        if (not mine and not stops) or inst is None or book.quarantined:
            return []
        lv = self._levels(book, inst)
        key = lv.key
        events: list[OrderEvent] = []
        traded: dict[str, int] = {}
        if book.trades:
            # a trade only reaches the orders on the other side of its aggressor
            fresh_of: dict[OrderSide, list[RestingOrder]] = {OrderSide.BUY: [], OrderSide.SELL: []}
            for r in mine:
                if r.last_view != key:
                    fresh_of[r.side].append(r)
            for trade in book.trades:
                events.extend(self._trade_fills(trade, fresh_of, traded, lv, inst, now_ns))
        # One pass, in arrival order, for what each order does alone: move it in its queue
        # (the view's trades are all counted by now), then fill it against a crossing touch.
        consumed = self._consumption(symbol, key)
        best_ask = lv.asks[0][0] if lv.asks else None
        best_bid = lv.bids[0][0] if lv.bids else None
        buy_side = OrderSide.BUY
        for r in mine:
            buy = r.side is buy_side
            if r.last_view != key:
                if r.leaves_lots > 0:  # move it in its queue
                    level = (lv.bid_lots if buy else lv.ask_lots).get(r.price_ticks, 0)
                    exact = _exact_ahead(book, r, lv.lot_size)
                    if exact is not None:  # market-by-order: the orders ahead are known
                        r.queue_ahead_lots = exact
                    elif self._probabilistic:
                        self._cancels_ahead(r, traded.get(r.client_order_id, 0), level)
                    if r.queue_ahead_lots > level:  # never more ahead than is displayed
                        r.queue_ahead_lots = float(level)
                    r.level_lots = level
                r.last_view = key
            if r.leaves_lots > 0 and (
                (best_ask is not None and best_ask <= r.price_ticks)
                if buy
                else (best_bid is not None and best_bid >= r.price_ticks)
            ):  # the opposite touch reaches its price
                book_side = "A" if buy else "B"
                crossed = 0
                for px, lots in _takeable(lv, consumed, r.side, r.price_ticks):
                    take = min(r.leaves_lots - crossed, lots)
                    if take == 0:
                        break
                    consumed[(book_side, px)] = consumed.get((book_side, px), 0) + take
                    crossed += take
                if crossed:
                    events.extend(self._maker_fill(r, crossed, inst, now_ns))
            if r.leaves_lots == 0 and self._resting.get(r.client_order_id) is r:
                self._drop(r.client_order_id)
        for s in stops:
            if self._stops.get(s.client_order_id) is s:
                events.extend(self._check_trigger(s, book, inst, now_ns))
        return events

    # --- persistence --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-safe image of the resting and stop orders, links, consumption and
        id counters."""
        return {
            "order_seq": self._order_seq,
            "fill_counts": dict(sorted(self._fill_counts.items())),
            "resting": [r.to_dict() for r in self._resting.values()],
            "stops": [s.to_dict() for s in self._stops.values()],
            "oco": dict(sorted(self._oco.items())),
            "consumed": {
                sym: {
                    "view": list(view),
                    "lots": [[side, px, n] for (side, px), n in sorted(lots.items())],
                }
                for sym, (view, lots) in sorted(self._consumed.items())
            },
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Replace this venue's state by :meth:`snapshot` output."""
        self._order_seq = int(snapshot.get("order_seq", 0))
        self._fill_counts = {k: int(v) for k, v in snapshot.get("fill_counts", {}).items()}
        self._resting = {}
        for d in snapshot.get("resting", []):
            r = RestingOrder.from_dict(d)
            self._resting[r.client_order_id] = r
        self._stops = {}
        for d in snapshot.get("stops", []):
            s = PendingStop.from_dict(d)
            self._stops[s.client_order_id] = s
        self._reindex()
        self._levels_of = {}
        self._oco = {str(k): str(v) for k, v in snapshot.get("oco", {}).items()}
        self._consumed = {}
        for sym, c in snapshot.get("consumed", {}).items():
            v = c["view"]
            lots = {(str(side), int(px)): int(n) for side, px, n in c["lots"]}
            self._consumed[sym] = ((int(v[0]), int(v[1]), int(v[2])), lots)

    # --- helpers ------------------------------------------------------------------------------
    def _refusal(  # noqa: PLR0911 - one flat list of checks, in order
        self, order: Order, book: BookView | None, inst: Instrument | None, now_ns: int
    ) -> str:
        """Return why ``order`` is rejected on arrival, or ``""``."""
        otype = order.order_type
        if inst is None:
            return REJECT_INSTRUMENT_UNKNOWN
        if order.qty_lots - order.filled_lots <= 0:
            return REJECT_INVALID_QTY
        if otype in _LIMIT_TYPES and (order.price_ticks is None or order.price_ticks <= 0):
            return REJECT_INVALID_PRICE
        if otype in _STOP_TYPES and (
            order.trigger_price_ticks is None or order.trigger_price_ticks <= 0
        ):
            return REJECT_INVALID_TRIGGER
        if order.post_only and (otype is not OrderType.LIMIT or order.tif is not TimeInForce.GTC):
            return REJECT_INVALID_POST_ONLY
        if book is None or book.symbol != order.symbol:
            return REJECT_NO_MARKET_DATA
        if book.quarantined:
            return REJECT_BOOK_QUARANTINED
        if order.expire_ts_ns and order.expire_ts_ns <= now_ns:
            return REJECT_EXPIRE_TS_PASSED
        if order.post_only and self._opposite(book, inst, order.side, order.price_ticks):
            return REJECT_POST_ONLY_WOULD_CROSS
        return ""

    def _check_trigger(
        self, stop: PendingStop, book: BookView, inst: Instrument, now_ns: int
    ) -> list[OrderEvent]:
        """Trigger ``stop`` if the view's reference price reached it, and work it."""
        if not stop_triggered(stop.side, stop.trigger_ticks, reference_price(book)):
            return []
        self._remove_stop(stop.client_order_id)
        events: list[OrderEvent] = [
            OrderTriggered(
                ts_event=now_ns,
                ts_init=now_ns,
                client_order_id=stop.client_order_id,
                symbol=stop.symbol,
            )
        ]
        limit = stop.price_ticks if stop.order_type is OrderType.STOP_LIMIT else None
        events.extend(
            self._work(
                stop.client_order_id,
                stop.symbol,
                stop.side,
                stop.leaves_lots,
                limit,
                stop.tif,
                inst,
                book,
                now_ns,
            )
        )
        return events

    def _work(
        self,
        coid: str,
        symbol: str,
        side: OrderSide,
        qty: int,
        limit: int | None,
        tif: TimeInForce,
        inst: Instrument,
        book: BookView,
        now_ns: int,
    ) -> list[OrderEvent]:
        """Take what ``book`` offers a live order now (taker); cancel or rest the rest."""
        lv = self._levels(book, inst)
        consumed = self._consumption(symbol, lv.key)
        levels = _takeable(lv, consumed, side, limit)
        if tif is TimeInForce.FOK and sum(lots for _, lots in levels) < qty:
            self._drop(coid)
            return [_canceled(coid, symbol, CANCEL_FOK, now_ns)]
        events: list[OrderEvent] = []
        book_side = "A" if side is OrderSide.BUY else "B"
        leaves = qty
        for px, lots in levels:
            if leaves == 0:
                break
            take = min(leaves, lots)
            consumed[(book_side, px)] = consumed.get((book_side, px), 0) + take
            leaves -= take
            events.append(
                self._fill(coid, symbol, side, take, px, LiquiditySide.TAKER, inst, now_ns)
            )
            if coid in self._oco:
                events.extend(self._oco_cancel(coid, now_ns))
        if leaves == 0:
            self._drop(coid)
        elif limit is None:
            self._drop(coid)
            events.append(_canceled(coid, symbol, CANCEL_NO_LIQUIDITY, now_ns))
        elif tif is not TimeInForce.GTC:
            self._drop(coid)
            events.append(_canceled(coid, symbol, CANCEL_IOC, now_ns))
        else:
            level = (lv.bid_lots if side is OrderSide.BUY else lv.ask_lots).get(limit, 0)
            self._add_resting(
                RestingOrder(
                    client_order_id=coid,
                    symbol=symbol,
                    side=side,
                    price_ticks=limit,
                    leaves_lots=leaves,
                    queue_ahead_lots=float(level),
                    last_view=lv.key,
                    level_lots=level,
                    join_prio=_join_prio(book, side, limit),
                )
            )
        return events

    def _maker_fill(
        self, r: RestingOrder, lots: int, inst: Instrument, now_ns: int
    ) -> list[OrderEvent]:
        r.leaves_lots -= lots
        fill = self._fill(
            r.client_order_id,
            r.symbol,
            r.side,
            lots,
            r.price_ticks,
            LiquiditySide.MAKER,
            inst,
            now_ns,
        )
        if r.client_order_id in self._oco:
            return [fill, *self._oco_cancel(r.client_order_id, now_ns)]
        return [fill]

    def _oco_cancel(self, coid: str, now_ns: int) -> list[OrderEvent]:
        """Cancel the order linked one-cancels-other to ``coid`` (which just filled)."""
        other = self._oco.get(coid)
        if other is None:
            return []
        rec = self._resting.get(other) or self._stops.get(other)
        if rec is None:
            return []
        symbol = rec.symbol
        if isinstance(rec, RestingOrder):
            rec.leaves_lots = 0  # stops any pass over it already under way
        self._drop(other)
        return [_canceled(other, symbol, CANCEL_OCO, now_ns)]

    def _trade_fills(
        self,
        trade: TradePrint,
        fresh_of: dict[OrderSide, list[RestingOrder]],
        traded: dict[str, int],
        lv: _Levels,
        inst: Instrument,
        now_ns: int,
    ) -> list[OrderEvent]:
        """Fill the resting orders one market trade went through or traded at (maker).

        ``fresh_of`` holds the orders that had not seen this view, by side, in arrival order;
        ``traded`` collects the size each order saw trade at its price.
        """
        events: list[OrderEvent] = []
        size = avail = _size_lots(trade.size, lv.lot_size)
        buyer = _is_buy_aggressor(trade.aggressor)
        px = trade.price_ticks
        for r in fresh_of[OrderSide.SELL if buyer else OrderSide.BUY]:
            if r.leaves_lots == 0:
                continue
            if px < r.price_ticks if r.side is OrderSide.BUY else px > r.price_ticks:
                fill = min(r.leaves_lots, avail)  # a print fills no more than its size
                avail -= fill
            elif px == r.price_ticks:
                traded[r.client_order_id] = traded.get(r.client_order_id, 0) + size
                eaten = min(r.queue_ahead_lots, avail)
                r.queue_ahead_lots -= eaten
                fill = min(r.leaves_lots, math.floor(avail - eaten + 1e-9))
                avail -= fill
            else:
                continue
            if fill > 0:
                events.extend(self._maker_fill(r, fill, inst, now_ns))
        return events

    def _cancels_ahead(self, r: RestingOrder, traded: int, level: int) -> None:
        """Move ``r`` forward for the share of its level's cancels assumed ahead of it (the
        probabilistic queue model): the level displays ``level`` lots in the new view, and
        ``traded`` lots traded at its price since the last one."""
        expected = max(0, r.level_lots - traded)
        front = r.queue_ahead_lots
        r.queue_ahead_lots = prob_queue_ahead(
            front, max(0.0, expected - front), expected - level, self._power
        )

    def _add_resting(self, r: RestingOrder) -> None:
        self._put(self._resting, self._resting_of, r)

    def _remove_resting(self, coid: str) -> RestingOrder | None:
        return self._pop(self._resting, self._resting_of, coid)

    def _add_stop(self, s: PendingStop) -> None:
        self._put(self._stops, self._stops_of, s)

    def _remove_stop(self, coid: str) -> PendingStop | None:
        return self._pop(self._stops, self._stops_of, coid)

    def _put(self, records: dict[str, Any], by_symbol: dict[str, dict[str, Any]], r: Any) -> None:
        """Add a record and index it by symbol; one replaced in place keeps its arrival
        place (the indexes are rebuilt in arrival order)."""
        if r.client_order_id in records:
            records[r.client_order_id] = r
            self._reindex()
            return
        records[r.client_order_id] = r
        by_symbol.setdefault(r.symbol, {})[r.client_order_id] = r

    @staticmethod
    def _pop(records: dict[str, Any], by_symbol: dict[str, dict[str, Any]], coid: str) -> Any:
        r = records.pop(coid, None)
        if r is not None:
            del by_symbol[r.symbol][coid]
        return r

    def _reindex(self) -> None:
        """Rebuild the by-symbol indexes from the records (in arrival order)."""
        self._resting_of = {}
        for r in self._resting.values():
            self._resting_of.setdefault(r.symbol, {})[r.client_order_id] = r
        self._stops_of = {}
        for s in self._stops.values():
            self._stops_of.setdefault(s.symbol, {})[s.client_order_id] = s

    def _drop(self, coid: str) -> bool:
        """Forget an order that leaves the venue; return whether the venue held it."""
        held = self._remove_resting(coid) is not None
        held = self._remove_stop(coid) is not None or held
        self._fill_counts.pop(coid, None)
        self._oco.pop(coid, None)
        return held

    def _levels(self, book: BookView, inst: Instrument) -> _Levels:
        """Return ``book``'s levels in lots (worked out once per view of each symbol)."""
        lv = self._levels_of.get(book.symbol)
        if lv is None or lv.book is not book:
            lv = self._levels_of[book.symbol] = _Levels.of(book, inst)
        return lv

    def _consumption(self, symbol: str, key: ViewKey) -> dict[tuple[str, int], int]:
        entry = self._consumed.get(symbol)
        if entry is None or entry[0] != key:
            entry = (key, {})
            self._consumed[symbol] = entry
        return entry[1]

    def _opposite(
        self, book: BookView, inst: Instrument, side: OrderSide, limit: int | None
    ) -> list[tuple[int, int]]:
        """Opposite levels a ``side`` order may take, best first, net of our consumption."""
        lv = self._levels(book, inst)
        return _takeable(lv, self._consumption(book.symbol, lv.key), side, limit)

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
            fee=self._notional(inst, px, lots) * bps / 10_000.0,
        )

    def _notional(self, inst: Instrument, px: int, lots: int) -> float:
        """``inst.notional(px, lots)``: the same float arithmetic, with the Decimal tick and lot
        sizes converted to float once per instrument instead of on every fill."""
        tick_size, lot_size = self._float_sizes[inst.symbol]
        return (float(px) * tick_size) * (float(lots) * lot_size)
