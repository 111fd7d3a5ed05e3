"""Portfolio-risk monitor: return history, stress, heat, report, delta-normal VaR
(actors.risk.monitor)."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.errors import ValidationError
from actors.risk import monitor
from actors.risk.monitor import (
    DeltaNormalVar,
    ReturnHistory,
    StressScenario,
    correlation_alerts,
    historical_stress_scenarios,
    normal_var_es_factors,
    portfolio_heat,
    risk_report,
    stress_test,
)

S = 1_000_000_000  # one-second samples


def _random_walk_history(
    n: int, symbols: tuple[str, ...] = ("A", "B", "C"), window: int = 500, seed: int = 0
) -> ReturnHistory:
    """A history fed ``n + 1`` samples of correlated random-walk mids, one call per sample."""
    rng = np.random.default_rng(seed)
    k = len(symbols)
    shocks = rng.standard_normal((n, k)) * 0.01
    shocks[:, 1] = 0.9 * shocks[:, 0] + 0.1 * shocks[:, 1]  # B follows A
    mids = 100.0 * np.exp(np.vstack([np.zeros(k), np.cumsum(shocks, axis=0)]))
    h = ReturnHistory(symbols, sample_ns=S, window=window)
    for t, row in enumerate(mids):
        h.on_marks(t * S, dict(zip(symbols, row, strict=True)))
    return h


# ---------------------------------------------------------------- ReturnHistory sampling


def test_history_samples_on_the_grid_set_by_the_first_call() -> None:
    h = ReturnHistory(["A"], sample_ns=100, window=10)

    taken = [h.on_marks(t, {"A": 100.0 + t}) for t in (7, 50, 106, 107, 150, 207)]

    assert taken == [False, False, False, True, False, True]
    # rows at 107 (mid 207 vs 107 at t0) and 207 (307 vs 207); the 50 ms mark is carried
    assert h.timestamps().tolist() == [107, 207]
    np.testing.assert_allclose(h.returns()[:, 0], [207 / 107 - 1, 307 / 207 - 1])


def test_history_gap_adds_one_row_spanning_it_and_realigns_to_the_grid() -> None:
    h = ReturnHistory(["A"], sample_ns=100, window=10)
    h.on_marks(0, {"A": 100.0})

    gap = h.on_marks(350, {"A": 110.0})
    before_next_boundary = h.on_marks(399, {"A": 111.0})
    next_boundary = h.on_marks(400, {"A": 121.0})

    assert (gap, before_next_boundary, next_boundary) == (True, False, True)
    assert h.n_returns == 2
    np.testing.assert_allclose(h.returns()[:, 0], [0.10, 0.10])


def test_history_carries_forward_the_last_mid_of_a_quiet_symbol() -> None:
    h = ReturnHistory(["A", "B"], sample_ns=10, window=10)
    h.on_marks(0, {"A": 100.0, "B": 50.0})

    h.on_marks(10, {"A": 101.0})  # B quiet
    h.on_marks(15, {"B": 55.0})
    h.on_marks(20, {})

    np.testing.assert_allclose(h.returns(), [[0.01, 0.0], [0.0, 0.10]])


def test_history_returns_are_nan_until_every_symbol_has_a_mid() -> None:
    h = ReturnHistory(["A", "B"], sample_ns=10, window=10)
    h.on_marks(0, {"A": 100.0})

    h.on_marks(10, {"A": 101.0})  # B never seen: incomplete
    h.on_marks(20, {"B": 50.0})  # B's first mid, no previous sample: incomplete
    assert h.n_returns == 0 and h.returns().shape == (0, 2)
    h.on_marks(30, {"B": 51.0})

    assert h.n_returns == 1
    np.testing.assert_allclose(h.returns(), [[0.0, 0.02]])
    assert h.snapshot()["rows"][0][1] is None  # the incomplete rows are kept, NaN as None


def test_history_ring_keeps_the_latest_window_rows_oldest_first() -> None:
    h = ReturnHistory(["A"], sample_ns=1, window=4)
    mids = 100.0 * 1.01 ** np.arange(11) * (1 + 0.001 * np.arange(11) ** 2)

    for t, m in enumerate(mids):
        h.on_marks(t, {"A": float(m)})

    expected = mids[1:] / mids[:-1] - 1
    assert h.n_returns == 4
    np.testing.assert_allclose(h.returns()[:, 0], expected[-4:])
    assert h.timestamps().tolist() == [7, 8, 9, 10]


def test_history_ring_evicts_incomplete_rows_from_the_count() -> None:
    h = ReturnHistory(["A", "B"], sample_ns=1, window=3)
    h.on_marks(0, {"A": 1.0})
    h.on_marks(1, {"B": 1.0})  # incomplete

    for t in range(2, 6):
        h.on_marks(t, {"A": 1.0 + t, "B": 2.0 + t})

    assert h.n_returns == 3 and h.returns().shape == (3, 2)


def test_history_returns_is_a_copy() -> None:
    h = _random_walk_history(20)

    h.returns()[:] = 0.0

    assert np.any(h.returns() != 0.0)


def test_history_rejects_time_going_backwards_and_bad_mids() -> None:
    h = ReturnHistory(["A"], sample_ns=10, window=5)
    h.on_marks(100, {"A": 1.0, "UNTRACKED": 5.0})

    with pytest.raises(ValidationError, match="ts_ns"):
        h.on_marks(99, {"A": 1.0})
    with pytest.raises(ValidationError, match="mids"):
        h.on_marks(101, {"A": 0.0})
    with pytest.raises(ValidationError, match="mids"):
        h.on_marks(101, {"A": math.nan})


@pytest.mark.parametrize(
    ("symbols", "sample_ns", "window"),
    [([], 1, 1), (["A", "A"], 1, 1), (["A"], 0, 1), (["A"], 1, 0), (["A"], 1.5, 2)],
)
def test_history_rejects_bad_construction(symbols: list[str], sample_ns: int, window: int) -> None:
    with pytest.raises(ValidationError):
        ReturnHistory(symbols, sample_ns, window)


def test_history_snapshot_restore_round_trip_through_json_after_wraparound() -> None:
    h = _random_walk_history(30, window=8)
    h.on_marks(30 * S + 5, {"A": 123.0})  # a mid after the last sample, not yet sampled

    snap = json.loads(json.dumps(h.snapshot(), allow_nan=False))
    r = ReturnHistory.restore(snap)

    assert r.snapshot() == h.snapshot()
    np.testing.assert_array_equal(r.returns(), h.returns())
    # and both go on identically
    for t in (31 * S, 31 * S + 1, 33 * S):
        assert r.on_marks(t, {"B": 99.0}) == h.on_marks(t, {"B": 99.0})
    np.testing.assert_array_equal(r.returns(), h.returns())
    assert r.snapshot() == h.snapshot()


def test_history_restore_of_a_fresh_history_and_a_bad_snapshot() -> None:
    fresh = ReturnHistory(["A", "B"], sample_ns=5, window=3)

    r = ReturnHistory.restore(json.loads(json.dumps(fresh.snapshot())))

    assert r.snapshot() == fresh.snapshot() and r.n_returns == 0
    with pytest.raises(ValidationError, match="snapshot"):
        ReturnHistory.restore({**fresh.snapshot(), "version": 99})
    with pytest.raises(ValidationError, match="snapshot"):
        ReturnHistory.restore({**fresh.snapshot(), "rows": [[0.0, 0.0]] * 4, "row_ns": [1] * 4})


# ---------------------------------------------------------------- covariance, correlation


def test_covariance_matches_np_cov_and_zeros_when_short() -> None:
    h = _random_walk_history(60)
    short = _random_walk_history(1)

    np.testing.assert_allclose(h.covariance(), np.cov(h.returns(), rowvar=False), rtol=1e-12)
    assert short.n_returns == 1 and not short.covariance().any()
    assert short.covariance().shape == (3, 3)


def test_correlation_is_one_on_the_diagonal_and_zero_for_a_flat_symbol() -> None:
    h = ReturnHistory(["A", "B", "FLAT"], sample_ns=1, window=50)
    rng = np.random.default_rng(3)
    for t in range(40):
        a = 100 + rng.normal()
        h.on_marks(t, {"A": a, "B": 2 * a, "FLAT": 7.0})

    corr = h.correlation()

    np.testing.assert_allclose(np.diag(corr), 1.0)
    assert corr[0, 1] == pytest.approx(1.0, abs=1e-9)
    assert corr[0, 2] == 0.0 and corr[2, 1] == 0.0


# ---------------------------------------------------------------- stress


def test_stress_pnl_is_exact_and_sorted_worst_first() -> None:
    x = {"A": 1_000.0, "B": -400.0, "C": 250.0}
    scenarios = [
        StressScenario("rally", {"A": 0.05, "B": 0.10, "C": 0.02}),
        StressScenario("crash", {"A": -0.20, "B": -0.30, "C": -0.10}),
        StressScenario("b_squeeze", {"B": 0.50}),
    ]

    out = stress_test(x, scenarios)

    assert out == [
        {"name": "b_squeeze", "kind": "hypothetical", "pnl": pytest.approx(-200.0)},
        {"name": "crash", "kind": "hypothetical", "pnl": pytest.approx(-105.0)},
        {"name": "rally", "kind": "hypothetical", "pnl": pytest.approx(15.0)},
    ]


def test_stress_star_shock_applies_to_every_symbol_not_named() -> None:
    x = {"A": 1_000.0, "B": 200.0, "C": -100.0}

    (out,) = stress_test(x, [StressScenario("broad", {"*": -0.10, "C": 0.30})])

    assert out["pnl"] == pytest.approx(-100.0 - 20.0 - 30.0)


def test_stress_scenario_validates_kind_and_shocks() -> None:
    with pytest.raises(ValidationError, match="kind"):
        StressScenario("x", {"A": 0.1}, kind="imagined")
    with pytest.raises(ValidationError, match="shocks"):
        StressScenario("x", {"A": -1.5})
    with pytest.raises(ValidationError, match="shocks"):
        StressScenario("x", {"A": math.inf})


def test_historical_scenarios_are_the_largest_non_overlapping_joint_moves() -> None:
    h = ReturnHistory(["A", "B"], sample_ns=1, window=100)
    a = np.full(21, 100.0)
    a[10:] = 80.0  # one -20 % crash between samples 9 and 10
    a[15:] = 88.0  # and a +10 % rebound between 14 and 15
    for t in range(21):
        h.on_marks(t, {"A": a[t], "B": 50.0})

    scen = historical_stress_scenarios(h, horizon=2, top=3)

    assert [s.kind for s in scen] == ["historical"] * 3
    # the crash is row 9 (returns index): windows starting at 8 and 9 both hold it; one kept
    assert scen[0].name.startswith("hist_h2_") and scen[0].shocks["A"] == pytest.approx(-0.2)
    assert scen[1].shocks["A"] == pytest.approx(0.1)
    assert scen[0].name == f"hist_h2_8_{int(h.timestamps()[9])}"
    starts = [int(s.name.split("_")[2]) for s in scen]
    assert all(abs(i - j) >= 2 for i in starts for j in starts if i != j)
    assert historical_stress_scenarios(h, horizon=50) == []


def test_historical_scenarios_compound_returns_over_the_horizon() -> None:
    h = ReturnHistory(["A"], sample_ns=1, window=10)
    for t, m in enumerate([100.0, 110.0, 121.0, 121.0]):
        h.on_marks(t, {"A": m})

    (top,) = historical_stress_scenarios(h, horizon=2, top=1)

    assert top.shocks["A"] == pytest.approx(0.21)


# ---------------------------------------------------------------- heat, correlation alerts


def test_heat_is_the_undiversified_z_sigma_loss_over_equity() -> None:
    x = {"A": 10_000.0, "B": -5_000.0, "C": 0.0}
    sig = {"A": 0.02, "B": 0.04}  # C flat: no sigma needed

    heat = portfolio_heat(x, sig, equity=50_000.0, z=2.0)

    assert heat == pytest.approx((10_000 * 2 * 0.02 + 5_000 * 2 * 0.04) / 50_000)  # 0.016


def test_heat_is_zero_flat_and_infinite_without_equity() -> None:
    assert portfolio_heat({"A": 0.0}, {}, equity=-1.0, z=2.33) == 0.0
    assert portfolio_heat({}, {}, equity=0.0, z=2.33) == 0.0
    assert portfolio_heat({"A": 1.0}, {"A": 0.01}, equity=0.0, z=2.33) == math.inf
    with pytest.raises(ValidationError, match="sigmas"):
        portfolio_heat({"A": 1.0}, {}, equity=1.0, z=2.33)


def test_correlation_alerts_pairs_above_threshold_by_abs_rho() -> None:
    corr = np.array(
        [
            [1.0, 0.85, -0.95, 0.1],
            [0.85, 1.0, 0.2, np.nan],
            [-0.95, 0.2, 1.0, 0.8],
            [0.1, np.nan, 0.8, 1.0],
        ]
    )

    alerts = correlation_alerts(["A", "B", "C", "D"], corr, threshold=0.8)

    assert alerts == [
        {"a": "A", "b": "C", "rho": -0.95},
        {"a": "A", "b": "B", "rho": 0.85},
        {"a": "C", "b": "D", "rho": 0.8},
    ]
    with pytest.raises(ValidationError, match="corr"):
        correlation_alerts(["A"], corr, 0.8)


# ---------------------------------------------------------------- report


def test_risk_report_is_json_safe_with_every_method_and_es_at_least_var() -> None:
    h = _random_walk_history(300)
    x = {"A": 20_000.0, "B": -5_000.0, "C": 8_000.0}
    crash = StressScenario("crash", {"*": -0.3})

    rep = risk_report(
        x,
        h,
        equity=100_000.0,
        alphas=[0.95, 0.99],
        horizons=[1, 10],
        scenarios=[crash],
        mc_paths=2_000,
    )

    json.dumps(rep, allow_nan=False)
    var = rep["var"]
    assert var["status"] == "ok" and var["n_returns"] == rep["n_returns"] == 300
    keys = {(e["method"], e["alpha"], e["horizon"]) for e in var["estimates"]}
    assert keys == {
        (m, a, hz)
        for m in ("historical", "normal", "cornish_fisher", "monte_carlo")
        for a in (0.95, 0.99)
        for hz in (1, 10)
    }
    for e in var["estimates"]:
        assert e["var"] > 0 and e["es"] >= e["var"], e
    normal = {
        (e["alpha"], e["horizon"]): e["var"] for e in var["estimates"] if e["method"] == "normal"
    }
    assert normal[(0.99, 1)] > normal[(0.95, 1)] and normal[(0.99, 10)] > normal[(0.99, 1)]
    assert rep["gross_exposure"] == 33_000.0 and rep["net_exposure"] == 23_000.0
    assert rep["stress"][0]["name"] == "crash"
    assert rep["stress"][0]["pnl"] == pytest.approx(-0.3 * 23_000)
    assert sum(s["kind"] == "historical" for s in rep["stress"]) == 6  # top 3 per horizon
    assert rep["heat"]["z"] == pytest.approx(normal_var_es_factors(0.99)[0])
    sig = rep["sigmas"]
    expected_heat = rep["heat"]["z"] * sum(abs(v) * sig[s] for s, v in x.items()) / 100_000
    assert rep["heat"]["value"] == pytest.approx(expected_heat)
    assert rep["sigmas"]["A"] == pytest.approx(float(np.std(h.returns()[:, 0], ddof=1)))
    assert rep["correlation_alerts"][0]["a"] == "A" and rep["correlation_alerts"][0]["b"] == "B"
    np.testing.assert_allclose(rep["correlation"], h.correlation())


def test_risk_report_historical_var_is_of_the_portfolio_pnl_series() -> None:
    h = _random_walk_history(200)
    x = {"A": 1_000.0, "C": -2_000.0}
    pnl = h.returns() @ np.array([1_000.0, 0.0, -2_000.0])

    rep = risk_report(x, h, equity=1e5, alphas=[0.99], horizons=[1], scenarios=[])

    (hist,) = [e for e in rep["var"]["estimates"] if e["method"] == "historical"]
    assert hist["var"] == pytest.approx(float(np.quantile(-pnl, 0.99, method="higher")))


def test_risk_report_says_insufficient_history_instead_of_numbers() -> None:
    h = _random_walk_history(10)

    rep = risk_report({"A": 1.0}, h, equity=1e4, alphas=[0.99], horizons=[1], scenarios=[])
    long_horizon = risk_report(
        {"A": 1.0},
        _random_walk_history(40),
        equity=1e4,
        alphas=[0.99],
        horizons=[50],
        scenarios=[],
    )

    assert rep["var"] == {"status": "insufficient_history", "n_returns": 10, "required": 30}
    assert long_horizon["var"]["status"] == "insufficient_history"
    assert long_horizon["var"]["required"] == 51
    assert rep["n_returns"] == 10 and rep["heat"]["value"] is not None
    json.dumps(rep, allow_nan=False)


def test_risk_report_of_an_empty_history_and_a_flat_book() -> None:
    h = ReturnHistory(["A", "B"], sample_ns=1, window=10)

    empty = risk_report({}, h, equity=0.0, alphas=[0.99], horizons=[1], scenarios=[])
    flat = risk_report(
        {"A": 0.0},
        _random_walk_history(50),
        equity=1e4,
        alphas=[0.99],
        horizons=[1],
        scenarios=[],
    )

    assert empty["var"]["status"] == "insufficient_history" and empty["heat"]["value"] is None
    assert empty["last_sample_ns"] is None
    assert all(e["var"] == 0.0 and e["es"] == 0.0 for e in flat["var"]["estimates"])
    json.dumps(empty, allow_nan=False)


def test_risk_report_rejects_exposure_on_an_unmonitored_symbol() -> None:
    h = _random_walk_history(50)

    with pytest.raises(ValidationError, match="exposures"):
        risk_report({"ZZZ": 1.0}, h, equity=1e4, alphas=[0.99], horizons=[1], scenarios=[])
    with pytest.raises(ValidationError, match="alpha"):
        risk_report({"A": 1.0}, h, equity=1e4, alphas=[1.5], horizons=[1], scenarios=[])


# ---------------------------------------------------------------- delta-normal VaR


def test_normal_factors_at_99_and_975() -> None:
    z, es = normal_var_es_factors(0.99)
    z975, es975 = normal_var_es_factors(0.975)

    assert z == pytest.approx(2.326347874, abs=1e-9)
    assert es == pytest.approx(2.665214220, abs=1e-9)
    assert z975 == pytest.approx(1.959963985, abs=1e-9) and es975 == pytest.approx(
        2.337802, abs=1e-6
    )


def _variance_and_bound(
    cov: np.ndarray, scale: float, x: np.ndarray, moves: list[tuple[int, float]]
) -> tuple[float, float]:
    """``y' C y`` of ``y = x + moves`` in full, and a bound of its rounding error."""
    y, m = x.copy(), np.abs(x)
    for i, dx in moves:
        y[i] += dx
        m[i] += abs(dx)
    return scale * float(y @ cov @ y), 1e-9 * scale * float(m @ np.abs(cov) @ m) + 1e-300


