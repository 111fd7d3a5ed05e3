"""`RAY_ADDRESS` puts the same topology on an existing cluster (a real `ray start --head`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import small_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _kill_cluster(markers: list[str]) -> None:
    """Kill this test's head node only: processes naming a marker, and all their children.

    (``ray stop`` would also stop every other Ray cluster on the machine.)
    """
    procs: dict[int, tuple[int, str]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        procs[int(d.name)] = (ppid, cmd)
    doomed = {pid for pid, (_, cmd) in procs.items() if any(m in cmd for m in markers)}
    grew = True
    while grew:
        kids = {pid for pid, (ppid, _) in procs.items() if ppid in doomed} - doomed
        doomed |= kids
        grew = bool(kids)
    doomed.discard(os.getpid())
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def test_run_joins_a_head_node_given_by_ray_address(model_dir, tmp_path) -> None:
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray_bin, "the ray CLI must be installed next to the interpreter"
    gcs, dash, agent, agent_grpc, metrics, client, rt_env = _free_ports(7)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    temp_dir = Path("/tmp") / f"rdk-{os.getpid()}"  # short: socket paths have a length limit
    start = [
        ray_bin, "start", "--head", f"--port={gcs}", "--num-cpus=2",
        "--include-dashboard=false", f"--dashboard-port={dash}",
        f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}", f"--ray-client-server-port={client}",
        f"--runtime-env-agent-port={rt_env}", f"--temp-dir={temp_dir}",
    ]
    subprocess.run(start, env=env, check=True, capture_output=True, timeout=120)
    try:
        cfg = small_config(tmp_path, models={"registry_path": str(model_dir)})
        cfg_path = tmp_path / "cfg.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        run = subprocess.run(
            [sys.executable, "-m", "jobs.run", "--config", str(cfg_path), "--replay",
             "--events", "2000"],
            env={**env, "RAY_ADDRESS": f"127.0.0.1:{gcs}"}, capture_output=True, text=True,
            timeout=300, cwd=Path(__file__).resolve().parents[2],
        )
        assert run.returncode == 0, run.stderr[-3000:]
        summary = json.loads(run.stdout)
        assert summary["events"] >= 2000 and summary["decisions"] > 0
        assert Path(summary["journal"]["path"]).exists()
        # the driver joined the head node instead of starting its own Ray
        assert f"127.0.0.1:{gcs}" in run.stderr or "Connecting to existing Ray cluster" in (
            run.stderr
        )
    finally:
        _kill_cluster([str(temp_dir), f":{gcs}"])
        shutil.rmtree(temp_dir, ignore_errors=True)
