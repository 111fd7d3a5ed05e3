"""RedisPublisher against a real Redis at RAYDESK_REDIS_URL: layout, fills, degrade, recovery."""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.core.errors import ValidationError
from actors.core.messages import LiquiditySide, OrderFilled, OrderSide
from actors.journal.redis_pub import RedisPublisher, keys

REDIS_URL = os.environ.get("RAYDESK_REDIS_URL", "redis://127.0.0.1:6379/0")
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
T0 = 1_700_000_000_000_000_000


# --- fixtures and builders --------------------------------------------------------------------
@pytest.fixture(scope="module")
def rds() -> Iterator[redis.Redis]:
    """A plain (sync) client to the real Redis, for reading back and cleaning up."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, decode_responses=True)
    try:
        client.ping()
    except redis.RedisError as exc:
        msg = f"Redis must be reachable at RAYDESK_REDIS_URL={REDIS_URL}, was: {exc}"
        if os.environ.get("CI"):  # CI has the service: its absence is a failure, not a skip
            pytest.fail(msg)
        pytest.skip(msg)
    yield client
    client.close()


def _purge(client: redis.Redis, run_id: str) -> None:
    for key in client.scan_iter(match=keys(run_id).pattern, count=500):
        client.delete(key)


@pytest.fixture
def run_id(rds: redis.Redis) -> Iterator[str]:
    """A fresh run id whose keys are deleted after the test."""
    rid = f"test-{uuid.uuid4().hex[:16]}"
    yield rid
    _purge(rds, rid)


def _signal(symbol: str, n: int, signal: int = 1, p_up: float = 0.6) -> dict[str, Any]:
    rest = (1.0 - p_up) / 2
    return {
        "symbol": symbol,
        "decision_id": f"{symbol}-{n}",
        "probs": [rest, rest, p_up],
        "signal": signal,
        "ts_ns": T0 + n,
        "models": {"lgbm": "v3", "torch": "v7"},
    }


def _top(bid: int, ask: int, ts: int = T0) -> dict[str, Any]:
    return {"bid": bid, "bid_size": 1.25, "ask": ask, "ask_size": 0.5, "ts_ns": ts}


def _fill(n: int, symbol: str = "BTCUSDT") -> dict[str, Any]:
    return OrderFilled(
        ts_event=T0 + n,
        ts_init=T0 + n,
        client_order_id=f"O-{n}",
        symbol=symbol,
        trade_id=f"T-{n}",
        side=OrderSide.BUY if n % 2 else OrderSide.SELL,
        last_qty_lots=n + 1,
        last_px_ticks=600_000 + n,
        liquidity=LiquiditySide.TAKER,
        fee=0.01 * n,
    ).to_record()


def _free_port() -> int:
    """A local port that was free a moment ago (nothing listens on it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Proxy:
    """A TCP proxy in front of the real Redis that can be taken down and brought back."""

    def __init__(self, target: str) -> None:
        url = redis.connection.parse_url(target)
        self.host, self.port_up = url.get("host", "127.0.0.1"), url.get("port", 6379)
        self.db = url.get("db", 0)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{self.db}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.close()
        await self.server.wait_closed()
        self.writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(self.host, self.port_up)
        self.writers |= {writer, up_w}
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


# --- layout -----------------------------------------------------------------------------------
def test_signals_are_readable_with_ttl_and_the_latest_overwrites(
    rds: redis.Redis, run_id: str
) -> None:
    # Arrange
    first, latest, eth = (
        _signal("BTCUSDT", 1, 1),
        _signal("BTCUSDT", 2, -1, 0.1),
        _signal("ETHUSDT", 3),
    )

    async def scenario() -> tuple[bool, bool]:
        pub = RedisPublisher(REDIS_URL, run_id, signal_ttl_s=5.0)
        try:
            a = await pub.publish([first, eth], {}, {}, [])
            b = await pub.publish([latest], {}, {}, [])
            return a, b
        finally:
            await pub.close()

    # Act
    written = asyncio.run(scenario())

    # Assert
    k = keys(run_id)
    assert written == (True, True)
    raw = rds.get(k.signal("BTCUSDT"))
    assert json.loads(raw) == latest
    assert raw == json.dumps(latest, sort_keys=True, separators=(",", ":"))
    assert json.loads(rds.get(k.signal("ETHUSDT"))) == eth
    for sym in ("BTCUSDT", "ETHUSDT"):
        assert 0 < rds.pttl(k.signal(sym)) <= 5000
        assert 0 < rds.ttl(k.signal(sym)) <= 5


def test_signal_expires_after_its_ttl(rds: redis.Redis, run_id: str) -> None:
    # Arrange
    async def scenario() -> bool:
        pub = RedisPublisher(REDIS_URL, run_id, signal_ttl_s=0.15)
        try:
            return await pub.publish([_signal("BTCUSDT", 1)], {}, {}, [])
        finally:
            await pub.close()

    # Act
    assert asyncio.run(scenario())
    present = rds.exists(keys(run_id).signal("BTCUSDT"))
    time.sleep(0.4)

    # Assert
    assert present == 1
    assert rds.exists(keys(run_id).signal("BTCUSDT")) == 0


def test_positions_top_of_book_heartbeat_and_key_index_land_in_redis(
    rds: redis.Redis, run_id: str
) -> None:
    # Arrange
    tops = {"BTCUSDT": _top(600_000, 600_001), "ETHUSDT": _top(31_000, 31_002, T0 + 5)}
    tops["ETHUSDT"]["ask"] = None  # an empty side
    tops["ETHUSDT"]["ask_size"] = None

    async def scenario() -> bool:
        pub = RedisPublisher(REDIS_URL, run_id)
        try:
            await pub.publish([], {"BTCUSDT": 3, "ETHUSDT": -2}, tops, [], ts_ns=T0)
            return await pub.publish(
                [_signal("BTCUSDT", 1)], {"BTCUSDT": 0, "SOLUSDT": 1.5}, {}, [], ts_ns=T0 + 9
            )
        finally:
            await pub.close()

    # Act
    written = asyncio.run(scenario())

    # Assert
    k = keys(run_id)
    assert written
    assert rds.hgetall(k.positions) == {"BTCUSDT": "0", "ETHUSDT": "-2", "SOLUSDT": "1.5"}
    assert rds.hgetall(k.top("BTCUSDT")) == {
        "bid": "600000",
        "bid_size": "1.25",
        "ask": "600001",
        "ask_size": "0.5",
        "ts_ns": str(T0),
    }
    assert rds.hgetall(k.top("ETHUSDT")) == {
        "bid": "31000",
        "bid_size": "1.25",
        "ask": "",
        "ask_size": "",
        "ts_ns": str(T0 + 5),
    }
    assert rds.get(k.heartbeat) == str(T0 + 9)
    assert rds.smembers(k.index) == {
        k.positions,
        k.heartbeat,
        k.top("BTCUSDT"),
        k.top("ETHUSDT"),
        k.signal("BTCUSDT"),
    }


def test_subscriber_receives_every_fill_in_order(run_id: str) -> None:
    # Arrange
    steps = [[_fill(0), _fill(1)], [], [_fill(2, "ETHUSDT"), _fill(3), _fill(4)]]
    expected = [f for step in steps for f in step]

    async def scenario() -> list[dict[str, Any]]:
        sub = aioredis.Redis.from_url(REDIS_URL)
        ps = sub.pubsub()
        pub = RedisPublisher(REDIS_URL, run_id)
        try:
            await ps.subscribe(keys(run_id).fills)
            confirm = await ps.get_message(timeout=2.0)
            assert confirm is not None and confirm["type"] == "subscribe"
            for step in steps:
                assert await pub.publish([], {}, {}, step)
            got: list[dict[str, Any]] = []
            deadline = time.monotonic() + 3.0
            while len(got) < len(expected) and time.monotonic() < deadline:
                msg = await ps.get_message(ignore_subscribe_messages=True, timeout=0.5)
                if msg is not None:
                    got.append(json.loads(msg["data"]))
            return got
        finally:
            await pub.close()
            await ps.aclose()
            await sub.aclose()

    # Act
    received = asyncio.run(scenario())

    # Assert
    assert received == expected
    assert [f["trade_id"] for f in received] == ["T-0", "T-1", "T-2", "T-3", "T-4"]


# --- degraded: down, slow ---------------------------------------------------------------------
def test_publish_to_a_closed_port_returns_false_fast_and_counts(run_id: str) -> None:
    # Arrange
    url = f"redis://127.0.0.1:{_free_port()}/0"

    async def scenario() -> tuple[list[bool], float, dict[str, Any]]:
        pub = RedisPublisher(url, run_id, timeout_s=0.2, retry_s=1.0)
        t = time.perf_counter()
        out = [await pub.publish([_signal("BTCUSDT", n)], {}, {}, [_fill(n)]) for n in range(10)]
        elapsed = time.perf_counter() - t
        await pub.close()
        return out, elapsed, pub.stats()

    # Act
    results, elapsed, stats = asyncio.run(scenario())

    # Assert
    assert results == [False] * 10
    assert elapsed < 2.0
    assert stats["errors"] == 1 and stats["skipped"] == 9
    assert stats["published_steps"] == 0 and stats["dropped_fills"] == 10
    assert stats["degraded"] is True and "ConnectionError" in stats["last_error"]


def test_with_retry_zero_every_call_tries_and_each_failure_is_an_error(run_id: str) -> None:
    # Arrange
    url = f"redis://127.0.0.1:{_free_port()}/0"

    async def scenario() -> tuple[list[bool], float, dict[str, Any]]:
        pub = RedisPublisher(url, run_id, timeout_s=0.2, retry_s=0.0)
        t = time.perf_counter()
        out = [await pub.publish([], {"BTCUSDT": n}, {}, []) for n in range(10)]
        return out, time.perf_counter() - t, pub.stats()

    # Act
    results, elapsed, stats = asyncio.run(scenario())

    # Assert
    assert results == [False] * 10
    assert elapsed < 2.0
    assert (stats["errors"], stats["skipped"], stats["degraded"]) == (10, 0, True)


def test_a_server_that_never_answers_is_bounded_by_timeout_s(run_id: str) -> None:
    # Arrange: accepts connections, reads the commands, never replies
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    async def scenario() -> tuple[bool, float, dict[str, Any]]:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pub = RedisPublisher(f"redis://127.0.0.1:{port}/0", run_id, timeout_s=0.2)
        try:
            t = time.perf_counter()
            ok = await pub.publish([_signal("BTCUSDT", 1)], {"BTCUSDT": 1}, {}, [])
            return ok, time.perf_counter() - t, pub.stats()
        finally:
            await pub.close()
            server.close()

    # Act
    ok, elapsed, stats = asyncio.run(scenario())

    # Assert
    assert ok is False
    assert 0.15 < elapsed < 0.7
    assert stats["errors"] == 1 and "Timeout" in stats["last_error"]


# --- recovery ---------------------------------------------------------------------------------
def test_publisher_recovers_after_retry_s_when_redis_comes_back(
    rds: redis.Redis, run_id: str
) -> None:
    # Arrange
    retry_s = 0.5

    async def scenario() -> dict[str, Any]:
        proxy = _Proxy(REDIS_URL)
        await proxy.start()
        pub = RedisPublisher(proxy.url, run_id, timeout_s=0.2, retry_s=retry_s)
        seen: dict[str, Any] = {}
        try:
            seen["up"] = await pub.publish([_signal("BTCUSDT", 1)], {"BTCUSDT": 1}, {}, [])
            await proxy.stop()
            seen["down"] = await pub.publish([_signal("BTCUSDT", 2)], {"ETHUSDT": 7}, {}, [])
            seen["down_stats"] = pub.stats()
            await proxy.start()  # back on the same port, but within retry_s: not tried yet
            seen["within_retry"] = await pub.publish([_signal("BTCUSDT", 3)], {}, {}, [])
            seen["within_stats"] = pub.stats()
            await asyncio.sleep(retry_s + 0.05)
            seen["after_retry"] = await pub.publish(
                [_signal("BTCUSDT", 4, -1)], {"BTCUSDT": -4}, {"BTCUSDT": _top(9, 11)}, []
            )
            seen["final_stats"] = pub.stats()
            return seen
        finally:
            await pub.close()
            await proxy.stop()

    # Act
    seen = asyncio.run(scenario())

    # Assert
    k = keys(run_id)
    assert seen["up"] is True
    assert seen["down"] is False
    assert seen["down_stats"]["errors"] == 1 and seen["down_stats"]["degraded"] is True
    assert seen["within_retry"] is False and seen["within_stats"]["skipped"] == 1
    assert seen["after_retry"] is True
    assert seen["final_stats"]["degraded"] is False
    assert seen["final_stats"]["published_steps"] == 2
    assert json.loads(rds.get(k.signal("BTCUSDT"))) == _signal("BTCUSDT", 4, -1)
    assert rds.hgetall(k.positions) == {"BTCUSDT": "-4"}  # the dropped step's ETHUSDT never landed
    assert rds.hget(k.top("BTCUSDT"), "ask") == "11"


# --- invariants -------------------------------------------------------------------------------
_signals = st.lists(
    st.builds(
        _signal,
        st.sampled_from(SYMBOLS),
        st.integers(0, 10**6),
        st.sampled_from([-1, 0, 1]),
        st.floats(0.0, 1.0, allow_nan=False),
    ),
    max_size=4,
)
_positions = st.dictionaries(
    st.sampled_from(SYMBOLS),
    st.one_of(st.integers(-(10**9), 10**9), st.floats(-1e6, 1e6, allow_nan=False)),
    max_size=3,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(st.tuples(_signals, _positions), min_size=1, max_size=5))
def test_redis_holds_the_last_signal_and_position_of_every_symbol(
    rds: redis.Redis, steps: list[tuple[list[dict[str, Any]], dict[str, Any]]]
) -> None:
    # Arrange
    run_id = f"test-{uuid.uuid4().hex[:16]}"
    last_signal: dict[str, dict[str, Any]] = {}
    last_lots: dict[str, Any] = {}
    for sigs, pos in steps:
        last_signal.update({s["symbol"]: s for s in sigs})
        last_lots.update(pos)

    async def scenario() -> list[bool]:
        pub = RedisPublisher(REDIS_URL, run_id, signal_ttl_s=60.0)
        try:
            return [await pub.publish(s, p, {}, []) for s, p in steps]
        finally:
            await pub.close()

    # Act
    try:
        written = asyncio.run(scenario())
        k = keys(run_id)
        stored = {sym: rds.get(k.signal(sym)) for sym in SYMBOLS}
        lots = rds.hgetall(k.positions)
    finally:
        _purge(rds, run_id)

    # Assert
    assert all(written)
    for sym in SYMBOLS:
        want = last_signal.get(sym)
        assert (json.loads(stored[sym]) if stored[sym] else None) == want
    assert set(lots) == set(last_lots)
    for sym, value in last_lots.items():
        assert float(lots[sym]) == value
        assert isinstance(value, float) or lots[sym] == str(value)


@given(
    run_id=st.text(
        st.characters(exclude_characters=":", exclude_categories=["Z", "C"]),
        min_size=1,
        max_size=20,
    ),
    symbol=st.sampled_from(SYMBOLS),
)
def test_every_key_of_a_run_lies_under_its_prefix(run_id: str, symbol: str) -> None:
    # Arrange
    k = keys(run_id)
    prefix = f"raydesk:{run_id}:"

    # Act
    names = [k.signal(symbol), k.top(symbol), k.positions, k.fills, k.heartbeat, k.index]

    # Assert
    assert all(n.startswith(prefix) for n in names)
    assert len(set(names)) == len(names)


# --- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"url": "http://127.0.0.1:6379"}, "url"),
        ({"run_id": "a:b"}, "run_id"),
        ({"run_id": ""}, "run_id"),
        ({"signal_ttl_s": 0.0}, "signal_ttl_s"),
        ({"timeout_s": -1.0}, "timeout_s"),
        ({"retry_s": float("nan")}, "retry_s"),
    ],
)
def test_publisher_config_breaking_a_rule_is_refused(kwargs: dict[str, Any], field: str) -> None:
    # Arrange
    args = {"url": REDIS_URL, "run_id": "r1", **kwargs}

    # Act
    with pytest.raises(ValidationError) as err:
        RedisPublisher(**args)

    # Assert
    assert err.value.field == field


