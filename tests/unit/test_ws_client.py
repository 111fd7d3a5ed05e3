"""The live Binance feed client against an in-test Binance-compatible server replaying real
recordings: final books equal the file loader's (``read_session`` + ``apply_rows``), with each
fault injected; and hostile messages straight into the message handler (hypothesis)."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.book.book import L2Book, apply_rows
from actors.core.batch import CLEAR, F_GAP
from actors.feed.binance import binance_instrument
from actors.feed.ws_client import BinanceWsClient, derive_rest_url
from jobs.bench import BINANCE_DATA
from tests.unit.factories import loader_book

USDM = BINANCE_DATA / "usdm" / "btcusdt_20240718.gz"
SPOT = BINANCE_DATA / "spot" / "ethusdt_20240808.gz"
needs_data = pytest.mark.skipif(not USDM.exists(), reason=f"no recorded data at {BINANCE_DATA}")


# --- reference --------------------------------------------------------------------------------
def reference_book(path: Path) -> L2Book:
    """The file loader's book after the whole recording (the obviously-correct path)."""
    return loader_book([path])


def same_book(a: L2Book, b: L2Book) -> bool:
    return a.bids == b.bids and a.asks == b.asks


# --- the in-test server -----------------------------------------------------------------------
class FakeBinance:
    """Replays one recording in Binance's combined-stream protocol, REST snapshot on the same
    port, with faults at given depth-message indexes: gap, duplicate, out_of_order, malformed,
    drop (close the connection; the next messages are lost), stall (silent, socket open)."""

    def __init__(self, path: Path, market: str, faults: dict[int, str] | None = None,
                 stall_s: float = 0.6) -> None:
        self.market = market
        self.faults = faults or {}
        self.stall_s = stall_s
        self.book: dict[int, dict[Decimal, str]] = {0: {}, 1: {}}
        self.last_u = 0
        self.msgs: list[tuple[str, str, dict[str, Any] | None]] = []  # (stream, text, diff)
        self.symbol = ""
        self._load(path)
        self.ws: Any = None
        self.subscribed: set[str] = set()
        self.connected = asyncio.Event()
        self.done = False
        self.sent = 0

    def _load(self, path: Path) -> None:
        early: list[tuple[str, str, dict[str, Any]]] = []
        snap = None
        with gzip.open(path, "rt") as f:
            for line in f:
                body = line.partition(" ")[2]
                msg = json.loads(body)
                if "lastUpdateId" in msg:
                    snap = msg
                    for side, key in ((0, "bids"), (1, "asks")):
                        for p, q in msg[key]:
                            self.book[side][Decimal(p)] = q
                    self.last_u = msg["lastUpdateId"]
                    continue
                stream, data = msg["stream"], msg["data"]
                self.symbol = data["s"]
                if "@bookTicker" in stream:
                    continue
                text = json.dumps(msg)
                diff = data if data.get("e") == "depthUpdate" else None
                item = (stream, text, diff)
                (early if snap is None and diff is not None else self.msgs).append(item)
                if snap is None and diff is None:
                    self.msgs.pop()  # trades before the snapshot: nobody can sync them
        sid = self.last_u
        stale = (lambda u: u < sid) if self.market == "usdm" else (lambda u: u <= sid)
        self.msgs = [m for m in early if not stale(m[2]["u"])] + [
            m for m in self.msgs if m[2] is None or not stale(m[2]["u"])]

    def apply(self, diff: dict[str, Any]) -> None:
        for side, key in ((0, "b"), (1, "a")):
            for p, q in diff[key]:
                if Decimal(q) == 0:
                    self.book[side].pop(Decimal(p), None)
                else:
                    self.book[side][Decimal(p)] = q
        self.last_u = diff["u"]

    def rest(self) -> dict[str, Any]:
        def side(s: int, rev: bool) -> list[list[str]]:
            return [[str(p), q] for p, q in sorted(self.book[s].items(), reverse=rev)]

        return {"lastUpdateId": self.last_u, "E": 1, "T": 1,
                "bids": side(0, True), "asks": side(1, False)}

    async def process_request(self, conn: Any, request: Any) -> Any:
        path = request.path
        if "/depth" in path:
            want = "/fapi/v1/depth" if self.market == "usdm" else "/api/v3/depth"
            if not path.startswith(want) or f"symbol={self.symbol}" not in path:
                return conn.respond(HTTPStatus.NOT_FOUND, "unknown\n")
            resp = conn.respond(HTTPStatus.OK, json.dumps(self.rest()))
            resp.headers["Content-Type"] = "application/json"
            return resp
        if not path.startswith("/stream?streams="):
            return conn.respond(HTTPStatus.NOT_FOUND, "unknown\n")
        return None

    async def handler(self, ws: Any) -> None:
        self.subscribed = set(ws.request.path.split("streams=", 1)[1].split("/"))
        self.ws = ws
        self.connected.set()
        await ws.wait_closed()
        if self.ws is ws:
            self.ws = None
            self.connected.clear()

    async def send(self, text: str | bytes) -> None:
        ws = self.ws
        if ws is None:
            return
        try:
            await ws.send(text)
            self.sent += 1
        except Exception:  # noqa: BLE001 - the client went away: the message is lost
            self.ws = None
            self.connected.clear()

    async def replay(self) -> None:
        await asyncio.wait_for(self.connected.wait(), 10)
        lost = 0
        depth_i = 0
        i = 0
        msgs = self.msgs
        while i < len(msgs):
            if self.ws is None and not lost:
                await asyncio.wait_for(self.connected.wait(), 10)
            stream, text, diff = msgs[i]
            fault = self.faults.pop(depth_i, None) if diff is not None else None
            if diff is not None:
                depth_i += 1
            if fault == "out_of_order" and i + 1 < len(msgs) and msgs[i + 1][2] is not None:
                nxt = msgs[i + 1]
                self.apply(diff)
                self.apply(nxt[2])
                await self.send(nxt[1])
                await self.send(text)
                i += 2
                depth_i += 1
                continue
            if diff is not None:
                self.apply(diff)
            if fault == "malformed":
                await self.send('{"stream": "' + stream + '", "data": {"e": "depthUp')
                await self.send(b"\xff\xfe not json")
            if fault == "drop":
                if self.ws is not None:
                    await self.ws.close()
                    self.ws = None
                    self.connected.clear()
                lost = 25
            if fault == "stall":
                await asyncio.sleep(self.stall_s)
            if lost:
                lost -= 1
            elif fault != "gap" and stream in self.subscribed:
                await self.send(text)
                if fault == "duplicate":
                    await self.send(text)
                    await self.send(msgs[max(0, i - 5)][1])
            i += 1
            if i % 100 == 0:
                await asyncio.sleep(0.001)
            else:
                await asyncio.sleep(0)
        self.done = True


