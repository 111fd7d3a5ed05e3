"""SymbolActor: owns one symbol's book and features (thin Ray wrapper over SymbolEngine)."""

from __future__ import annotations

import time
from typing import Any

from actors.book.engine import SymbolEngine, SymbolUpdate
from actors.core.batch import MarketBatch
from actors.core.clock import make_clock
from actors.core.instruments import Instrument
from cluster.config import BookConfig, FeaturesConfig
from cluster.metrics import Metrics


class SymbolActor:
    """Applies batches for one symbol and reports the book view and decision point."""

    def __init__(
        self, instrument: Instrument, book: dict[str, Any], features: dict[str, Any], replay: bool
    ) -> None:
        book_cfg = BookConfig.model_validate(book)
        features_cfg = FeaturesConfig.model_validate(features)
        self.engine = SymbolEngine(instrument, book_cfg, features_cfg, make_clock(replay))
        self.symbol = instrument.symbol
        self.metrics = Metrics()
        self.batches = 0
        warm_up_engine(instrument, book_cfg, features_cfg)

    def _apply(self, batch: MarketBatch, view: bool) -> SymbolUpdate:
        m = self.metrics
        entered = batch.wall_init_ns  # 0: a batch built without an entry time (tests)
        if entered:
            m.set("raydesk_symbol_lag_ms", (time.time_ns() - entered) / 1e6, symbol=self.symbol)
        t0 = time.perf_counter_ns()
        upd = self.engine.on_batch(batch.data, batch.wall_init_ns, view=view)
        self.batches += 1
        m.observe("raydesk_book_apply_us", (time.perf_counter_ns() - t0) / 1e3, symbol=self.symbol)
        if entered and upd.decision is not None:
            m.observe("raydesk_feature_latency_ms", (time.time_ns() - entered) / 1e6,
                      symbol=self.symbol)
        m.set("raydesk_book_quarantined", float(self.engine.quarantined), symbol=self.symbol)
        m.inc("raydesk_batches", symbol=self.symbol)
        m.inc("raydesk_events", upd.events, symbol=self.symbol)
        for kind in upd.error_kinds:
            m.inc("raydesk_bad_input", component="symbol", field=kind)
        if upd.quarantine_reason:
            m.inc("raydesk_quarantines", symbol=self.symbol, reason=upd.quarantine_kind)
        if upd.resynced:
            m.inc("raydesk_resyncs", symbol=self.symbol)
        return upd

    def on_batch(self, batch: MarketBatch) -> SymbolUpdate:
        """Apply one batch; a malformed batch is rejected whole and counted."""
        return self._apply(batch, view=True)

    def ingest(self, batch: MarketBatch) -> tuple[int, int]:
        """Apply one batch without building a view (replay, bulk loads); return
        ``(events applied, errors)``."""
        upd = self._apply(batch, view=False)
        return upd.events, len(upd.errors)

    def barrier(self) -> dict[str, Any]:
        """Return once every earlier call from the same caller has been applied."""
        e = self.engine
        return {
            "symbol": self.symbol,
            "events": e.events,
            "batches": self.batches,
            "quarantined": e.quarantined,
            "seq": e.book.last_seq,
        }

    def snapshot(self) -> dict[str, Any]:
        """Return the engine's checkpoint image."""
        return self.engine.snapshot()

    def restore(self, image: dict[str, Any]) -> None:
        """Restore the engine from a checkpoint image (``snapshot`` output)."""
        self.engine.restore(image)


def warm_up_engine(instrument: Instrument, book: BookConfig, features: FeaturesConfig) -> None:
    """Run the compiled kernels once on a throwaway engine, so loading (or compiling) them
    happens when the actor starts, not on the first live batch (seconds of latency)."""
    from actors.core.batch import ASK, BID, DELTA, F_LAST, F_SNAPSHOT, SNAPSHOT, TRADE, empty_rows

    rows = empty_rows(4)
    spec = [(SNAPSHOT, BID, 100, 1.0, F_SNAPSHOT), (SNAPSHOT, ASK, 101, 1.0, F_SNAPSHOT | F_LAST),
            (TRADE, BID, 101, 0.5, F_LAST), (DELTA, BID, 100, 2.0, F_LAST)]
    for i, (kind, side, price, size, flags) in enumerate(spec):
        rows[i] = (1 + i, 1 + i, 1, kind, side, price, size, flags, 0)
    SymbolEngine(instrument, book, features, make_clock(True)).on_batch(rows)
