"""Tardis CSV loader: snapshots, messages, merge order, tick inference, bad rows, gzip."""

from __future__ import annotations

import gzip
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from actors.book.book import L2Book, apply_rows
from actors.core.batch import (
    ASK,
    BID,
    DELTA,
    F_LAST,
    F_SNAPSHOT,
    SNAPSHOT,
    TRADE,
    validate_rows,
)
from actors.core.errors import ValidationError
from actors.core.instruments import Instrument
from actors.feed.tardis import BOOK_COLUMNS, TRADE_COLUMNS, TardisReader, read_tardis

BOOK_HEADER = ",".join(BOOK_COLUMNS)
TRADE_HEADER = ",".join(TRADE_COLUMNS)


def _book(sym: str, ts: int, snap: bool, side: str, price: str, amount: str,
          local: int | None = None) -> str:
    local = ts + 5 if local is None else local
    return f"deribit,{sym},{ts},{local},{'true' if snap else 'false'},{side},{price},{amount}"


def _trade(sym: str, ts: int, side: str, price: str, amount: str, local: int | None = None,
           tid: str = "t") -> str:
    local = ts + 5 if local is None else local
    return f"deribit,{sym},{ts},{local},{tid},{side},{price},{amount}"


def _write(path: Path, header: str, rows: list[str]) -> Path:
    text = header + "\n" + "".join(r + "\n" for r in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def _all(reader: TardisReader) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {}
    for ins, rows in reader:
        validate_rows(rows, ins.symbol)
        out.setdefault(ins.symbol, []).append(rows)
    return {s: np.concatenate(parts) for s, parts in out.items()}


def _levels(book: L2Book) -> tuple[dict[int, float], dict[int, float]]:
    return dict(book.bids), dict(book.asks)


def test_snapshot_after_deltas_replaces_the_book(tmp_path):
    rows = [
        _book("X", 100, True, "bid", "10.0", "1"),
        _book("X", 100, True, "ask", "10.5", "2"),
        _book("X", 200, False, "bid", "10.1", "3"),
        _book("X", 200, False, "ask", "10.5", "0"),
        _book("X", 300, True, "bid", "9.0", "4"),  # fresh snapshot: 10.0 and 10.1 are gone
        _book("X", 300, True, "ask", "9.5", "5"),
        _book("X", 400, False, "ask", "9.6", "6"),
    ]
    reader = TardisReader([_write(tmp_path / "b.csv", BOOK_HEADER, rows)])
    x = _all(reader)["X"]

    assert x["kind"].tolist() == [SNAPSHOT, SNAPSHOT, DELTA, DELTA, SNAPSHOT, SNAPSHOT, DELTA]
    assert x["flags"].tolist() == [
        F_SNAPSHOT, F_SNAPSHOT | F_LAST, 0, F_LAST, F_SNAPSHOT, F_SNAPSHOT | F_LAST, F_LAST,
    ]
    assert x["seq"].tolist() == [1, 1, 2, 2, 3, 3, 4]
    assert x["price"].tolist() == [100, 105, 101, 105, 90, 95, 96]
    book = L2Book()
    assert list(apply_rows(book, x)) == [1, 2, 3, 4]
    assert _levels(book) == ({90: 4.0}, {95: 5.0, 96: 6.0})
    assert reader.stats.snapshots == 2 and reader.stats.messages == 4
    assert reader.stats.rejected == 0


def test_a_message_is_the_rows_of_one_local_timestamp_and_snapshot_flag(tmp_path):
    rows = [
        _book("X", 100, False, "bid", "10", "1", local=1000),
        _book("X", 100, False, "bid", "9", "1", local=1000),
        _book("X", 101, False, "ask", "11", "1", local=1000),  # same local time: same message
        _book("X", 102, False, "ask", "12", "1", local=1001),
        _book("X", 103, True, "ask", "12", "1", local=1001),  # snapshot flag starts a message
    ]
    x = _all(TardisReader([_write(tmp_path / "b.csv", BOOK_HEADER, rows)]))["X"]

    assert (x["flags"] & F_LAST).tolist() == [0, 0, 1, 1, 1]
    assert x["seq"].tolist() == [1, 1, 1, 2, 3]
    assert x["ts_event"].tolist() == [100_000, 100_000, 101_000, 102_000, 103_000]
    assert x["ts_init"].tolist() == [1_000_000, 1_000_000, 1_000_000, 1_001_000, 1_001_000]


def test_book_and_trade_files_merge_by_local_timestamp_with_book_first_on_ties(tmp_path):
    book = _write(tmp_path / "book.csv", BOOK_HEADER, [
        _book("X", 1, True, "bid", "10", "1", local=10),
        _book("X", 1, True, "ask", "11", "1", local=10),
        _book("X", 2, False, "bid", "10", "2", local=30),
        _book("X", 3, False, "ask", "11", "3", local=50),
    ])
    trades = _write(tmp_path / "trades.csv", TRADE_HEADER, [
        _trade("X", 1, "buy", "11", "0.5", local=10),  # tie with the snapshot: after it
        _trade("X", 2, "sell", "10", "0.25", local=20),
        _trade("X", 3, "buy", "11", "1", local=50),  # tie with a delta: after it
    ])
    # trades listed first: the tie rule still puts book rows first
    reader = TardisReader([trades, book])
    x = _all(reader)["X"]

    assert x["ts_init"].tolist() == [10_000, 10_000, 10_000, 20_000, 30_000, 50_000, 50_000]
    assert x["kind"].tolist() == [SNAPSHOT, SNAPSHOT, TRADE, TRADE, DELTA, DELTA, TRADE]
    assert x["seq"].tolist() == [1, 1, 2, 3, 4, 5, 6]
    trade = x[x["kind"] == TRADE]
    assert trade["side"].tolist() == [BID, ASK, BID]
    assert trade["size"].tolist() == [0.5, 0.25, 1.0]
    assert (trade["flags"] == F_LAST).all()
    assert reader.stats.trades == 3 and reader.stats.book_rows == 4


def test_book_files_tie_in_the_order_given(tmp_path):
    a = _write(tmp_path / "a.csv", BOOK_HEADER, [_book("X", 1, False, "bid", "10", "1", local=7)])
    b = _write(tmp_path / "b.csv", BOOK_HEADER, [_book("X", 1, False, "bid", "10", "2", local=7)])
    assert _all(TardisReader([b, a]))["X"]["size"].tolist() == [2.0, 1.0]
    assert _all(TardisReader([a, b]))["X"]["size"].tolist() == [1.0, 2.0]


def test_several_symbols_in_one_file_are_split_with_their_own_seq(tmp_path):
    rows = [
        _book("A", 1, True, "bid", "10", "1", local=1),
        _book("B", 1, True, "bid", "20", "1", local=1),
        _book("A", 2, False, "bid", "10", "2", local=2),
        _book("B", 3, False, "bid", "20", "3", local=3),
        _book("A", 3, False, "bid", "10", "4", local=3),
    ]
    out = _all(TardisReader([_write(tmp_path / "b.csv", BOOK_HEADER, rows)]))

    assert out["A"]["size"].tolist() == [1.0, 2.0, 4.0] and out["A"]["seq"].tolist() == [1, 2, 3]
    assert out["B"]["size"].tolist() == [1.0, 3.0] and out["B"]["seq"].tolist() == [1, 2]
    assert (out["A"]["flags"] & F_LAST).all() and (out["B"]["flags"] & F_LAST).all()


def test_inferred_ticks_and_lots_are_exact_decimal_places(tmp_path):
    prices = {"BIG": ["7000.5", "7000", "7000.25", "6999.50"], "TINY": ["0.00001", "0.00012"]}
    amounts = {"BIG": ["1", "2.500"], "TINY": ["1e-7", "3"]}
    rows = [
        _book(sym, 1, True, "bid", p, amounts[sym][i % 2], local=1)
        for sym in prices for i, p in enumerate(prices[sym])
    ]
    reader = TardisReader([_write(tmp_path / "b.csv", BOOK_HEADER, rows)])
    out = _all(reader)

    assert reader.instruments["BIG"].tick_size == Decimal("0.01")
    assert reader.instruments["BIG"].lot_size == Decimal("0.1")
    assert reader.instruments["TINY"].tick_size == Decimal("0.00001")
    assert reader.instruments["TINY"].lot_size == Decimal("1e-7")
    for sym, texts in prices.items():
        tick = reader.instruments[sym].tick_size
        expected = [int(Decimal(t) / tick) for t in texts]
        assert all(Decimal(t) % tick == 0 for t in texts)
        assert out[sym]["price"].tolist() == expected
    assert out["BIG"]["price"].tolist() == [700050, 700000, 700025, 699950]
    assert out["TINY"]["size"].tolist() == [1e-7, 3.0]


def test_given_instruments_reject_prices_off_the_tick_grid_and_unknown_symbols(tmp_path):
    rows = [
        _book("X", 1, False, "bid", "10.5", "1"),
        _book("X", 2, False, "bid", "10.25", "1"),  # not a multiple of 0.5
        _book("Y", 3, False, "bid", "10", "1"),  # no instrument
    ]
    ins = {"X": Instrument("X", Decimal("0.5"), Decimal("1"), "DERIBIT")}
    reader = TardisReader([_write(tmp_path / "b.csv", BOOK_HEADER, rows)], instruments=ins)
    out = _all(reader)

    assert list(out) == ["X"] and out["X"]["price"].tolist() == [21]
    assert reader.stats.rejected == 2
    first, second = reader.stats.errors
    assert (first.field, first.value) == ("b.csv:3.price", "10.25")
    assert first.rule == "a multiple of tick_size 0.5"
    assert second.field == "b.csv:4.symbol" and second.value == "Y"


def test_bad_rows_are_rejected_by_file_line_field_rule_value_and_reading_goes_on(tmp_path):
    book = _write(tmp_path / "book.csv", BOOK_HEADER, [
        _book("X", 1, False, "bid", "10", "1"),
        _book("X", 2, False, "middle", "10", "1"),  # line 3: side
        _book("X", 3, False, "bid", "ten", "1"),  # line 4: price
        _book("X", 4, False, "bid", "10", "-1"),  # line 5: negative amount
        "deribit,X,5,10,false,bid,10",  # line 6: a field missing
        _book("X", 6, False, "ask", "11", "2"),
        _book("X", 6, False, "ask", "12", "nan"),  # line 8: not a finite amount
    ])
    trades = _write(tmp_path / "trades.csv", TRADE_HEADER, [
        _trade("X", 7, "unknown", "10", "1"),  # line 2: aggressor unknown
        _trade("X", 8, "buy", "11", "0"),  # line 3: a trade of nothing
        _trade("X", 9, "sell", "10", "1"),
    ])
    reader = TardisReader([book, trades])
    x = _all(reader)["X"]

    assert x["kind"].tolist() == [DELTA, DELTA, TRADE]
    st = reader.stats
    assert st.rejected == 7 and st.rows == 10 and st.unknown_aggressor == 1
    got = {(e.field, e.value): e.rule for e in st.errors}
    assert got[("book.csv:3.side", "middle")] == "'bid' or 'ask'"
    assert got[("book.csv:4.price", "ten")] == "a decimal number > 0"
    assert got[("book.csv:5.amount", "-1")] == "a decimal number >= 0"
    assert got[("book.csv:6", "deribit,X,5,10,false,bid,10")].startswith("a row of 8")
    assert got[("book.csv:8.amount", "nan")] == "a decimal number >= 0"
    assert "unknown aggressor" in got[("trades.csv:2.side", "unknown")]
    assert got[("trades.csv:3.amount", "0")] == "a decimal number > 0"
    assert all(isinstance(e, ValidationError) for e in st.errors)
    assert "book.csv:3.side must be 'bid' or 'ask', was 'middle'" in [str(e) for e in st.errors]


def test_a_bad_timestamp_and_snapshot_flag_are_named(tmp_path):
    rows = [
        "deribit,X,12x,10,false,bid,10,1",
        "deribit,X,1,10,maybe,bid,10,1",
        _book("X", 2, False, "bid", "10", "1"),
    ]
    reader = TardisReader([_write(tmp_path / "b.csv", BOOK_HEADER, rows)])
    assert len(_all(reader)["X"]) == 1
    fields = [e.field for e in reader.stats.errors]
    assert fields == ["b.csv:2.timestamp", "b.csv:3.is_snapshot"]


def test_an_unknown_header_raises_at_once(tmp_path):
    path = _write(tmp_path / "x.csv", "a,b,c", ["1,2,3"])
    with pytest.raises(ValidationError, match=r"x\.csv:1\.header must be the Tardis"):
        list(read_tardis([path]))


def test_gzip_files_read_like_plain_ones(tmp_path):
    rows = [_book("X", i, i == 1, "bid", f"{10 + i}.5", "1", local=i) for i in range(1, 6)]
    trades = [_trade("X", 3, "buy", "12.5", "1", local=3)]
    plain = _all(TardisReader([_write(tmp_path / "b.csv", BOOK_HEADER, rows),
                               _write(tmp_path / "t.csv", TRADE_HEADER, trades)]))
    gz = _all(TardisReader([_write(tmp_path / "b.csv.gz", BOOK_HEADER, rows),
                            _write(tmp_path / "t.csv.gz", TRADE_HEADER, trades)]))
    assert plain["X"].tobytes() == gz["X"].tobytes() and len(gz["X"]) == 6


def test_batches_end_at_message_boundaries_unless_one_message_is_longer(tmp_path):
    rows = []
    for t in range(1, 5):  # four messages of two rows
        rows += [_book("X", t, False, "bid", "10", str(t), local=t),
                 _book("X", t, False, "ask", "11", str(t), local=t)]
    rows += [_book("X", 9, False, "bid", f"{p}", "1", local=9) for p in range(1, 6)]  # 5 rows
    path = _write(tmp_path / "b.csv", BOOK_HEADER, rows)
    sizes = [len(r) for _i, r in read_tardis([path], batch_rows=3)]
    assert sizes == [2, 2, 2, 2, 3, 2]
    batches = [r for _i, r in read_tardis([path], batch_rows=3)]
    assert all(r["flags"][-1] & F_LAST for r in batches[:4])


def test_a_trade_inside_a_snapshot_run_waits_until_the_run_ends(tmp_path):
    book = _write(tmp_path / "b.csv", BOOK_HEADER, [
        _book("X", 1, True, "bid", "10", "1", local=10),
        _book("X", 1, True, "ask", "11", "1", local=12),  # the run spans two local times
    ])
    trades = _write(tmp_path / "t.csv", TRADE_HEADER, [_trade("X", 1, "buy", "11", "1", local=11)])
    reader = TardisReader([book, trades])
    x = _all(reader)["X"]

    assert x["kind"].tolist() == [SNAPSHOT, SNAPSHOT, TRADE]
    assert x["flags"].tolist() == [F_SNAPSHOT, F_SNAPSHOT | F_LAST, F_LAST]
    assert reader.stats.deferred_trades == 1
    book2 = L2Book()
    list(apply_rows(book2, x))
    assert _levels(book2) == ({10: 1.0}, {11: 1.0})  # tick 1: both snapshot rows survived


def test_many_chunks_and_files_keep_the_stream_order(tmp_path, monkeypatch):
    import actors.feed.tardis as tardis

    monkeypatch.setattr(tardis, "_BLOCK_BYTES", 256)  # many small chunks per file
    rng = np.random.default_rng(7)
    book_rows, trade_rows = [], []
    t = 1
    for i in range(400):
        t += int(rng.integers(0, 3))
        if rng.random() < 0.7:
            book_rows.append(_book("X", t, i == 0, "bid", str(int(rng.integers(90, 100))),
                                   str(int(rng.integers(0, 5))), local=t))
        else:
            trade_rows.append(_trade("X", t, "buy", "100", "1", local=t))
    book_rows[0] = _book("X", 1, True, "bid", "95", "1", local=1)
    b = _write(tmp_path / "b.csv", BOOK_HEADER, book_rows)
    tr = _write(tmp_path / "t.csv", TRADE_HEADER, trade_rows)
    reader = TardisReader([b, tr], batch_rows=17)
    x = _all(reader)["X"]
    assert reader.stats.rejected == 0

    # reference: a plain stable sort of all rows by (local time, book before trade)
    ref = sorted(
        [(int(r.split(",")[3]), 0, i) for i, r in enumerate(book_rows)]
        + [(int(r.split(",")[3]), 1, i) for i, r in enumerate(trade_rows)]
    )
    assert x["ts_init"].tolist() == [k[0] * 1000 for k in ref]
    assert x["kind"].tolist()[1:] == [TRADE if k[1] else DELTA for k in ref][1:]
    assert (np.diff(x["seq"]) >= 0).all()


def test_a_malformed_line_deep_in_a_file_is_named_and_no_row_is_lost_or_doubled(
    tmp_path, monkeypatch
):
    import actors.feed.tardis as tardis

    monkeypatch.setattr(tardis, "_BLOCK_BYTES", 300)  # the fast path yields chunks first
    rows = [_book("X", t, t == 1, "bid", str(t), "1", local=t) for t in range(1, 60)]
    rows.insert(40, "deribit,X,1,2,false,bid")  # line 42: two fields short
    rows.insert(50, "")  # line 52: blank
    reader = TardisReader([_write(tmp_path / "b.csv", BOOK_HEADER, rows)])
    x = _all(reader)["X"]

    assert x["price"].tolist() == list(range(1, 60))
    assert [e.field for e in reader.stats.errors] == ["b.csv:42", "b.csv:52"]
    assert reader.stats.rejected == 2 and reader.stats.rows == 61
