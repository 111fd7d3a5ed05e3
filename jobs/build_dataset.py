"""Build a research dataset: replay recorded data or the simulator into Parquet, in parallel.

Every session goes through the live book and feature code (:class:`~actors.book.engine.
SymbolEngine`), exactly as :mod:`serve.recorded` and :mod:`serve.dataset` do for training: its
rows are cut into batches of ``feed.batch_interval_ms`` of exchange time
(:func:`serve.recorded.batches_by_time`; the simulator is advanced one interval at a time), and
each batch that ends with a complete message gives one decision point. One Ray task
(``num_cpus=1``) replays one session; the driver gathers them and writes
``<storage>/<run id>/``:

* ``features.parquet``: one row per decision point (valid or not), in session order, then
  symbol, then time: ``session, symbol, ts_event, ts_init, decision_id, valid``, every feature
  column (``actors.book.features.feature_spec(cfg.features)`` names, ``FEATURE_NAMES`` under
  the default features) and ``mid``.
* ``books.npy``: float32 ``(rows, features.book_window, 40)``, row ``i`` the raw book window
  (:mod:`actors.book.book_window`, oldest first) of ``features.parquet`` row ``i``; the input of
  the torch sequence models. Zero rows at the front while the window is cold.
* ``labels.parquet``: the same rows and keys (``session, symbol, ts_event, decision_id``) and,
  per horizon ``h`` (decision points ahead, within the same session and symbol):
  ``ret_bps_h{h}`` (forward mid return, bps) and ``label_h{h}`` (-1 down, 0 flat, +1 up beyond
  ``±models.flat_threshold_bps``); null where the horizon runs past the session's end or a mid
  is missing.
* ``quality.json``: per session and symbol: rows, batches, decisions, valid, exchange-time gaps
  above ``gap_factor`` × the interval, quarantines by kind, errors, crossed books (batches that
  ended crossed), resyncs, mid-return outliers (beyond ``outlier_sigmas`` robust sigmas), clock
  skew ``ts_init - ts_event`` (p50 / p99 / max / min in ms, negatives) and the feed's own
  counters where the reader has them (Binance sync: gaps, stale drops, rejected lines).
* ``manifest.json``: run id, config hash, dataset hash, sources and files, counts, schema.

Sources: ``sim`` (the simulator, ``--sim-seconds``), ``binance`` (the recorded sessions of
``jobs.bench.BINANCE_SESSIONS``), and ``databento`` / ``lobster`` / ``tardis`` from ``--files``
(one session per file set: all files for Databento and Tardis, one message file for LOBSTER).

The run id defaults to ``dataset-<dataset hash>-<n>``: the hash covers the config hash and this
job's options (source, sessions and files, seconds, horizons, quality thresholds), ``n`` the
next free number under the storage path. Progress goes to stderr.

Example:
    python -m jobs.build_dataset --source binance --horizons 10 20 50 --storage /data/datasets
    python -m jobs.build_dataset --source sim --sim-seconds 600 --json
    python -m jobs.build_dataset --source lobster \\
        --files ../shared/data/lobster_sample_l1/AMZN_2012-06-21_34200000_57600000_message_1.csv.gz
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actors.book.book_window import BOOK_COLUMNS
from actors.book.engine import SymbolEngine
from actors.book.features import feature_spec
from actors.core.clock import SimClock
from actors.core.errors import ValidationError
from actors.core.instruments import Instrument
from cluster.config import ConfigError, RaydeskConfig, load_config
from jobs.bench import BINANCE_DATA, BINANCE_SESSIONS
from jobs.run_ids import RUN_ID, reserve_run_dir
from serve.dataset import TRAIN_START_NS, forward_returns_bps, label_returns
from serve.recorded import batches_by_time

SOURCES = ("sim", "binance", "databento", "lobster", "tardis")
DEFAULT_HORIZONS = (10, 20, 50)
KEYS = ("session", "symbol", "ts_event", "ts_init", "decision_id", "valid")
QUALITY_FIELDS = (
    "rows",
    "batches",
    "decisions",
    "valid",
    "first_ts_event",
    "last_ts_event",
    "gaps",
    "quarantines",
    "errors",
    "crossed_batches",
    "resyncs",
    "outliers",
    "clock_skew",
    "feed",
)


@dataclass(frozen=True)
class SessionSpec:
    """One unit of work: a file set (or the simulator) replayed by one Ray task.

    Args:
        name: Session name (``session`` column).
        source: One of :data:`SOURCES`.
        files: Files in session order (empty for ``sim``).
        seconds: Simulated seconds (``sim`` only).
    """

    name: str
    source: str
    files: tuple[str, ...] = ()
    seconds: float | None = None


@dataclass(frozen=True)
class QualityRules:
    """Thresholds of the data-quality report.

    Args:
        gap_factor: An exchange-time gap between consecutive rows counts when above this many
            decision intervals.
        outlier_sigmas: A mid return between consecutive decisions is an outlier beyond this
            many robust sigmas (1.4826 × MAD of the non-zero returns: at one decision per
            interval most returns are exactly zero, so the MAD of all of them is 0).
    """

    gap_factor: float = 10.0
    outlier_sigmas: float = 10.0

    def __post_init__(self) -> None:
        if not self.gap_factor > 0:
            raise ValidationError("gap_factor", "> 0", self.gap_factor)
        if not self.outlier_sigmas > 0:
            raise ValidationError("outlier_sigmas", "> 0", self.outlier_sigmas)


@dataclass
class _Trace:
    """Every decision point and integrity count of one symbol of one session."""

    session: str
    symbol: str
    engine: SymbolEngine
    ts_event: list[int] = field(default_factory=list)
    ts_init: list[int] = field(default_factory=list)
    decision_id: list[str] = field(default_factory=list)
    valid: list[bool] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    books: list[np.ndarray] = field(default_factory=list)
    mids: list[float] = field(default_factory=list)
    row_ts_event: list[np.ndarray] = field(default_factory=list)
    row_skew: list[np.ndarray] = field(default_factory=list)
    batches: int = 0
    quarantines: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    crossed: int = 0
    resyncs: int = 0
    feed: dict[str, Any] = field(default_factory=dict)

    def apply(self, batch: np.ndarray) -> None:
        """Apply one batch through the engine and record what it produced."""
        self.engine.clock.advance_to(int(batch["ts_event"][-1]))
        upd = self.engine.on_batch(batch, view=False)
        self.batches += 1
        self.row_ts_event.append(np.asarray(batch["ts_event"], dtype=np.int64))
        self.row_skew.append(batch["ts_init"].astype(np.int64) - batch["ts_event"].astype(np.int64))
        self.errors += len(upd.errors)
        if upd.quarantine_reason:
            kind = upd.quarantine_kind or "unknown"
            self.quarantines[kind] = self.quarantines.get(kind, 0) + 1
        self.resyncs += int(upd.resynced)
        self.crossed += int(self.engine.book.crossed)
        d = upd.decision
        if d is None:
            return
        self.ts_event.append(d.ts_event)
        self.ts_init.append(d.ts_init)
        self.decision_id.append(d.decision_id)
        self.valid.append(bool(d.valid))
        self.features.append(np.asarray(d.features, dtype=np.float32))
        self.books.append(np.asarray(d.book, dtype=np.float32))
        self.mids.append(float(d.meta.get("mid", np.nan)))


# --- replay (pure: no Ray) ----------------------------------------------------------------------
def replay_session(
    cfg: RaydeskConfig,
    spec: SessionSpec,
    horizons: Sequence[int],
    rules: QualityRules = QualityRules(),
) -> list[dict[str, Any]]:
    """Replay one session through the engines; return one result per symbol.

    Each result holds ``columns`` (the ``features.parquet`` columns as arrays), ``books``
    (float32 ``(n, book_window, 40)``), ``labels`` (the per-horizon columns) and ``quality``.

    Raises:
        ValidationError: an unknown source, or a session without rows.
    """
    interval = int(round(cfg.feed.batch_interval_ms * 1_000_000))
    traces: dict[str, _Trace] = {}

    def trace(ins: Instrument, start_ns: int) -> _Trace:
        if ins.symbol not in traces:
            eng = SymbolEngine(ins, cfg.book, cfg.features, SimClock(start_ns))
            traces[ins.symbol] = _Trace(spec.name, ins.symbol, eng)
        return traces[ins.symbol]

    if spec.source == "sim":
        _replay_sim(cfg, spec, interval, trace)
    else:
        for ins, rows, feed in _recorded_rows(spec):
            tr = trace(ins, int(rows["ts_event"][0]))
            tr.feed = feed
            for batch in batches_by_time(rows, interval):
                tr.apply(batch)
    if not traces:
        raise ValidationError(f"session {spec.name!r}", "has market data rows", list(spec.files))
    flat = float(cfg.models.flat_threshold_bps)
    return [_result(traces[s], horizons, flat, interval, rules) for s in sorted(traces)]


def _replay_sim(
    cfg: RaydeskConfig, spec: SessionSpec, interval: int, trace: Callable[..., _Trace]
) -> None:
    """Advance the simulator one interval at a time, as ``serve.dataset.build_training_set``."""
    from actors.feed.simulator import MarketSimulator

    seconds = float(spec.seconds or cfg.models.train_seconds)
    instruments = [ic.to_instrument() for ic in cfg.instruments]
    sim_cfg = cfg.simulator.model_copy(update={"seed": cfg.models.train_seed})
    sim = MarketSimulator(sim_cfg, instruments, cfg.initial_prices_ticks(), start_ns=TRAIN_START_NS)
    by_symbol = {ins.symbol: trace(ins, TRAIN_START_NS) for ins in instruments}
    steps = max(1, int(np.ceil(seconds * 1e9 / interval)))
    for k in range(1, steps + 1):
        batches = sim.advance(TRAIN_START_NS + k * interval)
        for sym, tr in by_symbol.items():
            rows = batches.get(sym)
            if rows is not None and len(rows):
                tr.apply(rows)


def _recorded_rows(spec: SessionSpec) -> Iterator[tuple[Instrument, np.ndarray, dict[str, Any]]]:
    """Yield ``(instrument, all rows in order, feed counters)`` per symbol of a file set."""
    paths = [Path(p) for p in spec.files]
    parts: dict[str, list[np.ndarray]] = {}
    instruments: dict[str, Instrument] = {}
    feeds: dict[str, Any] = {}
    if spec.source == "binance":
        from actors.feed.binance import read_session

        for sym, item, sync in read_session(paths, tickers=False):
            if isinstance(item, np.ndarray) and len(item):
                parts.setdefault(sym, []).append(item)
                instruments[sym] = sync.instrument
                feeds[sym] = sync.stats
        feed_of: Callable[[str], dict[str, Any]] = lambda s: _sync_stats(feeds[s])  # noqa: E731
    else:
        if spec.source == "databento":
            from actors.feed.databento import read_databento

            items: Iterator[tuple[Instrument, np.ndarray]] = read_databento(paths)
        elif spec.source == "lobster":
            from actors.feed.lobster import read_lobster

            items = read_lobster(paths[0], paths[1] if len(paths) > 1 else None)
        elif spec.source == "tardis":
            from actors.feed.tardis import read_tardis

            items = read_tardis(paths)
        else:
            raise ValidationError("source", f"one of {SOURCES}", spec.source)
        for ins, rows in items:
            if len(rows):
                parts.setdefault(ins.symbol, []).append(rows)
                instruments[ins.symbol] = ins
        feed_of = lambda _s: {}  # noqa: E731
    for sym, chunks in parts.items():
        yield instruments[sym], np.concatenate(chunks), feed_of(sym)


def _sync_stats(st: Any) -> dict[str, Any]:
    """The Binance sync counters, JSON-safe (errors: count and the first few)."""
    out = {k: v for k, v in asdict(st).items() if k != "errors"}
    out["errors"] = len(st.errors)
    out["first_errors"] = list(st.errors[:5])
    return out


# --- per-trace outputs --------------------------------------------------------------------------
def label_columns(
    mids: np.ndarray, horizons: Sequence[int], flat_threshold_bps: float
) -> dict[str, np.ndarray]:
    """Forward returns (bps) and labels -1/0/+1 per horizon over one trace's mids.

    Returns:
        ``ret_bps_h{h}`` float64 (NaN where undefined) and ``label_h{h}`` float64 in
        ``{-1, 0, 1}`` (NaN where undefined; written as nullable int8).

    Example:
        >>> label_columns(np.array([100.0, 100.0, 101.0]), [1], 0.5)["label_h1"].tolist()
        [0.0, 1.0, nan]
    """
    m = np.asarray(mids, dtype=np.float64)
    good = np.isfinite(m) & (m > 0)
    out: dict[str, np.ndarray] = {}
    for h in horizons:
        ret = np.full(m.shape, np.nan)
        fwd = forward_returns_bps(np.where(good, m, np.nan), h)
        ret[: fwd.shape[0]] = fwd
        ok = np.isfinite(ret)
        lab = np.full(m.shape, np.nan)
        lab[ok] = label_returns(ret[ok], flat_threshold_bps) - 1
        out[f"ret_bps_h{h}"] = ret
        out[f"label_h{h}"] = lab
    return out


def _stats_ms(x: np.ndarray) -> dict[str, Any]:
    if x.size == 0:
        return {
            "count": 0,
            "p50_ms": None,
            "p99_ms": None,
            "max_ms": None,
            "min_ms": None,
            "negatives": 0,
        }
    p50, p99 = np.percentile(x, [50, 99])
    return {
        "count": int(x.size),
        "p50_ms": round(float(p50) / 1e6, 6),
        "p99_ms": round(float(p99) / 1e6, 6),
        "max_ms": round(float(x.max()) / 1e6, 6),
        "min_ms": round(float(x.min()) / 1e6, 6),
        "negatives": int((x < 0).sum()),
    }


def outlier_count(mids: np.ndarray, sigmas: float) -> dict[str, Any]:
    """Mid returns (bps) between consecutive decisions beyond ``sigmas`` robust sigmas."""
    m = np.asarray(mids, dtype=np.float64)
    m = m[np.isfinite(m) & (m > 0)]
    r = (m[1:] / m[:-1] - 1.0) * 1e4 if m.size > 1 else np.empty(0)
    nz = r[r != 0]
    if nz.size < 2:
        return {"count": 0, "robust_sigma_bps": None, "max_abs_bps": None, "returns": int(r.size)}
    med = float(np.median(nz))
    sigma = 1.4826 * float(np.median(np.abs(nz - med)))
    if sigma <= 0:
        sigma = float(np.std(nz))
    n = int((np.abs(r - med) > sigmas * sigma).sum()) if sigma > 0 else 0
    return {
        "count": n,
        "robust_sigma_bps": round(sigma, 6),
        "max_abs_bps": round(float(np.abs(r).max()), 6),
        "returns": int(r.size),
    }


def _result(
    tr: _Trace, horizons: Sequence[int], flat: float, interval: int, rules: QualityRules
) -> dict[str, Any]:
    names = feature_spec(tr.engine.features_cfg)[0]
    n = len(tr.ts_event)
    bw = int(tr.engine.features_cfg.book_window)
    feats = np.stack(tr.features) if n else np.empty((0, len(names)), np.float32)
    if feats.shape[1] != len(names):
        raise ValidationError("features", f"{len(names)} columns", feats.shape[1])
    mids = np.asarray(tr.mids, dtype=np.float64)
    cols: dict[str, np.ndarray] = {
        "session": np.full(n, tr.session, dtype=object),
        "symbol": np.full(n, tr.symbol, dtype=object),
        "ts_event": np.asarray(tr.ts_event, dtype=np.int64),
        "ts_init": np.asarray(tr.ts_init, dtype=np.int64),
        "decision_id": np.asarray(tr.decision_id, dtype=object),
        "valid": np.asarray(tr.valid, dtype=bool),
    }
    for j, name in enumerate(names):
        cols[name] = feats[:, j]
    cols["mid"] = mids
    ts = np.concatenate(tr.row_ts_event) if tr.row_ts_event else np.empty(0, np.int64)
    skew = np.concatenate(tr.row_skew) if tr.row_skew else np.empty(0, np.int64)
    gaps = np.diff(ts)
    big = gaps[gaps > rules.gap_factor * interval]
    quality = {
        "rows": int(ts.size),
        "batches": tr.batches,
        "decisions": n,
        "valid": int(cols["valid"].sum()),
        "first_ts_event": int(ts[0]) if ts.size else None,
        "last_ts_event": int(ts[-1]) if ts.size else None,
        "gaps": {
            "threshold_ms": rules.gap_factor * interval / 1e6,
            "count": int(big.size),
            "max_ms": round(float(big.max()) / 1e6, 3) if big.size else 0.0,
            "total_ms": round(float(big.sum()) / 1e6, 3),
            "backwards": int((gaps < 0).sum()),
        },
        "quarantines": {"total": sum(tr.quarantines.values()), "by_kind": dict(tr.quarantines)},
        "errors": tr.errors,
        "crossed_batches": tr.crossed,
        "resyncs": tr.resyncs,
        "outliers": {"sigmas": rules.outlier_sigmas, **outlier_count(mids, rules.outlier_sigmas)},
        "clock_skew": _stats_ms(skew),
        "feed": tr.feed,
    }
    books = np.stack(tr.books) if n else np.empty((0, bw, BOOK_COLUMNS), np.float32)
    return {
        "session": tr.session,
        "symbol": tr.symbol,
        "feature_names": list(names),
        "columns": cols,
        "books": books,
        "labels": label_columns(mids, horizons, flat),
        "quality": quality,
    }


# --- sessions, run id ---------------------------------------------------------------------------
def discover_sessions(
    source: str,
    sessions: Sequence[str] | None = None,
    files: Sequence[str] | None = None,
    sim_seconds: float | None = None,
    root: Path = BINANCE_DATA,
) -> list[SessionSpec]:
    """Return the sessions of one source.

    Args:
        source: One of :data:`SOURCES`.
        sessions: Binance session names (default: every session whose files exist).
        files: Files for ``databento`` / ``tardis`` (one session) or ``lobster`` (one session
            per message file; the orderbook file is found next to it).
        sim_seconds: Simulated seconds for ``sim``.
        root: Folder of the Binance recordings.

    Raises:
        ValidationError: an unknown source or session, or no files.
    """
    if source == "sim":
        if sim_seconds is not None and not sim_seconds > 0:
            raise ValidationError("sim_seconds", "> 0", sim_seconds)
        return [SessionSpec("sim", "sim", (), sim_seconds)]
    if source == "binance":
        unknown = sorted(set(sessions or ()) - set(BINANCE_SESSIONS))
        if unknown:
            raise ValidationError("sessions", f"in {sorted(BINANCE_SESSIONS)}", unknown)
        names = (
            list(sessions)
            if sessions
            else [n for n, fs in BINANCE_SESSIONS.items() if all((root / f).exists() for f in fs)]
        )
        if not names:
            raise ValidationError("sessions", f"recordings under {root}", [])
        return [
            SessionSpec(n, "binance", tuple(str(root / f) for f in BINANCE_SESSIONS[n]))
            for n in names
        ]
    if source not in SOURCES:
        raise ValidationError("source", f"one of {SOURCES}", source)
    if not files:
        raise ValidationError("files", f"non-empty for source {source!r}", files)
    if source == "lobster":
        return [SessionSpec(Path(f).name.split("_message")[0], source, (str(f),)) for f in files]
    return [SessionSpec(Path(files[0]).name.split(".")[0], source, tuple(map(str, files)))]


def dataset_hash(
    cfg: RaydeskConfig, specs: Sequence[SessionSpec], horizons: Sequence[int], rules: QualityRules
) -> str:
    """Return a 12-hex hash of the config hash and this job's options."""
    blob = json.dumps(
        {
            "config": cfg.hash(),
            "sessions": [
                [s.name, s.source, [Path(f).name for f in s.files], s.seconds] for s in specs
            ],
            "horizons": list(horizons),
            "rules": asdict(rules),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# --- the job ------------------------------------------------------------------------------------
def build_dataset(
    cfg: RaydeskConfig,
    specs: Sequence[SessionSpec],
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    storage: str | Path | None = None,
    run_id: str | None = None,
    rules: QualityRules = QualityRules(),
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Replay every session as one Ray task and write the dataset; return the manifest.

    Args:
        cfg: Config: book, features, ``feed.batch_interval_ms``, ``models.flat_threshold_bps``,
            simulator and instruments (``sim``), ``ray`` (how to connect).
        specs: Sessions (:func:`discover_sessions`).
        horizons: Label horizons in decision points.
        storage: Where ``<run id>/`` goes (default ``run.runs_dir``).
        run_id: Default ``dataset-<dataset hash>-<n>``.
        rules: Quality thresholds.
        say: Called with progress lines.

    Raises:
        ValidationError: no session, a bad horizon or run id, or an existing run folder.

    Example:
        >>> cfg = load_config(None)
        >>> specs = discover_sessions("sim", sim_seconds=60)
        >>> build_dataset(cfg, specs, [10])["counts"]["rows"]  # doctest: +SKIP
    """
    import ray

    from cluster.topology import connect_ray

    say = say or (lambda _m: None)
    if not specs:
        raise ValidationError("sessions", "non-empty", [])
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValidationError("sessions", "unique names", names)
    for h in horizons:
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise ValidationError("horizons", "ints >= 1", list(horizons))
    horizons = sorted(set(horizons))
    root = Path(storage if storage is not None else cfg.run.runs_dir)
    ds_hash = dataset_hash(cfg, specs, horizons, rules)
    if run_id is None:
        run_id = reserve_run_dir(f"dataset-{ds_hash}-", root)
    elif not RUN_ID.match(run_id):
        raise ValidationError("run_id", f"matching {RUN_ID.pattern}", run_id)
    elif (root / run_id / "manifest.json").exists():
        raise ValidationError("run_id", f"new under {root}", run_id)
    out_dir = root / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    started = connect_ray(cfg)
    try:
        task = ray.remote(num_cpus=1)(replay_session)
        refs = {task.remote(cfg, s, horizons, rules): i for i, s in enumerate(specs)}
        say(f"dataset {run_id}: {len(specs)} session(s) submitted")
        results: list[list[dict[str, Any]] | None] = [None] * len(specs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = refs[done[0]]
            results[i] = ray.get(done[0])
            n = sum(len(r["columns"]["ts_event"]) for r in results[i] or [])
            say(
                f"dataset {run_id}: {specs[i].name} done ({n:,} decisions), "
                f"{len(specs) - len(pending)}/{len(specs)} sessions, "
                f"{time.perf_counter() - t0:.1f} s"
            )
    finally:
        if started:
            ray.shutdown()
    traces = [r for rs in results for r in rs or []]
    manifest = _write(out_dir, cfg, specs, traces, horizons, rules, run_id, ds_hash)
    manifest["wall_s"] = round(time.perf_counter() - t0, 2)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    say(f"dataset {run_id}: {manifest['counts']['rows']:,} rows written to {out_dir}")
    return manifest


def _write(
    out_dir: Path,
    cfg: RaydeskConfig,
    specs: Sequence[SessionSpec],
    traces: list[dict[str, Any]],
    horizons: Sequence[int],
    rules: QualityRules,
    run_id: str,
    ds_hash: str,
) -> dict[str, Any]:
    """Write the Parquet files, ``books.npy`` and ``quality.json``; return the manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = feature_spec(cfg.features)[0]
    cols = ["session", "symbol", "ts_event", "ts_init", "decision_id", "valid", *names, "mid"]

    def cat(key: str, col: str) -> np.ndarray:
        parts = [t[key][col] for t in traces]
        return np.concatenate(parts) if parts else np.empty(0)

    feat = pa.table({c: pa.array(cat("columns", c)) for c in cols})
    lab_cols: dict[str, pa.Array] = {
        c: feat[c] for c in ("session", "symbol", "ts_event", "decision_id")
    }
    for h in horizons:
        ret = cat("labels", f"ret_bps_h{h}").astype(np.float64)
        lab = cat("labels", f"label_h{h}").astype(np.float64)
        lab_cols[f"label_h{h}"] = pa.array(
            np.nan_to_num(lab).astype(np.int8), mask=~np.isfinite(lab)
        )
        lab_cols[f"ret_bps_h{h}"] = pa.array(ret, mask=~np.isfinite(ret))
    labels = pa.table(lab_cols)
    pq.write_table(feat, out_dir / "features.parquet")
    pq.write_table(labels, out_dir / "labels.parquet")
    n = feat.num_rows
    shape = (n, int(cfg.features.book_window), BOOK_COLUMNS)
    books = np.lib.format.open_memmap(
        out_dir / "books.npy", mode="w+", dtype=np.float32, shape=shape
    )
    at = 0
    for t in traces:
        k = len(t["books"])
        if k:
            books[at : at + k] = t["books"]
        at += k
    books.flush()
    del books
    quality: dict[str, dict[str, Any]] = {}
    for t in traces:
        quality.setdefault(t["session"], {})[t["symbol"]] = t["quality"]
    (out_dir / "quality.json").write_text(json.dumps(quality, indent=2, sort_keys=True) + "\n")
    return {
        "run_id": run_id,
        "config_hash": cfg.hash(),
        "dataset_hash": ds_hash,
        "feature_spec_hash": feature_spec(cfg.features)[1],
        "sources": [
            {"session": s.name, "source": s.source, "files": list(s.files), "seconds": s.seconds}
            for s in specs
        ],
        "horizons": list(horizons),
        "flat_threshold_bps": cfg.models.flat_threshold_bps,
        "decision_interval_ms": cfg.feed.batch_interval_ms,
        "quality_rules": asdict(rules),
        "counts": {
            "rows": n,
            "valid": int(np.asarray(feat["valid"]).sum()) if n else 0,
            "by_session": {
                s: {
                    sym: {"rows": q["decisions"], "valid": q["valid"], "market_rows": q["rows"]}
                    for sym, q in d.items()
                }
                for s, d in quality.items()
            },
        },
        "schema": {
            "features.parquet": {f.name: str(f.type) for f in feat.schema},
            "labels.parquet": {f.name: str(f.type) for f in labels.schema},
            "books.npy": {
                "dtype": "float32",
                "shape": list(shape),
                "axes": [
                    "row of features.parquet",
                    "book window (oldest first)",
                    "book column (actors.book.book_window)",
                ],
            },
            "quality.json": {"session": {"symbol": list(QUALITY_FIELDS)}},
        },
        "feature_names": list(names),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code (2: bad input)."""
    p = argparse.ArgumentParser(
        prog="python -m jobs.build_dataset", description=__doc__.split("\n")[0]
    )
    p.add_argument("--config", default=None, help="YAML config (default: embedded defaults)")
    p.add_argument(
        "--source",
        nargs="+",
        choices=SOURCES,
        default=["binance"],
        help="one or more sources, replayed in one run",
    )
    p.add_argument("--sessions", nargs="+", default=None, help="Binance session names")
    p.add_argument("--files", nargs="+", default=None, help="files (databento/lobster/tardis)")
    p.add_argument("--root", default=str(BINANCE_DATA), help="folder of the Binance recordings")
    p.add_argument("--sim-seconds", type=float, default=None, help="simulated seconds (sim)")
    p.add_argument("--horizons", type=int, nargs="+", default=list(DEFAULT_HORIZONS))
    p.add_argument("--gap-factor", type=float, default=QualityRules.gap_factor)
    p.add_argument("--outlier-sigmas", type=float, default=QualityRules.outlier_sigmas)
    p.add_argument("--storage", default=None, help="where runs go (default: run.runs_dir)")
    p.add_argument("--run-id", default=None, help="default: dataset-<hash>-<n>")
    p.add_argument("--json", action="store_true", help="print manifest.json to stdout")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    ns = p.parse_args(argv)
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if not ns.quiet:
            print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    try:
        cfg = load_config(ns.config)
        rules = QualityRules(ns.gap_factor, ns.outlier_sigmas)
        specs = [
            spec
            for src in dict.fromkeys(ns.source)
            for spec in discover_sessions(src, ns.sessions, ns.files, ns.sim_seconds, Path(ns.root))
        ]
        manifest = build_dataset(cfg, specs, ns.horizons, ns.storage, ns.run_id, rules, say)
    except ConfigError as exc:
        print(f"error: invalid config {exc.source}", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return 2
    except (ValidationError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if ns.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
    else:
        print(
            f"dataset {manifest['run_id']}: {manifest['counts']['rows']:,} rows "
            f"({manifest['counts']['valid']:,} valid)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
