"""Tardis and LOBSTER loaders on the real files in ../shared/data, against independent references.

References are built straight from the CSV text with ``csv`` and ``decimal.Decimal`` (Tardis) or
plain integer parsing of the orderbook file (LOBSTER), never with the loaders' code.
"""

from __future__ import annotations

import csv
import gzip
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from actors.book.book import L2Book, apply_rows
from actors.core.batch import ASK, BID, TRADE, validate_rows
from actors.feed.lobster import LobsterReader, lobster_pairs
from actors.feed.tardis import TardisReader
from jobs.bench import SHARED_DATA

pytestmark = pytest.mark.realdata

TARDIS = SHARED_DATA / "format_fixtures" / "tardis"
DERIBIT_BOOK = TARDIS / "deribit_incremental_book_L2_BTC-PERPETUAL.csv"
BITMEX_TRADES = TARDIS / "bitmex_trades_XBTUSD.csv"
LOBSTER = SHARED_DATA / "lobster_sample_l1"
STEM = "{}_2012-06-21_34200000_57600000_{}_1.csv.gz"


def _tardis_reference_book(path) -> dict[str, dict[Decimal, Decimal]]:
    """Tardis' own rule: a snapshot row after a non-snapshot row clears the book."""
    book: dict[str, dict[Decimal, Decimal]] = {"bid": {}, "ask": {}}
    was_snapshot = False
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            snap = row["is_snapshot"] == "true"
            if snap and not was_snapshot:
                book = {"bid": {}, "ask": {}}
            was_snapshot = snap
            price, amount = Decimal(row["price"]), Decimal(row["amount"])
            if amount == 0:
                book[row["side"]].pop(price, None)
            else:
                book[row["side"]][price] = amount
    return book


@pytest.mark.skipif(not TARDIS.exists(), reason=f"real data folder {TARDIS} is absent")
def test_tardis_deribit_book_and_bitmex_trades_match_the_csv_exactly():
    reader = TardisReader([DERIBIT_BOOK, BITMEX_TRADES])
    books: dict[str, L2Book] = {}
    rows_by_symbol: dict[str, list[np.ndarray]] = {}
    for ins, rows in reader:
        validate_rows(rows, ins.symbol)
        rows_by_symbol.setdefault(ins.symbol, []).append(rows)
        for _seq in apply_rows(books.setdefault(ins.symbol, L2Book()), rows):
            pass

    assert reader.stats.rejected == 0 and reader.stats.errors == []
    ins = reader.instruments["BTC-PERPETUAL"]
    book = books["BTC-PERPETUAL"]
    got = {
        "bid": {ins.ticks_to_price(p): Decimal(repr(s)) for p, s in book.bids.items()},
        "ask": {ins.ticks_to_price(p): Decimal(repr(s)) for p, s in book.asks.items()},
    }
    expected = _tardis_reference_book(DERIBIT_BOOK)
    assert got == expected and len(expected["ask"]) == 15
    assert reader.stats.snapshots == 1

    trades = np.concatenate(rows_by_symbol["XBTUSD"])
    xbt = reader.instruments["XBTUSD"]
    with open(BITMEX_TRADES, newline="") as f:
        ref = list(csv.DictReader(f))
    assert len(trades) == len(ref) == 10 and (trades["kind"] == TRADE).all()
    for r, t in zip(ref, trades.tolist(), strict=True):
        te, ti, _seq, _kind, side, price, size, _flags, _oid = t
        assert te == int(r["timestamp"]) * 1000 and ti == int(r["local_timestamp"]) * 1000
        assert xbt.ticks_to_price(price) == Decimal(r["price"])
        assert Decimal(repr(size)) == Decimal(r["amount"])
        assert side == {"buy": BID, "sell": ASK}[r["side"]]


def _lobster_reference(ticker: str):
    """Per message: (bids, asks) dicts of the orderbook row, and the message rows."""
    with gzip.open(LOBSTER / STEM.format(ticker, "orderbook"), "rt") as f:
        books = []
        for rec in csv.reader(f):
            v = [int(x) for x in rec]
            asks = {v[i]: float(v[i + 1]) for i in range(0, len(v), 4) if v[i] != 9999999999}
            bids = {v[i + 2]: float(v[i + 3]) for i in range(0, len(v), 4)
                    if v[i + 2] != -9999999999}
            books.append((bids, asks))
    with gzip.open(LOBSTER / STEM.format(ticker, "message"), "rt") as f:
        messages = list(csv.reader(f))
    return books, messages


@pytest.mark.skipif(not LOBSTER.exists(), reason=f"real data folder {LOBSTER} is absent")
@pytest.mark.parametrize("ticker", ["AMZN", "GOOG"])
def test_lobster_book_equals_the_orderbook_file_after_every_message(ticker):
    expected, messages = _lobster_reference(ticker)
    (pair,) = [p for p in lobster_pairs([LOBSTER]) if p[0].name.startswith(ticker)]
    reader = LobsterReader(*pair)
    book = L2Book()
    state: tuple[dict, dict] = ({}, {})
    checked = 0
    trades = []
    for ins, rows in reader:
        validate_rows(rows, ins.symbol)
        trades.append(rows[rows["kind"] == TRADE])
        for seq in apply_rows(book, rows):
            for j in range(checked, seq - 1):  # messages that changed no published level
                assert expected[j] == state, f"{ticker} message {j + 1}"
            state = (dict(book.bids), dict(book.asks))
            assert state == expected[seq - 1], f"{ticker} message {seq}"
            bp, bs, ap, az = book.top(1)
            assert (bp, ap) == (sorted(expected[seq - 1][0], reverse=True)[:1],
                                sorted(expected[seq - 1][1])[:1])
            checked = seq
    for j in range(checked, len(expected)):
        assert expected[j] == state
    assert reader.stats.rejected == 0 and reader.stats.messages == len(messages)

    # trades: one per execution message (types 4, 5, 6), at its price and size, aggressor
    # opposite to the resting order, at the New York time converted to UTC
    trade_rows = np.concatenate(trades)
    executions = [(i, m) for i, m in enumerate(messages) if m[1] in ("4", "5", "6")]
    assert len(trade_rows) == len(executions) > 10_000
    ny_midnight = datetime(2012, 6, 21, tzinfo=ZoneInfo("America/New_York"))
    for row, (i, m) in zip(trade_rows.tolist(), executions, strict=True):
        te, ti, seq, _kind, side, price, size, _flags, _oid = row
        assert seq == i + 1 and price == int(m[4]) and size == float(m[3])
        assert side == (BID if m[5] == "-1" else ASK)
        secs, _, frac = m[0].partition(".")
        local = ny_midnight + timedelta(seconds=int(secs))
        assert te == ti == int(local.timestamp()) * 1_000_000_000 + int(frac.ljust(9, "0"))
