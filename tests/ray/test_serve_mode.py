"""Serve's throughput-optimised mode: on for a Ray that raydesk starts itself, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cluster.serve_mode import ENV, apply_serve_mode
from tests.conftest import small_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_local_run_uses_throughput_optimised_serve_and_answers_every_decision(
    model_dir, tmp_path
) -> None:
    # Arrange: a driver process of its own (it starts its own local Ray), mode left to config
    cfg = small_config(tmp_path, models={"registry_path": str(model_dir)},
                       ray={"num_cpus": 2})
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    env = {k: v for k, v in os.environ.items() if k not in (ENV, "RAY_ADDRESS")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Act
    run = subprocess.run(
        [sys.executable, "-m", "jobs.run", "--config", str(cfg_path), "--replay",
         "--events", "4000"],
        env=env, capture_output=True, text=True, timeout=400,
        cwd=Path(__file__).resolve().parents[2],
    )
    # Assert: the mode was on, and every decision was answered by the models
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert summary["serve_throughput_optimized"] is True
    assert summary["decisions"] > 0 and summary["inference_fallbacks"] == {}
    assert set(summary["models"]) <= set(cfg.models.families) and summary["models"]


def test_mode_is_left_alone_where_raydesk_does_not_start_ray(monkeypatch, tmp_path) -> None:
    cfg = small_config(tmp_path)
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    import ray.serve  # noqa: F401 - as any process that already uses Serve

    # ray.serve is imported: too late to change this process's mode
    assert apply_serve_mode(cfg) is False and ENV not in os.environ
    # an existing cluster decides for itself
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert apply_serve_mode(cfg) is False and ENV not in os.environ
    # an explicit value always wins, either way
    monkeypatch.setenv(ENV, "1")
    assert apply_serve_mode(cfg.with_overrides(ray={"serve_throughput_optimized": False}))
    monkeypatch.setenv(ENV, "0")
    assert apply_serve_mode(cfg) is False


def test_mode_is_set_before_a_fresh_process_imports_serve(monkeypatch, tmp_path) -> None:
    cfg = small_config(tmp_path)
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)  # as in a fresh process (restored afterwards)

    assert apply_serve_mode(cfg.with_overrides(ray={"serve_throughput_optimized": False})) is False
    assert ENV not in os.environ
    assert apply_serve_mode(cfg) is True and os.environ[ENV] == "1"