async def run_session(path: Path, market: str, faults: dict[int, str] | None = None,
                      drain_pause: tuple[int, float] | None = None, **client_kw: Any
                      ) -> tuple[BinanceWsClient, L2Book, FakeBinance, list[np.ndarray]]:
    """Serve ``path``, receive it with a client, apply every drained batch to a book."""
    from websockets.asyncio.server import serve

    srv = FakeBinance(path, market, faults)
    async with serve(srv.handler, "127.0.0.1", 0, process_request=srv.process_request,
                     compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        ins = binance_instrument(market, srv.symbol)
        kw = {"reconnect_initial_s": 0.02, "reconnect_max_s": 0.2, "stall_timeout_s": 0.3,
              "seed": 1, **client_kw}
        client = BinanceWsClient(f"ws://127.0.0.1:{port}", {srv.symbol: ins}, market=market,
                                 **kw)
        stop = asyncio.Event()
        task = asyncio.create_task(client.run(stop))
        player = asyncio.create_task(srv.replay())
        book = L2Book()
        batches: list[np.ndarray] = []
        sync = client.syncs[srv.symbol]
        deadline = time.monotonic() + 60
        paused = False
        while time.monotonic() < deadline:
            await asyncio.sleep(0.005)
            if drain_pause and not paused and srv.sent >= drain_pause[0]:
                paused = True
                await asyncio.sleep(drain_pause[1])
            rows = client.drain()[srv.symbol]
            if len(rows):
                batches.append(rows)
                for _ in apply_rows(book, rows):
                    pass
            if player.done():
                player.result()
                if (sync.synced and not client.need_resync and sync.last_u == srv.last_u
                        and not client.pending_rows(srv.symbol)):
                    break
        stop.set()
        await asyncio.wait_for(task, 5)
    return client, book, srv, batches


# --- end to end -------------------------------------------------------------------------------
pytestmark = pytest.mark.realdata


@needs_data
@pytest.mark.parametrize("path,market", [(USDM, "usdm"), (SPOT, "spot")])
def test_client_books_equal_the_loader_on_a_clean_replay(path, market):
    client, book, srv, _ = asyncio.run(run_session(path, market))
    ref = reference_book(path)
    assert same_book(book, ref)
    assert len(ref.bids) > 500 and len(ref.asks) > 500
    assert sum(client.faults.values()) == 0, client.faults
    assert client.connections == 1 and not client.reconnects
    assert client.syncs[srv.symbol].stats.snapshots == 1


@needs_data
@pytest.mark.parametrize("fault,counter", [
    ("gap", "faults:gap"),
    ("duplicate", "faults:stale"),
    ("out_of_order", "faults:gap"),
    ("malformed", "faults:malformed"),
    ("drop", "reconnects:closed"),
    ("stall", "reconnects:stall"),
])
def test_books_end_identical_after_each_injected_fault(fault, counter):
    faults = {300: fault, 1500: fault}
    client, book, srv, batches = asyncio.run(run_session(USDM, "usdm", faults))
    assert not srv.faults, "every fault was injected"
    assert same_book(book, reference_book(USDM))
    group, reason = counter.split(":")
    assert getattr(client, group)[reason] >= 2, (client.faults, client.reconnects)
    rows = np.concatenate(batches)
    gaps = int(((rows["kind"] == CLEAR) & ((rows["flags"] & F_GAP) != 0)).sum())
    resyncs = sum(n for (_s, r), n in client.resyncs.items() if r != "initial")
    if fault in ("duplicate", "malformed"):  # dropped or rejected: the book never broke
        assert gaps == 0 and resyncs == 0
    else:  # quarantined (CLEAR + F_GAP), then resynced from a new snapshot
        assert gaps >= 2 and resyncs >= 2
        assert client.syncs[srv.symbol].stats.snapshots >= 3


@needs_data
def test_a_consumer_that_falls_behind_drops_oldest_rows_counted_and_resyncs():
    client, book, srv, batches = asyncio.run(
        run_session(USDM, "usdm", drain_pause=(800, 0.4), queue_rows=4000))
    sym = srv.symbol
    assert client.dropped[sym] > 0
    assert client.resyncs[(sym, "dropped")] >= 1
    assert max(len(b) for b in batches) <= 4000 + 8192
    assert same_book(book, reference_book(USDM))


@needs_data
def test_reconnect_backoff_grows_with_full_jitter_and_resubscribes():
    client = BinanceWsClient("ws://127.0.0.1:9", {"BTCUSDT": binance_instrument("usdm",
                             "BTCUSDT")}, reconnect_initial_s=0.1, reconnect_max_s=1.0, seed=3)
    delays = [[client._delay(k) for _ in range(2000)] for k in range(6)]
    assert all(0 <= d <= min(1.0, 0.1 * 2**k) for k, ds in enumerate(delays) for d in ds)
    assert max(delays[5]) > 0.9 and min(delays[5]) < 0.1  # full jitter, capped
    assert client.stream_url() == ("ws://127.0.0.1:9/stream?streams=btcusdt@depth@0ms/"
                                   "btcusdt@trade")
    assert derive_rest_url("wss://h:1/x") == "https://h:1"


def test_refused_connections_are_retried_and_counted_never_raised():
    async def go() -> BinanceWsClient:
        client = BinanceWsClient("ws://127.0.0.1:9", {"BTCUSDT": binance_instrument(
            "usdm", "BTCUSDT")}, reconnect_initial_s=0.01, reconnect_max_s=0.02)
        stop = asyncio.Event()
        task = asyncio.create_task(client.run(stop))
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(task, 2)
        return client

    client = asyncio.run(go())
    assert client.reconnects["error"] >= 3 and client.connections == 0


# --- fuzzing the message handler --------------------------------------------------------------
SYM = "BTCUSDT"
INS = binance_instrument("usdm", SYM)
STREAM = "btcusdt@depth@0ms"


def _diff(big_u: int, u: int, pu: int, bids: list, asks: list) -> dict[str, Any]:
    return {"stream": STREAM, "data": {"e": "depthUpdate", "E": 1_721_347_020_000,
                                       "T": 1_721_347_020_000, "s": SYM, "U": big_u, "u": u,
                                       "pu": pu, "b": bids, "a": asks}}


def _valid_chain(n: int) -> list[str]:
    out = []
    for k in range(1, n + 1):
        px = f"{60000 + k % 7}.{k % 10}"
        out.append(json.dumps(_diff(100 + 10 * k - 9, 100 + 10 * k, 100 + 10 * (k - 1),
                                    [[px, str(k % 3)]], [[f"{60100 + k % 5}.0", "0.5"]])))
    return out


SNAPSHOT = {"lastUpdateId": 100, "bids": [["59990.0", "1.0"], ["59980.5", "2.0"]],
            "asks": [["60200.0", "1.5"]]}

junk = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True), st.text(max_size=12),
                 st.lists(st.text(max_size=5), min_size=1, max_size=3),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
