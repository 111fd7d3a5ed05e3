"""Binance diff-depth recordings → market-data batches, by the exchange's own sync rules.

Input: lines ``<local_receive_ns> <json>`` where the JSON is a combined-stream envelope
(``{"stream": "btcusdt@depth@0ms", "data": {...}}``) or a REST depth snapshot
(``{"lastUpdateId": N, "bids": [...], "asks": [...]}``). Streams: ``depthUpdate``, ``trade``,
``bookTicker``.

Book sync (Binance's documented procedure):

* USD-M futures (diffs carry ``pu``): drop diffs with ``u < lastUpdateId``; the first applied
  diff has ``U <= lastUpdateId <= u``; afterwards each diff's ``pu`` equals the previous ``u``.
* Spot: drop diffs with ``u <= lastUpdateId``; the first applied diff has
  ``U <= lastUpdateId + 1 <= u``; afterwards ``U == previous u + 1``.

Diffs that arrive before the snapshot are buffered; a break in the chain is a gap: the symbol
emits a ``CLEAR`` row flagged ``F_GAP`` (the SymbolActor empties and quarantines the book) and
then nothing until a new snapshot (counted in ``gaps``; nothing is applied blindly).

Clocks: ``ts_event`` is the exchange event time ``E`` (trades: ``T``), ``ts_init`` the
recorder's receive time. ``seq`` is the final update id ``u`` of the diff (the snapshot's
``lastUpdateId``); trades carry the last applied ``u``.

Bad input is counted in ``rejected`` and reported in ``errors`` (field, rule, value), never a
crash: a line that is not ``<ns> <json>``, a message with a missing or mistyped field, a price
that is not a whole number of ticks (never rounded). A diff that cannot be applied breaks the
book like a gap does: nothing more is emitted for the symbol until a new snapshot.

Two decoders produce identical output: the compiled one (:mod:`actors.feed.binance_fast`,
the default) and the ``json`` reference (``fast=False``), which the compiled one hands every
line it does not take itself.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from actors.core.batch import (
    ASK,
    BID,
    CLEAR,
    DELTA,
    F_GAP,
    F_LAST,
    F_SNAPSHOT,
    MD_DTYPE,
    SNAPSHOT,
    TRADE,
)
from actors.core.errors import ValidationError
from actors.core.instruments import Instrument
from actors.feed import binance_fast as bf

# Exchange filters (PRICE_FILTER tickSize, LOT_SIZE stepSize) of the recorded symbols.
KNOWN_INSTRUMENTS: Mapping[tuple[str, str], tuple[str, str]] = {
    ("usdm", "BTCUSDT"): ("0.1", "0.001"),
    ("usdm", "ETHUSDT"): ("0.01", "0.001"),
    ("spot", "BTCUSDT"): ("0.01", "0.00001"),
    ("spot", "ETHUSDT"): ("0.01", "0.0001"),
}

_NO_CUT = 1 << 62  # batch_rows that never cuts (replaying buffered diffs)


def binance_instrument(market: str, symbol: str) -> Instrument:
    """Return the instrument of ``symbol`` on ``market`` (``"usdm"`` or ``"spot"``)."""
    spec = KNOWN_INSTRUMENTS.get((market, symbol))
    if spec is None:
        known = sorted(f"{m}:{s}" for m, s in KNOWN_INSTRUMENTS)
        raise ValidationError("symbol", f"one of {known}", f"{market}:{symbol}")
    return Instrument(symbol, Decimal(spec[0]), Decimal(spec[1]), f"BINANCE-{market.upper()}")


@dataclass(frozen=True, slots=True)
class BookTicker:
    """A ``bookTicker`` message: best bid/ask after update ``u`` (for verification)."""

    symbol: str
    update_id: int
    ts_init: int
    bid_ticks: int
    bid_size: str
    ask_ticks: int
    ask_size: str


@dataclass
class SyncStats:
    """What the sync did, per symbol."""

    diffs: int = 0
    applied: int = 0
    dropped_stale: int = 0
    buffered: int = 0
    gaps: int = 0
    trades: int = 0
    snapshots: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


# --- field access (the reference decoder's rules) ------------------------------------------
def _req(d: Mapping[str, Any], key: str) -> Any:
    if key not in d:
        raise ValidationError(key, "present", "missing")
    return d[key]


MAX_MS = (2**63 - 1) // 1_000_000  # the latest exchange time (ms) an int64 ns can hold


def _ms_to_ns(d: dict[str, Any], key: str) -> int:
    """An exchange time in ms as ns; out of the int64 ns range is a named error."""
    ms = _int(d, key)
    if not 0 < ms <= MAX_MS:
        raise ValidationError(key, f"a time in ms in 1..{MAX_MS}", ms)
    return ms * 1_000_000


INT64_MAX = 2**63 - 1


def _int(d: Mapping[str, Any], key: str) -> int:
    v = _req(d, key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValidationError(key, "an integer", v)
    if not -1 <= v <= INT64_MAX:  # ids and times land in int64 columns (spot pu: -1)
        raise ValidationError(key, f"an integer in -1..{INT64_MAX}", v)
    return v


def _bool(d: Mapping[str, Any], key: str) -> bool:
    v = _req(d, key)
    if not isinstance(v, bool):
        raise ValidationError(key, "a boolean", v)
    return v


def _text(d: Mapping[str, Any], key: str) -> str:
    v = _req(d, key)
    if not isinstance(v, str):
        raise ValidationError(key, "a decimal string", v)
    return v


def _size(q: Any) -> float:
    if isinstance(q, bool) or not isinstance(q, str | int | float):
        raise ValidationError("size", "a decimal number", q)
    try:
        v = float(q)
    except ValueError:
        raise ValidationError("size", "a decimal number", q) from None
    if not (math.isfinite(v) and v >= 0):
        raise ValidationError("size", "finite and >= 0", q)
    return v


class _Rows:
    """Growable columns of MD_DTYPE rows (no per-row numpy calls)."""

    def __init__(self) -> None:
        self.cols: list[list[int | float]] = [[] for _ in range(8)]

    def add(self, te: int, ti: int, seq: int, kind: int, side: int, px: int, sz: float,
            flags: int) -> None:
        c = self.cols
        c[0].append(te)
        c[1].append(ti)
        c[2].append(seq)
        c[3].append(kind)
        c[4].append(side)
        c[5].append(px)
        c[6].append(sz)
        c[7].append(flags)

    def add_levels(self, te: int, ti: int, seq: int, kind: int,
                   levels: list[tuple[int, int, float]], flags: int) -> None:
        for side, px, sz in levels:
            self.add(te, ti, seq, kind, side, px, sz, flags)

    def mark_last(self) -> None:
        if self.cols[7]:
            self.cols[7][-1] |= F_LAST

    def __len__(self) -> int:
        return len(self.cols[0])

    def take(self) -> np.ndarray:
        out = np.zeros(len(self), dtype=MD_DTYPE)
        for name, col in zip(MD_DTYPE.names[:8], self.cols, strict=True):
            out[name] = col
        self.cols = [[] for _ in range(8)]
        return out


class _ArrayRows:
    """MD_DTYPE rows in one preallocated array that the compiled kernel writes into.

    Rows ``lo .. n`` are not yet taken; a take copies them out and resets to empty.
    """

    def __init__(self, capacity: int = 1 << 17) -> None:
        self.buf = np.zeros(capacity, dtype=MD_DTYPE)
        self.lo = 0
        self.n = 0

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more rows (compacts, then grows)."""
        if self.n + extra <= len(self.buf):
            return
        if self.lo:
            live = self.n - self.lo
            self.buf[:live] = self.buf[self.lo:self.n]
            self.lo, self.n = 0, live
        if self.n + extra > len(self.buf):
            new = np.zeros(max(2 * len(self.buf), self.n + extra), dtype=MD_DTYPE)
            new[:self.n] = self.buf[:self.n]
            self.buf = new

    def add(self, te: int, ti: int, seq: int, kind: int, side: int, px: int, sz: float,
            flags: int) -> None:
        self.reserve(1)
        self.buf[self.n] = (te, ti, seq, kind, side, px, sz, flags, 0)
        self.n += 1

    def add_levels(self, te: int, ti: int, seq: int, kind: int,
                   levels: list[tuple[int, int, float]], flags: int) -> None:
        m = len(levels)
        if not m:
            return
        self.reserve(m)
        out = self.buf[self.n:self.n + m]
        sides, prices, sizes = zip(*levels, strict=True)
        out["ts_event"], out["ts_init"], out["seq"], out["kind"] = te, ti, seq, kind
        out["side"], out["price"], out["size"] = sides, prices, sizes
        out["flags"], out["order_id"] = flags, 0
        self.n += m

    def mark_last(self) -> None:
        if self.n > self.lo:
            self.buf["flags"][self.n - 1] |= F_LAST

    def __len__(self) -> int:
        return self.n - self.lo

    def take(self) -> np.ndarray:
        return self.take_until(self.n)

    def take_until(self, end: int) -> np.ndarray:
        out = self.buf[self.lo:end].copy()
        self.lo = end
        if self.lo == self.n:
            self.lo = self.n = 0
        return out


