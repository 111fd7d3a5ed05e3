"""Retrain: Ray Tune over each family's hyperparameters, then champion/challenger promotion.

For every family (``retrain.families``, default ``models.families``):

1. **Data.** The first-start training set (:func:`serve.dataset.build_training_set` of the
   config) is split by time exactly as :func:`serve.training.train_models` splits it
   (:func:`serve.training.split_dataset`, labels purged at each cut): *train* (first 80 %),
   *calibration* (next 10 %) and *holdout* (last 10 %). Trials fit on the first 85 % of train
   and report their log loss on its last 15 % (*validation*); no trial sees calibration or
   holdout data.
2. **Search.** One Ray Tune experiment per family (``<storage>/<run id>/tune/<family>``), a
   function trainable per trial (Train V2 style: no Trainer object), a fresh
   :class:`~ray.tune.schedulers.ASHAScheduler` per Tuner on the validation log loss. Boosting
   families report (and checkpoint) every ``retrain.rounds_per_report`` rounds, continuing the
   same booster; torch families once per epoch, continuing the same network and Adam state.
   A trial resumes from its latest checkpoint (``tune.get_checkpoint``).
3. **Resume.** An interrupted run (Ctrl+C, a lost driver) leaves its experiments on disk; the
   same command with ``--resume`` (or ``--run-id`` of that run) restores them with
   ``Tuner.restore(..., resume_unfinished=True, resume_errored=True)``: finished trials are
   kept, unfinished ones continue from their checkpoints.
4. **Decision.** The best trial's best checkpoint is the challenger: its temperature is fitted
   on the calibration part, then it and the production model (the champion) are scored on the
   same holdout. The challenger is saved to the registry (with its holdout metrics, trial
   parameters, feature spec hash and drift reference) and promoted only when its holdout log
   loss is lower than the champion's by more than ``retrain.min_improvement`` (the promotion
   margin: a tie or a gain within the margin keeps the champion, so noise does not churn
   versions; a family without a usable champion is promoted). When any family was promoted,
   the ensemble weights are refitted on the calibration part for the production versions (as
   ``train_models`` does) and written to ``ENSEMBLE.json``.
5. **Hot swap.** Serve model replicas that follow the registry (no pinned version) poll the
   production pointer every ``models.registry_poll_s`` and swap the promoted version in without
   a restart; the ensemble ingress, when it serves the fitted weights (``models.weights:
   null``), reloads ``ENSEMBLE.json`` within the same period.

Everything goes to ``<storage>/<run id>/``: ``config.yaml``, ``tune/<family>/`` and, once done,
``retrain.json`` (per family: champion and challenger versions and holdout scores, the
promotion margin, the decision, trials, best parameters, seconds). The run id is
``retrain-<config hash>-<n>``.

``--if-drift`` first checks drift (:mod:`serve.drift`): feature shift of a ``features.parquet``
(``jobs.build_dataset``) against each production model's stored histograms, and accuracy decay
of a run's journal against the ensemble's holdout score; it retrains only when a threshold is
crossed, and says why either way.

Example:
    python -m jobs.retrain --config configs/local.yaml --families lgbm xgboost --samples 4
    python -m jobs.retrain --config configs/local.yaml --resume
    python -m jobs.retrain --config configs/local.yaml --if-drift --journal runs/<id>/journal.log
    ray job submit --working-dir . -- python -m jobs.retrain --config configs/local.yaml \\
        --storage /shared/runs --json
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
import yaml

from cluster.config import ConfigError, RaydeskConfig, load_config, parse_config
from jobs import run_ids
from jobs.retrain_tune import RetrainInterrupted, Tuned, tune_family
from jobs.run_ids import RUN_ID
from serve.dataset import TrainingSet

RETRAIN_FILE = "retrain.json"


# ---------------------------------------------------------------------------------------------
# the decision
# ---------------------------------------------------------------------------------------------
def holdout_scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Return ``{"n", "log_loss", "accuracy", "macro_f1"}`` of probabilities on labels."""
    from serve.evaluation import macro_f1
    from serve.training import log_loss

    return {
        "n": int(len(labels)),
        "log_loss": round(float(log_loss(probs, labels) or 0.0), 6),
        "accuracy": round(float(np.mean(np.argmax(probs, axis=1) == labels)), 6),
        "macro_f1": round(macro_f1(labels, np.argmax(probs, axis=1), labels=(0, 1, 2)), 6),
    }


