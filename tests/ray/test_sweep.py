"""The sweep job on a real local Ray: Tune trials of full in-process replays, walk-forward
outputs, and the proof that its best config, re-run as a plain backtest (Ray actors and
Serve), reproduces the sweep's metrics exactly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from jobs import backtest
from jobs.sweep import REPRODUCED, candidate_key, candidates, run_sweep
from tests.conftest import small_config

pytestmark = pytest.mark.ray

SPACE = {"strategy.entry_edge": [0.02, 0.05], "strategy.hold_steps": [0, 20]}


def test_sweep_best_config_rerun_as_a_backtest_reproduces_its_metrics(
    ray_cluster, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = small_config(
        tmp_path,
        sweep={"space": SPACE, "duration_s": 60.0, "folds": 2, "warmup_s": 5.0, "top_k": 1},
    ).with_overrides(models={"registry_path": str(model_dir)})
    storage = tmp_path / "sweeps"

    result = run_sweep(cfg, storage, "sw-1", progress=True)

    out_dir = storage / "sw-1"
    err = capsys.readouterr().err
    assert "coarse: 4 candidates" in err and "full replay: " in err
    keys = {candidate_key(c) for c in candidates(cfg)}
    with (out_dir / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["candidate"] for r in rows} == keys
    assert all(r["coarse_span_total_return"] != "" for r in rows)  # every one ranked coarse
    confirmed = set(result["confirm"]["all"])
    assert 1 <= len(confirmed) <= 3 and confirmed <= keys
    assert {r["candidate"] for r in rows if r["full_span_total_return"] != ""} == confirmed
    for k in confirmed:  # each full replay is a Tune trial with its own journal
        assert (out_dir / "trials" / k / "journal.log").stat().st_size > 0
    assert (out_dir / "tune").is_dir()
    wf = json.loads((out_dir / "walk_forward.json").read_text())
    assert [f["fold"] for f in wf["folds"]] == [1, 2]
    for f in wf["folds"]:
        assert f["selected"] in result["confirm"]["per_fold"][str(f["fold"])]
        assert max(b for _, b in f["train"]) <= f["test"][0]
    assert wf["out_of_sample"]["steps"] == sum(b - a for a, b in (f["test"] for f in wf["folds"]))
    best = json.loads((out_dir / "best.json").read_text())
    assert best["key"] == result["best"]["key"] in confirmed
    best_cfg = yaml.safe_load((out_dir / "best.yaml").read_text())
    for path, value in best["params"].items():
        section, name = path.split(".")
        assert best_cfg[section][name] == value
    # the models it was scored with are pinned
    assert set(best_cfg["models"]["versions"]) == set(cfg.models.families)
    assert best_cfg["run"]["duration_s"] == 60.0 and best_cfg["run"]["replay"] is True

    code = backtest.main(["--config", str(out_dir / "best.yaml"), "--storage",
                          str(tmp_path / "bt"), "--json", "--no-progress"])

    out = capsys.readouterr()
    assert code == 0, out.err
    m = json.loads(out.out)
    summary = json.loads((tmp_path / "bt" / m["run_id"] / "summary.json").read_text())
    assert summary["mode"] == "replay"  # the Ray topology and Serve, not the in-process one
    assert {k: m[k] for k in REPRODUCED} == best["metrics"]
    for k in ("total_return", "sharpe", "sortino", "max_drawdown"):  # the sweep's own scores
        assert best["scores"]["whole"][k] == pytest.approx(m[k], rel=1e-9), k
    assert m["orders"] > 0
    # and the journals agree byte for byte
    trial = out_dir / "trials" / best["key"] / "journal.log"
    assert (tmp_path / "bt" / m["run_id"] / "journal.log").read_bytes() == trial.read_bytes()