class BinanceSymbolSync:
    """Sync state of one symbol: buffers, validates the update-id chain, emits rows."""

    def __init__(self, instrument: Instrument, market: str) -> None:
        self.instrument = instrument
        self.market = market
        self.synced = False
        self.last_u: int | None = None
        self._first_after = 0  # the snapshot's lastUpdateId, until the first applied diff
        self.pending: list[tuple[int, Any]] = []
        self.stats = SyncStats()
        self.rows: _Rows | _ArrayRows = _Rows()

    def reject(self, what: str, exc: ValidationError | str) -> None:
        """Count a message that cannot be used and keep its reason."""
        self.stats.rejected += 1
        self.stats.errors.append(f"{self.instrument.symbol} {what}: {exc}")

    def _levels(self, d: Mapping[str, Any], keys: tuple[str, str]) -> list[tuple[int, int, float]]:
        """``(side, ticks, size)`` of every level, bids first; raises on the first bad one."""
        ins = self.instrument
        out: list[tuple[int, int, float]] = []
        for side, key in ((BID, keys[0]), (ASK, keys[1])):
            levels = _req(d, key)
            if not isinstance(levels, list):
                raise ValidationError(key, "a list of [price, qty] pairs", levels)
            for lv in levels:
                if not isinstance(lv, list) or len(lv) != 2:
                    raise ValidationError(key, "a list of [price, qty] pairs", lv)
                out.append((side, ins.price_to_ticks(lv[0]), _size(lv[1])))
        return out

    # --- messages ----------------------------------------------------------------------------
    def on_snapshot(self, snap: dict[str, Any], ts_init: int) -> None:
        """Apply a REST snapshot, then the buffered diffs that follow it."""
        try:
            last_id = _int(snap, "lastUpdateId")
            te = _ms_to_ns(snap, "E") if "E" in snap else ts_init
            levels = self._levels(snap, ("bids", "asks"))
            if not levels:  # an empty book: one clear-like snapshot row is not representable
                raise ValidationError("snapshot", "non-empty", "no levels")
        except ValidationError as exc:
            self.reject(f"snapshot {snap.get('lastUpdateId')}", exc)
            return
        if self.synced and self.last_u is not None and last_id <= self.last_u:
            # older than the book already built from the live chain: it would move the book
            # back in time; the chain is intact, so the snapshot is not needed
            self.stats.dropped_stale += 1
            return
        self.rows.add_levels(te, ts_init, last_id, SNAPSHOT, levels, F_SNAPSHOT)
        self.rows.mark_last()
        self.stats.snapshots += 1
        self.synced = True
        self.last_u = None
        self._first_after = last_id
        buffered, self.pending = self.pending, []
        for ti, d in buffered:
            self.on_depth(d, ti)

    def on_depth(self, d: dict[str, Any], ts_init: int) -> None:
        """Apply one ``depthUpdate`` (or buffer it until the snapshot)."""
        st = self.stats
        if not self.synced:
            self.pending.append((ts_init, d))
            st.buffered += 1
            return
        st.diffs += 1
        futures = self.market == "usdm"
        try:
            big_u, u = _int(d, "U"), _int(d, "u")
            if self.last_u is None:  # first diff after the snapshot
                snap_id = self._first_after
                if u < snap_id or (not futures and u <= snap_id):
                    st.dropped_stale += 1
                    return
                ok = big_u <= snap_id <= u if futures else big_u <= snap_id + 1 <= u
            else:
                ok = _int(d, "pu") == self.last_u if futures else big_u == self.last_u + 1
            if ok:
                te = _ms_to_ns(d, "E")
                levels = self._levels(d, ("b", "a"))
        except ValidationError as exc:
            self.reject(f"depthUpdate U={d.get('U')!r} u={d.get('u')!r}", exc)
            self._lose_sync(ts_init)  # a diff we cannot apply breaks the book
            return
        if not ok:
            st.gaps += 1
            st.errors.append(
                f"{self.instrument.symbol}: update chain must continue from {self.last_u}, "
                f"was U={big_u} u={u} pu={d.get('pu')}"
            )
            self._lose_sync(ts_init)  # never apply across a gap
            return
        self.rows.add_levels(te, ts_init, u, DELTA, levels, 0)
        self.rows.mark_last()
        self.last_u = u
        st.applied += 1

    def _lose_sync(self, ts_init: int) -> None:
        """The book can no longer follow the exchange: tell the book (a ``CLEAR`` row flagged
        ``F_GAP``, which empties and quarantines it) and wait for a new snapshot."""
        self.synced = False
        seq = self.last_u if self.last_u is not None else self._first_after
        self.rows.add(ts_init, ts_init, seq, CLEAR, BID, 0, 0.0, F_LAST | F_GAP)

    def on_trade(self, d: dict[str, Any], ts_init: int) -> None:
        """Emit one trade row (``m`` true: the buyer was the maker, so the aggressor sold)."""
        if not self.synced or self.last_u is None:
            return
        ins = self.instrument
        try:
            te = _ms_to_ns(d, "T")
            side = ASK if _bool(d, "m") else BID
            px, sz = ins.price_to_ticks(_req(d, "p")), _size(_req(d, "q"))
        except ValidationError as exc:
            self.reject(f"trade {d.get('t')!r}", exc)
            return
        self.rows.add(te, ts_init, self.last_u, TRADE, side, px, sz, F_LAST)
        self.stats.trades += 1

    def ticker(self, symbol: str, d: dict[str, Any], ts_init: int) -> BookTicker:
        """Decode one ``bookTicker`` (raises :class:`ValidationError` on a bad field)."""
        ins = self.instrument
        return BookTicker(symbol, _int(d, "u"), ts_init, ins.price_to_ticks(_req(d, "b")),
                          _text(d, "B"), ins.price_to_ticks(_req(d, "a")), _text(d, "A"))


