"""The simulator as a Binance feed: exact JSON, tickers only for subscribers, paced sending,
and the server's handling of socket requests and slow clients (no recorded data needed)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from decimal import Decimal
from typing import Any

import aiohttp
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.instruments import Instrument
from actors.feed import server as server_mod
from actors.feed.server import PACED_STEP_S, FeedServer, SimSource
from actors.feed.wire import DEPTH, TICKER, TRADE_CH, SimWireEncoder
from tests.conftest import small_config


def _events(src: SimSource, n: int, speed: float = 0.0) -> list[list[Any]]:
    async def take() -> list[list[Any]]:
        out: list[list[Any]] = []
        got = 0
        gen = src.batches(speed)
        async for b in gen:
            out.append(b)
            got += len(b)
            for book in src.books.values():  # as the server does: everything was sent
                book.sent = len(book.diffs)
            if got >= n:
                await gen.aclose()
                return out
        return out

    return asyncio.run(take())


@given(ticks=st.integers(1, 10**12), exp=st.integers(-8, 0), mant=st.sampled_from([1, 5, 25]))
@settings(max_examples=300, deadline=None)
def test_prices_are_written_exactly_with_the_tick_decimals(ticks, exp, mant):
    tick = Decimal(mant).scaleb(exp)
    ins = Instrument(symbol="XUSDT", tick_size=tick, lot_size=Decimal("0.001"))
    enc = SimWireEncoder(ins)
    assert Decimal(enc.px(ticks)) == ticks * tick
    assert enc.px(ticks) == f"{ins.ticks_to_price(ticks):.{enc.pdp}f}"


def test_every_message_is_the_json_of_its_fields_and_tickers_follow_the_book(tmp_path):
    # Arrange
    src = SimSource(small_config(tmp_path))
    best: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    for sym, book in src.books.items():  # the books the diffs start from
        snap = book.rest(1_000_000)
        best[sym] = (dict(map(tuple, snap["bids"])), dict(map(tuple, snap["asks"])))
    # Act
    events = [e for b in _events(src, 20_000) for e in b]
    # Assert: what json.dumps writes for the same object (compact separators)
    kinds = {DEPTH: 0, TRADE_CH: 0, TICKER: 0}
    for _t, sym, chan, text, diff in events:
        obj = json.loads(text)
        assert json.dumps(obj, separators=(",", ":")) == text
        kinds[chan] += 1
        if chan == DEPTH:
            assert obj == diff and obj["U"] == obj["u"] == obj["pu"] + 1
            bids, asks = best.setdefault(sym, ({}, {}))
            for side, key in ((bids, "b"), (asks, "a")):
                for p, q in obj[key]:
                    if Decimal(q) == 0:
                        side.pop(p, None)
                    else:
                        side[p] = q
        elif chan == TRADE_CH:
            assert obj["e"] == "trade" and isinstance(obj["m"], bool)
        else:
            bids, asks = best[sym]
            bb = max(bids, key=Decimal)
            ba = min(asks, key=Decimal)
            assert (obj["b"], obj["B"], obj["a"], obj["A"]) == (bb, bids[bb], ba, asks[ba])
    assert min(kinds.values()) > 0


def test_tickers_are_encoded_only_while_someone_wants_them(tmp_path):
    src = SimSource(small_config(tmp_path))
    wanted = {"btcusdt"}
    src.want_tickers(lambda sym: sym in wanted)
    events = [e for b in _events(src, 5_000) for e in b]
    ticker_syms = {e[1] for e in events if e[2] == TICKER}
    assert ticker_syms == {"btcusdt"}
    assert {e[1] for e in events if e[2] == DEPTH} > ticker_syms


def test_paced_steps_are_short_so_messages_go_out_at_their_own_time(tmp_path):
    src = SimSource(small_config(tmp_path))
    speed = 20.0
    batches = _events(src, 3_000, speed=speed)[1:]  # after the initial books
    step_ns = PACED_STEP_S * speed * 1e9
    assert sum(map(len, batches)) >= 3_000
    for b in batches:  # each simulated stretch is short, whatever the wall clock did
        if b:
            assert b[-1][0] - b[0][0] <= step_ns


# --- the server's socket requests ------------------------------------------------------------
async def _requests(port: int, frames: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"ws://127.0.0.1:{port}/ws/btcusdt@trade") as ws:
        for f in frames:
            await ws.send_str(f)
            while True:
                msg = json.loads((await ws.receive(timeout=10)).data)
                if "e" not in msg:  # not a market-data message: the reply
                    out.append(msg)
                    break
    return out


def test_socket_requests_get_binance_replies_and_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(server_mod, "MAX_STREAMS", 3)
    srv = FeedServer(SimSource(small_config(tmp_path)), speed=1.0)
    frames = [
        '{"method":"SUBSCRIBE","params":["ethusdt@depth@0ms"],"id":1}',
        '{"method":"LIST_SUBSCRIPTIONS","id":2}',
        '{"method":"SUBSCRIBE","params":["nopeusdt@trade"],"id":3}',
        '{"method":"SUBSCRIBE","params":["btcusdt@kline_1m"],"id":4}',
        '{"method":"SUBSCRIBE","params":"btcusdt@trade","id":5}',
        '{"method":"SUBSCRIBE","params":["btcusdt@bookTicker","ethusdt@trade"],"id":6}',
        '{"method":"FLY","id":7}',
        "{not json",
        '{"method":"UNSUBSCRIBE","params":["ethusdt@depth@0ms"],"id":8}',
        '{"method":"LIST_SUBSCRIPTIONS","id":9}',
    ]
    with srv.run_in_thread():
        replies = asyncio.run(_requests(srv.port, frames))
        deadline = time.monotonic() + 10
        while srv.stats()["connections_open"] and time.monotonic() < deadline:
            time.sleep(0.02)
        subs_after = dict(srv._subs)
    assert replies[0] == {"result": None, "id": 1}
    assert replies[1] == {"result": ["btcusdt@trade", "ethusdt@depth@0ms"], "id": 2}
    for r, rid in zip(replies[2:5], (3, 4, 5), strict=True):
        assert r["id"] == rid and r["error"]["code"] == 2, r
    assert "nopeusdt@trade" in replies[2]["error"]["msg"]
    assert replies[5]["error"]["code"] == 2 and "at most 3 streams" in replies[5]["error"]["msg"]
    assert replies[6]["error"]["code"] == 2 and "FLY" in replies[6]["error"]["msg"]
    assert replies[7] == {"error": {"code": 3, "msg": "Invalid JSON"}, "id": None}
    assert replies[8] == {"result": None, "id": 8}
    assert replies[9] == {"result": ["btcusdt@trade"], "id": 9}
    assert subs_after == {}  # a closed connection leaves no subscription behind


def test_a_client_that_stops_reading_is_dropped_and_counted(tmp_path):
    # Arrange: a fast paced feed and a small per-connection queue
    srv = FeedServer(SimSource(small_config(tmp_path)), speed=50.0, max_queue=200)
    with srv.run_in_thread():
        # Act: open a socket, do the handshake, then never read again
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /stream?streams=btcusdt@depth@0ms/ethusdt@depth@0ms HTTP/1.1\r\n"
                  b"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        deadline = time.monotonic() + 60
        while srv.stats()["slow_client_drops"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = srv.stats()
        s.close()
    # Assert
    assert stats["slow_client_drops"] == 1
    assert stats["messages_sent"] > 200
