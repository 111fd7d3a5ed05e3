"""The compiled Binance decoder reads the real recordings exactly as the json reference does.

For every recorded session, ``read_session(fast=True)`` must yield the same items in the same
order as ``read_session(fast=False)``: row batches equal byte for byte, the same tickers, and
the same ``sync.stats`` at every item and at the end. Independently of both, ``parse_depth``
must find every level that ``json.loads`` finds in each depthUpdate line.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from actors.feed.binance import binance_instrument, read_session
from actors.feed.binance_fast import parse_depth, tick_parts
from jobs.bench import BINANCE_DATA as BINANCE
from jobs.bench import BINANCE_SESSIONS as SESSIONS

pytestmark = pytest.mark.realdata

def _stats(sync) -> tuple:
    st = sync.stats
    return (st.diffs, st.applied, st.dropped_stale, st.buffered, st.gaps, st.trades,
            st.snapshots, st.rejected, tuple(st.errors))


def _read(files: list, fast: bool, tickers: bool) -> tuple[list, dict]:
    items, syncs = [], {}
    for sym, item, sync in read_session(files, fast=fast, tickers=tickers):
        body = (item.dtype, item.tobytes()) if isinstance(item, np.ndarray) else item
        items.append((sym, body, _stats(sync)))
        syncs[sym] = sync
    return items, {s: _stats(y) for s, y in syncs.items()}


@pytest.mark.skipif(not BINANCE.exists(), reason=f"real data folder {BINANCE} is absent")
@pytest.mark.parametrize("tickers", [True, False], ids=["tickers", "no-tickers"])
@pytest.mark.parametrize("session", sorted(SESSIONS))
def test_fast_decoder_yields_what_the_json_reference_yields(session: str, tickers: bool) -> None:
    files = [BINANCE / f for f in SESSIONS[session]]
    fast, fast_final = _read(files, True, tickers)
    ref, ref_final = _read(files, False, tickers)

    assert len(fast) == len(ref)
    first_diff = next((k for k, (a, b) in enumerate(zip(fast, ref, strict=True)) if a != b), None)
    assert first_diff is None, f"item {first_diff} differs: {fast[first_diff]!r:.300}"
    assert fast_final == ref_final
    (final,) = fast_final.values()
    assert final[6] == 1 and final[1] > 3_000 and final[4] == final[7] == 0  # synced, clean
    rows = sum(len(b[1]) // b[0].itemsize for _s, b, _st in fast if isinstance(b, tuple))
    assert rows > 250_000


@pytest.mark.skipif(not BINANCE.exists(), reason=f"real data folder {BINANCE} is absent")
@pytest.mark.parametrize("name", sorted({f for fs in SESSIONS.values() for f in fs}))
def test_parse_depth_finds_every_level_json_finds(name: str) -> None:
    raw = gzip.decompress((BINANCE / name).read_bytes())
    ins = binance_instrument(name[:4], name[5:12].upper())
    d = parse_depth(np.frombuffer(raw, dtype=np.uint8), *tick_parts(ins.tick_size))
    want_u, want_levels, want_sizes, want_prices = [], [], [], []
    for line in raw.decode().splitlines():
        data = json.loads(line.partition(" ")[2]).get("data")
        if data and data.get("e") == "depthUpdate":
            want_u.append(data["u"])
            want_levels.append((len(data["b"]), len(data["a"])))
            want_sizes.extend(float(q) for _p, q in data["b"] + data["a"])
            if len(want_u) <= 500:  # Decimal is slow: the first 500 messages' prices
                want_prices.extend(ins.price_to_ticks(p) for p, _q in data["b"] + data["a"])
    assert d.declined.size == 0
    assert d.u.tolist() == want_u
    assert list(zip(d.n_bid.tolist(), d.n_ask.tolist(), strict=True)) == want_levels
    assert d.size.tolist() == want_sizes
    assert d.price[:len(want_prices)].tolist() == want_prices
    assert np.array_equal(d.first, np.concatenate([[0], np.cumsum(d.n_bid + d.n_ask)[:-1]]))


@pytest.mark.skipif(not BINANCE.exists(), reason=f"real data folder {BINANCE} is absent")
def test_depth_rows_equal_the_loaders_rows_for_every_applied_diff() -> None:
    from actors.core.batch import DELTA
    from actors.feed.binance_fast import depth_rows

    path = BINANCE / "usdm/btcusdt_20240808.gz"
    ins = binance_instrument("usdm", "BTCUSDT")
    m, e = tick_parts(ins.tick_size)
    raw = depth_rows(parse_depth(np.frombuffer(gzip.decompress(path.read_bytes()), np.uint8),
                                 m, e))
    loaded = np.concatenate([it for _s, it, _y in read_session([path], tickers=False)])
    loaded = loaded[loaded["kind"] == DELTA]
    mine = raw[np.isin(raw["seq"], loaded["seq"])]
    assert len(loaded) > 100_000
    assert np.array_equal(mine, loaded)  # every column, F_LAST on each message's last level
