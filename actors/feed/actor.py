"""FeedActor: the market-data source of the topology (thin Ray wrapper; logic elsewhere).

It steps the source one micro-batch interval at a time and returns one
:class:`~actors.core.batch.MarketBatch` per symbol. On simulated time (replay) a step is
immediate; live, it waits until the wall clock reaches the end of the interval, so the batches
leave when a real feed's messages would have arrived.
"""

from __future__ import annotations

import asyncio
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

    def _start(self) -> MarketSimulator:
        # Live, the simulated exchange's clock starts when the first batch is asked for, so
        # its timestamps are real receive times (not seconds old because the cluster was
        # still starting).
        if not self.replay:
            self.start_ns = self.sim_now = time.time_ns()
        self.wall_start_ns = time.time_ns()
        return MarketSimulator(
            self.cfg.simulator, list(self.instruments.values()), self.prices, self.start_ns
        )

    async def next_batches(self) -> tuple[int, dict[str, MarketBatch]]:
        """Advance one interval; return ``(sim_now_ns, {symbol: batch})``."""
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
