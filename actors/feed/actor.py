"""FeedActor: the market-data source of the topology (thin Ray wrapper; logic elsewhere).

It steps the source one micro-batch interval at a time and returns one
:class:`~actors.core.batch.MarketBatch` per symbol. On simulated time (replay) a step is
immediate; live, it waits until the wall clock reaches the end of the interval, so the batches
leave when a real feed's messages would have arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from actors.core.batch import MarketBatch
from actors.feed.simulator import MarketSimulator
from cluster.config import RaydeskConfig


class FeedActor:
    """Steps the configured source and hands out per-symbol batches.

    Args:
        cfg: The full config as a dict (``RaydeskConfig.model_dump(mode="json")``).
        replay: True for simulated time, as fast as possible.
        start_ns: Start of the session, ns since epoch (replay; live starts at the first call).
    """

    def __init__(self, cfg: dict[str, Any], replay: bool, start_ns: int) -> None:
        self.cfg = RaydeskConfig.model_validate(cfg)
        self.replay = replay
        self.instruments = self.cfg.instrument_map()
        self.prices = self.cfg.initial_prices_ticks()
        self.step_ns = int(self.cfg.feed.batch_interval_ms * 1e6)
        self.start_ns = start_ns
        self.sim: MarketSimulator | None = None
        self.sim_now = start_ns
        self.wall_start_ns = 0
        self.ws: Any = None  # the live client (source == "ws")
        self._ws_task: asyncio.Task[None] | None = None
        self._prepared: dict[str, Any] = {}  # push mode: rows generated ahead of time

    def _start_ws(self) -> Any:
        from actors.feed.ws_client import BinanceWsClient
        from cluster.metrics import Metrics

        f = self.cfg.feed
        self.ws = BinanceWsClient(
            f.url or "", self.instruments, market=f.market, rest_url=f.rest_url,
            max_batch_delay_ms=f.max_batch_delay_ms, queue_rows=f.queue_rows,
            reconnect_initial_s=f.reconnect_initial_s, reconnect_max_s=f.reconnect_max_s,
            reconnect_multiplier=f.reconnect_multiplier, stall_timeout_s=f.stall_timeout_s,
            snapshot_limit=f.snapshot_limit, metrics=Metrics(),
        )
        self._ws_task = asyncio.get_running_loop().create_task(self.ws.run())
        return self.ws

    async def _next_ws(self) -> tuple[int, dict[str, MarketBatch]]:
        """Live feed: the rows received since the last call, per symbol."""
        client = self.ws or self._start_ws()
        await client.wait_rows(self.step_ns / 1e9)
        rows = client.drain()
        wall = time.time_ns()
        return wall, {
            sym: MarketBatch(self.instruments[sym], rows[sym],
                             wall_init_ns=int(rows[sym]["ts_init"][-1]) if len(rows[sym])
                             else wall)
            for sym in self.instruments
        }

    def request_resync(self, symbol: str, reason: str = "crossed") -> None:
        """Quarantine ``symbol`` and resync it from a new snapshot (live feed only)."""
        if self.ws is not None:
            self.ws.request_resync(symbol, reason)

    def feed_stats(self) -> dict[str, Any]:
        """The live client's counters (empty on the simulator)."""
        return self.ws.stats() if self.ws is not None else {}

    async def stop(self) -> None:
        """Stop the live client (if any)."""
        if self._ws_task is not None:
            self._ws_task.cancel()
            with contextlib.suppress(BaseException):
                await self._ws_task
            self._ws_task = None

    def _start(self) -> MarketSimulator:
        # Live, the simulated exchange's clock starts when the first batch is asked for, so
        # its timestamps are real receive times (not seconds old because the cluster was
        # still starting).
        if not self.replay:
            self.start_ns = self.sim_now = time.time_ns()
        self.wall_start_ns = time.time_ns()
        return self._simulator()

    def _simulator(self) -> MarketSimulator:
        return MarketSimulator(
            self.cfg.simulator, list(self.instruments.values()), self.prices, self.start_ns
        )

    async def next_batches(self) -> tuple[int, dict[str, MarketBatch]]:
        """Advance one interval; return ``(sim_now_ns, {symbol: batch})`` (live feed: the
        rows received since the last call, with the wall clock as ``now``)."""
        if self.cfg.feed.source == "ws":
            return await self._next_ws()
        if self.sim is None:
            self.sim = self._start()
        target = self.sim_now + self.step_ns
        if not self.replay:
            # live: the simulated exchange runs on the wall clock from the first batch
            due_wall = self.wall_start_ns + (target - self.start_ns)
            delay = (due_wall - time.time_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
        rows = self.sim.advance(target)
        self.sim_now = target
        wall = time.time_ns()
        return target, {
            sym: MarketBatch(self.instruments[sym], rows[sym], wall_init_ns=wall)
            for sym in self.instruments
        }

    # push mode: the feed drives the SymbolActors directly ---------------------------------
    def prepare_sim(self, seconds: float) -> int:
        """Generate ``seconds`` of simulated market for every symbol and hold it for
        :meth:`push` (so a throughput measurement of the book path excludes generation)."""
        self._prepared = self._simulator().advance(self.start_ns + int(seconds * 1e9))
        return sum(len(r) for r in self._prepared.values())

    async def push(
        self, actors: dict[str, Any], batch_rows: int, max_in_flight: int = 4
    ) -> dict[str, Any]:
        """Send the prepared rows to ``actors`` (symbol → SymbolActor handle) in batches of
        ``batch_rows``, symbols interleaved, at most ``max_in_flight`` unanswered batches per
        symbol (backpressure), then wait at an end-of-stream barrier on every actor.

        Returns rows sent, batches, errors reported by the actors and the wall time from the
        first send to the barrier.
        """
        prepared = self._prepared
        cursors = {s: 0 for s in prepared}
        pending: dict[str, list[Any]] = {s: [] for s in prepared}
        sent = batches = errors = 0
        t0 = time.perf_counter()
        while cursors:
            for sym in list(cursors):
                rows = prepared[sym]
                i = cursors[sym]
                if i >= len(rows):
                    del cursors[sym]
                    continue
                chunk = rows[i : i + batch_rows]
                cursors[sym] = i + len(chunk)
                q = pending[sym]
                if len(q) >= max_in_flight:
                    errors += (await q.pop(0))[1]
                batch = MarketBatch(self.instruments[sym], chunk, wall_init_ns=time.time_ns())
                q.append(actors[sym].ingest.remote(batch))
                sent += len(chunk)
                batches += 1
        for q in pending.values():
            for ref in q:
                errors += (await ref)[1]
        barrier = [await actors[s].barrier.remote() for s in prepared]
        wall = time.perf_counter() - t0
        return {
            "rows": sent,
            "batches": batches,
            "errors": errors,
            "wall_s": wall,
            "applied": sum(b["events"] for b in barrier),
            "quarantined": [b["symbol"] for b in barrier if b["quarantined"]],
        }