@pytest.mark.parametrize(
    ("step", "field"),
    [
        ({"signals": [{**_signal("BTCUSDT", 1), "probs": [math.nan, 0.5, 0.5]}]}, "signals[0]"),
        ({"signals": [{"decision_id": "x"}]}, "signals[0].symbol"),
        ({"positions": {"BTCUSDT": True}}, "positions['BTCUSDT']"),
        ({"positions": {"BTCUSDT": math.inf}}, "positions['BTCUSDT']"),
        ({"tops": {"BTCUSDT": {"bid": 1}}}, "tops['BTCUSDT']"),
        ({"tops": {"BTCUSDT": {**_top(1, 2), "bid": 1.5}}}, "tops['BTCUSDT'].bid"),
        ({"fills": [{"type": "OrderFilled", "fee": object()}]}, "fills[0]"),
    ],
)
def test_bad_step_raises_even_while_redis_is_down(step: dict[str, Any], field: str) -> None:
    # Arrange: Redis down and in the retry window, so only the input check can speak
    pub = RedisPublisher(f"redis://127.0.0.1:{_free_port()}/0", "r1", retry_s=60.0)
    args = {"signals": [], "positions": {}, "tops": {}, "fills": [], **step}

    async def scenario() -> None:
        try:
            assert await pub.publish([], {}, {}, []) is False
            await pub.publish(**args)
        finally:
            await pub.close()

    # Act
    with pytest.raises(ValidationError) as err:
        asyncio.run(scenario())

    # Assert
    assert err.value.field == field
    assert pub.stats()["errors"] == 1 and pub.stats()["skipped"] == 0
