"""The paper venue's bookkeeping: the records of resting and pending-stop orders, the per-view
level cache, and the queue-position rules (conservative, probabilistic, exact on market-by-order
data). :mod:`actors.execution.venue` matches with them; the rules are described there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from actors.core.instruments import Instrument
from actors.core.messages import OrderSide, OrderType, TimeInForce
from actors.core.views import BookView

ViewKey = tuple[int, int, int]


def view_key(book: BookView) -> ViewKey:
    """Return the identity of one view of a book: ``(seq, ts_event, ts_init)``."""
    return (int(book.seq), int(book.ts_event), int(book.ts_init))


def reference_price(book: BookView) -> float | None:
    """Return the price stops trigger on: the view's last trade, else its mid, else ``None``."""
    if book.trades:
        return float(book.trades[-1].price_ticks)
    return book.mid_ticks


def stop_triggered(side: OrderSide, trigger_ticks: int, ref: float | None) -> bool:
    """Return True when ``ref`` reaches a ``side`` stop's trigger (buy: ``>=``, sell: ``<=``)."""
    if ref is None:
        return False
    return ref >= trigger_ticks if side is OrderSide.BUY else ref <= trigger_ticks


def _shown(book: BookView, side: OrderSide, price: int) -> bool:
    """True when ``price`` is at or inside the deepest level ``book`` shows on ``side``."""
    prices = book.bid_ticks if side is OrderSide.BUY else book.ask_ticks
    if not prices:
        return True  # an empty side: any level would be the only one
    return price >= prices[-1] if side is OrderSide.BUY else price <= prices[-1]


def _join_prio(book: BookView | None, side: OrderSide, price: int) -> int | None:
    """The largest queue priority at ``price`` in a market-by-order ``book`` (-1 for a level
    with nobody in it), or ``None`` without queue data for that level (L2 data, or a price
    beyond the levels shown)."""
    if book is None or book.queues is None or not _shown(book, side, price):
        return None
    queue = book.queues.get((0 if side is OrderSide.BUY else 1, price), ())
    return max((p for p, _ in queue), default=-1)


def _exact_ahead(book: BookView, r: RestingOrder, lot_size: float) -> float | None:
    """Lots ahead of ``r`` in ``book``'s queue at its price: the orders with a priority up to
    ``r.join_prio`` (an order that lost its place since has a larger one). ``None`` when the
    view carries no queue for that level."""
    if r.join_prio is None or book.queues is None or not _shown(book, r.side, r.price_ticks):
        return None
    queue = book.queues.get((0 if r.side is OrderSide.BUY else 1, r.price_ticks), ())
    ahead = sum(size for prio, size in queue if prio <= r.join_prio)
    return float(math.floor(ahead / lot_size + 1e-9))


def prob_queue_ahead(front: float, back: float, decrease: float, power: float) -> float:
    """Return the queue ahead of an order after ``decrease`` lots left its level (no trade).

    The power-law model of hftbacktest's ``ProbQueueModel`` with ``PowerProbQueueFunc``
    (nkaz001/hftbacktest, ``hftbacktest/src/backtest/models/queue.rs``; after Rigtorp,
    "Estimating order queue position", 2013, and quant.stackexchange question 3782). With
    ``f(x) = x ** power``, the share of the decrease assumed to come from ahead of us is
    ``f(front) / (f(front) + f(back))``, and what the queue behind cannot absorb
    (``decrease - back`` when positive) was ahead of us too::

        ahead = max(decrease * f(front) / (f(front) + f(back)), decrease - back)
        front' = max(0, front - ahead)

    This equals hftbacktest's ``front - (1 - p) * chg + min(0, back - p * chg)`` with
    ``p = f(back) / (f(back) + f(front))``. ``power = 1`` is proportional to position; larger
    powers say cancels come mostly from the longer side of the queue.

    Args:
        front: Lots ahead of the order.
        back: Lots behind it.
        decrease: Lots that left the level, net of trades (``<= 0``: nothing changes).
        power: The exponent ``n`` of ``f``.
    """
    if decrease <= 0:
        return front
    fa, fb = front**power, back**power
    share = fa / (fa + fb) if fa + fb > 0 else 0.0
    ahead = max(decrease * share, decrease - back)
    return max(0.0, front - ahead)


def _is_buy_aggressor(aggressor: str) -> bool:
    return aggressor.upper() in ("BUY", "BID", "B")


