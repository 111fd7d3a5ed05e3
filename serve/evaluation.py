"""Quality of 3-class direction forecasts: macro-F1, calibration and fitted ensemble weights.

Pure numpy (plus scipy's bounded scalar minimiser), no Ray and no scikit-learn. Classes are
``0=down, 1=flat, 2=up`` as everywhere in raydesk, but every function works for any ``K``.

* :func:`macro_f1`, :func:`per_class_f1`, :func:`confusion`, :func:`accuracy`, :func:`log_loss`,
  :func:`expected_calibration_error` and :func:`report` score predictions;
* :func:`fit_temperature` / :func:`apply_temperature` calibrate one model (temperature scaling,
  Guo et al. 2017) on validation data;
* :func:`fit_weights` fits the ensemble's convex weights on validation data by minimising the
  log loss of the mixture; :func:`combine` is :func:`serve.ensemble.combine` (re-exported);
* :func:`fit_class_bias` fits a macro-F1 decision rule ``argmax(log p + b)`` on validation
  data (:func:`predict_with_bias` applies it); :func:`fit_weights_f1` fits ensemble weights
  and that rule together for macro-F1.

Example:
    >>> t = fit_temperature(val_probs, y_val)               # calibrate each model
    >>> w = fit_weights({"a": pa_val, "b": pb_val}, y_val)  # then weight them
    >>> macro_f1(y_test, combine({"a": pa, "b": pb}, w).argmax(axis=1))
    >>> b = fit_class_bias(combine({"a": pa_val, "b": pb_val}, w), y_val)  # macro-F1 rule
    >>> macro_f1(y_test, predict_with_bias(combine({"a": pa, "b": pb}, w), b))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from actors.core.errors import ValidationError
from serve.ensemble import combine  # noqa: F401 - re-exported: one mixture definition

N_CLASSES = 3
EPS = 1e-12


def _labels(name: str, y: Any) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValidationError(name, "a 1-D array of class ids", a.shape)
    if (
        a.size
        and not np.issubdtype(a.dtype, np.integer)
        and (not np.all(np.isfinite(a)) or not np.all(a == np.round(a)))
    ):
        raise ValidationError(name, "integer class ids", a.dtype.name)
    a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise ValidationError(name, "class ids >= 0", int(a.min()))
    return a


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels("y_true", y_true), _labels("y_pred", y_pred)
    if t.shape != p.shape:
        raise ValidationError("y_pred", f"of shape {t.shape} like y_true", p.shape)
    return t, p


def _probs(name: str, probs: Any, n: int | None = None) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValidationError(name, "of shape (N, K) with K >= 2", p.shape)
    if n is not None and p.shape[0] != n:
        raise ValidationError(name, f"of {n} rows like the labels", p.shape[0])
    if p.size and not np.all(np.isfinite(p)):
        raise ValidationError(name, "finite", "non-finite values")
    return p


def confusion(y_true: Any, y_pred: Any, n_classes: int = N_CLASSES) -> np.ndarray:
    """Return the confusion matrix ``(K, K)`` int64: rows true class, columns predicted.

    Raises:
        ValidationError: mismatched shapes or a class id outside ``0..n_classes-1``.

    Example:
        >>> confusion([0, 1, 2, 2], [0, 2, 2, 2]).tolist()
        [[1, 0, 0], [0, 0, 1], [0, 0, 2]]
    """
    t, p = _pair(y_true, y_pred)
    if t.size and max(t.max(), p.max()) >= n_classes:
        raise ValidationError("class ids", f"< n_classes {n_classes}", int(max(t.max(), p.max())))
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def per_class_f1(y_true: Any, y_pred: Any, n_classes: int = N_CLASSES) -> np.ndarray:
    """Return the F1 score of each class ``(K,)``; a class never true nor predicted scores 0.

    Example:
        >>> per_class_f1([0, 0, 1, 2], [0, 1, 1, 2]).round(3).tolist()
        [0.667, 0.667, 1.0]
    """
    c = confusion(y_true, y_pred, n_classes).astype(np.float64)
    tp = np.diag(c)
    denom = c.sum(axis=0) + c.sum(axis=1)  # predicted + true = 2TP + FP + FN
    return np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def macro_f1(y_true: Any, y_pred: Any, labels: Sequence[int] | None = None) -> float:
    """Return the unweighted mean of the per-class F1 scores, in ``[0, 1]``.

    Args:
        y_true: True class ids ``(N,)``.
        y_pred: Predicted class ids ``(N,)``.
        labels: Classes to average over; default the classes present in ``y_true`` or
            ``y_pred`` (as scikit-learn does), so a perfect prediction always scores 1.

    Returns:
        Macro-F1 (0.0 for empty input).

    Raises:
        ValidationError: mismatched shapes or negative / non-integer class ids.

    Example:
        >>> round(macro_f1([0, 0, 1, 2], [0, 1, 1, 2]), 4)
        0.7778
    """
    t, p = _pair(y_true, y_pred)
    if t.size == 0:
        return 0.0
    present = np.union1d(t, p) if labels is None else np.asarray(list(labels), dtype=np.int64)
    if present.size == 0:
        raise ValidationError("labels", "non-empty", list(present))
    k = int(max(present.max(), t.max(), p.max())) + 1
    return float(per_class_f1(t, p, k)[present].mean())


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Return the share of equal class ids (0.0 for empty input)."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p)) if t.size else 0.0


def log_loss(probs: Any, y: Any) -> float:
    """Return the mean negative log-likelihood of the labels under ``probs (N, K)``."""
    t = _labels("y", y)
    p = _probs("probs", probs, t.size)
    if t.size == 0:
        return 0.0
    if t.max() >= p.shape[1]:
        raise ValidationError("y", f"< K {p.shape[1]}", int(t.max()))
    return float(-np.mean(np.log(np.clip(p[np.arange(t.size), t], EPS, 1.0))))


def expected_calibration_error(probs: Any, y: Any, bins: int = 15) -> float:
    """Return the top-label expected calibration error (equal-width confidence bins).

    Example:
        >>> expected_calibration_error([[0.1, 0.8, 0.1]] * 10, [1] * 8 + [0] * 2)
        0.0
    """
    t = _labels("y", y)
    p = _probs("probs", probs, t.size)
    if bins < 1:
        raise ValidationError("bins", ">= 1", bins)
    if t.size == 0:
        return 0.0
    conf = p.max(axis=1)
    hit = (p.argmax(axis=1) == t).astype(np.float64)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    n = np.bincount(which, minlength=bins).astype(np.float64)
    gap = np.abs(np.bincount(which, conf, bins) - np.bincount(which, hit, bins))
    return float(round(gap.sum() / n.sum(), 12))


def _logits(scores: Any, logits: bool) -> np.ndarray:
    s = _probs("scores", scores)
    if logits:
        return s
    if s.size and s.min() < 0:
        raise ValidationError("probs", ">= 0 (pass logits=True for logits)", float(s.min()))
    return np.log(np.clip(s, EPS, None))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def check_temperature(temperature: Any) -> float:
    """Return ``temperature`` as a float.

    Raises:
        ValidationError: not a finite number > 0.
    """
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        t = float("nan")
    if not np.isfinite(t) or t <= 0:
        raise ValidationError("temperature", "finite and > 0", temperature)
    return t


def apply_temperature(scores: Any, temperature: float, *, logits: bool = False) -> np.ndarray:
    """Return ``softmax(z / temperature)`` where ``z`` is ``scores`` (logits) or ``log(scores)``.

    Raises:
        ValidationError: ``temperature`` not finite and > 0, or bad ``scores``.
    """
    t = check_temperature(temperature)
    return _softmax(_logits(scores, logits) / t)


def fit_temperature(
    scores: Any,
    y: Any,
    *,
    logits: bool = False,
    bounds: tuple[float, float] = (0.05, 20.0),
) -> float:
    """Fit the temperature ``T`` minimising the NLL of ``softmax(z / T)`` on held-out data.

    ``T > 1`` softens over-confident scores, ``T < 1`` sharpens under-confident ones; the
    arg-max (hence accuracy and F1) never changes. The 1-D convex problem in ``log T`` is
    solved by scipy's bounded Brent method (deterministic).

    Args:
        scores: ``(N, K)`` probabilities, or logits when ``logits`` is true.
        y: Class ids ``(N,)``.
        logits: Whether ``scores`` are logits.
        bounds: Search interval of ``T``.

    Returns:
        The temperature, rounded to 6 decimals (1.0 for empty input).

    Raises:
        ValidationError: bad shapes, labels or bounds.

    Example:
        >>> z = np.array([[9.0, 0.0, 0.0]] * 6 + [[0.0, 9.0, 0.0]] * 4)
        >>> fit_temperature(z, [0] * 6 + [1, 1, 0, 0], logits=True) > 1
        True
    """
    lo, hi = bounds
    if not (0 < lo < hi and np.isfinite(hi)):
        raise ValidationError("bounds", "0 < low < high < inf", bounds)
    t = _labels("y", y)
    z = _logits(scores, logits)
    if z.shape[0] != t.size:
        raise ValidationError("scores", f"of {t.size} rows like the labels", z.shape[0])
    if t.size == 0:
        return 1.0
    if t.max() >= z.shape[1]:
        raise ValidationError("y", f"< K {z.shape[1]}", int(t.max()))
    rows = np.arange(t.size)

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        s = s - s.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(s).sum(axis=1)) - s[rows, t]))

    res = minimize_scalar(
        nll, bounds=(np.log(lo), np.log(hi)), method="bounded", options={"xatol": 1e-6}
    )
    return round(float(np.exp(res.x)), 6)


def _per_model(
    per_model: Mapping[str, Any], y: Any
) -> tuple[list[str], np.ndarray, list[np.ndarray]]:
    """Check per-model probabilities against labels; return ``(names, y, probs)``."""
    names = list(per_model)
    if not names:
        raise ValidationError("per_model", "non-empty", {})
    t = _labels("y", y)
    probs = [_probs(f"per_model[{n}]", per_model[n], t.size) for n in names]
    k = probs[0].shape[1]
    for name, p in zip(names, probs, strict=True):
        if p.shape[1] != k:
            raise ValidationError(f"per_model[{name}]", f"of {k} columns", p.shape[1])
    if t.size and t.max() >= k:
        raise ValidationError("y", f"< K {k}", int(t.max()))
    return names, t, probs


def _mixture_loss(stack: np.ndarray, w: np.ndarray) -> float:
    """``stack (M, N)``: each model's probability of the true class."""
    return float(-np.mean(np.log(np.clip(w @ stack, EPS, None))))


