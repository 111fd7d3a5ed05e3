"""Binance diff-depth sync rules, on hand-written messages; the compiled decoder
(``actors.feed.binance_fast``) against the ``json`` reference, item by item."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import numpy as np

from actors.core.batch import CLEAR, MD_DTYPE, SNAPSHOT, TRADE
from actors.core.instruments import Instrument
from actors.feed.binance import BookTicker, read_session
from actors.feed.binance_fast import (
    K_DEPTH,
    K_SNAPSHOT,
    K_TICKER,
    K_TRADE,
    parse_depth,
    scan_lines,
    tick_parts,
    to_size,
    to_ticks,
)


def _line(ts: int, obj: dict) -> str:
    return f"{ts} {json.dumps(obj)}\n"


def _depth(stream: str, big_u: int, u: int, bids, asks, pu: int | None = None) -> dict:
    d = {"e": "depthUpdate", "E": 1_700_000_000_000, "s": "BTCUSDT", "U": big_u, "u": u,
         "b": bids, "a": asks}
    if pu is not None:
        d["pu"] = pu
        d["T"] = 1_700_000_000_000
    return {"stream": stream, "data": d}


def _write(tmp: Path, lines: list[str]) -> Path:
    p = tmp / "rec.txt"
    p.write_text("".join(lines))
    return p


SNAP = {"lastUpdateId": 100, "bids": [["100.0", "1.000"]], "asks": [["100.1", "2.000"]]}


def test_futures_diffs_before_the_snapshot_are_buffered_and_stale_ones_dropped(tmp_path):
    s = "btcusdt@depth@0ms"
    lines = [
        _line(1, _depth(s, 90, 95, [["99.9", "1"]], [], pu=89)),  # stale: u < lastUpdateId
        _line(2, _depth(s, 96, 101, [["100.0", "3"]], [], pu=95)),  # straddles: first applied
        _line(3, SNAP),
        _line(4, _depth(s, 102, 104, [], [["100.1", "0"], ["100.2", "1"]], pu=101)),
    ]
    items = list(read_session([_write(tmp_path, lines)]))
    rows = [r for _s, it, _y in items for r in it.tolist()]
    sync = items[-1][2]
    assert sync.stats.dropped_stale == 1 and sync.stats.applied == 2 and sync.stats.gaps == 0
    kinds = [(r[3], r[5], r[6]) for r in rows]
    assert kinds[:2] == [(SNAPSHOT, 1000, 1.0), (SNAPSHOT, 1001, 2.0)]
    assert kinds[2:] == [(0, 1000, 3.0), (0, 1001, 0.0), (0, 1002, 1.0)]
    assert [r[2] for r in rows] == [100, 100, 101, 104, 104]


def test_futures_broken_pu_chain_is_a_gap_and_nothing_after_it_is_applied(tmp_path):
    s = "btcusdt@depth@0ms"
    lines = [
        _line(1, SNAP),
        _line(2, _depth(s, 100, 101, [["100.0", "3"]], [], pu=99)),
        _line(3, _depth(s, 105, 106, [["100.0", "9"]], [], pu=104)),  # pu != 101
        _line(4, _depth(s, 107, 108, [["100.0", "7"]], [], pu=106)),
    ]
    items = list(read_session([_write(tmp_path, lines)]))
    sync = items[-1][2]
    assert sync.stats.gaps == 1 and "must continue from 101" in sync.stats.errors[0]
    sizes = [r[6] for _s, it, _y in items for r in it.tolist() if r[3] == 0]
    assert sizes == [3.0]
    # the book is told: one CLEAR flagged F_GAP right after the last applied diff
    from actors.core.batch import F_GAP

    rows = [r for _s, it, _y in items for r in it.tolist()]
    gaps = [r for r in rows if r[3] == CLEAR]
    assert len(gaps) == 1 and gaps[0][7] & F_GAP and gaps[0][2] == 101
    assert rows[-1] == gaps[0]


def test_spot_rules_use_u_plus_one(tmp_path):
    s = "btcusdt@depth@100ms"
    lines = [
        _line(1, SNAP),
        _line(2, _depth(s, 95, 100, [["99.0", "1"]], [])),  # u <= lastUpdateId: stale on spot
        _line(3, _depth(s, 101, 103, [["99.5", "1"]], [])),
        _line(4, _depth(s, 104, 104, [["99.6", "1"]], [])),
        _line(5, {"stream": "btcusdt@trade", "data": {"e": "trade", "E": 1, "s": "BTCUSDT",
                                                    "t": 1, "p": "100.1", "q": "0.5",
                                                    "T": 1_700_000_000_001, "m": True}}),
    ]
    items = list(read_session([_write(tmp_path, lines)]))
    sync = items[-1][2]
    assert sync.market == "spot" and str(sync.instrument.tick_size) == "0.01"
    assert (sync.stats.dropped_stale, sync.stats.applied, sync.stats.gaps) == (1, 2, 0)
    trades = [r for _s, it, _y in items for r in it.tolist() if r[3] == TRADE]
    assert trades == [(1_700_000_000_001_000_000, 5, 104, TRADE, 1, 10010, 0.5, 1, 0)]


# --- the compiled decoder (binance_fast) against the json reference -----------------------------


def _stats(sync) -> tuple:
    st = sync.stats
    return (st.diffs, st.applied, st.dropped_stale, st.buffered, st.gaps, st.trades,
            st.snapshots, st.rejected, tuple(st.errors))


def _items(path: Path, fast: bool, **kw) -> list[tuple]:
    """Everything read_session yields, with a copy of the stats at each item; last, an
    ``("END", ...)`` item with every symbol's final stats."""
    out, syncs = [], {}
    for sym, item, sync in read_session([path], fast=fast, **kw):
        body = (item.dtype, item.tobytes()) if isinstance(item, np.ndarray) else item
        out.append((sym, body, _stats(sync), sync.market, str(sync.instrument.tick_size)))
        syncs[sym] = sync
    out.append(("END", None, {s: _stats(y) for s, y in syncs.items()}, None, None))
    return out


