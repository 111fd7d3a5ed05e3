"""Publish the latest signals, positions, top of book and fills to Redis for outside readers.

Redis is a cache, never the record: the local journal is. :class:`RedisPublisher` writes one
pipeline per trading step and never lets Redis being down, slow or refusing stop trading: the
step's update is dropped, counted and the publisher is marked degraded; it tries again at most
every ``retry_s`` and recovers by itself when Redis is back.

Key layout (``{run}`` is the run id; see :func:`keys`), every JSON with sorted keys and no
spaces:

* ``raydesk:{run}:signal:{symbol}``: string, the latest signal of the symbol as JSON
  (``symbol, decision_id, probs, signal, ts_ns, models``), expiring ``signal_ttl_s`` after
  it was written (a missing key means "no fresh signal");
* ``raydesk:{run}:positions``: hash, ``symbol -> lots`` (decimal text);
* ``raydesk:{run}:top:{symbol}``: hash with fields ``bid, bid_size, ask, ask_size, ts_ns``
  (prices in integer ticks, sizes as decimal text; an empty string means an empty side);
* ``raydesk:{run}:fills``: pub/sub channel, one message per fill: the journal's
  ``OrderFilled`` record as JSON, in the order the fills happened;
* ``raydesk:{run}:heartbeat``: string, the int ns timestamp of the last published step;
* ``raydesk:{run}:keys``: set, the names of the keys above that the run has written (signal
  keys may have expired since).

A reader polls, for example::

    redis-cli GET raydesk:<run>:signal:BTCUSDT
    redis-cli HGETALL raydesk:<run>:positions
    redis-cli SUBSCRIBE raydesk:<run>:fills
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import operator
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from actors.core.errors import ValidationError

KEY_PREFIX = "raydesk"
"""First segment of every key and channel the publisher writes."""

SIGNAL_KEY = "{prefix}:{run_id}:signal:{symbol}"
POSITIONS_KEY = "{prefix}:{run_id}:positions"
TOP_KEY = "{prefix}:{run_id}:top:{symbol}"
FILLS_CHANNEL = "{prefix}:{run_id}:fills"
HEARTBEAT_KEY = "{prefix}:{run_id}:heartbeat"
INDEX_KEY = "{prefix}:{run_id}:keys"

TOP_FIELDS = ("bid", "bid_size", "ask", "ask_size", "ts_ns")
"""Fields of a top-of-book hash, in the order they are written."""

REDIS_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, OSError, RedisError)
"""What counts as Redis being down, slow or refusing: counted, never raised."""

_SCHEMES = ("redis", "rediss", "unix")

log = logging.getLogger(__name__)


def _name(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() or c == ":" for c in value):
        raise ValidationError(field, "a non-empty str without ':' or whitespace", value)
    return value


@dataclass(frozen=True)
class RunKeys:
    """The names of one run's keys and channel (see the module docstring for their types).

    Example:
        >>> k = keys("r1")
        >>> k.signal("BTCUSDT"), k.positions, k.fills
        ('raydesk:r1:signal:BTCUSDT', 'raydesk:r1:positions', 'raydesk:r1:fills')
    """

    run_id: str

    def _fmt(self, template: str, **kw: str) -> str:
        return template.format(prefix=KEY_PREFIX, run_id=self.run_id, **kw)

    def signal(self, symbol: str) -> str:
        """Return the key of the symbol's latest signal (a JSON string with a TTL)."""
        return self._fmt(SIGNAL_KEY, symbol=_name("symbol", symbol))

    def top(self, symbol: str) -> str:
        """Return the key of the symbol's top-of-book hash."""
        return self._fmt(TOP_KEY, symbol=_name("symbol", symbol))

    @property
    def positions(self) -> str:
        """The positions hash, ``symbol -> lots``."""
        return self._fmt(POSITIONS_KEY)

    @property
    def fills(self) -> str:
        """The pub/sub channel of fills."""
        return self._fmt(FILLS_CHANNEL)

    @property
    def heartbeat(self) -> str:
        """The key holding the int ns timestamp of the last published step."""
        return self._fmt(HEARTBEAT_KEY)

    @property
    def index(self) -> str:
        """The set of key names the run has written."""
        return self._fmt(INDEX_KEY)

    @property
    def pattern(self) -> str:
        """A ``SCAN MATCH`` pattern covering every key of the run."""
        return f"{KEY_PREFIX}:{self.run_id}:*"


def keys(run_id: str) -> RunKeys:
    """Return the key names of a run.

    Raises:
        ValidationError: ``run_id`` is empty or holds ``':'`` or whitespace.
    """
    return RunKeys(_name("run_id", run_id))


