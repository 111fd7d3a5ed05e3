"""FeedActor in live ``ws`` mode: the actor's ``next_batches`` hands out the rows its client
received from a Binance-compatible server replaying a real recording; the books they build equal
the file loader's."""

from __future__ import annotations

import asyncio
import time

import pytest

from actors.book.book import L2Book, apply_rows
from actors.feed.actor import FeedActor
from actors.feed.binance import KNOWN_INSTRUMENTS
from tests.conftest import small_config
from tests.unit.test_ws_client import USDM, FakeBinance, reference_book, same_book

pytestmark = [pytest.mark.realdata,
              pytest.mark.skipif(not USDM.exists(), reason="no recorded Binance data")]


async def _live(tmp_path) -> tuple[FeedActor, L2Book, FakeBinance, int]:
    from websockets.asyncio.server import serve

    srv = FakeBinance(USDM, "usdm", {400: "gap", 900: "drop"})
    async with serve(srv.handler, "127.0.0.1", 0, process_request=srv.process_request) as s:
        port = s.sockets[0].getsockname()[1]
        cfg = small_config(tmp_path)
        data = cfg.model_dump(mode="json")
        ins = dict(data["instruments"][0])
        ins["tick_size"], ins["lot_size"] = KNOWN_INSTRUMENTS[("usdm", srv.symbol)]
        data["instruments"] = [ins]
        data["feed"].update(source="ws", url=f"ws://127.0.0.1:{port}", batch_interval_ms=20,
                            reconnect_initial_s=0.02, reconnect_max_s=0.1, stall_timeout_s=1)
        actor = FeedActor(data, replay=False, start_ns=0)
        actor._start_ws().metrics = None  # no Ray in this process: plain counters only
        player = asyncio.create_task(srv.replay())
        book, steps = L2Book(), 0
        deadline = time.monotonic() + 60
        sync = actor.ws.syncs[srv.symbol]
        while time.monotonic() < deadline:
            now, batches = await actor.next_batches()
            steps += 1
            assert set(batches) == {srv.symbol} and now > 0
            for _ in apply_rows(book, batches[srv.symbol].data):
                pass
            if player.done() and sync.synced and sync.last_u == srv.last_u \
                    and not actor.ws.pending_rows(srv.symbol):
                break
        await actor.stop()
    return actor, book, srv, steps


def test_feed_actor_live_ws_books_equal_the_loader_after_a_gap_and_a_drop(tmp_path):
    actor, book, _srv, steps = asyncio.run(_live(tmp_path))
    assert same_book(book, reference_book(USDM))
    stats = actor.feed_stats()
    assert stats["faults"].get("gap", 0) >= 1 and stats["reconnects"].get("closed", 0) >= 1
    assert steps > 5