@st.composite
def _books(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int, float, float]:
    k = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    f = rng.standard_normal((k, k + 2)) * 0.01
    cov = f @ f.T if draw(st.booleans()) else f[:, :1] @ f[:, :1].T  # full rank or singular
    x = rng.standard_normal(k) * draw(st.sampled_from([1.0, 1e3, 1e6]))
    i = draw(st.integers(0, k - 1))
    dx = draw(st.floats(-1e7, 1e7, allow_nan=False))
    scale = draw(st.sampled_from([1.0, 10.0, 600.0]))
    return cov, x, i, dx, scale


@settings(max_examples=150, deadline=None)
@given(_books())
def test_delta_normal_var_after_an_order_equals_a_full_recomputation(
    book: tuple[np.ndarray, np.ndarray, int, float, float],
) -> None:
    cov, x, i, dx, scale = book
    z, f = normal_var_es_factors(0.99)
    d = DeltaNormalVar(x.size)
    d.set_covariance(cov, horizon_scale=scale)
    d.set_exposures(x)

    var, es = d.var_es_after(i, dx, z, f)

    full, err = _variance_and_bound(cov, scale, x, [(i, dx)])
    assert type(var) is float and type(es) is float
    assert (var / z) ** 2 == pytest.approx(full, rel=1e-9, abs=err)
    assert es == pytest.approx(var * f / z, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(_books(), st.floats(-1e6, 1e6, allow_nan=False), st.integers(0, 5))
def test_delta_normal_add_exposure_keeps_the_state_of_a_full_recomputation(
    book: tuple[np.ndarray, np.ndarray, int, float, float], dx2: float, j: int
) -> None:
    cov, x, i, dx, scale = book
    j %= x.size
    z, f = normal_var_es_factors(0.95)
    d = DeltaNormalVar(x.size)
    d.set_covariance(cov, scale)
    d.set_exposures(x)

    d.add_exposure(i, dx)
    var, _ = d.var_es_after(j, dx2, z, f)

    full, err = _variance_and_bound(cov, scale, x, [(i, dx), (j, dx2)])
    assert d.exposures[i] == x[i] + dx
    assert (var / z) ** 2 == pytest.approx(full, rel=1e-9, abs=err)


def test_delta_normal_current_and_reducing_order() -> None:
    d = DeltaNormalVar(2)
    d.set_covariance(np.array([[1e-4, 5e-5], [5e-5, 1e-4]]), horizon_scale=4.0)
    d.set_exposures([1_000.0, 1_000.0])
    z, f = normal_var_es_factors(0.99)

    var, es = d.current(z, f)
    flat_var, _ = d.var_es_after(0, -1_000.0, z, f)

    sigma = math.sqrt(4.0 * (100 + 100 + 2 * 50))  # x'Cx * horizon
    assert var == pytest.approx(z * sigma) and es == pytest.approx(f * sigma)
    assert flat_var == pytest.approx(z * math.sqrt(4.0 * 100))
    assert d.var_es_after(1, 0.0, z, f) == pytest.approx((var, es))


def test_delta_normal_rejects_bad_input() -> None:
    d = DeltaNormalVar(2)

    with pytest.raises(ValidationError, match="cov"):
        d.set_covariance(np.eye(3), 1.0)
    with pytest.raises(ValidationError, match="horizon_scale"):
        d.set_covariance(np.eye(2), 0.0)
    with pytest.raises(ValidationError, match="x"):
        d.set_exposures([1.0, math.nan])
    with pytest.raises(ValidationError):
        d.var_es_after(-1, 1.0, 2.0, 2.5)  # a negative index must not wrap around
    with pytest.raises(ValidationError):
        d.var_es_after(0, math.nan, 2.0, 2.5)  # a NaN VaR would pass any limit


def test_module_examples() -> None:
    result = doctest.testmod(monitor)

    assert result.attempted > 0 and result.failed == 0
