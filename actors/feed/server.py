"""A Binance-compatible exchange feed server with fault injection (``raydesk feed serve``).

One port (``websockets`` server; plain HTTP GETs answered in ``process_request``):

* WebSocket combined streams ``/stream?streams=btcusdt@depth@100ms/btcusdt@trade`` (messages
  ``{"stream": name, "data": {...}}``) and raw streams ``/ws/<stream>`` (the data object).
  Streams ``<sym>@depth@100ms`` and ``<sym>@depth@0ms`` carry the *same* diffs here (the
  source's own cadence: 0 ms on recorded futures, 100 ms on recorded spot), plus
  ``<sym>@trade`` and ``<sym>@bookTicker``. Binance's ``SUBSCRIBE`` / ``UNSUBSCRIBE`` /
  ``LIST_SUBSCRIPTIONS`` JSON methods work on an open socket (Binance's error objects: code 3
  invalid JSON, code 2 invalid request, such as an unknown stream or more than
  :data:`MAX_STREAMS` streams). An unknown symbol or a stream name that is not one of these
  is refused with HTTP 400 at connect (Binance would accept it silently).
* REST ``GET /api/v3/depth?symbol=S&limit=N`` (spot symbols) and ``/fapi/v1/depth`` (futures
  symbols): the server's current book (:class:`actors.feed.wire.SymbolBook`); ``limit``
  1..1,000,000 (default 100; Binance caps it at 5000 spot / 1000 futures: a deeper limit lets a
  client rebuild every level of a replayed session, so books can be compared exactly).
  Unknown symbol → 400 ``{"code": -1121, "msg": "Invalid symbol."}``.
* Control: ``GET|POST /control/fault?kind=K[&symbol=S][&seconds=X]`` injects one fault;
  ``GET /control/stats`` → counters as JSON.

Faults (each counted in ``stats()["faults"]``): ``drop`` closes sockets (those with a stream
of ``symbol``, or all) abruptly; ``gap`` skips the symbol's next diff (the book still has it);
``duplicate`` sends the next diff twice; ``reorder`` sends the next two diffs swapped;
``malformed`` sends a truncated copy of the next diff before it (the diff itself still goes
out; a reorder on a replay's last diff sends it when the replay ends); ``stall`` pauses the
whole feed for ``seconds`` (sockets open and silent; the pacing clock shifts, nothing is
lost). Without ``symbol``, a diff fault hits the next diff of any symbol.

Send times: with ``stamp=True`` the combined envelope gets a last field ``"_sent_ns"`` (the
server's ``time.time_ns()`` as the frame is written to the socket); off by default, so the
wire is exactly Binance's. ``E`` is never rewritten (it stays the exchange time).

Pacing: each message goes out at its source time / ``speed`` (the simulator source simulates
a few milliseconds ahead, so messages are not sent in bursts).

Backpressure: each connection has a bounded queue (``max_queue`` messages). Paced (``speed >
0``), or a client sending requests it never reads the replies of: a full queue drops that
connection, counted in ``slow_client_drops``. As fast as
possible (``speed == 0``): the source waits for the slowest client, and drops it when it has
been blocked for ``slow_client_timeout_s``.

Example:
    >>> srv = FeedServer(BinanceReplaySource(paths), speed=0.0)  # doctest: +SKIP
    >>> with srv.run_in_thread():  # doctest: +SKIP
    ...     url = f"ws://127.0.0.1:{srv.port}/stream?streams=btcusdt@depth@0ms"
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from actors.feed.wire import DEPTH, TICKER, TRADE_CH, SimWireEncoder, SymbolBook, WireEvent

# Binance caps ``limit`` at 5000 (spot) / 1000 (futures); this server also serves deeper books
# (up to MAX_LIMIT levels per side) so a client can rebuild every level of a replayed session.
MAX_LIMIT = 1_000_000
PACED_STEP_S = 0.002  # wall seconds simulated at once by a paced simulator source
MAX_STREAMS = 1024  # streams per connection (Binance's limit)
WRITE_BATCH = 512  # messages framed per socket write
FAULT_KINDS = ("drop", "gap", "duplicate", "reorder", "malformed", "stall")
FaultKind = Literal["drop", "gap", "duplicate", "reorder", "malformed", "stall"]
_CHANNELS = {"depth@100ms": DEPTH, "depth@0ms": DEPTH, "trade": TRADE_CH, "bookTicker": TICKER}
_NAMES = {DEPTH: ("depth@100ms", "depth@0ms"), TRADE_CH: ("trade",), TICKER: ("bookTicker",)}


class FaultSpec(BaseModel):
    """One scheduled fault: at a message count or a stream time, optionally repeated."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: FaultKind = Field(description="Fault kind.")
    symbol: str | None = Field(None, description="Symbol (upper case); none: any / all.")
    at_msg: int | None = Field(None, ge=0, description="After this many messages sent.")
    at_s: float | None = Field(None, ge=0, description="At this stream time (s since start).")
    every_msg: int | None = Field(None, gt=0, description="Repeat every N messages.")
    every_s: float | None = Field(None, gt=0, description="Repeat every X stream seconds.")
    count: int = Field(1, ge=0, description="Times to inject (0: unlimited).")
    seconds: float = Field(1.0, gt=0, description="Stall duration.")