def _both(path: Path, **kw) -> list[tuple]:
    """Read ``path`` with both decoders; they must agree item by item."""
    fast, ref = _items(path, True, **kw), _items(path, False, **kw)
    assert fast == ref
    return fast


def _rows(items: list[tuple]) -> np.ndarray:
    arrays = [np.frombuffer(i[1][1], dtype=i[1][0]) for i in items if isinstance(i[1], tuple)]
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=MD_DTYPE)


def _trade(ts: int, price: str, qty: str, t_ms: int = 1_700_000_000_001) -> str:
    return _line(ts, {"stream": "btcusdt@trade", "data": {"e": "trade", "E": 1, "s": "BTCUSDT",
                                                          "t": 1, "p": price, "q": qty,
                                                          "T": t_ms, "m": False, "X": "MARKET"}})


def test_existing_scenarios_read_the_same_with_both_decoders(tmp_path):
    s = "btcusdt@depth@0ms"
    lines = [
        _line(1, _depth(s, 90, 95, [["99.9", "1"]], [], pu=89)),
        _line(2, _depth(s, 96, 101, [["100.0", "3"]], [], pu=95)),
        _line(3, SNAP),
        _line(4, _depth(s, 102, 104, [], [["100.1", "0"], ["100.2", "1"]], pu=101)),
        _trade(5, "100.1", "0.5"),
        _line(6, _depth(s, 105, 106, [["100.0", "9"]], [], pu=104)),
        _line(7, _depth(s, 108, 109, [["100.0", "7"]], [], pu=107)),  # gap
        _line(8, _depth(s, 110, 111, [["100.0", "7"]], [], pu=109)),  # buffered after the gap
    ]
    items = _both(_write(tmp_path, lines), batch_rows=2)
    stats = items[-1][2]["BTCUSDT"]
    assert stats[:8] == (5, 3, 1, 3, 1, 1, 1, 0)
    assert "must continue from 106, was U=108 u=109 pu=107" in stats[8][0]
    assert len([i for i in items if isinstance(i[1], tuple)]) > 1  # cut by batch_rows


