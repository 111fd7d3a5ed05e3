"""Training data: the live feature pipeline run in-process on the simulator, plus labels.

:func:`build_training_set` runs :class:`~actors.feed.simulator.MarketSimulator` and one
:class:`~actors.book.engine.SymbolEngine` per instrument on a :class:`~actors.core.clock.SimClock`,
stepping by ``feed.batch_interval_ms`` exactly as the pipeline does (``advance(t)`` → one
``on_batch(rows)`` per symbol with rows → one decision point). Every *valid* decision point is a
sample; its label is the mid move ``models.horizon`` decision points later on the same symbol:

* ``r = (mid[i + horizon] / mid[i] - 1) * 1e4`` (bps);
* ``0`` (down) when ``r < -flat_threshold_bps``, ``2`` (up) when ``r > flat_threshold_bps``,
  else ``1`` (flat).

Samples without a label (the last ``horizon`` decisions of a symbol) are dropped. Everything is
a pure function of the config: the same config gives the same arrays, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from actors.book.book_window import BOOK_COLUMNS
from actors.book.engine import SymbolEngine
from actors.book.features import FEATURE_NAMES, FEATURE_SPEC_HASH
from actors.core.clock import SimClock
from actors.core.views import DecisionPoint
from actors.feed.simulator import MarketSimulator
from cluster.config import RaydeskConfig

#: Simulated start of the training market (2023-11-14T22:13:20Z): fixed, so data is reproducible.
TRAIN_START_NS = 1_700_000_000_000_000_000
#: Class index → name.
DOWN, FLAT, UP = 0, 1, 2


@dataclass(frozen=True)
class TrainingSet:
    """Samples in time order (decision step first, then instrument order).

    Attributes:
        features: ``(N, F)`` float32 feature vectors.
        windows: ``(N, T, F)`` float32 feature windows (oldest first).
        books: ``(N, T_b, 40)`` float32 raw book windows (``actors.book.book_window``).
        labels: ``(N,)`` int64 class per sample: 0=down, 1=flat, 2=up.
        returns_bps: ``(N,)`` float64 mid return to the label point, bps.
        ts_event: ``(N,)`` int64 exchange time of each decision point.
        label_ts_event: ``(N,)`` int64 exchange time of the decision point the label looks at.
        symbols: ``(N,)`` symbol of each sample.
        feature_names: Names of the ``F`` features.
        feature_spec_hash: Hash of the feature spec the data was computed with.
        span_ns: ``(first, last)`` ``ts_event`` of the market data used, ns.
    """

    features: np.ndarray
    windows: np.ndarray
    books: np.ndarray
    labels: np.ndarray
    returns_bps: np.ndarray
    ts_event: np.ndarray
    label_ts_event: np.ndarray
    symbols: np.ndarray
    feature_names: tuple[str, ...]
    feature_spec_hash: str
    span_ns: tuple[int, int]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, mask_or_index: np.ndarray) -> TrainingSet:
        """Return the samples selected by a boolean mask or an index array."""
        sel = mask_or_index
        return TrainingSet(
            features=self.features[sel],
            windows=self.windows[sel],
            books=self.books[sel],
            labels=self.labels[sel],
            returns_bps=self.returns_bps[sel],
            ts_event=self.ts_event[sel],
            label_ts_event=self.label_ts_event[sel],
            symbols=self.symbols[sel],
            feature_names=self.feature_names,
            feature_spec_hash=self.feature_spec_hash,
            span_ns=self.span_ns,
        )

    def class_counts(self) -> list[int]:
        """Return the number of samples per class ``[down, flat, up]``."""
        return [int(c) for c in np.bincount(self.labels, minlength=3)[:3]]

    def split_by_time(self, train_fraction: float = 0.8) -> tuple[TrainingSet, TrainingSet]:
        """Split into train / validation at a time cutoff, purging label overlap.

        Validation holds samples with ``ts_event >= cutoff``; training holds samples whose
        *label* point is before the cutoff, so no training label peeks into validation time.

        Args:
            train_fraction: Fraction of the time span (of the samples) before the cutoff.

        Returns:
            ``(train, validation)``.

        Raises:
            ValueError: ``train_fraction`` outside ``(0, 1)`` or an empty set.
        """
        if not 0.0 < train_fraction < 1.0:
            raise ValueError(f"train_fraction must be in (0, 1), was {train_fraction!r}")
        if len(self) == 0:
            raise ValueError("training set must not be empty, was 0 samples")
        lo, hi = int(self.ts_event.min()), int(self.ts_event.max())
        cutoff = lo + int((hi - lo) * train_fraction)
        train = self.label_ts_event < cutoff
        valid = self.ts_event >= cutoff
        return self.subset(train), self.subset(valid)


def label_returns(returns_bps: np.ndarray, flat_threshold_bps: float) -> np.ndarray:
    """Map mid returns in bps to classes: 0=down, 1=flat, 2=up.

    A return strictly beyond ``±flat_threshold_bps`` is down/up; anything else is flat.

    Example:
        >>> label_returns(np.array([-2.0, 0.0, 0.5, 2.0]), 0.5).tolist()
        [0, 1, 1, 2]
    """
    r = np.asarray(returns_bps, dtype=np.float64)
    labels = np.full(r.shape, FLAT, dtype=np.int64)
    labels[r > flat_threshold_bps] = UP
    labels[r < -flat_threshold_bps] = DOWN
    return labels


def forward_returns_bps(mids: np.ndarray, horizon: int) -> np.ndarray:
    """Return ``(mid[i + horizon] / mid[i] - 1) * 1e4`` for ``i < len(mids) - horizon``.

    Example:
        >>> forward_returns_bps(np.array([100.0, 100.0, 101.0]), 1).round(6).tolist()
        [0.0, 100.0]
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, was {horizon!r}")
    m = np.asarray(mids, dtype=np.float64)
    if m.shape[0] <= horizon:
        return np.empty(0, dtype=np.float64)
    return (m[horizon:] / m[:-horizon] - 1.0) * 1e4


