"""Portfolio Value-at-Risk and Expected Shortfall, and the backtests that validate them.

Losses are positive numbers: ``VaR_a`` is the loss exceeded with probability ``1 - a`` over the
horizon, ``ES_a`` the mean loss beyond it (so ``ES >= VaR`` always). Every estimator takes
returns or P&L per period and scales to an ``h``-period horizon by the square-root-of-time
rule (parametric, Monte Carlo) or by overlapping ``h``-period sums (historical).

Estimators:

* :func:`historical_var_es`: empirical quantile of the P&L series (no distribution assumed);
* :func:`parametric_var_es`: normal, or Cornish-Fisher (the normal quantile corrected for the
  sample skewness and excess kurtosis);
* :func:`monte_carlo_var_es`: correlated scenarios from the covariance of asset returns, with
  Student-t tails (``dof``; ``None`` = normal), for a vector of position values.

Validation (:func:`kupiec_pof`, :func:`christoffersen_independence`, :func:`basel_zone`):
the number of VaR exceptions against the expected ``(1 - a) * n`` (Kupiec's likelihood ratio),
whether exceptions cluster (Christoffersen's Markov test), and the Basel traffic light for 250
days at 99 %.

Bad input raises :class:`~actors.core.errors.ValidationError` naming the field, rule and value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from actors.core.errors import ValidationError


@dataclass(frozen=True)
class VarEs:
    """One estimate: loss quantile and tail mean, both positive for losses."""

    var: float
    es: float
    alpha: float
    horizon: int
    method: str


def _alpha(alpha: float) -> float:
    a = float(alpha)
    if not 0.5 < a < 1.0:
        raise ValidationError("alpha", "in (0.5, 1)", alpha)
    return a


def _horizon(horizon: int) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValidationError("horizon", "an int >= 1", horizon)
    return int(horizon)


def _series(name: str, x: Any, min_len: int = 2) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size < min_len:
        raise ValidationError(name, f"a 1-D series of at least {min_len} values", a.shape)
    if not np.all(np.isfinite(a)):
        raise ValidationError(name, "finite", int(np.count_nonzero(~np.isfinite(a))))
    return a


def _tail(losses: np.ndarray, alpha: float) -> tuple[float, float]:
    """VaR (the ``alpha`` quantile of losses, higher interpolation) and ES (mean beyond)."""
    var = float(np.quantile(losses, alpha, method="higher"))
    tail = losses[losses >= var]
    return var, float(tail.mean()) if tail.size else var


def historical_var_es(pnl: Any, alpha: float = 0.99, horizon: int = 1) -> VarEs:
    """Historical simulation on a P&L (or return) series; ``horizon`` sums overlapping periods.

    Example:
        >>> historical_var_es(np.r_[-np.arange(1.0, 11.0), np.ones(90)], 0.95).var
        6.0
    """
    a, h = _alpha(alpha), _horizon(horizon)
    x = _series("pnl", pnl, min_len=h + 1)
    if h > 1:
        c = np.r_[0.0, np.cumsum(x)]
        x = c[h:] - c[:-h]
    var, es = _tail(-x, a)
    return VarEs(var, es, a, h, "historical")


def parametric_var_es(
    pnl: Any, alpha: float = 0.99, horizon: int = 1, method: str = "normal"
) -> VarEs:
    """Normal or Cornish-Fisher VaR / ES from the series' moments, scaled by ``sqrt(h)``.

    Cornish-Fisher uses the skewness and excess kurtosis of the *losses*. The expansion is
    only a valid (monotone) quantile function for moderate moments, so they are clipped to
    ``|skew| <= 1.5`` and ``0 <= kurtosis <= 7`` (about Maillard's 2012 domain of validity);
    beyond that the estimate is a floor, not the true tail. Its ES integrates the corrected
    quantile over the tail numerically (200 points), so it stays consistent with its VaR. A
    constant series has zero spread and no higher moments.
    """
    a, h = _alpha(alpha), _horizon(horizon)
    x = _series("pnl", pnl, min_len=4)
    if method not in ("normal", "cornish_fisher"):
        raise ValidationError("method", "normal or cornish_fisher", method)
    mu, sd = float(x.mean()), float(x.std(ddof=1))
    skew = kurt = 0.0
    if method == "cornish_fisher" and sd > 0:
        skew = float(np.clip(np.nan_to_num(-stats.skew(x)), -1.5, 1.5))  # of losses = -pnl
        kurt = float(np.clip(np.nan_to_num(stats.kurtosis(x)), 0.0, 7.0))

    def quantile(p: np.ndarray | float) -> np.ndarray | float:
        z = stats.norm.ppf(p)
        return (z + (z**2 - 1) * skew / 6 + (z**3 - 3 * z) * kurt / 24
                - (2 * z**3 - 5 * z) * skew**2 / 36)

    scale, drift = sd * math.sqrt(h), mu * h
    var = float(quantile(a)) * scale - drift
    if method == "normal":
        es = float(stats.norm.pdf(stats.norm.ppf(a)) / (1 - a)) * scale - drift
    else:
        ps = a + (1 - a) * (np.arange(200) + 0.5) / 200
        es = float(np.mean(quantile(ps))) * scale - drift
    return VarEs(var, max(es, var), a, h, method)


def monte_carlo_var_es(
    positions: Any,
    returns: Any,
    alpha: float = 0.99,
    horizon: int = 1,
    paths: int = 10_000,
    dof: float | None = 5.0,
    seed: int = 0,
) -> VarEs:
    """Monte Carlo VaR / ES of position values under correlated, fat-tailed asset returns.

    Args:
        positions: ``(A,)`` signed position values (currency).
        returns: ``(T, A)`` per-period asset returns; their covariance drives the scenarios.
        alpha: Confidence level.
        horizon: Periods; scenarios are scaled by ``sqrt(h)``.
        paths: Scenarios.
        dof: Student-t degrees of freedom (> 2; variance-matched), None for normal.
        seed: Random seed (deterministic output).
    """
    a, h = _alpha(alpha), _horizon(horizon)
    w = np.asarray(positions, dtype=np.float64)
    r = np.asarray(returns, dtype=np.float64)
    if w.ndim != 1 or r.ndim != 2 or r.shape[1] != w.size or r.shape[0] < 2:
        raise ValidationError("returns", f"of shape (T >= 2, {w.size})", r.shape)
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(r))):
        raise ValidationError("positions/returns", "finite", "non-finite values")
    if isinstance(paths, bool) or not isinstance(paths, int) or paths < 100:
        raise ValidationError("paths", "an int >= 100", paths)
    if dof is not None and not dof > 2:
        raise ValidationError("dof", "> 2 or None", dof)
    cov = np.atleast_2d(np.cov(r, rowvar=False))
    # a PSD factor even for a singular covariance (more assets than observations)
    vals, vecs = np.linalg.eigh(cov)
    factor = vecs * np.sqrt(np.clip(vals, 0.0, None))
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((paths, w.size))
    if dof is not None:
        chi = rng.chisquare(dof, size=(paths, 1))
        z *= np.sqrt((dof - 2) / chi)  # Student-t with unit variance
    pnl = (z @ factor.T) @ w * math.sqrt(h)
    var, es = _tail(-pnl, a)
    return VarEs(var, es, a, h, "monte_carlo" if dof is None else f"monte_carlo_t{dof:g}")


def kupiec_pof(exceptions: int, n: int, alpha: float) -> dict[str, float]:
    """Kupiec's proportion-of-failures test: ``{"lr", "p_value", "rate", "expected"}``.

    ``lr`` is chi-squared with 1 degree of freedom under a correct model.
    """
    a = _alpha(alpha)
    if not (isinstance(n, int) and n >= 1 and isinstance(exceptions, int)
            and 0 <= exceptions <= n):
        raise ValidationError("exceptions, n", "ints with 0 <= exceptions <= n >= 1",
                              (exceptions, n))
    p, x = 1.0 - a, exceptions

    def ll(q: float) -> float:
        out = 0.0
        if n - x:
            out += (n - x) * math.log(1.0 - q) if q < 1.0 else -math.inf
        if x:
            out += x * math.log(q) if q > 0.0 else -math.inf
        return out

    lr = max(0.0, -2.0 * (ll(p) - ll(x / n)))
    return {"lr": lr, "p_value": float(stats.chi2.sf(lr, 1)), "rate": x / n, "expected": p * n}


def christoffersen_independence(hits: Any) -> dict[str, float]:
    """Christoffersen's independence test on a 0/1 exception series: ``{"lr", "p_value"}``.

    Compares the exception probability after an exception with that after none (a first-order
    Markov chain against independence); ``lr`` is chi-squared with 1 degree of freedom.
    """
    h = np.asarray(hits)
    if h.ndim != 1 or h.size < 2 or not np.isin(h, (0, 1)).all():
        raise ValidationError("hits", "a 0/1 series of at least 2", h.shape)
    prev, cur = h[:-1].astype(bool), h[1:].astype(bool)
    n00 = int(np.sum(~prev & ~cur))
    n01 = int(np.sum(~prev & cur))
    n10 = int(np.sum(prev & ~cur))
    n11 = int(np.sum(prev & cur))

    def xlogy(k: int, q: float) -> float:
        return k * math.log(q) if k else 0.0

    pi0 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi1 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    ll_ind = xlogy(n00 + n10, 1 - pi) + xlogy(n01 + n11, pi)
    ll_markov = (xlogy(n00, 1 - pi0) + xlogy(n01, pi0) + xlogy(n10, 1 - pi1)
                 + xlogy(n11, pi1))
    lr = max(0.0, -2.0 * (ll_ind - ll_markov))
    return {"lr": lr, "p_value": float(stats.chi2.sf(lr, 1)),
            "pi_after_none": pi0, "pi_after_exception": pi1}


def basel_zone(exceptions: int, n: int = 250) -> str:
    """Basel traffic light for a 99 % VaR over ``n`` days, scaled from 250: green up to 4
    exceptions per 250 days, yellow 5 to 9, red 10 or more."""
    if not (isinstance(n, int) and n >= 1 and isinstance(exceptions, int) and exceptions >= 0):
        raise ValidationError("exceptions, n", "ints >= 0 and >= 1", (exceptions, n))
    per250 = exceptions * 250 / n
    if per250 < 5:
        return "green"
    return "yellow" if per250 < 10 else "red"


def backtest(pnl: Any, alpha: float = 0.99, window: int = 250,
             method: str = "historical") -> dict[str, Any]:
    """Roll a VaR model over ``pnl``: each day's VaR from the previous ``window`` days, then
    count exceptions (loss > VaR) and run Kupiec, Christoffersen and the Basel light."""
    x = _series("pnl", pnl, min_len=window + 2)
    a = _alpha(alpha)
    hits = np.zeros(x.size - window, dtype=np.int8)
    for t in range(window, x.size):
        past = x[t - window:t]
        est = (historical_var_es(past, a) if method == "historical"
               else parametric_var_es(past, a, method=method))
        hits[t - window] = int(-x[t] > est.var)
    n, k = int(hits.size), int(hits.sum())
    return {
        "method": method, "alpha": a, "window": window, "days": n, "exceptions": k,
        "kupiec": kupiec_pof(k, n, a), "christoffersen": christoffersen_independence(hits),
        "basel_zone": basel_zone(k, n) if abs(a - 0.99) < 1e-12 else None,
    }