def test_off_tick_price_is_rejected_and_reported_never_rounded(tmp_path):
    s = "btcusdt@depth@0ms"
    snap2 = {"lastUpdateId": 200, "bids": [["99.0", "1"]], "asks": [["101.0", "1"]]}
    lines = [
        _line(1, SNAP),
        _line(2, _depth(s, 100, 101, [["100.0", "3"]], [], pu=99)),
        _line(3, _depth(s, 102, 103, [["100.05", "4"]], [["100.1", "1"]], pu=101)),  # off tick
        _trade(4, "100.15", "0.5"),  # the book is broken: trades are not emitted (or checked)
        _line(5, _depth(s, 104, 105, [["100.0", "5"]], [], pu=103)),  # book broken: buffered
        _line(6, snap2),
        _line(7, _depth(s, 199, 201, [["99.5", "2"]], [], pu=198)),  # resynced
    ]
    for fast in (True, False):
        items = list(read_session([_write(tmp_path, lines)], fast=fast))
        st = items[-1][2].stats
        assert st.rejected == 1 and st.applied == 2 and st.snapshots == 2 and st.gaps == 0
        assert st.errors == [
            "BTCUSDT depthUpdate U=102 u=103: price must be a multiple of tick_size 0.1, "
            "was '100.05'"
        ]
        rows = np.concatenate([it for _s, it, _y in items])
        assert 1000 not in rows["price"][rows["seq"] == 103]  # not rounded to 100.0 / 100.1
        # 101 twice: the last applied diff, then the CLEAR flagged F_GAP that voids the book
        assert rows["seq"].tolist() == [100, 100, 101, 101, 200, 200, 201]
        assert rows["kind"].tolist()[3] == CLEAR
    _both(_write(tmp_path, lines))
    # a trade at an off-tick price while synced is rejected on its own
    lines2 = [_line(1, SNAP), _line(2, _depth(s, 100, 101, [], [], pu=99)),
              _trade(3, "100.15", "0.5"), _trade(4, "100.2", "0.5")]
    items = _both(_write(tmp_path, lines2))
    final = items[-1][2]["BTCUSDT"]
    assert final[5] == 1 and final[7] == 1  # one trade row, one rejected
    assert "price must be a multiple of tick_size 0.1, was '100.15'" in final[8][0]
    assert _rows(items)["price"].tolist() == [1000, 1001, 1002]


def test_malformed_lines_are_counted_and_reported_without_crash(tmp_path):
    s = "btcusdt@depth@0ms"
    good = _line(3, _depth(s, 100, 101, [["100.0", "3"]], [], pu=99))
    lines = [
        "garbage\n",  # before any stream message: attributed once the symbol is known
        _line(2, SNAP),
        good,
        '4 {"stream": "btcusdt@depth@0ms", "data": {"e": "depthUpdate", "U": 1\n',  # cut
        "5 [1, 2]\n",
        "\n",
        '7 {"stream": "btcusdt@depth@0ms", "data": 5}\n',
        _line(8, _depth(s, 102, 103, [["100.0", "x"]], [], pu=101)),  # size not a number
        _line(9, _depth(s, 104, 105, [], [], pu=103)),  # buffered: the book is broken
    ]
    items = _both(_write(tmp_path, lines))
    st = items[-1][2]["BTCUSDT"]
    assert st[7] == 6 and st[1] == 1 and st[3] == 1  # rejected, applied, buffered
    errors = st[8]
    assert errors[0] == "rec.txt:1 must be '<ns> <json object>', was 'garbage'"
    assert errors[1].startswith("rec.txt:4 must be '<ns> <json object>', was '4 {\"stream\"")
    assert errors[2] == "rec.txt:5 must be '<ns> <json object>', was '5 [1, 2]'"
    assert errors[3] == "rec.txt:6 must be '<ns> <json object>', was ''"
    assert errors[4].startswith("rec.txt:7 must be a stream message with a data object")
    assert errors[5] == ("BTCUSDT depthUpdate U=102 u=103: size must be a decimal number, "
                         "was 'x'")


def test_missing_and_mistyped_fields_are_rejected_by_name(tmp_path):
    s = "btcusdt@depth@0ms"
    d1 = _depth(s, 100, 101, [["100.0", "3"]], [], pu=99)
    del d1["data"]["E"]
    d2 = _depth(s, 100, 101, [["100.0", "3"]], [], pu=99)
    d2["data"]["u"] = "101"
    lines = [_line(1, SNAP), _line(2, d1), _line(3, SNAP), _line(4, d2)]
    items = _both(_write(tmp_path, lines))
    errors = items[-1][2]["BTCUSDT"][8]
    assert errors == ("BTCUSDT depthUpdate U=100 u=101: E must be present, was 'missing'",
                      "BTCUSDT depthUpdate U=100 u='101': u must be an integer, was '101'")


def _canonical(ts: int, obj: dict) -> str:
    return f"{ts} {json.dumps(obj, separators=(',', ':'))}\n"


