"""Benchmarks behind ``raydesk bench NAME --json``. Each returns a JSON-safe dict.

Benchmarks measure; tests assert. Record results in docs/benchmarks.md with the command,
date and machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Iterator
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


def _real_binance_rows() -> dict[str, np.ndarray] | None:
    from actors.feed.binance import read_session

    if not BINANCE_DATA.exists():
        return None
    out: dict[str, list[np.ndarray]] = {}
    for name, files in BINANCE_SESSIONS.items():
        for sym, item, _sync in read_session([BINANCE_DATA / f for f in files], tickers=False):
            if isinstance(item, np.ndarray):
                out.setdefault(f"{name}:{sym}", []).append(item)
    return {k: np.concatenate(v) for k, v in out.items()}


def _book_rows(rows_by_symbol: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from jobs.peers import book_rows

    return {k: book_rows(r) for k, r in rows_by_symbol.items()}


def _best_of(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _drain(chunks: Any) -> None:
    """Consume frame chunks as the SymbolEngine does (no copies)."""
    for _ in chunks:
        pass


def _kernel(
    book_rows: dict[str, np.ndarray], window_ticks: int, repeats: int = 3
) -> dict[str, Any]:
    """Compiled book apply alone, one core: every book row (deltas and snapshots) of each
    session into a fresh :class:`LadderBook`, best of ``repeats``; also with the frames the
    feature library consumes captured, and the plain-Python reference book for scale."""
    from actors.book.book import L2Book
    from actors.book.ladder import LadderBook

    LadderBook(64).apply(next(iter(book_rows.values()))[:10])  # compile outside the timing
    total = wall = wall_cap = wall_ref = 0.0
    per: dict[str, int] = {}
    for name, r in book_rows.items():
        dt = _best_of(lambda r=r: LadderBook(window_ticks).apply(r), repeats)
        dt_cap = _best_of(lambda r=r: _drain(LadderBook(window_ticks).apply_chunks(r)), repeats)
        sides, prices, sizes = r["side"].tolist(), r["price"].tolist(), r["size"].tolist()

        def ref(sides: list = sides, prices: list = prices, sizes: list = sizes) -> None:
            apply = L2Book().set_level
            for side, price, size in zip(sides, prices, sizes, strict=True):
                apply(side, price, size)

        wall_ref += _best_of(ref, 1)
        per[name] = round(len(r) / dt)
        total += len(r)
        wall += dt
        wall_cap += dt_cap
    return {
        "deltas": int(total),
        "deltas_per_s": round(total / wall),
        "capture_deltas_per_s": round(total / wall_cap),
        "reference_dict_book_deltas_per_s": round(total / wall_ref),
        "per_session": per,
    }


def _features(cfg: RaydeskConfig, rows_by_symbol: dict[str, np.ndarray],
              batch_ms: float) -> dict[str, Any]:
    """SymbolEngine end to end (validation, book, integrity, frames, feature library) on real
    rows cut into ``batch_ms`` micro-batches by exchange time: one feature vector per batch."""
    from decimal import Decimal

    from actors.book.engine import SymbolEngine
    from actors.core.clock import SimClock
    from actors.core.instruments import Instrument

    step = int(batch_ms * 1e6)
    ins = Instrument("X", Decimal("0.00000001"), Decimal("0.00000001"))
    rows_n = vectors = msgs = 0
    wall = 0.0
    for r in rows_by_symbol.values():
        ts = r["ts_event"]
        edges = np.searchsorted(ts, np.arange(ts[0], ts[-1] + step, step))
        chunks = [c for c in np.split(r, edges[1:]) if len(c)]
        eng = SymbolEngine(ins, cfg.book, cfg.features, SimClock())
        eng.on_batch(chunks[0][:1], view=False)  # compile outside the timing
        eng = SymbolEngine(ins, cfg.book, cfg.features, SimClock())
        t0 = time.perf_counter()
        for c in chunks:
            vectors += eng.on_batch(c, view=False).decision is not None
        wall += time.perf_counter() - t0
        rows_n += len(r)
        msgs += int((r["flags"] & 1).sum())
    return {
        "features": len(eng.features.names),
        "batch_ms": batch_ms,
        "rows": rows_n,
        "vectors": vectors,
        "features_per_s": round(vectors * len(eng.features.names) / wall),
        "vectors_per_s": round(vectors / wall),
        "engine_rows_per_s": round(rows_n / wall),
        "engine_messages_per_s": round(msgs / wall),
    }


def _json_to_book(repeats: int = 3) -> dict[str, Any] | None:
    """The product path from recorded exchange JSON to the applied book, one core: every
    session's gzip files through ``read_session`` (decompression, compiled scanner, Binance
    sync rules, ``MD_DTYPE`` rows) and the compiled book; levels = book rows applied. Also the
    scanner alone on decompressed bytes, and decompression alone, for where the time goes."""
    import gzip

    from actors.book.ladder import LadderBook
    from actors.core.batch import TRADE
    from actors.feed.binance import KNOWN_INSTRUMENTS, read_session
    from actors.feed.binance_fast import parse_depth, tick_parts

    if not BINANCE_DATA.exists():
        return None
    levels = parsed = 0
    wall = wall_parse = wall_gunzip = 0.0
    raw_bytes = 0
    for files in BINANCE_SESSIONS.values():
        paths = [BINANCE_DATA / f for f in files]

        def run(paths: list[Path] = paths) -> int:
            book, n = LadderBook(), 0
            for _sym, rows, _sync in read_session(paths, tickers=False):
                book.apply(rows)
                n += int((rows["kind"] != TRADE).sum())
            return n

        levels += run()  # also compiles outside the timing
        wall += _best_of(run, repeats)
        market = files[0].split("/")[0]
        for path in paths:
            t0 = time.perf_counter()
            buf = np.frombuffer(gzip.decompress(path.read_bytes()), dtype=np.uint8)
            wall_gunzip += time.perf_counter() - t0
            raw_bytes += len(buf)
            m, e = tick_parts(KNOWN_INSTRUMENTS[(market, path.name.split("_")[0].upper())][0])
            parsed += len(parse_depth(buf, m, e).price)
            wall_parse += _best_of(lambda buf=buf, m=m, e=e: parse_depth(buf, m, e), repeats)
    return {
        "levels": levels,
        "json_mb": round(raw_bytes / 1e6, 1),
        "json_to_book_levels_per_s": round(levels / wall),
        "parse_levels_per_s": round(parsed / wall_parse),
        "gunzip_mb_per_s": round(raw_bytes / 1e6 / wall_gunzip, 1),
    }


def _actors(cfg: RaydeskConfig, seconds: float, batch_rows: int) -> dict[str, Any]:
    """FeedActor → one SymbolActor per symbol on local Ray, to an end-of-stream barrier."""
    import ray

    from actors.book.actor import SymbolActor
    from actors.feed.actor import FeedActor
    from cluster.topology import connect_ray

    owns = connect_ray(cfg)
    actors: dict[str, Any] = {}
    try:
        feed = ray.remote(FeedActor).options(num_cpus=cfg.ray.actor_num_cpus).remote(
            cfg.model_dump(mode="json"), True, 1_700_000_000_000_000_000
        )
        for ins in cfg.instrument_map().values():
            actors[ins.symbol] = (
                ray.remote(SymbolActor)
                .options(num_cpus=cfg.ray.actor_num_cpus)
                .remote(ins, cfg.book.model_dump(mode="json"),
                        cfg.features.model_dump(mode="json"), True)
            )
        rows = ray.get(feed.prepare_sim.remote(seconds))
        # every SymbolActor has run its compiled kernels once at construction
        ray.get([a.barrier.remote() for a in actors.values()])
        out = ray.get(feed.push.remote(actors, batch_rows=batch_rows), timeout=600)
    finally:
        for a in actors.values():
            ray.kill(a)
        if owns:
            ray.shutdown()
    return {
        "symbols": len(actors),
        "rows": rows,
        "batch_rows": batch_rows,
        "batches": out["batches"],
        "errors": out["errors"],
        "quarantined": out["quarantined"],
        "wall_s": round(out["wall_s"], 3),
        "deltas_per_s": round(out["rows"] / out["wall_s"]),
    }


def _memory_per_symbol(cfg: RaydeskConfig, real: dict[str, np.ndarray] | None,
                       sim: dict[str, np.ndarray]) -> dict[str, int]:
    """Bytes held by one SymbolEngine (book + feature state) after a whole session, measured
    with tracemalloc (numpy arrays included): ``sim``: the largest simulator symbol;
    ``binance_max``: the deepest recorded Binance book."""
    import tracemalloc
    from decimal import Decimal

    from actors.book.engine import SymbolEngine
    from actors.core.clock import SimClock
    from actors.core.instruments import Instrument

    def held(rows: np.ndarray, ins: Instrument) -> int:
        SymbolEngine(ins, cfg.book, cfg.features, SimClock()).on_batch(rows[:100], view=False)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        eng = SymbolEngine(ins, cfg.book, cfg.features, SimClock())
        for i in range(0, len(rows), 20_000):
            eng.on_batch(rows[i : i + 20_000], view=False)
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


def _nautilus(real: dict[str, np.ndarray]) -> dict[str, Any]:
    """NautilusTrader's order book on the same book rows (its own venv), per session."""
    from actors.feed.binance import KNOWN_INSTRUMENTS
    from jobs.peers import book_mismatches, reference_book, run_nautilus_book

    deltas = 0
    apply_s = create_s = 0.0
    mismatches: dict[str, list[str]] = {}
    version = None
    for key, rows in real.items():
        name = key.split(":")[0]
        market, sym = name.split("-")[0], key.split(":")[1]
        tick, lot = KNOWN_INSTRUMENTS[(market, sym)]
        res = run_nautilus_book(rows, tick, lot)
        if "skipped" in res or "error" in res:
            return res
        version = res.get("version")
        deltas += res["deltas"]
        apply_s += res["apply_s"]
        create_s += res["create_s"]
        bad = book_mismatches(res, reference_book(rows, res["size_precision"]))
        if bad:
            mismatches[key] = bad
    return {
        "version": version,
        "deltas": deltas,
        "apply_deltas_per_s": round(deltas / apply_s),
        "create_and_apply_deltas_per_s": round(deltas / (apply_s + create_s)),
        "final_books_match": not mismatches,
        "mismatches": mismatches,
    }


