"""Binance diff-depth sync rules, on hand-written messages."""

from __future__ import annotations

import json
from pathlib import Path

from actors.core.batch import SNAPSHOT, TRADE
from actors.feed.binance import read_session


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
