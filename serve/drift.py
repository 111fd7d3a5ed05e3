"""Drift monitoring, pure (no Ray): feature distribution shift and live accuracy decay.

**Feature shift.** When a model is trained (:func:`serve.training.train_models`) or retrained
(``jobs.retrain``), the histograms of its training features are stored with the version
(``drift_reference.json``, :func:`reference_histograms`): per feature, the interior bin edges at
the training quantiles and the share of training samples in each bin. Newer features (a
``features.parquet`` of ``jobs.build_dataset``, or any ``(N, F)`` array) are binned with the
same edges (:func:`bin_shares`) and compared:

* PSI (population stability index) ``Σ (live − ref) · ln(live / ref)`` over the bins, shares
  clipped at :data:`EPS` (:func:`psi`); the usual reading is < 0.1 stable, 0.1–0.25 moderate,
  > 0.25 a real shift;
* a binned Kolmogorov–Smirnov distance ``max |CDF_live − CDF_ref|`` at the edges
  (:func:`ks_binned`), reported next to it.

**Accuracy decay.** A run's journal holds, per step, a ``MarketMarks`` record (the mid of every
symbol) and then one ``DecisionMade`` record per decision point with the ensemble's probabilities
(``probs``: down, flat, up). The realised class of a decision is the mid move ``horizon`` steps
later on the same symbol, labelled as in training (:func:`serve.dataset.label_returns`:
down / up beyond ``±flat_threshold_bps``, else flat) (:func:`journal_outcomes`). Rolling
accuracy and log loss of the served probabilities over windows of decisions
(:func:`accuracy_decay`) are compared with the ensemble's recorded holdout score (the registry's
``ENSEMBLE.json``). Decisions without model versions (fallbacks, invalid books) and decisions
whose label runs past the journal's end are left out and counted.

:func:`check_drift` applies the thresholds and returns a :class:`DriftReport` with the reasons.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actors.core.errors import ValidationError
from serve.dataset import label_returns

#: Format version of a drift reference.
REFERENCE_VERSION = 1
#: Smallest bin share used in PSI (an empty bin would make it infinite).
EPS = 1e-4
#: Journal record types read for accuracy decay.
MARKS_TYPE = "MarketMarks"
DECISION_TYPE = "DecisionMade"


# ---------------------------------------------------------------------------------------------
# feature shift
# ---------------------------------------------------------------------------------------------
def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Return the distinct interior edges at the ``1/bins … (bins−1)/bins`` quantiles.

    Non-finite values are ignored; repeated quantiles (a discrete feature) collapse, so there
    may be fewer than ``bins - 1`` edges.

    Example:
        >>> quantile_edges(np.arange(100.0), 4).tolist()
        [24.75, 49.5, 74.25]
    """
    if bins < 2:
        raise ValidationError("bins", ">= 2", bins)
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.empty(0, dtype=np.float64)
    return np.unique(np.quantile(v, np.arange(1, bins) / bins))


