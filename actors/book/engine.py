"""SymbolEngine: one symbol's book and features, pure (no Ray).

It applies market-data batches row by row, checks integrity at every message boundary
(``F_LAST``), and emits one :class:`~actors.core.views.DecisionPoint` per batch that ends with
a complete message (a batch cut mid-message gets none: the book is not consistent there).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from actors.book.book import L2Book
from actors.book.features import FeatureState, FlowAccumulator, compute_features
from actors.core.batch import BID, CLEAR, F_LAST, SNAPSHOT, TRADE, validate_rows
from actors.core.clock import Clock
from actors.core.errors import BatchError
from actors.core.instruments import Instrument
from actors.core.views import BookView, DecisionPoint, TradePrint


@dataclass(frozen=True, slots=True)
class SymbolUpdate:
    """What one batch produced: the book view, a decision point, counts and errors."""

    view: BookView
    decision: DecisionPoint | None
    events: int
    errors: tuple[str, ...] = ()
    error_kinds: tuple[str, ...] = ()
    quarantine_reason: str = ""  # set only on the batch that quarantined the symbol


def feature_hash(vec: np.ndarray) -> str:
    """Return a short, stable hash of a feature vector (for decision records)."""
    return hashlib.blake2b(np.ascontiguousarray(vec).tobytes(), digest_size=8).hexdigest()


class SymbolEngine:
    """Book, integrity and features of one symbol.

    Args:
        instrument: The symbol's instrument.
        book_cfg: ``BookConfig`` (levels_out).
        features_cfg: ``FeaturesConfig`` (window, imbalance_levels).
        clock: Injected clock (unused by decisions; kept for staleness checks by callers).

    Example:
        >>> eng = SymbolEngine(ins, BookConfig(), FeaturesConfig(), SimClock())
        >>> upd = eng.on_batch(rows)
        >>> upd.view.best_bid
    """

    def __init__(self, instrument: Instrument, book_cfg: Any, features_cfg: Any, clock: Clock):
        self.instrument = instrument
        self.levels_out = int(book_cfg.levels_out)
        self.clock = clock
        self.book = L2Book()
        self.flow = FlowAccumulator()
        self.features = FeatureState(int(features_cfg.window), int(features_cfg.imbalance_levels))
        self.quarantined = False
        self.quarantine_reason = ""
        self.decisions = 0
        self.events = 0
        self._in_snapshot = False

    # ------------------------------------------------------------------------------------------
    def on_batch(self, rows: np.ndarray, wall_init_ns: int = 0) -> SymbolUpdate:
        """Apply one batch and return the update. A malformed batch is rejected whole.

        A rejected batch leaves the book exactly as it was; the error names the column, the
        rule and the value.
        """
        sym = self.instrument.symbol
        try:
            rows = validate_rows(rows, sym)
        except BatchError as exc:
            return SymbolUpdate(
                view=self._view(()),
                decision=None,
                events=0,
                errors=(str(exc),),
                error_kinds=(exc.field.split(".")[-1].split("[")[0],),
            )
        n = len(rows)
        if n == 0:
            return SymbolUpdate(view=self._view(()), decision=None, events=0)
        reason = ""
        trades: list[TradePrint] = []
        book = self.book
        flow = self.flow
        in_snapshot = self._in_snapshot
        for ts_event, ts_init, seq, kind, side, price, size, flags, _oid in rows.tolist():
            if seq < book.last_seq and kind != SNAPSHOT:
                reason = reason or f"seq must be non-decreasing, was {seq} after {book.last_seq}"
            if kind == TRADE:
                trades.append(TradePrint(ts_event, price, size, "BUY" if side == BID else "SELL"))
                flow.on_trade(side == BID, size)
            elif kind == CLEAR:
                book.clear()
            else:
                if kind == SNAPSHOT and not in_snapshot:
                    # a resync: whatever broke the book before this snapshot no longer applies
                    book.clear()
                    in_snapshot = True
                    reason = ""
                    self.quarantined = False
                    self.quarantine_reason = ""
                book.set_level(side, price, size)
            book.last_seq = seq
            book.ts_event = ts_event
            book.ts_init = ts_init
            if flags & F_LAST:
                in_snapshot = False
                if book.crossed:
                    reason = reason or (
                        f"book must not be crossed, was bid {book.best_bid} >= ask "
                        f"{book.best_ask} at seq {seq}"
                    )
                pb, pa = book.best_bid, book.best_ask
                flow.on_touch(
                    pb,
                    book.bids.get(pb, 0.0) if pb is not None else 0.0,
                    pa,
                    book.asks.get(pa, 0.0) if pa is not None else 0.0,
                )
        self._in_snapshot = in_snapshot  # a snapshot may span batches
        self.events += n
        if reason and self.quarantined:
            reason = ""  # already quarantined: not a new quarantine
        elif reason:
            self.quarantined = True
            self.quarantine_reason = reason
        bp, bs, ap, asz = book.top(max(self.levels_out, self.features.imbalance_levels))
        decision = None
        last = rows[-1]
        # sample only where the book is consistent: after a complete message
        complete = bool(last["flags"] & F_LAST)
        vec = compute_features(self.features, flow, bp, bs, ap, asz) if complete else None
        if complete:
            flow.reset()
        if vec is not None:
            self.decisions += 1
            mid = self.instrument.ticks_to_float((bp[0] + ap[0]) / 2.0)
            decision = DecisionPoint(
                symbol=sym,
                decision_id=f"{sym}-{self.decisions}",
                ts_event=int(last["ts_event"]),
                ts_init=int(last["ts_init"]),
                wall_init_ns=int(wall_init_ns),
                features=vec,
                window=self.features.window_array(),
                valid=self.features.is_warm() and not self.quarantined,
                meta={"mid": mid},
            )
        k = self.levels_out
        view = BookView(
            symbol=sym,
            ts_event=book.ts_event,
            ts_init=book.ts_init,
            bid_ticks=tuple(bp[:k]),
            bid_sizes=tuple(bs[:k]),
            ask_ticks=tuple(ap[:k]),
            ask_sizes=tuple(asz[:k]),
            seq=book.last_seq,
            quarantined=self.quarantined,
            trades=tuple(trades),
        )
        return SymbolUpdate(
            view=view,
            decision=decision,
            events=n,
            quarantine_reason=reason,
        )

    def _view(self, trades: tuple[TradePrint, ...]) -> BookView:
        bp, bs, ap, asz = self.book.top(self.levels_out)
        return BookView(
            symbol=self.instrument.symbol,
            ts_event=self.book.ts_event,
            ts_init=self.book.ts_init,
            bid_ticks=tuple(bp),
            bid_sizes=tuple(bs),
            ask_ticks=tuple(ap),
            ask_sizes=tuple(asz),
            seq=self.book.last_seq,
            quarantined=self.quarantined,
            trades=trades,
        )

    # checkpoint -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-safe checkpoint of the book and counters."""
        return {
            "book": self.book.snapshot(),
            "quarantined": self.quarantined,
            "quarantine_reason": self.quarantine_reason,
            "decisions": self.decisions,
            "events": self.events,
        }

    def restore(self, image: dict[str, Any]) -> None:
        """Restore from :meth:`snapshot` output (feature history restarts cold)."""
        self.book = L2Book.restore(image["book"])
        self.quarantined = bool(image["quarantined"])
        self.quarantine_reason = str(image["quarantine_reason"])
        self.decisions = int(image["decisions"])
        self.events = int(image["events"])
