"""Labelled samples from recorded Binance sessions, through the live book and feature engines.

:func:`build_recorded_sets` reads each session (``actors.feed.binance.read_session``: the
documented snapshot + diff sync), cuts its rows into batches of ``feed.batch_interval_ms`` of
exchange time (at message boundaries), and feeds them to a fresh
:class:`~actors.book.engine.SymbolEngine`, exactly as the live SymbolActor does. Every
*valid* decision point is a sample with its feature vector, feature window and raw book window;
labels are the mid move ``k`` decision points later in the same session, for each horizon
``k`` (:func:`serve.dataset.label_returns`). Sessions are kept apart: the sample's ``symbols``
entry is the session name, and no label looks past its session's end.

:func:`split_sessions` splits every session by its own time: the first ``train`` share trains,
the next ``calibration`` share calibrates, the rest is the holdout; labels that would cross a
cut are purged from the earlier part. So each market (BTC / ETH, spot / futures, July /
August) is in all three parts, and no sample's label peeks into a later part.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from actors.book.engine import SymbolEngine
from actors.core.batch import F_LAST
from actors.core.clock import SimClock
from actors.core.errors import ValidationError
from actors.feed.binance import read_session
from cluster.config import RaydeskConfig
from serve.dataset import TrainingSet, _assemble, _SymbolTrace


def batches_by_time(rows: np.ndarray, interval_ns: int) -> list[np.ndarray]:
    """Cut time-ordered rows into batches at each ``interval_ns`` boundary of ``ts_event``.

    A batch ends with the last complete message (a row with ``F_LAST``) before a boundary,
    so no message is split; an interval without a complete message joins the next batch.

    Raises:
        ValidationError: ``interval_ns`` is not positive.
    """
    if interval_ns <= 0:
        raise ValidationError("interval_ns", "> 0", interval_ns)
    if len(rows) == 0:
        return []
    ts = rows["ts_event"]
    bucket = (ts - ts[0]) // interval_ns
    ends = np.flatnonzero((rows["flags"] & F_LAST) != 0)
    if len(ends) == 0:
        return [rows]
    # the last complete message in each bucket closes that bucket's batch
    last_in_bucket = ends[np.r_[bucket[ends][1:] != bucket[ends][:-1], True]]
    cuts = np.r_[0, last_in_bucket + 1]
    out = [rows[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]
    if cuts[-1] < len(rows):
        out.append(rows[cuts[-1]:])  # trailing rows of an unfinished message
    return out


def build_recorded_sets(
    cfg: RaydeskConfig,
    sessions: Mapping[str, Sequence[str | Path]],
    horizons: Sequence[int],
    progress: Callable[[str], None] | None = None,
) -> dict[int, TrainingSet]:
    """Replay recorded sessions through the engines; return one labelled set per horizon.

    Args:
        cfg: Config: book, features, ``feed.batch_interval_ms`` and
            ``models.flat_threshold_bps`` (the horizon comes from ``horizons``).
        sessions: Session name → its files in order (one symbol per session).
        horizons: Label horizons, in decision points.
        progress: Called with a line per session.

    Returns:
        Horizon → samples in time order, ``symbols`` holding the session name.

    Raises:
        ValidationError: no session, or a horizon < 1.
    """
    if not sessions:
        raise ValidationError("sessions", "non-empty", {})
    for h in horizons:
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise ValidationError("horizons", "ints >= 1", list(horizons))
    interval = int(round(cfg.feed.batch_interval_ms * 1_000_000))
    traces: dict[str, _SymbolTrace] = {}
    first_ts: int | None = None
    last_ts = 0
    order = 0
    for name, paths in sessions.items():
        engine: SymbolEngine | None = None
        tr = traces[name] = _SymbolTrace([], [], [], [], [], [], [])
        parts: list[np.ndarray] = []
        for _sym, item, sync in read_session([Path(p) for p in paths], tickers=False):
            if isinstance(item, np.ndarray) and len(item):
                parts.append(item)
                if engine is None:
                    engine = SymbolEngine(sync.instrument, cfg.book, cfg.features, SimClock(0))
        if engine is None:
            continue
        rows = np.concatenate(parts)
        first_ts = int(rows["ts_event"][0]) if first_ts is None else min(
            first_ts, int(rows["ts_event"][0]))
        last_ts = max(last_ts, int(rows["ts_event"][-1]))
        for batch in batches_by_time(rows, interval):
            engine.clock.advance_to(int(batch["ts_event"][-1]))
            d = engine.on_batch(batch, view=False).decision
            if d is not None:
                order = tr.record(d, order)
        if progress is not None:
            progress(f"{name}: {len(rows):,} rows, {len(tr.mids):,} decisions, "
                     f"{len(tr.valid_at):,} valid")
    span = (first_ts or 0, last_ts)
    return {
        h: _assemble(cfg.with_overrides(models={"horizon": h}), traces, span) for h in horizons
    }


def split_sessions(
    data: TrainingSet, train: float = 0.6, calibration: float = 0.2
) -> tuple[TrainingSet, TrainingSet, TrainingSet]:
    """Split every session by its own time span into train / calibration / holdout.

    Args:
        data: Samples whose ``symbols`` name their session.
        train: Share of each session's span that trains.
        calibration: Share after it that calibrates; the rest is the holdout.

    Returns:
        ``(train, calibration, holdout)``; a part's samples whose label point lies in a later
        part are purged.

    Raises:
        ValidationError: shares outside ``(0, 1)`` or summing to 1 or more.
    """
    if not (0 < train < 1 and 0 < calibration < 1 and train + calibration < 1):
        raise ValidationError("train, calibration", "in (0, 1) with a sum < 1",
                              (train, calibration))
    n = len(data)
    masks = [np.zeros(n, dtype=bool) for _ in range(3)]
    for name in np.unique(data.symbols):
        sel = data.symbols == name
        ts, lts = data.ts_event[sel], data.label_ts_event[sel]
        lo, hi = int(ts.min()), int(ts.max())
        c1 = lo + int((hi - lo) * train)
        c2 = lo + int((hi - lo) * (train + calibration))
        idx = np.flatnonzero(sel)
        masks[0][idx] = lts < c1
        masks[1][idx] = (ts >= c1) & (lts < c2)
        masks[2][idx] = ts >= c2
    return data.subset(masks[0]), data.subset(masks[1]), data.subset(masks[2])