def load_champion(
    cfg: RaydeskConfig, registry: Any, family: str
) -> tuple[Any, Any, str | None]:
    """Return ``(model, record, None)`` of the production model of ``family``, or
    ``(None, record_or_None, why)`` when there is none or it cannot score today's data
    (another feature spec or window length, missing files)."""
    from serve.models import load_model
    from serve.registry import RegistryError

    try:
        record = registry.production(family)
    except RegistryError as exc:
        return None, None, f"production pointer unreadable: {exc}"
    if record is None:
        return None, None, "no production model"
    f = cfg.features
    want = {"gru": f.window, "deeplob": f.book_window, "transformer": f.book_window}.get(family)
    if want is not None and record.params.get("window") != want:
        return None, record, (
            f"champion {record.version} window must be {want}, was {record.params.get('window')}"
        )
    try:
        return load_model(record), record, None
    except (RegistryError, ValueError, OSError) as exc:
        return None, record, f"champion {record.version} unusable: {exc}"


def decide(
    tuned: Tuned,
    cfg: RaydeskConfig,
    registry: Any,
    split: tuple[TrainingSet, TrainingSet, TrainingSet],
    dataset: TrainingSet,
    reference: dict[str, Any],
    run_id: str,
) -> dict[str, Any]:
    """Calibrate the challenger, score it and the champion on the holdout, save, maybe promote.

    Returns:
        The family's ``retrain.json`` entry.
    """
    from serve.evaluation import fit_temperature
    from serve.models import save_model
    from serve.training import data_params, model_metrics, predict_family

    train, calib, holdout = split
    family, challenger = tuned.family, tuned.model
    if len(calib):
        challenger.with_temperature(
            fit_temperature(predict_family(challenger, family, calib), calib.labels)
        )
    ch_probs = predict_family(challenger, family, holdout)
    ch_scores = holdout_scores(ch_probs, holdout.labels)
    champ_model, champ_rec, why = load_champion(cfg, registry, family)
    champion: dict[str, Any] | None = None
    if champ_model is not None:
        champion = {
            "version": champ_rec.version,
            "holdout": holdout_scores(predict_family(champ_model, family, holdout), holdout.labels),
        }
    elif champ_rec is not None:
        champion = {"version": champ_rec.version, "holdout": None, "unusable": why}
    metrics = model_metrics(ch_probs, train, holdout, tuned.seconds)
    metrics.update(
        val_macro_f1=ch_scores["macro_f1"],
        n_calibration=len(calib),
        temperature=float(getattr(challenger, "temperature", 1.0)),
        retrain={
            "run_id": run_id,
            "trial": tuned.best,
            "trials": len(tuned.trials),
            "champion": champion,
        },
    )
    record = save_model(
        registry,
        challenger,
        metrics=metrics,
        feature_spec_hash=dataset.feature_spec_hash,
        data_span_ns=dataset.span_ns,
        extra_params={"data": data_params(cfg), "tune": tuned.best["params"]},
        drift_reference=reference,
    )
    champ_loss = (champion or {}).get("holdout") and champion["holdout"]["log_loss"]
    margin = float(cfg.retrain.min_improvement)
    if champion is not None and record.version == champion["version"]:
        promoted, decision = False, "challenger is the champion (same version): nothing to do"
    elif champ_loss is None:
        promoted, decision = True, f"promoted: {why}"
    elif ch_scores["log_loss"] < champ_loss - margin:
        promoted = True
        decision = (f"promoted: challenger holdout log loss {ch_scores['log_loss']:.6f} < "
                    f"champion {champ_loss:.6f} - margin {margin:g}")
    else:
        promoted = False
        decision = (f"kept champion: challenger holdout log loss {ch_scores['log_loss']:.6f} >= "
                    f"champion {champ_loss:.6f} - margin {margin:g}")
    if promoted:
        registry.promote(family, record.version)
    return {
        "champion": champion,
        "challenger": {
            "version": record.version,
            "holdout": ch_scores,
            "temperature": metrics["temperature"],
            "params": tuned.best["params"],
            "trial_id": tuned.best["trial_id"],
            "best_val_log_loss": tuned.best["best_val_log_loss"],
            "best_units": tuned.best["best_units"],
        },
        "promoted": promoted,
        "min_improvement": margin,
        "decision": decision,
        "production": getattr(registry.production(family), "version", None),
        "trials": tuned.trials,
        "n_trials": len(tuned.trials),
        "stopped_early": sum(1 for t in tuned.trials if t["stopped_early"]),
        "restored": tuned.restored,
        "seconds": round(tuned.seconds, 2),
    }


