"""``raydesk bench feed`` through the real actors: a FeedActor on the live feed server and one
SymbolActor per symbol on local Ray, at a tiny rate."""

from __future__ import annotations

import json

import pytest

from jobs.bench import bench_feed
from tests.conftest import small_config

pytestmark = pytest.mark.ray


def test_bench_feed_through_ray_receives_and_applies_every_message(ray_cluster, tmp_path):
    # Arrange
    cfg = small_config(tmp_path)
    # Act: a server process paced at 300 messages/s, 1.5 s measured, inline then through Ray
    out = bench_feed(cfg, rates=(300,), duration_s=1.5, step_rates=(), warmup_s=2.0)
    # Assert
    json.dumps(out)
    r = out["ray"]["rates"]["300"]
    assert r["received"] > 100 and r["rows"] >= r["received"] // 2
    assert r["dropped"] == 0 and r["reconnects"] == 0
    assert 0 < r["p50_ms"] <= r["p99_ms"] and r["p50_ms"] < 1_000
    assert out["ray"]["max_sustained_msgs_per_s"] in (0, 300)
