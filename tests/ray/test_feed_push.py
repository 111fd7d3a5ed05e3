"""FeedActor → SymbolActors push mode on real local Ray: every row lands, books are exact."""

from __future__ import annotations

import pytest

from actors.book.actor import SymbolActor
from actors.book.engine import SymbolEngine
from actors.core.clock import SimClock
from actors.feed.actor import FeedActor
from actors.feed.simulator import MarketSimulator
from tests.conftest import small_config

pytestmark = pytest.mark.ray

START = 1_700_000_000_000_000_000


def test_push_delivers_every_row_in_order_to_the_symbol_actors(ray_cluster, tmp_path):
    ray = ray_cluster
    cfg = small_config(tmp_path)
    seconds = 60.0
    feed = ray.remote(FeedActor).remote(cfg.model_dump(mode="json"), True, START)
    actors = {
        ins.symbol: ray.remote(SymbolActor).remote(
            ins, cfg.book.model_dump(mode="json"), cfg.features.model_dump(mode="json"), True
        )
        for ins in cfg.instrument_map().values()
    }
    try:
        n = ray.get(feed.prepare_sim.remote(seconds))
        out = ray.get(feed.push.remote(actors, batch_rows=1_000, max_in_flight=2), timeout=300)
        images = {s: ray.get(a.snapshot.remote()) for s, a in actors.items()}
    finally:
        for a in [feed, *actors.values()]:
            ray.kill(a)
    assert out["rows"] == n == out["applied"] and out["errors"] == 0
    assert out["quarantined"] == [] and out["batches"] >= n // 1_000
    # the same rows applied locally in one go give the same books: order was kept
    ins = cfg.instrument_map()
    sim = MarketSimulator(cfg.simulator, list(ins.values()), cfg.initial_prices_ticks(), START)
    for sym, rows in sim.advance(START + int(seconds * 1e9)).items():
        eng = SymbolEngine(ins[sym], cfg.book, cfg.features, SimClock())
        eng.on_batch(rows, view=False)
        assert images[sym]["book"]["bids"] == eng.book.snapshot()["bids"]
        assert images[sym]["book"]["asks"] == eng.book.snapshot()["asks"]
        assert images[sym]["events"] == len(rows)
