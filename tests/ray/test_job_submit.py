"""Every research job through ``ray job submit`` against a real head node with token auth.

The module starts its own head node (``ray start --head --block``, its own temp dir and ports,
so ``ray.init()`` elsewhere never finds it) with ``RAY_AUTH_MODE=token`` and a fresh
``RAY_AUTH_TOKEN``, as the README tells a user to. Each job is submitted exactly as the README
shows (``ray job submit --working-dir . -- python -m jobs.<name> ...``), with that token in
the client's environment; a client with a wrong token is refused. The jobs read a small config
written here (absolute paths: the job runs in an unpacked copy of the working dir) and write
under a storage folder this test then checks.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import small_config

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Head:
    address: str  # the dashboard (job server) URL
    env: dict[str, str]  # a client environment holding the cluster's token


def _ray_cli(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    token = secrets.token_hex(32)
    temp = Path(tempfile.mkdtemp(prefix="rdj", dir="/tmp"))  # short: Ray's socket paths
    dash = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    log = (temp / "head.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--port", str(_free_port()),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
         "--include-dashboard", "true", "--num-cpus", "2", "--temp-dir", str(temp),
         "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited: {(temp / 'head.log').read_text()[-3000:]}")
            # ready when a trivial job runs: the job server answers before its agent is up
            # ("No available agent to submit job")
            r = _ray_cli("job", "submit", "--address", address, "--", "python", "-c",
                         "print('raydesk-ready')", env=env, timeout=120)
            if r.returncode == 0 and "raydesk-ready" in r.stdout:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the head node's jobs did not run in 180 s: {r.stderr[-2000:]}")
            time.sleep(2)
        yield Head(address, env)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _submit(head: Head, *args: str, timeout: float = 420) -> str:
    r = _ray_cli("job", "submit", "--address", head.address, "--working-dir", ".", "--",
                 "python", "-m", *args, env=head.env, timeout=timeout)
    assert r.returncode == 0, (r.stdout[-4000:], r.stderr[-4000:])
    assert "succeeded" in (r.stdout + r.stderr)
    return r.stdout


@pytest.fixture(scope="module")
def job_config(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("jobsubmit")
    cfg = small_config(
        tmp,
        strategy={"entry_edge": 0.02},
        sweep={"space": {"strategy.entry_edge": [0.02, 0.05]}, "duration_s": 30.0,
               "folds": 1, "warmup_s": 2.0, "top_k": 1},
    )
    # every family in the ingress replica: one Serve replica to start on the fresh cluster
    cfg = cfg.with_overrides(models={"registry_path": str(model_dir),
                                     "colocate": list(cfg.models.families)})
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def test_a_client_without_the_clusters_token_is_refused(head: Head) -> None:
    env = {**head.env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    r = _ray_cli("job", "list", "--address", head.address, env=env, timeout=60)
    assert r.returncode != 0
    assert "auth" in (r.stdout + r.stderr).lower()


def test_backtest_job_by_ray_job_submit(head: Head, job_config: Path, tmp_path: Path) -> None:
    _submit(head, "jobs.backtest", "--config", str(job_config), "--events", "2000",
            "--storage", str(tmp_path), "--no-progress")
    (run,) = tmp_path.iterdir()
    m = json.loads((run / "metrics.json").read_text())
    assert run.name.startswith("backtest-") and m["run_id"] == run.name
    assert m["steps"] > 0 and (run / "report.html").stat().st_size > 0


def test_build_dataset_job_by_ray_job_submit(head: Head, job_config: Path, tmp_path: Path) -> None:
    _submit(head, "jobs.build_dataset", "--config", str(job_config), "--source", "sim",
            "--sim-seconds", "30", "--horizons", "1", "5", "--storage", str(tmp_path), "--quiet")
    (run,) = tmp_path.iterdir()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["run_id"] == run.name and (run / "features.parquet").stat().st_size > 0
    assert (run / "quality.json").exists()


def test_sweep_job_by_ray_job_submit(head: Head, job_config: Path, tmp_path: Path) -> None:
    _submit(head, "jobs.sweep", "--config", str(job_config), "--storage", str(tmp_path),
            "--no-progress")
    (run,) = tmp_path.iterdir()
    best = json.loads((run / "best.json").read_text())
    assert run.name.startswith("sweep-") and best["metrics"]["steps"] > 0
    assert (run / "best.yaml").exists() and (run / "results.csv").exists()
    assert (run / "trials" / best["key"] / "journal.log").exists()


def test_retrain_job_by_ray_job_submit(
    head: Head, job_config: Path, model_dir: Path, tmp_path: Path
) -> None:
    registry = tmp_path / "models"  # a copy: promotions must not touch the session's registry
    shutil.copytree(model_dir, registry)
    data = yaml.safe_load(job_config.read_text())
    data["models"]["registry_path"] = str(registry)
    data["retrain"].update(families=["lgbm"], samples=2, boost_rounds=[40, 60],
                           rounds_per_report=20)
    cfg = tmp_path / "retrain.yaml"
    cfg.write_text(yaml.safe_dump(data))
    _submit(head, "jobs.retrain", "--config", str(cfg), "--storage", str(tmp_path / "runs"),
            "--no-progress")
    (run,) = (tmp_path / "runs").iterdir()
    out = json.loads((run / "retrain.json").read_text())
    assert run.name.startswith("retrain-") and set(out["families"]) == {"lgbm"}
    decision = out["families"]["lgbm"]
    assert isinstance(decision["promoted"], bool)
    # the challenger is in the copied registry, whatever the decision
    assert (registry / "lgbm" / decision["challenger"]["version"]).is_dir()
