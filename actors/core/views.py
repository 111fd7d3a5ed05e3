"""Views that cross from the SymbolActors to strategy, risk and execution.

A :class:`BookView` is the top of one symbol's book at the end of a batch, plus the trades of
that batch; it is all the paper venue and the risk engine need to know of the market.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class TradePrint:
    """One market trade. ``aggressor`` is ``"BUY"`` or ``"SELL"``; ``size`` in instrument units."""

    ts_event: int
    price_ticks: int
    size: float
    aggressor: str


@dataclass(frozen=True, slots=True)
class BookView:
    """Top ``N`` levels of a book, best first, at ``ts_event``/``ts_init`` of its last update.

    Sizes are in instrument units (floats); prices in integer ticks.
    """

    symbol: str
    ts_event: int
    ts_init: int
    bid_ticks: tuple[int, ...]
    bid_sizes: tuple[float, ...]
    ask_ticks: tuple[int, ...]
    ask_sizes: tuple[float, ...]
    seq: int = 0
    quarantined: bool = False
    trades: tuple[TradePrint, ...] = ()
    # market-by-order symbols only: the FIFO queue of each level shown, as
    # {(side, price): ((priority, size), ...)} with side 0 = bid, 1 = ask (None on L2 data)
    queues: dict[tuple[int, int], tuple[tuple[int, float], ...]] | None = None

    @property
    def best_bid(self) -> int | None:
        return self.bid_ticks[0] if self.bid_ticks else None

    @property
    def best_ask(self) -> int | None:
        return self.ask_ticks[0] if self.ask_ticks else None

    @property
    def mid_ticks(self) -> float | None:
        if not self.bid_ticks or not self.ask_ticks:
            return None
        return (self.bid_ticks[0] + self.ask_ticks[0]) / 2.0


@dataclass(frozen=True, slots=True)
class DecisionPoint:
    """What the models see at one decision point of one symbol.

    Attributes:
        symbol: The symbol.
        decision_id: Deterministic id, ``"{symbol}-{n}"``.
        ts_event: Exchange time of the triggering market event.
        ts_init: Receive time of the triggering market event (latency is measured from here).
        wall_init_ns: Wall-clock ns when the triggering batch entered raydesk.
        features: Feature vector, float32, in the order of ``actors.book.features.FEATURE_NAMES``.
        window: The last ``T`` feature vectors (oldest first), float32 ``(T, F)``.
        valid: False while the book is quarantined or a window not yet full.
        book: The last ``T_b`` book states (oldest first), float32 ``(T_b, 40)``
            (``actors.book.book_window``); ``(0, 40)`` where no book window is kept.
    """

    symbol: str
    decision_id: str
    ts_event: int
    ts_init: int
    wall_init_ns: int
    features: np.ndarray
    window: np.ndarray
    valid: bool = True
    meta: dict[str, float] = field(default_factory=dict)
    book: np.ndarray = field(default_factory=lambda: np.zeros((0, 40), dtype=np.float32))
