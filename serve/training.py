"""Train the ensemble's models from the simulator, save them to the registry and promote them.

:func:`ensure_models` is what the main job calls at start: it returns the production models
when they exist for the live feature spec, and otherwise trains them once ("first start"),
showing a progress bar. :func:`train_models` always trains.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from cluster.config import RaydeskConfig
from serve.dataset import TrainingSet, build_training_set
from serve.drift import reference_histograms
from serve.ensemble import FAMILY_INPUTS, combine
from serve.evaluation import (
    apply_temperature,
    fit_class_bias,
    fit_temperature,
    fit_weights,
    macro_f1,
    predict_with_bias,
)
from serve.lob_models import DeepLOBModel, TransformerModel, XGBModel
from serve.models import (
    GRUModel,
    LGBMModel,
    check_feature_spec,
    live_feature_spec,
    save_model,
)
from serve.registry import ModelRecord, ModelRegistry, RegistryError

#: Fraction of the training span used for fitting; the rest (later in time) validates.
TRAIN_FRACTION = 0.8
#: LightGBM fits on this share of the training span; the rest (later) decides early stopping.
EARLY_STOP_FRACTION = 0.85
#: Fewer training samples than this is an error (raise ``models.train_seconds``).
MIN_SAMPLES = 100


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """Return the share of rows whose arg-max class equals the label (None when empty)."""
    if len(labels) == 0:
        return None
    return float(np.mean(np.argmax(probs, axis=1) == labels))


def log_loss(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-12) -> float | None:
    """Return the mean negative log-likelihood of the labels (None when empty)."""
    if len(labels) == 0:
        return None
    p = np.clip(probs[np.arange(len(labels)), labels], eps, 1.0)
    return float(-np.mean(np.log(p)))


def _metrics(
    probs: np.ndarray, train: TrainingSet, valid: TrainingSet, seconds: float
) -> dict[str, Any]:
    counts = np.asarray(train.class_counts(), dtype=np.float64)
    majority = int(np.argmax(counts))
    base = float(np.mean(valid.labels == majority)) if len(valid) else None
    prior = np.tile((counts + 1.0) / (counts.sum() + 3.0), (len(valid), 1))
    prior_loss = log_loss(prior, valid.labels)
    acc, loss = accuracy(probs, valid.labels), log_loss(probs, valid.labels)
    return {
        "val_accuracy": None if acc is None else round(acc, 6),
        "val_log_loss": None if loss is None else round(loss, 6),
        "val_baseline_accuracy": None if base is None else round(base, 6),
        "val_prior_log_loss": None if prior_loss is None else round(prior_loss, 6),
        "n_train": len(train),
        "n_val": len(valid),
        "train_class_counts": train.class_counts(),
        "val_class_counts": valid.class_counts(),
        "train_time_s": round(seconds, 3),
    }


def model_metrics(
    probs: np.ndarray, train: TrainingSet, holdout: TrainingSet, seconds: float
) -> dict[str, Any]:
    """Return a model record's metrics: holdout accuracy / log loss (``val_*``), the baselines
    (majority-class accuracy, prior log loss), sample and class counts, training seconds."""
    return _metrics(probs, train, holdout, seconds)


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, float], Callable[[float], None]]]:
    """Yield ``task(description, total) -> update(fraction)`` drawing rich bars on stderr."""
    with Progress(
        TextColumn("[bold]{task.description:<28}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    ) as prog:

        def task(description: str, total: float = 1.0) -> Callable[[float], None]:
            tid = prog.add_task(description, total=total)

            def update(fraction: float) -> None:
                prog.update(tid, completed=min(1.0, fraction) * total)

            return update

        yield task


def _train_family(
    family: str,
    cfg: RaydeskConfig,
    train: TrainingSet,
    task: Callable[[str, float], Callable[[float], None]],
) -> Any:
    """Train one family on ``train`` (its later part decides early stopping / best epoch)."""
    m = cfg.models
    names = train.feature_names
    fit, stop = train.split_by_time(EARLY_STOP_FRACTION)
    progress = task(f"train {family}")
    if family == "lgbm":
        return LGBMModel.train(
            fit.features, fit.labels, trees=m.lgbm_trees, seed=m.train_seed,
            feature_names=names, early_stopping=(stop.features, stop.labels), progress=progress,
        )
    if family == "xgboost":
        model = XGBModel.train(
            fit.features, fit.labels, trees=m.xgb_trees, seed=m.train_seed, feature_names=names,
            early_stopping=(stop.features, stop.labels),
        )
        progress(1.0)
        return model
    if family == "gru":
        return GRUModel.train(
            train.windows, train.labels, hidden=m.torch_hidden, epochs=m.torch_epochs,
            seed=m.train_seed, feature_names=names, progress=progress,
        )
    if family == "deeplob":
        w = m.lob_width
        return DeepLOBModel.train(
            fit.books, fit.labels, epochs=m.torch_epochs, seed=m.train_seed,
            validation=(stop.books, stop.labels), device="cpu", progress=progress,
            conv_channels=w, inception_channels=2 * w, lstm=2 * w,
        )
    if family == "transformer":
        return TransformerModel.train(
            fit.books, fit.labels, epochs=m.torch_epochs, seed=m.train_seed,
            validation=(stop.books, stop.labels), device="cpu", progress=progress,
            d_model=m.lob_width, heads=4, layers=2,
        )
    raise ValueError(f"family must be one of {list(FAMILY_INPUTS)}, was {family!r}")


def predict_family(model: Any, family: str, data: TrainingSet) -> np.ndarray:
    """Return ``(N, 3)`` probabilities of ``model`` (of ``family``) on ``data``."""
    kind = FAMILY_INPUTS[family]
    if kind == "features":
        return model.predict_proba(data.features, None)
    return model.predict_proba(None, data.windows if kind == "windows" else data.books)


def _scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    if len(labels) == 0:
        return {"accuracy": None, "log_loss": None, "macro_f1": None}
    return {
        "accuracy": round(float(np.mean(np.argmax(probs, axis=1) == labels)), 6),
        "log_loss": round(float(log_loss(probs, labels) or 0.0), 6),
        "macro_f1": round(macro_f1(labels, np.argmax(probs, axis=1), labels=(0, 1, 2)), 6),
    }


@dataclass
class FittedEnsemble:
    """What :func:`fit_ensemble` returns.

    Attributes:
        models: Family → calibrated model.
        weights: Family → ensemble weight fitted on the calibration data.
        seconds: Family → training wall time, s.
        holdout_probs: Family → ``(N, 3)`` probabilities on the holdout data.
        report: ``{"models": {family: scores}, "ensemble": scores,
            "ensemble_equal_weights": scores, "best_single": family, "weights": ...,
            "temperatures": ..., "n": {"train", "calibration", "holdout"}}`` where scores are
            holdout accuracy, log loss and macro-F1.
    """

    models: dict[str, Any]
    weights: dict[str, float]
    seconds: dict[str, float]
    holdout_probs: dict[str, np.ndarray]
    report: dict[str, Any]


def fit_ensemble(
    cfg: RaydeskConfig,
    train: TrainingSet,
    calib: TrainingSet,
    holdout: TrainingSet,
    task: Callable[[str, float], Callable[[float], None]] | None = None,
) -> FittedEnsemble:
    """Train every family of ``models.families``, calibrate, fit weights and score on holdout.

    ``train`` fits the models (its last ``1 - EARLY_STOP_FRACTION`` picks early stopping /
    the best epoch); ``calib`` fits each model's temperature, then the ensemble weights
    (log loss over the simplex); ``holdout`` is only scored. The three must be disjoint in time.

    Args:
        cfg: The config (``models`` section).
        train: Training samples.
        calib: Calibration samples (may be empty: temperature 1, equal weights).
        holdout: Holdout samples.
        task: Progress factory (``task(description, total) -> update(fraction)``).
    """
    task = task or (lambda _d, _t=1.0: lambda _f: None)
    models: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for family in cfg.models.families:
        t0 = time.perf_counter()
        models[family] = _train_family(family, cfg, train, task)
        seconds[family] = time.perf_counter() - t0
    per_calib: dict[str, np.ndarray] = {}
    for family, model in models.items():
        probs = predict_family(model, family, calib)
        if len(calib):
            t = fit_temperature(probs, calib.labels)
            model.with_temperature(t)
            # softmax(log p / T) is what the tempered model predicts: no second pass over calib
            probs = apply_temperature(probs, t)
        per_calib[family] = probs
    weights = fit_weights(per_calib, calib.labels) if len(calib) else None
    if not weights or sum(weights.values()) <= 0:
        weights = {f: 1.0 / len(models) for f in models}
    per_model = {f: predict_family(mod, f, holdout) for f, mod in models.items()}
    y = holdout.labels
    equal = {f: 1.0 for f in models}
    # each model and ensemble, on holdout, by arg-max and by its own macro-F1 decision rule
    # (class biases fitted on the calibration part): like for like
    calib_of = {**per_calib}
    hold_of = {**per_model}
    for name, w in (("ensemble", weights), ("ensemble_equal_weights", equal)):
        calib_of[name] = combine(per_calib, w) if len(calib) else np.empty((0, 3))
        hold_of[name] = combine(per_model, w) if len(y) else np.empty((0, 3))
    scores = {}
    for name, probs in hold_of.items():
        scores[name] = _scores(probs, y)
        rule = fit_class_bias(calib_of[name], calib.labels) if len(calib) else np.zeros(3)
        scores[name]["macro_f1_rule"] = (
            round(macro_f1(y, predict_with_bias(probs, rule), labels=(0, 1, 2)), 6)
            if len(y) else None
        )
    singles = {f: scores[f] for f in models}
    report = {
        "models": singles,
        "ensemble": scores["ensemble"],
        "ensemble_equal_weights": scores["ensemble_equal_weights"],
        "best_single": max(singles, key=lambda f: singles[f]["macro_f1"] or 0.0),
        "best_single_rule": max(singles, key=lambda f: singles[f]["macro_f1_rule"] or 0.0),
        "weights": dict(weights),
        "temperatures": {f: float(getattr(m, "temperature", 1.0)) for f, m in models.items()},
        "train_seconds": {f: round(v, 3) for f, v in seconds.items()},
        "n": {"train": len(train), "calibration": len(calib), "holdout": len(holdout)},
        "holdout_class_counts": holdout.class_counts(),
    }
    return FittedEnsemble(models, weights, seconds, per_model, report)


def split_dataset(
    cfg: RaydeskConfig, dataset: TrainingSet
) -> tuple[TrainingSet, TrainingSet, TrainingSet]:
    """Split ``dataset`` by time into ``(train, calibration, holdout)``, labels purged at cuts.

    The first :data:`TRAIN_FRACTION` of the span trains; the rest is halved in time into the
    calibration part and the holdout (the latest data). ``jobs.retrain`` splits the same way,
    so its holdout is the one :func:`train_models` scored on.

    Raises:
        ValueError: fewer than :data:`MIN_SAMPLES` training samples.
    """
    train, valid = dataset.split_by_time(TRAIN_FRACTION)
    if len(train) < MIN_SAMPLES:
        raise ValueError(
            f"training set must hold at least {MIN_SAMPLES} samples, was {len(train)}; "
            f"raise models.train_seconds (was {cfg.models.train_seconds})"
        )
    calib, holdout = valid.split_by_time(0.5) if len(valid) >= 2 else (valid, valid)
    return train, calib, holdout


def data_params(cfg: RaydeskConfig) -> dict[str, Any]:
    """Return the settings the training data is a function of (recorded with each model)."""
    m = cfg.models
    return {
        "train_seconds": m.train_seconds,
        "train_seed": m.train_seed,
        "horizon": m.horizon,
        "flat_threshold_bps": m.flat_threshold_bps,
        "batch_interval_ms": cfg.feed.batch_interval_ms,
        "window": cfg.features.window,
        "book_window": cfg.features.book_window,
        "symbols": [i.symbol for i in cfg.instruments],
        "train_fraction": TRAIN_FRACTION,
    }


def train_models(
    cfg: RaydeskConfig,
    console_progress: bool = True,
    dataset: TrainingSet | None = None,
) -> dict[str, ModelRecord]:
    """Build the training set, train every family, calibrate, fit weights, save and promote.

    The data is split by time (labels purged at each cut): the first ``TRAIN_FRACTION``
    trains (its last ``1 - EARLY_STOP_FRACTION`` decides early stopping and the best torch
    epoch); the validation rest is halved in time. The first half (*calibration*) fits each
    model's softmax temperature and then the ensemble weights (log loss over the simplex,
    :func:`serve.evaluation.fit_weights`); the second half (*holdout*) scores every model and
    the ensemble, so no reported number is on data a fit has seen. Each record's ``metrics``
    hold its holdout accuracy / log loss / macro-F1, the ensemble's, the fitted weights and the
    baselines (majority-class accuracy, prior log loss). The weights and versions go into the
    registry's ``ENSEMBLE.json``, which ``models.weights: null`` serves.

    Args:
        cfg: The config (``models`` section: families, registry, seeds, sizes).
        console_progress: Draw progress bars on stderr.
        dataset: A prebuilt training set (default: :func:`build_training_set` of ``cfg``).

    Returns:
        Family → the promoted record.

    Raises:
        ValueError: fewer than :data:`MIN_SAMPLES` training samples.

    Example:
        >>> records = train_models(load_config("configs/local.yaml"))
        >>> records["lgbm"].metrics["val_macro_f1"]
    """
    m = cfg.models
    registry = ModelRegistry(m.registry_path)
    with _progress(console_progress) as task:
        if dataset is None:
            dataset = build_training_set(cfg, progress=task("simulate market + features"))
        spec_hash = dataset.feature_spec_hash
        train, calib, holdout = split_dataset(cfg, dataset)
        fitted = fit_ensemble(cfg, train, calib, holdout, task)
    reference = reference_histograms(
        train.features, train.feature_names, cfg.retrain.drift_bins
    )
    models, weights, per_model = fitted.models, fitted.weights, fitted.holdout_probs
    ens_scores = fitted.report["ensemble"]
    records: dict[str, ModelRecord] = {}
    for family, model in models.items():
        metrics = _metrics(per_model[family], train, holdout, fitted.seconds[family])
        metrics["val_macro_f1"] = fitted.report["models"][family]["macro_f1"]
        metrics["n_calibration"] = len(calib)
        metrics["temperature"] = float(getattr(model, "temperature", 1.0))
        metrics["ensemble_val_accuracy"] = ens_scores["accuracy"]
        metrics["ensemble_val_log_loss"] = ens_scores["log_loss"]
        metrics["ensemble_val_macro_f1"] = ens_scores["macro_f1"]
        metrics["ensemble_weights"] = dict(weights)
        record = save_model(
            registry,
            model,
            metrics=metrics,
            feature_spec_hash=spec_hash,
            data_span_ns=dataset.span_ns,
            extra_params={"data": data_params(cfg)},
            drift_reference=reference,
        )
        records[family] = registry.promote(family, record.version)
    registry.set_ensemble(
        weights,
        {f: r.version for f, r in records.items()},
        {
            "fitted_on": "calibration half of validation",
            "n_calibration": len(calib),
            "n_holdout": len(holdout),
            "holdout": ens_scores,
            "holdout_per_model": fitted.report["models"],
        },
    )
    return records


def production_models(cfg: RaydeskConfig) -> dict[str, ModelRecord] | None:
    """Return the production record of every family if all exist for the live feature spec.

    Returns None when any family of ``models.families`` has no production model, its files
    are missing, or it was trained on another feature spec or window length.
    """
    registry = ModelRegistry(cfg.models.registry_path)
    live_hash = live_feature_spec()[1]
    f = cfg.features
    windows = {"gru": f.window, "deeplob": f.book_window, "transformer": f.book_window}
    out: dict[str, ModelRecord] = {}
    for family in cfg.models.families:
        try:
            record = registry.production(family)
        except RegistryError:
            return None
        if record is None or not all((record.path / f).is_file() for f in record.files):
            return None
        try:
            check_feature_spec(record, live_hash)
        except ValueError:
            return None
        want = windows.get(family)
        if want is not None and record.params.get("window") != want:
            return None  # trained on another window length: its inputs no longer fit
        out[family] = record
    return out


def ensure_models(cfg: RaydeskConfig, console_progress: bool = True) -> dict[str, ModelRecord]:
    """Return the production models, training them first when missing or stale.

    "Stale" means trained on a feature spec other than the live ``FEATURE_SPEC_HASH``.

    Args:
        cfg: The config.
        console_progress: Draw progress bars on stderr while training.

    Returns:
        Family → production record.

    Example:
        >>> ensure_models(load_config("configs/local.yaml"))["gru"].version
    """
    existing = production_models(cfg)
    if existing is not None:
        return existing
    return train_models(cfg, console_progress=console_progress)


def summarise(records: dict[str, ModelRecord]) -> dict[str, dict[str, Any]]:
    """Return a JSON-ready summary: family → version, path, metrics, spec hash, created."""
    out: dict[str, dict[str, Any]] = {}
    for family, r in records.items():
        metrics = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in r.metrics.items()
        }
        out[family] = {
            "version": r.version,
            "path": str(r.path),
            "feature_spec_hash": r.feature_spec_hash,
            "created_at": r.created_at,
            "code_version": r.code_version,
            "metrics": metrics,
        }
    return out
