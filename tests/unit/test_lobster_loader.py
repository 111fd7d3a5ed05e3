"""LOBSTER loader: the L2 stream rebuilt from published levels, trades, clocks, bad rows."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from actors.book.book import L2Book, apply_rows
from actors.core.batch import (
    ASK,
    BID,
    CLEAR,
    DELTA,
    F_LAST,
    F_SNAPSHOT,
    SNAPSHOT,
    TRADE,
    validate_rows,
)
from actors.core.errors import ValidationError
from actors.feed.lobster import (
    EMPTY_ASK,
    EMPTY_BID,
    LobsterReader,
    lobster_pairs,
    read_lobster,
)

DAY = "2012-06-21"  # New York summer time: UTC-4


def _names(ticker: str = "TEST", levels: int = 2, day: str = DAY, gz: str = "") -> tuple[str, str]:
    stem = f"{ticker}_{day}_34200000_57600000"
    return f"{stem}_message_{levels}.csv{gz}", f"{stem}_orderbook_{levels}.csv{gz}"


def _write(path: Path, lines: list[str]) -> Path:
    text = "".join(line + "\n" for line in lines)
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def _ob(asks: list[tuple[int, int]], bids: list[tuple[int, int]], levels: int) -> str:
    """One orderbook line from (price, size) lists, padded with LOBSTER's empty levels."""
    asks = asks + [(EMPTY_ASK, 0)] * (levels - len(asks))
    bids = bids + [(EMPTY_BID, 0)] * (levels - len(bids))
    return ",".join(f"{a[0]},{a[1]},{b[0]},{b[1]}" for a, b in zip(asks, bids, strict=True))


def _pair(tmp: Path, messages: list[str], books: list[str], levels: int = 2,
          day: str = DAY, gz: str = "") -> Path:
    m, ob = _names(levels=levels, day=day, gz=gz)
    _write(tmp / ob, books)
    return _write(tmp / m, messages)


def _rows(reader: LobsterReader) -> np.ndarray:
    parts = []
    for ins, rows in reader:
        validate_rows(rows, ins.symbol)
        parts.append(rows)
    return np.concatenate(parts)


def _tuples(rows: np.ndarray) -> list[tuple[int, int, int, int, float, int]]:
    return [(r["seq"], r["kind"], r["side"], r["price"], r["size"], r["flags"]) for r in rows]


def test_first_row_is_a_snapshot_and_empty_levels_are_not_levels(tmp_path):
    path = _pair(tmp_path, ["34200.5,1,7,10,100,1"], [_ob([(101, 5), (102, 6)], [(100, 10)], 2)])
    reader = LobsterReader(path)
    rows = _rows(reader)

    assert _tuples(rows) == [
        (1, SNAPSHOT, BID, 100, 10.0, F_SNAPSHOT),
        (1, SNAPSHOT, ASK, 101, 5.0, F_SNAPSHOT),
        (1, SNAPSHOT, ASK, 102, 6.0, F_SNAPSHOT | F_LAST),
    ]
    assert reader.instrument.symbol == "TEST" and reader.instrument.venue == "NASDAQ"
    assert reader.stats.levels == 2


def test_level_changes_are_deltas_and_a_price_leaving_the_window_is_removed(tmp_path):
    books = [
        _ob([(101, 5), (102, 6)], [(100, 10), (99, 1)], 2),
        _ob([(101, 5), (102, 7)], [(100, 10), (99, 1)], 2),  # size change
        _ob([(101, 5), (102, 7)], [(100, 10), (99, 1)], 2),  # nothing visible changes
        _ob([(101, 5), (102, 7)], [(100, 3), (99, 1)], 2),  # partial cancel
        _ob([(101, 5), (102, 7)], [(100, 3), (99, 1)], 2),  # a hidden execution
        _ob([(101, 5), (102, 7)], [(100, 3), (99, 1)], 2),  # a halt
    ]
    messages = [
        "34200.1,1,1,5,101,-1",
        "34200.2,1,2,1,102,-1",
        "34200.3,1,3,1,105,-1",  # an add beyond the two published levels
        "34200.4,2,4,7,100,1",
        "34200.5,5,0,2,100,1",
        "34200.6,7,0,0,-1,-1",
    ]
    books.append(_ob([(100, 2), (101, 5)], [(99, 1), (98, 4)], 2))  # ask 100 pushes 102 out
    messages.append("34200.7,1,5,2,100,-1")
    books.append(_ob([(101, 5)], [(99, 1), (98, 4)], 2))  # ask 100 executed: 102 not seen
    messages.append("34200.8,4,5,2,100,-1")
    reader = LobsterReader(_pair(tmp_path, messages, books))
    rows = _rows(reader)
    after_snapshot = [t for t in _tuples(rows) if t[1] != SNAPSHOT]

    assert after_snapshot == [
        (2, DELTA, ASK, 102, 7.0, F_LAST),
        (4, DELTA, BID, 100, 3.0, F_LAST),
        (5, TRADE, ASK, 100, 2.0, F_LAST),  # executing a buy (1) limit order: a sell
        (7, DELTA, BID, 100, 0.0, 0),
        (7, DELTA, BID, 98, 4.0, 0),
        (7, DELTA, ASK, 100, 2.0, 0),
        (7, DELTA, ASK, 102, 0.0, F_LAST),
        (8, TRADE, BID, 100, 2.0, F_LAST),  # executing a sell (-1) limit order: a buy
        (8, DELTA, ASK, 100, 0.0, F_LAST),
    ]
    st = reader.stats
    assert st.by_type == {1: 4, 2: 1, 4: 1, 5: 1, 7: 1} and st.halts == 1
    assert st.trades == 2 and st.rejected == 0 and st.messages == 8


