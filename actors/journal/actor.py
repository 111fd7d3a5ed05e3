"""JournalActor: the one writer of the run's local durable journal, and the feeder of the
outside stores (thin Ray wrapper).

The journal file is the record. When configured, the actor also:

* runs a :class:`~actors.journal.pg_sink.PgSink` task that mirrors the journal into
  PostgreSQL (``journal.postgres``), catching up after any outage from the journal itself;
* publishes each appended step to Redis (``journal.redis``): the step's signals, the positions
  built from the journaled fills, top of book, and the fills
  (:class:`~actors.journal.redis_pub.RedisPublisher`; degraded and counted when Redis is down).

Neither can slow or stop trading: the kernel does not wait for the journal on every step, the
sink runs beside the appends, and Redis calls are bounded by a short timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

from actors.journal.journal import Journal
from cluster.metrics import Metrics

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MARKS = "MarketMarks"


class JournalActor:
    """Appends record batches in the order they are received (one caller: the kernel).

    Args:
        path: The journal file.
        fsync: fsync every appended batch.
        run_id: The run (Postgres rows and Redis keys are tagged with it).
        postgres: Mirror the journal to Postgres at ``RAYDESK_PG_DSN``.
        redis: Publish to Redis at ``RAYDESK_REDIS_URL``.
        signal_ttl_s: TTL of the signals in Redis.
        pg_drain_timeout_s: How long :meth:`close` waits for Postgres to catch up.
    """

    def __init__(
        self,
        path: str,
        fsync: bool,
        run_id: str = "",
        postgres: bool = False,
        redis: bool = False,
        signal_ttl_s: float = 5.0,
        pg_drain_timeout_s: float = 30.0,
    ) -> None:
        self.journal = Journal(path, fsync=fsync)
        self.metrics = Metrics()
        self.sink: Any = None
        self.redis: Any = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._drain_s = pg_drain_timeout_s
        self._positions: dict[str, int] = {}
        self._sink_error = ""
        if postgres:
            from actors.journal.pg_sink import PgSink, dsn_from_env

            self.sink = PgSink(dsn_from_env(), path, run_id or "run")
        if redis:
            from actors.journal.redis_pub import RedisPublisher

            url = os.environ.get("RAYDESK_REDIS_URL", DEFAULT_REDIS_URL)
            self.redis = RedisPublisher(url, run_id or "run", signal_ttl_s=signal_ttl_s)

    def _start_sink(self) -> None:
        if self.sink is None or self._task is not None:
            return
        self._stop = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self.sink.run(self._stop, drain_timeout_s=self._drain_s)
        )
        self._task.add_done_callback(self._sink_done)

    def _sink_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # a defect, not an outage (those are retried inside): keep the journal going
            self._sink_error = repr(task.exception())
            self.metrics.inc("raydesk_audit_sink_failures")

    async def append(self, records: list[dict[str, Any]]) -> int:
        """Append records durably; return the last sequence number. Then hand the step to
        Redis (never raising) and make sure the Postgres sink is running."""
        t0 = time.perf_counter()
        seq = self.journal.append(records)
        self.metrics.observe("raydesk_journal_append_ms", (time.perf_counter() - t0) * 1e3)
        self.metrics.inc("raydesk_journal_records", len(records))
        self._start_sink()
        if self.sink is not None:
            self.metrics.set("raydesk_audit_lag_records", float(self.sink.stats()["lag_records"]))
        if self.redis is not None:
            await self._publish(records)
        return seq

    async def _publish(self, records: list[dict[str, Any]]) -> None:
        signals, fills, tops = [], [], {}
        ts = 0
        for r in records:
            t = r.get("type")
            if t == MARKS:
                ts = int(r["ts_init"])
                for sym, top in (r.get("tops") or {}).items():
                    tops[sym] = {"bid": top[0], "bid_size": top[1], "ask": top[2],
                                 "ask_size": top[3], "ts_ns": ts}
            elif t == "DecisionMade" and r.get("models"):
                signals.append({"symbol": r["symbol"], "decision_id": r["decision_id"],
                                "probs": r["probs"], "signal": r["signal"],
                                "ts_ns": r["ts_init"], "models": r["models"]})
            elif t == "OrderFilled":
                fills.append(r)
                sign = 1 if r["side"] == "BUY" else -1
                self._positions[r["symbol"]] = (
                    self._positions.get(r["symbol"], 0) + sign * int(r["last_qty_lots"])
                )
        ok = await self.redis.publish(signals, dict(self._positions), tops, fills,
                                      ts_ns=ts or None)
        if not ok:
            self.metrics.inc("raydesk_redis_degraded_steps")

    def stats(self) -> dict[str, Any]:
        """Journal sequence, and the Postgres sink's and the Redis publisher's counters."""
        return {
            "records": self.journal.seq,
            "postgres": None if self.sink is None else {
                **self.sink.stats(), "failed": self._sink_error or None},
            "redis": None if self.redis is None else self.redis.stats(),
        }

    async def close(self) -> dict[str, Any]:
        """Flush and close the journal, let Postgres catch up (bounded), close Redis; return
        :meth:`stats`."""
        self.journal.close()
        if self._task is not None and self._stop is not None:
            self._stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._task), self._drain_s + 5.0)
            if not self._task.done():
                self._task.cancel()
        elif self.sink is not None:  # nothing was appended: still try to deliver what exists
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.sink.sync_once(), self._drain_s)
        if self.sink is not None:
            with contextlib.suppress(Exception):
                await self.sink.close()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.close()
        return self.stats()
