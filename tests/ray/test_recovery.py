"""Crash recovery on a real local Ray cluster: the ExecutionActor (and the RiskActor) killed
several times during a replay rebuild from their checkpoints, and the run's orders, fills,
positions, journal and Postgres audit rows equal those of an uninterrupted replay exactly."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import asyncpg
import pytest

from actors.journal.journal import read_journal
from actors.journal.pg_sink import dsn_from_env
from cluster.runner import run_pipeline
from tests.conftest import small_config

pytestmark = pytest.mark.ray

EVENTS = 12_000


async def _audit(run_id: str, delete: bool = False) -> list[str]:
    conn = await asyncpg.connect(dsn_from_env())
    try:
        rows = await conn.fetch(
            "SELECT record::text AS r FROM raydesk_audit WHERE run_id = $1 ORDER BY seq", run_id
        )
        if delete:
            await conn.execute("DELETE FROM raydesk_audit WHERE run_id = $1", run_id)
        return [r["r"] for r in rows]
    finally:
        await conn.close()


def _run(tmp, model_dir, run_id: str, restarts: int, kill: list[str] | None = None):
    cfg = small_config(
        tmp, strategy={"entry_edge": 0.02}, journal={"postgres": True},
        ray={"max_restarts": restarts},
    ).with_overrides(models={"registry_path": str(model_dir)})
    kills: list[str] = []
    done = threading.Event()

    def killer() -> None:
        import ray

        for name in kill or []:
            handle = None
            while handle is None and not done.is_set():
                try:
                    handle = ray.get_actor(f"{name}-{run_id}", namespace=cfg.ray.namespace)
                except ValueError:
                    time.sleep(0.05)
            if done.wait(0.8):  # let the run trade a little between kills
                return
            ray.kill(handle, no_restart=False)
            kills.append(name)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        summary = run_pipeline(cfg, replay=True, events=EVENTS, run_id=run_id)
    finally:
        done.set()
        t.join()
    return summary, kills


def test_killed_execution_and_risk_actors_recover_to_the_uninterrupted_result(
    ray_cluster, model_dir, tmp_path
) -> None:
    stamp = time.time_ns()
    base_id, crash_id = f"base-{stamp}", f"crash-{stamp}"
    try:
        base, _ = _run(tmp_path / "a", model_dir, base_id, restarts=0)
        crash, kills = _run(tmp_path / "b", model_dir, crash_id, restarts=10,
                            kill=["execution", "execution", "risk", "execution"])
        assert kills == ["execution", "execution", "risk", "execution"]
        assert base["orders"] > 0 and base["fills"] > 0
        for key in ("events", "orders", "fills", "denials", "order_errors", "pnl"):
            assert crash[key] == base[key], key
        assert crash["portfolio"]["positions"] == base["portfolio"]["positions"]
        base_j = [rec for _, rec in read_journal(base["journal"]["path"])]
        crash_j = [rec for _, rec in read_journal(crash["journal"]["path"])]
        assert crash_j == base_j  # every decision, order, event, in the same order
        base_pg, crash_pg = asyncio.run(_audit(base_id)), asyncio.run(_audit(crash_id))
        assert len(base_pg) == len(base_j)
        assert [json.loads(r) for r in crash_pg] == [json.loads(r) for r in base_pg]
    finally:
        asyncio.run(_audit(base_id, delete=True))
        asyncio.run(_audit(crash_id, delete=True))