def test_times_are_new_york_local_converted_to_utc_nanoseconds(tmp_path):
    def first_ts(day: str, time: str) -> int:
        sub = tmp_path / day
        sub.mkdir()
        path = _pair(sub, [f"{time},1,1,1,100,1"], [_ob([(101, 1)], [(100, 1)], 1)], 1, day)
        rows = _rows(LobsterReader(path))
        assert (rows["ts_init"] == rows["ts_event"]).all()
        return int(rows["ts_event"][0])

    def utc_ns(*args: int) -> int:
        return int(datetime(*args, tzinfo=UTC).timestamp()) * 1_000_000_000

    # 09:30:00.017459617 EDT = 13:30 UTC; 09:30:00.5 EST (January) = 14:30 UTC
    assert first_ts("2012-06-21", "34200.017459617") == utc_ns(2012, 6, 21, 13, 30) + 17459617
    assert first_ts("2012-01-03", "34200.5") == utc_ns(2012, 1, 3, 14, 30) + 500_000_000
    assert first_ts("2012-01-04", "57599") == utc_ns(2012, 1, 4, 20, 59, 59)


def test_bad_rows_are_rejected_by_line_field_rule_value_and_the_book_stays_exact(tmp_path):
    books = [
        _ob([(101, 5)], [(100, 10)], 1),
        _ob([(101, 5)], [(100, 11)], 1),  # message 2 is bad: this change moves to message 3
        _ob([(101, 4)], [(100, 11)], 1),
        _ob([(101, 4)], [(100, 11)], 1),
        _ob([(101, 4)], [(100, 12)], 1),
        _ob([(101, -3)], [(100, 12)], 1),  # line 6: a published ask of size -3
        _ob([(101, 4)], [(100, 13)], 1),
    ]
    messages = [
        "34200.1,1,1,5,101,-1",
        "34200.2,9,2,1,100,1",  # line 2: type 9
        "34200.3,3,3,1,101,-1",
        "34200.4,1,4,0,100,1",  # line 4: size 0
        "34200.5,1,5,1,abc,1",  # line 5: price not an integer
        "34200.6,1,6,1,101,-1",
        "34200.7,1,7,1,100,1",
    ]
    reader = LobsterReader(_pair(tmp_path, messages, books, levels=1))
    rows = _rows(reader)
    st = reader.stats

    assert st.rejected == 4 and st.messages == 7
    assert [(e.field, e.value) for e in st.errors] == [
        ("TEST_2012-06-21_34200000_57600000_message_1.csv:2.type", 9),
        ("TEST_2012-06-21_34200000_57600000_message_1.csv:4.size", 0),
        ("TEST_2012-06-21_34200000_57600000_message_1.csv:5.price", "abc"),
        ("TEST_2012-06-21_34200000_57600000_orderbook_1.csv:6.ask_size_1", -3),
    ]
    assert st.errors[0].rule.startswith("one of 1-7")
    assert st.errors[1].rule == "> 0 for types 1-6"
    assert st.errors[2].rule == "an integer"
    assert st.errors[3].rule == "> 0 at a published level"
    assert [t for t in _tuples(rows) if t[1] != SNAPSHOT] == [
        (3, DELTA, BID, 100, 11.0, 0),
        (3, DELTA, ASK, 101, 4.0, F_LAST),
        (7, DELTA, BID, 100, 13.0, F_LAST),
    ]