def _market_of(data: dict[str, Any]) -> str:
    """USD-M futures messages carry ``pu`` (depth), ``X`` (trade) or ``e``/``T`` (bookTicker)."""
    if "pu" in data or "X" in data or data.get("e") == "bookTicker":
        return "usdm"
    return "spot"


def _open(path: Path) -> Iterable[str]:
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)  # noqa: SIM115


Item = tuple[str, np.ndarray | BookTicker, BinanceSymbolSync]


@dataclass
class _Session:
    """What one ``read_session`` call shares across its files."""

    batch_rows: int
    instruments: Mapping[str, Instrument]
    tickers: bool
    fast: bool
    syncs: dict[str, BinanceSymbolSync] = field(default_factory=dict)

    def sync_for(self, sym: str, data: dict[str, Any]) -> BinanceSymbolSync:
        sync = self.syncs.get(sym)
        if sync is None:
            market = _market_of(data)
            ins = self.instruments.get(sym) or binance_instrument(market, sym)
            sync = self.syncs[sym] = (_FastSync if self.fast else BinanceSymbolSync)(ins, market)
        return sync


@dataclass
class _FileState:
    """One file's reading state: its symbol (known at its first stream message)."""

    name: str
    symbol: str | None = None
    waiting: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # early snapshots
    bad: list[str] = field(default_factory=list)  # malformed lines before the symbol is known