def _size_lots(size: float, lot_size: float) -> int:
    """Whole lots in ``size`` instrument units (``lot_size`` as a float), never negative."""
    return max(0, int(round(float(size) / lot_size)))


@dataclass(slots=True)
class RestingOrder:
    """The venue's record of a resting GTC limit order (a triggered stop-limit included).

    ``queue_ahead_lots`` is a float: the probabilistic queue model moves it by fractions.
    ``level_lots`` is the size displayed at its price in the last view it saw.
    """

    client_order_id: str
    symbol: str
    side: OrderSide
    price_ticks: int
    leaves_lots: int
    queue_ahead_lots: float
    last_view: ViewKey
    level_lots: int = 0
    # market-by-order data: the largest queue priority at its level when it joined; every
    # order with a priority up to it is ahead of it (exact queue position). None on L2 data.
    join_prio: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "price_ticks": self.price_ticks,
            "leaves_lots": self.leaves_lots,
            "queue_ahead_lots": float(self.queue_ahead_lots),
            "last_view": list(self.last_view),
            "level_lots": self.level_lots,
            "join_prio": self.join_prio,
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
            queue_ahead_lots=float(d["queue_ahead_lots"]),
            last_view=(int(k[0]), int(k[1]), int(k[2])),
            level_lots=int(d.get("level_lots", 0)),
            join_prio=None if d.get("join_prio") is None else int(d["join_prio"]),
        )


@dataclass(slots=True)
class PendingStop:
    """The venue's record of a stop order waiting for its trigger."""

    client_order_id: str
    symbol: str
    side: OrderSide
    order_type: OrderType
    trigger_ticks: int
    price_ticks: int | None
    leaves_lots: int
    tif: TimeInForce

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "order_type": self.order_type.value,
            "trigger_ticks": self.trigger_ticks,
            "price_ticks": self.price_ticks,
            "leaves_lots": self.leaves_lots,
            "tif": self.tif.value,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PendingStop:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            client_order_id=d["client_order_id"],
            symbol=d["symbol"],
            side=OrderSide(d["side"]),
            order_type=OrderType(d["order_type"]),
            trigger_ticks=int(d["trigger_ticks"]),
            price_ticks=None if d["price_ticks"] is None else int(d["price_ticks"]),
            leaves_lots=int(d["leaves_lots"]),
            tif=TimeInForce(d["tif"]),
        )


@dataclass(slots=True, frozen=True)
class _Levels:
    """One view's levels in lots, worked out once per view (views are immutable).

    ``bids`` / ``asks`` are ``(price_ticks, lots)`` best first, as displayed; ``bid_lots`` /
    ``ask_lots`` map a price to the lots of its first level.
    """

    book: BookView
    key: ViewKey
    lot_size: float
    bids: tuple[tuple[int, int], ...]
    asks: tuple[tuple[int, int], ...]
    bid_lots: dict[int, int]
    ask_lots: dict[int, int]

    @classmethod
    def of(cls, book: BookView, inst: Instrument) -> _Levels:
        """Convert ``book``'s sizes into ``inst`` lots."""
        lot = float(inst.lot_size)
        bids = tuple(
            (px, _size_lots(size, lot))
            for px, size in zip(book.bid_ticks, book.bid_sizes, strict=False)
        )
        asks = tuple(
            (px, _size_lots(size, lot))
            for px, size in zip(book.ask_ticks, book.ask_sizes, strict=False)
        )
        return cls(book, view_key(book), lot, bids, asks, _first_lots(bids), _first_lots(asks))


def _first_lots(levels: tuple[tuple[int, int], ...]) -> dict[int, int]:
    out: dict[int, int] = {}
    for px, lots in levels:
        out.setdefault(px, lots)
    return out


def _takeable(
    lv: _Levels, consumed: dict[tuple[str, int], int], side: OrderSide, limit: int | None
) -> list[tuple[int, int]]:
    """Opposite levels a ``side`` order may take, best first, net of ``consumed``."""
    buy = side is OrderSide.BUY
    levels, book_side = (lv.asks, "A") if buy else (lv.bids, "B")
    out: list[tuple[int, int]] = []
    for px, lots in levels:
        if limit is not None and (px > limit if buy else px < limit):
            break
        if consumed:
            lots -= consumed.get((book_side, px), 0)
        if lots > 0:
            out.append((px, lots))
    return out
