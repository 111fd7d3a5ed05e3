"""Train and evaluate the LOB ensemble on FI-2010 fold 1 (train day 1, test day 2) per horizon.

For each horizon: the windows of day 1 are split per stock by time (first 80 % train, last 20 %
validation); DeepLOB, the Transformer (class-balanced loss, cosine lr), XGBoost and LightGBM are
trained; each is calibrated on validation (temperature scaling, with the ECE before and after)
and gets its own macro-F1 decision rule fitted on validation (:func:`fit_class_bias`). Three
ensembles are fitted on validation (log-loss weights, equal weights, macro-F1 weights with their
rule); everything is scored on day 2 with the arg-max and with its rule, and the ensemble variant
with the best VALIDATION macro-F1 is compared with the best single model. Windows crossing a
stock change are dropped (see :mod:`serve.fi2010`).

Example:
    python -m jobs.fi2010 --horizons 10 --epochs 3 --json --out /tmp/fi2010_k10.json
    python -m jobs.fi2010 --horizons 10 --epochs 1 --max-train 3000 --max-test 2000 --json

Progress goes to stderr; with ``--json`` the report is one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actors.core.errors import ValidationError
from serve.evaluation import (
    apply_temperature,
    combine,
    fit_class_bias,
    fit_temperature,
    fit_weights,
    fit_weights_f1,
    report,
)
from serve.evaluation import expected_calibration_error as ece
from serve.evaluation import log_loss as nll
from serve.fi2010 import (
    HORIZONS,
    BookWindows,
    Fi2010,
    load_fi2010,
    split_by_time,
    stock_segments,
    window_indices,
)
from serve.lob_models import (
    LR_SCHEDULES,
    DeepLOBModel,
    TransformerModel,
    XGBModel,
    default_device,
)
from serve.models import LGBMModel

MODELS: tuple[str, ...] = ("deeplob", "transformer", "xgboost", "lgbm")
#: DeepLOB sizes: "small" (16/32 channels) keeps a CPU epoch in minutes; "paper" is 32/64.
DEEPLOB_SIZES: dict[str, dict[str, int]] = {
    "small": {"conv_channels": 16, "inception_channels": 32, "lstm": 64},
    "paper": {"conv_channels": 32, "inception_channels": 64, "lstm": 64},
}


@dataclass(frozen=True)
class Fi2010JobConfig:
    """Settings of one run; every field is in the report.

    Attributes:
        horizons: Label horizons (events) to evaluate.
        epochs: Torch epochs (the best epoch on validation is kept).
        window: Book states per window ``T``.
        max_train: Cap on training samples (evenly spaced); validation is capped at a quarter.
        max_test: Cap on test samples (evenly spaced).
        models: Families to train.
        seed: Seed of every model.
        threads: Torch / tree threads.
        trees: Maximum boosting rounds (early stopping on validation).
        batch_size: Torch batch size.
        lr: Torch learning rate.
        lr_schedule: Torch learning-rate schedule (``"constant"`` or ``"cosine"``).
        class_weight: Torch loss class weights (``"balanced"`` or None); the job divides the
            probabilities by them again before calibration, restoring the training prior.
        f1_grid_steps: Resolution of the macro-F1 ensemble weight grid (multiples of 1/steps).
        deeplob_size: Key of :data:`DEEPLOB_SIZES`.
        transformer_d_model: Transformer width.
        device: Torch device (default: cuda when available).
        root: FI-2010 folder (default ``../shared/data/fi2010_zscore_fold1``).
    """

    horizons: tuple[int, ...] = (10, 50, 100)
    epochs: int = 3
    window: int = 100
    max_train: int | None = None
    max_test: int | None = None
    models: tuple[str, ...] = MODELS
    seed: int = 1
    threads: int = 1
    trees: int = 600
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    class_weight: str | None = "balanced"
    f1_grid_steps: int = 10
    deeplob_size: str = "small"
    transformer_d_model: int = 48
    device: str | None = None
    root: str | None = field(default=None)

    def __post_init__(self) -> None:
        for h in self.horizons:
            if h not in HORIZONS:
                raise ValidationError("horizons", f"each one of {list(HORIZONS)}", h)
        for m in self.models:
            if m not in MODELS:
                raise ValidationError("models", f"each one of {list(MODELS)}", m)
        if not self.models:
            raise ValidationError("models", "non-empty", self.models)
        if self.deeplob_size not in DEEPLOB_SIZES:
            rule = f"one of {list(DEEPLOB_SIZES)}"
            raise ValidationError("deeplob_size", rule, self.deeplob_size)
        if self.lr_schedule not in LR_SCHEDULES:
            rule = f"one of {list(LR_SCHEDULES)}"
            raise ValidationError("lr_schedule", rule, self.lr_schedule)
        if self.class_weight not in (None, "balanced"):
            raise ValidationError("class_weight", "None or 'balanced'", self.class_weight)
        for name in ("epochs", "window", "threads", "trees", "batch_size", "f1_grid_steps"):
            if getattr(self, name) < 1:
                raise ValidationError(name, ">= 1", getattr(self, name))
        for name in ("max_train", "max_test"):
            v = getattr(self, name)
            if v is not None and v < 10:
                raise ValidationError(name, ">= 10 or None", v)


def _log(msg: str, t0: float) -> None:
    print(f"[fi2010 {time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def _even(idx: np.ndarray, cap: int | None) -> np.ndarray:
    if cap is None or len(idx) <= cap:
        return idx
    return idx[np.linspace(0, len(idx) - 1, cap).round().astype(np.int64)]


@dataclass
class _Split:
    idx: np.ndarray
    windows: BookWindows
    features: np.ndarray


def _split(data: Fi2010, window: int, idx: np.ndarray) -> _Split:
    flat = data.flat_features()
    return _Split(idx, BookWindows(data.book, window, idx), flat[idx])


def _train_one(
    name: str,
    cfg: Fi2010JobConfig,
    tr: _Split,
    ytr: np.ndarray,
    va: _Split,
    yva: np.ndarray,
    say: Callable[[str], None],
) -> Any:
    names = Fi2010.flat_feature_names()
    if name in ("deeplob", "transformer"):
        cls, arch = (
            (DeepLOBModel, DEEPLOB_SIZES[cfg.deeplob_size]) if name == "deeplob"
            else (TransformerModel, {"d_model": cfg.transformer_d_model})
        )
        return cls.train(
            tr.windows,
            ytr,
            epochs=cfg.epochs,
            seed=cfg.seed,
            validation=(va.windows, yva),
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            threads=cfg.threads,
            device=cfg.device,
            progress=_every(say, name),
            class_weight=cfg.class_weight,
            lr_schedule=cfg.lr_schedule,
            **arch,
        )
    if name == "xgboost":
        return XGBModel.train(
            tr.features,
            ytr,
            trees=cfg.trees,
            seed=cfg.seed,
            feature_names=names,
            early_stopping=(va.features, yva),
            threads=cfg.threads,
        )
    return LGBMModel.train(
        tr.features,
        ytr,
        trees=cfg.trees,
        seed=cfg.seed,
        feature_names=names,
        early_stopping=(va.features, yva),
        patience=30,
    )


def _every(say: Callable[[str], None], name: str) -> Callable[[float], None]:
    marks = {0.25, 0.5, 0.75, 1.0}
    seen: set[float] = set()

    def progress(frac: float) -> None:
        for m in sorted(marks - seen):
            if frac >= m:
                seen.add(m)
                say(f"  {name}: {int(m * 100)} % of steps")

    return progress


def _predict(name: str, model: Any, s: _Split) -> np.ndarray:
    """Return the model's probabilities, with a class-weighted loss's prior shift undone."""
    if name not in ("deeplob", "transformer"):
        return model.predict_proba(s.features, None)
    p = model.predict_proba(None, s.windows)
    cw = model.params().get("class_weight")
    if cw is None:
        return p
    p = p / np.asarray(cw, dtype=np.float64)
    return p / p.sum(axis=1, keepdims=True)


def _ensemble_entry(
    weights: dict[str, float],
    val: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    yva: np.ndarray,
    yte: np.ndarray,
    bias: np.ndarray | None = None,
) -> dict[str, Any]:
    """Score one weighting on validation and test, arg-max and under its own fitted rule."""
    pv, pt = combine(val, weights), combine(test, weights)
    if bias is None:
        bias = fit_class_bias(pv, yva)
    return {
        "weights": {n: round(float(w), 6) for n, w in weights.items()},
        "val_log_loss": round(nll(pv, yva), 6),
        "val_macro_f1": report(pv, yva)["macro_f1"],
        "val_macro_f1_rule": report(pv, yva, bias=bias)["macro_f1"],
        "bias": [round(float(v), 6) for v in bias],
        "test": report(pt, yte),
        "test_rule": report(pt, yte, bias=bias),
    }


def _horizon(
    cfg: Fi2010JobConfig, h: int, data: dict[str, Any], say: Callable[[str], None]
) -> dict[str, Any]:
    train, test = data["train"], data["test"]
    tr, va, te = data["tr"], data["va"], data["te"]
    ytr, yva = train.labels_for(h)[tr.idx], train.labels_for(h)[va.idx]
    yte = test.labels_for(h)[te.idx]
    out: dict[str, Any] = {
        "horizon_events": h,
        "n_train": len(ytr),
        "n_val": len(yva),
        "n_test": len(yte),
        "class_counts": {
            "train": np.bincount(ytr, minlength=3).tolist(),
            "val": np.bincount(yva, minlength=3).tolist(),
            "test": np.bincount(yte, minlength=3).tolist(),
        },
        "models": {},
    }
    val_cal: dict[str, np.ndarray] = {}
    test_cal: dict[str, np.ndarray] = {}
    for name in cfg.models:
        say(f"k={h}: training {name} on {len(ytr)} samples")
        t0 = time.perf_counter()
        model = _train_one(name, cfg, tr, ytr, va, yva, say)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pv, pt = _predict(name, model, va), _predict(name, model, te)
        predict_s = time.perf_counter() - t0
        temp = fit_temperature(pv, yva)
        val_cal[name], test_cal[name] = apply_temperature(pv, temp), apply_temperature(pt, temp)
        if hasattr(model, "with_temperature"):
            model.with_temperature(temp)  # the artifact would carry it
        rep = report(test_cal[name], yte)
        bias = fit_class_bias(val_cal[name], yva)
        rep_rule = report(test_cal[name], yte, bias=bias)
        out["models"][name] = {
            "test": rep,
            "test_rule": rep_rule,
            "bias": [round(float(v), 6) for v in bias],
            "val": {
                "macro_f1": report(val_cal[name], yva)["macro_f1"],
                "macro_f1_rule": report(val_cal[name], yva, bias=bias)["macro_f1"],
                "log_loss_raw": round(nll(pv, yva), 6),
                "log_loss_calibrated": round(nll(val_cal[name], yva), 6),
            },
            "temperature": temp,
            "test_ece_raw": round(ece(pt, yte), 6),
            "test_ece_calibrated": rep["ece"],
            "train_s": round(train_s, 2),
            "predict_s": round(predict_s, 2),
            "predict_us_per_sample": round(1e6 * predict_s / max(1, len(yva) + len(yte)), 2),
            "params": _json_safe(model.params()),
        }
        say(
            f"k={h}: {name} macro-F1 {rep['macro_f1']:.2f} (rule {rep_rule['macro_f1']:.2f}) "
            f"acc {rep['accuracy']:.4f} "
            f"T={temp:.3f} ({train_s:.0f} s)"
        )
    out["ensemble"] = _ensemble_entry(fit_weights(val_cal, yva), val_cal, test_cal, yva, yte)
    equal = {n: 1.0 / len(val_cal) for n in val_cal}
    out["ensemble_equal"] = _ensemble_entry(equal, val_cal, test_cal, yva, yte)
    w_f1, b_f1, _ = fit_weights_f1(
        val_cal, yva, steps=cfg.f1_grid_steps, extra=[out["ensemble"]["weights"]]
    )
    out["ensemble_f1"] = _ensemble_entry(w_f1, val_cal, test_cal, yva, yte, b_f1)
    out.update(_verdict(out))
    sel = out["ensemble_selected"]
    say(
        f"k={h}: ensemble (selected on validation: {sel['variant']}) macro-F1 "
        f"{sel['test_macro_f1']:.2f}; best single {out['best_single']} "
        f"{out['best_single_macro_f1']:.2f}; weights {out[sel['variant'].split('+')[0]]['weights']}"
    )
    return out


def _verdict(out: dict[str, Any]) -> dict[str, Any]:
    """Pick the ensemble variant with the best VALIDATION macro-F1 and compare it on test.

    Variants: each ensemble weighting with the arg-max or with its own fitted rule. The
    single models are compared the same way (their best validation decision), and the
    ensemble is also compared with the best test score of any single model and decision.
    """
    variants = {}
    for name in ("ensemble", "ensemble_equal", "ensemble_f1"):
        e = out[name]
        variants[name] = (e["val_macro_f1"], e["test"]["macro_f1"])
        variants[f"{name}+rule"] = (e["val_macro_f1_rule"], e["test_rule"]["macro_f1"])
    chosen = max(variants, key=lambda v: variants[v][0])  # first on ties: dict order
    singles = {}
    for name, m in out["models"].items():
        singles[name] = (m["val"]["macro_f1"], m["test"]["macro_f1"])
        singles[f"{name}+rule"] = (m["val"]["macro_f1_rule"], m["test_rule"]["macro_f1"])
    best_val_single = max(singles, key=lambda v: singles[v][0])
    best_test_single = max(singles, key=lambda v: singles[v][1])
    ens_test = variants[chosen][1]
    return {
        "ensemble_selected": {
            "variant": chosen,
            "val_macro_f1": variants[chosen][0],
            "test_macro_f1": ens_test,
        },
        "single_selected": {
            "variant": best_val_single,
            "val_macro_f1": singles[best_val_single][0],
            "test_macro_f1": singles[best_val_single][1],
        },
        "best_single": best_test_single,
        "best_single_macro_f1": singles[best_test_single][1],
        "ensemble_beats_best_single": bool(ens_test > singles[best_test_single][1]),
        "ensemble_beats_selected_single": bool(ens_test > singles[best_val_single][1]),
    }


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v if isinstance(v, str | int | float | bool | type(None)) else str(v)


def _summary(v: dict[str, Any]) -> dict[str, float]:
    """Test macro-F1 of every model and ensemble, arg-max and ``+rule``, and the selection."""
    row: dict[str, float] = {}
    for name, m in v["models"].items():
        row[name] = m["test"]["macro_f1"]
        row[f"{name}+rule"] = m["test_rule"]["macro_f1"]
    for name in ("ensemble", "ensemble_equal", "ensemble_f1"):
        row[name] = v[name]["test"]["macro_f1"]
        row[f"{name}+rule"] = v[name]["test_rule"]["macro_f1"]
    row["ensemble_selected"] = v["ensemble_selected"]["test_macro_f1"]
    return row


def run(cfg: Fi2010JobConfig, progress: bool = True) -> dict[str, Any]:
    """Run the benchmark and return the JSON-safe report.

    Args:
        cfg: Settings.
        progress: Print progress lines on stderr.

    Returns:
        ``{"params", "dataset", "horizons": {k: {...}}, "summary", "wall_s", "machine"}``;
        ``summary[k][model]`` is the test macro-F1 (×100) of each model and ensemble.

    Raises:
        FileNotFoundError: the FI-2010 files are missing.
    """
    t_start = time.perf_counter()

    def say(msg: str) -> None:
        if progress:
            _log(msg, t_start)

    import torch

    say("loading FI-2010 fold 1")
    train, test = load_fi2010("train", cfg.root), load_fi2010("test", cfg.root)
    seg_tr, seg_te = stock_segments(train.book), stock_segments(test.book)
    idx_tr = window_indices(train.n, cfg.window, seg_tr)
    tr_idx, va_idx = split_by_time(idx_tr, seg_tr, 0.8)
    tr_idx = _even(tr_idx, cfg.max_train)
    va_idx = _even(va_idx, None if cfg.max_train is None else max(10, cfg.max_train // 4))
    te_idx = _even(window_indices(test.n, cfg.window, seg_te), cfg.max_test)
    data = {
        "train": train,
        "test": test,
        "tr": _split(train, cfg.window, tr_idx),
        "va": _split(train, cfg.window, va_idx),
        "te": _split(test, cfg.window, te_idx),
    }
    load_s = time.perf_counter() - t_start
    say(f"loaded in {load_s:.1f} s: train {len(tr_idx)}, val {len(va_idx)}, test {len(te_idx)}")
    horizons = {str(h): _horizon(cfg, h, data, say) for h in cfg.horizons}
    summary = {k: _summary(v) for k, v in horizons.items()}
    return {
        "name": "fi2010",
        "params": {
            **_json_safe(asdict(cfg)),
            "device": default_device(cfg.device),
            "deeplob_arch": DEEPLOB_SIZES[cfg.deeplob_size],
        },
        "dataset": {
            "name": "FI-2010 Z-score NoAuction fold 1 (train day 1, test day 2)",
            "train_samples": train.n,
            "test_samples": test.n,
            "train_stock_starts": seg_tr.tolist(),
            "test_stock_starts": seg_te.tolist(),
            "split": "per stock by time: first 80 % train, last 20 % validation",
            "dropped_windows_crossing_stocks": {
                "train": int(len(window_indices(train.n, cfg.window)) - len(idx_tr)),
                "test": int(
                    len(window_indices(test.n, cfg.window))
                    - len(window_indices(test.n, cfg.window, seg_te))
                ),
            },
            "load_s": round(load_s, 2),
        },
        "horizons": horizons,
        "summary": summary,
        "wall_s": round(time.perf_counter() - t_start, 2),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": cfg.threads,
            "cuda": torch.cuda.is_available(),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    p = argparse.ArgumentParser(prog="python -m jobs.fi2010", description=__doc__.split("\n")[0])
    d = Fi2010JobConfig()
    p.add_argument("--horizons", type=int, nargs="+", default=list(d.horizons))
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--window", type=int, default=d.window, help="book states per window T")
    p.add_argument("--max-train", type=int, default=None, help="cap on training samples")
    p.add_argument("--max-test", type=int, default=None, help="cap on test samples")
    p.add_argument("--models", nargs="+", default=list(d.models), choices=MODELS)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--trees", type=int, default=d.trees)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--lr-schedule", default=d.lr_schedule, choices=LR_SCHEDULES)
    p.add_argument(
        "--class-weight",
        default=d.class_weight or "none",
        choices=("balanced", "none"),
        help="torch loss class weights",
    )
    p.add_argument(
        "--f1-grid-steps",
        type=int,
        default=d.f1_grid_steps,
        help="macro-F1 ensemble weight grid: multiples of 1/steps",
    )
    p.add_argument("--deeplob-size", default=d.deeplob_size, choices=sorted(DEEPLOB_SIZES))
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--root", default=None, help="FI-2010 folder")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--out", default=None, help="also write the JSON report to this path")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    ns = p.parse_args(argv)
    try:
        cfg = Fi2010JobConfig(
            horizons=tuple(ns.horizons),
            epochs=ns.epochs,
            window=ns.window,
            max_train=ns.max_train,
            max_test=ns.max_test,
            models=tuple(ns.models),
            seed=ns.seed,
            threads=ns.threads,
            trees=ns.trees,
            batch_size=ns.batch_size,
            lr=ns.lr,
            lr_schedule=ns.lr_schedule,
            class_weight=None if ns.class_weight == "none" else ns.class_weight,
            f1_grid_steps=ns.f1_grid_steps,
            deeplob_size=ns.deeplob_size,
            device=ns.device,
            root=ns.root,
        )
        result = run(cfg, progress=not ns.quiet)
    except (ValidationError, FileNotFoundError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2, sort_keys=True)
    if ns.out:
        Path(ns.out).write_text(text + "\n")
    if ns.json:
        print(text)
    else:
        for k, row in result["summary"].items():
            cells = "  ".join(f"{m} {v:.2f}" for m, v in row.items())
            print(f"k={k}: macro-F1  {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