def _bad_line(sess: _Session, fs: _FileState, lineno: int, line: str, rule: str) -> None:
    err = str(ValidationError(f"{fs.name}:{lineno}", rule, line.rstrip("\n")[:80]))
    if fs.symbol is None:
        fs.bad.append(err)
        return
    st = sess.syncs[fs.symbol].stats
    st.rejected += 1
    st.errors.append(err)


def _line_items(sess: _Session, fs: _FileState, lineno: int, line: str) -> Iterator[Item]:
    """The reference decoder of one line: apply it, yield what the reference yields after it."""
    ts_s, _, body = line.partition(" ")
    try:
        ts_init = int(ts_s)
        msg = json.loads(body)
    except ValueError:
        msg = None
    if not isinstance(msg, dict):
        _bad_line(sess, fs, lineno, line, "'<ns> <json object>'")
        return
    data = msg.get("data")
    if data is None and "lastUpdateId" in msg:
        if fs.symbol is None:
            fs.waiting.append((ts_init, msg))
        else:
            sess.syncs[fs.symbol].on_snapshot(msg, ts_init)
        return
    if data is None:
        return
    sym = data.get("s") if isinstance(data, dict) else None
    if not sym:
        stream = msg.get("stream")
        sym = stream.split("@")[0].upper() if isinstance(stream, str) else None
    if not isinstance(data, dict) or not isinstance(sym, str) or not sym:
        _bad_line(sess, fs, lineno, line, "a stream message with a data object and a symbol")
        return
    sync = sess.sync_for(sym, data)
    if fs.symbol is None:
        fs.symbol = sym
        for err in fs.bad:
            sync.stats.rejected += 1
            sync.stats.errors.append(err)
        fs.bad.clear()
        for ti, snap in fs.waiting:
            sync.on_snapshot(snap, ti)
        fs.waiting.clear()
    kind = data.get("e")
    if kind == "depthUpdate":
        sync.on_depth(data, ts_init)
    elif kind == "trade":
        sync.on_trade(data, ts_init)
    elif "A" in data and "B" in data:  # bookTicker (spot has no "e")
        if not sess.tickers:
            return
        try:
            ticker = sync.ticker(sym, data, ts_init)
        except ValidationError as exc:
            sync.reject(f"bookTicker {data.get('u')!r}", exc)
            return
        if len(sync.rows):
            yield sym, sync.rows.take(), sync
        yield sym, ticker, sync
        return
    if len(sync.rows) >= sess.batch_rows:
        yield sym, sync.rows.take(), sync


