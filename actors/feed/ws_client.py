"""Live Binance feed client: one combined-stream WebSocket, REST snapshots, sync per symbol.

The client speaks Binance's protocol: it opens
``<url>/stream?streams=btcusdt@depth@0ms/btcusdt@trade/...`` (envelope ``{"stream", "data"}``)
and fetches depth snapshots from ``GET <rest_url>/fapi/v1/depth?symbol=X&limit=1000`` (USD-M
futures) or ``/api/v3/depth`` (spot). Each symbol is synced by
:class:`~actors.feed.binance.BinanceSymbolSync` (buffer until the snapshot, drop stale diffs,
check the ``pu`` / ``U == u + 1`` chain), so live rows are exactly what the recorded-file loader
produces for the same messages; ``ts_init`` is the local receive time (``time.time_ns()``).

Definitions:

* **quarantine**: the symbol emits one ``CLEAR`` row flagged ``F_GAP`` (the book empties and is
  flagged invalid) and stops emitting until a new snapshot.
* **resync**: a new REST snapshot is fetched and applied, then the diffs buffered since the
  quarantine (sorted by update id, duplicates removed) are replayed on it.
* Faults and what they do (``faults[reason]``): ``gap`` (broken ``pu``/``U`` chain, quarantine +
  resync), ``stale`` (``u <= last u``: a duplicate, or a diff already inside the snapshot it
  followed; dropped), ``malformed`` (not a JSON
  envelope), ``unknown_stream``, ``bad_field`` (a field breaks a rule: rejected; on a depth diff
  also quarantine + resync, since the book missed it), ``crossed`` (reported by the book through
  :meth:`BinanceWsClient.request_resync`), ``snapshot`` (a snapshot request failed; retried).
* **reconnect** (``reconnects[reason]``: ``closed``, ``stall``, ``error``): every symbol is
  quarantined (messages were lost) and resynced after the new connection opens; the delay before
  attempt ``k`` is uniform in ``[0, min(max, initial * multiplier**k)]`` (full jitter).
* **stall**: connected but no message for ``stall_timeout_s``: treated as a dead connection.
* **oversized message**: a frame over :data:`MAX_MESSAGE_BYTES` closes the connection (code
  1009, the reason in ``errors``) and counts as a reconnect; Binance's messages are far
  smaller.
* **backpressure**: rows wait in the client until :meth:`BinanceWsClient.drain`. When a symbol
  holds more than ``queue_rows`` undrained rows, all its undrained rows are dropped (newer
  rows would apply to a book that lost updates; counted in ``dropped[symbol]``), the symbol is
  quarantined and resynced: never a silent loss. Diffs buffered while a symbol is unsynced are
  bounded too (:data:`MAX_PENDING`; the oldest go).

Example:
    >>> client = BinanceWsClient("ws://127.0.0.1:9000", {"BTCUSDT": ins})  # doctest: +SKIP
    >>> task = asyncio.create_task(client.run())  # doctest: +SKIP
    >>> rows = client.drain()["BTCUSDT"]  # MD_DTYPE rows since the last drain  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np
from numba import njit

from actors.core.batch import ASK, BID, DELTA, F_LAST, MD_DTYPE, TRADE
from actors.core.errors import ValidationError
from actors.core.instruments import Instrument
from actors.feed import binance_fast as bf
from actors.feed.binance import (
    BinanceSymbolSync,
    _ArrayRows,
    _bool,
    _int,
    _ms_to_ns,
    _req,
    _size,
)

CHUNK_ROWS = 8192  # rows per queued chunk (a chunk is the unit the backpressure drops)
MAX_PENDING = 100_000  # buffered diffs per unsynced symbol before the oldest are dropped
MAX_MESSAGE_BYTES = 16 * 2**20  # largest WebSocket message accepted (a bigger one closes it)
_DEPTH, _TRADE, _TICKER = 0, 1, 2
SnapshotFetcher = Callable[[str], Awaitable[dict[str, Any]]]
_HEAD = '{"stream":"'  # how Binance (and the feed server) open a combined-stream envelope
_HEAD_N = len(_HEAD)
_LIT_STREAM = np.frombuffer(b"stream", dtype=np.uint8).copy()
_LIT_DATA = np.frombuffer(b"data", dtype=np.uint8).copy()
# fast-path verdicts
_DECLINED, _APPLIED_DEPTH, _APPLIED_TRADE = 0, 1, 2


class _LiveSync(BinanceSymbolSync):
    """Binance sync with the live rules the recorded-file loader never needs.

    * A diff with ``u <= last u`` is a duplicate: dropped and counted as stale (the loader's
      chain check would call it a gap).
    * A futures diff whose ``pu`` is the snapshot's ``lastUpdateId`` continues the snapshot
      exactly (a server whose snapshot is "as of the last diff sent").
    * The diff that broke the chain is kept in the buffer: it may follow the next snapshot.
    """

    duplicates = 0
    pending_dropped = 0  # buffered diffs dropped by the MAX_PENDING bound

    def on_depth(self, d: dict[str, Any], ts_init: int) -> None:
        futures = self.market == "usdm"
        if not self.synced:  # a diff that could never apply must not wait in the buffer
            exc = self._invalid(d)
            if exc is not None:
                self.reject(f"depthUpdate U={d.get('U')!r} u={d.get('u')!r}", exc)
                return
        else:
            u = d.get("u")
            if type(u) is int:
                last = self.last_u
                if (u <= last if last is not None else
                        (u < self._first_after if futures else u <= self._first_after)):
                    self.stats.dropped_stale += 1
                    self.duplicates += 1
                    return
                big_u = d.get("U")
                if (self.last_u is None and self.market == "usdm" and type(big_u) is int
                        and d.get("pu") == self._first_after and big_u > self._first_after):
                    self.last_u = self._first_after
        gaps = self.stats.gaps
        super().on_depth(d, ts_init)
        if self.stats.gaps != gaps and self._invalid(d) is None:
            self.pending.append((ts_init, d))
        if len(self.pending) > MAX_PENDING:
            # bounded: the oldest buffered diffs go (a snapshot fetched later supersedes them)
            excess = len(self.pending) - MAX_PENDING
            del self.pending[:excess]
            self.pending_dropped += excess

    def _invalid(self, d: dict[str, Any]) -> ValidationError | None:
        """The first field of a diff that breaks a rule (``None``: every field is valid)."""
        try:
            _int(d, "U"), _int(d, "u"), _ms_to_ns(d, "E")
            if self.market == "usdm":
                _int(d, "pu")
            self._levels(d, ("b", "a"))
        except ValidationError as exc:
            return exc
        return None

    def _levels(self, d: Any, keys: tuple[str, str]) -> list[tuple[int, int, float]]:
        out = super()._levels(d, keys)
        for key in keys:  # JSON true/false are not prices, and a price is > 0
            for lv in d[key]:
                if type(lv[0]) is bool:
                    raise ValidationError("price", "a decimal number", lv[0])
        for _side, px, _sz in out:
            if px <= 0:
                raise ValidationError("price", "> 0", px)
        return out

    def on_trade(self, d: dict[str, Any], ts_init: int) -> None:
        try:  # synced or not; the batch contract: a trade's size and price are > 0
            _ms_to_ns(d, "T")
            _bool(d, "m")
            if _size(_req(d, "q")) <= 0:
                raise ValidationError("q", "> 0", d.get("q"))
            p = _req(d, "p")
            if type(p) is bool or not isinstance(p, str | int | float):
                raise ValidationError("p", "a decimal price", p)
            if self.instrument.price_to_ticks(p) <= 0:
                raise ValidationError("p", "> 0", p)
        except ValidationError as exc:
            self.reject(f"trade {d.get('t')!r}", exc)
            return
        super().on_trade(d, ts_init)

    def lose_sync(self, ts_init: int) -> None:
        """Quarantine: one ``CLEAR`` row flagged ``F_GAP``, nothing until a new snapshot."""
        self._lose_sync(ts_init)


# --- the compiled fast path ------------------------------------------------------------------
@njit(cache=True)
def _envelope(buf: np.ndarray, sb: int, sym: np.ndarray, tick_m: int, tick_e: int,
              lside: np.ndarray, lpx: np.ndarray, lsz: np.ndarray, stack: np.ndarray,
              f: np.ndarray, fsz: np.ndarray) -> tuple[int, int]:
    """``{"stream": "<buf[11:sb]>", "data": {..}}`` (keys in that order or not, any unknown
    key validated and skipped): (``K_DEPTH`` / ``K_TRADE`` / -1, levels parsed)."""
    q = buf.size
    f[:] = 0
    f[bf.F_PU] = -1
    p = bf._ws(buf, 0, q)
    if p >= q or buf[p] != 123:
        return -1, 0
    p = bf._ws(buf, p + 1, q)
    streams = 0
    have_data = False
    nlv = 0
    while True:
        if p >= q or buf[p] != 34:
            return -1, 0
        ke, esc = bf._str_end(buf, p, q)
        if ke < 0 or esc:
            return -1, 0
        ks = p + 1
        p = bf._ws(buf, ke, q)
        if p >= q or buf[p] != 58:
            return -1, 0
        p = bf._ws(buf, p + 1, q)
        if p >= q:
            return -1, 0
        if bf._eq(buf, ks, ke - 1, _LIT_DATA):
            if have_data:
                return -1, 0
            have_data = True
            p, nlv = bf._parse_data(buf, p, q, sym, tick_m, tick_e, lside, lpx, lsz, 0, stack,
                                    f, fsz)
        elif bf._eq(buf, ks, ke - 1, _LIT_STREAM):
            streams += 1  # the one the caller routed by, exactly once, without escapes
            if p != _HEAD_N - 1 or buf[p] != 34:
                return -1, 0
            ve, esc = bf._str_end(buf, p, q)
            if ve != sb + 1 or esc:
                return -1, 0
            p = ve
        else:
            p = bf._skip_value(buf, p, q, stack)
        if p < 0:
            return -1, 0
        p = bf._ws(buf, p, q)
        if p >= q:
            return -1, 0
        if buf[p] == 44:
            p = bf._ws(buf, p + 1, q)
            continue
        if buf[p] == 125:
            p += 1
            break
        return -1, 0
    if not have_data or streams != 1 or bf._ws(buf, p, q) != q:
        return -1, 0
    seen = f[bf.F_SEEN]
    if not (seen & bf._KS) or f[bf.F_SYMOK] == 0 or not (seen & bf._KE):
        return -1, 0
    et = f[bf.F_ETYPE]
    if et == bf.K_DEPTH:
        need = bf._KEE | bf._KUU | bf._KU
        if (seen & need) != need or not (f[bf.F_B + bf.IS_LIST] and f[bf.F_A + bf.IS_LIST]):
            return -1, 0
        if f[bf.F_A + bf.FIRST] < f[bf.F_B + bf.FIRST]:
            bf._rotate_asks_first(lside, lpx, lsz, f[bf.F_A + bf.FIRST], f[bf.F_A + bf.COUNT],
                                  f[bf.F_B + bf.COUNT])
        return bf.K_DEPTH, nlv
    if et == bf.K_TRADE:
        need = bf._KT | bf._KP | bf._KQ | bf._KM
        if (seen & need) != need:
            return -1, 0
        return bf.K_TRADE, 0
    return -1, 0


@njit(cache=True)
def _fast_apply(buf: np.ndarray, sb: int, depth: bool, sym: np.ndarray, tick_m: int,
                tick_e: int, futures: bool, last_u: int, ts_init: int, rows: np.ndarray,
                lo: int, n: int, lside: np.ndarray, lpx: np.ndarray, lsz: np.ndarray,
                stack: np.ndarray, f: np.ndarray, fsz: np.ndarray) -> tuple[int, int, int]:
    """One frame of a synced symbol whose chain continues from ``last_u``, in the common case
    only: a depth diff that continues the chain exactly, or a trade, every field valid.
    Writes its rows at ``rows[n:]`` (room reserved by the caller) and returns (verdict,
    rows end, last u); ``_DECLINED`` (nothing written) sends the frame to the json path."""
    kind, nlv = _envelope(buf, sb, sym, tick_m, tick_e, lside, lpx, lsz, stack, f, fsz)
    if depth:
        if kind != bf.K_DEPTH:
            return _DECLINED, n, last_u
        u = f[bf.F_U]
        e_ms = f[bf.F_E]
        if u <= last_u or not 0 < e_ms <= bf.MAX_MS:
            return _DECLINED, n, last_u
        if futures:
            if not (f[bf.F_SEEN] & bf._KPU) or f[bf.F_PU] != last_u:
                return _DECLINED, n, last_u
        elif f[bf.F_UU] != last_u + 1:
            return _DECLINED, n, last_u
        for x in range(nlv):
            if lpx[x] <= 0:
                return _DECLINED, n, last_u
        te = e_ms * 1_000_000
        for x in range(nlv):
            row = rows[n]
            row.ts_event = te
            row.ts_init = ts_init
            row.seq = u
            row.kind = DELTA
            row.side = lside[x]
            row.price = lpx[x]
            row.size = lsz[x]
            row.flags = 0
            row.order_id = 0
            n += 1
        if n > lo:
            rows[n - 1].flags |= F_LAST
        return _APPLIED_DEPTH, n, u
    if kind != bf.K_TRADE:
        return _DECLINED, n, last_u
    t_ms = f[bf.F_T]
    if not 0 < t_ms <= bf.MAX_MS or f[bf.F_P] <= 0 or not fsz[0] > 0.0:
        return _DECLINED, n, last_u
    row = rows[n]
    row.ts_event = t_ms * 1_000_000
    row.ts_init = ts_init
    row.seq = last_u
    row.kind = TRADE
    row.side = ASK if f[bf.F_M] != 0 else BID
    row.price = f[bf.F_P]
    row.size = fsz[0]
    row.flags = F_LAST
    row.order_id = 0
    return _APPLIED_TRADE, n + 1, last_u


class _FastPath:
    """Scratch of the compiled path for one client, and each symbol's parser constants."""

    def __init__(self, instruments: Mapping[str, Instrument]) -> None:
        self.consts = {sym: (np.frombuffer(sym.encode(), dtype=np.uint8).copy(),
                             *bf.tick_parts(ins.tick_size)) for sym, ins in instruments.items()}
        self.stack = np.empty(64, dtype=np.uint8)
        self.f = np.zeros(bf.N_F, dtype=np.int64)
        self.fsz = np.zeros(1, dtype=np.float64)
        self.grow(4096)

    def grow(self, levels: int) -> None:
        """Room for ``levels`` parsed levels."""
        self.cap = levels
        self.lside = np.empty(levels, dtype=np.uint8)
        self.lpx = np.empty(levels, dtype=np.int64)
        self.lsz = np.empty(levels, dtype=np.float64)


