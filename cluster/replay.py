"""``raydesk replay``: recorded market data through the SymbolActors, books written out.

Each symbol gets its own SymbolActor (the same actor the trading topology uses); batches are
sent in file order and pipelined (calls from one caller to one actor run in order), and the
final book of every symbol can be written as JSON with exact decimal strings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import ray

from actors.book.actor import SymbolActor
from actors.core.batch import MarketBatch
from actors.core.instruments import Instrument, format_decimal
from cluster.config import RaydeskConfig

FORMATS = ("binance", "tardis", "databento", "lobster", "sim")
MAX_IN_FLIGHT = 64
SIM_REPLAY_CHUNK_NS = 10_000_000_000


def _size_str(size: float) -> str:
    return format_decimal(Decimal(repr(float(size))))


def book_json(instrument: Instrument, image: dict[str, Any]) -> dict[str, Any]:
    """Render a book image (``L2Book.snapshot()``) as exact decimal strings, best level first."""
    return {
        "bids": [[instrument.ticks_to_str(p), _size_str(s)] for p, s in image["bids"]],
        "asks": [[instrument.ticks_to_str(p), _size_str(s)] for p, s in image["asks"]],
        "last_update_id": int(image["last_seq"]),
    }


def _binance_batches(paths: list[Path]) -> Iterator[tuple[Instrument, np.ndarray]]:
    from actors.feed.binance import read_session

    for _sym, item, sync in read_session(paths, tickers=False):
        if isinstance(item, np.ndarray):
            yield sync.instrument, item


def _tardis_batches(paths: list[Path]) -> Iterator[tuple[Instrument, np.ndarray]]:
    from actors.feed.tardis import read_tardis

    yield from read_tardis(paths)


def _databento_batches(paths: list[Path]) -> Iterator[tuple[Instrument, np.ndarray]]:
    from actors.feed.databento import read_databento

    yield from read_databento(paths)


def _lobster_batches(paths: list[Path]) -> Iterator[tuple[Instrument, np.ndarray]]:
    from actors.feed.lobster import lobster_pairs, read_lobster

    for message, orderbook in lobster_pairs(paths):
        yield from read_lobster(message, orderbook)


def _sim_batches(cfg: RaydeskConfig, duration_s: float) -> Iterator[tuple[Instrument, np.ndarray]]:
    from actors.feed.simulator import MarketSimulator

    ins = cfg.instrument_map()
    start = 1_700_000_000_000_000_000
    sim = MarketSimulator(cfg.simulator, list(ins.values()), cfg.initial_prices_ticks(), start)
    step = SIM_REPLAY_CHUNK_NS  # replay has no decision points: big batches, few calls
    t = start
    while t < start + int(duration_s * 1e9):
        t += step
        for sym, rows in sim.advance(t).items():
            if len(rows):
                yield ins[sym], rows


def replay(
    cfg: RaydeskConfig,
    fmt: str,
    paths: list[Path],
    book_out: Path | None = None,
    duration_s: float | None = None,
) -> dict[str, Any]:
    """Replay ``paths`` (in order) through one SymbolActor per symbol; return a summary.

    Args:
        cfg: Config (Ray connection, book and feature settings; simulator for ``sim``).
        fmt: One of :data:`FORMATS`.
        paths: Files of one session, in order; unused for ``sim``. ``lobster`` takes message
            and/or orderbook files (each pairs with the other beside it).
        book_out: Write every symbol's final book here as JSON.
        duration_s: Simulated seconds for ``sim`` (default ``cfg.run.duration_s``).
    """
    from cluster.topology import connect_ray

    if fmt == "binance":
        source = _binance_batches(paths)
    elif fmt == "tardis":
        source = _tardis_batches(paths)
    elif fmt == "databento":
        source = _databento_batches(paths)
    elif fmt == "lobster":
        source = _lobster_batches(paths)
    elif fmt == "sim":
        source = _sim_batches(cfg, duration_s or cfg.run.duration_s)
    else:
        raise ValueError(f"format must be one of {list(FORMATS)}, was {fmt!r}")
    owns = connect_ray(cfg)
    actors: dict[str, Any] = {}
    instruments: dict[str, Instrument] = {}
    in_flight: list[Any] = []
    rows = errors = 0
    t0 = time.perf_counter()
    try:
        for ins, data in source:
            actor = actors.get(ins.symbol)
            if actor is None:
                actor = actors[ins.symbol] = (
                    ray.remote(SymbolActor)
                    .options(num_cpus=cfg.ray.actor_num_cpus)
                    .remote(ins, cfg.book.model_dump(mode="json"),
                            cfg.features.model_dump(mode="json"), True)
                )
                instruments[ins.symbol] = ins
            in_flight.append(actor.ingest.remote(MarketBatch(ins, data, time.time_ns())))
            rows += len(data)
            if len(in_flight) >= MAX_IN_FLIGHT:
                errors += sum(e for _n, e in ray.get(in_flight))
                in_flight.clear()
        errors += sum(e for _n, e in ray.get(in_flight))
        images = {s: ray.get(a.snapshot.remote()) for s, a in sorted(actors.items())}
    finally:
        for a in actors.values():
            ray.kill(a)
        if owns:
            ray.shutdown()
    wall = time.perf_counter() - t0
    books = {s: book_json(instruments[s], img["book"]) for s, img in images.items()}
    if book_out is not None:
        book_out.parent.mkdir(parents=True, exist_ok=True)
        book_out.write_text(json.dumps(books, indent=1) + "\n")
    return {
        "format": fmt,
        "files": [str(p) for p in paths],
        "symbols": sorted(books),
        "rows": rows,
        "rejected_batch_errors": errors,
        "quarantined": sorted(s for s, img in images.items() if img["quarantined"]),
        "levels": {s: [len(b["bids"]), len(b["asks"])] for s, b in books.items()},
        "last_update_id": {s: b["last_update_id"] for s, b in books.items()},
        "wall_s": round(wall, 3),
        "rows_per_s": round(rows / wall) if wall > 0 else None,
        "book_out": str(book_out) if book_out else None,
    }