def bin_shares(values: np.ndarray, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return the share of finite ``values`` in each of the ``len(edges) + 1`` bins.

    Bin ``i`` holds ``edges[i-1] < v <= edges[i]`` (the first and last bins are open-ended).
    All zeros when no value is finite.

    Example:
        >>> bin_shares(np.array([0.0, 1.0, 2.0, 3.0]), [1.0, 2.5]).tolist()
        [0.5, 0.25, 0.25]
    """
    e = np.asarray(edges, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    counts = np.bincount(np.searchsorted(e, v, side="left"), minlength=e.size + 1)
    total = counts.sum()
    return counts / total if total else np.zeros(e.size + 1, dtype=np.float64)


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> float:
    """Return the population stability index ``Σ (a − e) · ln(a / e)`` of two bin-share vectors.

    Shares are clipped at :data:`EPS` first, so an empty bin counts as nearly empty.

    Raises:
        ValidationError: the vectors differ in length.

    Example:
        >>> round(psi([0.5, 0.5], [0.9, 0.1]), 4)
        0.8789
    """
    e = np.clip(np.asarray(expected, dtype=np.float64), EPS, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), EPS, None)
    if e.shape != a.shape:
        raise ValidationError("actual", f"of shape {e.shape} like expected", a.shape)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_binned(
    expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray
) -> float:
    """Return ``max |CDF_actual − CDF_expected|`` over the bin edges (a binned KS distance).

    Example:
        >>> ks_binned([0.25, 0.25, 0.5], [0.5, 0.25, 0.25])
        0.25
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        raise ValidationError("actual", f"of shape {e.shape} like expected", a.shape)
    return float(np.max(np.abs(np.cumsum(a) - np.cumsum(e)))) if e.size else 0.0


def reference_histograms(
    features: np.ndarray, names: Sequence[str], bins: int = 10
) -> dict[str, Any]:
    """Return the drift reference of training features ``(N, F)``.

    Args:
        features: The training feature vectors.
        names: The ``F`` feature names, in column order.
        bins: Quantile bins per feature.

    Returns:
        ``{"version", "bins", "n", "features": {name: {"edges": [...], "shares": [...],
        "nonfinite": share}}}`` (JSON-ready; stored as the version's ``drift_reference.json``).

    Raises:
        ValidationError: ``features`` is not ``(N, len(names))``.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValidationError("features", f"of shape (N, {len(names)})", x.shape)
    out: dict[str, Any] = {}
    for j, name in enumerate(names):
        col = x[:, j]
        edges = quantile_edges(col, bins)
        finite = np.isfinite(col)
        out[str(name)] = {
            "edges": [float(v) for v in edges],
            "shares": [round(float(v), 8) for v in bin_shares(col, edges)],
            "nonfinite": round(float(1.0 - finite.mean()), 8) if col.size else 0.0,
        }
    return {"version": REFERENCE_VERSION, "bins": int(bins), "n": int(x.shape[0]), "features": out}


def feature_drift(
    reference: Mapping[str, Any],
    features: np.ndarray,
    names: Sequence[str],
    psi_threshold: float,
) -> dict[str, Any]:
    """Compare features ``(N, F)`` with a drift reference.

    Args:
        reference: :func:`reference_histograms` output.
        features: The newer feature vectors.
        names: Their column names (every reference feature must be among them).
        psi_threshold: A feature whose PSI is above this has drifted.

    Returns:
        ``{"n", "n_reference", "psi_threshold", "max_psi", "mean_psi", "max_ks", "drifted":
        [names, highest PSI first], "per_feature": {name: {"psi", "ks"}}}``.

    Raises:
        ValidationError: a reference feature missing from ``names``, a bad shape, or no row.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValidationError("features", f"of shape (N, {len(names)})", x.shape)
    if x.shape[0] == 0:
        raise ValidationError("features", "at least one row", 0)
    ref = reference.get("features") or {}
    col = {str(n): j for j, n in enumerate(names)}
    missing = sorted(set(ref) - set(col))
    if missing:
        raise ValidationError("features", f"columns for every reference feature {sorted(ref)}",
                              f"missing {missing}")
    per: dict[str, dict[str, float]] = {}
    for name, h in ref.items():
        live = bin_shares(x[:, col[name]], h["edges"])
        per[name] = {
            "psi": round(psi(h["shares"], live), 6),
            "ks": round(ks_binned(h["shares"], live), 6),
        }
    psis = {n: v["psi"] for n, v in per.items()}
    drifted = sorted((n for n, v in psis.items() if v > psi_threshold), key=lambda n: -psis[n])
    return {
        "n": int(x.shape[0]),
        "n_reference": int(reference.get("n", 0)),
        "psi_threshold": float(psi_threshold),
        "max_psi": max(psis.values(), default=0.0),
        "mean_psi": round(float(np.mean(list(psis.values()))), 6) if psis else 0.0,
        "max_ks": max((v["ks"] for v in per.values()), default=0.0),
        "drifted": drifted,
        "per_feature": per,
    }


def read_features_parquet(path: str | Path, names: Sequence[str]) -> np.ndarray:
    """Return the ``names`` columns of the valid rows of a ``jobs.build_dataset`` features file.

    Raises:
        ValidationError: a column is missing.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    cols = set(table.column_names)
    missing = [n for n in names if n not in cols]
    if missing:
        raise ValidationError(f"{path} columns", f"to include {list(names)}", f"missing {missing}")
    valid = (
        np.asarray(table.column("valid").to_numpy(zero_copy_only=False), dtype=bool)
        if "valid" in cols
        else np.ones(table.num_rows, dtype=bool)
    )
    x = np.column_stack(
        [np.asarray(table.column(n).to_numpy(zero_copy_only=False), dtype=np.float64)
         for n in names]
    ) if names else np.empty((table.num_rows, 0))
    return x[valid]


# ---------------------------------------------------------------------------------------------
# accuracy decay
# ---------------------------------------------------------------------------------------------
@dataclass
class JournalOutcomes:
    """Served predictions of a run and what happened after them.

    Attributes:
        probs: ``(N, 3)`` served probabilities (down, flat, up), in journal order.
        labels: ``(N,)`` realised class ``horizon`` steps later.
        returns_bps: ``(N,)`` the realised mid move, bps.
        symbols: ``(N,)`` symbol of each decision.
        models: Served model versions (``"family:version,..."``) → decisions.
        censored: Decisions whose label runs past the journal's end or lacks a mid.
        without_models: Decisions without model versions (fallback / invalid book).
    """

    probs: np.ndarray
    labels: np.ndarray
    returns_bps: np.ndarray
    symbols: np.ndarray
    models: dict[str, int] = field(default_factory=dict)
    censored: int = 0
    without_models: int = 0


def journal_outcomes(
    records: Iterable[Mapping[str, Any]], horizon: int, flat_threshold_bps: float
) -> JournalOutcomes:
    """Label every served decision of a journal with the mid move ``horizon`` steps later.

    Args:
        records: Journal records in order (``read_journal`` values).
        horizon: Steps between the decision and its label (``models.horizon``).
        flat_threshold_bps: ``models.flat_threshold_bps``.

    Raises:
        ValidationError: ``horizon`` < 1.
    """
    if horizon < 1:
        raise ValidationError("horizon", ">= 1", horizon)
    mids: dict[str, list[float | None]] = {}
    step = -1
    pending: list[tuple[int, str, Sequence[float], str]] = []
    without = 0
    for rec in records:
        kind = rec.get("type")
        if kind == MARKS_TYPE:
            step += 1
            for sym, m in (rec.get("mids") or {}).items():
                series = mids.setdefault(sym, [])
                series.extend([None] * (step - len(series)))
                series.append(None if m is None else float(m))
        elif kind == DECISION_TYPE:
            models = rec.get("models") or {}
            if not models:
                without += 1
                continue
            key = ",".join(f"{k}:{v}" for k, v in sorted(models.items()))
            pending.append((max(step, 0), str(rec["symbol"]), rec["probs"], key))
    probs, rets, syms, versions = [], [], [], Counter()
    censored = 0
    for t, sym, p, key in pending:
        series = mids.get(sym, [])
        a = series[t] if t < len(series) else None
        b = series[t + horizon] if t + horizon < len(series) else None
        if a is None or b is None or a <= 0:
            censored += 1
            continue
        probs.append(p)
        rets.append((b / a - 1.0) * 1e4)
        syms.append(sym)
        versions[key] += 1
    r = np.asarray(rets, dtype=np.float64)
    return JournalOutcomes(
        probs=np.asarray(probs, dtype=np.float64).reshape(-1, 3),
        labels=label_returns(r, flat_threshold_bps),
        returns_bps=r,
        symbols=np.asarray(syms, dtype=object),
        models=dict(versions),
        censored=censored,
        without_models=without,
    )


def _scores(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Return ``(accuracy, log loss)`` of non-empty probabilities."""
    p = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
    return float(np.mean(np.argmax(probs, axis=1) == labels)), float(-np.mean(np.log(p)))


def accuracy_decay(
    probs: np.ndarray,
    labels: np.ndarray,
    reference: Mapping[str, Any] | None,
    window: int,
) -> dict[str, Any]:
    """Rolling accuracy and log loss of served predictions against a recorded score.

    Args:
        probs: ``(N, 3)`` served probabilities, in time order.
        labels: ``(N,)`` realised classes.
        reference: ``{"accuracy", "log_loss"}`` the models scored on their holdout (None:
            nothing to compare with).
        window: Decisions per rolling window; the *latest* window (the last ``window``
            decisions, all when fewer) is what is compared.

    Returns:
        ``{"n", "window", "accuracy", "log_loss" (all decisions), "latest": {"n", "accuracy",
        "log_loss"}, "rolling": [{"end", "accuracy", "log_loss"}] (consecutive windows, the
        last one ending at ``n``), "reference", "log_loss_increase", "accuracy_drop"}``; the
        scores are None when there is no decision, the deltas None without a reference.

    Raises:
        ValidationError: mismatched shapes or ``window`` < 1.
    """
    if window < 1:
        raise ValidationError("window", ">= 1", window)
    p = np.asarray(probs, dtype=np.float64).reshape(-1, 3)
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (p.shape[0],):
        raise ValidationError("labels", f"of shape ({p.shape[0]},)", y.shape)
    n = int(y.shape[0])
    out: dict[str, Any] = {
        "n": n, "window": int(window), "accuracy": None, "log_loss": None,
        "latest": {"n": 0, "accuracy": None, "log_loss": None}, "rolling": [],
        "reference": dict(reference) if reference else None,
        "log_loss_increase": None, "accuracy_drop": None,
    }
    if n == 0:
        return out
    acc, loss = _scores(p, y)
    out.update(accuracy=round(acc, 6), log_loss=round(loss, 6))
    for end in range(n, 0, -window):  # windows aligned on the newest decision
        start = max(0, end - window)
        a, l_ = _scores(p[start:end], y[start:end])
        out["rolling"].append({"end": end, "accuracy": round(a, 6), "log_loss": round(l_, 6)})
    out["rolling"].reverse()
    last = out["rolling"][-1]
    out["latest"] = {"n": min(n, window), "accuracy": last["accuracy"],
                     "log_loss": last["log_loss"]}
    if reference and reference.get("log_loss") is not None:
        out["log_loss_increase"] = round(last["log_loss"] - float(reference["log_loss"]), 6)
    if reference and reference.get("accuracy") is not None:
        out["accuracy_drop"] = round(float(reference["accuracy"]) - last["accuracy"], 6)
    return out


# ---------------------------------------------------------------------------------------------
# the decision
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DriftThresholds:
    """When drift is declared (``retrain`` config section).

    Attributes:
        psi: A feature whose PSI is above this has shifted.
        log_loss_increase: Latest-window live log loss minus the holdout log loss above this
            is decay.
        accuracy_drop: Holdout accuracy minus latest-window live accuracy above this is decay.
        window: Decisions per rolling window.
        min_samples: Fewer live decisions (or feature rows) than this: that check is skipped.
    """

    psi: float = 0.25
    log_loss_increase: float = 0.05
    accuracy_drop: float = 0.05
    window: int = 500
    min_samples: int = 200


@dataclass
class DriftReport:
    """What :func:`check_drift` found.

    Attributes:
        drift: Whether any threshold was crossed.
        reasons: One line per crossed threshold (what, value, threshold).
        skipped: One line per check that could not run, and why.
        features: Family → :func:`feature_drift` output.
        accuracy: :func:`accuracy_decay` output plus journal counts, or None.
        families: Families whose feature reference shifted (accuracy decay names none: it is
            the ensemble's).
    """

    drift: bool
    reasons: list[str]
    skipped: list[str]
    features: dict[str, dict[str, Any]]
    accuracy: dict[str, Any] | None
    families: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "drift": self.drift,
            "reasons": list(self.reasons),
            "skipped": list(self.skipped),
            "families": list(self.families),
            "features": self.features,
            "accuracy": self.accuracy,
        }


