"""Sweep: strategy parameters searched with Ray Tune over walk-forward folds.

Every candidate (a point of ``sweep.space``: entry threshold, holding horizon, sizing, risk
limits...) is scored on the same market span (``sweep.duration_s`` of the config's replay:
the simulator or a recorded feed), in two stages:

1. **Coarse** (``sweep.coarse``): one full replay of the base config records the span's
   decisions (the ensemble's probabilities) and top of book in its journal: they do not depend
   on strategy parameters. Every candidate then re-trades that tape in a few milliseconds
   (:func:`coarse_equity`: signal, holding horizon, position cap, an IOC fill at the touch
   and the taker fee; no latency, queue, depth or pre-trade checks), in Ray tasks over the
   cluster's CPUs.
2. **Full**: the best ``sweep.top_k`` candidates of every fold's training part, and of the
   whole span, are replayed through the real topology's engines — feed, books and features,
   the Serve app's model code, strategy, risk, execution, journal — in one process per trial
   (:mod:`cluster.inprocess`), as Ray Tune trials of one CPU each. A trial's journal is scored
   exactly as ``jobs.backtest`` scores one (:func:`jobs.report_html.equity_curve`,
   :func:`~jobs.report_html.metrics`).

**Walk-forward**: after ``sweep.warmup_s`` the span is cut into ``folds + 1`` equal blocks;
fold *i* tests on block *i* and trains on the blocks before it (``anchored``) or the one block
before it (``rolling``), minus the ``purge_s`` before its test block (default: the label
horizon) and the ``embargo_s`` after every earlier test block. Every score is a slice of one
continuous replay per candidate (positions carry across block edges, as they would live).
Fold *i* selects, among its own coarse top-k, the candidate with the best *full* train score;
its test score is out of sample. The concatenated test steps of the selected candidates give
the walk-forward estimate (``walk_forward.json``). The **best config** is the candidate with
the best full score over the whole scored span: ``best.yaml`` is a complete config (model
versions and ensemble weights pinned, ``run.duration_s`` = the span) and ``best.json`` its
metrics; ``python -m jobs.backtest --config best.yaml`` reproduces those metrics exactly.

Outputs go to ``<storage>/<run id>/`` (``run id`` = ``sweep-<config hash>-<n>``):
``results.csv`` / ``results.md`` (one row per candidate: parameters, coarse and full scores
per fold), ``walk_forward.json``, ``best.yaml``, ``best.json``, ``sweep.json`` (everything),
``trials/<candidate>/`` (each full replay's journal, summary and metrics) and ``tune/`` (the
Ray Tune experiment). Progress goes to stderr.

Example:
    python -m jobs.sweep --config configs/local.yaml --storage runs
    ray job submit --working-dir . -- python -m jobs.sweep --config configs/local.yaml \\
        --storage /shared/runs --json
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import itertools
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from actors.execution.analytics import MARKS_RECORD
from actors.journal.journal import read_journal
from cluster.config import ConfigError, RaydeskConfig, load_config, parse_config
from jobs import run_ids
from jobs.report_html import SECONDS_PER_YEAR, equity_curve, metrics
from jobs.run_ids import RUN_ID

#: Metrics of a full replay that ``best.json`` reports and a backtest must reproduce exactly.
REPRODUCED = (
    "steps", "final_equity", "pnl", "realised_pnl", "unrealised_pnl", "total_return",
    "sharpe", "sortino", "calmar", "max_drawdown", "max_drawdown_quote", "annualised_return",
    "annualised_volatility", "traded_notional", "turnover", "fees", "orders", "fills",
    "denials", "round_trips", "hit_rate_round_trips", "hit_rate_closing_fills",
    "final_positions_lots",
)


# ---------------------------------------------------------------------------------------------
# candidates
# ---------------------------------------------------------------------------------------------
def candidates(cfg: RaydeskConfig) -> list[dict[str, Any]]:
    """Return the candidates of ``sweep.space`` (its grid, or a seeded draw of ``samples``)."""
    sw = cfg.sweep
    keys = sorted(sw.space)
    grid = [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(sw.space[k] for k in keys))]
    if sw.samples is not None and sw.samples < len(grid):
        grid = random.Random(sw.seed).sample(grid, sw.samples)
    return grid


def candidate_key(candidate: Mapping[str, Any]) -> str:
    """A short stable id of a candidate (its parameters' hash)."""
    blob = json.dumps(dict(candidate), sort_keys=True, separators=(",", ":")).encode()
    return "c" + hashlib.sha256(blob).hexdigest()[:10]


def apply_candidate(base: Mapping[str, Any], candidate: Mapping[str, Any]) -> RaydeskConfig:
    """Return the validated config of ``base`` (a config dict) with ``candidate`` applied.

    Raises:
        ConfigError: a path that is not in the config, or a value that breaks its field's rule
            (the message names the parameter and the value).
    """
    data = json.loads(json.dumps(dict(base)))
    for path, value in candidate.items():
        node = data
        *parents, leaf = path.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError("sweep.space", [f"{path}: must name a config field, was "
                                                  f"unknown at {part!r}"])
            node = node[part]
        if leaf not in node:
            raise ConfigError("sweep.space", [f"{path}: must name a config field, was unknown"])
        node[leaf] = value
    return parse_config(data, f"sweep candidate {dict(candidate)}")


# ---------------------------------------------------------------------------------------------
# walk-forward folds
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: step ranges ``[a, b)`` of the span."""

    index: int
    train: tuple[tuple[int, int], ...]
    test: tuple[int, int]

    def train_steps(self) -> int:
        return sum(b - a for a, b in self.train)


def _minus(segments: list[tuple[int, int]], cut: tuple[int, int]) -> list[tuple[int, int]]:
    out = []
    for a, b in segments:
        if cut[1] <= a or cut[0] >= b:
            out.append((a, b))
            continue
        if a < cut[0]:
            out.append((a, cut[0]))
        if cut[1] < b:
            out.append((cut[1], b))
    return out


def fold_plan(
    n_steps: int, step_s: float, cfg: RaydeskConfig
) -> tuple[list[Fold], tuple[int, int], dict[str, Any]]:
    """Cut ``n_steps`` steps into walk-forward folds (see the module docstring).

    Returns:
        ``(folds, scored span [a, b), parameters in steps)``.

    Raises:
        ConfigError: the span is too short for the folds, warm-up, purge and embargo.
    """
    sw = cfg.sweep
    warm = math.ceil(sw.warmup_s / step_s - 1e-9)
    purge_s = sw.purge_s if sw.purge_s is not None else cfg.models.horizon * step_s
    purge = math.ceil(purge_s / step_s - 1e-9)
    embargo = math.ceil(sw.embargo_s / step_s - 1e-9)
    usable = n_steps - warm
    block = usable // (sw.folds + 1)
    if block < 2 or block <= purge:
        raise ConfigError("sweep", [
            f"duration_s must leave folds + 1 = {sw.folds + 1} blocks of more than purge "
            f"({purge} steps) and at least 2 steps after warmup_s ({warm} steps), was "
            f"{n_steps} steps (blocks of {block})"
        ])
    edges = [warm + i * block for i in range(sw.folds + 2)]
    edges[-1] = n_steps
    folds = []
    for i in range(1, sw.folds + 1):
        test = (edges[i], edges[i + 1])
        start = edges[0] if sw.scheme == "anchored" else edges[i - 1]
        train = [(start, max(start, test[0] - purge))]
        for j in range(1, i):  # earlier test blocks: embargo after each
            train = _minus(train, (edges[j + 1], edges[j + 1] + embargo))
        train = [(a, b) for a, b in train if b > a]
        if not train:
            raise ConfigError("sweep", [f"fold {i} must keep train steps after purge and "
                                        f"embargo, was none (purge {purge}, embargo {embargo})"])
        folds.append(Fold(i, tuple(train), test))
    params = {"warmup_steps": warm, "purge_steps": purge, "embargo_steps": embargo,
              "block_steps": block, "step_s": step_s, "n_steps": n_steps}
    return folds, (edges[0], n_steps), params


# ---------------------------------------------------------------------------------------------
# scores
# ---------------------------------------------------------------------------------------------
def step_returns(equity: Sequence[float], capital: float) -> np.ndarray:
    """Per-step equity returns (the first step against ``capital``), as ``metrics`` uses."""
    eq = np.asarray(equity, dtype=np.float64)
    prev = np.concatenate(([capital], eq[:-1]))
    return eq / prev - 1.0


def score(
    returns: np.ndarray, segments: Iterable[tuple[int, int]], step_s: float
) -> dict[str, Any]:
    """Score the steps of ``segments`` (concatenated) with ``jobs.report_html`` conventions.

    Returns:
        ``{"steps", "total_return", "sharpe", "sortino", "max_drawdown", "calmar"}``; a ratio
        with a zero denominator is None.
    """
    parts = [returns[a:b] for a, b in segments]
    r = np.concatenate(parts) if parts else np.zeros(0)
    n = int(r.size)
    ppy = SECONDS_PER_YEAR / step_s
    if n == 0:
        return {"steps": 0, "total_return": 0.0, "sharpe": None, "sortino": None,
                "max_drawdown": 0.0, "calmar": None}
    growth = np.concatenate(([1.0], np.cumprod(1.0 + r)))
    total = float(growth[-1] - 1.0)
    std = float(r.std(ddof=1)) if n > 1 else 0.0
    mean = float(r.mean())
    down = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
    peak = np.maximum.accumulate(growth)
    dd = float(((peak - growth) / peak).max())
    ann = None
    if total > -1:
        g = math.log1p(total) * ppy / n
        ann = None if g > 700 else math.expm1(g)
    return {
        "steps": n,
        "total_return": total,
        "sharpe": None if std == 0 else mean / std * math.sqrt(ppy),
        "sortino": None if down == 0 else mean / down * math.sqrt(ppy),
        "max_drawdown": dd,
        "calmar": None if ann is None or dd == 0 else ann / dd,
    }


def objective_value(s: Mapping[str, Any], objective: str) -> float:
    """The ranking value of a score.

    A ratio without a denominator (None: no volatility, no losing step or no drawdown) ranks
    by the sign of the total return: first when it gained, 0 when the equity never moved,
    last when it lost.
    """
    v = s.get(objective)
    if v is None or not math.isfinite(v):
        total = s.get("total_return") or 0.0
        return math.inf if total > 0 else (-math.inf if total < 0 else 0.0)
    return float(v)


def fold_scores(
    returns: np.ndarray, folds: Sequence[Fold], span: tuple[int, int], step_s: float
) -> dict[str, Any]:
    """Scores of one candidate: every step (``whole``: the backtest's own numbers), the scored
    span (after the warm-up) and every fold's train and test."""
    return {
        "whole": score(returns, [(0, int(returns.size))], step_s),
        "span": score(returns, [span], step_s),
        "folds": [
            {"fold": f.index, "train": score(returns, f.train, step_s),
             "test": score(returns, [f.test], step_s)}
            for f in folds
        ],
    }


# ---------------------------------------------------------------------------------------------
# coarse mode
# ---------------------------------------------------------------------------------------------
@dataclass
class Tape:
    """What the coarse mode re-trades: per step, the top of book and the decisions."""

    symbols: list[str]
    tick_value: dict[str, float]  # quote per tick per lot
    tops: list[dict[str, list[Any]]] = field(default_factory=list)
    mids: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[list[tuple[str, tuple[float, float, float]]]] = field(default_factory=list)

    @classmethod
    def from_journal(cls, path: str | Path, cfg: RaydeskConfig) -> Tape:
        """Read a replay's journal (``MarketMarks`` and ``DecisionMade`` records)."""
        ins = cfg.instrument_map()
        tape = cls(
            symbols=sorted(ins),
            tick_value={s: i.notional(1, 1) for s, i in ins.items()},
        )
        for _, rec in read_journal(path):
            kind = rec.get("type")
            if kind == MARKS_RECORD:
                tape.tops.append(rec.get("tops", {}))
                tape.mids.append(rec.get("mids", {}))
                tape.decisions.append([])
            elif kind == "DecisionMade" and tape.decisions:
                tape.decisions[-1].append((rec["symbol"], tuple(rec["probs"])))
        return tape


def coarse_equity(tape: Tape, cfg: RaydeskConfig) -> np.ndarray:
    """Re-trade ``tape`` with ``cfg``'s strategy and position caps; return equity per step.

    The strategy rule is :class:`actors.strategy.engine.StrategyEngine`'s (signal edge, target
    position, order size, holding horizon) with ``target_position_lots`` as the size whatever
    ``strategy.sizing`` says; an order fills at once, whole, at the step's touch plus
    ``limit_offset_ticks`` capped at the touch (IOC through the spread), paying
    ``execution.taker_fee_bps``; positions are capped by the risk limits
    (``max_position_lots``, per symbol where set). Equity is marked at the step's mid after its
    fills, as :func:`jobs.report_html.equity_curve` does.
    """
    st, risk = cfg.strategy, cfg.risk
    edge, size, qmax = st.entry_edge, st.target_position_lots, st.order_qty_lots
    hold = st.hold_steps
    fee = cfg.execution.taker_fee_bps / 1e4
    caps = {}
    for sym in tape.symbols:
        over = risk.symbols.get(sym)
        cap = over.max_position_lots if over is not None else None
        caps[sym] = risk.max_position_lots if cap is None else cap
    pos = dict.fromkeys(tape.symbols, 0)
    quiet = dict.fromkeys(tape.symbols, 0)
    marks: dict[str, float] = {}
    cash = float(cfg.risk.capital)
    out = np.empty(len(tape.tops), dtype=np.float64)
    for t, (tops, mids, decs) in enumerate(zip(tape.tops, tape.mids, tape.decisions, strict=True)):
        for sym, m in mids.items():
            if m is not None and sym in pos:
                marks[sym] = float(m)
        for sym, probs in decs:
            d = probs[2] - probs[0]
            sig = 1 if d > edge else (-1 if d < -edge else 0)
            quiet[sym] = 0 if sig else quiet[sym] + 1
            top = tops.get(sym)
            if top is None or top[0] is None or top[2] is None:
                continue
            p = pos[sym]
            if sig == 0:
                if not (hold and quiet[sym] >= hold and p != 0):
                    continue
                direction, qty = (-1 if p > 0 else 1), min(abs(p), qmax)
            else:
                delta = sig * size - p
                if delta == 0 or (delta > 0) != (sig > 0):
                    continue
                direction, qty = sig, min(abs(delta), qmax)
            # the position cap: what the risk limit lets through, in this direction
            limit = caps[sym] - abs(p) if direction * p >= 0 else abs(p) + caps[sym]
            qty = min(qty, max(limit, 0))
            if qty <= 0:
                continue
            px = top[2] if direction > 0 else top[0]
            notional = px * qty * tape.tick_value[sym]
            cash -= direction * notional + notional * fee
            pos[sym] = p + direction * qty
        out[t] = cash + sum(pos[s] * marks[s] * tape.tick_value[s] for s in pos if s in marks)
    return out


def _coarse_chunk(tape: Tape, base: dict[str, Any], chunk: list[dict[str, Any]],
                  folds: list[Fold], span: tuple[int, int], step_s: float) -> list[dict[str, Any]]:
    out = []
    for cand in chunk:
        cfg = apply_candidate(base, cand)
        eq = coarse_equity(tape, cfg)
        out.append(fold_scores(step_returns(eq, cfg.risk.capital), folds, span, step_s))
    return out


# ---------------------------------------------------------------------------------------------
# full replay (one Tune trial)
# ---------------------------------------------------------------------------------------------
def full_replay(cfg: RaydeskConfig, run_dir: Path) -> dict[str, Any]:
    """Replay ``cfg`` in this process into ``run_dir``; return its backtest metrics.

    ``run_dir`` is ``<runs_dir>/<run id>``; it gets the journal, ``summary.json`` and
    ``metrics.json`` (the same file ``jobs.backtest`` writes). Returns ``{"metrics", "equity"}``.
    """
    import shutil

    from cluster.runner import run_pipeline

    if run_dir.exists():  # a retried trial starts clean: the journal is append-only
        shutil.rmtree(run_dir)
    cfg = parse_config(
        {**cfg.model_dump(mode="json"),
         "run": {**cfg.run.model_dump(mode="json"), "runs_dir": str(run_dir.parent)}},
        "sweep trial",
    )
    run_pipeline(cfg, replay=True, run_id=run_dir.name, in_process=True)
    recs = [rec for _, rec in read_journal(run_dir / "journal.log")]
    curve = equity_curve(recs, cfg.instrument_map(), cfg.risk.capital)
    m = metrics(curve, cfg.feed.batch_interval_ms / 1e3)
    (run_dir / "metrics.json").write_text(json.dumps(m, indent=2, allow_nan=False) + "\n")
    return {"metrics": m, "equity": list(curve.equity)}


def _trial(config: dict[str, Any], base: dict[str, Any], trials_dir: str,
           folds: list[dict[str, Any]], span: list[int], step_s: float) -> None:
    """Ray Tune function trainable: one candidate's full replay, scored per fold."""
    from ray import tune

    cand = config["candidate"]
    cfg = apply_candidate(base, cand)
    t0 = time.perf_counter()
    out = full_replay(cfg, Path(trials_dir) / candidate_key(cand))
    fl = [Fold(f["index"], tuple(map(tuple, f["train"])), tuple(f["test"])) for f in folds]
    if len(out["equity"]) != span[1]:
        raise RuntimeError(f"a trial's replay must have the tape's {span[1]} steps, was "
                           f"{len(out['equity'])} (candidate {cand})")
    returns = step_returns(out["equity"], cfg.risk.capital)
    run_dir = Path(trials_dir) / candidate_key(cand)
    np.save(run_dir / "returns.npy", returns)  # the series stays out of Tune's results
    scores = fold_scores(returns, fl, tuple(span), step_s)
    tune.report({
        "key": candidate_key(cand),
        "scores": json.dumps(scores),
        "returns": str(run_dir / "returns.npy"),
        "metrics": json.dumps({k: out["metrics"].get(k) for k in REPRODUCED}),
        "seconds": time.perf_counter() - t0,
    })


def run_full(
    base: dict[str, Any],
    cands: list[dict[str, Any]],
    folds: list[Fold],
    span: tuple[int, int],
    step_s: float,
    out_dir: Path,
    max_concurrent: int | None,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """Fully replay ``cands`` as Ray Tune trials (1 CPU each); return key → result."""
    from ray import tune

    trainable = tune.with_resources(
        tune.with_parameters(
            _trial, base=base, trials_dir=str(out_dir / "trials"),
            folds=[asdict(f) for f in folds], span=list(span), step_s=step_s,
        ),
        {"cpu": 1},
    )
    callbacks = [_trial_progress(len(cands))] if progress else []
    tuner = tune.Tuner(
        trainable,
        param_space={"candidate": tune.grid_search(cands)},
        # reuse_actors: a trial's worker keeps its imports (torch, the engines) for the next one
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent or 0, reuse_actors=True),
        run_config=tune.RunConfig(
            name="tune", storage_path=str(out_dir.resolve()), verbose=0, callbacks=callbacks,
        ),
    )
    with contextlib.redirect_stdout(sys.stderr):  # Tune prints tables: stdout is for --json
        grid = tuner.fit()
    out: dict[str, dict[str, Any]] = {}
    for res in grid:
        if res.error is not None or not res.metrics or "key" not in res.metrics:
            raise RuntimeError(f"sweep trial {res.config.get('candidate')} failed: {res.error}")
        m = res.metrics
        out[m["key"]] = {"scores": json.loads(m["scores"]), "metrics": json.loads(m["metrics"]),
                         "returns": np.load(m["returns"]), "seconds": m["seconds"]}
    return out


def _trial_progress(total: int) -> Any:
    """A Tune callback printing one stderr line per finished trial."""
    from ray.tune import Callback

    class TrialProgress(Callback):
        def __init__(self) -> None:
            self.done = 0
            self.t0 = time.perf_counter()

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                              **info: Any) -> None:
            self.done += 1
            print(f"sweep full replay: {self.done}/{total} trials "
                  f"({time.perf_counter() - self.t0:.0f} s)", file=sys.stderr, flush=True)

    return TrialProgress()


# ---------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------
def pinned_models(cfg: RaydeskConfig) -> dict[str, Any]:
    """Return ``{"versions", "weights"}``: what Serve would serve for ``cfg`` right now."""
    from serve.app import AppArgs
    from serve.client import app_args_from_config
    from serve.registry import ModelRegistry

    reg = ModelRegistry(cfg.models.registry_path)
    versions = {}
    for f in cfg.models.families:
        if f in cfg.models.versions:
            versions[f] = cfg.models.versions[f]
        else:
            rec = reg.production(f)
            if rec is None:
                raise ConfigError("models", [f"{f}: must have a production model, was none"])
            versions[f] = rec.version
    weights = AppArgs.model_validate(app_args_from_config(cfg)).resolved_weights()
    return {"versions": versions, "weights": weights}


def sweep_base(cfg: RaydeskConfig) -> dict[str, Any]:
    """The config every trial starts from: replay over the span, paths absolute, no sinks,
    the models pinned (so a promotion during the sweep cannot change its trials)."""
    data = cfg.model_dump(mode="json")
    data["run"].update(replay=True, duration_s=cfg.sweep.duration_s, events=None,
                       progress=False, runs_dir=str(Path(cfg.run.runs_dir).resolve()))
    data["ray"]["max_restarts"] = 0
    m = data["models"]
    m["registry_path"] = str(Path(m["registry_path"]).expanduser().resolve())
    if m.get("shadow_log_dir"):
        m["shadow_log_dir"] = str(Path(m["shadow_log_dir"]).expanduser().resolve())
    m.update(pinned_models(cfg))
    data["journal"].update(postgres=False, redis=False, fsync=False)
    return data


def run_sweep(
    cfg: RaydeskConfig, storage: Path, run_id: str, progress: bool = True
) -> dict[str, Any]:
    """Run the whole sweep into ``<storage>/<run_id>`` and return ``sweep.json``'s content."""
    import ray

    from cluster.topology import connect_ray
    from serve.training import ensure_models

    def say(msg: str) -> None:
        if progress:
            print(f"sweep {run_id}: {msg}", file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    out_dir = (storage / run_id).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ensure_models(cfg, console_progress=progress)
    base = sweep_base(cfg)
    cands = candidates(cfg)
    keys = [candidate_key(c) for c in cands]
    for c in cands:  # every candidate must be a valid config before anything runs
        apply_candidate(base, c)
    sw = cfg.sweep
    step_s = cfg.feed.batch_interval_ms / 1e3
    say(f"{len(cands)} candidates, {sw.folds} folds ({sw.scheme}), span {sw.duration_s:g} s")
    started_ray = connect_ray(cfg)
    try:
        # the tape: one full replay of the base config
        t0 = time.perf_counter()
        tape_cfg = parse_config(base, "sweep base")
        tape_run = full_replay(tape_cfg, out_dir / "tape")
        n_steps = len(tape_run["equity"])
        folds, span, plan = fold_plan(n_steps, step_s, cfg)
        say(f"tape: {n_steps} steps replayed in {time.perf_counter() - t0:.1f} s; "
            f"blocks of {plan['block_steps']} steps, purge {plan['purge_steps']}, "
            f"embargo {plan['embargo_steps']}")
        coarse: dict[str, dict[str, Any]] = {}
        t0 = time.perf_counter()
        if sw.coarse:
            tape = Tape.from_journal(out_dir / "tape" / "journal.log", tape_cfg)
            n_cpu = max(1, int(ray.cluster_resources().get("CPU", 1)))
            size = max(1, math.ceil(len(cands) / (4 * n_cpu)))
            chunks = [cands[i:i + size] for i in range(0, len(cands), size)]
            task = ray.remote(num_cpus=1)(_coarse_chunk)
            tape_ref, base_ref = ray.put(tape), ray.put(base)
            refs = [task.remote(tape_ref, base_ref, ch, folds, span, step_s) for ch in chunks]
            flat = [s for part in ray.get(refs) for s in part]
            coarse = dict(zip(keys, flat, strict=True))
            say(f"coarse: {len(cands)} candidates in {time.perf_counter() - t0:.1f} s")
        confirm = _confirm_set(keys, coarse, folds, sw.objective, sw.top_k, sw.coarse)
        t0 = time.perf_counter()
        say(f"full replay of {len(confirm['all'])} candidates (Ray Tune, 1 CPU each)")
        by_key = dict(zip(keys, cands, strict=True))
        full = run_full(base, [by_key[k] for k in confirm["all"]], folds, span, step_s,
                        out_dir, sw.max_concurrent, progress)
        full_s = time.perf_counter() - t0
    finally:
        if started_ray:
            ray.shutdown()
    wf = walk_forward(folds, confirm, full, sw.objective, span, step_s, out_dir)
    best_key = min(confirm["all"],  # ties: the smallest key, as everywhere
                   key=lambda k: (-objective_value(full[k]["scores"]["span"], sw.objective), k))
    best_cfg = apply_candidate(base, by_key[best_key])
    best_data = best_cfg.model_dump(mode="json")
    best_data["run"]["progress"] = True
    (out_dir / "best.yaml").write_text(
        f"# jobs.sweep {run_id}: best candidate {best_key} {json.dumps(by_key[best_key])}\n"
        "# re-run: python -m jobs.backtest --config <this file>\n"
        + yaml.safe_dump(best_data, sort_keys=False)
    )
    best = {"key": best_key, "params": by_key[best_key], "objective": sw.objective,
            "scores": full[best_key]["scores"], "metrics": full[best_key]["metrics"],
            "trial_dir": str(out_dir / "trials" / best_key)}
    (out_dir / "best.json").write_text(json.dumps(best, indent=2) + "\n")
    rows = _rows(keys, cands, coarse, full, folds, sw.objective)
    _write_tables(out_dir, rows, folds)
    result = {
        "run_id": run_id, "config_hash": cfg.hash(), "objective": sw.objective,
        "candidates": len(cands), "full_replays": len(full), "folds": [asdict(f) for f in folds],
        "plan": plan, "span": list(span), "models": pinned_models(parse_config(base, "base")),
        "confirm": confirm, "walk_forward": wf, "best": best,
        "seconds": {"total": time.perf_counter() - t_start, "full": full_s},
        "trials_per_min_full": len(full) / (full_s / 60) if full_s > 0 else None,
        "out_dir": str(out_dir),
    }
    (out_dir / "sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    say(f"best {best_key} {by_key[best_key]}: {sw.objective} "
        f"{full[best_key]['scores']['span'][sw.objective]}; done in "
        f"{result['seconds']['total']:.0f} s -> {out_dir}")
    return result


def _confirm_set(keys: list[str], coarse: dict[str, dict[str, Any]], folds: list[Fold],
                 objective: str, k: int, use_coarse: bool) -> dict[str, Any]:
    """Which candidates get a full replay: per fold its coarse top-k by train score, plus the
    coarse top-k over the span (all of them without the coarse mode)."""
    if not use_coarse:
        return {"all": list(keys), "per_fold": {str(f.index): list(keys) for f in folds},
                "span": list(keys)}

    def top(get: Any) -> list[str]:
        return sorted(keys, key=lambda c: (-objective_value(get(c), objective), c))[:k]

    per_fold = {str(f.index): top(lambda c, i=f.index - 1: coarse[c]["folds"][i]["train"])
                for f in folds}
    span = top(lambda c: coarse[c]["span"])
    chosen = set(span).union(*per_fold.values())
    return {"all": [c for c in keys if c in chosen], "per_fold": per_fold, "span": span}


def walk_forward(folds: list[Fold], confirm: dict[str, Any], full: dict[str, dict[str, Any]],
                 objective: str, span: tuple[int, int], step_s: float,
                 out_dir: Path) -> dict[str, Any]:
    """Select per fold on full train scores; score the selections out of sample."""
    rows, parts = [], []
    for f in folds:
        pool = confirm["per_fold"][str(f.index)]
        pick = min(pool, key=lambda c: (
            -objective_value(full[c]["scores"]["folds"][f.index - 1]["train"], objective), c))
        sc = full[pick]["scores"]["folds"][f.index - 1]
        rows.append({"fold": f.index, "train": [list(s) for s in f.train], "test": list(f.test),
                     "selected": pick, "train_score": sc["train"], "test_score": sc["test"]})
        a, b = f.test
        parts.append(np.asarray(full[pick]["returns"][a:b], dtype=np.float64))
    # out of sample: each fold's test block as traded by that fold's selection, chained
    chained = np.concatenate(parts) if parts else np.zeros(0)
    out = {"objective": objective, "folds": rows,
           "out_of_sample": score(chained, [(0, int(chained.size))], step_s)}
    (out_dir / "walk_forward.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _rows(keys: list[str], cands: list[dict[str, Any]], coarse: dict[str, dict[str, Any]],
          full: dict[str, dict[str, Any]], folds: list[Fold], objective: str
          ) -> list[dict[str, Any]]:
    rows = []
    for key, cand in zip(keys, cands, strict=True):
        row: dict[str, Any] = {"candidate": key, **cand}
        for mode, res in (("coarse", coarse.get(key)), ("full", (full.get(key) or {}).get(
                "scores"))):
            row[f"{mode}_span_{objective}"] = None if res is None else res["span"][objective]
            row[f"{mode}_span_total_return"] = None if res is None else res["span"][
                "total_return"]
            for f in folds:
                fs = None if res is None else res["folds"][f.index - 1]
                row[f"{mode}_f{f.index}_train"] = None if fs is None else fs["train"][objective]
                row[f"{mode}_f{f.index}_test"] = None if fs is None else fs["test"][objective]
        m = (full.get(key) or {}).get("metrics") or {}
        for k in ("pnl", "max_drawdown", "orders", "fills", "fees", "turnover"):
            row[f"full_{k}"] = m.get(k)
        rows.append(row)
    rank_key = f"full_span_{objective}"
    rows.sort(key=lambda r: (r[rank_key] is None, -(r[rank_key] or 0.0),
                             -(r.get(f"coarse_span_{objective}") or -math.inf)))
    return rows


def _write_tables(out_dir: Path, rows: list[dict[str, Any]], folds: list[Fold]) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with (out_dir / "results.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k)) for k in cols})
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(k)) for k in cols) + " |" for r in rows]
    (out_dir / "results.md").write_text(
        f"# Sweep results ({len(rows)} candidates, {len(folds)} folds)\n\n"
        "Ranked by the full replay's span score; rows without full scores were ranked out by "
        "the coarse mode.\n\n" + "\n".join(lines) + "\n"
    )


