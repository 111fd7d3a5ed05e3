"""Position sizing: volatility targeting, Kelly fractions, correlation haircuts, risk parity.

Exposures are signed quote-currency position values (``lots * lot_size * price``); returns,
volatilities and covariances are per whatever horizon the caller chose, the same for every
argument of one call. A volatility in quote currency is ``sqrt(x' cov x)`` for an exposure
vector ``x``.

Sizing rules:

* :func:`vol_target_exposure`: the exposure whose standalone volatility is a target share of
  equity;
* :func:`binary_kelly`, :func:`gaussian_kelly`, :func:`capped_fractional_kelly`: the growth-
  optimal fraction of a bet or a Gaussian asset, and the fractional, capped version to trade;
* :func:`multivariate_kelly`: the Kelly leverage vector ``inv(cov) @ mu``, which discounts
  correlated edges (two copies of one asset get the leverage of one), under a gross cap;
* :func:`correlation_scale`, :func:`max_exposure_within_vol`: how much a new exposure in one
  asset should shrink for the risk it shares with the book, and how far it can go before the
  book's volatility reaches a budget;
* :func:`risk_parity_weights`, :func:`inverse_vol_weights`: long-only weights by risk budget.

Bad input raises :class:`~actors.core.errors.ValidationError` naming the field, rule and value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from actors.core.errors import ValidationError

# Relative tolerances for a covariance matrix's symmetry and negative eigenvalues.
_SYM_RTOL = 1e-10
_PSD_RTOL = 1e-10
# Newton decrement below which Spinu's damped step becomes a full step (0.95 * (3 - sqrt 5) / 2).
_FULL_NEWTON = 0.95 * (3.0 - math.sqrt(5.0)) / 2.0


def _finite(name: str, x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float | np.integer | np.floating):
        raise ValidationError(name, "a real number", x)
    v = float(x)
    if not math.isfinite(v):
        raise ValidationError(name, "finite", x)
    return v


def _positive(name: str, x: Any) -> float:
    v = _finite(name, x)
    if v <= 0.0:
        raise ValidationError(name, "> 0", x)
    return v


def _fraction(x: Any) -> float:
    v = _finite("fraction", x)
    if not 0.0 < v <= 1.0:
        raise ValidationError("fraction", "in (0, 1]", x)
    return v


def _vector(name: str, x: Any, n: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size < 1 or (n is not None and a.size != n):
        rule = "a non-empty 1-D array" if n is None else f"a 1-D array of length {n}"
        raise ValidationError(name, rule, a.shape)
    if not np.all(np.isfinite(a)):
        raise ValidationError(name, "finite", int(np.count_nonzero(~np.isfinite(a))))
    return a


def _cov(cov: Any, n: int | None = None) -> np.ndarray:
    """A finite, symmetric, positive semi-definite covariance with positive variances."""
    c = np.asarray(cov, dtype=np.float64)
    if (
        c.ndim != 2
        or c.shape[0] != c.shape[1]
        or c.shape[0] < 1
        or (n is not None and c.shape[0] != n)
    ):
        rule = "a square 2-D array" if n is None else f"of shape ({n}, {n})"
        raise ValidationError("cov", rule, c.shape)
    if not np.all(np.isfinite(c)):
        raise ValidationError("cov", "finite", int(np.count_nonzero(~np.isfinite(c))))
    diag = np.diag(c)
    if np.any(diag <= 0.0):
        raise ValidationError("cov", "positive on the diagonal", float(diag.min()))
    scale = float(diag.max())
    asym = float(np.max(np.abs(c - c.T)))
    if asym > _SYM_RTOL * scale:
        raise ValidationError("cov", "symmetric", f"max |cov - cov.T| = {asym:.3g}")
    c = 0.5 * (c + c.T)
    low = float(np.linalg.eigvalsh(c)[0])
    if low < -_PSD_RTOL * scale:
        raise ValidationError("cov", "positive semi-definite", f"min eigenvalue {low:.3g}")
    return c


def _index(i: Any, n: int) -> int:
    if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= i < n:
        raise ValidationError("i", f"an int in [0, {n})", i)
    return int(i)


def vol_target_exposure(
    target_vol: float, sigma: float, equity: float, cap: float | None = None
) -> float:
    """Size one asset so that its standalone volatility is ``target_vol * equity``.

    Args:
        target_vol: Target volatility as a fraction of equity (>= 0), per the horizon of sigma.
        sigma: The asset's return volatility (> 0) over the same horizon.
        equity: Account equity (quote); none (<= 0) sizes to 0.
        cap: Largest absolute exposure (quote, >= 0), or None for no cap.

    Returns:
        The absolute exposure ``min(target_vol * equity / sigma, cap)`` (quote, >= 0).

    Example:
        >>> vol_target_exposure(0.02, 0.04, 10_000.0)
        5000.0
    """
    t = _finite("target_vol", target_vol)
    if t < 0.0:
        raise ValidationError("target_vol", ">= 0", target_vol)
    s = _positive("sigma", sigma)
    e = _finite("equity", equity)
    c = None if cap is None else _finite("cap", cap)
    if c is not None and c < 0.0:
        raise ValidationError("cap", ">= 0 or None", cap)
    if e <= 0.0:
        return 0.0
    q = t * e / s
    return q if c is None else min(q, c)


def binary_kelly(p_win: float, p_loss: float, payoff: float = 1.0) -> float:
    """Kelly fraction of a bet that wins ``payoff`` per unit staked or loses the stake.

    The rest of the probability, ``1 - p_win - p_loss``, is a push (stake returned). The
    fraction maximising ``p_win * log(1 + payoff * f) + p_loss * log(1 - f)`` is

        ``f* = (payoff * p_win - p_loss) / (payoff * (p_win + p_loss))``,

    floored at 0 (no edge, no bet). Without pushes this is the textbook
    ``(payoff * p_win - p_loss) / payoff``; pushes scale it up by ``1 / (p_win + p_loss)``,
    because a bet that is often void risks the stake less often.

    Example:
        >>> round(binary_kelly(0.6, 0.4), 12)
        0.2
    """
    p = _finite("p_win", p_win)
    q = _finite("p_loss", p_loss)
    b = _positive("payoff", payoff)
    if not 0.0 <= p <= 1.0:
        raise ValidationError("p_win", "in [0, 1]", p_win)
    if not 0.0 <= q <= 1.0:
        raise ValidationError("p_loss", "in [0, 1]", p_loss)
    if p + q > 1.0 + 1e-12:
        raise ValidationError("p_win + p_loss", "<= 1", p + q)
    edge = b * p - q
    if edge <= 0.0:
        return 0.0
    return min(1.0, edge / (b * (p + q)))


def gaussian_kelly(mu: float, sigma: float) -> float:
    """Continuous-time Kelly leverage ``mu / sigma**2`` (signed: a negative edge sells).

    Example:
        >>> gaussian_kelly(0.05, 0.5)
        0.2
    """
    m = _finite("mu", mu)
    s = _positive("sigma", sigma)
    return m / (s * s)


def capped_fractional_kelly(f_star: float, fraction: float = 0.5, cap: float = 1.0) -> float:
    """Scale a Kelly fraction by ``fraction`` (half Kelly by default) and clip to ``[-cap, cap]``.

    Example:
        >>> capped_fractional_kelly(3.0, 0.5, 1.0)
        1.0
    """
    f = _finite("f_star", f_star)
    k = _fraction(fraction)
    c = _positive("cap", cap)
    return min(c, max(-c, k * f))


def multivariate_kelly(
    mu: Any, cov: Any, fraction: float = 0.5, gross_cap: float = 1.0, ridge: float = 1e-12
) -> np.ndarray:
    """Fractional Kelly leverage vector ``fraction * inv(cov) @ mu`` under a gross cap.

    Solving against the covariance (rather than sizing each asset alone with
    ``mu_i / sigma_i**2``) reduces leverage for correlated exposure: two perfectly correlated
    assets with the same edge get, together, the leverage of one; at correlation ``rho`` they
    get ``2 / (1 + rho)`` times it. The system is solved in correlation form,
    ``(corr + ridge * I) z = mu / sigma`` with ``f = fraction * z / sigma``, i.e. ``ridge`` times
    each asset's own variance is added to the diagonal: a singular covariance still has a
    (large but finite) solution, and a low-variance asset is not swamped by a ridge scaled to
    the others. The result is then scaled down, never up, so that ``sum(|f|) <= gross_cap``.

    Args:
        mu: ``(n,)`` expected returns over the horizon.
        cov: ``(n, n)`` covariance of returns over the same horizon (PSD, positive diagonal).
        fraction: Kelly fraction in (0, 1].
        gross_cap: Largest ``sum(|f|)`` (> 0).
        ridge: Diagonal loading relative to each variance (>= 0).

    Returns:
        ``(n,)`` signed leverages (exposure / equity).

    Example:
        >>> f = multivariate_kelly([0.01, 0.01], [[0.01, 0.0], [0.0, 0.04]], 1.0, 10.0)
        >>> f.round(9).tolist()
        [1.0, 0.25]
    """
    m = _vector("mu", mu)
    c = _cov(cov, m.size)
    k = _fraction(fraction)
    g = _positive("gross_cap", gross_cap)
    r = _finite("ridge", ridge)
    if r < 0.0:
        raise ValidationError("ridge", ">= 0", ridge)
    sd = np.sqrt(np.diag(c))
    loaded = c / np.outer(sd, sd) + r * np.eye(m.size)
    try:
        f = k * np.linalg.solve(loaded, m / sd) / sd
    except np.linalg.LinAlgError as exc:
        raise ValidationError("cov", "non-singular after the ridge (raise ridge)", ridge) from exc
    gross = float(np.sum(np.abs(f)))
    if not math.isfinite(gross):
        raise ValidationError("cov", "non-singular after the ridge (raise ridge)", ridge)
    return f * (g / gross) if gross > g else f


def correlation_scale(i: int, exposures: Any, cov: Any) -> float:
    """Haircut for a new exposure in asset ``i`` for the risk it shares with the book.

    With ``x`` the existing exposures with ``x[i]`` set to 0 (the book excluding ``i``), the
    correlation between asset ``i``'s return and the book's P&L is

        ``rho_i = (cov @ x)[i] / sqrt(cov[i, i] * x' cov x)``

    (0 when ``x' cov x`` is 0: an empty or riskless book), and the factor is

        ``1 / (1 + max(0, rho_i))``,

    so 1 for an uncorrelated or hedging asset, falling to 1/2 for one perfectly correlated
    with the book: a position that doubles existing risk is sized as half a fresh one.

    Returns:
        A factor in [0.5, 1].
    """
    c = _cov(cov)
    n = c.shape[0]
    x = _vector("exposures", exposures, n).copy()
    j = _index(i, n)
    x[j] = 0.0
    top = float(np.max(np.abs(x)))
    if top == 0.0:
        return 1.0
    x /= top  # rho does not depend on the book's size; this keeps x' cov x from underflowing
    var_book = float(x @ c @ x)
    # riskless within rounding of the undiversified variance
    gross_sd = float(np.abs(x) @ np.sqrt(np.diag(c)))
    if var_book <= 1e-12 * gross_sd * gross_sd:
        return 1.0
    rho = float((c[j] @ x) / math.sqrt(c[j, j] * var_book))
    return 1.0 / (1.0 + min(1.0, max(0.0, rho)))


def max_exposure_within_vol(
    i: int, direction: int, exposures: Any, cov: Any, vol_budget: float
) -> float:
    """Largest trade ``q >= 0`` in asset ``i`` that keeps the book's volatility within budget.

    With ``x(q) = exposures + direction * q * e_i``, the variance is the quadratic

        ``V(q) = a q**2 + 2 b q + V0``,  ``a = cov[i, i]``,
        ``b = direction * (cov @ exposures)[i]``,  ``V0 = exposures' cov exposures``,

    and ``q = (-b + sqrt(b**2 - a (V0 - B**2))) / a`` is its larger root at ``V = B**2``
    (``B = vol_budget``). Within budget now (``V0 <= B**2``) the answer is that root; over
    budget, it is still that root when the trade first reduces risk (``b < 0``) and can bring
    it within budget (real roots), otherwise 0.

    Args:
        i: Asset index.
        direction: +1 to buy, -1 to sell.
        exposures: ``(n,)`` current signed exposures (quote).
        cov: ``(n, n)`` return covariance over the horizon of the budget.
        vol_budget: Largest portfolio volatility (quote, > 0).

    Returns:
        The largest absolute exposure change (quote, >= 0).

    Example:
        >>> max_exposure_within_vol(0, 1, [0.0, 0.0], [[0.04, 0.0], [0.0, 0.04]], 100.0)
        500.0
    """
    if isinstance(direction, bool) or direction not in (1, -1):
        raise ValidationError("direction", "+1 or -1", direction)
    c = _cov(cov)  # rejects cov[i, i] <= 0 with every other non-positive variance
    n = c.shape[0]
    j = _index(i, n)
    x = _vector("exposures", exposures, n)
    budget = _positive("vol_budget", vol_budget)
    a = float(c[j, j])
    b = direction * float(c[j] @ x)
    gap = float(x @ c @ x) - budget * budget  # V0 - B**2
    disc = b * b - a * gap
    if disc < 0.0 or (gap > 0.0 and b >= 0.0):
        return 0.0
    root = math.sqrt(disc)
    # the larger root, without cancellation: -gap / (b + root) == (-b + root) / a
    q = (-b + root) / a if b <= 0.0 else -gap / (b + root)
    return max(0.0, q)


def risk_parity_weights(
    cov: Any, budgets: Any = None, tol: float = 1e-10, max_iter: int = 10_000
) -> np.ndarray:
    """Long-only weights whose risk contributions equal the budgets (equal risk by default).

    The risk contribution of asset ``j`` is ``w_j (cov @ w)_j / (w' cov w)``. Following Spinu
    (2013), the solution is ``y / sum(y)`` for the minimiser ``y > 0`` of the strictly convex

        ``F(y) = y' cov y / 2 - sum_j b_j log(y_j)``,

    whose first-order condition ``y_j (cov @ y)_j = b_j`` is the budget equation. ``F`` is
    minimised by Newton's method with Spinu's damped step (``1 / (1 + decrement)``) until the
    decrement is small, which keeps ``y`` positive and converges quadratically.

    Args:
        cov: ``(n, n)`` covariance (symmetric PSD, positive diagonal).
        budgets: ``(n,)`` positive risk budgets summing to 1; None for ``1 / n`` each.
        tol: Largest allowed ``|risk contribution - budget|``.
        max_iter: Newton iterations before giving up.

    Returns:
        ``(n,)`` positive weights summing to 1.

    Raises:
        ValidationError: Bad input, or no convergence (e.g. a singular ``cov`` under which a
            long-only portfolio has zero risk, so no risk budgeting exists).

    Example:
        >>> risk_parity_weights([[0.01, 0.0], [0.0, 0.04]]).round(12).tolist()
        [0.666666666667, 0.333333333333]
    """
    c = _cov(cov)
    n = c.shape[0]
    if budgets is None:
        bud = np.full(n, 1.0 / n)
    else:
        bud = _vector("budgets", budgets, n)
        if np.any(bud <= 0.0):
            raise ValidationError("budgets", "> 0", float(bud.min()))
        if abs(float(bud.sum()) - 1.0) > 1e-9:
            raise ValidationError("budgets", "summing to 1", float(bud.sum()))
        bud = bud / bud.sum()
    t = _positive("tol", tol)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValidationError("max_iter", "an int >= 1", max_iter)

    # Solve in correlation units (y_j * sigma_j), which the risk contributions do not change.
    sd = np.sqrt(np.diag(c))
    s = c / np.outer(sd, sd)
    # F is self-concordant once every log term has weight >= 1; Newton's direction is the same
    # for F / min(b), whose decrement decides between the damped and the full step.
    kappa = 1.0 / float(bud.min())
    y = np.sqrt(bud)  # the exact answer for uncorrelated assets
    resid = math.inf
    for _ in range(max_iter):
        sy = s @ y
        var = float(y @ sy)
        if not var > 0.0:
            break  # a long-only portfolio without risk: no budgets to meet
        resid = float(np.max(np.abs(y * sy / var - bud)))
        if resid <= t:
            w = y / sd
            return w / w.sum()
        grad = sy - bud / y
        hess = s + np.diag(bud / (y * y))
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            break
        dec = math.sqrt(max(0.0, kappa * float(grad @ step)))
        if dec > _FULL_NEWTON:
            y = y - step / (1.0 + dec)
        elif np.all(np.abs(step) <= 1e-15 * y):
            break  # converged as far as rounding allows, and not within tol
        else:
            y = y - step
        if not (np.all(np.isfinite(y)) and np.all(y > 0.0)):
            break
    raise ValidationError(
        "cov", f"one with a risk-budget portfolio (converged to tol {t:g})", f"residual {resid:.3g}"
    )


def inverse_vol_weights(sigmas: Any) -> np.ndarray:
    """Weights proportional to ``1 / sigma_j``, summing to 1 (risk parity for zero correlation).

    Example:
        >>> inverse_vol_weights([0.1, 0.2]).round(12).tolist()
        [0.666666666667, 0.333333333333]
    """
    s = _vector("sigmas", sigmas)
    if np.any(s <= 0.0):
        raise ValidationError("sigmas", "> 0", float(s.min()))
    inv = 1.0 / s
    return inv / inv.sum()