def _project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto ``{w >= 0, sum w = 1}`` (sort-based, exact)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    rho = np.nonzero(u - css / np.arange(1, v.size + 1) > 0)[0][-1]
    return np.maximum(v - css[rho] / (rho + 1.0), 0.0)


def fit_weights(
    per_model: Mapping[str, Any],
    y: Any,
    *,
    max_iter: int = 500,
    tol: float = 1e-10,
) -> dict[str, float]:
    """Fit non-negative weights summing to 1 that minimise the log loss of the mixture.

    The mixture's log loss is convex in the weights, so projected gradient descent with
    backtracking from equal weights converges to the optimum. The result is then compared
    with equal weights and with every single model (simplex vertices) and the best is kept,
    so it is never worse on ``y`` than any of them. Deterministic.

    Args:
        per_model: Model name → ``(N, K)`` probabilities on the validation data.
        y: Validation class ids ``(N,)``.
        max_iter: Maximum gradient steps.
        tol: Stop when the loss improves by less than this.

    Returns:
        Model name → weight (rounded to 6 decimals, in ``per_model`` order, summing to 1).

    Raises:
        ValidationError: no model, mismatched shapes, or bad labels.

    Example:
        >>> fit_weights({"a": pa_val, "b": pb_val}, y_val)
        {'a': 0.7, 'b': 0.3}
    """
    names, t, probs = _per_model(per_model, y)
    m = len(names)
    if m == 1 or t.size == 0:
        return {n: round(1.0 / m, 6) for n in names}
    stack = np.stack([p[np.arange(t.size), t] for p in probs])  # (M, N)
    w = np.full(m, 1.0 / m)
    loss = _mixture_loss(stack, w)
    step = 1.0
    for _ in range(max_iter):
        mix = np.clip(w @ stack, EPS, None)
        grad = -(stack / mix).mean(axis=1)
        while step > 1e-12:
            cand = _project_simplex(w - step * grad)
            cand_loss = _mixture_loss(stack, cand)
            if cand_loss <= loss - 1e-4 * float(grad @ (w - cand)):
                break
            step *= 0.5
        else:
            break
        improved = loss - cand_loss
        w, loss = cand, cand_loss
        step = min(step * 2.0, 1e3)
        if improved < tol:
            break
    candidates = [w, np.full(m, 1.0 / m), *np.eye(m)]
    best = min(candidates, key=lambda c: _mixture_loss(stack, c))
    best = np.round(best / best.sum(), 6)
    best[int(np.argmax(best))] += 1.0 - best.sum()  # exact sum after rounding
    return {n: float(v) for n, v in zip(names, best, strict=True)}