def _json_default(obj: Any) -> Any:
    """Turn numpy scalars and arrays (and any ``tolist``/``item`` object) into plain values."""
    for attr in ("tolist", "item"):
        fn = getattr(obj, attr, None)
        if callable(fn):
            return fn()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(field: str, obj: Any) -> str:
    """Encode ``obj`` as compact JSON with sorted keys, as written to Redis.

    Raises:
        ValidationError: ``obj`` is not JSON-serialisable or holds a non-finite number.
    """
    try:
        return json.dumps(
            obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_json_default
        )
    except (TypeError, ValueError) as exc:
        raise ValidationError(field, "JSON-serialisable with finite numbers", str(exc)) from None


def _number(field: str, value: Any, *, nullable: bool = False) -> str:
    """Encode an int (numpy ints included) or a finite float as decimal text."""
    if value is None and nullable:
        return ""
    if isinstance(value, bool):
        raise ValidationError(field, "an int or a finite float", value)
    try:
        return str(operator.index(value))
    except TypeError:
        pass
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValidationError(field, "an int or a finite float", value) from None
    if not math.isfinite(f):
        raise ValidationError(field, "an int or a finite float", value)
    return repr(f)


def _int(field: str, value: Any, *, nullable: bool = False) -> str:
    if value is None and nullable:
        return ""
    try:
        if isinstance(value, bool):
            raise TypeError
        return str(operator.index(value))
    except TypeError:
        raise ValidationError(field, "an int", value) from None


@dataclass(frozen=True)
class _Step:
    """One step's update, validated and encoded, ready for a pipeline."""

    signals: dict[str, str]
    positions: dict[str, str]
    tops: dict[str, dict[str, str]]
    fills: list[str]
    heartbeat: str


