"""The feed server speaks Binance's protocol to a different client library (aiohttp)."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from actors.feed.binance import read_session
from actors.feed.server import FaultsConfig, FaultSpec, FeedServer
from actors.feed.wire import BinanceReplaySource
from jobs.bench import SHARED_DATA
from tests.unit.factories import loader_book

pytestmark = pytest.mark.realdata
DATA = SHARED_DATA / "binance_ws_hftbacktest"
USDM = [DATA / "usdm/btcusdt_20240718.gz", DATA / "usdm/btcusdt_20240719.gz"]
SPOT = [DATA / "spot/ethusdt_20240808.gz"]


@pytest.fixture(autouse=True)
def _need_data() -> None:
    if not DATA.is_dir():
        pytest.skip(f"real data folder missing: {DATA}")


def _original_texts(paths: list[Path]) -> list[tuple[str, str]]:
    """(channel suffix, data text) of every stream line, in file order."""
    import gzip

    out = []
    for p in paths:
        with gzip.open(p, "rt") as f:
            for line in f:
                body = line.rstrip("\n").partition(" ")[2]
                if body.startswith('{"stream"'):
                    msg = json.loads(body)
                    out.append((msg["stream"].split("@", 1)[1],
                                json.dumps(msg["data"], separators=(",", ":"))))
    return out


async def _receive_all(url: str, srv: FeedServer, rest: str | None,
                       idle_s: float = 1.0) -> tuple[list[tuple[float, Any]], Any, int]:
    """Read until the server is done and quiet; fetch ``rest`` mid-session (3000 messages in).

    Returns (received (monotonic time, text | None on close)), snapshot, index of the
    snapshot among the received messages.
    """
    got: list[tuple[float, Any]] = []
    snap, snap_at = None, -1
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        while True:
            try:
                msg = await ws.receive(timeout=idle_s)
            except TimeoutError:
                if srv.done.is_set():
                    break
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                got.append((time.monotonic(), None))
                break
            got.append((time.monotonic(), msg.data))
            if rest is not None and snap is None and len(got) >= 3000:  # mid-session
                async with http.get(rest) as r:
                    assert r.status == 200
                    snap = await r.json()
                snap_at = len(got)
    return got, snap, snap_at


def _serve(paths: list[Path], **kw: Any) -> FeedServer:
    return FeedServer(BinanceReplaySource(paths), speed=0.0, wait_clients=1, **kw)


@pytest.mark.parametrize(("paths", "rest_path", "depth"), [
    (USDM, "fapi/v1", "depth@0ms"), (SPOT, "api/v3", "depth@100ms"),
])
def test_aiohttp_client_rebuilds_the_replay_book_exactly(paths: list[Path], rest_path: str,
                                                         depth: str) -> None:
    sym = paths[0].name.split("_")[0]
    srv = _serve(paths)
    streams = f"{sym}@{depth}/{sym}@trade/{sym}@bookTicker"
    with srv.run_in_thread():
        got, snap, snap_at = asyncio.run(_receive_all(
            f"ws://127.0.0.1:{srv.port}/stream?streams={streams}", srv,
            f"http://127.0.0.1:{srv.port}/{rest_path}/depth?symbol={sym.upper()}&limit=5000"))
        stats = srv.stats()
    # every recorded stream message, verbatim, in order, in Binance's envelope
    texts = [t for _, t in got]
    assert None not in texts
    envs = [json.loads(t) for t in texts]
    assert all(list(e) == ["stream", "data"] for e in envs)
    want = _original_texts(paths)
    assert [(e["stream"].split("@", 1)[1], json.dumps(e["data"], separators=(",", ":")))
            for e in envs] == [(depth if c.startswith("depth") else c, d) for c, d in want]
    assert {e["stream"] for e in envs} == {f"{sym}@{depth}", f"{sym}@trade", f"{sym}@bookTicker"}
    assert stats["messages_sent"] == len(want) and stats["done"]
    diff = next(e["data"] for e in envs if e["data"].get("e") == "depthUpdate")
    futures = rest_path.startswith("fapi")
    keys = ["e", "E", "T", "s", "U", "u", "pu", "b", "a"] if futures else \
        ["e", "E", "s", "U", "u", "b", "a"]
    assert list(diff) == keys
    assert all(isinstance(lv[0], str) and isinstance(lv[1], str) for lv in diff["b"] + diff["a"])
    assert list(snap) == (["lastUpdateId", "E", "T", "bids", "asks"] if futures
                          else ["lastUpdateId", "bids", "asks"])
    # the client's book: snapshot at the point it arrived, then the diffs, by Binance's rules
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / f"{sym}_rx.txt"
        lines = [f"{i} {t}" for i, t in enumerate(texts)]
        lines.insert(snap_at, f"{snap_at} {json.dumps(snap)}")
        f.write_text("\n".join(lines) + "\n")
        client = loader_book([f])
        syncs = {s: sy for s, _i, sy in read_session([f], tickers=False)}
    ref = loader_book(paths)
    assert syncs[sym.upper()].stats.gaps == 0
    assert client.bids == ref.bids and client.asks == ref.asks
    assert len(ref.bids) > 100 and len(ref.asks) > 100


async def _diffs_with_fault(srv: FeedServer, sym: str) -> list[Any]:
    got, _, _ = await _receive_all(
        f"ws://127.0.0.1:{srv.port}/ws/{sym}@depth@0ms", srv, None, idle_s=0.5)
    return [t for _, t in got]


@pytest.mark.parametrize("kind", ["gap", "duplicate", "reorder", "malformed"])
def test_each_diff_fault_is_observed_and_counted(kind: str) -> None:
    srv = _serve(USDM[:1], faults=FaultsConfig(faults=[
        FaultSpec(kind=kind, symbol="BTCUSDT", at_msg=500)]))
    with srv.run_in_thread():
        texts = asyncio.run(_diffs_with_fault(srv, "btcusdt"))
        stats = srv.stats()
    assert stats["faults"][kind] == 1
    assert sum(stats["faults"].values()) == 1
    parsed, bad = [], 0
    for t in texts:
        try:
            parsed.append(json.loads(t))
        except ValueError:
            bad += 1
    us = [d["u"] for d in parsed]
    breaks = sum(1 for a, b in zip(parsed, parsed[1:], strict=False) if b["pu"] != a["u"])
    n_diffs = sum(1 for line in _original_texts(USDM[:1]) if line[0].startswith("depth"))
    if kind == "gap":
        assert (bad, breaks, len(parsed)) == (0, 1, n_diffs - 1)
    elif kind == "duplicate":
        assert (bad, len(us) - len(set(us)), len(parsed)) == (0, 1, n_diffs + 1)
    elif kind == "reorder":
        assert bad == 0 and sum(1 for a, b in zip(us, us[1:], strict=False) if b < a) == 1
        assert sorted(us) == sorted(set(us)) and len(us) == n_diffs
    else:
        assert (bad, breaks, len(parsed)) == (1, 0, n_diffs)


def test_drop_closes_the_socket_and_stall_goes_silent_on_command() -> None:
    async def scenario(srv: FeedServer) -> tuple[float, bool, int]:
        base = f"http://127.0.0.1:{srv.port}/control/fault"
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"ws://127.0.0.1:{srv.port}/ws/btcusdt@trade") as ws:
            await ws.receive(timeout=5)
            async with http.post(f"{base}?kind=stall&seconds=1.5") as r:
                assert r.status == 200
            await asyncio.sleep(0.1)
            while True:  # drain what was queued before the stall
                t0 = time.monotonic()
                msg = await ws.receive(timeout=5)
                if time.monotonic() - t0 > 0.5:
                    break
            silent = time.monotonic() - t0
            async with http.get(f"{base}?kind=drop&symbol=BTCUSDT") as r:
                assert r.status == 200
            closed = False
            for _ in range(10_000):
                msg = await ws.receive(timeout=5)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    closed = True
                    break
            async with http.get(f"http://127.0.0.1:{srv.port}/control/stats") as r:
                stats = await r.json()
        return silent, closed, stats["faults"]["drop"] + 10 * stats["faults"]["stall"]

    srv = FeedServer(BinanceReplaySource(USDM[:1]), speed=1.0, wait_clients=1)
    with srv.run_in_thread():
        silent, closed, counted = asyncio.run(scenario(srv))
    assert silent >= 1.0
    assert closed
    assert counted == 11


def test_unknown_symbol_is_a_binance_400() -> None:
    async def ask(port: int) -> list[tuple[int, Any]]:
        out = []
        async with aiohttp.ClientSession() as http:
            for path in ("/fapi/v1/depth?symbol=NOPEUSDT&limit=10",
                         "/api/v3/depth?symbol=BTCUSDT&limit=10",  # a futures-only server
                         "/fapi/v1/depth?symbol=BTCUSDT&limit=3"):
                async with http.get(f"http://127.0.0.1:{port}{path}") as r:
                    out.append((r.status, await r.json()))
        return out

    srv = FeedServer(BinanceReplaySource(USDM[:1]), speed=0.0, wait_clients=1)
    with srv.run_in_thread():
        res = asyncio.run(ask(srv.port))
    bad = {"code": -1121, "msg": "Invalid symbol."}
    assert res[0] == (400, bad) and res[1] == (400, bad)
    status, snap = res[2]
    assert status == 200 and len(snap["bids"]) == 3 and len(snap["asks"]) == 3
    assert float(snap["bids"][0][0]) < float(snap["asks"][0][0])


def test_a_stall_must_last_a_finite_positive_time() -> None:
    from actors.feed.server import FeedServer

    srv = FeedServer(source=None)
    for bad in (float("inf"), float("nan"), 0.0, -1.0):
        with pytest.raises(ValueError, match="seconds must be finite"):
            srv.inject("stall", None, bad)
