"""SymbolEngine: one symbol's book and features, pure (no Ray).

It applies market-data batches with the compiled book kernel (:mod:`actors.book.ladder`),
turning market-by-order rows into level sizes first through an L3 book
(:mod:`actors.book.l3`) when the feed is L3. Integrity is enforced at every message boundary
(``F_LAST``): a crossed book, a sequence going backwards, a feed gap or an L3 inconsistency
quarantines the symbol (decision points flagged invalid, the book view marked ``quarantined`` so
the risk actor denies orders on it) until a snapshot resyncs it. An L3 book holds every order,
so a cross on it (a pre-open auction) lifts by itself once the book uncrosses. It emits one
:class:`~actors.core.views.DecisionPoint` per batch that ends with a complete message (a batch
cut mid-message gets none: the book is not consistent there).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from actors.book.book_window import BookWindow
from actors.book.features import FeatureEngine
from actors.book.frames import NO_MSGS, NO_TRADES
from actors.book.l3 import L3Book
from actors.book.ladder import ERR_CROSSED, ERR_GAP, ERR_SEQ, ERROR_NAMES, LadderBook
from actors.core.batch import ADD, BID, F_LAST, MODIFY, validate_rows
from actors.core.clock import Clock
from actors.core.errors import BatchError
from actors.core.instruments import Instrument
from actors.core.views import BookView, DecisionPoint, TradePrint


@dataclass(frozen=True, slots=True)
class SymbolUpdate:
    """What one batch produced: the book view, a decision point, counts and errors."""

    view: BookView | None
    decision: DecisionPoint | None
    events: int
    errors: tuple[str, ...] = ()
    error_kinds: tuple[str, ...] = ()
    quarantine_reason: str = ""  # set only on the batch that quarantined the symbol
    quarantine_kind: str = ""  # crossed | sequence | gap | l3 | invalid | kind (metric label)
    resynced: bool = False  # a snapshot in this batch rebuilt the book


def feature_hash(vec: np.ndarray) -> str:
    """Return a short, stable hash of a feature vector (for decision records)."""
    return hashlib.blake2b(np.ascontiguousarray(vec).tobytes(), digest_size=8).hexdigest()


class SymbolEngine:
    """Book, integrity and features of one symbol.

    Args:
        instrument: The symbol's instrument.
        book_cfg: ``BookConfig`` (levels_out, window_ticks).
        features_cfg: ``FeaturesConfig``.
        clock: Injected clock (unused by decisions; kept for staleness checks by callers).

    Example:
        >>> eng = SymbolEngine(ins, BookConfig(), FeaturesConfig(), SimClock())
        >>> upd = eng.on_batch(rows)
        >>> upd.view.best_bid
    """

    def __init__(self, instrument: Instrument, book_cfg: Any, features_cfg: Any, clock: Clock):
        self.instrument = instrument
        self.levels_out = int(book_cfg.levels_out)
        self.window_ticks = int(book_cfg.window_ticks)
        self.clock = clock
        self.book = LadderBook(self.window_ticks)
        self.l3: Any = None  # an L3Book, created at the first market-by-order row
        self.features_cfg = features_cfg
        self.features = FeatureEngine(features_cfg, float(instrument.tick_size))
        self.book_window = BookWindow(int(features_cfg.book_window))
        self.quarantined = False
        self.quarantine_reason = ""
        self.quarantine_kind = ""
        self.quarantines = 0
        self.resyncs = 0
        self.decisions = 0
        self.events = 0

    # ------------------------------------------------------------------------------------------
    def on_batch(self, rows: np.ndarray, wall_init_ns: int = 0, view: bool = True
                 ) -> SymbolUpdate:
        """Apply one batch and return the update. A malformed batch is rejected whole.

        A rejected batch leaves the book exactly as it was; the error names the column, the
        rule and the value; and since the book has then missed the venue's updates, the
        symbol is quarantined until a snapshot. ``view=False`` skips building the book view
        and trade prints (replay and benchmarks, which only need the book).
        """
        sym = self.instrument.symbol
        try:
            rows = validate_rows(rows, sym)
        except BatchError as exc:
            # The batch is rejected whole (the book is left as it was), so the book has now
            # missed updates the venue made: it is quarantined until a snapshot resyncs it.
            reason = self._quarantine(f"invalid batch rejected: {exc}", "invalid")
            return SymbolUpdate(
                view=self._view(()) if view else None,
                decision=None,
                events=0,
                errors=(str(exc),),
                error_kinds=(exc.field.split(".")[-1].split("[")[0],),
                quarantine_reason=reason,
                quarantine_kind="invalid" if reason else "",
            )
        n = len(rows)
        if n == 0:
            return SymbolUpdate(view=self._view(()) if view else None, decision=None, events=0)
        reason, kind = "", ""
        kinds = rows["kind"]
        l3_refills = 0
        if ((kinds >= ADD) & (kinds <= MODIFY)).any() or self.l3 is not None:
            # the rows may come back empty: fills alone change no level
            rows, reason, kind, l3_refills = self._through_l3(rows)
        book = self.book
        was_in_snapshot = book.in_snapshot  # a snapshot that began in an earlier batch
        prints: list[np.ndarray] = []
        code = row = a = b = 0
        snap_started = False
        if len(rows):
            # frames in bounded chunks (memory per symbol does not grow with the batch size)
            for msgs, trades in book.apply_chunks(rows, capture=True):
                self.features.update(msgs, trades)
                if view and len(trades):
                    prints.append(trades[["ts_event", "price", "size", "side"]].copy())
            code, row, a, b = book.error  # errors after the last snapshot start, if any
            snap_started = book.resynced
        if snap_started and kind == "l3" and not self.l3.needs_resync:
            reason, kind = "", ""  # the L3 errors came before the clear that began the resync
        resynced = False
        if (snap_started or was_in_snapshot) and not book.in_snapshot:
            # a complete snapshot rebuilt the book: whatever broke it before is gone
            resynced = True
            self._lift()
        if code and not reason:
            reason, kind = _describe(code, row, a, b, self.instrument)
        self.events += n
        if reason:
            reason = self._quarantine(reason, kind)
        consistent = len(rows) > 0 and not book.open_message and bool(rows[-1]["flags"] & F_LAST)
        if (
            self.quarantined
            and self.quarantine_kind == "crossed"
            and self.l3 is not None
            and not self.l3.needs_resync
            and consistent
            and not book.crossed
        ):
            # An L3 book holds every resting order, so it is its own resync: a cross (a
            # pre-open auction book, say) is quarantined while it lasts and lifts once the venue
            # uncrosses. An L2 diff book cannot verify itself and waits for a snapshot.
            self._lift()
            resynced = True
        if l3_refills:
            self.features.update(NO_MSGS, NO_TRADES, l3_iceberg_refills=l3_refills)
        decision = None
        bb, ba = book.best_bid, book.best_ask
        # sample only where the book is consistent: after a complete message, both sides
        if consistent and bb is not None and ba is not None:
            last = rows[-1]
            vec = self.features.vector()
            if vec is not None:
                self.book_window.push(*self.features.book_levels())
                self.decisions += 1
                mid = self.instrument.ticks_to_float((bb + ba) / 2.0)
                decision = DecisionPoint(
                    symbol=sym,
                    decision_id=f"{sym}-{self.decisions}",
                    ts_event=int(last["ts_event"]),
                    ts_init=int(last["ts_init"]),
                    wall_init_ns=int(wall_init_ns),
                    features=vec,
                    window=self.features.window_array(),
                    valid=(self.features.is_warm() and self.book_window.is_warm()
                           and not self.quarantined),
                    meta={"mid": mid},
                    book=self.book_window.array(),
                )
        tprints: tuple[TradePrint, ...] = ()
        if prints:
            tr = np.concatenate(prints) if len(prints) > 1 else prints[0]
            tprints = tuple(
                TradePrint(te, px, sz, "BUY" if sd == BID else "SELL")
                for te, px, sz, sd in zip(
                    tr["ts_event"].tolist(), tr["price"].tolist(),
                    tr["size"].tolist(), tr["side"].tolist(), strict=True,
                )
            )
        return SymbolUpdate(
            view=self._view(tprints) if view else None,
            decision=decision,
            events=n,
            quarantine_reason=reason,
            quarantine_kind=kind if reason else "",
            resynced=resynced,
        )

    def _quarantine(self, reason: str, kind: str) -> str:
        """Quarantine the symbol; return ``reason`` when this is a new quarantine, else "".

        An error during a quarantine for a cross escalates it: only a snapshot lifts it then.
        """
        if self.quarantined:
            if kind != "crossed":
                self.quarantine_kind = kind
            return ""
        self.quarantined = True
        self.quarantine_reason = reason
        self.quarantine_kind = kind
        self.quarantines += 1
        return reason

    def _lift(self) -> None:
        """The book is whole again (a snapshot, or an L3 book that uncrossed)."""
        self.resyncs += 1
        self.quarantined = False
        self.quarantine_reason = ""
        self.quarantine_kind = ""

    def _through_l3(self, rows: np.ndarray) -> tuple[np.ndarray, str, str, int]:
        """Turn market-by-order rows into level rows; return (rows, reason, kind, iceberg
        refills)."""
        if self.l3 is None:
            self.l3 = L3Book()
        before = self.l3.iceberg_refills
        out = self.l3.apply(rows)
        errs = self.l3.last_errors
        reason = f"L3 book: {errs[0]}" if errs else ""
        return out, reason, "l3" if reason else "", int(self.l3.iceberg_refills - before)

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
            # a snapshot still arriving is a half-built book: not for trading either
            quarantined=self.quarantined or self.book.in_snapshot,
            trades=trades,
            queues=self._queues(bp, ap) if self.l3 is not None else None,
        )

    def _queues(
        self, bids: Any, asks: Any
    ) -> dict[tuple[int, int], tuple[tuple[int, float], ...]]:
        """The FIFO queue of every level shown (market-by-order symbols): what the paper
        venue needs for an exact queue position."""
        assert self.l3 is not None
        out = {}
        for side, prices in ((0, bids), (1, asks)):
            for p in prices:
                out[(side, int(p))] = self.l3.level_queue(side, int(p))
        return out

    # checkpoint -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-safe checkpoint of the book and counters."""
        return {
            "book": self.book.snapshot(),
            "l3": self.l3.snapshot() if self.l3 is not None else None,
            "quarantined": self.quarantined,
            "quarantine_reason": self.quarantine_reason,
            "quarantine_kind": self.quarantine_kind,
            "decisions": self.decisions,
            "events": self.events,
        }

    def restore(self, image: dict[str, Any]) -> None:
        """Restore from :meth:`snapshot` output (feature history restarts cold)."""
        self.book = LadderBook.restore(image["book"], self.window_ticks)
        self.l3 = None
        if image.get("l3") is not None:
            self.l3 = L3Book.restore(image["l3"])
        self.features = FeatureEngine(self.features_cfg, float(self.instrument.tick_size))
        self.book_window = BookWindow(int(self.features_cfg.book_window))
        self.quarantined = bool(image["quarantined"])
        self.quarantine_reason = str(image["quarantine_reason"])
        self.quarantine_kind = str(image.get("quarantine_kind", ""))
        self.decisions = int(image["decisions"])
        self.events = int(image["events"])


def _describe(code: int, row: int, a: int, b: int, ins: Instrument) -> tuple[str, str]:
    """The reason (field, rule, value) and the metric label of a kernel integrity error."""
    if code == ERR_CROSSED:
        why = (f"book must not be crossed, was bid {ins.ticks_to_str(a)} >= ask "
               f"{ins.ticks_to_str(b)} at row {row}")
    elif code == ERR_SEQ:
        why = f"seq must be non-decreasing, was {a} after {b} at row {row}"
    elif code == ERR_GAP:
        why = (f"update ids must be contiguous, was a gap after {b} (feed reported it at seq "
               f"{a}); book void until a snapshot resyncs it")
    else:
        why = f"kind must be delta/snapshot/clear/trade on an L2 book, was {a} at row {row}"
    return why, ERROR_NAMES[code]