class FaultsConfig(BaseModel):
    """The ``--faults`` YAML: ``faults: [{kind: gap, symbol: BTCUSDT, at_msg: 1000}, ...]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    faults: list[FaultSpec] = Field(default_factory=list, description="Scheduled faults.")

    @classmethod
    def load(cls, path: str | Path) -> FaultsConfig:
        return cls.model_validate(yaml.safe_load(Path(path).read_text()) or {})


class _Conn:
    """One WebSocket client: its streams, bounded queue and writer."""

    def __init__(self, ws: ServerConnection, combined: bool, streams: list[str]) -> None:
        self.ws = ws
        self.combined = combined
        self.streams = streams
        self.q: deque[str] = deque()
        self.wake = asyncio.Event()
        self.dead = False
        self.blocked_since = 0.0

    def abort(self) -> None:
        self.dead = True
        self.wake.set()
        if self.ws.transport is not None:
            self.ws.transport.abort()


def _json_response(status: int, obj: Any) -> Response:
    body = json.dumps(obj).encode()
    headers = Headers([
        ("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close"),
        ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
    ])
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    return Response(status, reason, headers, body)


def _bad_symbol() -> Response:
    return _json_response(400, {"code": -1121, "msg": "Invalid symbol."})


class FeedServer:
    """The feed server (see module docstring).

    Args:
        source: A :class:`~actors.feed.wire.BinanceReplaySource` (``events`` + ``books``) or a
            :class:`SimSource`.
        host: Interface to bind.
        port: Port (0: any free port; read :attr:`port` after :meth:`start`).
        speed: Pace multiplier of the source clock; 0 = as fast as clients read.
        faults: Scheduled faults.
        stamp: Add ``"_sent_ns"`` to combined envelopes.
        wait_clients: Hold the source until this many WebSocket clients are connected.
        max_queue: Messages queued per connection before backpressure applies.
        slow_client_timeout_s: At speed 0, drop a client blocked this long.
    """

    def __init__(self, source: Any, host: str = "127.0.0.1", port: int = 0, speed: float = 1.0,
                 faults: FaultsConfig | None = None, stamp: bool = False, wait_clients: int = 0,
                 max_queue: int = 10_000, slow_client_timeout_s: float = 10.0) -> None:
        self.source = source
        self.host, self.port, self.speed = host, port, float(speed)
        self.stamp = stamp
        self.wait_clients = wait_clients
        self.max_queue = max_queue
        self.slow_timeout = slow_client_timeout_s
        self._sched = [[f, 0] for f in (faults.faults if faults else [])]  # spec, times fired
        self._conns: set[_Conn] = set()
        self._subs: dict[str, set[_Conn]] = {}
        self._pending: list[tuple[str, str | None]] = []  # diff faults waiting for a diff
        self._held: dict[str, tuple[str, str]] = {}  # reorder: sym -> held (name-less) text
        self._stall_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = 0
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._clients_ready: asyncio.Event | None = None
        self.done = threading.Event()
        self._stats: dict[str, Any] = {
            "messages_sent": 0, "events": 0, "connections": 0, "connections_open": 0,
            "slow_client_drops": 0, "rest_requests": 0, "rest_errors": 0,
            "faults": dict.fromkeys(FAULT_KINDS, 0), "done": False,
        }
        if hasattr(source, "want_tickers"):  # the simulator encodes tickers only when asked
            source.want_tickers(lambda sym: bool(self._subs.get(f"{sym}@bookTicker")))

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the port and start the source."""
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self._clients_ready = asyncio.Event()
        if self.wait_clients <= 0:
            self._clients_ready.set()
        # no permessage-deflate: Binance's market streams are not compressed, and deflating
        # every message would cost both ends most of their CPU at high rates
        self._server = await serve(self._handler, self.host, self.port,
                                   process_request=self._process_request, max_size=2**20,
                                   compression=None)
        self.port = self._server.sockets[0].getsockname()[1]
        self._task = asyncio.create_task(self._produce())

    async def stop(self) -> None:
        """Stop the source, close every socket and the port."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for c in list(self._conns):
            c.abort()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    @contextlib.contextmanager
    def run_in_thread(self) -> Iterator[FeedServer]:
        """Run the server on its own event loop in a background thread (for sync code)."""
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        errors: list[BaseException] = []

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        th = threading.Thread(target=main, name="feed-server", daemon=True)
        th.start()
        ready.wait()
        if errors:
            raise errors[0]
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            th.join(timeout=10)
            loop.close()

    # --- control ----------------------------------------------------------------------------
    def inject(self, kind: str, symbol: str | None = None, seconds: float = 1.0) -> None:
        """Inject one fault now (thread-safe); see the module docstring for the kinds."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {list(FAULT_KINDS)}, was {kind!r}")
        if not (math.isfinite(seconds) and 0 < seconds <= 3_600):
            raise ValueError(f"seconds must be finite, > 0 and <= 3600, was {seconds!r}")
        if self._loop is not None and threading.get_ident() != self._thread_id:
            self._loop.call_soon_threadsafe(self._inject, kind, symbol, seconds)
        else:
            self._inject(kind, symbol, seconds)

    def _inject(self, kind: str, symbol: str | None, seconds: float) -> None:
        sym = symbol.lower() if symbol else None
        if kind == "drop":
            for c in list(self._conns):
                if sym is None or any(s.split("@")[0] == sym for s in c.streams):
                    c.abort()
            self._stats["faults"]["drop"] += 1
        elif kind == "stall":
            self._stall_until = max(self._stall_until, time.monotonic()) + seconds
            self._stats["faults"]["stall"] += 1
        else:
            self._pending.append((kind, sym))  # counted when it hits a diff

    def stats(self) -> dict[str, Any]:
        """Counters: messages, connections, slow-client drops, REST calls, faults by kind."""
        out = dict(self._stats)
        out["faults"] = dict(self._stats["faults"])
        return out

    # --- HTTP -------------------------------------------------------------------------------
    def _parse_streams(self, path: str) -> tuple[bool, list[str]] | Response:
        parts = urlsplit(path)
        if parts.path == "/stream":
            names = parse_qs(parts.query).get("streams", [""])[0].split("/")
            combined = True
        elif parts.path.startswith("/ws/"):
            names = parts.path[4:].split("/")
            combined = False
        else:
            return _json_response(404, {"code": -1, "msg": f"Unknown path {parts.path}."})
        for n in names:
            sym, _, chan = n.partition("@")
            if chan not in _CHANNELS:
                return _json_response(400, {"code": -1, "msg": f"Invalid stream {n!r}."})
            if sym not in self.source.books:
                return _bad_symbol()
        return combined, names

    def _process_request(self, conn: ServerConnection, req: Request) -> Response | None:
        parts = urlsplit(req.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path in ("/api/v3/depth", "/fapi/v1/depth"):
            return self._rest_depth(parts.path, q)
        if parts.path == "/control/stats":
            return _json_response(200, self.stats())
        if parts.path == "/control/fault":
            try:
                self.inject(q.get("kind", ""), q.get("symbol"), float(q.get("seconds", 1.0)))
            except ValueError as exc:
                return _json_response(400, {"code": -1, "msg": str(exc)})
            return _json_response(200, {"ok": True, "faults": self.stats()["faults"]})
        parsed = self._parse_streams(req.path)
        return parsed if isinstance(parsed, Response) else None

    def _rest_depth(self, path: str, q: dict[str, str]) -> Response:
        self._stats["rest_requests"] += 1
        book: SymbolBook | None = self.source.books.get(q.get("symbol", "").lower())
        want = "usdm" if path.startswith("/fapi") else "spot"
        if book is None or book.market != want:
            self._stats["rest_errors"] += 1
            return _bad_symbol()
        try:
            limit = int(q.get("limit", "100"))
            if not 1 <= limit <= MAX_LIMIT:
                raise ValueError
        except ValueError:
            self._stats["rest_errors"] += 1
            return _json_response(400, {"code": -1100, "msg": "Illegal characters found in "
                                        f"parameter 'limit'; legal range is '1..{MAX_LIMIT}'."})
        return _json_response(200, book.rest(limit))

    # --- WebSocket --------------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        parsed = self._parse_streams(ws.request.path if ws.request else "")
        if isinstance(parsed, Response):
            return
        c = _Conn(ws, *parsed)
        self._conns.add(c)
        for n in c.streams:
            self._subs.setdefault(n, set()).add(c)
        self._stats["connections"] += 1
        self._stats["connections_open"] += 1
        if self._clients_ready is not None and len(self._conns) >= self.wait_clients:
            self._clients_ready.set()
        writer = asyncio.create_task(self._write(c))
        try:
            async for msg in ws:
                self._on_client_message(c, msg)
        except Exception:  # noqa: BLE001 - a broken client socket ends its session
            pass
        finally:
            c.dead = True
            c.wake.set()
            writer.cancel()
            self._conns.discard(c)
            for n in c.streams:
                self._unsubscribe(n, c)
            self._stats["connections_open"] -= 1

    def _on_client_message(self, c: _Conn, msg: str | bytes) -> None:
        """A request on the socket (Binance's live subscribing: SUBSCRIBE, UNSUBSCRIBE,
        LIST_SUBSCRIPTIONS), answered with Binance's reply or error object."""
        try:
            req = json.loads(msg)
            method, rid = req["method"], req.get("id")
            params = req.get("params", [])
        except (ValueError, KeyError, TypeError, RecursionError):
            self._reply(c, {"error": {"code": 3, "msg": "Invalid JSON"}, "id": None})
            return
        result: Any = None
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            bad = self._bad_params(params)
            if bad:
                self._reply(c, {"error": {"code": 2, "msg": f"Invalid request: {bad}"},
                                "id": rid})
                return
            if method == "SUBSCRIBE":
                new = [n for n in dict.fromkeys(params) if n not in c.streams]
                if len(c.streams) + len(new) > MAX_STREAMS:
                    self._reply(c, {"error": {"code": 2, "msg": "Invalid request: at most "
                                              f"{MAX_STREAMS} streams per connection"},
                                    "id": rid})
                    return
                for n in new:
                    c.streams.append(n)
                    self._subs.setdefault(n, set()).add(c)
            else:
                for n in params:
                    if n in c.streams:
                        c.streams.remove(n)
                        self._unsubscribe(n, c)
        elif method == "LIST_SUBSCRIPTIONS":
            result = list(c.streams)
        else:
            self._reply(c, {"error": {"code": 2, "msg": f"Invalid request: unknown method "
                                      f"{str(method)[:40]!r}"}, "id": rid})
            return
        self._reply(c, {"result": result, "id": rid})

    def _bad_params(self, params: Any) -> str | None:
        if not isinstance(params, list) or not all(isinstance(n, str) for n in params):
            return "params must be a list of stream names"
        for n in params:
            sym, _, chan = n.partition("@")
            if chan not in _CHANNELS or sym not in self.source.books:
                return f"unknown stream {n[:60]!r}"
        return None

    def _reply(self, c: _Conn, obj: dict[str, Any]) -> None:
        c.q.append(json.dumps(obj))
        c.wake.set()
        if len(c.q) > self.max_queue:  # a client that sends requests but never reads
            self._stats["slow_client_drops"] += 1
            c.abort()

    def _unsubscribe(self, name: str, c: _Conn) -> None:
        subs = self._subs.get(name)
        if subs is not None:
            subs.discard(c)
            if not subs:
                del self._subs[name]

    async def _write(self, c: _Conn) -> None:
        try:
            while not c.dead:
                await c.wake.wait()
                c.wake.clear()
                while c.q and not c.dead:
                    # frame every queued message, then write and drain once (websockets'
                    # documented send_context): a send per message costs a drain each
                    ws, q = c.ws, c.q
                    stamp = self.stamp and c.combined
                    async with ws.send_context():
                        for _ in range(min(len(q), WRITE_BATCH)):
                            text = q.popleft()
                            if stamp and text.startswith('{"stream"'):
                                # the send time, taken as the frame goes to the socket
                                text = f'{text[:-1]},"_sent_ns":{time.time_ns()}}}'
                            ws.protocol.send_text(text.encode())
        except Exception:  # noqa: BLE001 - closed socket: the handler cleans up
            c.abort()

    # --- the source -------------------------------------------------------------------------
    def _send(self, sym: str, chan: int, text: str) -> None:
        sent = 0
        stamp = "}"  # the send time, if asked for, is added as the frame is written
        for name in _NAMES[chan]:
            subs = self._subs.get(f"{sym}@{name}")
            if not subs:
                continue
            env = None
            for c in subs:
                if c.dead:
                    continue
                if env is None and c.combined:
                    env = f'{{"stream":"{sym}@{name}","data":{text}{stamp}'
                c.q.append(env if c.combined else text)  # type: ignore[arg-type]
                c.wake.set()
                sent += 1
                if len(c.q) > self.max_queue and self.speed > 0:
                    self._stats["slow_client_drops"] += 1
                    c.abort()
        self._stats["messages_sent"] += sent

    def _send_diff(self, sym: str, text: str) -> None:
        """Send one depth diff, applying any pending diff fault for ``sym``."""
        held = self._held.pop(sym, None)
        fault = None
        for i, (kind, fsym) in enumerate(self._pending):
            if fsym is None or fsym == sym:
                fault = kind
                del self._pending[i]
                break
        if fault is not None:
            self._stats["faults"][fault] += 1
        if fault == "gap":
            pass
        elif fault == "duplicate":
            self._send(sym, DEPTH, text)
            self._send(sym, DEPTH, text)
        elif fault == "reorder":
            self._held[sym] = (text, "")
        elif fault == "malformed":
            self._send(sym, DEPTH, text[: len(text) // 2])
            self._send(sym, DEPTH, text)
        else:
            self._send(sym, DEPTH, text)
        if held is not None:
            self._send(sym, DEPTH, held[0])

    def _fire_scheduled(self, n_msgs: int, stream_s: float) -> None:
        for item in self._sched:
            f, fired = item
            if f.count and fired >= f.count:
                continue
            due = False
            if f.at_msg is not None or f.every_msg is not None:
                nxt = (f.at_msg or 0) + fired * (f.every_msg or 0)
                due = n_msgs >= nxt and (fired == 0 or f.every_msg is not None)
            elif f.at_s is not None or f.every_s is not None:
                nxt_s = (f.at_s or 0.0) + fired * (f.every_s or 0.0)
                due = stream_s >= nxt_s and (fired == 0 or f.every_s is not None)
            if due:
                item[1] = fired + 1
                self._inject(f.kind, f.symbol, f.seconds)

    async def _produce(self) -> None:
        assert self._clients_ready is not None
        await self._clients_ready.wait()
        t_wall0 = time.monotonic()
        t_src0: int | None = None
        n = 0
        books = self.source.books
        try:
            async for batch in self._batches():
                for t_ns, sym, chan, text, _diff in batch:
                    if t_src0 is None:
                        t_src0 = t_ns
                    stream_s = (t_ns - t_src0) / 1e9
                    if self._sched:
                        self._fire_scheduled(n, stream_s)
                    now = time.monotonic()
                    if now < self._stall_until:
                        await asyncio.sleep(self._stall_until - now)
                        t_wall0 += time.monotonic() - now
                    if self.speed > 0:
                        wait = t_wall0 + stream_s / self.speed - time.monotonic()
                        if wait > 0.0005:
                            await asyncio.sleep(wait)
                        elif n % 64 == 0:  # behind the source clock: still let the sockets
                            await asyncio.sleep(0)  # and requests run
                    elif n % 64 == 0:
                        await self._flow_control()
                    if chan == DEPTH:
                        books[sym].sent += 1
                        self._send_diff(sym, text)
                    else:
                        self._send(sym, chan, text)
                    n += 1
                    self._stats["events"] = n
            for sym in list(self._held):  # a diff held back by a reorder fault on the last
                self._send(sym, DEPTH, self._held.pop(sym)[0])  # diff goes out at the end
        finally:
            self._stats["done"] = True
            self.done.set()

    async def _flow_control(self) -> None:
        """Speed 0: wait until every client's queue is below half full (or drop it)."""
        await asyncio.sleep(0)
        high = self.max_queue // 2
        while True:
            slow = [c for c in self._conns if len(c.q) > high and not c.dead]
            if not slow:
                return
            now = time.monotonic()
            for c in slow:
                if not c.blocked_since:
                    c.blocked_since = now
                elif now - c.blocked_since > self.slow_timeout:
                    self._stats["slow_client_drops"] += 1
                    c.abort()
            await asyncio.sleep(0.0005)
            for c in self._conns:
                if len(c.q) <= high:
                    c.blocked_since = 0.0

    async def _batches(self) -> Any:
        src = self.source
        if hasattr(src, "events"):
            yield src.events
            return
        async for b in src.batches(self.speed):
            yield b


class SimSource:
    """The raydesk simulator as futures-style Binance messages, in real time × speed.

    Args:
        config: A ``RaydeskConfig`` (its ``simulator`` section and instruments).
        step_s: Simulated seconds per step at speed 0; paced, wall seconds per step (at most
            :data:`PACED_STEP_S`).
    """

    def __init__(self, config: Any, step_s: float = 0.01) -> None:
        from actors.feed.simulator import MarketSimulator

        self.ins = list(config.instrument_map().values())
        self.start_ns = time.time_ns()
        self.sim = MarketSimulator(config.simulator, self.ins, config.initial_prices_ticks(),
                                   self.start_ns)
        self.enc = {i.symbol.lower(): SimWireEncoder(i) for i in self.ins}
        self.step_s = step_s
        self._first = self._step(self.start_ns + 1)  # the initial books: REST works at once
        self.books: dict[str, SymbolBook] = {s: e.book for s, e in self.enc.items()}  # type: ignore[misc]

    def want_tickers(self, wanted: Callable[[str], bool]) -> None:
        """Encode a symbol's ``bookTicker`` only while ``wanted(symbol)`` (lower case) is true
        (a server without ticker subscribers skips half the encoding work)."""
        for sym, enc in self.enc.items():
            enc.want_ticker = functools.partial(wanted, sym)

    def _step(self, until_ns: int) -> list[WireEvent]:
        out: list[WireEvent] = []
        for sym, rows in self.sim.advance(until_ns).items():
            out.extend(self.enc[sym.lower()].encode(rows))
        out.sort(key=lambda e: e[0])
        return out

    async def batches(self, speed: float) -> Any:
        """Yield lists of wire events forever, each step's events in time order."""
        yield self._first
        t_sim = self.sim.now_ns
        # paced, the server sends each message at its simulated time (the producer waits for
        # it), so a step here only bounds how much is simulated at once: short, so the
        # next step's first messages are never late while it is being simulated
        wall_s = min(self.step_s, PACED_STEP_S) * speed if speed > 0 else self.step_s
        step_ns = int(wall_s * 1e9)
        while True:
            t_sim += max(1, step_ns)
            yield self._step(t_sim)
