"""The backtest job end to end: one short real replay (local Ray and Serve) through its main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cluster.config import load_config
from jobs import backtest
from tests.conftest import small_config

pytestmark = pytest.mark.ray


def test_backtest_job_writes_report_and_metrics_that_reconcile_with_the_run(
    ray_cluster, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = small_config(tmp_path, strategy={"entry_edge": 0.02}, run={"progress": True})
    cfg = cfg.with_overrides(models={"registry_path": str(model_dir)})
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    storage = tmp_path / "store"
    ran = backtest.backtest_config(load_config(cfg_path), storage=storage, events=3_000)

    code = backtest.main(
        ["--config", str(cfg_path), "--events", "3000", "--storage", str(storage), "--json"]
    )

    out = capsys.readouterr()
    assert code == 0, out.err
    m = json.loads(out.out)
    assert m["run_id"] == f"backtest-{ran.hash()}-1"
    run_dir = storage / m["run_id"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert m["config_hash"] == summary["config_hash"] == ran.hash()
    assert not (tmp_path / "runs").exists()  # --storage wins over run.runs_dir
    # the journal's fills rebuild the execution actor's portfolio
    assert m["fills"] == summary["fills"] > 0
    assert (m["orders"], m["steps"]) == (summary["orders"], summary["steps"])
    assert m["denials_by_reason"] == summary["denials"]
    assert m["pnl"] == pytest.approx(summary["pnl"], abs=1e-5)
    assert m["fees"] == pytest.approx(summary["portfolio"]["fees"], abs=1e-5)
    held = {s: q for s, q in m["final_positions_lots"].items() if q}
    assert held == {s: q for s, q in summary["portfolio"]["positions"].items() if q}
    # the latency histogram is built from the run's own samples
    assert m["latency"]["source"] == "samples"
    assert m["latency"]["p50"] == pytest.approx(summary["latency_ms"]["p50"], abs=1e-3)
    assert m["annualisation"]["step_s"] == cfg.feed.batch_interval_ms / 1e3
    assert m["predictions"]["decisions"] > 0
    assert json.loads((run_dir / "metrics.json").read_text()) == m
    page = (run_dir / "report.html").read_text()
    assert m["run_id"] in page and page.count("<svg") >= 8
    assert f"backtest {m['run_id']}: events" in out.err and " done" in out.err