def _end_file(fs: _FileState) -> None:
    if fs.bad:  # no stream message at all to attribute them to
        raise ValidationError(fs.name, "a recording with at least one stream message",
                              f"{len(fs.bad)} malformed lines, first: {fs.bad[0]}")


def _read_file_json(sess: _Session, path: Path) -> Iterator[Item]:
    fs = _FileState(path.name)
    with _open(path) as lines:
        for lineno, line in enumerate(lines, start=1):
            yield from _line_items(sess, fs, lineno, line)
    _end_file(fs)


# --- the compiled path ---------------------------------------------------------------------
class _FastRef:
    """A buffered diff of the compiled path: line ``line`` of a parsed file."""

    __slots__ = ("file", "line")

    def __init__(self, file: _FastFile, line: int) -> None:
        self.file = file
        self.line = line


class _FastSync(BinanceSymbolSync):
    """The sync of the compiled path: rows in an array the kernel writes, diffs by line."""

    def __init__(self, instrument: Instrument, market: str) -> None:
        super().__init__(instrument, market)
        self.rows = _ArrayRows()

    def on_depth(self, d: Any, ts_init: int) -> None:
        if isinstance(d, _FastRef):
            d.file.replay(self, d.line)
        else:
            super().on_depth(d, ts_init)


class _FastFile:
    """One decompressed file, scanned and parsed by the compiled parser for one symbol."""

    def __init__(self, data: bytes, buf: np.ndarray, scan: tuple, first: int, symbol: str,
                 sync: BinanceSymbolSync, tickers: bool) -> None:
        self.data = data
        self.starts, self.ends, body, self.kinds, self.ts, _clean = scan
        tick_m, tick_e = bf.tick_parts(sync.instrument.tick_size)
        sym = np.frombuffer(symbol.encode(), dtype=np.uint8).copy()
        (self.refs, self.dm, self.lside, self.lpx, self.lsz, self.tr, self.tsz,
         self.tk) = bf.parse_lines(buf, self.ends, body, self.kinds, first, tick_m, tick_e, sym,
                                   # tickers are most lines: parse them only when wanted
                                   bf.WANT_ALL if tickers else bf.WANT_DEPTH | bf.WANT_TRADE)
        self._tk: list[list[int]] | None = None

    def text(self, i: int) -> str:
        """Line ``i`` as the text-mode reader returns it (with its newline)."""
        return self.data[self.starts[i]:self.ends[i] + 1].decode()

    def ticker(self, i: int, sym: str) -> BookTicker:
        if self._tk is None:  # Python ints once per file, not numpy scalars per ticker
            self._tk = self.tk.tolist()
        _line, u, bid, ask, b0, b1, a0, a1 = self._tk[self.refs[i]]
        d = self.data
        return BookTicker(sym, u, int(self.ts[i]), bid, d[b0:b1].decode(), ask,
                          d[a0:a1].decode())

    def run(self, sync: BinanceSymbolSync, order: np.ndarray, j0: int, batch_rows: int,
            tickers: bool) -> tuple[int, int, list[list[int]], list[int], int]:
        """Run the sync kernel over ``order[j0:]``; write the sync state back (not the
        counters: the caller sets them per event, then the final ones)."""
        rows = sync.rows
        assert isinstance(rows, _ArrayRows)
        last = sync.last_u
        st = np.array([sync.synced, last is not None, last or 0, sync._first_after,
                       sync.market == "usdm", rows.lo, rows.n, 0], dtype=np.int64)
        s = sync.stats
        cnt = np.array([s.diffs, s.applied, s.dropped_stale, s.buffered, s.trades],
                       dtype=np.int64)
        m = len(order) - j0
        ev = np.empty((2 * m + 2, bf.N_EV), dtype=np.int64)
        pend = np.empty(m, dtype=np.int64)
        reason, j, ne, npd = bf.sync_run(order, j0, self.kinds, self.refs, self.ts, self.dm,
                                         self.lside, self.lpx, self.lsz, self.tr, self.tsz,
                                         rows.buf, st, cnt, batch_rows, tickers, ev, pend)
        sync.synced = bool(st[bf.S_SYNCED])
        sync.last_u = int(st[bf.S_LAST_U]) if st[bf.S_HAS_LAST] else None
        rows.n = int(st[bf.S_N])
        for line in pend[:npd].tolist():
            sync.pending.append((int(self.ts[line]), _FastRef(self, line)))
        return int(reason), int(j), ev[:ne].tolist(), cnt.tolist(), int(st[bf.S_NEED])

    def replay(self, sync: BinanceSymbolSync, line: int) -> None:
        """Apply one buffered diff (``on_snapshot`` replaying the buffer)."""
        order = np.array([line], dtype=np.int64)
        while True:
            reason, _j, _ev, counts, need = self.run(sync, order, 0, _NO_CUT, False)
            _set_counts(sync.stats, counts)
            if reason == bf.R_FULL:
                sync.rows.reserve(need)  # type: ignore[union-attr]
                continue
            if reason == bf.R_PY:
                msg = json.loads(self.text(line).partition(" ")[2])
                BinanceSymbolSync.on_depth(sync, msg["data"], int(self.ts[line]))
            return