def bench_book(cfg: RaydeskConfig, seconds: float = 3_600.0) -> dict[str, Any]:
    """Book and feature throughput at every depth, and memory per symbol.

    * ``kernel_deltas_per_s``: the compiled ladder's apply alone, one core, on every book row
      (deltas and snapshots) of the six recorded Binance sessions (simulator rows when
      ../shared/data is absent); ``kernel_capture_deltas_per_s`` also records the frames the
      feature library reads; the dict-based reference book is given for scale.
    * ``features_per_s``: feature values per second through ``SymbolEngine`` (validation,
      book, integrity, frames and the whole feature library, one vector per 100 ms batch) on
      the real sessions.
    * ``json_to_book_levels_per_s``: recorded Binance sessions (gzip JSON) → ``read_session``
      (compiled scanner, sync rules, rows) → applied book, one core (decompression included).
    * ``actor_deltas_per_s``: aggregate rows per second from a FeedActor through one
      SymbolActor per simulator symbol on local Ray, to an end-of-stream barrier.
    * ``nautilus``: NautilusTrader's book on the same real deltas (its own venv), and the
      ratio of the kernel's rate to its apply-only rate.
    """
    real = _real_binance_rows()
    sim = _sim_rows(cfg, 600.0)
    src = real if real is not None else sim
    book_rows = _book_rows(src)
    kernel = _kernel(book_rows, cfg.book.window_ticks)
    feats = _features(cfg, src, cfg.feed.batch_interval_ms)
    js = _json_to_book() if real is not None else None
    mem = _memory_per_symbol(cfg, real, sim)
    actor = _actors(cfg.with_overrides(run={"progress": False}), seconds, 65_536)
    peer = _nautilus(book_rows) if real is not None else {"skipped": "no recorded data"}
    out: dict[str, Any] = {
        "name": "book",
        "kernel_source": "binance (6 recorded sessions)" if real is not None else "simulator",
        "kernel_deltas": kernel["deltas"],
        "kernel_deltas_per_s": kernel["deltas_per_s"],
        "kernel_capture_deltas_per_s": kernel["capture_deltas_per_s"],
        "reference_dict_book_deltas_per_s": kernel["reference_dict_book_deltas_per_s"],
        "kernel_per_session": kernel["per_session"],
        "features_per_s": feats["features_per_s"],
        "features": feats,
        "json_to_book_levels_per_s": js["json_to_book_levels_per_s"] if js else None,
        "json_to_book": js,
        "actor_deltas_per_s": actor["deltas_per_s"],
        "actors": actor,
        "memory_per_symbol_bytes": mem,
        "nautilus": peer,
        "machine": _machine(),
    }
    if "apply_deltas_per_s" in peer:
        out["kernel_vs_nautilus_apply"] = round(
            kernel["deltas_per_s"] / peer["apply_deltas_per_s"], 1
        )
    return out


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