@dataclass
class _SymbolTrace:
    """Every decision point of one symbol, valid or not, in order."""

    mids: list[float]
    ts: list[int]
    valid_at: list[int]  # positions (in mids/ts) of valid decisions
    features: list[np.ndarray]
    windows: list[np.ndarray]
    books: list[np.ndarray]
    order: list[int]  # global sample order key of each valid decision

    def record(self, d: DecisionPoint, order: int) -> int:
        """Append one decision point (its inputs when valid); return the next order key."""
        if d.valid:
            self.valid_at.append(len(self.mids))
            self.features.append(d.features)
            self.windows.append(d.window)
            self.books.append(d.book)
            self.order.append(order)
            order += 1
        self.mids.append(float(d.meta.get("mid", np.nan)))
        self.ts.append(d.ts_event)
        return order


def build_training_set(
    cfg: RaydeskConfig,
    seconds: float | None = None,
    progress: Callable[[float], None] | None = None,
) -> TrainingSet:
    """Simulate ``seconds`` of market through the feature pipeline and label every decision.

    Args:
        cfg: The config: instruments, simulator (its seed is replaced by
            ``models.train_seed``), ``feed.batch_interval_ms``, book, features and the label
            settings ``models.horizon`` / ``models.flat_threshold_bps``.
        seconds: Simulated seconds (default ``models.train_seconds``).
        progress: Called with the fraction done (0..1), about every 1 %.

    Returns:
        The labelled samples in time order.

    Example:
        >>> cfg = load_config("configs/local.yaml")
        >>> ts = build_training_set(cfg, seconds=30)
        >>> ts.windows.shape[1:] == (cfg.features.window, len(FEATURE_NAMES))
        True
    """
    seconds = float(cfg.models.train_seconds if seconds is None else seconds)
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, was {seconds!r}")
    instruments = [ic.to_instrument() for ic in cfg.instruments]
    prices = cfg.initial_prices_ticks()
    sim_cfg = cfg.simulator.model_copy(update={"seed": cfg.models.train_seed})
    sim = MarketSimulator(sim_cfg, instruments, prices, start_ns=TRAIN_START_NS)
    engines = {
        ins.symbol: SymbolEngine(ins, cfg.book, cfg.features, SimClock(TRAIN_START_NS))
        for ins in instruments
    }
    traces = {s: _SymbolTrace([], [], [], [], [], [], []) for s in engines}
    step_ns = int(round(cfg.feed.batch_interval_ms * 1_000_000))
    steps = max(1, int(np.ceil(seconds * 1e9 / step_ns)))
    report_every = max(1, steps // 100)
    first_ts: int | None = None
    last_ts = TRAIN_START_NS
    order = 0
    for k in range(1, steps + 1):
        t = TRAIN_START_NS + k * step_ns
        batches = sim.advance(t)
        for sym, engine in engines.items():
            engine.clock.advance_to(t)
            rows = batches.get(sym)
            if rows is None or len(rows) == 0:
                continue
            if first_ts is None:
                first_ts = int(rows["ts_event"][0])
            last_ts = max(last_ts, int(rows["ts_event"][-1]))
            d = engine.on_batch(rows).decision
            if d is None:
                continue
            order = traces[sym].record(d, order)
        if progress is not None and (k % report_every == 0 or k == steps):
            progress(k / steps)
    return _assemble(cfg, traces, (first_ts or TRAIN_START_NS, last_ts))


def _assemble(
    cfg: RaydeskConfig, traces: dict[str, _SymbolTrace], span_ns: tuple[int, int]
) -> TrainingSet:
    """Label every valid decision and stack the samples in global time order."""
    horizon = cfg.models.horizon
    n_f = len(FEATURE_NAMES)
    t_w = cfg.features.window
    t_b = cfg.features.book_window
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("f", "w", "b", "r", "ts", "lts", "o", "s")
    }
    for sym, tr in traces.items():
        if not tr.valid_at:
            continue
        mids = np.asarray(tr.mids, dtype=np.float64)
        ts = np.asarray(tr.ts, dtype=np.int64)
        pos = np.asarray(tr.valid_at, dtype=np.int64)
        target = pos + horizon
        ok = target < len(mids)
        ok[ok] &= np.isfinite(mids[target[ok]]) & (mids[target[ok]] > 0)
        ok &= np.isfinite(mids[pos]) & (mids[pos] > 0)
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            continue
        p, tgt = pos[idx], target[idx]
        parts["f"].append(np.stack([tr.features[i] for i in idx]).astype(np.float32))
        parts["w"].append(np.stack([tr.windows[i] for i in idx]).astype(np.float32))
        parts["b"].append(np.stack([tr.books[i] for i in idx]).astype(np.float32))
        parts["r"].append(forward_returns_bps(mids, horizon)[p])
        parts["ts"].append(ts[p])
        parts["lts"].append(ts[tgt])
        parts["o"].append(np.asarray(tr.order, dtype=np.int64)[idx])
        parts["s"].append(np.full(idx.size, sym, dtype=object))
    if not parts["o"]:
        return TrainingSet(
            features=np.empty((0, n_f), np.float32),
            windows=np.empty((0, t_w, n_f), np.float32),
            books=np.empty((0, t_b, BOOK_COLUMNS), np.float32),
            labels=np.empty(0, np.int64),
            returns_bps=np.empty(0, np.float64),
            ts_event=np.empty(0, np.int64),
            label_ts_event=np.empty(0, np.int64),
            symbols=np.empty(0, dtype=object),
            feature_names=FEATURE_NAMES,
            feature_spec_hash=FEATURE_SPEC_HASH,
            span_ns=span_ns,
        )
    sort = np.argsort(np.concatenate(parts["o"]), kind="stable")
    returns = np.concatenate(parts["r"])[sort]
    return TrainingSet(
        features=np.ascontiguousarray(np.concatenate(parts["f"])[sort]),
        windows=np.ascontiguousarray(np.concatenate(parts["w"])[sort]),
        books=np.ascontiguousarray(np.concatenate(parts["b"])[sort]),
        labels=label_returns(returns, cfg.models.flat_threshold_bps),
        returns_bps=returns,
        ts_event=np.concatenate(parts["ts"])[sort],
        label_ts_event=np.concatenate(parts["lts"])[sort],
        symbols=np.concatenate(parts["s"])[sort],
        feature_names=FEATURE_NAMES,
        feature_spec_hash=FEATURE_SPEC_HASH,
        span_ns=span_ns,
    )