def reserve_run_dir(cfg: RaydeskConfig, storage: str | Path) -> str:
    """Create the folder of the next free ``sweep-<config hash>-<n>`` and return the id."""
    return run_ids.reserve_run_dir(f"sweep-{cfg.hash()}-", storage)


def _config_error(exc: ConfigError) -> int:
    print(f"error: invalid config {exc.source}", file=sys.stderr)
    for line in exc.errors:
        print(f"  {line}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sweep; return the process exit code (2: bad input)."""
    p = argparse.ArgumentParser(prog="python -m jobs.sweep", description=__doc__.split("\n")[0])
    p.add_argument("--config", default=None, help="YAML config (default: configs/local.yaml)")
    p.add_argument("--storage", default=None, help="where sweeps go (default: run.runs_dir)")
    p.add_argument("--run-id", default=None, help="default: sweep-<config hash>-<n>")
    p.add_argument("--duration", type=float, default=None, help="sweep.duration_s override")
    p.add_argument("--samples", type=int, default=None, help="sweep.samples override")
    p.add_argument("--json", action="store_true", help="print sweep.json to stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    ns = p.parse_args(argv)
    try:
        cfg = load_config(ns.config)
        over = {k: v for k, v in (("duration_s", ns.duration), ("samples", ns.samples))
                if v is not None}
        if over:
            data = cfg.model_dump(mode="json")
            data["sweep"].update(over)
            cfg = parse_config(data, "command line")
        storage = Path(ns.storage if ns.storage is not None else cfg.run.runs_dir)
        if ns.run_id is not None and not RUN_ID.match(ns.run_id):
            raise ConfigError("--run-id", [f"run id must match {RUN_ID.pattern}, was "
                                           f"{ns.run_id!r}"])
        for c in candidates(cfg):
            apply_candidate(cfg.model_dump(mode="json"), c)
    except ConfigError as exc:
        return _config_error(exc)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    run_id = ns.run_id or reserve_run_dir(cfg, storage)
    try:
        result = run_sweep(cfg, storage, run_id, progress=not ns.no_progress)
    except ConfigError as exc:
        return _config_error(exc)
    if ns.json:
        print(json.dumps(result, indent=2))
    else:
        b = result["best"]
        print(f"sweep {run_id}: best {b['key']} {json.dumps(b['params'])}\n"
              f"  {result['objective']} {b['scores']['span'][result['objective']]}  "
              f"pnl {b['metrics']['pnl']:.2f}  walk-forward out-of-sample "
              f"{result['walk_forward']['out_of_sample']}\n"
              f"  best.yaml  {Path(result['out_dir']) / 'best.yaml'}\n"
              f"  results    {Path(result['out_dir']) / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