class RedisPublisher:
    """Writes each trading step to Redis; degrades (and counts) instead of failing.

    Args:
        url: Redis URL (``redis://``, ``rediss://`` or ``unix://``), e.g. the value of
            ``RAYDESK_REDIS_URL``.
        run_id: The run whose keys are written (see :func:`keys`).
        signal_ttl_s: Lifetime of a signal key in seconds (millisecond resolution).
        timeout_s: Bound on one :meth:`publish` round trip (connect, write, read) in seconds.
        retry_s: After a failure, calls within this many seconds return ``False`` at once
            (counted as ``skipped``) instead of trying Redis again.

    Example:
        >>> pub = RedisPublisher("redis://127.0.0.1:6379/0", run_id="r1")
        >>> await pub.publish(
        ...     signals=[{"symbol": "BTCUSDT", "decision_id": "BTCUSDT-1", "probs": [0.2, 0.5, 0.3],
        ...               "signal": 0, "ts_ns": 1, "models": {}}],
        ...     positions={"BTCUSDT": 2},
        ...     tops={"BTCUSDT": {"bid": 100, "bid_size": 1.5, "ask": 101, "ask_size": 2.0,
        ...                       "ts_ns": 1}},
        ...     fills=[],
        ... )
        True
        >>> await pub.close()
    """

    def __init__(
        self,
        url: str,
        run_id: str,
        signal_ttl_s: float = 5.0,
        timeout_s: float = 0.2,
        retry_s: float = 1.0,
    ) -> None:
        if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
            raise ValidationError("url", f"a URL with scheme in {_SCHEMES}", url)
        for field, value, low in (
            ("signal_ttl_s", signal_ttl_s, 0.001),
            ("timeout_s", timeout_s, 0.001),
            ("retry_s", retry_s, 0.0),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < low
            ):
                raise ValidationError(field, f"a finite number >= {low}", value)
        self.url = url
        self.keys = keys(run_id)
        self.run_id = run_id
        self.signal_ttl_ms = round(signal_ttl_s * 1000)
        self.timeout_s = float(timeout_s)
        self.retry_s = float(retry_s)
        self._client: aioredis.Redis | None = None
        self._retry_at = 0.0
        self._published_steps = 0
        self._errors = 0
        self._skipped = 0
        self._dropped_fills = 0
        self._degraded = False
        self._last_error: str | None = None

    def _redis(self) -> aioredis.Redis:
        """Return the client, creating it (no I/O) on first use or after :meth:`close`."""
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
                retry=Retry(NoBackoff(), 0),  # the default retries 3x with backoff: too slow
                health_check_interval=0,
            )
        return self._client

    def _encode(
        self,
        signals: Iterable[Mapping[str, Any]],
        positions: Mapping[str, Any],
        tops: Mapping[str, Mapping[str, Any]],
        fills: Iterable[Mapping[str, Any]],
        ts_ns: int | None,
    ) -> _Step:
        sigs: dict[str, str] = {}
        for i, sig in enumerate(signals):
            if not isinstance(sig, Mapping):
                raise ValidationError(f"signals[{i}]", "a mapping", sig)
            symbol = _name(f"signals[{i}].symbol", sig.get("symbol"))
            sigs[self.keys.signal(symbol)] = dumps(f"signals[{i}]", dict(sig))
        pos = {
            _name("positions (symbol)", sym): _number(f"positions[{sym!r}]", lots)
            for sym, lots in positions.items()
        }
        top_maps: dict[str, dict[str, str]] = {}
        for sym, top in tops.items():
            key = self.keys.top(_name("tops (symbol)", sym))
            missing = [f for f in TOP_FIELDS if not isinstance(top, Mapping) or f not in top]
            if missing:
                raise ValidationError(f"tops[{sym!r}]", f"a mapping with {TOP_FIELDS}", top)
            top_maps[key] = {
                "bid": _int(f"tops[{sym!r}].bid", top["bid"], nullable=True),
                "bid_size": _number(f"tops[{sym!r}].bid_size", top["bid_size"], nullable=True),
                "ask": _int(f"tops[{sym!r}].ask", top["ask"], nullable=True),
                "ask_size": _number(f"tops[{sym!r}].ask_size", top["ask_size"], nullable=True),
                "ts_ns": _int(f"tops[{sym!r}].ts_ns", top["ts_ns"]),
            }
        fill_msgs = []
        for i, fill in enumerate(fills):
            if not isinstance(fill, Mapping):
                raise ValidationError(f"fills[{i}]", "a mapping", fill)
            fill_msgs.append(dumps(f"fills[{i}]", dict(fill)))
        beat = _int("ts_ns", time.time_ns() if ts_ns is None else ts_ns)
        return _Step(sigs, pos, top_maps, fill_msgs, beat)

    def _written_keys(self, step: _Step) -> set[str]:
        names = {*step.signals, *step.tops, self.keys.heartbeat}
        if step.positions:
            names.add(self.keys.positions)
        return names

    async def _write(self, step: _Step) -> None:
        pipe = self._redis().pipeline(transaction=False)
        for key, body in step.signals.items():
            pipe.set(key, body, px=self.signal_ttl_ms)
        if step.positions:
            pipe.hset(self.keys.positions, mapping=step.positions)
        for key, fields in step.tops.items():
            pipe.hset(key, mapping=fields)
        for body in step.fills:
            pipe.publish(self.keys.fills, body)
        pipe.set(self.keys.heartbeat, step.heartbeat)
        pipe.sadd(self.keys.index, *sorted(self._written_keys(step)))
        async with asyncio.timeout(self.timeout_s):
            await pipe.execute()

    async def publish(
        self,
        signals: Iterable[Mapping[str, Any]],
        positions: Mapping[str, Any],
        tops: Mapping[str, Mapping[str, Any]],
        fills: Iterable[Mapping[str, Any]],
        *,
        ts_ns: int | None = None,
    ) -> bool:
        """Write one trading step in one pipeline; return ``True`` if written.

        Args:
            signals: The step's signals, each with at least ``symbol``; the last one of a
                symbol wins.
            positions: ``symbol -> lots`` (ints or finite floats).
            tops: ``symbol -> {bid, bid_size, ask, ask_size, ts_ns}``; ``None`` for an empty
                side's price and size.
            fills: The step's ``OrderFilled`` journal records, in order.
            ts_ns: The heartbeat's timestamp; the wall clock when ``None``.

        Returns:
            ``False`` when Redis is down, slow or refusing (or was, less than ``retry_s``
            ago): the step's update is dropped and counted, never retried.

        Raises:
            ValidationError: The input itself is bad (checked before Redis is touched).
        """
        fills = list(fills)
        step = self._encode(signals, positions, tops, fills, ts_ns)
        now = time.monotonic()
        if self._degraded and now < self._retry_at:
            self._skipped += 1
            self._dropped_fills += len(fills)
            return False
        try:
            await self._write(step)
        except REDIS_ERRORS as exc:
            self._errors += 1
            self._dropped_fills += len(fills)
            reason = str(exc) or f"no reply within timeout_s={self.timeout_s}"
            self._last_error = f"{type(exc).__name__}: {reason}"
            self._retry_at = time.monotonic() + self.retry_s
            if not self._degraded:
                log.warning("redis publisher degraded (run %s): %s", self.run_id, self._last_error)
            self._degraded = True
            return False
        if self._degraded:
            log.warning("redis publisher recovered (run %s)", self.run_id)
        self._degraded = False
        self._published_steps += 1
        return True

    def stats(self) -> dict[str, Any]:
        """Return the counters.

        Returns:
            ``published_steps``, ``errors`` (failed attempts), ``skipped`` (calls dropped
            without trying, within ``retry_s`` of a failure), ``dropped_fills``, ``degraded``
            (the last attempt failed) and ``last_error`` (``"Type: message"`` or ``None``).
        """
        return {
            "published_steps": self._published_steps,
            "errors": self._errors,
            "skipped": self._skipped,
            "dropped_fills": self._dropped_fills,
            "degraded": self._degraded,
            "last_error": self._last_error,
        }

    async def close(self) -> None:
        """Close the connections (bounded by ``timeout_s``; errors ignored). Idempotent."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await client.aclose()
        except REDIS_ERRORS:
            pass