def report(
    probs: Any,
    y: Any,
    class_names: Sequence[str] = ("down", "flat", "up"),
    *,
    bias: Any = None,
) -> dict:
    """Return the JSON-safe quality of ``probs (N, K)`` against ``y``.

    The prediction is the arg-max, or ``argmax(log p + bias)`` when a :func:`fit_class_bias`
    rule is given (``log_loss`` and ``ece`` always score the probabilities themselves).

    Keys: ``macro_f1`` (×100), ``accuracy``, ``f1`` per class, ``log_loss``, ``ece``, ``n`` and
    ``confusion`` (rows true, columns predicted).
    """
    t = _labels("y", y)
    p = _probs("probs", probs, t.size)
    pred = p.argmax(axis=1) if bias is None else predict_with_bias(p, bias)
    k = p.shape[1]
    names = list(class_names) if len(class_names) == k else [str(i) for i in range(k)]
    f1 = per_class_f1(t, pred, k)
    return {
        "macro_f1": round(100.0 * macro_f1(t, pred, labels=range(k)), 3),
        "accuracy": round(accuracy(t, pred), 6),
        "f1": {name: round(float(v), 6) for name, v in zip(names, f1, strict=True)},
        "log_loss": round(log_loss(p, t), 6),
        "ece": round(expected_calibration_error(p, t), 6),
        "n": int(t.size),
        "confusion": confusion(t, pred, k).tolist(),
    }


