"""Validate the VaR models on real and simulated return series: ``raydesk risk backtest``.

Series:

* ``binance-<session>``: mid returns between consecutive decision points (100 ms of exchange
  time) of each recorded Binance session, through the live book engine
  (:mod:`serve.recorded`);
* ``simulator-<symbol>``: the same from the built-in market simulator (``--sim-seconds`` of
  simulated market, first instrument).

Each series is backtested per method (historical, normal, Cornish-Fisher) at ``alpha``: every
period's VaR from the previous ``window`` periods, then the exceptions, Kupiec's
proportion-of-failures test, Christoffersen's independence test and (at 99 %) the Basel
traffic light (:func:`actors.risk.var.backtest`).

Example:
    python -m jobs.risk_backtest --json
    raydesk risk backtest --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from actors.risk.var import backtest
from cluster.config import ConfigError, load_config
from jobs.bench import BINANCE_DATA, BINANCE_SESSIONS, _machine

METHODS = ("historical", "normal", "cornish_fisher")


def series(cfg: Any, sessions: Sequence[str], sim_seconds: float) -> dict[str, np.ndarray]:
    """Return name → per-decision mid returns (bps) of the recorded sessions and simulator."""
    from serve.dataset import build_training_set
    from serve.recorded import build_recorded_sets

    out: dict[str, np.ndarray] = {}
    if sessions:
        files = {n: [BINANCE_DATA / f for f in BINANCE_SESSIONS[n]] for n in sessions}
        data = build_recorded_sets(cfg, files, [1])[1]
        for name in sessions:
            out[f"binance-{name}"] = data.returns_bps[data.symbols == name]
    if sim_seconds > 0:
        sim = build_training_set(cfg.with_overrides(models={"horizon": 1}), seconds=sim_seconds)
        sym = cfg.instruments[0].symbol
        out[f"simulator-{sym}"] = sim.returns_bps[sim.symbols == sym]
    return out


def run(config: str | Path | None = None, alpha: float = 0.99, window: int = 250,
        sessions: Sequence[str] | None = None, sim_seconds: float = 900.0) -> dict[str, Any]:
    """Backtest every method on every series; return the report."""
    cfg = load_config(config)
    names = list(BINANCE_SESSIONS if sessions is None else sessions)
    unknown = sorted(set(names) - set(BINANCE_SESSIONS))
    if unknown:
        raise ValueError(f"sessions must be in {sorted(BINANCE_SESSIONS)}, was {unknown}")
    t0 = time.perf_counter()
    data = series(cfg, names, sim_seconds)
    report: dict[str, Any] = {}
    for name, r in data.items():
        report[name] = {"periods": int(r.size), "std_bps": round(float(r.std()), 4),
                        "methods": {m: backtest(r, alpha, window, m) for m in METHODS}}
    return {
        "name": "risk_backtest", "alpha": alpha, "window": window,
        "period": f"{cfg.feed.batch_interval_ms:g} ms (one decision point)",
        "series": report, "wall_s": round(time.perf_counter() - t0, 1), "machine": _machine(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    p = argparse.ArgumentParser(prog="python -m jobs.risk_backtest",
                                description=__doc__.split("\n")[0])
    p.add_argument("--config", default=None, help="YAML config (default: embedded defaults)")
    p.add_argument("--alpha", type=float, default=0.99)
    p.add_argument("--window", type=int, default=250)
    p.add_argument("--sessions", nargs="*", default=None, choices=sorted(BINANCE_SESSIONS))
    p.add_argument("--sim-seconds", type=float, default=900.0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    ns = p.parse_args(argv)
    try:
        out = run(ns.config, ns.alpha, ns.window, ns.sessions, ns.sim_seconds)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if ns.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        for name, rep in out["series"].items():
            for m, b in rep["methods"].items():
                print(f"{name:24s} {m:15s} {b['exceptions']:5d}/{b['days']:<6d} "
                      f"kupiec p {b['kupiec']['p_value']:.3f}  "
                      f"christoffersen p {b['christoffersen']['p_value']:.3f}  "
                      f"{b['basel_zone']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