_FEED_SERVER = """
import sys, time
from cluster.config import RaydeskConfig
from actors.feed.server import FeedServer, SimSource
cfg = RaydeskConfig.model_validate_json(sys.stdin.read())
srv = FeedServer(SimSource(cfg), speed=float(sys.argv[1]), stamp=True, wait_clients=1,
                 max_queue=1_000_000)
with srv.run_in_thread():
    print(srv.port, flush=True)
    while True:
        time.sleep(3600)
"""


def bench_feed(cfg: RaydeskConfig, rates: tuple[int, ...] = (10_000, 50_000),
               duration_s: float = 10.0, step_rates: tuple[int, ...] = (
                   20_000, 30_000, 40_000, 60_000, 70_000, 80_000, 100_000, 120_000),
               step_duration_s: float = 5.0, warmup_s: float = 1.5,
               ray_actors: bool = True) -> dict[str, Any]:
    """Wire-to-book latency of the live feed path, and the highest rate it sustains.

    The feed server (``FeedServer`` + ``SimSource``, ``stamp=True``) runs in its own process,
    paced so that its depth + trade messages arrive at the target rate R (the simulator's
    message rate per simulated second is measured first; ``speed = R / that``). The client is
    the FeedActor's ws loop in this process, without Ray: ``BinanceWsClient`` →
    ``wait_rows`` → ``drain`` → ``SymbolEngine.on_batch`` per symbol. A message's latency is
    the wall clock right after the batch holding its rows was applied minus its ``_sent_ns``.
    A rate is *sustained* when, after ``warmup_s``, the client received >= 95 % of R, nothing
    was dropped, no reconnect happened, p99 <= 50 ms and the median of the last quarter is at
    most 10 ms above the first quarter's (no growing backlog). ``max_sustained_msgs_per_s``
    is the highest sustained R of ``rates`` and ``step_rates`` (stepped upward, stopping at
    the first failure above the ``rates``).
    """
    import asyncio
    import json
    import subprocess
    import sys
    import urllib.request

    from actors.book.engine import SymbolEngine
    from actors.core.clock import WallClock
    from actors.feed.server import SimSource
    from actors.feed.wire import DEPTH, TRADE_CH
    from actors.feed.ws_client import BinanceWsClient

    cfg = cfg.with_overrides(feed={"market": "usdm"})
    ins = cfg.instrument_map()

    async def sim_rate(seconds: float = 20.0) -> float:
        src = SimSource(cfg)
        n, steps = 0, 0
        gen = src.batches(0.0)
        await gen.__anext__()  # the initial books
        async for b in gen:
            n += sum(1 for e in b if e[2] in (DEPTH, TRADE_CH))
            steps += 1
            if steps * src.step_s >= seconds:
                break
        return n / seconds

    from actors.book.actor import warm_up_engine
    from actors.feed.ws_client import warm_up

    warm_up()  # compile/load the client's and the book's kernels before anything is timed
    for i in ins.values():
        warm_up_engine(i, cfg.book, cfg.features)
    per_sim_s = asyncio.run(sim_rate())
    root = Path(__file__).resolve().parents[1]

    @contextlib.contextmanager
    def server(rate: int) -> Iterator[int]:
        """The feed server in its own process, paced to ``rate`` messages/s; yields its port."""
        proc = subprocess.Popen(
            [sys.executable, "-c", _FEED_SERVER, str(rate / per_sim_s)], cwd=root,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(cfg.model_dump_json())
            proc.stdin.close()
            yield int(proc.stdout.readline())
        finally:
            proc.kill()
            proc.wait()

    async def measure(rate: int, seconds: float) -> dict[str, Any]:
        with server(rate) as port:
            return await _run_client(port, seconds)

    async def _run_client(port: int, seconds: float) -> dict[str, Any]:
        sent: list[int] = []
        marker = '"_sent_ns":'

        class Timed(BinanceWsClient):
            def on_message(self, raw: str | bytes, ts_init: int) -> None:
                super().on_message(raw, ts_init)
                if type(raw) is str:
                    i = raw.rfind(marker)
                    if i > 0:
                        sent.append(int(raw[i + 11:-1]))

        client = Timed(f"ws://127.0.0.1:{port}", ins, market="usdm", max_batch_delay_ms=0.0)
        engines = {s: SymbolEngine(i, cfg.book, cfg.features, WallClock())
                   for s, i in ins.items()}
        stop = asyncio.Event()
        task = asyncio.create_task(client.run(stop))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
            sync.synced and sync.last_u is not None for sync in client.syncs.values()
        ):  # measure the steady state: from the moment every symbol is synced
            await client.wait_rows(0.05)
            for sym, r in client.drain().items():
                if len(r):
                    engines[sym].on_batch(r, view=False)
            sent.clear()
        lat: list[np.ndarray] = []
        at: list[np.ndarray] = []
        t0 = time.monotonic()
        t_measure = t0 + warmup_s
        # only messages the server sent inside the window count: a start-up backlog (a cold
        # process compiling its kernels) is warm-up, not steady-state latency
        wall_measure = time.time_ns() + int(warmup_s * 1e9)
        counted = 0
        while time.monotonic() < t0 + warmup_s + seconds:
            await client.wait_rows(0.05)
            rows = client.drain()
            batch, sent[:] = np.array(sent, dtype=np.int64), []
            for sym, r in rows.items():
                if len(r):
                    engines[sym].on_batch(r, view=False)
            now = time.time_ns()
            batch = batch[batch >= wall_measure]
            if time.monotonic() >= t_measure and len(batch):
                lat.append(now - batch)
                at.append(batch)
                counted += len(batch)
            await asyncio.sleep(0)
        stop.set()
        await asyncio.wait_for(task, 5)
        srv = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/control/stats", timeout=5).read())
        ms = np.concatenate(lat) / 1e6 if lat else np.zeros(0)
        sent_at = np.concatenate(at) if at else np.zeros(0, dtype=np.int64)
        span = (sent_at.max() - sent_at.min()) / 1e9 if len(sent_at) > 1 else 0.0
        q = max(1, len(ms) // 4)
        return {
            "received": int(counted),
            "received_msgs_per_s": round(counted / seconds),
            "sent_msgs_per_s": round(len(sent_at) / span) if span else 0,
            "p50_ms": round(float(np.percentile(ms, 50)), 3) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 3) if len(ms) else None,
            "max_ms": round(float(ms.max()), 3) if len(ms) else None,
            "first_quarter_p50_ms": round(float(np.median(ms[:q])), 3) if len(ms) else None,
            "last_quarter_p50_ms": round(float(np.median(ms[-q:])), 3) if len(ms) else None,
            "dropped": int(sum(client.dropped.values())) + int(srv["slow_client_drops"]),
            "reconnects": int(sum(client.reconnects.values())),
            "faults": dict(client.faults),
            "errors": list(client.errors)[-3:],
        }

    def sustained(r: dict[str, Any], rate: int, seconds: float) -> bool:
        return (r["received"] >= 0.95 * rate * seconds and not r["dropped"]
                and not r["reconnects"] and r["p99_ms"] is not None and r["p99_ms"] <= 50
                and r["last_quarter_p50_ms"] <= r["first_quarter_p50_ms"] + 10)

    def step_up(run: Callable[[int, float], dict[str, Any]]) -> tuple[dict, dict, int]:
        out: dict[str, Any] = {}
        best = 0
        for rate in rates:
            r = run(rate, duration_s)
            r["sustained"] = sustained(r, rate, duration_s)
            out[str(rate)] = r
            best = max(best, rate) if r["sustained"] else best
        steps: dict[str, Any] = {}
        for rate in sorted(step_rates):
            if rate <= best:
                continue
            r = run(rate, step_duration_s)
            r["sustained"] = sustained(r, rate, step_duration_s)
            steps[str(rate)] = r
            if not r["sustained"]:
                break
            best = rate
        return out, steps, best

    out, steps, best = step_up(lambda rate, sec: asyncio.run(measure(rate, sec)))
    result: dict[str, Any] = {
        "name": "feed",
        "path": "FeedServer(SimSource, stamp) in a separate process -> WebSocket -> "
                "BinanceWsClient -> wait_rows/drain -> SymbolEngine.on_batch, one process, "
                "no Ray (the FeedActor's ws loop inline); latency = wall after the book "
                "applied the message's batch - the server's _sent_ns",
        "rates": out,
        "steps": steps,
        "max_sustained_msgs_per_s": best,
    }
    if ray_actors:
        r_out, r_steps, r_best = _feed_through_ray(cfg, step_up, server, warmup_s)
        result["ray"] = {
            "path": "the same server -> FeedActor (Ray actor, feed.source ws) -> "
                    "next_batches -> SymbolActor.on_batch (Ray actors, the kernel's calls); "
                    "latency = wall after the SymbolActors returned - the row's ts_init "
                    "(its receive time in the FeedActor): receive-to-book through Ray",
            "rates": r_out,
            "steps": r_steps,
            "max_sustained_msgs_per_s": r_best,
        }
    result.update({
        "sim_msgs_per_sim_s": round(per_sim_s, 1),
        "symbols": len(ins),
        "duration_s": duration_s,
        "machine": _machine(),
    })
    return result


