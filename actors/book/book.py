"""L2 order book on integer ticks: price level → size, with the best levels tracked incrementally.

Applying a row is O(1) except when the best level is removed, which costs one scan of that
side. Integrity (crossed book, sequence going backwards) is checked at message boundaries by
the owning :class:`~actors.book.engine.SymbolEngine`, which quarantines the symbol.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

from actors.core.batch import BID, CLEAR, F_LAST, SNAPSHOT, TRADE


class L2Book:
    """A price-level book. Sizes are absolute level sizes in instrument units.

    Example:
        >>> b = L2Book()
        >>> b.set_level(BID, 100, 2.0); b.set_level(1, 101, 1.5)
        >>> b.best_bid, b.best_ask
        (100, 101)
    """

    __slots__ = (
        "bids", "asks", "best_bid", "best_ask", "last_seq", "ts_event", "ts_init", "in_snapshot"
    )

    def __init__(self) -> None:
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self.best_bid: int | None = None
        self.best_ask: int | None = None
        self.last_seq: int = 0
        self.ts_event: int = 0
        self.ts_init: int = 0
        self.in_snapshot = False  # inside a snapshot message (which may span batches)

    def clear(self) -> None:
        """Remove every level."""
        self.bids.clear()
        self.asks.clear()
        self.best_bid = None
        self.best_ask = None

    def set_level(self, side: int, price: int, size: float) -> None:
        """Set the level ``(side, price)`` to ``size``; ``size == 0`` removes it."""
        if side == BID:
            levels = self.bids
            if size > 0.0:
                levels[price] = size
                if self.best_bid is None or price > self.best_bid:
                    self.best_bid = price
            elif levels.pop(price, None) is not None and price == self.best_bid:
                self.best_bid = max(levels) if levels else None
        else:
            levels = self.asks
            if size > 0.0:
                levels[price] = size
                if self.best_ask is None or price < self.best_ask:
                    self.best_ask = price
            elif levels.pop(price, None) is not None and price == self.best_ask:
                self.best_ask = min(levels) if levels else None

    @property
    def crossed(self) -> bool:
        """True when best bid >= best ask (crossed or locked)."""
        return (
            self.best_bid is not None
            and self.best_ask is not None
            and self.best_bid >= self.best_ask
        )

    def top(self, n: int) -> tuple[list[int], list[float], list[int], list[float]]:
        """Return the best ``n`` levels per side: bid prices, bid sizes, ask prices, ask sizes."""
        bids, asks = self.bids, self.asks
        bp = sorted(bids, reverse=True) if len(bids) <= n else heapq.nlargest(n, bids)
        ap = sorted(asks) if len(asks) <= n else heapq.nsmallest(n, asks)
        return bp, [self.bids[p] for p in bp], ap, [self.asks[p] for p in ap]

    def size_at(self, side: int, price: int) -> float:
        """Return the size at ``price`` on ``side`` (0.0 when absent)."""
        return (self.bids if side == BID else self.asks).get(price, 0.0)

    # checkpoint -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-safe image of the book."""
        return {
            "bids": sorted(([p, s] for p, s in self.bids.items()), reverse=True),
            "asks": sorted([p, s] for p, s in self.asks.items()),
            "last_seq": self.last_seq,
            "ts_event": self.ts_event,
            "ts_init": self.ts_init,
        }

    @classmethod
    def restore(cls, image: dict[str, Any]) -> L2Book:
        """Rebuild a book from :meth:`snapshot` output."""
        book = cls()
        for p, s in image["bids"]:
            book.set_level(BID, int(p), float(s))
        for p, s in image["asks"]:
            book.set_level(1, int(p), float(s))
        book.last_seq = int(image["last_seq"])
        book.ts_event = int(image["ts_event"])
        book.ts_init = int(image["ts_init"])
        return book


def apply_rows(book: L2Book, rows: Any) -> Iterator[int]:
    """Apply ``MD_DTYPE`` rows to ``book``; yield the ``seq`` at each book message's end.

    The plain reference path (no integrity checks, no features) that tests and tools use to
    rebuild a book from a loader's rows: snapshot rows replace the book, a clear row empties it,
    trades are skipped.
    """
    for _te, _ti, seq, kind, side, price, size, flags, _oid in rows.tolist():
        if kind == SNAPSHOT and not book.in_snapshot:
            book.clear()
            book.in_snapshot = True
        if kind == CLEAR:
            book.clear()
        elif kind != TRADE:
            book.set_level(side, price, size)
        book.last_seq = seq
        if flags & F_LAST:
            book.in_snapshot = False
            if kind != TRADE:
                yield seq
