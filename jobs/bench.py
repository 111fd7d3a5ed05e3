"""Benchmarks behind ``raydesk bench NAME --json``. Each returns a JSON-safe dict.

Benchmarks measure; tests assert. Record results in docs/benchmarks.md with the command,
date and machine.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cluster.config import RaydeskConfig

# The real recordings beside the project (../shared/data), and its continuous Binance sessions.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BINANCE_DATA = SHARED_DATA / "binance_ws_hftbacktest"
BINANCE_SESSIONS: dict[str, list[str]] = {
    "usdm-btc-0718": ["usdm/btcusdt_20240718.gz", "usdm/btcusdt_20240719.gz"],
    "usdm-eth-0718": ["usdm/ethusdt_20240718.gz", "usdm/ethusdt_20240719.gz"],
    "usdm-btc-0808": ["usdm/btcusdt_20240808.gz"],
    "usdm-eth-0808": ["usdm/ethusdt_20240808.gz"],
    "spot-btc-0808": ["spot/btcusdt_20240808.gz", "spot/btcusdt_20240809.gz"],
    "spot-eth-0808": ["spot/ethusdt_20240808.gz", "spot/ethusdt_20240809.gz"],
}


def _machine() -> dict[str, Any]:
    import os

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "host": "local"}


def _sim_rows(cfg: RaydeskConfig, seconds: float) -> dict[str, np.ndarray]:
    from actors.feed.simulator import MarketSimulator

    ins = cfg.instrument_map()
    start = 1_700_000_000_000_000_000
    sim = MarketSimulator(cfg.simulator, list(ins.values()), cfg.initial_prices_ticks(), start)
    return sim.advance(start + int(seconds * 1e9))


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


def _kernel_deltas_per_s(rows_by_symbol: dict[str, np.ndarray]) -> tuple[int, float]:
    """Apply every book row (deltas and snapshots) to a bare L2Book, one core; return n, s."""
    from actors.book.book import L2Book
    from actors.core.batch import TRADE

    total, wall = 0, 0.0
    for r in rows_by_symbol.values():
        book_rows = r[r["kind"] != TRADE]
        sides = book_rows["side"].tolist()
        prices = book_rows["price"].tolist()
        sizes = book_rows["size"].tolist()
        book = L2Book()
        apply = book.set_level
        t0 = time.perf_counter()
        for side, price, size in zip(sides, prices, sizes, strict=True):
            apply(side, price, size)
        wall += time.perf_counter() - t0
        total += len(sides)
    return total, wall


def _real_binance_rows() -> dict[str, np.ndarray] | None:
    from actors.feed.binance import read_session

    if not BINANCE_DATA.exists():
        return None
    out: dict[str, list[np.ndarray]] = {}
    for name, files in BINANCE_SESSIONS.items():
        for sym, item, _sync in read_session([BINANCE_DATA / f for f in files], tickers=False):
            out.setdefault(f"{name}:{sym}", []).append(item)
    return {k: np.concatenate(v) for k, v in out.items()}


def _memory_per_symbol(
    cfg: RaydeskConfig, real: dict[str, np.ndarray] | None, sim: dict[str, np.ndarray]
) -> dict[str, int]:
    """Bytes held by one SymbolEngine (book + feature state) after a whole session (tracemalloc).

    ``sim``: the largest simulator symbol; ``binance_max``: the deepest recorded Binance book.
    """
    import tracemalloc
    from decimal import Decimal

    from actors.book.engine import SymbolEngine
    from actors.core.clock import SimClock
    from actors.core.instruments import Instrument

    def held(rows: np.ndarray, ins: Instrument) -> int:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        eng = SymbolEngine(ins, cfg.book, cfg.features, SimClock())
        for i in range(0, len(rows), 20_000):
            eng.on_batch(rows[i : i + 20_000])
        size = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        del eng
        return size

    ins = cfg.instrument_map()
    out = {"sim": max(held(r, ins[s]) for s, r in sim.items())}
    if real is not None:
        tiny = Instrument("X", Decimal("0.00000001"), Decimal("0.00000001"))
        out["binance_max"] = max(held(r, tiny) for r in real.values())
    return out


def bench_book(cfg: RaydeskConfig, seconds: float = 600.0) -> dict[str, Any]:
    """Book throughput at three depths: bare kernel, SymbolEngine, and through SymbolActors.

    * ``kernel_deltas_per_s``: ``L2Book.set_level`` alone, one core, on every book row of the
      six recorded Binance sessions (simulator rows when ../shared/data is absent).
    * ``engine_rows_per_s`` / ``engine_batches_per_s``: ``SymbolEngine.on_batch`` (validation,
      book, integrity, one feature vector per batch) on simulator data cut into the live
      100 ms micro-batches.
    * ``actor_deltas_per_s``: the same simulator rows sent from the driver through one
      SymbolActor per symbol on local Ray, to an end-of-stream barrier (``raydesk replay
      --format sim``).
    """
    from actors.book.engine import SymbolEngine
    from actors.core.clock import SimClock
    from cluster.replay import replay

    real = _real_binance_rows()
    rows = _sim_rows(cfg, seconds)
    kernel_src = "binance (6 recorded sessions)" if real is not None else "simulator"
    n_kernel, w_kernel = _kernel_deltas_per_s(real if real is not None else rows)

    ins = cfg.instrument_map()
    step = int(cfg.feed.batch_interval_ms * 1e6)
    total, wall, decisions = 0, 0.0, 0
    for sym, r in rows.items():
        eng = SymbolEngine(ins[sym], cfg.book, cfg.features, SimClock())
        # cut into the same micro-batches the live pipeline uses
        ts = r["ts_event"]
        edges = np.searchsorted(ts, np.arange(ts[0], ts[-1] + step, step))
        chunks = [c for c in np.split(r, edges[1:]) if len(c)]
        t0 = time.perf_counter()
        for c in chunks:
            decisions += eng.on_batch(c).decision is not None
        wall += time.perf_counter() - t0
        total += len(r)
    mem = _memory_per_symbol(cfg, real, rows)
    actor = replay(cfg.with_overrides(run={"progress": False}), "sim", [], duration_s=seconds)
    return {
        "name": "book",
        "kernel_source": kernel_src,
        "kernel_deltas": n_kernel,
        "kernel_deltas_per_s": round(n_kernel / w_kernel),
        "engine_rows": total,
        "engine_rows_per_s": round(total / wall),
        "engine_ns_per_row": round(wall / total * 1e9, 1),
        "engine_batches_per_s": round(decisions / wall),
        "memory_per_symbol_bytes": mem,
        "actor_symbols": len(actor["symbols"]),
        "actor_deltas_per_s": actor["rows_per_s"],
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