def _feed_through_ray(cfg: RaydeskConfig, step_up: Callable[..., Any],
                      server: Callable[[int], Any], warmup_s: float) -> tuple[dict, dict, int]:
    """``bench feed`` through the real actors: a FeedActor on the live feed and one
    SymbolActor per symbol, driven as the kernel drives them (see ``bench_feed``'s ``ray``)."""
    import ray

    from actors.book.actor import SymbolActor
    from actors.feed.actor import FeedActor
    from cluster.topology import connect_ray

    owns = connect_ray(cfg)
    ins = cfg.instrument_map()
    symbols = {
        s: ray.remote(SymbolActor).options(num_cpus=cfg.ray.actor_num_cpus).remote(
            i, cfg.book.model_dump(mode="json"), cfg.features.model_dump(mode="json"), False)
        for s, i in ins.items()
    }
    ray.get([a.barrier.remote() for a in symbols.values()])  # kernels compiled

    def run(rate: int, seconds: float) -> dict[str, Any]:
        with server(rate) as port:
            live = cfg.with_overrides(feed={"source": "ws", "url": f"ws://127.0.0.1:{port}",
                                            "batch_interval_ms": 50.0})
            feed = ray.remote(FeedActor).options(num_cpus=cfg.ray.actor_num_cpus).remote(
                live.model_dump(mode="json"), False, 0)
            try:
                return _drive(feed, symbols, rate, seconds, warmup_s)
            finally:
                ray.get(feed.stop.remote(), timeout=10)
                ray.kill(feed)

    try:
        return step_up(run)
    finally:
        for a in symbols.values():
            ray.kill(a)
        if owns:
            ray.shutdown()


