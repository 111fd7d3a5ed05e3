"""Every research job through ``ray job submit`` against a real head node with token auth.

The module starts its own head node (``ray start --head --block``, its own temp dir and ports,
so ``ray.init()`` elsewhere never finds it) with ``RAY_AUTH_MODE=token`` and a fresh
``RAY_AUTH_TOKEN``, as the README tells a user to. Each job is submitted exactly as the README
shows (``ray job submit --working-dir . -- python -m jobs.<name> ...``, plus ``--no-wait``:
the four run at once, then the test waits for all), with that token in the client's
environment; a client with a wrong token is refused. The jobs read a small config
written here (absolute paths: the job runs in an unpacked copy of the working dir) and write
under a storage folder this test then checks.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
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
         "--include-dashboard", "true", "--num-cpus", "4", "--temp-dir", str(temp),
         "--disable-usage-stats",
         # ports with fixed defaults (52365, 10001) that a session's local Ray already holds
         "--dashboard-agent-listen-port", str(_free_port()),
         "--ray-client-server-port", str(_free_port()),
         "--metrics-export-port", str(_free_port()),
         "--runtime-env-agent-port", str(_free_port())],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
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
        proc.terminate()  # `ray start --block` stops its node's processes on SIGTERM ...
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        with contextlib.suppress(ProcessLookupError):  # ... and what is left goes with its group
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def _status(head: Head, job_id: str) -> str:
    r = _ray_cli("job", "status", "--address", head.address, job_id, env=head.env, timeout=60)
    text = r.stdout + r.stderr  # Ray's CLI words: "Job 'x' succeeded", "... 'x': RUNNING"
    for state, words in (("SUCCEEDED", "succeeded"), ("FAILED", "failed"),
                         ("STOPPED", "was stopped"), ("RUNNING", "RUNNING"),
                         ("PENDING", "PENDING")):
        if f"'{job_id}' {words}" in text or f"'{job_id}': {words}" in text:
            return state
    return "UNKNOWN"


@pytest.fixture(scope="module")
def jobs(
    head: Head, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, object]]:
    """Submit the four jobs at once (``--no-wait``), wait for all; name → {storage, state}."""
    tmp = tmp_path_factory.mktemp("jobsubmit")
    cfg = small_config(
        tmp,
        strategy={"entry_edge": 0.02},
        sweep={"space": {"strategy.entry_edge": [0.02, 0.05]}, "duration_s": 30.0,
               "folds": 1, "warmup_s": 2.0, "top_k": 1},
        retrain={"families": ["lgbm"], "samples": 2, "boost_rounds": [40, 60],
                 "rounds_per_report": 20},
    )
    registry = tmp / "models"  # a copy: a promotion must not touch the session's registry
    shutil.copytree(model_dir, registry)
    # every family in the ingress replica: one Serve replica to start on the fresh cluster
    cfg = cfg.with_overrides(models={"registry_path": str(registry),
                                     "colocate": list(cfg.models.families)})
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    argv = {
        "backtest": ["--events", "2000", "--no-progress"],
        "build_dataset": ["--source", "sim", "--sim-seconds", "30", "--horizons", "1", "5",
                          "--quiet"],
        "sweep": ["--no-progress"],
        "retrain": ["--no-progress"],
    }
    out: dict[str, dict[str, object]] = {}
    for name, extra in argv.items():
        storage = tmp / f"out-{name}"
        job_id = f"raydesk-{name}-{secrets.token_hex(4)}"
        r = _ray_cli("job", "submit", "--address", head.address, "--submission-id", job_id,
                     "--no-wait", "--working-dir", ".", "--", "python", "-m", f"jobs.{name}",
                     "--config", str(path), "--storage", str(storage), *extra,
                     env=head.env, timeout=120)
        assert r.returncode == 0, (name, r.stdout[-3000:], r.stderr[-3000:])
        out[name] = {"id": job_id, "storage": storage, "state": "PENDING"}
    deadline = time.monotonic() + 600
    while any(j["state"] not in TERMINAL for j in out.values()):
        assert time.monotonic() < deadline, {k: j["state"] for k, j in out.items()}
        time.sleep(3)
        for j in out.values():
            if j["state"] not in TERMINAL:
                j["state"] = _status(head, str(j["id"]))
    for j in out.values():
        if j["state"] != "SUCCEEDED":
            logs = _ray_cli("job", "logs", "--address", head.address, str(j["id"]),
                            env=head.env, timeout=60)
            j["logs"] = logs.stdout[-4000:]
    out["registry"] = {"path": registry}
    return out


def _succeeded(jobs: dict[str, dict[str, object]], name: str) -> Path:
    job = jobs[name]
    assert job["state"] == "SUCCEEDED", job.get("logs")
    (run,) = Path(job["storage"]).iterdir()  # type: ignore[arg-type]
    return run


def test_a_client_without_the_clusters_token_is_refused(head: Head) -> None:
    env = {**head.env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    r = _ray_cli("job", "list", "--address", head.address, env=env, timeout=60)
    assert r.returncode != 0
    assert "auth" in (r.stdout + r.stderr).lower()


def test_backtest_job_by_ray_job_submit(jobs: dict) -> None:
    run = _succeeded(jobs, "backtest")
    m = json.loads((run / "metrics.json").read_text())
    assert run.name.startswith("backtest-") and m["run_id"] == run.name
    assert m["steps"] > 0 and (run / "report.html").stat().st_size > 0


def test_build_dataset_job_by_ray_job_submit(jobs: dict) -> None:
    run = _succeeded(jobs, "build_dataset")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["run_id"] == run.name and (run / "features.parquet").stat().st_size > 0
    assert (run / "quality.json").exists()


def test_sweep_job_by_ray_job_submit(jobs: dict) -> None:
    run = _succeeded(jobs, "sweep")
    best = json.loads((run / "best.json").read_text())
    assert run.name.startswith("sweep-") and best["metrics"]["steps"] > 0
    assert (run / "best.yaml").exists() and (run / "results.csv").exists()
    assert (run / "trials" / best["key"] / "journal.log").exists()


def test_retrain_job_by_ray_job_submit(jobs: dict) -> None:
    run = _succeeded(jobs, "retrain")
    out = json.loads((run / "retrain.json").read_text())
    assert run.name.startswith("retrain-") and set(out["families"]) == {"lgbm"}
    decision = out["families"]["lgbm"]
    assert isinstance(decision["promoted"], bool)
    # the challenger is in the copied registry, whatever the decision
    registry = Path(jobs["registry"]["path"])
    assert (registry / "lgbm" / decision["challenger"]["version"]).is_dir()