# ---------------------------------------------------------------------------------------------
# macro-F1 decision rule
# ---------------------------------------------------------------------------------------------
def _bias(bias: Any, k: int) -> np.ndarray:
    b = np.asarray(bias, dtype=np.float64)
    if b.shape != (k,):
        raise ValidationError("bias", f"of shape ({k},) like the probability columns", b.shape)
    if not np.all(np.isfinite(b)):
        raise ValidationError("bias", "finite", b.tolist())
    return b


def predict_with_bias(probs: Any, bias: Any) -> np.ndarray:
    """Return the decision ``argmax(log p + bias)`` for ``probs (N, K)`` and ``bias (K,)``.

    A zero bias is the plain arg-max. Adding the same constant to every entry changes nothing.

    Raises:
        ValidationError: bad ``probs`` or a ``bias`` not finite of shape ``(K,)``.

    Example:
        >>> predict_with_bias([[0.5, 0.3, 0.2]], [0.0, 0.6, 0.0]).tolist()
        [1]
    """
    p = _probs("probs", probs)
    if p.size and p.min() < 0:
        raise ValidationError("probs", ">= 0", float(p.min()))
    b = _bias(bias, p.shape[1])
    return np.argmax(np.log(np.clip(p, EPS, None)) + b, axis=1)