def test_key_order_and_whitespace_do_not_change_the_rows(tmp_path):
    s = "btcusdt@depth@0ms"
    msgs = [
        (1, SNAP),
        (2, _depth(s, 100, 101, [["100.0", "3"], ["99.9", "1.5"]], [["100.2", "0.25"]], pu=99)),
        (3, {"stream": "btcusdt@trade", "data": {"e": "trade", "E": 5, "s": "BTCUSDT", "t": 9,
                                                 "p": "100.2", "q": "0.010", "T": 6, "m": True,
                                                 "X": "MARKET"}}),
        (4, {"stream": "btcusdt@bookTicker", "data": {"e": "bookTicker", "u": 101,
                                                      "s": "BTCUSDT", "b": "100.0", "B": "3",
                                                      "a": "100.2", "A": "0.25", "T": 1,
                                                      "E": 1}}),
        (5, _depth(s, 102, 104, [["100.0", "0"]], [["100.3", "7"]], pu=101)),
    ]
    canon = tmp_path / "canon"
    canon.mkdir()
    base = _both(_write(canon, [_canonical(ts, m) for ts, m in msgs]))

    def shuffled(obj: dict) -> dict:
        out = dict(reversed(list(obj.items())))  # "a" before "b", "u" before "U", "s" last
        if "data" in out:
            out["data"] = dict(reversed(list(out["data"].items())))
        return out

    variants = [
        [_line(ts, m) for ts, m in msgs],  # json.dumps spacing: ", " and ": "
        [_canonical(ts, shuffled(m)) for ts, m in msgs],
        [f"{ts} {json.dumps(shuffled(m), indent=None, separators=(' , ', ' :  '))}\n"
         for ts, m in msgs],
        [f"{ts} \t{json.dumps(m).replace('[', '[ ').replace(']', ' ]')}  \n" for ts, m in msgs],
    ]
    for k, lines in enumerate(variants):
        d = tmp_path / f"v{k}"
        d.mkdir()
        items = _both(_write(d, lines))
        assert items == base, f"variant {k}"
        bf_kinds = scan_lines(np.frombuffer("".join(lines).encode(), dtype=np.uint8))[3]
        assert bf_kinds.tolist() == [K_SNAPSHOT, K_DEPTH, K_TRADE, K_TICKER, K_DEPTH]
    rows = _rows(base)
    assert rows["price"].tolist() == [1000, 1001, 1000, 999, 1002, 1002, 1000, 1003]
    assert rows["side"].tolist() == [0, 1, 0, 0, 1, 1, 0, 1]
    assert rows["size"].tolist() == [1.0, 2.0, 3.0, 1.5, 0.25, 0.01, 0.0, 7.0]
    tickers = [i[1] for i in base if isinstance(i[1], BookTicker)]
    assert tickers == [BookTicker("BTCUSDT", 101, 4, 1000, "3", 1002, "0.25")]


def test_spot_and_futures_read_by_their_own_rules_with_both_decoders(tmp_path):
    spot = [
        _line(1, SNAP),
        _line(2, _depth("btcusdt@depth@100ms", 95, 100, [["99.00", "1"]], [])),  # stale
        _line(3, _depth("btcusdt@depth@100ms", 101, 103, [["99.55", "1"]], [])),
        _line(4, {"stream": "btcusdt@bookTicker",  # spot: no "e"
                  "data": {"u": 103, "s": "BTCUSDT", "b": "99.55", "B": "1.00000000",
                           "a": "100.10", "A": "2.00000000"}}),
        _line(5, _depth("btcusdt@depth@100ms", 104, 104, [["99.56", "1"]], [])),
        _line(6, _depth("btcusdt@depth@100ms", 106, 107, [["99.57", "1"]], [])),  # U != u + 1
    ]
    items = _both(_write(tmp_path, spot))
    assert {i[3] for i in items[:-1]} == {"spot"} and {i[4] for i in items[:-1]} == {"0.01"}
    assert items[-1][2]["BTCUSDT"][:5] == (4, 2, 1, 0, 1)
    assert [i[1] for i in items if isinstance(i[1], BookTicker)] == [
        BookTicker("BTCUSDT", 103, 4, 9955, "1.00000000", 10010, "2.00000000")]
    futures = [_line(1, SNAP), _line(2, _depth("btcusdt@depth@0ms", 99, 101, [], [], pu=98)),
               _line(3, _depth("btcusdt@depth@0ms", 102, 103, [["99.9", "1"]], [], pu=101))]
    items = _both(_write(tmp_path, futures))
    assert {i[3] for i in items[:-1]} == {"usdm"} and {i[4] for i in items[:-1]} == {"0.1"}
    assert items[-1][2]["BTCUSDT"][:5] == (2, 2, 0, 0, 0)


