"""``raydesk bench sweep``: full-replay sweep trials per minute on 1 and 2 CPUs.

The same candidates (``TRIALS`` points of entry edge × holding horizon) are fully replayed —
the real topology's engines in one process per trial, as ``jobs.sweep`` runs them — as Ray
Tune trials of one CPU each, first on a fresh local Ray with 1 CPU, then with 2. Each run is
timed from ``Tuner.fit()`` to its return (trial start-up included, the driver's model
training and tape excluded), after one throwaway trial on its own Ray (one-time machine costs:
numba's on-disk cache, the page cache). Trials reuse their worker process (``reuse_actors``),
as ``jobs.sweep`` runs them. The coarse mode's speed (candidates re-traded per second on the
tape of one replay, one CPU) is reported alongside, and the trading loop's wall time for the
same replay in one process (a second, warm run) and through the Ray topology (actors and
Serve, 2 CPUs, in the Serve mode ``raydesk bench`` sets).
"""

from __future__ import annotations

import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from cluster.config import RaydeskConfig, parse_config

TRIALS = 8
DURATION_S = 60.0


def _sweep_cfg(cfg: RaydeskConfig, duration_s: float) -> RaydeskConfig:
    data = cfg.model_dump(mode="json")
    data["sweep"].update(
        duration_s=duration_s, folds=2, warmup_s=5.0, top_k=1,
        space={"strategy.entry_edge": [0.02, 0.05, 0.1, 0.2], "strategy.hold_steps": [0, 20]},
    )
    data["run"]["progress"] = False
    return parse_config(data, "bench sweep")


def bench_sweep(
    cfg: RaydeskConfig, trials: int = TRIALS, duration_s: float = DURATION_S
) -> dict[str, Any]:
    """Return ``{"trials_per_min_1cpu", "trials_per_min_2cpu", "scaling", ...}``."""
    import ray

    from jobs.bench import _machine
    from jobs.sweep import (
        Tape,
        apply_candidate,
        candidates,
        coarse_equity,
        fold_plan,
        full_replay,
        run_full,
        sweep_base,
    )
    from serve.training import ensure_models

    scfg = _sweep_cfg(cfg, duration_s)
    ensure_models(scfg, console_progress=False)
    with TemporaryDirectory(prefix="raydesk-bench-sweep-") as tmp:
        root = Path(tmp)
        data = scfg.model_dump(mode="json")
        data["run"]["runs_dir"] = str(root / "runs")
        scfg = parse_config(data, "bench sweep")
        base = sweep_base(scfg)
        cands = candidates(scfg)[:trials]
        step_s = scfg.feed.batch_interval_ms / 1e3
        t0 = time.perf_counter()
        tape_run = full_replay(parse_config(base, "bench base"), root / "tape" / "tape")
        tape_s = time.perf_counter() - t0
        folds, span, _ = fold_plan(len(tape_run["equity"]), step_s, scfg)
        tape = Tape.from_journal(root / "tape" / "tape" / "journal.log", scfg)
        configs = [apply_candidate(base, c) for c in cands]
        t0 = time.perf_counter()
        for c in configs:
            coarse_equity(tape, c)
        coarse_s = time.perf_counter() - t0
        rates: dict[int, float] = {}
        walls: dict[int, float] = {}
        # a throwaway trial first: one-time machine costs (numba's on-disk cache, the page
        # cache) must not be charged to whichever CPU count runs first
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
                 namespace="raydesk-bench")
        try:
            run_full(base, cands[:1], folds, span, step_s, root / "warmup", None, False)
        finally:
            ray.shutdown()
        for cpus in (1, 2):
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                     namespace="raydesk-bench")
            try:
                t0 = time.perf_counter()
                run_full(base, cands, folds, span, step_s, root / f"cpu{cpus}", None, False)
                walls[cpus] = time.perf_counter() - t0
            finally:
                ray.shutdown()
            rates[cpus] = len(cands) / (walls[cpus] / 60.0)
        # the same replay through the Ray topology (actors + Serve), for the in-process speedup
        import json

        from cluster.runner import run_pipeline

        # a second in-process replay: the first (the tape) paid the process's warm-up
        full_replay(parse_config(base, "bench base"), root / "tape" / "again")
        inproc = json.loads((root / "tape" / "again" / "summary.json").read_text())["wall_s"]
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 namespace="raydesk-bench")
        try:
            through_ray = run_pipeline(parse_config(base, "bench base"), replay=True,
                                       run_id="through-ray")["wall_s"]
        finally:
            ray.shutdown()
    return {
        "trials_per_min_1cpu": round(rates[1], 2),
        "trials_per_min_2cpu": round(rates[2], 2),
        "scaling": round(rates[2] / rates[1], 3),
        "trials": len(cands),
        "trial_sim_seconds": duration_s,
        "trial_steps": len(tape_run["equity"]),
        "symbols": len(scfg.instruments),
        "families": list(scfg.models.families),
        "wall_s_1cpu": round(walls[1], 2),
        "wall_s_2cpu": round(walls[2], 2),
        "one_replay_in_driver_s": round(tape_s, 2),
        "replay_loop_s_in_process": inproc,
        "replay_loop_s_ray_topology": through_ray,
        "in_process_speedup": round(through_ray / inproc, 2) if inproc else None,
        "coarse_candidates_per_s": round(len(configs) / coarse_s, 1) if coarse_s > 0 else None,
        "machine": _machine(),
    }