def _macro_f1_of_counts(tp: np.ndarray, n_pred: np.ndarray, n_true: np.ndarray) -> np.ndarray:
    """Macro-F1 over the last axis from true positives, predicted and true counts."""
    denom = n_pred + n_true
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(np.broadcast(tp, denom).shape), where=denom > 0)
    return f1.mean(axis=-1)


def _best_bias_for_class(
    z: np.ndarray, t: np.ndarray, b: np.ndarray, c: int, max_abs: float
) -> float:
    """Exact line search of ``b[c]`` maximising macro-F1 with the other biases fixed.

    Sample ``i`` is predicted ``c`` iff ``b[c] > m_i`` with ``m_i = max_{j != c}(z_ij + b_j)
    - z_ic``; else its best other class. Sorting the margins gives every distinct outcome;
    the confusion counts of all of them come from cumulative sums.
    """
    n, k = z.shape
    zb = z + b
    others = zb.copy()
    others[:, c] = -np.inf
    alt = others.argmax(axis=1)
    margin = others[np.arange(n), alt] - z[:, c]
    order = np.argsort(margin, kind="stable")
    m, ys, alts = margin[order], t[order], alt[order]
    eye = np.eye(k, dtype=np.float64)
    # counts when no sample is predicted c (all take their alternative), then move them one by one
    hit_alt = eye[alts] * (ys == alts)[:, None]  # (N, K): sample a true positive of its alt
    tp = hit_alt.sum(axis=0) - np.vstack([np.zeros(k), np.cumsum(hit_alt, axis=0)])
    n_pred = eye[alts].sum(axis=0) - np.vstack([np.zeros(k), np.cumsum(eye[alts], axis=0)])
    tp[:, c] = np.concatenate([[0.0], np.cumsum(ys == c)])
    n_pred[:, c] = np.arange(n + 1, dtype=np.float64)
    n_true = np.bincount(t, minlength=k).astype(np.float64)
    score = _macro_f1_of_counts(tp, n_pred, n_true)  # (N + 1,): first j samples predicted c
    # a threshold between consecutive distinct margins realises each outcome
    cand = np.empty(n + 1)
    cand[0], cand[n] = m[0] - 1.0, m[-1] + 1.0
    cand[1:n] = 0.5 * (m[:-1] + m[1:])
    ok = np.ones(n + 1, dtype=bool)
    ok[1:n] = m[:-1] < m[1:]
    ok &= np.abs(cand) <= max_abs
    if not ok.any():
        return float(b[c])
    score = np.where(ok, score, -np.inf)
    best = score.max()
    ties = np.nonzero(score >= best - 1e-12)[0]
    return float(cand[ties[np.argmin(np.abs(cand[ties] - b[c]))]])


def fit_class_bias(
    probs: Any, y: Any, *, max_rounds: int = 10, max_abs: float = 10.0
) -> np.ndarray:
    """Fit per-class log-probability biases ``b`` maximising the macro-F1 of ``argmax(log p + b)``.

    Coordinate ascent from ``b = 0`` (the plain arg-max): each round searches every class's
    bias exactly (all distinct decisions, see :func:`_best_bias_for_class`) with the others
    fixed, and keeps a change only when it raises macro-F1 (over all ``K`` classes) on
    ``(probs, y)``. So the fitted rule is never worse than the arg-max on the data it was
    fitted on. Deterministic; fit it on validation data and apply it with
    :func:`predict_with_bias`.

    Args:
        probs: ``(N, K)`` probabilities (validation).
        y: Class ids ``(N,)``.
        max_rounds: Maximum passes over the classes.
        max_abs: Bound on each ``|b_c|`` (log-probability units).

    Returns:
        ``(K,)`` float64 biases (zeros for empty input).

    Raises:
        ValidationError: bad ``probs``, labels, ``max_rounds`` or ``max_abs``.

    Example:
        >>> b = fit_class_bias(val_probs, y_val)
        >>> macro_f1(y_test, predict_with_bias(test_probs, b))
    """
    if max_rounds < 1:
        raise ValidationError("max_rounds", ">= 1", max_rounds)
    if not (np.isfinite(max_abs) and max_abs > 0):
        raise ValidationError("max_abs", "finite and > 0", max_abs)
    t = _labels("y", y)
    p = _probs("probs", probs, t.size)
    if p.size and p.min() < 0:
        raise ValidationError("probs", ">= 0", float(p.min()))
    k = p.shape[1]
    b = np.zeros(k)
    if t.size == 0:
        return b
    if t.max() >= k:
        raise ValidationError("y", f"< K {k}", int(t.max()))
    z = np.log(np.clip(p, EPS, None))

    def score(bias: np.ndarray) -> float:
        return macro_f1(t, np.argmax(z + bias, axis=1), labels=range(k))

    best = score(b)
    for _ in range(max_rounds):
        changed = False
        for c in range(k):
            cand = b.copy()
            cand[c] = _best_bias_for_class(z, t, b, c, max_abs)
            s = score(cand)
            if s > best + 1e-12:
                b, best, changed = cand, s, True
        if not changed:
            break
    return b


