"""Benchmarks behind ``raydesk bench NAME --json``. Each returns a JSON-safe dict.

Benchmarks measure; tests assert. Record results in docs/benchmarks.md with the command,
date and machine.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from cluster.config import RaydeskConfig


def _machine() -> dict[str, Any]:
    import os

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "host": "local"}


def _sim_rows(cfg: RaydeskConfig, seconds: float) -> dict[str, np.ndarray]:
    from actors.feed.simulator import MarketSimulator

    ins = cfg.instrument_map()
    prices = {ic.symbol: ins[ic.symbol].price_to_ticks(ic.initial_price) for ic in cfg.instruments}
    sim = MarketSimulator(cfg.simulator, list(ins.values()), prices, 1_700_000_000_000_000_000)
    return sim.advance(1_700_000_000_000_000_000 + int(seconds * 1e9))


def bench_simulator(cfg: RaydeskConfig, seconds: float = 600.0) -> dict[str, Any]:
    """Rows per second the simulator generates (all symbols)."""
    t0 = time.perf_counter()
    rows = _sim_rows(cfg, seconds)
    dt = time.perf_counter() - t0
    n = sum(len(r) for r in rows.values())
    return {
        "name": "simulator",
        "sim_seconds": seconds,
        "symbols": len(rows),
        "rows": n,
        "wall_s": round(dt, 3),
        "rows_per_s": round(n / dt),
        "machine": _machine(),
    }


def bench_book(cfg: RaydeskConfig, seconds: float = 600.0) -> dict[str, Any]:
    """SymbolEngine throughput: rows applied (book + integrity + features) per second."""
    from actors.book.engine import SymbolEngine
    from actors.core.clock import SimClock

    rows = _sim_rows(cfg, seconds)
    ins = cfg.instrument_map()
    step = int(cfg.feed.batch_interval_ms * 1e6)
    total, wall = 0, 0.0
    for sym, r in rows.items():
        eng = SymbolEngine(ins[sym], cfg.book, cfg.features, SimClock())
        # cut into the same micro-batches the live pipeline uses
        ts = r["ts_event"]
        edges = np.searchsorted(ts, np.arange(ts[0], ts[-1] + step, step))
        chunks = [c for c in np.split(r, edges[1:]) if len(c)]
        t0 = time.perf_counter()
        for c in chunks:
            eng.on_batch(c)
        wall += time.perf_counter() - t0
        total += len(r)
    return {
        "name": "book",
        "rows": total,
        "wall_s": round(wall, 3),
        "rows_per_s": round(total / wall),
        "ns_per_row": round(wall / total * 1e9, 1),
        "machine": _machine(),
    }


def bench_replay(cfg: RaydeskConfig, events: int = 200_000) -> dict[str, Any]:
    """Full topology on simulated time (real Ray + Serve): market events per wall second."""
    from cluster.runner import run_pipeline

    cfg = cfg.with_overrides(run={"progress": False})
    s = run_pipeline(cfg, replay=True, events=events)
    return {
        "name": "replay",
        "events": s["events"],
        "wall_s": s["wall_s"],
        "events_per_s": s["events_per_s"],
        "steps_per_s": round(s["steps"] / s["wall_s"], 1),
        "orders": s["orders"],
        "fills": s["fills"],
        "latency_ms": {k: s["latency_ms"][k] for k in ("p50", "p99")},
        "inference_ms": s["inference_ms"],
        "machine": _machine(),
    }


BENCHMARKS: dict[str, Callable[[RaydeskConfig], dict[str, Any]]] = {
    "simulator": bench_simulator,
    "book": bench_book,
    "replay": bench_replay,
}
