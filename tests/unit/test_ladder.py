"""The compiled ladder book against the plain reference book (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.book.book import L2Book
from actors.book.frames import reference_frames
from actors.book.ladder import ERR_CROSSED, ERR_SEQ, LadderBook
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


def rows_of(spec: list[tuple[int, int, int, float, int]], seq0: int = 1) -> np.ndarray:
    r = empty_rows(len(spec))
    for i, (kind, side, price, size, flags) in enumerate(spec):
        r[i] = (1_000 + i, 2_000 + i, seq0 + i, kind, side, price, size, flags, 0)
    return r


def assert_same(lb: LadderBook, rb: L2Book) -> None:
    s1, s2 = lb.snapshot(), rb.snapshot()
    assert s1["bids"] == s2["bids"]
    assert s1["asks"] == s2["asks"]
    assert (lb.best_bid, lb.best_ask) == (rb.best_bid, rb.best_ask)


op = st.tuples(
    st.sampled_from([DELTA, DELTA, DELTA, DELTA, TRADE, CLEAR, SNAPSHOT]),
    st.sampled_from([BID, ASK]),
    # prices far apart exercise the overflow and the re-centring of a 64-tick window
    st.one_of(st.integers(1_000, 1_100), st.integers(1, 100_000)),
    st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.25, 7.0]),
    st.sampled_from([0, F_LAST]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(op, min_size=1, max_size=120), st.integers(1, 7))
def test_ladder_equals_reference_for_any_rows_and_batching(spec: list, cut: int) -> None:
    spec = [
        (k, s, p, (sz or 1.0) if k == TRADE else sz, f | (F_SNAPSHOT if k == SNAPSHOT else 0))
        for k, s, p, sz, f in spec
    ]
    rows = rows_of(spec)
    lb, rb = LadderBook(64, overflow=2, frame_rows=3), L2Book()  # tiny: chunks and growth
    for i in range(0, len(rows), cut):
        part = rows[i : i + cut]
        m, t = lb.apply(part, capture=True)
        rm, rt = reference_frames(rb, part)
        for f in rm.dtype.names:
            assert np.array_equal(m[f], rm[f]), f
        for f in rt.dtype.names:
            assert np.array_equal(t[f], rt[f]), f
        assert_same(lb, rb)
        top_ref = rb.top(7)
        assert lb.top(7) == tuple(list(x) for x in top_ref)


def test_crossed_book_and_backward_sequence_are_reported_not_raised() -> None:
    lb = LadderBook(256)
    lb.apply(rows_of([(DELTA, BID, 100, 1.0, F_LAST), (DELTA, ASK, 101, 1.0, F_LAST)]))
    assert lb.error[0] == 0
    lb.apply(rows_of([(DELTA, BID, 101, 1.0, F_LAST)], seq0=10))
    code, row, a, b = lb.error
    assert (code, row, a, b) == (ERR_CROSSED, 0, 101, 101)
    lb.apply(rows_of([(DELTA, BID, 101, 0.0, F_LAST)], seq0=5))
    assert lb.error[0] == ERR_SEQ and lb.error[2:] == (5, 10)
    assert lb.best_bid == 100  # the book still applied the row


def test_snapshot_resyncs_and_checkpoint_round_trips() -> None:
    lb = LadderBook(128)
    lb.apply(rows_of([(DELTA, BID, 100, 1.0, 0), (DELTA, BID, 5, 2.0, 0),
                      (DELTA, ASK, 900_000, 3.0, F_LAST)]))
    snap = rows_of([(SNAPSHOT, BID, 99, 4.0, F_SNAPSHOT), (SNAPSHOT, ASK, 102, 5.0,
                                                           F_SNAPSHOT | F_LAST)], seq0=50)
    lb.apply(snap)
    assert lb.resynced and lb.snapshot()["bids"] == [[99, 4.0]]
    img = lb.snapshot()
    back = LadderBook.restore(img)
    assert back.snapshot() == img
    # restore also takes the reference book's image
    ref = L2Book()
    ref.set_level(BID, 7, 1.5)
    ref.set_level(ASK, 70_000, 2.5)
    assert LadderBook.restore(ref.snapshot(), 64).snapshot()["asks"] == [[70_000, 2.5]]


def test_window_must_be_reasonable() -> None:
    with pytest.raises(ValueError, match="window_ticks must be >= 64, was 8"):
        LadderBook(8)


def test_restore_ignores_empty_and_repeated_levels_and_bad_sizes_are_refused() -> None:
    img = {"bids": [[100, 0.0], [99, 1.0], [99, 2.0]], "asks": [[101, 1.0]], "last_seq": 1,
           "ts_event": 1, "ts_init": 1}
    b = LadderBook.restore(img, 64)
    assert b.top(5) == ([99], [2.0], [101], [1.0]) and b.n_levels() == (1, 1)
    with pytest.raises(ValueError, match="overflow must be >= 1, was 0"):
        LadderBook(64, overflow=0)
    with pytest.raises(ValueError, match="frame_rows must be >= 1, was 0"):
        LadderBook(64, frame_rows=0)
