"""L2 book, features and the SymbolEngine (no Ray)."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.book.book import L2Book
from actors.book.engine import SymbolEngine
from actors.book.features import FEATURE_NAMES, N_FEATURES
from actors.core.batch import (
    ASK,
    BID,
    CLEAR,
    DELTA,
    F_LAST,
    F_SNAPSHOT,
    SNAPSHOT,
    TRADE,
    empty_rows,
)
from actors.core.clock import SimClock
from actors.core.instruments import Instrument
from cluster.config import BookConfig, FeaturesConfig

INS = Instrument("BTCUSDT", Decimal("0.1"), Decimal("0.001"))


def make_rows(spec: list[tuple], start_seq: int = 1) -> np.ndarray:
    """spec rows: (kind, side, price, size, flags)."""
    r = empty_rows(len(spec))
    for i, (kind, side, price, size, flags) in enumerate(spec):
        r[i] = (1_000 + i, 2_000 + i, start_seq + i, kind, side, price, size, flags, 0)
    return r


def snapshot(bids: list[tuple[int, float]], asks: list[tuple[int, float]]) -> np.ndarray:
    spec = [(SNAPSHOT, BID, p, s, F_SNAPSHOT) for p, s in bids]
    spec += [(SNAPSHOT, ASK, p, s, F_SNAPSHOT) for p, s in asks]
    k, side, p, s, _ = spec[-1]
    spec[-1] = (k, side, p, s, F_SNAPSHOT | F_LAST)
    rows = make_rows(spec)
    rows["seq"] = 1
    return rows


def engine(window: int = 4, book_window: int = 2) -> SymbolEngine:
    cfg = FeaturesConfig(window=window, book_window=book_window)
    return SymbolEngine(INS, BookConfig(levels_out=5), cfg, SimClock())


def test_book_tracks_best_levels_through_removals() -> None:
    b = L2Book()
    for p in (100, 99, 98):
        b.set_level(BID, p, 1.0)
    for p in (101, 102):
        b.set_level(ASK, p, 2.0)
    b.set_level(BID, 100, 0.0)
    b.set_level(ASK, 101, 0.0)
    assert (b.best_bid, b.best_ask) == (99, 102)
    assert b.top(2) == ([99, 98], [1.0, 1.0], [102], [2.0])


def test_book_snapshot_restore_round_trips() -> None:
    b = L2Book()
    b.set_level(BID, 100, 1.5)
    b.set_level(ASK, 103, 0.5)
    b.last_seq = 42
    assert L2Book.restore(b.snapshot()).snapshot() == b.snapshot()


@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from([BID, ASK]), st.integers(90, 110), st.sampled_from([0.0, 1.0, 2.5])
        ),
        max_size=200,
    )
)
@settings(max_examples=200)
def test_book_best_levels_always_match_a_full_scan(ops) -> None:
    b = L2Book()
    for side, price, size in ops:
        b.set_level(side, price, size)
        assert b.best_bid == (max(b.bids) if b.bids else None)
        assert b.best_ask == (min(b.asks) if b.asks else None)
        assert all(s > 0 for s in (*b.bids.values(), *b.asks.values()))


def test_engine_applies_snapshot_then_deltas_and_emits_decision() -> None:
    eng = engine()
    upd = eng.on_batch(snapshot([(100, 1.0), (99, 2.0)], [(101, 3.0), (102, 1.0)]))
    assert upd.view.bid_ticks == (100, 99) and upd.view.ask_ticks == (101, 102)
    assert upd.decision is not None and upd.decision.features.shape == (N_FEATURES,)
    d = make_rows([(DELTA, BID, 100, 0.0, F_LAST), (TRADE, ASK, 100, 1.0, 0),
                   (DELTA, ASK, 101, 1.0, F_LAST)], start_seq=2)
    upd = eng.on_batch(d)
    assert upd.view.best_bid == 99 and upd.view.ask_sizes[0] == 1.0
    assert [t.aggressor for t in upd.view.trades] == ["SELL"]
    f = dict(zip(FEATURE_NAMES, upd.decision.features.tolist(), strict=True))
    assert f["trade_imbalance"] == -1.0
    assert f["spread_bps"] > 0


def test_engine_features_spread_microprice_imbalance_values() -> None:
    eng = engine()
    upd = eng.on_batch(snapshot([(100, 3.0)], [(102, 1.0)]))
    f = dict(zip(FEATURE_NAMES, upd.decision.features.tolist(), strict=True))
    mid = 101.0
    assert abs(f["spread_bps"] - 2 / mid * 1e4) < 1e-3
    micro = (100 * 1.0 + 102 * 3.0) / 4.0
    assert abs(f["microprice_dev_bps"] - (micro - mid) / mid * 1e4) < 1e-3
    assert abs(f["imbalance_l1"] - 0.5) < 1e-6


def test_ofi_is_positive_when_bid_queue_grows() -> None:
    eng = engine()
    eng.on_batch(snapshot([(100, 1.0)], [(101, 1.0)]))
    upd = eng.on_batch(make_rows([(DELTA, BID, 100, 5.0, F_LAST)], start_seq=2))
    f = dict(zip(FEATURE_NAMES, upd.decision.features.tolist(), strict=True))
    assert f["ofi_norm"] > 0


def test_decision_becomes_valid_when_window_is_full() -> None:
    eng = engine(window=3, book_window=2)
    eng.on_batch(snapshot([(100, 1.0)], [(101, 1.0)]))
    valid = []
    for i in range(3):
        upd = eng.on_batch(make_rows([(DELTA, BID, 99, 1.0 + i, F_LAST)], start_seq=2 + i))
        valid.append(upd.decision.valid)
        assert upd.decision.window.shape == (3, N_FEATURES)
        assert upd.decision.book.shape == (2, 40)
    assert valid == [False, True, True]


def test_decision_waits_for_the_longer_book_window() -> None:
    eng = engine(window=2, book_window=4)
    eng.on_batch(snapshot([(100, 1.0)], [(101, 1.0)]))
    valid = []
    for i in range(4):
        upd = eng.on_batch(make_rows([(DELTA, BID, 99, 1.0 + i, F_LAST)], start_seq=2 + i))
        valid.append(upd.decision.valid)
    assert valid == [False, False, True, True]
    book = upd.decision.book
    assert book.shape == (4, 40) and np.all(book[0, 0::2] != 0)  # prices never 0 when warm
    # the newest state: best bid 100 / ask 101 around mid 100.5; bid level 2 is 99 of size 4
    mid = 100.5
    assert book[-1, 0] == pytest.approx((101 - mid) / mid * 1e4, rel=1e-5)
    assert book[-1, 2] == pytest.approx((100 - mid) / mid * 1e4, rel=1e-5)
    assert book[-1, 6] == pytest.approx((99 - mid) / mid * 1e4, rel=1e-5)
    assert book[-1, 7] == pytest.approx(np.log1p(4.0), rel=1e-6)


def test_crossed_book_quarantines_until_snapshot_resync() -> None:
    eng = engine(window=2)
    eng.on_batch(snapshot([(100, 1.0)], [(101, 1.0)]))
    upd = eng.on_batch(make_rows([(DELTA, BID, 102, 1.0, F_LAST)], start_seq=2))
    assert upd.view.quarantined and "crossed" in upd.quarantine_reason
    assert not upd.decision.valid
    upd = eng.on_batch(snapshot([(100, 1.0)], [(101, 1.0)]))
    assert not upd.view.quarantined


def test_sequence_going_backwards_across_batches_quarantines() -> None:
    eng = engine()
    eng.on_batch(make_rows([(DELTA, BID, 100, 1.0, F_LAST), (DELTA, ASK, 101, 1.0, F_LAST)], 10))
    upd = eng.on_batch(make_rows([(DELTA, BID, 100, 2.0, F_LAST)], start_seq=3))
    assert upd.view.quarantined and "seq" in upd.quarantine_reason


def test_malformed_batch_is_rejected_whole_and_book_kept() -> None:
    eng = engine()
    eng.on_batch(snapshot([(100, 1.0)], [(101, 1.0)]))
    before = eng.book.snapshot()
    bad = make_rows([(DELTA, BID, 100, 7.0, F_LAST), (DELTA, ASK, 101, -2.0, F_LAST)], 5)
    upd = eng.on_batch(bad)
    assert upd.errors == ("batch[BTCUSDT].size[1] must be >= 0, was -2.0",)
    assert upd.error_kinds == ("size",)
    assert eng.book.snapshot() == before and upd.events == 0
    # the book missed the venue's updates: quarantined (once) until a snapshot
    assert upd.view.quarantined and upd.quarantine_kind == "invalid"
    assert eng.on_batch(bad).quarantine_reason == ""
    resync = snapshot([(100, 1.0)], [(101, 1.0)])
    resync["seq"] = 6
    assert not eng.on_batch(resync).view.quarantined


def test_clear_empties_the_book() -> None:
    eng = engine()
    eng.on_batch(snapshot([(100, 1.0)], [(101, 1.0)]))
    upd = eng.on_batch(make_rows([(CLEAR, 0, 0, 0.0, F_LAST)], start_seq=2))
    assert upd.view.bid_ticks == () and upd.decision is None


def test_snapshot_later_in_the_same_batch_clears_the_quarantine() -> None:
    eng = engine(window=2)
    eng.on_batch(snapshot([(100, 1.0)], [(101, 1.0)]))
    crossing = make_rows([(DELTA, BID, 102, 1.0, F_LAST)], start_seq=2)
    resync = snapshot([(100, 2.0)], [(101, 2.0)])
    resync["seq"] = 3
    upd = eng.on_batch(np.concatenate([crossing, resync]))
    assert upd.errors == ()
    assert not upd.view.quarantined and upd.quarantine_reason == ""
    assert upd.view.bid_sizes == (2.0,)


def test_snapshot_split_across_batches_is_applied_whole() -> None:
    eng = engine()
    eng.on_batch(snapshot([(90, 1.0)], [(95, 1.0)]))
    snap = snapshot([(100, 1.0), (99, 1.0)], [(101, 1.0), (102, 1.0)])
    first = eng.on_batch(snap[:2])  # the bids, no F_LAST yet
    assert first.decision is None
    upd = eng.on_batch(snap[2:])
    assert upd.view.bid_ticks == (100, 99) and upd.view.ask_ticks == (101, 102)
    assert upd.decision is not None


def test_five_step_return_uses_the_mid_five_decisions_back() -> None:
    eng = engine(window=8)
    eng.on_batch(snapshot([(100, 1.0)], [(102, 1.0)]))  # mid 101
    mids, ask, seq = [101.0], 102, 2
    for _ in range(6):  # move the ask up one tick per decision
        rows = make_rows([(DELTA, ASK, ask, 0.0, 0), (DELTA, ASK, ask + 1, 1.0, F_LAST)], seq)
        upd = eng.on_batch(rows)
        ask, seq = ask + 1, seq + 2
        mids.append((100 + ask) / 2)
    f = dict(zip(FEATURE_NAMES, upd.decision.features.tolist(), strict=True))
    assert abs(f["ret_5_bps"] - math.log(mids[-1] / mids[-6]) * 1e4) < 1e-2
    assert abs(f["ret_1_bps"] - math.log(mids[-1] / mids[-2]) * 1e4) < 1e-2


def test_feed_gap_voids_the_book_and_quarantines_until_snapshot() -> None:
    from actors.core.batch import F_GAP

    eng = engine()
    eng.on_batch(snapshot([(100, 1.0)], [(101, 1.0)]))
    upd = eng.on_batch(make_rows([(CLEAR, 0, 0, 0.0, F_LAST | F_GAP)], start_seq=9))
    assert upd.view.quarantined and upd.quarantine_kind == "gap"
    assert "gap" in upd.quarantine_reason and upd.view.bid_ticks == ()
    # deltas after the gap do not lift the quarantine; only a snapshot does
    upd = eng.on_batch(make_rows([(DELTA, BID, 100, 1.0, F_LAST)], start_seq=10))
    assert upd.view.quarantined and upd.quarantine_reason == ""  # reported once
    resync = snapshot([(100, 2.0)], [(101, 2.0)])
    resync["seq"] = 11
    upd = eng.on_batch(resync)
    assert upd.resynced and not upd.view.quarantined and eng.resyncs == 2


def test_engine_checkpoint_restore_continues_like_the_original() -> None:
    a, b = engine(), engine()
    first = snapshot([(100, 1.0), (98, 2.0), (5, 3.0)], [(101, 1.0), (900_000, 4.0)])
    later = make_rows([(DELTA, BID, 100, 0.0, 0), (DELTA, ASK, 99, 1.5, F_LAST)], start_seq=2)
    a.on_batch(first)
    b.restore(a.snapshot())
    assert b.book.snapshot()["bids"] == a.book.snapshot()["bids"]
    ua, ub = a.on_batch(later), b.on_batch(later)
    assert ua.view == ub.view and a.book.snapshot() == b.book.snapshot()


def test_engine_frames_in_small_chunks_give_the_same_features() -> None:
    from actors.book.ladder import LadderBook

    rng = np.random.default_rng(3)
    spec = [(SNAPSHOT, BID, 100 - i, 1.0 + i, F_SNAPSHOT) for i in range(10)]
    spec += [(SNAPSHOT, ASK, 101 + i, 1.0 + i, F_SNAPSHOT) for i in range(9)]
    spec.append((SNAPSHOT, ASK, 110, 2.0, F_SNAPSHOT | F_LAST))
    for _ in range(500):
        side = int(rng.integers(0, 2))
        px = int(rng.integers(91, 100)) if side == BID else int(rng.integers(101, 111))
        kind = TRADE if rng.random() < 0.2 else DELTA
        size = float(rng.integers(1 if kind == TRADE else 0, 5))
        spec.append((kind, side, px, size, F_LAST))
    rows = make_rows(spec)
    rows["seq"][:20] = 1
    a, b = engine(), engine()
    b.book = LadderBook(b.window_ticks, frame_rows=7)
    for i in range(0, len(rows), 100):
        ua, ub = a.on_batch(rows[i : i + 100]), b.on_batch(rows[i : i + 100])
        assert np.array_equal(ua.decision.features, ub.decision.features)
        assert ua.view == ub.view


def test_quarantine_lifts_when_the_resync_snapshot_ends_not_when_it_starts() -> None:
    from actors.core.batch import F_GAP

    eng = engine()
    eng.on_batch(snapshot([(100, 1.0)], [(101, 1.0)]))
    eng.on_batch(make_rows([(CLEAR, 0, 0, 0.0, F_LAST | F_GAP)], start_seq=5))
    snap = snapshot([(100, 1.0), (99, 1.0)], [(101, 1.0), (102, 1.0)])
    snap["seq"] = 9
    half = eng.on_batch(snap[:2])  # the bids only: a half-built book
    assert half.view.quarantined and not half.resynced and half.decision is None
    done = eng.on_batch(snap[2:])
    assert done.resynced and not done.view.quarantined


def test_a_trade_ending_a_batch_inside_an_open_book_message_gives_no_decision() -> None:
    eng = engine()
    eng.on_batch(snapshot([(100, 1.0)], [(101, 1.0)]))
    rows = make_rows([(DELTA, ASK, 101, 0.0, 0), (TRADE, BID, 101, 1.0, F_LAST)], start_seq=2)
    upd = eng.on_batch(rows)  # the ask side is empty mid-message: no crash, no decision
    assert upd.decision is None and upd.errors == ()


def test_sequence_error_during_an_l3_cross_needs_a_snapshot_not_an_uncross() -> None:
    from actors.core.batch import ADD, CANCEL

    eng = engine()
    r = make_rows([(ADD, BID, 100, 1.0, 0), (ADD, ASK, 99, 1.0, F_LAST)], start_seq=10)
    r["order_id"] = [1, 2]
    assert eng.on_batch(r).quarantine_kind == "crossed"
    r = make_rows([(CANCEL, ASK, 99, 1.0, F_LAST)], start_seq=3)  # seq goes backwards
    r["order_id"] = [2]
    upd = eng.on_batch(r)  # uncrossed now, but the sequence broke: still quarantined
    assert upd.view.quarantined and eng.quarantine_kind == "sequence"


def test_fills_alone_change_no_level_and_do_not_crash() -> None:
    eng = engine()
    r = make_rows([(TRADE, BID, 100, 1.0, 0)], start_seq=1)
    r["order_id"] = [7]  # a resting order's fill (L3): consumed by the L3 book
    from actors.book.l3 import L3Book

    eng.l3 = L3Book()
    upd = eng.on_batch(r)
    assert upd.events == 1 and upd.decision is None and upd.errors == ()