def refit_ensemble(
    cfg: RaydeskConfig,
    registry: Any,
    calib: TrainingSet,
    holdout: TrainingSet,
    run_id: str,
) -> dict[str, Any] | None:
    """Refit the ensemble weights for the production versions, as ``train_models`` does.

    Every family of ``models.families`` with a usable production model predicts the
    calibration part; :func:`serve.evaluation.fit_weights` fits the weights there (equal
    weights without calibration data); the holdout scores the result. Written to the
    registry's ``ENSEMBLE.json``.

    Returns:
        The ``ENSEMBLE.json`` record, None when no family has a usable production model.
    """
    from serve.ensemble import combine
    from serve.evaluation import fit_weights
    from serve.training import predict_family

    per_calib: dict[str, np.ndarray] = {}
    per_hold: dict[str, np.ndarray] = {}
    versions: dict[str, str] = {}
    for family in cfg.models.families:
        model, record, _ = load_champion(cfg, registry, family)
        if model is None:
            continue
        per_calib[family] = predict_family(model, family, calib)
        per_hold[family] = predict_family(model, family, holdout)
        versions[family] = record.version
    if not versions:
        return None
    weights = fit_weights(per_calib, calib.labels) if len(calib) else None
    if not weights or sum(weights.values()) <= 0:
        weights = {f: 1.0 / len(versions) for f in versions}
    return registry.set_ensemble(
        weights,
        versions,
        {
            "fitted_on": "calibration half of validation",
            "n_calibration": len(calib),
            "n_holdout": len(holdout),
            "holdout": holdout_scores(combine(per_hold, weights), holdout.labels),
            "holdout_per_model": {
                f: holdout_scores(p, holdout.labels) for f, p in per_hold.items()
            },
            "retrain_run": run_id,
        },
    )


# ---------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------
def retrain_config(
    cfg: RaydeskConfig,
    *,
    storage: str | Path | None = None,
    families: Sequence[str] | None = None,
    samples: int | None = None,
) -> RaydeskConfig:
    """Return ``cfg`` with this job's overrides (so the run id's hash names what was run).

    Raises:
        ConfigError: an override broke a rule, or a family is not in ``models.families``.
    """
    data = cfg.model_dump(mode="json")
    if storage is not None:
        data["run"]["runs_dir"] = str(storage)
    if families is not None:
        data["retrain"]["families"] = list(families)
    if samples is not None:
        data["retrain"]["samples"] = samples
    out = parse_config(data, "command line")
    outside = sorted(set(target_families(out)) - set(out.models.families))
    if outside:
        raise ConfigError(
            "command line",
            [f"retrain.families must be in models.families {out.models.families}, "
             f"was {outside}"],
        )
    return out


def target_families(cfg: RaydeskConfig) -> list[str]:
    """Return the families to retrain: ``retrain.families`` or ``models.families``."""
    return list(cfg.retrain.families or cfg.models.families)