def test_lines_the_compiled_parser_declines_are_read_exactly_by_the_reference(tmp_path):
    s = "btcusdt@depth@0ms"
    odd_size = "0.12345678901234567890"  # beyond 2**53: float() rounds it, so must we
    lines = [
        _line(1, SNAP),
        _line(2, _depth(s, 100, 101, [["100.0", odd_size]], [], pu=99)),
        _line(3, _depth(s, 102, 103, [[100.1, 2.5]], [], pu=101)),  # JSON numbers, not strings
        '4 {"stream":"btc\\u0075sdt@depth@0ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT",'
        '"U":104,"u":105,"pu":103,"b":[],"a":[["100.3","1e1"]]}}\n',  # escape; exponent size
        '5 {"data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":106,"u":107,"pu":105,"b":[],'
        '"a":[],"a":[["100.4","1"]]}}\n',  # a duplicated key: json keeps the last one
        _line(6, {"stream": "ethusdt@depth@0ms", "data": {  # another symbol in the file
            "e": "depthUpdate", "E": 1, "T": 1, "s": "ETHUSDT", "U": 5, "u": 6, "pu": 4,
            "b": [["3000.01", "1"]], "a": []}}),
        _line(7, _depth(s, 108, 109, [["100.5", "1"]], [], pu=107)),
    ]
    path = _write(tmp_path, lines)
    items = _both(path, batch_rows=1)
    btc = _rows([i for i in items if i[0] == "BTCUSDT"])
    assert btc["size"].tolist()[2:] == [float(odd_size), 2.5, 10.0, 1.0, 1.0]
    assert btc["price"].tolist()[2:] == [1000, 1001, 1003, 1004, 1005]
    eth = [i for i in items if i[0] == "ETHUSDT"]
    assert eth == []  # no snapshot for ETHUSDT: its diff is buffered, nothing emitted
    d = parse_depth(np.frombuffer(path.read_bytes(), dtype=np.uint8), 1, -1)
    assert d.declined.tolist() == [1, 2, 3, 4, 5]  # off tick (3000.01 on 0.1) included
    assert d.u.tolist() == [109]


def test_parse_depth_matches_decimal_and_float_on_random_levels():
    rng = np.random.default_rng(7)
    ins = Instrument("X", Decimal("0.01"), Decimal("0.001"))
    levels, want_px, want_sz = [], [], []
    for _ in range(2_000):
        ticks = int(rng.integers(0, 10**9))
        px = str(ins.ticks_to_price(ticks))
        if rng.random() < 0.5:
            px += "0" * int(rng.integers(0, 6))  # trailing zeros, as spot sends "61737.63000000"
            px = px if "." in px else px + "." + "0" * int(rng.integers(1, 4))
        frac = int(rng.integers(0, 10))  # at most 15 digits: below 2**53
        sz = f"{int(rng.integers(0, 10**6))}.{int(rng.integers(0, 10**frac)):0{frac}d}" \
            if frac else str(int(rng.integers(0, 10**9)))
        levels.append([px, sz])
        want_px.append(ins.price_to_ticks(px))
        want_sz.append(float(sz))
    lines = []
    for k in range(0, len(levels), 100):
        msg = _depth("x@depth", k, k + 1, levels[k:k + 50], levels[k + 50:k + 100])
        lines.append(_canonical(k, msg))
    d = parse_depth(np.frombuffer("".join(lines).encode(), dtype=np.uint8), 1, -2)
    assert d.declined.size == 0 and d.n_bid.tolist() == [50] * 20
    assert d.price.tolist() == want_px
    assert d.size.tolist() == want_sz  # bit-exact: == on floats
    assert d.side.tolist() == ([0] * 50 + [1] * 50) * 20
    assert d.first.tolist() == list(range(0, 2_000, 100))
    assert d.ts_init.tolist() == list(range(0, 2_000, 100)) and d.T.tolist() == [0] * 20
    assert d.pu.tolist() == [-1] * 20  # spot: no pu
    assert d["price"] is d.price and d["seq"].tolist() == [k + 1 for k in range(0, 2_000, 100)
                                                          for _ in range(100)]


