"""Ray Tune side of ``jobs.retrain``: search spaces, the function trainable, progress, one
family's experiment (new or restored).

A trial grows one model report by report: boosting families (``lgbm``, ``xgboost``) add
``retrain.rounds_per_report`` rounds to the same booster per report, torch families one epoch
to the same network and Adam state (the model classes' ``init_model`` / ``init`` knobs). Each
report carries the validation log loss (:data:`METRIC`, what ASHA compares) and a checkpoint
with the current model (to continue from) and the best one so far (``best/``), so a trial
restored by ``Tuner.restore`` continues where its last checkpoint left off
(``tune.get_checkpoint``) and the best model is never lost to a later, worse report.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune import Callback

from cluster.config import RaydeskConfig
from serve.dataset import TrainingSet
from serve.ensemble import FAMILY_INPUTS

#: What ASHA minimises: the trial's log loss on the validation part, at this report.
METRIC = "val_log_loss"
BOOSTING = ("lgbm", "xgboost")


class RetrainInterrupted(RuntimeError):
    """The Tune experiment of a family stopped before all its trials finished."""

    def __init__(self, run_id: str, family: str, unfinished: int) -> None:
        self.run_id = run_id
        super().__init__(
            f"retrain {run_id}: {family} experiment interrupted with {unfinished} trial(s) "
            f"unfinished; resume with --resume (or --run-id {run_id})"
        )


# ---------------------------------------------------------------------------------------------
# search spaces and trials
# ---------------------------------------------------------------------------------------------
def _uniform_int(lo: int, hi: int) -> Any:
    from ray import tune

    return lo if lo == hi else tune.randint(lo, hi + 1)


def _log_uniform(lo: float, hi: float) -> Any:
    from ray import tune

    return lo if lo == hi else tune.loguniform(lo, hi)


def search_space(family: str, cfg: RaydeskConfig) -> dict[str, Any]:
    """Return the Tune ``param_space`` of ``family`` from the ``retrain`` section.

    * ``lgbm``: ``trees`` (rounds), ``learning_rate``, ``num_leaves``;
    * ``xgboost``: ``trees``, ``learning_rate`` (eta), ``max_depth``;
    * ``gru``: ``epochs``, ``lr``, ``hidden``;
    * ``deeplob`` / ``transformer``: ``epochs``, ``lr``, ``width`` (``models.lob_width``'s
      meaning).

    Raises:
        ValueError: an unknown family, or a transformer width not divisible by its 4 heads.
    """
    from ray import tune

    r = cfg.retrain
    if family in BOOSTING:
        space = {
            "trees": _uniform_int(*r.boost_rounds),
            "learning_rate": _log_uniform(*r.boost_learning_rate),
        }
        if family == "lgbm":
            space["num_leaves"] = _uniform_int(*r.lgbm_leaves)
        else:
            space["max_depth"] = _uniform_int(*r.xgb_depth)
        return space
    if family not in FAMILY_INPUTS:
        raise ValueError(f"family must be one of {list(FAMILY_INPUTS)}, was {family!r}")
    space = {"epochs": _uniform_int(*r.torch_epochs), "lr": _log_uniform(*r.torch_lr)}
    sizes = r.gru_hidden if family == "gru" else r.lob_width
    if family == "transformer" and any(w % 4 for w in sizes):
        raise ValueError(f"retrain.lob_width must be multiples of 4 (heads), was {sizes}")
    space["hidden" if family == "gru" else "width"] = (
        sizes[0] if len(sizes) == 1 else tune.choice(list(sizes))
    )
    return space


def max_reports(family: str, cfg: RaydeskConfig) -> int:
    """Return the most reports a trial of ``family`` makes (ASHA's ``max_t``)."""
    r = cfg.retrain
    if family in BOOSTING:
        return math.ceil(r.boost_rounds[1] / r.rounds_per_report)
    return r.torch_epochs[1]


@dataclass(frozen=True)
class FamilyData:
    """What every trial of one family trains and validates on (in the object store once).

    Attributes:
        family: Model family.
        x_fit: The family's input on the fit part (features, windows or books).
        y_fit: Fit labels.
        x_valid: The input on the validation part (later in time).
        y_valid: Validation labels.
        feature_names: Feature names (the feature-vector and window families).
        seed: ``models.train_seed``.
        rounds_per_report: Boosting rounds between reports.
    """

    family: str
    x_fit: np.ndarray
    y_fit: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    feature_names: tuple[str, ...]
    seed: int
    rounds_per_report: int


def family_data(family: str, train: TrainingSet, cfg: RaydeskConfig) -> FamilyData:
    """Split ``train`` into fit / validation (``EARLY_STOP_FRACTION``) for ``family``."""
    from serve.training import EARLY_STOP_FRACTION

    fit, valid = train.split_by_time(EARLY_STOP_FRACTION)
    attr = FAMILY_INPUTS[family]
    return FamilyData(
        family=family,
        x_fit=getattr(fit, attr),
        y_fit=fit.labels,
        x_valid=getattr(valid, attr),
        y_valid=valid.labels,
        feature_names=train.feature_names,
        seed=cfg.models.train_seed,
        rounds_per_report=cfg.retrain.rounds_per_report,
    )


def _fit_step(
    data: FamilyData, config: dict[str, Any], model: Any, done: int, step: int
) -> Any:
    """Train ``step`` more rounds / epochs of a trial, continuing ``model`` (None: fresh)."""
    from serve.lob_models import DeepLOBModel, TransformerModel, XGBModel
    from serve.models import GRUModel, LGBMModel

    f, x, y, seed = data.family, data.x_fit, data.y_fit, data.seed
    if f == "lgbm":
        return LGBMModel.train(
            x, y, trees=step, seed=seed, feature_names=data.feature_names, init_model=model,
            overrides={"learning_rate": config["learning_rate"],
                       "num_leaves": int(config["num_leaves"])},
        )
    if f == "xgboost":
        return XGBModel.train(
            x, y, trees=step, seed=seed, feature_names=data.feature_names, init_model=model,
            overrides={"eta": config["learning_rate"], "max_depth": int(config["max_depth"])},
        )
    if f == "gru":
        return GRUModel.train(
            x, y, hidden=int(config["hidden"]), epochs=step, seed=seed, lr=config["lr"],
            feature_names=data.feature_names, init=model, epoch_offset=done,
        )
    w = int(config["width"])
    arch = (
        {"conv_channels": w, "inception_channels": 2 * w, "lstm": 2 * w}
        if f == "deeplob"
        else {"d_model": w, "heads": 4, "layers": 2}
    )
    cls = DeepLOBModel if f == "deeplob" else TransformerModel
    return cls.train(
        x, y, epochs=step, seed=seed, lr=config["lr"], device="cpu", init=model,
        epoch_offset=done, **arch,
    )


def _predict(family: str, model: Any, x: np.ndarray) -> np.ndarray:
    if FAMILY_INPUTS[family] == "features":
        return model.predict_proba(x, None)
    return model.predict_proba(None, x)


def _write_model(model: Any, folder: Path) -> None:
    folder.mkdir(parents=True)
    for name, blob in model.to_files().items():
        (folder / name).write_bytes(blob)
    (folder / "params.json").write_text(json.dumps(model.params(), sort_keys=True))
    if getattr(model, "optimizer_state", None) is not None:
        import torch

        torch.save(model.optimizer_state, folder / "optimizer.pt")


def _read_model(family: str, folder: Path) -> Any:
    from serve.models import model_classes

    params = json.loads((folder / "params.json").read_text())
    files = {
        p.name: p.read_bytes()
        for p in folder.iterdir()
        if p.name not in ("params.json", "optimizer.pt")
    }
    model = model_classes()[family].from_files(files, params)
    if (folder / "optimizer.pt").is_file():
        import torch

        model.optimizer_state = torch.load(folder / "optimizer.pt", weights_only=True)
    return model


def train_trial(config: dict[str, Any], data: FamilyData) -> None:
    """Tune function trainable: grow one trial report by report, checkpointing each report.

    Each report trains ``rounds_per_report`` boosting rounds or one epoch more, then reports
    ``val_log_loss`` / ``val_accuracy`` on the validation part, the best so far
    (``best_val_log_loss`` at ``best_units``), ``units_done`` and ``resumed_from`` (the units
    restored from a checkpoint at this trial's start; 0 for a fresh start), with a checkpoint
    holding the current model (to continue) and the best one (``best/``).
    """
    from ray import tune

    from serve.training import log_loss

    boosting = data.family in BOOSTING
    total = int(config["trees"] if boosting else config["epochs"])
    state: dict[str, Any] = {"units_done": 0, "best_val_log_loss": math.inf, "best_units": 0}
    model, best = None, None
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as d:
            state = json.loads((Path(d) / "state.json").read_text())
            model = _read_model(data.family, Path(d) / "current")
            best = _read_model(data.family, Path(d) / "best")
    resumed_from = int(state["units_done"])
    while state["units_done"] < total:
        step = min(data.rounds_per_report, total - state["units_done"]) if boosting else 1
        model = _fit_step(data, config, model, state["units_done"], step)
        state["units_done"] += step
        probs = _predict(data.family, model, data.x_valid)
        loss = float(log_loss(probs, data.y_valid) or 0.0)
        if loss < state["best_val_log_loss"]:
            state.update(best_val_log_loss=loss, best_units=state["units_done"])
            best = model
        acc = float(np.mean(np.argmax(probs, axis=1) == data.y_valid))
        with tempfile.TemporaryDirectory(prefix="retrain-ckpt-") as tmp:
            _write_model(model, Path(tmp) / "current")
            _write_model(best, Path(tmp) / "best")
            (Path(tmp) / "state.json").write_text(json.dumps(state))
            tune.report(
                {
                    METRIC: loss,
                    "val_accuracy": acc,
                    "best_val_log_loss": state["best_val_log_loss"],
                    "best_units": state["best_units"],
                    "units_done": state["units_done"],
                    "units_total": total,
                    "resumed_from": resumed_from,
                },
                checkpoint=tune.Checkpoint.from_directory(tmp),
            )


class TuneProgress(Callback):
    """Tune callback printing trial progress on stderr (picklable: Tune stores it with the
    experiment and restores it on resume).

    Args:
        run_id: Shown on every line.
        family: The experiment's family.
        enabled: Print at all.
        every_s: Least seconds between two result lines (completions always print).
    """

    def __init__(self, run_id: str, family: str, enabled: bool, every_s: float = 2.0) -> None:
        super().__init__()
        self.run_id, self.family, self.enabled, self.every_s = run_id, family, enabled, every_s
        self._last = 0.0

    def _say(self, msg: str) -> None:
        if self.enabled:
            print(f"retrain {self.run_id} {self.family}: {msg}", file=sys.stderr, flush=True)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict,
                        **info: Any) -> None:
        """Print one line per trial result, at most every ``every_s``."""
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        self._say(
            f"{done}/{len(trials)} trials done; {trial.trial_id} {result.get('units_done')}/"
            f"{result.get('units_total')} {METRIC}={result.get(METRIC, math.nan):.4f} "
            f"(best {result.get('best_val_log_loss', math.nan):.4f})"
        )

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                          **info: Any) -> None:
        """Print the finished trial's best score."""
        last = trial.last_result or {}
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials) + 1
        self._say(
            f"trial {trial.trial_id} done ({min(done, len(trials))}/{len(trials)}): "
            f"{last.get('units_done')}/{last.get('units_total')} units, best "
            f"{METRIC} {last.get('best_val_log_loss', math.nan):.4f}"
        )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Print the failed trial."""
        where = getattr(trial, "error_file", None) or "see the Tune logs"
        self._say(f"trial {trial.trial_id} failed: {where}")



# ---------------------------------------------------------------------------------------------
# the tune phase
# ---------------------------------------------------------------------------------------------
@dataclass
class Tuned:
    """The outcome of one family's experiment.

    Attributes:
        family: Model family.
        model: The best trial's best checkpointed model (uncalibrated).
        best: ``{"trial_id", "params", "best_val_log_loss", "best_units"}`` of that trial.
        trials: One row per trial: id, params, best validation log loss, units done / total,
            stopped early (by ASHA), error.
        restored: The experiment was restored from disk (a resumed run).
        seconds: Wall time of this session's ``fit``.
    """

    family: str
    model: Any
    best: dict[str, Any]
    trials: list[dict[str, Any]]
    restored: bool
    seconds: float


def tune_family(
    family: str,
    cfg: RaydeskConfig,
    train: TrainingSet,
    run_dir: Path,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> Tuned:
    """Run (or resume) the Tune experiment of ``family`` under ``run_dir/tune/<family>``.

    Args:
        family: Model family.
        cfg: The config (``retrain``, ``models.train_seed``).
        train: The training part (fit + validation) of the split.
        run_dir: The run's folder (absolute; shared storage on a multi-node cluster).
        progress: Print trial progress on stderr.
        callbacks: Extra ``ray.tune.Callback`` objects (stored with a new experiment).

    Raises:
        RetrainInterrupted: the experiment stopped with trials unfinished.
        RuntimeError: every trial failed.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    r = cfg.retrain
    exp = run_dir / "tune" / family
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, data=family_data(family, train, cfg)),
        {"cpu": r.cpus_per_trial},
    )
    restored = tune.Tuner.can_restore(str(exp))
    if restored:
        tuner = tune.Tuner.restore(
            str(exp), trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        max_t = max_reports(family, cfg)
        tuner = tune.Tuner(
            trainable,
            param_space=search_space(family, cfg),
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode="min",
                scheduler=ASHAScheduler(  # a fresh scheduler per Tuner
                    time_attr="training_iteration",
                    max_t=max_t,
                    grace_period=min(r.grace_period, max_t),
                    reduction_factor=r.reduction_factor,
                ),
                search_alg=BasicVariantGenerator(
                    random_state=r.seed + list(FAMILY_INPUTS).index(family)
                ),
                num_samples=r.samples,
                max_concurrent_trials=r.max_concurrent_trials or None,
                reuse_actors=True,  # a trial actor's imports (torch, boosters) cost seconds
            ),
            run_config=tune.RunConfig(
                name=family,
                storage_path=str(run_dir / "tune"),
                verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[TuneProgress(run_dir.name, family, progress), *callbacks],
            ),
        )
    # Tune's snapshot after every checkpoint is what keeps a restore consistent with
    # num_to_keep=1; its "snapshotting triggered multiple times" warning is noise here
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    t0 = time.perf_counter()
    with redirect_stdout(sys.stderr):  # Tune prints its experiment header: keep stdout clean
        grid = tuner.fit()
    seconds = time.perf_counter() - t0
    results = [grid[i] for i in range(len(grid))]
    # an interrupted fit (Ctrl+C / SIGINT) returns normally and its in-memory trials may read
    # TERMINATED: the experiment state it saved on the way out is what a restore sees
    saved = tune.ExperimentAnalysis(str(exp)).trials
    unfinished = sum(t.status not in ("TERMINATED", "ERROR") for t in saved)
    if unfinished:
        raise RetrainInterrupted(run_dir.name, family, unfinished)
    rows = []
    for res in results:
        m = res.metrics or {}
        rows.append({
            "trial_id": m.get("trial_id"),
            "params": dict(res.config or {}),
            "best_val_log_loss": m.get("best_val_log_loss"),
            "best_units": m.get("best_units"),
            "units_done": m.get("units_done"),
            "units_total": m.get("units_total"),
            "stopped_early": bool(m) and m.get("units_done", 0) < m.get("units_total", 0),
            "resumed_from": m.get("resumed_from"),
            "error": None if res.error is None else str(res.error).splitlines()[0][:300],
        })
    ok = [(res, row) for res, row in zip(results, rows, strict=True)
          if res.error is None and res.checkpoint is not None and row["best_val_log_loss"]]
    if not ok:
        raise RuntimeError(f"retrain {run_dir.name}: every {family} trial failed: {rows[:1]}")
    res, row = min(ok, key=lambda p: p[1]["best_val_log_loss"])
    with res.checkpoint.as_directory() as d:
        model = _read_model(family, Path(d) / "best")
    best = {k: row[k] for k in ("trial_id", "params", "best_val_log_loss", "best_units")}
    return Tuned(family, model, best, rows, restored, seconds)