def run_prefix(cfg: RaydeskConfig) -> str:
    """Return ``retrain-<config hash>-``."""
    return f"retrain-{cfg.hash()}-"


def unfinished_run(cfg: RaydeskConfig, storage: str | Path) -> str | None:
    """Return the newest ``retrain-<config hash>-<n>`` under ``storage`` without
    ``retrain.json`` (an interrupted run), None when there is none."""
    prefix = run_prefix(cfg)
    root = Path(storage)
    runs = [
        (int(p.name[len(prefix):]), p.name)
        for p in (root.glob(f"{prefix}*") if root.is_dir() else [])
        if p.name[len(prefix):].isdigit() and not (p / RETRAIN_FILE).exists()
    ]
    return max(runs)[1] if runs else None


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")
    tmp.replace(path)


def retrain(
    cfg: RaydeskConfig,
    *,
    resume: bool = False,
    run_id: str | None = None,
    dataset: TrainingSet | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
    drift: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Tune every family of ``cfg``, decide champion vs challenger, write ``retrain.json``.

    Args:
        cfg: The config, with this job's overrides applied (:func:`retrain_config`); the
            storage is ``run.runs_dir``.
        resume: Continue the newest unfinished run of this config (an error when none).
        run_id: Use this run (resumed when it holds experiments); default: a new
            ``retrain-<config hash>-<n>``.
        dataset: A prebuilt training set (default: :func:`build_training_set` of ``cfg``).
        progress: Progress lines on stderr.
        callbacks: Extra ``ray.tune.Callback`` objects for new experiments.
        drift: The drift report that triggered this run (recorded in ``retrain.json``).

    Returns:
        The ``retrain.json`` content.

    Raises:
        ConfigError: a bad run id, nothing to resume, or a run of another config.
        RetrainInterrupted: an experiment stopped with unfinished trials (resume it).

    Example:
        >>> cfg = retrain_config(load_config("configs/local.yaml"), families=["lgbm"])
        >>> retrain(cfg)["families"]["lgbm"]["promoted"]  # doctest: +SKIP
    """
    from cluster.topology import connect_ray
    from serve.dataset import build_training_set
    from serve.drift import reference_histograms
    from serve.registry import ModelRegistry
    from serve.training import split_dataset

    def say(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    storage = Path(cfg.run.runs_dir).expanduser().resolve()
    if run_id is None and resume:
        run_id = unfinished_run(cfg, storage)
        if run_id is None:
            raise ConfigError("--resume", [
                f"an unfinished {run_prefix(cfg)}<n> run must exist under {storage}, was none"
            ])
    if run_id is not None:
        if not RUN_ID.match(run_id):
            raise ConfigError("--run-id", [f"run id must match {RUN_ID.pattern}, was {run_id!r}"])
        if (storage / run_id / RETRAIN_FILE).exists():
            raise ConfigError("--run-id", [f"run {run_id} must be unfinished, was finished"])
        old = storage / run_id / "config.yaml"
        if old.exists() and parse_config(yaml.safe_load(old.read_text())).hash() != cfg.hash():
            raise ConfigError("--run-id", [
                f"run {run_id} must have been started with this config (hash {cfg.hash()}), "
                f"was another"
            ])
        (storage / run_id).mkdir(parents=True, exist_ok=True)
    else:
        run_id = run_ids.reserve_run_dir(run_prefix(cfg), storage)
    run_dir = storage / run_id
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    families = target_families(cfg)
    t0 = time.perf_counter()
    if dataset is None:
        step = [0.25]

        def built(fraction: float) -> None:
            if fraction >= step[0]:
                say(f"retrain {run_id}: simulating the training market, {fraction:.0%}")
                step[0] += 0.25

        dataset = build_training_set(cfg, progress=built)
    split = split_dataset(cfg, dataset)
    train, calib, holdout = split
    say(f"retrain {run_id}: {len(train)} train / {len(calib)} calibration / {len(holdout)} "
        f"holdout samples; families {families}, {cfg.retrain.samples} trials each")
    started = connect_ray(cfg)
    try:
        tuned = {}
        for family in families:
            tuned[family] = tune_family(family, cfg, train, run_dir, progress, callbacks)
            say(f"retrain {run_id} {family}: best trial {tuned[family].best['trial_id']} "
                f"val_log_loss {tuned[family].best['best_val_log_loss']:.4f}")
    finally:
        if started:
            import ray

            ray.shutdown()
    registry = ModelRegistry(cfg.models.registry_path)
    reference = reference_histograms(train.features, train.feature_names, cfg.retrain.drift_bins)
    out_families = {}
    for family in families:
        out_families[family] = decide(
            tuned[family], cfg, registry, split, dataset, reference, run_id
        )
        say(f"retrain {run_id} {family}: {out_families[family]['decision']}")
    promoted = [f for f, v in out_families.items() if v["promoted"]]
    ensemble = refit_ensemble(cfg, registry, calib, holdout, run_id) if promoted else None
    result = {
        "run_id": run_id,
        "config_hash": cfg.hash(),
        "registry": str(Path(cfg.models.registry_path).expanduser().resolve()),
        "families": out_families,
        "promoted": promoted,
        "min_improvement": float(cfg.retrain.min_improvement),
        "ensemble": ensemble,
        "data": {
            "n_train": len(train),
            "n_calibration": len(calib),
            "n_holdout": len(holdout),
            "holdout_span_ns": [int(holdout.ts_event.min()), int(holdout.ts_event.max())]
            if len(holdout) else None,
            "holdout_class_counts": holdout.class_counts(),
            "feature_spec_hash": dataset.feature_spec_hash,
        },
        "drift": drift,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    _write_json(run_dir / RETRAIN_FILE, result)
    return result


def drift_check(
    cfg: RaydeskConfig,
    *,
    journal: str | Path | None = None,
    features: str | Path | None = None,
) -> Any:
    """Check the production models of the target families for drift.

    Args:
        cfg: The config (``retrain`` thresholds, ``models`` registry / horizon).
        journal: A run's ``journal.log``: accuracy decay of the served predictions.
        features: A ``features.parquet`` of ``jobs.build_dataset``: feature shift against each
            production model's stored reference.

    Returns:
        A :class:`serve.drift.DriftReport`.

    Raises:
        ConfigError: neither ``journal`` nor ``features`` given, or a file is missing.
    """
    from actors.journal.journal import read_journal
    from serve.drift import (
        DriftThresholds,
        check_drift,
        journal_outcomes,
        read_features_parquet,
    )
    from serve.registry import ModelRegistry

    if journal is None and features is None:
        raise ConfigError("--if-drift", ["--journal or --features must be given, was neither"])
    for flag, path in (("--journal", journal), ("--features", features)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(flag, [f"{flag} must be an existing file, was {str(path)!r}"])
    r = cfg.retrain
    registry = ModelRegistry(cfg.models.registry_path)
    references: dict[str, Any] = {}
    for family in target_families(cfg):
        record = registry.production(family)
        references[family] = record.drift_reference() if record is not None else None
    names = sorted({n for ref in references.values() if ref for n in ref["features"]})
    x = read_features_parquet(features, names) if features is not None and names else None
    outcomes = None
    if journal is not None:
        outcomes = journal_outcomes(
            (rec for _, rec in read_journal(journal)),
            cfg.models.horizon,
            cfg.models.flat_threshold_bps,
        )
    ensemble = registry.ensemble() or {}
    report = check_drift(
        DriftThresholds(
            psi=r.psi_threshold, log_loss_increase=r.log_loss_increase,
            accuracy_drop=r.accuracy_drop, window=r.drift_window,
            min_samples=r.drift_min_samples,
        ),
        references=references,
        features=x,
        names=names,
        outcomes=outcomes,
        score_reference=(ensemble.get("metrics") or {}).get("holdout"),
    )
    if features is not None and not names:
        report.skipped.append("features: no production model has a drift reference")
    return report


def run(
    cfg: RaydeskConfig,
    *,
    resume: bool = False,
    run_id: str | None = None,
    if_drift: bool = False,
    journal: str | Path | None = None,
    features: str | Path | None = None,
    dataset: TrainingSet | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """What ``main`` runs: with ``if_drift``, check drift and retrain only when it is found.

    With drift, the families retrained are those whose feature reference shifted, or every
    target family when the (ensemble's) live accuracy decayed. The drift decision and its
    reasons (or the skipped checks) always go to stderr, ``progress`` or not.

    Returns:
        ``{"retrained": bool, "drift": report or None, "retrain": retrain.json or None}``.
    """

    def say(msg: str) -> None:  # the drift decision and its reasons: always said
        print(msg, file=sys.stderr, flush=True)

    report = None
    if if_drift:
        report = drift_check(cfg, journal=journal, features=features)
        for line in report.skipped:
            say(f"drift check skipped: {line}")
        if not report.drift:
            say("no drift: every check is within its threshold; not retraining")
            return {"retrained": False, "drift": report.to_dict(), "retrain": None}
        for line in report.reasons:
            say(f"drift: {line}")
        decayed = any(line.startswith("accuracy") for line in report.reasons)
        families = target_families(cfg) if decayed else report.families
        cfg = retrain_config(cfg, families=families)
        say(f"retraining {families}")
    out = retrain(
        cfg, resume=resume, run_id=run_id, dataset=dataset, progress=progress,
        callbacks=callbacks, drift=report.to_dict() if report is not None else None,
    )
    return {"retrained": True, "drift": out["drift"], "retrain": out}


def _short(result: dict[str, Any]) -> str:
    if not result["retrained"]:
        return "no drift: not retrained"
    out = result["retrain"]
    lines = [f"run {out['run_id']} ({out['seconds']:.1f} s)"]
    for family, v in out["families"].items():
        champ = v["champion"] or {}
        c_loss = (champ.get("holdout") or {}).get("log_loss")
        lines.append(
            f"{family:11s} champion {champ.get('version', '-')} "
            f"{'-' if c_loss is None else f'{c_loss:.4f}'}  challenger "
            f"{v['challenger']['version']} {v['challenger']['holdout']['log_loss']:.4f}  "
            f"{'PROMOTED' if v['promoted'] else 'kept champion'}  ({v['n_trials']} trials, "
            f"{v['stopped_early']} stopped early, {v['seconds']:.1f} s)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the retrain job; return the exit code (2: bad input, 130: interrupted)."""
    p = argparse.ArgumentParser(prog="python -m jobs.retrain", description=__doc__.split("\n")[0])
    p.add_argument("--config", default=None, help="YAML config (default: configs/local.yaml)")
    p.add_argument("--storage", default=None, help="where runs go (default: run.runs_dir)")
    p.add_argument("--families", nargs="+", default=None, help="default: retrain.families")
    p.add_argument("--samples", type=int, default=None, help="trials per family")
    p.add_argument("--resume", action="store_true", help="continue the newest unfinished run")
    p.add_argument("--run-id", default=None, help="default: retrain-<config hash>-<n>")
    p.add_argument("--if-drift", action="store_true", help="retrain only when drift is found")
    p.add_argument("--journal", default=None, help="--if-drift: a run's journal.log")
    p.add_argument("--features", default=None, help="--if-drift: a features.parquet")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    ns = p.parse_args(argv)
    try:
        cfg = retrain_config(
            load_config(ns.config), storage=ns.storage, families=ns.families, samples=ns.samples
        )
        progress = cfg.run.progress and not ns.no_progress
        result = run(
            cfg, resume=ns.resume, run_id=ns.run_id, if_drift=ns.if_drift, journal=ns.journal,
            features=ns.features, progress=progress,
        )
    except ConfigError as exc:
        print(f"error: invalid {exc.source}", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return 2
    except RetrainInterrupted as exc:
        print(str(exc), file=sys.stderr)
        return 130
    print(json.dumps(result, indent=2, sort_keys=True) if ns.json else _short(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