def _drive(feed: Any, symbols: dict[str, Any], rate: int, seconds: float,
           warmup_s: float) -> dict[str, Any]:
    import ray

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # from the moment every symbol is synced
        _now, batches = ray.get(feed.next_batches.remote())
        ray.get([symbols[s].on_batch.remote(b) for s, b in batches.items() if len(b.data)])
        st = ray.get(feed.feed_stats.remote())
        if st and all(st["synced"].values()):
            break
    msgs0 = sum(ray.get(feed.feed_stats.remote())["messages"].values())
    lat: list[np.ndarray] = []
    rows = 0
    t0 = time.monotonic()
    t_measure = t0 + warmup_s
    wall_measure = time.time_ns() + int(warmup_s * 1e9)
    while time.monotonic() < t0 + warmup_s + seconds:
        _now, batches = ray.get(feed.next_batches.remote())
        ray.get([symbols[s].on_batch.remote(b) for s, b in batches.items() if len(b.data)])
        done = time.time_ns()
        if time.monotonic() < t_measure:
            msgs0 = sum(ray.get(feed.feed_stats.remote())["messages"].values())
            wall_measure = done
            continue
        for b in batches.values():
            # rows received before the window are warm-up (a start-up backlog), as inline
            ts = b.data["ts_init"][b.data["ts_init"] >= wall_measure]
            lat.append(done - ts)
            rows += len(ts)
    st = ray.get(feed.feed_stats.remote())
    msgs = sum(st["messages"].values()) - msgs0
    ms = np.concatenate(lat) / 1e6 if lat else np.zeros(0)
    q = max(1, len(ms) // 4)
    return {
        "received": int(msgs),
        "received_msgs_per_s": round(msgs / seconds),
        "rows": rows,
        "p50_ms": round(float(np.percentile(ms, 50)), 3) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 3) if len(ms) else None,
        "max_ms": round(float(ms.max()), 3) if len(ms) else None,
        "first_quarter_p50_ms": round(float(np.median(ms[:q])), 3) if len(ms) else None,
        "last_quarter_p50_ms": round(float(np.median(ms[-q:])), 3) if len(ms) else None,
        "dropped": int(sum(st["dropped"].values())),
        "reconnects": int(sum(st["reconnects"].values())),
        "faults": st.get("faults", {}),
    }



