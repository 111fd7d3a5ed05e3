"""raydesk's own feed server → raydesk's feed client, on real recorded Binance sessions: the
books the client builds end identical to the file loader's, with every fault kind injected by
the server, and each fault is seen and counted on both sides."""

from __future__ import annotations

import asyncio
import time

import pytest

from actors.book.book import L2Book, apply_rows
from actors.feed.binance import binance_instrument
from actors.feed.server import FaultsConfig, FeedServer
from actors.feed.wire import BinanceReplaySource
from actors.feed.ws_client import BinanceWsClient
from jobs.bench import BINANCE_DATA
from tests.unit.factories import loader_book

pytestmark = pytest.mark.realdata

SESSIONS = {
    "usdm": [BINANCE_DATA / "usdm/btcusdt_20240718.gz", BINANCE_DATA / "usdm/btcusdt_20240719.gz"],
    "spot": [BINANCE_DATA / "spot/ethusdt_20240808.gz"],
}
SYMBOL = {"usdm": "BTCUSDT", "spot": "ETHUSDT"}


async def receive(market: str, faults: list[dict]) -> tuple[BinanceWsClient, L2Book, dict]:
    paths = SESSIONS[market]
    sym = SYMBOL[market]
    server = FeedServer(BinanceReplaySource(paths), speed=0, wait_clients=1,
                        faults=FaultsConfig.model_validate({"faults": faults}))
    await server.start()
    client = BinanceWsClient(f"ws://127.0.0.1:{server.port}", {sym: binance_instrument(market,
                             sym)}, market=market, reconnect_initial_s=0.02,
                             reconnect_max_s=0.2, stall_timeout_s=0.5, seed=1,
                             snapshot_limit=1_000_000)  # the whole book: exact comparison
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    book = L2Book()
    sync = client.syncs[sym]
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            rows = client.drain()[sym]
            if len(rows):
                for _ in apply_rows(book, rows):
                    pass
            if (server.done.is_set() and sync.synced and not client.need_resync
                    and not client.pending_rows(sym) and not len(client.drain()[sym])):
                await asyncio.sleep(0.2)  # anything still in flight
                rows = client.drain()[sym]
                for _ in apply_rows(book, rows):
                    pass
                if not len(rows):
                    break
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        stats = server.stats()
        await server.stop()
    return client, book, stats


@pytest.mark.parametrize("market", ["usdm", "spot"])
def test_served_session_received_by_the_client_ends_with_the_loaders_book(market: str) -> None:
    client, book, stats = asyncio.run(receive(market, []))
    ref = loader_book(SESSIONS[market])
    assert book.bids == ref.bids and book.asks == ref.asks
    assert stats["faults"] == dict.fromkeys(stats["faults"], 0)
    assert dict(client.resyncs) == {(SYMBOL[market], "initial"): 1}  # the first sync only
    assert client.connections == 1


@pytest.mark.parametrize(
    "kind,count_key",
    [("gap", "gap"), ("duplicate", "stale"), ("reorder", "gap"), ("malformed", "malformed"),
     ("drop", None), ("stall", None)],
)
def test_each_fault_is_counted_and_the_book_still_ends_identical(kind: str, count_key) -> None:
    market = "usdm"
    spec = {"kind": kind, "at_msg": 3_000, "every_msg": 20_000, "count": 2, "seconds": 1.0}
    client, book, stats = asyncio.run(receive(market, [spec]))
    ref = loader_book(SESSIONS[market])
    assert stats["faults"][kind] == 2  # the server injected it twice
    assert book.bids == ref.bids and book.asks == ref.asks  # ...and the client recovered
    if count_key is not None:
        assert client.faults.get(count_key, 0) >= 2
    if kind in ("gap", "reorder", "drop", "stall"):
        later = sum(n for (_s, why), n in client.resyncs.items() if why != "initial")
        assert later >= 2  # quarantined and resynced from REST
    if kind in ("drop", "stall"):
        assert sum(client.reconnects.values()) >= 2
