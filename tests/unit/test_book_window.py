"""The raw-book window the deeplob and transformer models read (actors.book.book_window)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.book.book_window import BOOK_COLUMNS, BookWindow, book_state
from actors.book.frames import DEPTH
from actors.core.errors import ValidationError


def levels(best_bid: int, best_ask: int, n_bid: int = DEPTH, n_ask: int = DEPTH, size: float = 2.0):
    bp = np.zeros(DEPTH, np.int64)
    bs = np.zeros(DEPTH)
    ap = np.zeros(DEPTH, np.int64)
    as_ = np.zeros(DEPTH)
    bp[:n_bid] = best_bid - 2 * np.arange(n_bid)
    bs[:n_bid] = size
    ap[:n_ask] = best_ask + 2 * np.arange(n_ask)
    as_[:n_ask] = size
    return bp, bs, ap, as_


def test_book_window_rows_follow_fi2010_column_order_relative_to_newest_mid() -> None:
    bw = BookWindow(2)
    bw.push(*levels(1000, 1002))
    bw.push(*levels(1010, 1012, size=9.0))

    a = bw.array()

    assert a.shape == (2, BOOK_COLUMNS) and a.dtype == np.float32
    mid = 1011.0
    # newest state: ask 1, ask size 1, bid 1, bid size 1, ask 2 ...
    assert a[1, 0] == pytest.approx((1012 - mid) / mid * 1e4, rel=1e-5)
    assert a[1, 1] == pytest.approx(np.log1p(9.0), rel=1e-6)
    assert a[1, 2] == pytest.approx((1010 - mid) / mid * 1e4, rel=1e-5)
    assert a[1, 4] == pytest.approx((1014 - mid) / mid * 1e4, rel=1e-5)
    # the older state is priced against the newest mid: the mid rose, so it sits below zero
    assert a[0, 0] == pytest.approx((1002 - mid) / mid * 1e4, rel=1e-5) and a[0, 0] < 0


def test_thin_book_levels_extend_one_tick_beyond_with_zero_size() -> None:
    state = book_state(*levels(1000, 1002, n_bid=3, n_ask=1))

    prices, sizes = state
    bids, asks = prices[1::2], prices[0::2]
    assert bids.tolist()[:5] == [1000, 998, 996, 995, 994]
    assert asks.tolist()[:3] == [1002, 1003, 1004]
    assert sizes[1::2].tolist()[3:] == [0.0] * (DEPTH - 3)


def test_window_is_cold_until_full_and_zero_padded_at_the_front() -> None:
    bw = BookWindow(3)
    assert not bw.is_warm() and not bw.array().any()
    bw.push(*levels(1000, 1002))
    bw.push(*levels(1000, 1002))
    a = bw.array()
    assert not bw.is_warm() and not a[0].any() and a[1:].all(axis=1).any()
    bw.push(*levels(1000, 1002))
    assert bw.is_warm()
    bw.clear()
    assert not bw.is_warm()


@pytest.mark.parametrize("length", [0, -1, 2.5, True])
def test_book_window_length_must_be_a_positive_int(length: object) -> None:
    with pytest.raises(ValidationError, match="book_window"):
        BookWindow(length)  # type: ignore[arg-type]


def test_book_state_refuses_an_empty_best_level() -> None:
    bp, bs, ap, as_ = levels(1000, 1002)
    bs[0] = 0.0
    with pytest.raises(ValidationError, match="book must be non-empty best bid and ask"):
        book_state(bp, bs, ap, as_)


@settings(max_examples=60, deadline=None)
@given(
    mids=st.lists(st.integers(100, 100_000), min_size=1, max_size=12),
    length=st.integers(1, 6),
)
def test_ring_keeps_the_last_states_in_order(mids: list[int], length: int) -> None:
    bw = BookWindow(length)
    for m in mids:
        bw.push(*levels(m, m + 2))

    a = bw.array()

    kept = mids[-length:]
    newest_mid = kept[-1] + 1.0
    expect = [(m + 2 - newest_mid) / newest_mid * 1e4 for m in kept]
    got = a[length - len(kept):, 0]
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-3)
    assert np.all(np.diff(a[length - len(kept):, 0::4], axis=1) > 0)  # asks rise with level
