"""Position sizing: vol targeting, Kelly, correlation haircuts, risk parity (actors.risk.sizing)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from actors.core.errors import ValidationError
from actors.risk.sizing import (
    binary_kelly,
    capped_fractional_kelly,
    correlation_scale,
    gaussian_kelly,
    inverse_vol_weights,
    max_exposure_within_vol,
    multivariate_kelly,
    risk_parity_weights,
    vol_target_exposure,
)

FAST = settings(max_examples=60, deadline=None)


@st.composite
def covariances(draw: st.DrawFn, min_n: int = 2, max_n: int = 10) -> np.ndarray:
    """``scale * (A @ A.T + eps * I)``: symmetric positive definite, any correlation sign."""
    n = draw(st.integers(min_n, max_n))
    a = draw(arrays(np.float64, (n, n), elements=st.floats(-1.0, 1.0)))
    eps = draw(st.floats(1e-3, 1.0))
    scale = draw(st.sampled_from([1e-6, 1e-3, 1.0]))
    return scale * (a @ a.T + eps * np.eye(n))


def _vol(x: np.ndarray, cov: np.ndarray) -> float:
    return math.sqrt(max(0.0, float(x @ cov @ x)))


def _risk_contributions(w: np.ndarray, cov: np.ndarray) -> np.ndarray:
    return w * (cov @ w) / float(w @ cov @ w)


# --- volatility targeting ------------------------------------------------------------------


@FAST
@given(
    target=st.just(0.0) | st.floats(1e-6, 1.0),
    sigma=st.floats(1e-4, 2.0),
    equity=st.floats(1.0, 1e9),
    cap=st.none() | st.just(0.0) | st.floats(1e-3, 1e12),
)
def test_vol_target_exposure_has_the_target_standalone_vol_or_the_cap(
    target: float, sigma: float, equity: float, cap: float | None
) -> None:
    q = vol_target_exposure(target, sigma, equity, cap)

    wanted = target * equity
    assert q >= 0.0
    if cap is not None and q == cap:
        assert q * sigma <= wanted * (1 + 1e-12)
    else:
        assert q * sigma == pytest.approx(wanted, rel=1e-12, abs=1e-300)


def test_vol_target_sizes_nothing_without_equity_and_a_known_case() -> None:
    assert vol_target_exposure(0.02, 0.04, 0.0) == 0.0
    assert vol_target_exposure(0.02, 0.04, -5_000.0) == 0.0
    assert vol_target_exposure(0.02, 0.04, 10_000.0) == pytest.approx(5_000.0)
    assert vol_target_exposure(0.02, 0.04, 10_000.0, cap=1_000.0) == 1_000.0


# --- Kelly ---------------------------------------------------------------------------------


def test_binary_kelly_known_closed_forms() -> None:
    assert binary_kelly(0.6, 0.4) == pytest.approx(0.2)
    assert binary_kelly(0.5, 0.5, payoff=2.0) == pytest.approx(0.25)
    assert binary_kelly(0.5, 0.5) == 0.0
    assert binary_kelly(0.3, 0.7, payoff=2.0) == 0.0
    assert binary_kelly(0.7, 0.0) == 1.0  # cannot lose: stake everything
    # half the time a push: the textbook formula without pushes, scaled by 1 / (p + q)
    assert binary_kelly(0.3, 0.2) == pytest.approx(0.2)


@FAST
@given(p=st.floats(0.0, 1.0), q=st.floats(0.0, 1.0), payoff=st.floats(0.1, 10.0))
def test_binary_kelly_is_zero_without_an_edge(p: float, q: float, payoff: float) -> None:
    if p + q > 1.0 or payoff * p > q:
        return

    assert binary_kelly(p, q, payoff) == 0.0


@FAST
@given(
    p=st.floats(0.01, 0.99),
    share_loss=st.floats(0.01, 1.0),
    payoff=st.floats(0.2, 5.0),
)
def test_binary_kelly_maximises_expected_log_growth(
    p: float, share_loss: float, payoff: float
) -> None:
    q = (1.0 - p) * share_loss  # the rest is a push
    grid = np.linspace(0.0, 0.999, 4_000)

    def growth(f: np.ndarray | float) -> np.ndarray | float:
        return p * np.log1p(payoff * f) + q * np.log1p(-f)

    f = binary_kelly(p, q, payoff)

    assert 0.0 <= f <= 1.0
    assert growth(f) >= float(np.max(growth(grid))) - 1e-12


def test_gaussian_kelly_is_signed_mu_over_variance() -> None:
    assert gaussian_kelly(0.05, 0.5) == pytest.approx(0.2)
    assert gaussian_kelly(-0.05, 0.5) == pytest.approx(-0.2)
    assert gaussian_kelly(0.0, 0.3) == 0.0


@FAST
@given(
    f_star=st.floats(-1e6, 1e6),
    fraction=st.floats(1e-3, 1.0),
    cap=st.floats(1e-3, 10.0),
)
def test_capped_fractional_kelly_never_exceeds_the_cap(
    f_star: float, fraction: float, cap: float
) -> None:
    f = capped_fractional_kelly(f_star, fraction, cap)

    assert abs(f) <= cap
    assert f == (fraction * f_star if abs(fraction * f_star) <= cap else math.copysign(cap, f_star))


@FAST
@given(
    mu=arrays(np.float64, st.integers(1, 8), elements=st.floats(-0.1, 0.1)),
    fraction=st.floats(0.05, 1.0),
    data=st.data(),
)
def test_multivariate_kelly_with_a_diagonal_cov_is_per_asset_kelly(
    mu: np.ndarray, fraction: float, data: st.DataObject
) -> None:
    sig = data.draw(arrays(np.float64, mu.size, elements=st.floats(0.01, 1.0)))

    f = multivariate_kelly(mu, np.diag(sig**2), fraction, gross_cap=1e12)

    np.testing.assert_allclose(f, fraction * mu / sig**2, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_correlated_copies_of_one_asset_share_one_kelly_leverage(rho: float) -> None:
    mu, sig = 0.01, 0.2
    one = mu / sig**2 * 0.5
    cov = sig**2 * np.array([[1.0, rho], [rho, 1.0]])

    f = multivariate_kelly([mu, mu], cov, 0.5, gross_cap=1e6)

    # together 2 / (1 + rho) of one asset's leverage: one asset's exactly when identical
    # (identical copies: any split is optimal, the ridge picks the even one up to rounding)
    assert f[0] == pytest.approx(f[1], rel=1e-9 if rho < 1.0 else 1e-3)
    assert f.sum() == pytest.approx(one * 2.0 / (1.0 + rho), rel=1e-9)


@FAST
@given(cov=covariances(1, 8), data=st.data(), gross_cap=st.floats(0.01, 5.0))
def test_multivariate_kelly_respects_the_gross_cap_by_scaling_down_only(
    cov: np.ndarray, data: st.DataObject, gross_cap: float
) -> None:
    n = cov.shape[0]
    mu = data.draw(arrays(np.float64, n, elements=st.floats(-1.0, 1.0))) * float(cov[0, 0])

    free = multivariate_kelly(mu, cov, 0.5, gross_cap=1e300)
    capped = multivariate_kelly(mu, cov, 0.5, gross_cap=gross_cap)

    assert np.abs(capped).sum() <= gross_cap * (1 + 1e-12)
    scale = min(1.0, gross_cap / max(np.abs(free).sum(), 1e-300))
    np.testing.assert_allclose(capped, scale * free, rtol=1e-12, atol=1e-300)


# --- correlation haircut -------------------------------------------------------------------


def test_correlation_scale_is_one_for_an_empty_or_uncorrelated_book() -> None:
    cov = np.diag([0.04, 0.01, 0.09])

    assert correlation_scale(0, [0.0, 0.0, 0.0], cov) == 1.0
    assert correlation_scale(0, [5_000.0, 0.0, 0.0], cov) == 1.0  # only asset i itself
    assert correlation_scale(0, [0.0, 1_000.0, -3_000.0], cov) == 1.0


@pytest.mark.parametrize("rho", [0.2, 0.5, 0.9, 1.0])
def test_correlation_scale_shrinks_for_a_positively_correlated_book(rho: float) -> None:
    cov = np.array([[0.04, rho * 0.2 * 0.1], [rho * 0.2 * 0.1, 0.01]])

    long_book = correlation_scale(0, [0.0, 10_000.0], cov)
    hedged_book = correlation_scale(0, [0.0, -10_000.0], cov)

    assert long_book == pytest.approx(1.0 / (1.0 + rho), rel=1e-12)
    assert long_book < 1.0
    assert hedged_book == 1.0  # a hedge is not penalised


@FAST
@given(cov=covariances(1, 8), data=st.data())
def test_correlation_scale_is_in_half_to_one_and_ignores_asset_i(
    cov: np.ndarray, data: st.DataObject
) -> None:
    n = cov.shape[0]
    x = data.draw(arrays(np.float64, n, elements=st.floats(-1e6, 1e6)))
    i = data.draw(st.integers(0, n - 1))

    s = correlation_scale(i, x, cov)
    y = x.copy()
    y[i] = 0.0

    assert 0.5 <= s <= 1.0
    assert correlation_scale(i, y, cov) == s


# --- volatility budget ---------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    cov=covariances(1, 6),
    data=st.data(),
    direction=st.sampled_from([1, -1]),
    budget_share=st.floats(0.05, 3.0),
)
def test_max_exposure_within_vol_fills_the_budget_and_never_exceeds_it(
    cov: np.ndarray, data: st.DataObject, direction: int, budget_share: float
) -> None:
    n = cov.shape[0]
    x = data.draw(arrays(np.float64, n, elements=st.floats(-1e6, 1e6)))
    i = data.draw(st.integers(0, n - 1))
    sd = np.sqrt(np.diag(cov))
    # a budget on the scale of the book's undiversified risk (plus one unit of asset i)
    budget = budget_share * float(np.abs(x) @ sd + 1e3 * sd[i])
    e = np.zeros(n)
    e[i] = direction

    q = max_exposure_within_vol(i, direction, x, cov, budget)

    assert q >= 0.0
    if q > 0.0:
        assert _vol(x + q * e, cov) == pytest.approx(budget, rel=1e-9)
        # the largest such trade: variance is convex in q, so beyond the root it is over budget
        assert _vol(x + q * (1 + 1e-6) * e, cov) > budget
    elif _vol(x, cov) > budget:
        # over budget and no trade brings it back within: even the variance-minimising trade
        # in this direction (none when the first step adds risk) leaves it over budget
        best = max(0.0, -direction * float(cov[i] @ x) / float(cov[i, i]))
        assert _vol(x + best * e, cov) > budget * (1 - 1e-9)
    else:
        assert _vol(x, cov) == pytest.approx(budget, rel=1e-9)  # exactly at the budget


def test_max_exposure_within_vol_known_cases() -> None:
    cov = np.diag([0.04, 0.04])

    # from flat: budget / sigma
    assert max_exposure_within_vol(0, 1, [0.0, 0.0], cov, 100.0) == pytest.approx(500.0)
    # long 1000 at sigma 0.2 is 200 of vol: over a budget of 100; buying more adds risk
    assert max_exposure_within_vol(0, 1, [1_000.0, 0.0], cov, 100.0) == 0.0
    # selling first reduces risk, passes through flat and may go short to -500: q = 1500
    assert max_exposure_within_vol(0, -1, [1_000.0, 0.0], cov, 100.0) == pytest.approx(1_500.0)
    # the other leg alone is over budget: no trade in asset 0 can help
    assert max_exposure_within_vol(0, -1, [0.0, 1_000.0], cov, 100.0) == 0.0


# --- risk parity ---------------------------------------------------------------------------


@FAST
@given(cov=covariances(2, 10))
def test_risk_parity_equalises_risk_contributions(cov: np.ndarray) -> None:
    w = risk_parity_weights(cov)

    n = cov.shape[0]
    assert np.all(w > 0.0) and w.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(_risk_contributions(w, cov), np.full(n, 1.0 / n), atol=1e-8)


@FAST
@given(cov=covariances(2, 10), data=st.data())
def test_risk_parity_meets_arbitrary_risk_budgets(cov: np.ndarray, data: st.DataObject) -> None:
    n = cov.shape[0]
    raw = data.draw(arrays(np.float64, n, elements=st.floats(0.05, 1.0)))
    budgets = raw / raw.sum()

    w = risk_parity_weights(cov, budgets)

    assert np.all(w > 0.0) and w.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(_risk_contributions(w, cov), budgets, atol=1e-8)


@FAST
@given(sigmas=arrays(np.float64, st.integers(1, 10), elements=st.floats(1e-3, 2.0)))
def test_risk_parity_of_a_diagonal_cov_is_inverse_vol(sigmas: np.ndarray) -> None:
    w = risk_parity_weights(np.diag(sigmas**2))

    np.testing.assert_allclose(w, inverse_vol_weights(sigmas), rtol=1e-9)
    np.testing.assert_allclose(w * sigmas, np.full(sigmas.size, 1.0 / np.sum(1.0 / sigmas)))


def test_risk_parity_fails_loudly_where_no_solution_exists() -> None:
    # perfectly negatively correlated: a long-only mix has zero risk, no budgets to meet
    with pytest.raises(ValidationError, match="cov must be one with a risk-budget portfolio"):
        risk_parity_weights([[1.0, -1.0], [-1.0, 1.0]])
    with pytest.raises(ValidationError, match="converged"):
        risk_parity_weights([[1.0, 0.9], [0.9, 4.0]], [0.1, 0.9], max_iter=1)


def test_inverse_vol_weights_sum_to_one() -> None:
    np.testing.assert_allclose(inverse_vol_weights([0.1, 0.2, 0.4]), [4 / 7, 2 / 7, 1 / 7])


# --- validation ----------------------------------------------------------------------------


def test_bad_input_names_the_field() -> None:
    cov = np.diag([0.04, 0.01])
    with pytest.raises(ValidationError, match="sigma must be > 0"):
        vol_target_exposure(0.1, 0.0, 1e4)
    with pytest.raises(ValidationError, match="sigma must be finite"):
        vol_target_exposure(0.1, float("nan"), 1e4)
    with pytest.raises(ValidationError, match="cap must be >= 0"):
        vol_target_exposure(0.1, 0.2, 1e4, cap=-1.0)
    with pytest.raises(ValidationError, match=r"p_win \+ p_loss must be <= 1"):
        binary_kelly(0.7, 0.5)
    with pytest.raises(ValidationError, match="payoff must be > 0"):
        binary_kelly(0.6, 0.4, payoff=0.0)
    with pytest.raises(ValidationError, match="sigma must be > 0"):
        gaussian_kelly(0.1, -0.2)
    with pytest.raises(ValidationError, match=r"fraction must be in \(0, 1\]"):
        capped_fractional_kelly(0.3, fraction=1.5)
    with pytest.raises(ValidationError, match="cap must be > 0"):
        capped_fractional_kelly(0.3, cap=0.0)
    with pytest.raises(ValidationError, match=r"cov must be of shape \(3, 3\)"):
        multivariate_kelly([0.1, 0.1, 0.1], cov)
    with pytest.raises(ValidationError, match="mu must be finite"):
        multivariate_kelly([0.1, float("nan")], cov)
    with pytest.raises(ValidationError, match="gross_cap must be > 0"):
        multivariate_kelly([0.1, 0.1], cov, gross_cap=0.0)
    with pytest.raises(ValidationError, match="cov must be symmetric"):
        correlation_scale(0, [1.0, 1.0], [[0.04, 0.01], [0.0, 0.01]])
    with pytest.raises(ValidationError, match="cov must be positive semi-definite"):
        correlation_scale(0, [1.0, 1.0], [[0.01, 0.05], [0.05, 0.01]])
    with pytest.raises(ValidationError, match=r"i must be an int in \[0, 2\)"):
        correlation_scale(2, [1.0, 1.0], cov)
    with pytest.raises(ValidationError, match="exposures must be a 1-D array of length 2"):
        correlation_scale(0, [1.0], cov)
    with pytest.raises(ValidationError, match="cov must be positive on the diagonal"):
        max_exposure_within_vol(0, 1, [0.0, 0.0], np.diag([0.0, 0.01]), 100.0)
    with pytest.raises(ValidationError, match="direction must be"):
        max_exposure_within_vol(0, 0, [0.0, 0.0], cov, 100.0)
    with pytest.raises(ValidationError, match="vol_budget must be > 0"):
        max_exposure_within_vol(0, 1, [0.0, 0.0], cov, -1.0)
    with pytest.raises(ValidationError, match="budgets must be summing to 1"):
        risk_parity_weights(cov, [0.5, 0.6])
    with pytest.raises(ValidationError, match="budgets must be > 0"):
        risk_parity_weights(cov, [1.5, -0.5])
    with pytest.raises(ValidationError, match="sigmas must be > 0"):
        inverse_vol_weights([0.1, 0.0])