def _set_counts(s: SyncStats, c: list[int]) -> None:
    s.diffs, s.applied, s.dropped_stale, s.buffered, s.trades = c


def _read_file_fast(sess: _Session, path: Path) -> Iterator[Item]:
    raw = path.read_bytes()
    data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    buf = np.frombuffer(data, dtype=np.uint8)
    scan = bf.scan_lines(buf)
    if not scan[5]:  # a \r or non-ASCII byte: text-mode reading may split/decode differently
        yield from _read_file_json(sess, path)
        return
    starts, ends = scan[0], scan[1]
    n = len(starts)
    fs = _FileState(path.name)
    i = 0
    while i < n and fs.symbol is None:  # the reference reads up to the first stream message
        yield from _line_items(sess, fs, i + 1, data[starts[i]:ends[i] + 1].decode())
        i += 1
    if fs.symbol is not None:
        sym = fs.symbol
        sync = sess.syncs[sym]
        rows = sync.rows
        assert isinstance(rows, _ArrayRows)
        ff = _FastFile(data, buf, scan, i, sym, sync, sess.tickers)
        order = np.arange(n, dtype=np.int64)
        stats = sync.stats
        j = i
        while j < n:
            reason, j, events, counts, need = ff.run(sync, order, j, sess.batch_rows,
                                                     sess.tickers)
            for typ, value, *c in events:
                _set_counts(stats, c)
                if typ == bf.EV_CUT:
                    yield sym, rows.take_until(value), sync
                else:
                    yield sym, ff.ticker(value, sym), sync
            _set_counts(stats, counts)
            if reason == bf.R_FULL:
                rows.reserve(need)
            elif reason == bf.R_PY:
                yield from _line_items(sess, fs, j + 1, ff.text(j))
                j += 1
    _end_file(fs)