def check_drift(
    thresholds: DriftThresholds,
    *,
    references: Mapping[str, Mapping[str, Any] | None] | None = None,
    features: np.ndarray | None = None,
    names: Sequence[str] = (),
    outcomes: JournalOutcomes | None = None,
    score_reference: Mapping[str, Any] | None = None,
) -> DriftReport:
    """Check feature shift (per family's reference) and accuracy decay against thresholds.

    Args:
        thresholds: The limits.
        references: Family → its production version's drift reference (None: it has none).
        features: Newer feature rows ``(N, F)`` (None: no feature check).
        names: Column names of ``features``.
        outcomes: Served decisions and their outcomes (None: no accuracy check).
        score_reference: The served ensemble's holdout ``{"accuracy", "log_loss"}``.

    Returns:
        The report; ``drift`` is True when any check crossed its threshold.
    """
    reasons: list[str] = []
    skipped: list[str] = []
    per_family: dict[str, dict[str, Any]] = {}
    families: list[str] = []
    if features is not None:
        n = int(np.asarray(features).shape[0])
        if n < thresholds.min_samples:
            skipped.append(f"features: {n} rows < min_samples {thresholds.min_samples}")
        else:
            for family, ref in (references or {}).items():
                if not ref:
                    skipped.append(f"features: {family} production model has no drift reference")
                    continue
                fd = feature_drift(ref, features, names, thresholds.psi)
                per_family[family] = fd
                if fd["drifted"]:
                    families.append(family)
                    top = ", ".join(f"{k} {fd['per_feature'][k]['psi']:.3f}"
                                    for k in fd["drifted"][:3])
                    reasons.append(
                        f"feature shift ({family}): {len(fd['drifted'])} feature(s) with PSI > "
                        f"{thresholds.psi:g} (max {fd['max_psi']:.3f}: {top})"
                    )
    accuracy: dict[str, Any] | None = None
    if outcomes is not None:
        n = int(outcomes.labels.shape[0])
        accuracy = accuracy_decay(outcomes.probs, outcomes.labels, score_reference,
                                  thresholds.window)
        accuracy.update(censored=outcomes.censored, without_models=outcomes.without_models,
                        models=outcomes.models)
        if n < thresholds.min_samples:
            skipped.append(f"accuracy: {n} labelled decisions < min_samples "
                           f"{thresholds.min_samples}")
        elif not score_reference or score_reference.get("log_loss") is None:
            skipped.append("accuracy: no recorded holdout score to compare with")
        else:
            inc, drop = accuracy["log_loss_increase"], accuracy["accuracy_drop"]
            latest = accuracy["latest"]
            if inc is not None and inc > thresholds.log_loss_increase:
                reasons.append(
                    f"accuracy decay: live log loss {latest['log_loss']:.4f} over the last "
                    f"{latest['n']} decisions is {inc:+.4f} above the holdout "
                    f"{float(score_reference['log_loss']):.4f} (threshold "
                    f"{thresholds.log_loss_increase:g})"
                )
            if drop is not None and drop > thresholds.accuracy_drop:
                reasons.append(
                    f"accuracy decay: live accuracy {latest['accuracy']:.4f} over the last "
                    f"{latest['n']} decisions is {drop:.4f} below the holdout "
                    f"{float(score_reference['accuracy']):.4f} (threshold "
                    f"{thresholds.accuracy_drop:g})"
                )
    return DriftReport(
        drift=bool(reasons), reasons=reasons, skipped=skipped, features=per_family,
        accuracy=accuracy, families=families,
    )
