"""Ensemble math, pure (no Ray): weighted average of per-model probabilities, and the signal.

Classes are ``(down, flat, up)``. :data:`FALLBACK_PROBS` (certainly flat) is what a request gets
when the models cannot answer in time: it never moves a position.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cluster.config import MODEL_FAMILIES

#: Model families the ensemble can combine, and the request field each one reads:
#: ``features (N, F)``, ``windows (N, T, F)`` (feature windows) or ``books (N, T_b, 40)``
#: (raw book windows, ``actors.book.book_window``).
FAMILY_INPUTS: dict[str, str] = {
    "lgbm": "features",
    "xgboost": "features",
    "gru": "windows",
    "deeplob": "books",
    "transformer": "books",
}
FAMILIES: tuple[str, ...] = MODEL_FAMILIES  # the config's list: one definition
if set(FAMILY_INPUTS) != set(FAMILIES):  # a family added to one list only is a coding error
    raise ImportError(f"FAMILY_INPUTS must cover {FAMILIES}, was {sorted(FAMILY_INPUTS)}")
#: Families that run torch (placed on a GPU when ``num_gpus`` > 0).
TORCH_FAMILIES: tuple[str, ...] = ("gru", "deeplob", "transformer")
#: Probabilities used when no timely model answer exists: "flat", i.e. do nothing.
FALLBACK_PROBS: tuple[float, float, float] = (0.0, 1.0, 0.0)


def fallback_probs(n: int) -> np.ndarray:
    """Return ``(n, 3)`` float64 rows of :data:`FALLBACK_PROBS`."""
    return np.tile(np.asarray(FALLBACK_PROBS, dtype=np.float64), (int(n), 1))


def normalise_weights(
    weights: Mapping[str, float], families: tuple[str, ...] | list[str] | None = None
) -> dict[str, float]:
    """Return weights restricted to ``families`` (default: all given) and summing to 1.

    Raises:
        ValueError: a negative or non-finite weight, or no positive weight left.

    Example:
        >>> normalise_weights({"lgbm": 1.0, "gru": 3.0})
        {'lgbm': 0.25, 'gru': 0.75}
    """
    for name, w in weights.items():
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"weights[{name}] must be finite and >= 0, was {w!r}")
    keep = {k: float(v) for k, v in weights.items() if families is None or k in families}
    total = sum(keep.values())
    if total <= 0:
        raise ValueError(
            f"weights must have a positive sum over families {sorted(families or keep)}, "
            f"was {dict(weights)!r}"
        )
    return {k: v / total for k, v in keep.items()}


def combine(per_model: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Return the weighted average of per-model probabilities, rows renormalised to sum 1.

    Only families present in both ``per_model`` and ``weights`` count; their weights are
    renormalised to sum 1.

    Args:
        per_model: Family → ``(N, 3)`` probabilities.
        weights: Family → non-negative weight.

    Returns:
        ``(N, 3)`` float64.

    Raises:
        ValueError: mismatched shapes, negative or non-finite probabilities, or no family with a
            positive weight.

    Example:
        >>> combine({"a": np.array([[0.2, 0.2, 0.6]]), "b": np.array([[0.6, 0.2, 0.2]])},
        ...         {"a": 3.0, "b": 1.0}).round(3).tolist()
        [[0.3, 0.2, 0.5]]
    """
    families = [f for f in per_model if f in weights]
    w = normalise_weights({f: weights[f] for f in families}, families)
    out: np.ndarray | None = None
    shape: tuple[int, ...] | None = None
    for fam in families:
        p = np.asarray(per_model[fam], dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ValueError(f"per_model[{fam}] must have shape (N, 3), was {p.shape}")
        if shape is not None and p.shape != shape:
            raise ValueError(f"per_model[{fam}] must have shape {shape}, was {p.shape}")
        if p.size and (not np.all(np.isfinite(p)) or p.min() < 0):
            raise ValueError(f"per_model[{fam}] must be finite and >= 0, was {p.min()!r} min")
        shape = p.shape
        out = w[fam] * p if out is None else out + w[fam] * p
    assert out is not None  # normalise_weights guarantees one family
    s = out.sum(axis=1, keepdims=True)
    s[s <= 0] = 1.0
    return out / s


def signal(probs: np.ndarray, edge: float) -> np.ndarray | int:
    """Return the direction: 1 when ``p_up - p_down > edge``, -1 when below ``-edge``, else 0.

    Args:
        probs: ``(3,)`` for one decision (returns an int) or ``(N, 3)`` (returns int8 ``(N,)``).
        edge: Minimum ``|p_up - p_down|`` to take a side (``strategy.entry_edge``).

    Example:
        >>> signal(np.array([0.1, 0.3, 0.6]), 0.1), signal(np.array([0.3, 0.4, 0.3]), 0.1)
        (1, 0)
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.shape[-1] != 3 or p.ndim not in (1, 2):
        raise ValueError(f"probs must have shape (3,) or (N, 3), was {p.shape}")
    e = p[..., 2] - p[..., 0]
    s = np.where(e > edge, 1, np.where(e < -edge, -1, 0)).astype(np.int8)
    return int(s) if p.ndim == 1 else s
