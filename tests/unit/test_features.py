"""FeatureEngine on small hand-made frames: spec, API and each definition by hand (no Ray)."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from actors.book.features import (
    FEATURE_NAMES,
    FEATURE_SPEC_HASH,
    I_STK_N,
    N_FEATURES,
    FeatureEngine,
    _stoikov_fit,
    feature_spec,
)
from actors.book.frames import MSG_DTYPE, TRADE_DTYPE
from actors.core.errors import ValidationError
from cluster.config import FeaturesConfig

MS = 1_000_000
NO_TRADES = np.zeros(0, TRADE_DTYPE)


def msg(bids: list[tuple[int, float]], asks: list[tuple[int, float]], ts: int = 0) -> np.ndarray:
    """One message end: levels best first (sizes > 0)."""
    m = np.zeros(1, MSG_DTYPE)
    m["ts_event"] = ts
    for k, (p, s) in enumerate(bids):
        m["bid_px"][0, k], m["bid_sz"][0, k] = p, s
    for k, (p, s) in enumerate(asks):
        m["ask_px"][0, k], m["ask_sz"][0, k] = p, s
    return m


def trades(*rows: tuple[int, int, float, int, float, int]) -> np.ndarray:
    """Rows ``(ts, price, size, aggressor side, shown, msg)``."""
    return np.array(list(rows), dtype=TRADE_DTYPE)


def feats(eng: FeatureEngine) -> dict[str, float]:
    vec = eng.vector()
    assert vec is not None and vec.dtype == np.float32 and vec.shape == (len(eng.names),)
    return dict(zip(eng.names, vec.tolist(), strict=True))


BOOK = ([(999, 2.0)], [(1001, 2.0)])  # mid 1000: 1 tick = 10 bps


# spec -------------------------------------------------------------------------------------
def test_default_spec_is_the_full_library_and_matches_the_module_constants() -> None:
    eng = FeatureEngine(FeaturesConfig())
    assert eng.names == FEATURE_NAMES and eng.spec_hash == FEATURE_SPEC_HASH
    assert N_FEATURES == len(FEATURE_NAMES) == 27
    assert {"spread_bps", "stoikov_micro_bps", "mlofi_norm", "vpin", "poc_dist_bps",
            "wall_withdrawals", "refill_count", "absorption", "exhaustion"} <= set(FEATURE_NAMES)
    imbalances = tuple(n for n in FEATURE_NAMES if n.startswith("imbalance"))
    assert imbalances == ("imbalance_l1", "imbalance_l5", "imbalance_l10")


def test_spec_hash_follows_parameters_but_not_the_window() -> None:
    base = feature_spec(FeaturesConfig())[1]
    assert feature_spec(FeaturesConfig(window=64))[1] == base
    assert feature_spec(FeaturesConfig(vpin_buckets=10))[1] != base
    assert feature_spec(FeaturesConfig())[1] == base  # stable


def test_switching_a_group_off_removes_its_features() -> None:
    names, _ = feature_spec(FeaturesConfig(volume_profile=False, walls=False))
    assert not {"poc_dist_bps", "wall_bid_dist_bps", "wall_arrivals"} & set(names)
    assert len(names) == N_FEATURES - 7
    names, _ = feature_spec(FeaturesConfig(imbalance_levels=1))
    assert [n for n in names if n.startswith("imbalance")] == ["imbalance_l1", "imbalance_l10"]


def test_config_rejects_bad_mlofi_weights_and_an_empty_library() -> None:
    with pytest.raises(ValueError, match="mlofi_weights must have mlofi_levels=2 entries"):
        FeaturesConfig(mlofi_levels=2, mlofi_weights=(1.0,))
    off = {k: False for k, f in FeaturesConfig.model_fields.items() if f.annotation is bool}
    with pytest.raises(ValueError, match="at least one of"):
        FeaturesConfig(**off)


# API --------------------------------------------------------------------------------------
def test_update_rejects_bad_dtypes_and_trade_positions() -> None:
    eng = FeatureEngine(FeaturesConfig())
    with pytest.raises(ValidationError, match="msgs.dtype must be MSG_DTYPE"):
        eng.update(np.zeros(1), NO_TRADES)
    with pytest.raises(ValidationError, match=r"trades.msg must be non-decreasing within 0..1"):
        eng.update(msg(*BOOK), trades((0, 999, 1.0, 1, 1.0, 2)))
    with pytest.raises(ValidationError, match="trades.msg"):
        eng.update(msg(*BOOK), trades((0, 999, 1.0, 1, 1.0, 1), (0, 999, 1.0, 1, 1.0, 0)))
    with pytest.raises(ValidationError, match="tick_size must be a finite number > 0, was -1"):
        FeatureEngine(FeaturesConfig(), tick_size=-1)


def test_vector_is_none_on_a_one_sided_book_and_the_interval_still_closes() -> None:
    eng = FeatureEngine(FeaturesConfig())
    assert eng.vector() is None  # nothing seen yet
    eng.update(msg([(999, 1.0)], []), trades((0, 999, 1.0, 1, 1.0, 1)))
    assert eng.vector() is None
    eng.update(msg(*BOOK), NO_TRADES)
    f = feats(eng)
    assert f["trade_imbalance"] == 0.0 and f["log_events"] == pytest.approx(math.log(2))


def test_window_is_oldest_first_zero_padded_and_warm_when_full() -> None:
    eng = FeatureEngine(FeaturesConfig(window=3))
    vecs = []
    for k in range(4):
        eng.update(msg([(999 - k, 1.0)], [(1001, 1.0)]), NO_TRADES)
        vecs.append(eng.vector())
        if k == 0:
            w = eng.window_array()
            assert w.shape == (3, N_FEATURES) and w.dtype == np.float32
            assert not w[:2].any() and np.array_equal(w[2], vecs[0]) and not eng.is_warm()
    assert eng.is_warm()
    assert np.array_equal(eng.window_array(), np.stack(vecs[1:]))


def test_state_does_not_grow_while_streaming() -> None:
    eng = FeatureEngine(FeaturesConfig())
    before = eng.state_bytes()
    for k in range(50):
        eng.update(msg(*BOOK, ts=k * MS), trades((k * MS, 1001, 0.1, 0, 2.0, 0)))
        eng.vector()
    assert eng.state_bytes() == before > 0


# definitions, by hand ---------------------------------------------------------------------
def test_spread_weighted_mid_vamp_and_depth_imbalance() -> None:
    eng = FeatureEngine(FeaturesConfig())
    eng.update(msg([(999, 3.0), (998, 1.0)], [(1001, 1.0), (1002, 5.0)]), NO_TRADES)
    f = feats(eng)
    assert f["spread_bps"] == pytest.approx(20.0)
    assert f["microprice_dev_bps"] == pytest.approx(5.0)  # (999*1 + 1001*3) / 4 = 1000.5
    vamp = (999 * 1 + 1001 * 3 + 998 * 5 + 1002 * 1) / 10  # 999.4
    assert f["vamp_dev_bps"] == pytest.approx((vamp - 1000) / 1000 * 1e4, abs=1e-4)
    assert f["imbalance_l1"] == pytest.approx(0.5)
    assert f["imbalance_l5"] == f["imbalance_l10"] == pytest.approx(-0.2)


def test_ofi_counts_queue_growth_and_price_improvement_over_mean_depth() -> None:
    cfg = FeaturesConfig(mlofi_levels=2, mlofi_weights=(1.0, 0.0))
    eng = FeatureEngine(cfg)
    eng.update(msg([(999, 1.0), (998, 1.0)], [(1001, 1.0), (1002, 1.0)]), NO_TRADES)
    assert feats(eng)["ofi_norm"] == 0.0  # no previous message
    m = np.concatenate([
        msg([(999, 5.0), (998, 1.0)], [(1001, 1.0), (1002, 1.0)]),  # e = +4
        msg([(1000, 2.0), (999, 5.0)], [(1001, 1.0), (1002, 1.0)]),  # better bid: e = +2
    ])
    eng.update(m, NO_TRADES)
    f = feats(eng)
    assert f["ofi_norm"] == pytest.approx(6.0 / ((3.0 + 1.5) / 2))
    d2 = ((5 + 1 + 1 + 1) / 4 + (2 + 5 + 1 + 1) / 4) / 2
    assert f["mlofi_norm"] == pytest.approx(6.0 / d2)


def test_trade_imbalance_and_volume_beyond_the_displayed_size() -> None:
    eng = FeatureEngine(FeaturesConfig())
    eng.update(msg(*BOOK), NO_TRADES)
    eng.vector()
    # two buys run through an ask showing 2.0 (0.3 hidden), then a sell inside the bid
    t = trades((1, 1001, 1.2, 0, 2.0, 0), (2, 1001, 1.1, 0, 2.0, 0), (3, 999, 0.5, 1, 2.0, 0))
    eng.update(np.zeros(0, MSG_DTYPE), t)
    f = feats(eng)
    assert f["trade_imbalance"] == pytest.approx((2.3 - 0.5) / 2.8)
    assert f["hidden_vol_frac"] == pytest.approx(0.3 / 2.8)


def test_quick_refill_needs_the_level_traded_down_and_restored_in_time() -> None:
    eng = FeatureEngine(FeaturesConfig(refill_ms=500, refill_frac=0.8))
    eng.update(msg(*BOOK), NO_TRADES)
    sell = lambda ts, size: (ts, 999, size, 1, 2.0, 0)  # noqa: E731
    # traded down 1.8 of 2.0, still down at 20 ms, restored to 1.7 >= 1.6 at 100 ms
    eng.update(np.concatenate([msg([(999, 0.2)], [(1001, 2.0)], 20 * MS),
                               msg([(999, 1.7)], [(1001, 2.0)], 100 * MS)]),
               trades(sell(10 * MS, 1.8)))
    assert feats(eng)["refill_count"] == 1
    # restored only after 700 ms: too late
    eng.update(np.concatenate([msg([(999, 0.2)], [(1001, 2.0)], 1_010 * MS),
                               msg([(999, 2.0)], [(1001, 2.0)], 1_700 * MS)]),
               trades(sell(1_000 * MS, 1.8)))
    assert feats(eng)["refill_count"] == 0
    # a small trade (0.5 of 2.0) is not "traded down"
    eng.update(msg(*BOOK, ts=2_100 * MS), trades(sell(2_000 * MS, 0.5)))
    assert feats(eng)["refill_count"] == 0


def test_walls_arrive_withdraw_and_are_consumed_by_trades() -> None:
    eng = FeatureEngine(FeaturesConfig(wall_k=5.0))
    asks = [(1001 + k, 1.0) for k in range(4)]
    walled = [(999, 1.0), (998, 1.0), (997, 1.0), (996, 10.0)]  # median 1: wall at 996
    eng.update(np.concatenate([msg(walled, asks), msg(walled, asks)]), NO_TRADES)
    f = feats(eng)
    assert f["wall_bid_dist_bps"] == pytest.approx(40.0) and f["wall_ask_dist_bps"] == 0.0
    assert (f["wall_arrivals"], f["wall_withdrawals"]) == (0, 0)
    eng.update(msg(walled[:3], asks), NO_TRADES)  # pulled without trades
    f = feats(eng)
    assert (f["wall_arrivals"], f["wall_withdrawals"], f["wall_bid_dist_bps"]) == (0, 1, 0.0)
    eng.update(msg(walled, asks), NO_TRADES)  # back
    assert feats(eng)["wall_arrivals"] == 1
    sweep = trades(*[(0, p, s, 1, s, 0) for p, s in walled])  # sellers take all four levels
    eng.update(msg([(995, 1.0)], asks), sweep)
    assert feats(eng)["wall_withdrawals"] == 0  # consumed, not withdrawn


def test_absorption_when_selling_meets_a_bid_that_holds() -> None:
    eng = FeatureEngine(FeaturesConfig(absorption_k=1.0))
    eng.update(msg(*BOOK), NO_TRADES)
    eng.vector()
    eng.update(msg([(999, 1.0)], [(1001, 2.0)]), trades((1, 999, 3.0, 1, 2.0, 0)))
    assert feats(eng)["absorption"] == 1
    eng.update(msg([(998, 1.0)], [(1001, 2.0)]), trades((2, 999, 3.0, 1, 1.0, 0)))
    assert feats(eng)["absorption"] == 0  # the bid gave way
    eng.update(msg([(998, 1.0)], [(1001, 2.0)]), trades((3, 1001, 2.5, 0, 2.0, 0)))
    assert feats(eng)["absorption"] == -1


def test_exhaustion_when_buying_declines_while_the_price_stalls() -> None:
    eng = FeatureEngine(FeaturesConfig(exhaustion_intervals=3, exhaustion_stall_bps=1.0))
    got = []
    for k, vol in enumerate([3.0, 2.0, 1.0, 1.0]):
        eng.update(msg(*BOOK, ts=k), trades((k, 1001, vol, 0, 5.0, 0)))
        got.append(feats(eng)["exhaustion"])
    assert got == [0, 0, -1, 0]


def test_returns_and_realised_volatility() -> None:
    eng = FeatureEngine(FeaturesConfig(rv_window=3))
    mids, rets = [], []
    for k in range(7):
        eng.update(msg([(999 + k, 1.0)], [(1001 + 2 * k, 1.0)]), NO_TRADES)
        f = feats(eng)
        mids.append(1000 + 1.5 * k)
        rets.append(math.log(mids[-1] / mids[-2]) * 1e4 if k else 0.0)
    assert f["ret_1_bps"] == pytest.approx(rets[-1], rel=1e-5)
    assert f["ret_5_bps"] == pytest.approx(math.log(mids[-1] / mids[-6]) * 1e4, rel=1e-5)
    assert f["rv_bps"] == pytest.approx(math.sqrt(sum(r * r for r in rets[-3:]) / 3), rel=1e-5)


def test_vpin_with_bulk_classification_over_time_bars() -> None:
    cfg = FeaturesConfig(vpin_bar_ms=1_000, vpin_bucket_volume=2.0, vpin_buckets=2,
                         vpin_sigma_bars=2)
    eng = FeatureEngine(cfg)
    s = 1_000 * MS
    t = trades((s // 10, 1000, 1.0, 0, 9.0, 1), (s + 1, 1002, 1.0, 0, 9.0, 1),
               (2 * s + 1, 1001, 3.0, 1, 9.0, 1), (3 * s + 1, 1001, 1.0, 0, 9.0, 1))
    eng.update(msg(*BOOK), t)
    phi = NormalDist().cdf
    # bar 0: dP 0 -> 1/2 (sigma 0); bar 1: dP +2, sigma of [0, 2] = 1; bar 2: dP -1, sigma 1.5
    b1 = abs(2 - 2 * (0.5 + phi(2.0)))
    b2 = abs(2 - 2 * (2 * phi(-1 / 1.5)))
    assert feats(eng)["vpin"] == pytest.approx((b1 + b2) / 4, rel=1e-5)


def test_volume_profile_point_of_control_and_value_area() -> None:
    eng = FeatureEngine(FeaturesConfig(profile_bin_bps=1.0, profile_value_area=0.7))
    vols = {998: 1.0, 999: 2.0, 1000: 5.0, 1001: 3.0, 1002: 1.0, 1004: 2.0}
    eng.update(msg(*BOOK), trades(*[(0, p, v, 0, 9.0, 1) for p, v in vols.items()]))
    f = feats(eng)  # POC 1000; + 1001 (3 > 2); + 999 (2 > 1): 10 of 14 >= 9.8
    assert (f["poc_dist_bps"], f["vah_dist_bps"], f["val_dist_bps"]) == pytest.approx(
        (0.0, 10.0, -10.0)
    )


def test_stoikov_estimator_on_a_known_chain() -> None:
    # one spread state, 3 imbalance buckets; from the top bucket the mid stays 3 times out of 4
    # and moves up one tick into the middle bucket, which never moves: g = (-1, 0, 1) ticks
    rows = [(2, 2, 0)] * 3 + [(2, 1, 2)] + [(1, 1, 0)] * 4
    stk = np.array(rows, dtype=np.int32).T.copy()
    g = _stoikov_fit(stk, len(rows), n_imb=3, n_spread=1, iterations=6)
    assert g == pytest.approx([-1.0, 0.0, 1.0], abs=1e-9)


def test_stoikov_feature_uses_the_fitted_adjustment_of_the_current_state() -> None:
    cfg = FeaturesConfig(stoikov_imbalance_buckets=2, stoikov_spread_states=1,
                         stoikov_refit_every=10)
    eng = FeatureEngine(cfg)
    heavy_bid = msg([(999, 9.0)], [(1000, 1.0)])  # the mid then ticks up, to a heavy ask...
    heavy_ask = msg([(1000, 1.0)], [(1001, 9.0)])  # ...and back down: g = (-1, +1) ticks
    eng.update(np.concatenate([heavy_bid, heavy_ask] * 5), NO_TRADES)
    assert eng.refits == 1
    eng.update(msg([(1000, 9.0)], [(1001, 1.0)]), NO_TRADES)
    assert feats(eng)["stoikov_micro_bps"] == pytest.approx(1 / 1000.5 * 1e4, rel=1e-5)


def test_l3_iceberg_refills_are_summed_per_interval() -> None:
    eng = FeatureEngine(FeaturesConfig())
    eng.update(msg(*BOOK), NO_TRADES, l3_iceberg_refills=2)
    eng.update(np.zeros(0, MSG_DTYPE), NO_TRADES, l3_iceberg_refills=3)
    assert feats(eng)["l3_iceberg_refills"] == 5
    eng.update(msg(*BOOK), NO_TRADES)
    assert feats(eng)["l3_iceberg_refills"] == 0


SWITCHES = [k for k, f in FeaturesConfig.model_fields.items() if f.annotation is bool]


@pytest.mark.parametrize("switch", SWITCHES)
def test_any_one_group_off_still_streams_and_the_rest_is_unchanged(switch: str) -> None:
    full, part = FeatureEngine(FeaturesConfig()), FeatureEngine(FeaturesConfig(**{switch: False}))
    for k in range(6):
        m = msg([(999 - k % 2, 1.0 + k), (997, 4.0)], [(1001, 2.0), (1003, 30.0)], k * MS)
        t = trades((k * MS, 1001, 0.5 * k + 0.1, k % 2, 2.0, 0))
        full.update(m, t)
        part.update(m, t)
        a, b = dict(zip(full.names, full.vector(), strict=True)), part.vector()
    assert len(b) == len(part.names) < len(full.names)
    assert dict(zip(part.names, b, strict=True)) == {n: a[n] for n in part.names}


def test_stoikov_counts_kept_in_step_with_the_ring_equal_a_recount() -> None:
    from actors.book.features import _stoikov_counts

    cfg = FeaturesConfig(stoikov_imbalance_buckets=4, stoikov_spread_states=2,
                         stoikov_history=100, stoikov_refit_every=1_000_000)
    eng = FeatureEngine(cfg)
    rng = np.random.default_rng(7)
    books = [
        msg([(1000 + d, float(rng.integers(1, 9)))], [(1001 + d + s, float(rng.integers(1, 9)))])
        for d, s in zip(rng.integers(0, 2, 700), rng.integers(0, 2, 700), strict=True)
    ]
    eng.update(np.concatenate(books), NO_TRADES)  # 700 messages: the 100-ring wraps
    assert eng._i[I_STK_N] > 100
    assert np.array_equal(eng._stc, _stoikov_counts(eng._stk, 100, 8))
