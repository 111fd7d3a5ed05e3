"""Portfolio VaR / ES estimators and their backtests (actors.risk.var)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from actors.core.errors import ValidationError
from actors.risk.var import (
    backtest,
    basel_zone,
    christoffersen_independence,
    historical_var_es,
    kupiec_pof,
    monte_carlo_var_es,
    parametric_var_es,
)


def test_historical_var_is_the_loss_quantile_and_es_the_tail_mean() -> None:
    pnl = np.r_[-np.arange(1.0, 11.0), np.ones(90)]

    est = historical_var_es(pnl, 0.95)

    assert est.var == 6.0 and est.es == pytest.approx(8.0)


def test_historical_horizon_sums_overlapping_periods() -> None:
    pnl = np.r_[np.full(50, -1.0), np.full(50, 1.0)]

    assert historical_var_es(pnl, 0.99, horizon=5).var == pytest.approx(5.0)


def test_parametric_normal_matches_theory_on_a_large_normal_sample() -> None:
    x = np.random.default_rng(1).standard_normal(200_000)

    est = parametric_var_es(x, 0.99)
    ten = parametric_var_es(x, 0.99, horizon=10)

    assert est.var == pytest.approx(stats.norm.ppf(0.99), rel=0.01)
    assert est.es == pytest.approx(stats.norm.pdf(stats.norm.ppf(0.99)) / 0.01, rel=0.01)
    assert ten.var == pytest.approx(est.var * math.sqrt(10), rel=0.01)


def test_cornish_fisher_widens_var_for_a_fat_left_tail() -> None:
    rng = np.random.default_rng(2)
    x = np.where(rng.random(50_000) < 0.03, -rng.exponential(4.0, 50_000),
                 rng.normal(0.05, 0.5, 50_000))

    normal = parametric_var_es(x, 0.99)
    cf = parametric_var_es(x, 0.99, method="cornish_fisher")

    assert cf.var > normal.var and cf.es >= cf.var
    # closer to the empirical quantile than the normal model
    hist = historical_var_es(x, 0.99)
    assert abs(cf.var - hist.var) < abs(normal.var - hist.var)


def test_monte_carlo_matches_the_normal_formula_and_fattens_with_t_tails() -> None:
    rng = np.random.default_rng(3)
    r = rng.multivariate_normal([0, 0], [[1e-4, 5e-5], [5e-5, 4e-4]], size=5_000)
    pos = np.array([1_000_000.0, -250_000.0])
    sd = math.sqrt(pos @ np.cov(r, rowvar=False) @ pos)

    normal = monte_carlo_var_es(pos, r, 0.99, paths=200_000, dof=None, seed=1)
    fat = monte_carlo_var_es(pos, r, 0.999, paths=200_000, dof=4, seed=1)
    thin = monte_carlo_var_es(pos, r, 0.999, paths=200_000, dof=None, seed=1)

    assert normal.var == pytest.approx(stats.norm.ppf(0.99) * sd, rel=0.02)
    assert fat.var > thin.var
    assert monte_carlo_var_es(pos, r, seed=7) == monte_carlo_var_es(pos, r, seed=7)


@settings(max_examples=60, deadline=None)
@given(
    pnl=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=30, max_size=300),
    alpha=st.sampled_from([0.9, 0.95, 0.975, 0.99]),
)
def test_es_is_never_below_var_and_var_grows_with_confidence(pnl, alpha) -> None:
    for est in (historical_var_es(pnl, alpha), parametric_var_es(pnl, alpha),
                parametric_var_es(pnl, alpha, method="cornish_fisher")):
        assert est.es >= est.var - 1e-9 * max(1.0, abs(est.var))
    assert historical_var_es(pnl, 0.99).var >= historical_var_es(pnl, 0.9).var


def test_kupiec_accepts_the_expected_rate_and_rejects_too_many_exceptions() -> None:
    assert kupiec_pof(10, 1_000, 0.99)["lr"] == pytest.approx(0.0, abs=1e-12)
    bad = kupiec_pof(10, 250, 0.99)
    assert bad["p_value"] < 0.01 and bad["expected"] == pytest.approx(2.5)
    assert kupiec_pof(2, 250, 0.99)["p_value"] > 0.05
    # too few is also a failure of the model (too conservative): 0 in 250, p = 0.025
    assert kupiec_pof(0, 250, 0.99)["p_value"] == pytest.approx(0.0249, abs=1e-3)


def test_christoffersen_flags_clustered_exceptions() -> None:
    clustered = np.zeros(500, dtype=int)
    clustered[100:110] = 1
    spread = np.zeros(500, dtype=int)
    spread[::50] = 1

    assert christoffersen_independence(clustered)["p_value"] < 0.01
    assert christoffersen_independence(spread)["p_value"] > 0.05


@pytest.mark.parametrize(("k", "zone"), [(0, "green"), (4, "green"), (5, "yellow"),
                                          (9, "yellow"), (10, "red")])
def test_basel_traffic_light_zones(k: int, zone: str) -> None:
    assert basel_zone(k, 250) == zone


def test_backtest_of_a_correct_model_is_green_and_a_regime_change_is_caught() -> None:
    rng = np.random.default_rng(5)
    calm = rng.standard_normal(1_250)
    # volatility rising all the time: a 250-day window always lags it
    shock = rng.standard_normal(1_250) * np.exp(np.arange(1_250) / 150.0)

    good = backtest(calm, 0.99, window=250)
    bad = backtest(shock, 0.99, window=250)

    assert good["days"] == 1_000 and good["kupiec"]["p_value"] > 0.01
    assert good["basel_zone"] in ("green", "yellow")
    assert bad["exceptions"] > 2 * good["exceptions"] and bad["basel_zone"] == "red"
    assert bad["kupiec"]["p_value"] < 0.01
    assert bad["christoffersen"]["lr"] >= 0


def test_bad_input_names_the_field() -> None:
    with pytest.raises(ValidationError, match="alpha must be in"):
        historical_var_es([1.0, 2.0, 3.0], 1.5)
    with pytest.raises(ValidationError, match="pnl must be finite"):
        historical_var_es([1.0, float("nan"), 3.0], 0.99)
    with pytest.raises(ValidationError, match="horizon must be an int >= 1"):
        parametric_var_es([1.0, 2.0, 3.0, 4.0], 0.99, horizon=0)
    with pytest.raises(ValidationError, match="method must be"):
        parametric_var_es([1.0, 2.0, 3.0, 4.0], 0.99, method="garch")
    with pytest.raises(ValidationError, match=r"returns must be of shape \(T >= 2, 2\)"):
        monte_carlo_var_es([1.0, 2.0], np.zeros((10, 3)))
    with pytest.raises(ValidationError, match="dof must be > 2"):
        monte_carlo_var_es([1.0], np.zeros((10, 1)), dof=2.0)
    with pytest.raises(ValidationError, match="hits must be a 0/1 series"):
        christoffersen_independence([0, 2, 1])
