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
from serve.ensemble import combine
from serve.models import (
    FAMILIES,
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


def train_models(
    cfg: RaydeskConfig,
    console_progress: bool = True,
    dataset: TrainingSet | None = None,
) -> dict[str, ModelRecord]:
    """Build the training set, train every family, save to the registry and promote.

    Validation is the last ``1 - TRAIN_FRACTION`` of the data span (split by time, with the
    training labels purged of any overlap); its accuracy and log loss are in each record's
    ``metrics`` (plus the ensemble's, with ``models.weights``), next to the baselines: the
    accuracy of always predicting the majority class and the log loss of the class priors.

    Args:
        cfg: The config (``models`` section: registry, seeds, sizes; market and features).
        console_progress: Draw progress bars on stderr.
        dataset: A prebuilt training set (default: :func:`build_training_set` of ``cfg``).

    Returns:
        Family → the promoted record.

    Raises:
        ValueError: fewer than :data:`MIN_SAMPLES` training samples.

    Example:
        >>> records = train_models(load_config("configs/local.yaml"))
        >>> records["lgbm"].metrics["val_accuracy"]
    """
    m = cfg.models
    registry = ModelRegistry(m.registry_path)
    with _progress(console_progress) as task:
        if dataset is None:
            dataset = build_training_set(cfg, progress=task("simulate market + features"))
        names, spec_hash = dataset.feature_names, dataset.feature_spec_hash
        train, valid = dataset.split_by_time(TRAIN_FRACTION)
        if len(train) < MIN_SAMPLES:
            raise ValueError(
                f"training set must hold at least {MIN_SAMPLES} samples, was {len(train)}; "
                f"raise models.train_seconds (was {m.train_seconds})"
            )
        data_params = {
            "train_seconds": m.train_seconds,
            "train_seed": m.train_seed,
            "horizon": m.horizon,
            "flat_threshold_bps": m.flat_threshold_bps,
            "batch_interval_ms": cfg.feed.batch_interval_ms,
            "window": cfg.features.window,
            "symbols": [i.symbol for i in cfg.instruments],
            "train_fraction": TRAIN_FRACTION,
        }
        t0 = time.perf_counter()
        fit, stop = train.split_by_time(EARLY_STOP_FRACTION)
        lgbm = LGBMModel.train(
            fit.features,
            fit.labels,
            trees=m.lgbm_trees,
            seed=m.train_seed,
            feature_names=names,
            early_stopping=(stop.features, stop.labels),
            progress=task("train lgbm"),
        )
        t_lgbm = time.perf_counter() - t0
        t0 = time.perf_counter()
        gru = GRUModel.train(
            train.windows,
            train.labels,
            hidden=m.torch_hidden,
            epochs=m.torch_epochs,
            seed=m.train_seed,
            feature_names=names,
            progress=task("train gru"),
        )
        t_gru = time.perf_counter() - t0
    per_model = {
        "lgbm": lgbm.predict_proba(valid.features, None),
        "gru": gru.predict_proba(None, valid.windows),
    }
    ens = combine(per_model, m.weights) if len(valid) else np.empty((0, 3))
    ens_acc, ens_loss = accuracy(ens, valid.labels), log_loss(ens, valid.labels)
    records: dict[str, ModelRecord] = {}
    for family, model, seconds in (("lgbm", lgbm, t_lgbm), ("gru", gru, t_gru)):
        metrics = _metrics(per_model[family], train, valid, seconds)
        metrics["ensemble_val_accuracy"] = None if ens_acc is None else round(ens_acc, 6)
        metrics["ensemble_val_log_loss"] = None if ens_loss is None else round(ens_loss, 6)
        record = save_model(
            registry,
            model,
            metrics=metrics,
            feature_spec_hash=spec_hash,
            data_span_ns=dataset.span_ns,
            extra_params={"data": data_params},
        )
        records[family] = registry.promote(family, record.version)
    return records


def production_models(cfg: RaydeskConfig) -> dict[str, ModelRecord] | None:
    """Return the production record of every family if all exist for the live feature spec.

    Returns None when any family has no production model, its files are missing, or it was
    trained on another feature spec.
    """
    registry = ModelRegistry(cfg.models.registry_path)
    live_hash = live_feature_spec()[1]
    out: dict[str, ModelRecord] = {}
    for family in FAMILIES:
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