def _sorted_pending(pending: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """Buffered diffs by final update id, first arrival of each id kept (out-of-order and
    duplicate delivery); diffs without an integer ``u`` keep their place at the end."""
    keyed, other, seen = [], [], set()
    for ti, d in pending:
        u = d.get("u") if isinstance(d, dict) else None
        if type(u) is int:
            if u not in seen:
                seen.add(u)
                keyed.append((u, ti, d))
        else:
            other.append((ti, d))
    keyed.sort(key=lambda x: x[0])
    return [(ti, d) for _u, ti, d in keyed] + other


def derive_rest_url(url: str) -> str:
    """``ws://host:port[/...]`` → ``http://host:port`` (``wss`` → ``https``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("ws", "wss"):
        raise ValidationError("url", "ws://HOST:PORT or wss://HOST:PORT", url)
    host = rest.split("/", 1)[0]
    return ("https" if scheme == "wss" else "http") + "://" + host


class BinanceWsClient:
    """The live feed client of one FeedActor (all symbols on one connection).

    Args:
        url: ``ws://HOST:PORT`` of a Binance-compatible server.
        instruments: Symbol → instrument (tick size converts prices to ticks exactly).
        market: ``"usdm"`` (futures rules, ``depth@0ms``) or ``"spot"`` (``depth@100ms``).
        rest_url: Base URL of the REST snapshot (default: derived from ``url``).
        max_batch_delay_ms: Longest a received row waits for more rows before
            :meth:`wait_rows` reports it ready (micro-batching).
        queue_rows: Undrained rows per symbol before they are dropped (and the symbol resynced).
        reconnect_initial_s, reconnect_max_s, reconnect_multiplier: Backoff of reconnects.
        stall_timeout_s: Silence on an open connection that counts as a dead one.
        snapshot_limit: Levels per side asked of the REST snapshot.
        metrics: A :class:`cluster.metrics.Metrics` (``None``: plain counters only).
        fetch_snapshot: Replaces the REST request (tests): ``await f(symbol) -> snapshot``.
        seed: Seed of the backoff jitter.

    Plain counters (for tests): ``messages[symbol]``, ``faults[reason]``,
    ``resyncs[(symbol, reason)]``, ``reconnects[reason]``, ``dropped[symbol]`` (rows),
    ``errors`` (the last 1000 rejection reasons), ``connections``.
    """

    def __init__(
        self,
        url: str,
        instruments: Mapping[str, Instrument],
        *,
        market: str = "usdm",
        rest_url: str | None = None,
        max_batch_delay_ms: float = 1.0,
        queue_rows: int = 1_000_000,
        reconnect_initial_s: float = 0.1,
        reconnect_max_s: float = 5.0,
        reconnect_multiplier: float = 2.0,
        stall_timeout_s: float = 10.0,
        snapshot_limit: int = 1000,
        metrics: Any = None,
        fetch_snapshot: SnapshotFetcher | None = None,
        seed: int | None = None,
    ) -> None:
        if market not in ("usdm", "spot"):
            raise ValidationError("market", "'usdm' or 'spot'", market)
        if queue_rows < 1:
            raise ValidationError("queue_rows", ">= 1", queue_rows)
        self.url = url.rstrip("/")
        self.rest_url = (rest_url or derive_rest_url(url)).rstrip("/")
        self.market = market
        self.instruments = dict(instruments)
        self.max_batch_delay_ns = int(max_batch_delay_ms * 1e6)
        self.queue_rows = int(queue_rows)
        self.backoff = (float(reconnect_initial_s), float(reconnect_max_s),
                        float(reconnect_multiplier))
        self.stall_timeout_s = float(stall_timeout_s)
        self.snapshot_limit = int(snapshot_limit)
        self.metrics = metrics
        self._fetch = fetch_snapshot or self._fetch_rest
        self._rng = random.Random(seed)
        depth = "depth@0ms" if market == "usdm" else "depth@100ms"
        self.syncs: dict[str, _LiveSync] = {}
        self.routes: dict[str, tuple[str, int]] = {}
        for sym, ins in self.instruments.items():
            self.syncs[sym] = _LiveSync(ins, market)
            self.syncs[sym].rows = _ArrayRows(1 << 14)  # the compiled path writes in place
            low = sym.lower()
            self.routes[f"{low}@{depth}"] = (sym, _DEPTH)
            self.routes[f"{low}@trade"] = (sym, _TRADE)
            self.routes[f"{low}@bookTicker"] = (sym, _TICKER)
        self.streams = [s for s, (_sym, k) in self.routes.items() if k != _TICKER]
        self.chunks: dict[str, list[np.ndarray]] = {s: [] for s in self.instruments}
        self.chunk_rows: dict[str, int] = dict.fromkeys(self.instruments, 0)
        self.first_row_ns: dict[str, int] = dict.fromkeys(self.instruments, 0)
        self.messages: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.resyncs: Counter[tuple[str, str]] = Counter()
        self.reconnects: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.errors: deque[str] = deque(maxlen=1000)
        self.connections = 0
        self.connected = False
        self.need_resync: dict[str, str] = {}  # symbol → reason, until a snapshot is applied
        self._reported: dict[str, Counter[Any]] = {}
        self._wake: asyncio.Event | None = None  # a resync is wanted
        self._data: asyncio.Event | None = None  # rows arrived
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._fast = _FastPath(self.instruments)
        self._futures = market == "usdm"
        for sym in self.instruments:  # the initial sync
            self._want_resync(sym, "initial", count=True)

    # --- the message handler (no I/O) ---------------------------------------------------------
    def stream_url(self) -> str:
        """The combined-stream URL of every subscribed stream."""
        return f"{self.url}/stream?streams=" + "/".join(self.streams)

    def on_message(self, raw: str | bytes, ts_init: int) -> None:
        """Handle one WebSocket frame received at ``ts_init`` (ns). Never raises.

        Rejected frames are counted in ``faults[reason]`` with the reason in ``errors``.
        The common frame (a valid diff that continues a synced symbol's chain, or a valid
        trade of a synced symbol) is decoded and turned into rows by compiled code, exactly
        (prices to ticks without rounding, ``float(size)``); any other frame, or one the
        compiled parser cannot take exactly, goes to the ``json`` reference path.
        """
        if type(raw) is str and raw.startswith(_HEAD) and raw.isascii():
            sb = raw.find('"', _HEAD_N)
            route = self.routes.get(raw[_HEAD_N:sb]) if sb > 0 else None
            if route is not None and route[1] != _TICKER:
                sync = self.syncs[route[0]]
                if sync.synced and sync.last_u is not None:
                    try:
                        if self._on_fast(raw, sb, route[0], route[1], sync, ts_init):
                            return
                    except Exception as exc:  # noqa: BLE001 - e.g. a numba cache failure
                        self.errors.append(f"fast path: {type(exc).__name__}: {exc}")
        self._on_message_json(raw, ts_init)

    def _on_fast(self, raw: str, sb: int, sym: str, kind: int, sync: _LiveSync,
                 ts_init: int) -> bool:
        """The compiled path (see :meth:`on_message`); False: nothing done, use json."""
        data = raw.encode("ascii")
        room = len(data) // 9 + 1  # a level takes at least 9 bytes: ["0","0"]
        fp = self._fast
        if room > fp.cap:
            fp.grow(max(room, 2 * fp.cap))
        rows = sync.rows
        rows.reserve(room)  # type: ignore[union-attr]
        name, tick_m, tick_e = fp.consts[sym]
        verdict, n, last_u = _fast_apply(
            np.frombuffer(data, dtype=np.uint8), sb, kind == _DEPTH, name, tick_m, tick_e,
            self._futures, sync.last_u, ts_init, rows.buf, rows.lo, rows.n,  # type: ignore[union-attr]
            fp.lside, fp.lpx, fp.lsz, fp.stack, fp.f, fp.fsz)
        if verdict == _DECLINED:
            return False
        rows.n = n  # type: ignore[union-attr]
        st = sync.stats
        if verdict == _APPLIED_DEPTH:
            sync.last_u = last_u
            st.diffs += 1
            st.applied += 1
        else:
            st.trades += 1
        self.messages[sym] += 1
        self._after_rows(sym, ts_init)
        return True

    def _on_message_json(self, raw: str | bytes, ts_init: int) -> None:
        """The reference path of :meth:`on_message` (every frame, every rule)."""
        try:
            msg = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            self._reject("malformed", "message", "JSON", _clip(raw))
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("data"), dict) \
                or not isinstance(msg.get("stream"), str):
            self._reject("malformed", "message", "an envelope {stream: str, data: object}",
                         _clip(raw))
            return
        stream, data = msg["stream"], msg["data"]
        route = self.routes.get(stream)
        if route is None:
            self._reject("unknown_stream", "stream", f"one of {len(self.routes)} subscribed",
                         stream[:80])
            return
        sym, kind = route
        if data.get("s", sym) != sym:
            self._reject("bad_field", "s", f"{sym!r} (the stream's symbol)", data.get("s"))
            return
        self.messages[sym] += 1
        sync = self.syncs[sym]
        if kind == _TICKER:
            return
        want = "depthUpdate" if kind == _DEPTH else "trade"
        if data.get("e") != want:
            self._reject("bad_field", "e", repr(want), data.get("e"))
            return
        st = sync.stats
        was_synced, gaps, stale, rejected = sync.synced, st.gaps, sync.duplicates, st.rejected
        try:
            if kind == _DEPTH:
                sync.on_depth(data, ts_init)
            else:
                sync.on_trade(data, ts_init)
        except Exception as exc:  # a value no rule foresaw: rejected like a bad field
            sync.reject(f"{want}", f"{type(exc).__name__}: {exc}")
            if kind == _DEPTH and sync.synced:
                sync.lose_sync(ts_init)
        if sync.duplicates != stale:
            self._fault("stale", sync.duplicates - stale)
        if st.rejected != rejected:
            self._fault("bad_field", st.rejected - rejected)
            self.errors.extend(st.errors[-(st.rejected - rejected):])
        if st.gaps != gaps:
            self._fault("gap", st.gaps - gaps)
            self.errors.append(st.errors[-1])
        if len(st.errors) > 1000:
            del st.errors[:-100]
        if was_synced and not sync.synced:
            self._want_resync(sym, "gap" if st.gaps != gaps else "bad_field", count=True)
        self._after_rows(sym, ts_init)

    def request_resync(self, symbol: str, reason: str = "crossed") -> None:
        """Quarantine ``symbol`` and resync it from a new snapshot (e.g. its book crossed)."""
        if symbol not in self.syncs:
            raise ValidationError("symbol", f"one of {sorted(self.syncs)}", symbol)
        if reason == "crossed":
            self._fault("crossed")
        self._quarantine(symbol, reason, time.time_ns())

    def apply_snapshot(self, symbol: str, snap: dict[str, Any], ts_init: int) -> bool:
        """Apply a REST snapshot and the diffs buffered since the quarantine; True when the
        symbol is synced afterwards (a snapshot that is bad or too old asks for another)."""
        sync = self.syncs[symbol]
        st = sync.stats
        rejected, gaps, snaps = st.rejected, st.gaps, st.snapshots
        sync.pending = _sorted_pending(sync.pending)
        try:
            sync.on_snapshot(snap, ts_init)
        except Exception as exc:  # noqa: BLE001 - never crash on a hostile snapshot
            sync.reject("snapshot", f"{type(exc).__name__}: {exc}")
            sync.synced = False
        if st.rejected != rejected:
            self._fault("bad_field", st.rejected - rejected)
        if st.gaps != gaps:
            self._fault("gap", st.gaps - gaps)
        if sync.synced and st.snapshots != snaps:
            self.need_resync.pop(symbol, None)
        elif not sync.synced:
            self.need_resync.setdefault(symbol, "gap")
        self._after_rows(symbol, ts_init)  # may overflow the queue and quarantine again
        return sync.synced and st.snapshots != snaps and symbol not in self.need_resync

    def _snapshots_applied(self) -> int:
        return sum(sync.stats.snapshots for sync in self.syncs.values())

    # --- rows, micro-batches and backpressure -------------------------------------------------
    def _after_rows(self, sym: str, ts_init: int) -> None:
        rows = self.syncs[sym].rows
        n = len(rows)
        if not n and not self.chunk_rows[sym]:
            return
        if not self.first_row_ns[sym]:
            self.first_row_ns[sym] = ts_init
            if self._data is not None:
                self._data.set()
        if n >= CHUNK_ROWS:
            self.chunks[sym].append(rows.take())
            self.chunk_rows[sym] += n
            n = 0
        if n + self.chunk_rows[sym] > self.queue_rows:
            self._overflow(sym, ts_init)

    def _overflow(self, sym: str, ts_init: int) -> None:
        """The consumer fell behind: drop the undrained rows (the oldest; the newer ones would
        apply on a book that missed them), quarantine and resync."""
        sync = self.syncs[sym]
        self.dropped[sym] += self.chunk_rows[sym] + len(sync.rows)
        self.chunks[sym] = []
        self.chunk_rows[sym] = 0
        sync.rows.take()
        self._quarantine(sym, "dropped", ts_init)

    def _quarantine(self, sym: str, reason: str, ts_init: int) -> None:
        sync = self.syncs[sym]
        if sync.synced or reason in ("dropped", "reconnect"):
            sync.lose_sync(ts_init)
        if reason == "reconnect":
            sync.pending.clear()
        self._want_resync(sym, reason, count=True)
        self._after_rows(sym, ts_init)

    def _want_resync(self, sym: str, reason: str, count: bool) -> None:
        if count:
            self.resyncs[(sym, reason)] += 1
        self.need_resync[sym] = reason
        if self._wake is not None:
            self._wake.set()

    def pending_rows(self, symbol: str) -> int:
        """Undrained rows of ``symbol``."""
        return self.chunk_rows[symbol] + len(self.syncs[symbol].rows)

    def drain(self) -> dict[str, np.ndarray]:
        """Return and forget every symbol's rows since the last drain (in arrival order)."""
        out: dict[str, np.ndarray] = {}
        for sym, sync in self.syncs.items():
            chunks = self.chunks[sym]
            if len(sync.rows):
                chunks.append(sync.rows.take())
            if not chunks:
                out[sym] = np.zeros(0, dtype=MD_DTYPE)
            else:
                out[sym] = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
            self.chunks[sym] = []
            self.chunk_rows[sym] = 0
            self.first_row_ns[sym] = 0
        self._report_metrics()
        return out

    async def wait_rows(self, timeout_s: float) -> None:
        """Wait until some symbol has rows that have waited ``max_batch_delay_ms`` (or at
        most ``timeout_s``)."""
        loop_end = time.monotonic() + timeout_s
        if self._data is None:
            self._data = asyncio.Event()
        wake = self._data
        while True:
            firsts = [t for t in self.first_row_ns.values() if t]
            if firsts:
                due = (min(firsts) + self.max_batch_delay_ns - time.time_ns()) / 1e9
                left = loop_end - time.monotonic()
                if due > 0 and left > 0:
                    await asyncio.sleep(min(due, left))
                return
            left = loop_end - time.monotonic()
            if left <= 0:
                return
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), left)

    # --- counters and metrics ----------------------------------------------------------------
    def _reject(self, reason: str, fld: str, rule: str, value: Any) -> None:
        self._fault(reason)
        self.errors.append(f"{reason}: {ValidationError(fld, rule, value)}")

    def _fault(self, reason: str, n: int = 1) -> None:
        self.faults[reason] += n

    def _report_metrics(self) -> None:
        """Send the counters' increments since the last report to ``metrics``."""
        m = self.metrics
        if m is None:
            return
        for name, counter, tags in (
            ("raydesk_feed_messages", self.messages, lambda k: {"symbol": k}),
            ("raydesk_feed_faults", self.faults, lambda k: {"reason": k}),
            ("raydesk_feed_resyncs", self.resyncs, lambda k: {"symbol": k[0], "reason": k[1]}),
            ("raydesk_feed_reconnects", self.reconnects, lambda k: {"reason": k}),
            ("raydesk_feed_dropped", self.dropped, lambda k: {"symbol": k}),
        ):
            seen = self._reported.setdefault(name, Counter())
            for key, value in counter.items():
                if value != seen[key]:
                    m.inc(name, value - seen[key], **tags(key))
                    seen[key] = value

    def stats(self) -> dict[str, Any]:
        """Counters as plain JSON-safe values."""
        return {
            "messages": dict(self.messages),
            "faults": dict(self.faults),
            "resyncs": {f"{s}:{r}": n for (s, r), n in self.resyncs.items()},
            "reconnects": dict(self.reconnects),
            "dropped": dict(self.dropped),
            "pending_dropped": {s: y.pending_dropped for s, y in self.syncs.items()
                                if y.pending_dropped},
            "connections": self.connections,
            "synced": {s: y.synced for s, y in self.syncs.items()},
        }

    # --- I/O ---------------------------------------------------------------------------------
    def _event(self) -> asyncio.Event:
        if self._wake is None:
            self._wake = asyncio.Event()
        return self._wake

    async def _fetch_rest(self, symbol: str) -> dict[str, Any]:
        import aiohttp

        path = "/fapi/v1/depth" if self.market == "usdm" else "/api/v3/depth"
        url = f"{self.rest_url}{path}?symbol={symbol}&limit={self.snapshot_limit}"
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
            if resp.status != 200:
                raise ValidationError("snapshot", "HTTP 200", f"{resp.status} from {url}")
            body = await resp.read()
        snap = json.loads(body)
        if not isinstance(snap, dict):
            raise ValidationError("snapshot", "a JSON object", _clip(body))
        return snap

    async def _resync(self, sym: str) -> None:
        """Fetch snapshots until ``sym`` is synced (while connected)."""
        attempt = 0
        while sym in self.need_resync and self.connected:
            try:
                snap = await self._fetch(sym)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the server may be gone: retry
                self._fault("snapshot")
                self.errors.append(f"snapshot {sym}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(self._delay(attempt))
                attempt += 1
                continue
            if not self.apply_snapshot(sym, snap, time.time_ns()) and sym in self.need_resync:
                await asyncio.sleep(self._delay(attempt))  # too old or bad: ask again
                attempt += 1

    def _start_resyncs(self) -> None:
        for sym in list(self.need_resync):
            task = self._tasks.get(sym)
            if task is None or task.done():
                self._tasks[sym] = asyncio.create_task(self._resync(sym))

    def _delay(self, attempt: int) -> float:
        initial, most, mult = self.backoff
        return self._rng.uniform(0.0, min(most, initial * mult ** min(attempt, 64)))

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Connect, receive and resync until ``stop`` is set (or the task is cancelled)."""
        from websockets.asyncio.client import connect

        stop = stop or asyncio.Event()
        warm_up()  # compile (or load) the fast path now, not on the first live messages
        wake = self._event()
        attempt = 0
        try:
            while not stop.is_set():
                reason = "error"
                try:
                    async with connect(self.stream_url(), max_size=MAX_MESSAGE_BYTES,
                                       close_timeout=0.5, compression=None) as ws:
                        self.connected = True
                        self.connections += 1
                        snaps = self._snapshots_applied()
                        reason = await self._serve(ws, stop, wake)
                        if self._snapshots_applied() > snaps:
                            attempt = 0  # it was healthy (synced); a flapping one keeps backing off
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - refused, reset, bad handshake
                    self.errors.append(f"connection: {type(exc).__name__}: {exc}")
                    reason = "error"
                self._disconnected(lost=not stop.is_set())
                if stop.is_set():
                    break
                self.reconnects[reason] += 1
                delay = self._delay(attempt)
                attempt += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            self._disconnected(lost=False)

    def _disconnected(self, lost: bool) -> None:
        was = self.connected
        self.connected = False
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        if was and lost:  # messages were lost: every book restarts from a snapshot
            now = time.time_ns()
            for sym in self.syncs:
                self._quarantine(sym, "reconnect", now)

    async def _serve(self, ws: Any, stop: asyncio.Event, wake: asyncio.Event) -> str:
        """Receive on ``ws`` until it closes, stalls or ``stop``; return the reason."""
        reader = asyncio.create_task(self._read(ws))
        self._last_rx = time.monotonic()
        check = max(0.005, min(0.25, self.stall_timeout_s / 4))
        try:
            while True:
                self._start_resyncs()
                wake.clear()
                waiter = asyncio.create_task(wake.wait())
                done, _ = await asyncio.wait({reader, waiter}, timeout=check,
                                             return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if reader in done:
                    exc = reader.exception()
                    if exc is not None:
                        self.errors.append(f"connection: {type(exc).__name__}: {exc}")
                    return "closed" if exc is None or _is_closed(exc) else "error"
                if stop.is_set():
                    return "closed"
                if time.monotonic() - self._last_rx > self.stall_timeout_s:
                    ws.transport.abort()
                    return "stall"
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    async def _read(self, ws: Any) -> None:
        handle = self.on_message
        clock = time.time_ns
        mono = time.monotonic
        async for raw in ws:
            self._last_rx = mono()
            handle(raw, clock())


def _is_closed(exc: BaseException) -> bool:
    from websockets.exceptions import ConnectionClosed

    return isinstance(exc, ConnectionClosed)


def _clip(raw: Any) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
    return text[:80]


_WARM = False


def warm_up() -> None:
    """Run the compiled fast path once per process on synthetic frames (a snapshot, a depth
    diff and a trade), so compiling or loading it never delays live messages."""
    global _WARM
    if _WARM:
        return
    from actors.feed.binance import binance_instrument

    sym = "BTCUSDT"
    c = BinanceWsClient("ws://127.0.0.1:1", {sym: binance_instrument("usdm", sym)})
    c.apply_snapshot(sym, {"lastUpdateId": 100, "E": 1, "T": 1, "bids": [["100.0", "1"]],
                           "asks": [["100.1", "1"]]}, 1)
    for big_u, u, pu in ((100, 101, 99), (102, 102, 101)):  # the first straddles the snapshot
        c.on_message(
            '{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":2,"T":2,'
            f'"s":"BTCUSDT","U":{big_u},"u":{u},"pu":{pu},"b":[["100.0","2"]],"a":[]}}}}', 2)
    c.on_message('{"stream":"btcusdt@trade","data":{"e":"trade","E":3,"T":3,"s":"BTCUSDT",'
                 '"t":1,"p":"100.1","q":"0.5","X":"MARKET","m":false}}', 3)
    rows = c.drain()[sym]
    if len(rows) != 5 or c.errors:  # snapshot (2), two diffs, a trade
        raise RuntimeError(f"feed client warm-up must yield 5 rows, was {len(rows)}: "
                           f"{c.errors[-1:]}")
    _WARM = True
