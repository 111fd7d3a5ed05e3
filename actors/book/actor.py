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
        self.engine = SymbolEngine(
            instrument,
            BookConfig.model_validate(book),
            FeaturesConfig.model_validate(features),
            make_clock(replay),
        )
        self.symbol = instrument.symbol
        self.metrics = Metrics()

    def on_batch(self, batch: MarketBatch) -> SymbolUpdate:
        """Apply one batch; a malformed batch is rejected whole and counted."""
        t0 = time.perf_counter_ns()
        upd = self.engine.on_batch(batch.data, batch.wall_init_ns)
        m = self.metrics
        m.observe("raydesk_book_apply_us", (time.perf_counter_ns() - t0) / 1e3, symbol=self.symbol)
        m.inc("raydesk_batches", symbol=self.symbol)
        m.inc("raydesk_events", upd.events, symbol=self.symbol)
        for kind in upd.error_kinds:
            m.inc("raydesk_bad_input", component="symbol", field=kind)
        if upd.quarantine_reason:
            m.inc("raydesk_quarantines", symbol=self.symbol)
        return upd

    def snapshot(self) -> dict[str, Any]:
        """Return the engine's checkpoint image."""
        return self.engine.snapshot()
