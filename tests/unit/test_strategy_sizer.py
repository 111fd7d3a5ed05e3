"""Strategy sizing from sampled return covariances (no Ray)."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from actors.core.instruments import Instrument
from actors.core.views import BookView, DecisionPoint
from actors.strategy.engine import StrategyEngine
from actors.strategy.sizer import DAY_S, Sizer
from cluster.config import StrategyConfig

INS = {
    "AAA": Instrument("AAA", Decimal("1"), Decimal("1")),
    "BBB": Instrument("BBB", Decimal("1"), Decimal("1")),
}
S = 1_000_000_000


def views(a: int, b: int, ts: int) -> dict[str, BookView]:
    return {
        s: BookView(s, ts, ts, (m - 1,), (1.0,), (m + 1,), (1.0,))
        for s, m in (("AAA", a), ("BBB", b))
    }


def feed(sizer: Sizer, n: int = 40, amp_a: int = 10, amp_b: int = 20, same: bool = True) -> None:
    """``n`` one-second samples around 10,000: A moves ±amp_a every second; B ±amp_b with A
    (``same``) or on a two-second cycle (uncorrelated with A). Ends at A 9,990, B 9,980."""
    for k in range(n + 1):
        up = 1 if k % 2 else -1
        b_up = up if same else (1 if k % 4 in (1, 2) else -1)
        sizer.on_marks(k * S, views(10_000 + up * amp_a, 10_000 + b_up * amp_b, k * S))


def cfg(**kw: object) -> StrategyConfig:
    base = {"target_position_lots": 10_000, "sizing_min_returns": 10, "sizing_window": 100}
    return StrategyConfig(**{**base, **kw})


def test_fixed_sizing_is_the_target_position() -> None:
    sizer = Sizer(cfg(sizing="fixed", target_position_lots=7), INS, 1e6)
    assert sizer.target_lots("AAA", 1, (0.1, 0.2, 0.7), {}) == 7


def test_sized_strategy_waits_for_an_estimate() -> None:
    sizer = Sizer(cfg(sizing="vol_target"), INS, 1e6)
    feed(sizer, n=5)
    assert sizer.target_lots("AAA", 1, (0.1, 0.2, 0.7), {}) is None and sizer.cold == 1
    eng = StrategyEngine(cfg(sizing="vol_target"), instruments=INS, capital=1e6)
    dp = DecisionPoint("AAA", "AAA-1", 1, 1, 1, np.zeros(3, np.float32), np.zeros((2, 3)))
    assert eng.on_decision(dp, [0.0, 0.1, 0.9], views(10_000, 10_000, 0)["AAA"], 1) == (1, None)


def test_vol_target_sizes_to_the_daily_volatility_target() -> None:
    sizer = Sizer(cfg(sizing="vol_target", target_vol_daily=0.02), INS, 1e6)
    feed(sizer)
    sigma = math.sqrt(sizer.history.covariance()[0, 0])
    expected = 0.02 * 1e6 / (sigma * math.sqrt(DAY_S))  # quote; one lot = 1 unit at the mid
    mid = 9_990  # the last sample
    assert sizer.target_lots("AAA", 1, (0.1, 0.2, 0.7), {}) == int(expected / mid)


def test_correlated_positions_shrink_the_size_and_hedges_do_not() -> None:
    sizer = Sizer(cfg(sizing="vol_target"), INS, 1e6)
    feed(sizer, same=True)  # A and B perfectly correlated
    alone = sizer.target_lots("AAA", 1, (0.1, 0.2, 0.7), {})
    with_b = sizer.target_lots("AAA", 1, (0.1, 0.2, 0.7), {"BBB": 100})
    hedged = sizer.target_lots("AAA", -1, (0.7, 0.2, 0.1), {"BBB": 100})
    assert with_b == pytest.approx(alone / 2, abs=1) and hedged == alone


def test_kelly_sizes_with_the_edge_and_respects_the_cap() -> None:
    sizer = Sizer(cfg(sizing="kelly", kelly_fraction=0.5, kelly_cap=0.5,
                      sizing_horizon_s=1.0), INS, 1e6)
    feed(sizer)
    assert sizer.target_lots("AAA", 1, (0.3, 0.4, 0.3), {}) == 0
    small = sizer.target_lots("AAA", 1, (0.3, 0.3, 0.30001), {})
    sigma = math.sqrt(sizer.history.covariance()[0, 0])
    assert small == int(0.5 * 0.00001 / sigma * 1e6 / 9_990)
    capped = sizer.target_lots("AAA", 1, (0.0, 0.1, 0.9), {})
    assert capped == int(0.5 * 1e6 / 9_990)


def test_risk_parity_gives_equal_risk_and_the_book_its_target_volatility() -> None:
    sizer = Sizer(cfg(sizing="risk_parity", target_vol_daily=0.01), INS, 1e9)
    feed(sizer, same=False)
    cov = sizer.history.covariance()
    lots = {s: sizer.target_lots(s, 1, (0.1, 0.2, 0.7), {}) for s in INS}
    mids = {"AAA": 9_990, "BBB": 9_980}
    x = np.array([lots[s] * mids[s] for s in INS], dtype=float)
    contrib = x * (cov @ x)
    assert contrib[0] == pytest.approx(contrib[1], rel=5e-3)  # whole lots
    assert math.sqrt(x @ cov @ x * DAY_S) == pytest.approx(0.01 * 1e9, rel=2e-3)


def test_sizing_needs_instruments() -> None:
    with pytest.raises(ValueError, match="instruments"):
        StrategyEngine(cfg(sizing="kelly"))