def test_exact_tick_and_size_conversion_limits():
    assert to_ticks(6173763, 2, 1, -2) == (6173763, True)
    assert to_ticks(61737630, 3, 1, -2) == (6173763, True)
    assert to_ticks(6173765, 3, 1, -2) == (0, False)  # 6173.765 on a 0.01 tick
    assert to_ticks(125, 2, 25, -2) == (5, True) and to_ticks(130, 2, 25, -2) == (0, False)
    assert to_ticks(1230, 0, 1, 1) == (123, True) and to_ticks(1235, 0, 1, 1) == (0, False)
    assert to_ticks(0, 30, 1, -2) == (0, True)
    assert to_ticks(10**17, 0, 1, -8) == (0, False)  # 1e25 ticks overflow: declined
    assert to_size(2**53 - 1, 22) == ((2**53 - 1) / 1e22, True)
    assert to_size(2**53, 0)[1] is False and to_size(1, 23)[1] is False
    assert tick_parts(Decimal("0.10")) == (1, -1) and tick_parts("25") == (25, 0)


def test_crlf_and_non_ascii_files_read_the_same_as_the_reference(tmp_path):
    s = "btcusdt@depth@0ms"
    lines = [_line(1, SNAP), _line(2, _depth(s, 100, 101, [["100.0", "3"]], [], pu=99)),
             _line(3, _depth(s, 102, 103, [["100.1", "2"]], [], pu=101))]
    crlf = _both(_write(tmp_path, [ln.replace("\n", "\r\n") for ln in lines]))
    (tmp_path / "u").mkdir()
    accented = _line(4, {"stream": "btcusdt@x", "data": {"s": "BTCUSDT", "note": "é"}})
    other = _both(_write(tmp_path / "u", [*lines, accented]))
    assert _rows(crlf)["price"].tolist() == _rows(other)["price"].tolist() == [1000, 1001,
                                                                                  1000, 1001]


def test_instrument_override_sets_the_tick_for_both_decoders(tmp_path):
    s = "btcusdt@depth@0ms"
    ins = {"BTCUSDT": Instrument("BTC-PERP", Decimal("0.5"), Decimal("0.001"), "TEST")}
    lines = [_line(1, {"lastUpdateId": 100, "bids": [["100.0", "1"]], "asks": [["100.5", "1"]]}),
             _line(2, _depth(s, 100, 101, [["99.5", "3"]], [["101.0", "1"]], pu=99)),
             _line(3, _depth(s, 102, 103, [["99.7", "3"]], [], pu=101))]  # off the 0.5 tick
    items = _both(_write(tmp_path, lines), instruments=ins)
    assert _rows(items)["price"].tolist() == [200, 201, 199, 202, 0]  # then the gap CLEAR
    assert items[-1][2]["BTCUSDT"][7] == 1


def test_a_gap_quarantines_the_symbol_engine_until_the_next_snapshot(tmp_path):
    from actors.book.engine import SymbolEngine
    from actors.core.clock import SimClock
    from cluster.config import BookConfig, FeaturesConfig

    s = "btcusdt@depth@0ms"
    snap2 = {"lastUpdateId": 200, "bids": [["99.0", "1"]], "asks": [["101.0", "1"]]}
    lines = [
        _line(1, SNAP),
        _line(2, _depth(s, 100, 101, [["100.0", "3"]], [], pu=99)),
        _line(3, _depth(s, 105, 106, [["100.0", "9"]], [], pu=104)),  # gap
        _line(4, snap2),
        _line(5, _depth(s, 199, 201, [["99.5", "2"]], [], pu=198)),
    ]
    eng = None
    states = []
    for _sym, item, sync in read_session([_write(tmp_path, lines)], batch_rows=1):
        if eng is None:
            eng = SymbolEngine(sync.instrument, BookConfig(), FeaturesConfig(window=2), SimClock())
        upd = eng.on_batch(item)
        states.append((upd.view.quarantined, upd.quarantine_kind, upd.resynced))
    assert (True, "gap", False) in states  # quarantined at the gap
    assert states[-1][0] is False and eng.resyncs == 2 and eng.quarantines == 1
    assert eng.book.top(1)[0] == [995]


def test_update_ids_beyond_int64_are_rejected_not_overflowing(tmp_path):
    s = "btcusdt@depth@0ms"
    lines = [_line(1, SNAP), _line(2, _depth(s, 100, 101, [["100.0", "3"]], [], pu=99)),
             _line(3, _depth(s, 102, 2**63, [], [], pu=101))]
    for fast in (True, False):
        items = list(read_session([_write(tmp_path, lines)], fast=fast))
        st = items[-1][2].stats
        assert st.rejected == 1 and "u must be an integer in -1..9223372036854775807" in \
            st.errors[-1]