CALL_TIMEOUT_S = 10.0  # bench inference: an answer later than this counts as none


def bench_inference(cfg: RaydeskConfig, rate: int = 1_000, duration_s: float = 5.0,
                    throughput_s: float = 5.0, concurrency: int = 32,
                    batch_predictions: int = 32, warmup_s: float = 1.0,
                    http: bool = True, low_rate: int = 100) -> dict[str, Any]:
    """Latency at ``rate`` requests/s and the highest throughput of the Serve ensemble and of
    each model deployment, through a handle and (ensemble) over HTTP.

    Local Ray and Serve run the real application (``serve.app:build_app`` via
    ``serve.client.deploy``) on the production models of the registry (trained first if
    missing), every family of ``models.families`` called with equal weights (the full
    ensemble, whatever weights training fitted). Latency requests hold one decision point each,
    with real inputs (feature vectors, feature windows and raw book windows of a simulator
    session through the book and feature engines). Latency is measured
    open loop: requests are sent on a fixed schedule whatever the answers do, and each one's
    time runs from its scheduled send to its answer (so queueing counts); requests the Serve
    router refuses (its queue bound) are counted as ``rejected``, and those unanswered after
    :data:`CALL_TIMEOUT_S` as ``timed_out``. Latency is also reported at ``low_rate``
    (``at_<low_rate>_rps``), a load this machine can carry. Throughput is closed loop
    with ``concurrency`` requests in flight, of one decision point each and of
    ``batch_predictions`` each (as the kernel sends one request per step for every symbol's
    decision point); ``max_predictions_per_s`` is the higher. Per model, the handle calls the model
    deployment's batched ``predict`` directly; the models have no HTTP route of their own.
    """
    import asyncio

    import aiohttp
    import ray
    from ray import serve
    from ray.serve.exceptions import BackPressureError

    from cluster.topology import connect_ray
    from serve.app import DEPLOYMENT_NAMES
    from serve.client import ROUTE_PREFIX, deploy
    from serve.dataset import build_training_set
    from serve.ensemble import FAMILY_INPUTS
    from serve.training import ensure_models

    if cfg.models.http_port == 0:  # Serve needs a fixed port: take a free one
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            cfg = cfg.with_overrides(models={"http_port": sock.getsockname()[1]})
    families = list(cfg.models.families)
    cfg = cfg.with_overrides(models={"weights": {f: 1.0 for f in families}})
    ensure_models(cfg, console_progress=False)
    data = build_training_set(cfg, seconds=120.0)
    inputs = {
        "features": np.ascontiguousarray(data.features, dtype=np.float32),
        "windows": np.ascontiguousarray(data.windows, dtype=np.float32),
        "books": np.ascontiguousarray(data.books, dtype=np.float32),
    }
    n_inputs = len(data.features)
    owns = connect_ray(cfg)
    app_name = "raydesk-bench-inference"
    try:
        ingress = deploy(cfg, name=app_name)
        own = [f for f in families if f not in cfg.models.colocate]  # have a deployment
        models = {f: serve.get_deployment_handle(DEPLOYMENT_NAMES[f], app_name) for f in own}
        url = f"http://127.0.0.1:{cfg.models.http_port}{ROUTE_PREFIX}"
        deadline_ms = cfg.models.deadline_ms

        def request(i: int, n: int = 1) -> dict[str, Any]:
            j = (i * n) % (n_inputs - n)
            return {"decision_ids": [f"b{i}-{k}" for k in range(n)],
                    **{k: a[j:j + n] for k, a in inputs.items()}}

        def http_body(i: int, n: int = 1) -> bytes:
            r = request(i, n)
            return json.dumps({"decision_ids": r["decision_ids"],
                               **{k: r[k].tolist() for k in inputs}}).encode()

        async def call(target: str, i: int, http: Any, n: int = 1) -> str:
            """One request of ``n`` decision points: "ok" (answered by the models),
            "fallback" or "rejected"."""
            try:
                if target == "ensemble":
                    out = await ingress.predict.remote(request(i, n))
                    return "fallback" if out["fallback"] else "ok"
                if target == "http":
                    body = bodies[i % len(bodies)] if n == 1 else bodies_n[i % len(bodies_n)]
                    async with http.post(url, data=body,
                                         headers={"content-type": "application/json"}) as r:
                        if r.status != 200:
                            return "rejected"
                        out = await r.json()
                        return "fallback" if out["fallback"] else "ok"
                r = request(i, n)
                out = await models[target].predict.remote(r[FAMILY_INPUTS[target]])
                return "ok" if len(out["probs"]) == n else "rejected"
            except (BackPressureError, TimeoutError):
                return "rejected"

        async def open_loop(target: str, rate: int) -> dict[str, Any]:
            lat: list[float] = []
            outcomes: Counter[str] = Counter()
            async with aiohttp.ClientSession() as http:
                loop = asyncio.get_running_loop()
                t0 = loop.time() + 0.05
                n_warm = int(warmup_s * rate)
                n = n_warm + int(duration_s * rate)
                tasks = []

                async def one(i: int, due: float) -> None:
                    try:  # an answer later than this is no answer (and bounds the run)
                        status = await asyncio.wait_for(call(target, i, http), CALL_TIMEOUT_S)
                    except TimeoutError:
                        status = "timed_out"
                    if i >= n_warm:
                        outcomes[status] += 1
                        if status in ("ok", "fallback"):
                            lat.append((loop.time() - due) * 1e3)

                for i in range(n):
                    due = t0 + i / rate
                    wait = due - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    tasks.append(asyncio.create_task(one(i, due)))
                await asyncio.gather(*tasks)
            ms = np.asarray(lat)

            def q(p: float) -> float | None:
                return round(float(np.percentile(ms, p)), 3) if len(ms) else None

            return {"rate_rps": rate, "requests": sum(outcomes.values()),
                    "answered_by_models": outcomes["ok"], "fallbacks": outcomes["fallback"],
                    "rejected": outcomes["rejected"], "timed_out": outcomes["timed_out"],
                    "p50_ms": q(50), "p99_ms": q(99), "max_ms": q(100)}

        async def closed_loop(target: str, n: int) -> int:
            done = 0
            async with aiohttp.ClientSession() as http:
                loop = asyncio.get_running_loop()
                t_end = loop.time() + warmup_s + throughput_s
                t_measure = loop.time() + warmup_s

                async def worker(k: int) -> None:
                    nonlocal done
                    i = k
                    while loop.time() < t_end:
                        status = await call(target, i, http, n)
                        if loop.time() >= t_measure and status == "ok":
                            done += n
                        i += concurrency

                await asyncio.gather(*(worker(k) for k in range(concurrency)))
            return round(done / throughput_s)

        bodies = [http_body(i) for i in range(min(n_inputs, 512))]
        bodies_n = [http_body(i, batch_predictions) for i in range(64)]
        out: dict[str, Any] = {}
        targets = [("ensemble", "ensemble"), ("ensemble_http", "http"),
                   *((f, f) for f in own)]

        async def measure_all() -> None:
            # one event loop for every call: Serve's throughput-optimised mode
            # (RAY_SERVE_THROUGHPUT_OPTIMIZED=1) binds handles to the loop that first used them
            for name, target in targets if http else [t for t in targets if t[1] != "http"]:
                lat = await open_loop(target, rate)
                low = await open_loop(target, low_rate)
                one = await closed_loop(target, 1)
                many = await closed_loop(target, batch_predictions)
                key, via = ("ensemble", "http") if name == "ensemble_http" else (name, "handle")
                out.setdefault(key, {})[via] = {
                    **lat, f"at_{low_rate}_rps": low, "max_predictions_per_s": max(one, many),
                    "max_predictions_per_s_1_per_request": one,
                    f"max_predictions_per_s_{batch_predictions}_per_request": many,
                    "concurrency": concurrency}

        asyncio.run(measure_all())
        ray_resources = ray.cluster_resources()
    finally:
        with contextlib.suppress(Exception):
            serve.delete(app_name)
        if owns:  # (not serve.shutdown(): killing its controller first prints retry noise)
            ray.shutdown()
    return {
        "name": "inference",
        **out,
        "deadline_ms": deadline_ms,
        "inputs": {"distinct": n_inputs, "features": int(inputs["features"].shape[1]),
                   "window": list(inputs["windows"].shape[1:]),
                   "book_window": list(inputs["books"].shape[1:])},
        "weights": {f: round(1.0 / len(families), 6) for f in families},
        "colocated": list(cfg.models.colocate),
        "path": "driver -> DeploymentHandle (ensemble: EnsembleIngress.predict -> one deployment "
                "per family with @serve.batch, all called, except families colocated in the "
                "ingress; single models: the model deployment's predict) and HTTP POST /ensemble "
                "(aiohttp, keep-alive)",
        "goals": {"ensemble_p99_ms_at_1000_rps": 10, "max_predictions_per_s": 5_000},
        "cluster_cpus": ray_resources.get("CPU"),
        "serve_throughput_optimized": os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") == "1",
        "gpu": bool(ray_resources.get("GPU")),
        "machine": _machine(),
    }

from jobs.bench_execution import bench_execution  # noqa: E402 - imports _machine lazily
from jobs.bench_risk import bench_risk  # noqa: E402 - it imports _machine from here lazily
from jobs.bench_sweep import bench_sweep  # noqa: E402 - it imports _machine from here lazily

BENCHMARKS: dict[str, Callable[[RaydeskConfig], dict[str, Any]]] = {
    "simulator": bench_simulator,
    "book": bench_book,
    "replay": bench_replay,
    "feed": bench_feed,
    "inference": bench_inference,
    "risk": bench_risk,
    "execution": bench_execution,
    "sweep": bench_sweep,
}
