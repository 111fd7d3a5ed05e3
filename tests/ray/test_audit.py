"""The audit trail of a real run: the journal mirrored into the real PostgreSQL (exactly once,
even with the sink's connection cut mid-run) and the run's state published to the real Redis."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import asyncpg
import pytest
import redis

from actors.journal.journal import read_journal
from actors.journal.pg_sink import dsn_from_env
from actors.journal.redis_pub import keys
from cluster.runner import run_pipeline
from tests.conftest import small_config

pytestmark = pytest.mark.ray

REDIS_URL = os.environ.get("RAYDESK_REDIS_URL", "redis://127.0.0.1:6379/0")


async def _rows(run_id: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(dsn_from_env())
    try:
        rows = await conn.fetch(
            "SELECT seq, record::text FROM raydesk_audit WHERE run_id = $1 ORDER BY seq", run_id
        )
        return [(r["seq"], r["record"]) for r in rows]
    finally:
        await conn.close()


async def _delete(run_id: str) -> None:
    conn = await asyncpg.connect(dsn_from_env())
    try:
        await conn.execute("DELETE FROM raydesk_audit WHERE run_id = $1", run_id)
    finally:
        await conn.close()


async def _cut_sink_connections() -> int:
    conn = await asyncpg.connect(dsn_from_env())
    try:
        return len(await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'raydesk-sink' AND pid <> pg_backend_pid()"
        ))
    finally:
        await conn.close()


def test_journal_reaches_postgres_exactly_once_despite_cuts_and_redis_has_the_state(
    ray_cluster, model_dir, tmp_path
) -> None:
    cfg = small_config(tmp_path, strategy={"entry_edge": 0.02},
                       journal={"postgres": True, "redis": True}).with_overrides(
        models={"registry_path": str(model_dir)})
    run_id = f"audit-{time.time_ns()}"
    cuts = []
    done = threading.Event()

    def cutter() -> None:  # drop the sink's Postgres connection every 0.4 s during the run
        while not done.wait(0.4):
            cuts.append(asyncio.run(_cut_sink_connections()))

    t = threading.Thread(target=cutter, daemon=True)
    t.start()
    try:
        summary = run_pipeline(cfg, replay=True, events=8_000, run_id=run_id)
    finally:
        done.set()
        t.join()
    try:
        journal = [(seq, rec) for seq, rec in read_journal(summary["journal"]["path"])]
        rows = asyncio.run(_rows(run_id))
        assert [s for s, _ in rows] == [s for s, _ in journal]  # every record, once, in order
        import json

        assert [json.loads(r) for _, r in rows] == [rec for _, rec in journal]
        pg = summary["journal"]["postgres"]
        assert pg["pg_seq"] == len(journal) and pg["lag_records"] == 0
        assert sum(cuts) > 0 and pg["reconnects"] > 0, (cuts, pg)
        # Redis: positions equal the positions of record; the heartbeat and signals are there
        r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        k = keys(run_id)
        positions = {s: int(v) for s, v in r.hgetall(k.positions).items()}
        assert positions == {s: q for s, q in summary["portfolio"]["positions"].items() if q
                             or s in positions}
        assert r.get(k.heartbeat) is not None
        assert summary["journal"]["redis"]["published_steps"] > 0
        for name in r.smembers(k.index):
            r.delete(name)
        r.delete(k.index)
    finally:
        asyncio.run(_delete(run_id))