not_a_number = st.one_of(
    st.none(), st.booleans(), st.lists(st.integers(), max_size=2),
    st.sampled_from(["", "x", "nan", "inf", "-1", "1e400", "0x10", "--1"]))
bad_price = st.one_of(not_a_number, st.sampled_from(["60000.05", "-60000.0", "0", "1e-9"]))
bad_level = st.one_of(
    junk, st.lists(st.integers(), min_size=0, max_size=1), st.lists(st.text(), min_size=3,
                                                                     max_size=3),
    st.tuples(bad_price, st.just("1.0")).map(list),
    st.tuples(st.just("60000.0"), st.one_of(not_a_number, st.just("-0.5"))).map(list))
bad_levels = st.one_of(junk.filter(lambda v: v != []),
                       st.lists(bad_level, min_size=1, max_size=3))
CHAIN = "__chain__"  # a depth diff the test puts in the update chain before sending


@st.composite
def hostile(draw: Any) -> str | bytes | dict[str, Any]:
    """A frame the handler must reject: broken JSON, a wrong envelope, an unknown stream, an
    in-chain diff or a trade with one bad field, or a duplicate diff."""
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return draw(st.binary(max_size=40).filter(lambda b: not b.strip().startswith(b"{")))
    if kind == 1:
        return json.dumps(draw(st.one_of(junk, st.lists(junk, max_size=3))))
    if kind == 2:
        env = draw(st.dictionaries(st.sampled_from(["stream", "data", "x"]), junk, max_size=3))
        if isinstance(env.get("stream"), str) and isinstance(env.get("data"), dict):
            env["stream"] = 7
        return json.dumps(env)
    if kind == 3:
        name = draw(st.text(min_size=1, max_size=20).filter(lambda s: s != STREAM))
        return json.dumps({"stream": name, "data": {"e": "depthUpdate"}})
    if kind == 4:  # an in-chain depth diff with one bad field
        d = _diff(0, 0, 0, [["60000.0", "1"]], [["60100.0", "2"]])
        field = draw(st.sampled_from(["U", "u", "pu", "E", "b", "a", "e", "s"]))
        if field in ("b", "a"):
            value = draw(bad_levels)
        elif field == "E":
            value = draw(st.one_of(junk, st.integers(max_value=0), st.just(2**62)))
        else:
            value = draw(junk.filter(lambda v: v not in ("depthUpdate", SYM)))
        d["data"][field] = value
        d[CHAIN] = field
        return d
    if kind == 5:  # a trade with one bad field
        t = {"e": "trade", "E": 1_721_347_020_000, "T": 1_721_347_020_000, "s": SYM, "t": 1,
             "p": "60000.0", "q": "0.1", "m": True, "X": "MARKET"}
        field = draw(st.sampled_from(["p", "q", "m", "T"]))
        t[field] = draw({"p": bad_price, "q": st.one_of(not_a_number, st.just("0")),
                         "m": st.one_of(st.integers(0, 1), st.text(max_size=4), st.none()),
                         "T": st.one_of(st.integers(max_value=0), junk)}[field])
        return json.dumps({"stream": "btcusdt@trade", "data": t})
    d = _diff(1, 2, 0, [["60000.0", "1"]], [])  # u at or below the chain: a duplicate
    d["data"]["u"] = draw(st.integers(-(2**70), 100))
    return json.dumps(d)