def test_levels_out_of_price_order_are_rejected(tmp_path):
    books = [_ob([(101, 5), (103, 1)], [(100, 1)], 2), _ob([(103, 5), (101, 1)], [(100, 1)], 2)]
    reader = LobsterReader(_pair(tmp_path, ["34200.1,1,1,5,101,-1", "34200.2,1,2,1,103,-1"],
                                 books))
    _rows(reader)
    (err,) = reader.stats.errors
    assert err.field.endswith("orderbook_2.csv:2.ask_price_2") and err.value == 101
    assert "above ask_price_1" in err.rule


def test_an_empty_first_book_is_a_clear(tmp_path):
    path = _pair(tmp_path, ["34200.1,3,1,5,101,-1", "34200.2,1,2,1,101,-1"],
                 [_ob([], [], 1), _ob([(101, 1)], [], 1)])
    assert _tuples(_rows(LobsterReader(path))) == [
        (1, CLEAR, 0, 0, 0.0, F_LAST), (2, DELTA, ASK, 101, 1.0, F_LAST),
    ]


def test_files_of_different_lengths_raise(tmp_path):
    path = _pair(tmp_path, ["34200.1,1,1,5,101,-1", "34200.2,1,1,5,101,-1"],
                 [_ob([(101, 5)], [], 1)])
    with pytest.raises(ValidationError, match="rows must be as many as the message file's 2"):
        list(read_lobster(path))


def test_a_column_count_not_a_multiple_of_four_raises(tmp_path):
    m, ob = _names(levels=1)
    _write(tmp_path / ob, ["101,5,100"])
    _write(tmp_path / m, ["34200.1,1,1,5,101,-1"])
    with pytest.raises(ValidationError, match="columns must be a positive multiple of 4"):
        list(read_lobster(tmp_path / m))


def test_random_books_of_three_levels_replay_exactly(tmp_path):
    """Whatever the published levels do, the rebuilt book equals them after every message."""
    rng = np.random.default_rng(11)
    levels, n = 3, 400
    books, messages, expected = [], [], []
    for i in range(n):
        mid = 1000 + int(rng.integers(-3, 4))
        nb, na = int(rng.integers(0, levels + 1)), int(rng.integers(0, levels + 1))
        bid_px = sorted(rng.choice(np.arange(mid - 8, mid), nb, replace=False).tolist(),
                        reverse=True)
        ask_px = sorted(rng.choice(np.arange(mid + 1, mid + 9), na, replace=False).tolist())
        bids = [(p, int(rng.integers(1, 4))) for p in bid_px]
        asks = [(p, int(rng.integers(1, 4))) for p in ask_px]
        books.append(_ob(asks, bids, levels))
        expected.append((dict(bids), dict(asks)))
        typ = int(rng.choice([1, 2, 3, 4, 5]))
        messages.append(f"{34200 + i}.25,{typ},{i + 1},{int(rng.integers(1, 9))},{mid},1")
    reader = LobsterReader(_pair(tmp_path, messages, books, levels=levels, gz=".gz"),
                           batch_rows=50)
    book = L2Book()
    seen = 0
    state = ({}, {})
    for _ins, rows in reader:
        assert len(rows) <= 50 and rows["flags"][-1] & F_LAST
        for seq in apply_rows(book, rows):
            # messages between book messages changed nothing
            for j in range(seen, seq - 1):
                assert expected[j] == state, f"message {j + 1}"
            state = (dict(book.bids), dict(book.asks))
            assert state == expected[seq - 1], f"message {seq}"
            seen = seq
    for j in range(seen, n):
        assert expected[j] == state
    assert reader.stats.trades == sum(m.split(",")[1] in "45" for m in messages)


def test_lobster_pairs_finds_the_other_file_either_way_once(tmp_path):
    _pair(tmp_path, ["34200.1,1,1,5,101,-1"], [_ob([(101, 5)], [], 2)])
    m, ob = _names(levels=2)
    other = tmp_path / "other"
    other.mkdir()
    _pair(other, ["34200.1,1,1,5,101,-1"], [_ob([(101, 5)], [], 2)], gz=".gz")
    (other / "notes.txt").write_text("not lobster")

    pairs = lobster_pairs([tmp_path / ob, tmp_path / m, other])
    assert pairs == [
        (tmp_path / m, tmp_path / ob),
        (other / (m + ".gz"), other / (ob + ".gz")),
    ]
    with pytest.raises(ValidationError, match="a LOBSTER file name"):
        lobster_pairs([other / "notes.txt"])
    (other / (ob + ".gz")).unlink()
    with pytest.raises(ValidationError, match="pair must be an existing file"):
        lobster_pairs([other / (m + ".gz")])