def read_session(
    paths: Iterable[str | Path],
    batch_rows: int = 20_000,
    instruments: Mapping[str, Instrument] | None = None,
    tickers: bool = True,
    fast: bool = True,
) -> Iterator[tuple[str, np.ndarray | BookTicker, BinanceSymbolSync]]:
    """Yield ``(symbol, rows | BookTicker, sync)`` in file order across a multi-file session.

    Rows come in batches of about ``batch_rows`` that always end at a message boundary; a
    ``BookTicker`` is yielded right after the rows that precede it (flush), so a consumer that
    applies every batch sees the book exactly as of that ticker's arrival.

    Args:
        paths: Recording files, in session order (one symbol per file; files of several
            symbols may be mixed).
        batch_rows: Rows per yielded batch (at most, give or take one message).
        instruments: Override the instrument per symbol (default: :data:`KNOWN_INSTRUMENTS`).
        tickers: Yield ``bookTicker`` messages (and cut batches before each); without them,
            batches are only cut by size, which is much faster.
        fast: Decode with the compiled parser (:mod:`actors.feed.binance_fast`); ``False``
            decodes every line with ``json`` (the reference). Both yield the same items in
            the same order, with the same ``sync.stats`` at every item.

    Example:
        >>> for sym, item, sync in read_session(["btcusdt_20240808.gz"]):  # doctest: +SKIP
        ...     book.apply(item) if isinstance(item, np.ndarray) else check(item)
    """
    sess = _Session(batch_rows, instruments or {}, tickers, fast)
    for path in paths:
        path = Path(path)
        if fast:
            yield from _read_file_fast(sess, path)
        else:
            yield from _read_file_json(sess, path)
    for sym, sync in sess.syncs.items():
        if len(sync.rows):
            yield sym, sync.rows.take(), sync
