"""``raydesk bench inference`` on real Serve at a tiny rate: the documented JSON shape, every
request answered by the models, plausible latencies."""

from __future__ import annotations

import json

import pytest

from jobs.bench import BENCHMARKS, bench_inference
from tests.conftest import small_config

pytestmark = pytest.mark.ray


def test_bench_inference_reports_each_target_at_a_tiny_rate(ray_cluster, model_dir, tmp_path):
    # Arrange: the session's trained registry
    cfg = small_config(tmp_path).with_overrides(models={"registry_path": str(model_dir)})
    # Act: 50 requests/s for 1 s, 1 s of closed-loop throughput per target (no HTTP: the
    # session's Serve proxy belongs to another test's port)
    out = bench_inference(cfg, rate=50, duration_s=1.0, throughput_s=1.0, concurrency=4,
                          batch_predictions=8, warmup_s=0.2, http=False, low_rate=20)
    # Assert
    assert BENCHMARKS["inference"] is bench_inference
    json.dumps(out)
    assert set(out) >= {"ensemble", "lgbm", "xgboost", "gru", "deeplob", "transformer"}
    for target in ("ensemble", "lgbm", "xgboost", "gru", "deeplob", "transformer"):
        r = out[target]["handle"]
        assert r["requests"] == 50 and r["answered_by_models"] + r["fallbacks"] == 50
        assert r["rejected"] == r["timed_out"] == 0
        assert r["at_20_rps"]["requests"] == 20
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["p50_ms"] < 5_000
        assert r["max_predictions_per_s"] >= r["max_predictions_per_s_1_per_request"] > 0
    assert out["ensemble"]["handle"]["answered_by_models"] == 50  # 5 s deadline: no fallback