def _book_of(client: BinanceWsClient) -> L2Book:
    book = L2Book()
    for _ in apply_rows(book, client.drain()[SYM]):
        pass
    return book


def _send(client: BinanceWsClient, frame: str | bytes | dict[str, Any], ts: int) -> None:
    if isinstance(frame, dict):  # put it in the chain, but for its one bad field
        frame = json.loads(json.dumps(frame))
        bad = frame.pop(CHAIN)
        sync = client.syncs[SYM]
        last = sync.last_u if sync.last_u is not None else sync._first_after
        for key, value in (("pu", last), ("U", last + 1), ("u", last + 5)):
            if key != bad:
                frame["data"][key] = value
        frame = json.dumps(frame)
    client.on_message(frame, ts)


@settings(max_examples=170, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(hostile(), min_size=60, max_size=60))
def test_hostile_messages_are_rejected_counted_and_leave_the_book_right(frames):
    # Arrange: the reference book from the valid chain alone
    chain = _valid_chain(30)
    want = _chain_book(chain)
    client = BinanceWsClient("ws://x:1", {SYM: INS})
    assert client.apply_snapshot(SYM, SNAPSHOT, 1)
    counted = 0
    # Act: two hostile frames after every valid diff (170 x 60 = 10,200 frames in all)
    for k, text in enumerate(chain):
        client.on_message(text, 10 + k)
        for frame in frames[2 * k:2 * k + 2]:
            _send(client, frame, 10 + k)
            assert sum(client.faults.values()) == counted + 1, frame  # one reason each
            counted += 1
            if client.need_resync:  # the exchange's snapshot at this point of the chain
                assert client.apply_snapshot(SYM, _snapshot_after(chain[:k + 1]), 11 + k)
    # Assert: never a crash; the book is the reference's
    assert not client.need_resync
    got = _book_of(client)
    assert same_book(got, want)


def _chain_book(applied: list[str]) -> L2Book:
    fresh = BinanceWsClient("ws://x:1", {SYM: INS})
    fresh.apply_snapshot(SYM, SNAPSHOT, 1)
    for text in applied:
        fresh.on_message(text, 2)
    assert sum(fresh.faults.values()) == 0
    return _book_of(fresh)


def _snapshot_after(applied: list[str]) -> dict[str, Any]:
    """The exchange's REST snapshot after the diffs ``applied``."""
    book = _chain_book(applied)

    def px(t: int) -> str:
        return str(INS.ticks_to_price(t))

    return {"lastUpdateId": json.loads(applied[-1])["data"]["u"],
            "bids": [[px(p), str(s)] for p, s in book.bids.items()],
            "asks": [[px(p), str(s)] for p, s in book.asks.items()]}