def _simplex_grid(m: int, steps: int) -> np.ndarray:
    """Every weight vector of ``m`` entries in multiples of ``1/steps`` summing to 1."""
    if m == 1:
        return np.ones((1, 1))
    rows = []
    for first in range(steps, -1, -1):
        for rest in _simplex_grid(m - 1, steps - first) if steps - first else [np.zeros(m - 1)]:
            rows.append(np.concatenate([[first], rest * (steps - first)]))
    return np.asarray(rows) / steps


def fit_weights_f1(
    per_model: Mapping[str, Any],
    y: Any,
    *,
    steps: int = 10,
    extra: Sequence[Mapping[str, float]] = (),
    max_abs: float = 10.0,
) -> tuple[dict[str, float], np.ndarray, float]:
    """Fit ensemble weights and a decision rule together for macro-F1 on validation data.

    Every simplex point with weights in multiples of ``1/steps`` (single models and equal
    weights included when ``steps`` is a multiple of the model count), plus the ``extra``
    weightings (e.g. :func:`fit_weights`' log-loss optimum), is scored by the validation
    macro-F1 of its mixture under its own :func:`fit_class_bias` rule; the best is kept
    (first in grid order on ties). So on ``y`` the result is never worse than any single
    model under its own fitted rule. Deterministic.

    Args:
        per_model: Model name → ``(N, K)`` probabilities on the validation data.
        y: Validation class ids ``(N,)``.
        steps: Grid resolution (``steps = 10``: multiples of 0.1).
        extra: Further weightings to try (names of ``per_model``; renormalised).
        max_abs: Bound of the rule's biases.

    Returns:
        ``(weights, bias, validation macro-F1 in [0, 1])``; weights in ``per_model`` order.

    Raises:
        ValidationError: no model, mismatched shapes, bad labels or ``steps < 1``.

    Example:
        >>> w, b, f1 = fit_weights_f1({"a": pa_val, "b": pb_val}, y_val)
        >>> predict_with_bias(combine({"a": pa, "b": pb}, w), b)
    """
    if steps < 1:
        raise ValidationError("steps", ">= 1", steps)
    names, t, probs = _per_model(per_model, y)
    k = probs[0].shape[1]
    stack = np.stack(probs)  # (M, N, K)
    grid = list(_simplex_grid(len(names), steps))
    for i, w in enumerate(extra):
        v = np.array([float(w.get(n, 0.0)) for n in names])
        if not (np.all(np.isfinite(v)) and v.min() >= 0 and v.sum() > 0):
            raise ValidationError(f"extra[{i}]", "non-negative weights with a positive sum", w)
        grid.append(v / v.sum())
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for w in grid:
        mix = np.tensordot(w, stack, axes=1)
        b = fit_class_bias(mix, t, max_abs=max_abs)
        s = macro_f1(t, np.argmax(np.log(np.clip(mix, EPS, None)) + b, axis=1), labels=range(k))
        if best is None or s > best[0] + 1e-12:
            best = (s, w, b)
    assert best is not None
    weights = {n: round(float(v), 6) for n, v in zip(names, best[1], strict=True)}
    return weights, best[2], float(best[0])
