"""Train and evaluate the five served model families on recorded Binance sessions, per horizon.

The recorded sessions in ``../shared/data/binance_ws_hftbacktest`` (BTC and ETH, USD-M futures
and spot, July and August 2024; 5.7 to 11 minutes each) go through the live book and feature
engines (:mod:`serve.recorded`). For each horizon ``k`` (decision points, one per
``feed.batch_interval_ms`` of exchange time): every session is split by its own time (60 %
train, 20 % calibration, 20 % holdout, labels purged at the cuts); the families of
``models.families`` are trained, calibrated and combined with weights fitted on the calibration
part exactly as at first start (:func:`serve.training.fit_ensemble`); and everything is scored
on the holdout: macro-F1, accuracy and log loss per model, for the fitted ensemble and for
equal weights; macro-F1 also under each one's own decision rule (per-class log-probability
biases fitted on the calibration part, ``serve.evaluation.fit_class_bias``).

Example:
    python -m jobs.binance_eval --horizons 10 20 50 100 --json --out /tmp/binance_eval.json
    python -m jobs.binance_eval --sessions usdm-btc-0808 --horizons 10 --epochs 1

Progress goes to stderr; with ``--json`` the report is one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cluster.config import ConfigError, load_config
from jobs.bench import BINANCE_DATA, BINANCE_SESSIONS, _machine
from serve.recorded import build_recorded_sets, split_sessions
from serve.training import fit_ensemble

DEFAULT_HORIZONS = (10, 20, 50, 100)


def run(
    config: str | Path | None = None,
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    sessions: Sequence[str] | None = None,
    epochs: int | None = None,
    root: Path = BINANCE_DATA,
    say: Any = None,
) -> dict[str, Any]:
    """Build the recorded sets, then fit and score the ensemble per horizon; return the report.

    Args:
        config: YAML config (default: the embedded defaults); its ``models`` section sets the
            families, sizes and seeds, ``features`` the windows.
        horizons: Label horizons in decision points.
        sessions: Session names of ``jobs.bench.BINANCE_SESSIONS`` (default: all).
        epochs: Torch epochs (default ``models.torch_epochs``).
        root: Folder of the recordings.
        say: Called with progress lines.
    """
    say = say or (lambda _m: None)
    cfg = load_config(config)
    if epochs is not None:
        cfg = cfg.with_overrides(models={"torch_epochs": int(epochs)})
    names = list(sessions or BINANCE_SESSIONS)
    unknown = sorted(set(names) - set(BINANCE_SESSIONS))
    if unknown:
        raise ValueError(f"sessions must be in {sorted(BINANCE_SESSIONS)}, was {unknown}")
    files = {n: [root / f for f in BINANCE_SESSIONS[n]] for n in names}
    t0 = time.perf_counter()
    sets = build_recorded_sets(cfg, files, list(horizons), progress=say)
    out: dict[str, Any] = {
        "name": "binance_eval",
        "sessions": names,
        "split": {"train": 0.6, "calibration": 0.2, "holdout": 0.2, "per": "session"},
        "decision_interval_ms": cfg.feed.batch_interval_ms,
        "flat_threshold_bps": cfg.models.flat_threshold_bps,
        "families": list(cfg.models.families),
        "torch_epochs": cfg.models.torch_epochs,
        "window": cfg.features.window,
        "book_window": cfg.features.book_window,
        "dataset_s": round(time.perf_counter() - t0, 1),
        "horizons": {},
    }
    for h in horizons:
        t1 = time.perf_counter()
        train, calib, holdout = split_sessions(sets[h])
        say(f"k={h}: {len(train):,} train, {len(calib):,} calibration, {len(holdout):,} holdout")
        fitted = fit_ensemble(cfg.with_overrides(models={"horizon": h}), train, calib, holdout)
        rep = fitted.report
        best = rep["best_single"]
        rep["ensemble_beats_best_single_macro_f1"] = (
            rep["ensemble"]["macro_f1"] > rep["models"][best]["macro_f1"]
        )
        best_rule = rep["best_single_rule"]
        rep["ensemble_beats_best_single_macro_f1_rule"] = (
            rep["ensemble"]["macro_f1_rule"] > rep["models"][best_rule]["macro_f1_rule"]
        )
        rep["seconds"] = round(time.perf_counter() - t1, 1)
        out["horizons"][str(h)] = rep
        say(f"k={h}: ensemble macro-F1 {rep['ensemble']['macro_f1']:.4f} (rule "
            f"{rep['ensemble']['macro_f1_rule']:.4f}), best single {best} "
            f"{rep['models'][best]['macro_f1']:.4f} (rule: {best_rule} "
            f"{rep['models'][best_rule]['macro_f1_rule']:.4f}), weights {rep['weights']}")
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    out["machine"] = _machine()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    p = argparse.ArgumentParser(prog="python -m jobs.binance_eval",
                                description=__doc__.split("\n")[0])
    p.add_argument("--config", default=None, help="YAML config (default: embedded defaults)")
    p.add_argument("--horizons", type=int, nargs="+", default=list(DEFAULT_HORIZONS))
    p.add_argument("--sessions", nargs="+", default=None, choices=sorted(BINANCE_SESSIONS))
    p.add_argument("--epochs", type=int, default=None, help="torch epochs")
    p.add_argument("--root", default=str(BINANCE_DATA), help="folder of the recordings")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--out", default=None, help="also write the JSON report to this path")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    ns = p.parse_args(argv)
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if not ns.quiet:
            print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    try:
        out = run(ns.config, ns.horizons, ns.sessions, ns.epochs, Path(ns.root), say)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(out, indent=2, sort_keys=True)
    if ns.out:
        Path(ns.out).write_text(text + "\n")
    if ns.json:
        print(text)
    else:
        for h, rep in out["horizons"].items():
            rows = {**{f: s["macro_f1"] for f, s in rep["models"].items()},
                    "ensemble": rep["ensemble"]["macro_f1"]}
            print(f"k={h}: " + ", ".join(f"{k} {v:.4f}" for k, v in rows.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
