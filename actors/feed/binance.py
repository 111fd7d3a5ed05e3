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
stops emitting rows until a new snapshot (counted in ``gaps``; nothing is applied blindly).

Clocks: ``ts_event`` is the exchange event time ``E`` (trades: ``T``), ``ts_init`` the
recorder's receive time. ``seq`` is the final update id ``u`` of the diff (the snapshot's
``lastUpdateId``); trades carry the last applied ``u``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from actors.core.batch import ASK, BID, DELTA, F_LAST, F_SNAPSHOT, MD_DTYPE, SNAPSHOT, TRADE
from actors.core.errors import ValidationError
from actors.core.instruments import Instrument

# Exchange filters (PRICE_FILTER tickSize, LOT_SIZE stepSize) of the recorded symbols.
KNOWN_INSTRUMENTS: Mapping[tuple[str, str], tuple[str, str]] = {
    ("usdm", "BTCUSDT"): ("0.1", "0.001"),
    ("usdm", "ETHUSDT"): ("0.01", "0.001"),
    ("spot", "BTCUSDT"): ("0.01", "0.00001"),
    ("spot", "ETHUSDT"): ("0.01", "0.0001"),
}


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


class BinanceSymbolSync:
    """Sync state of one symbol: buffers, validates the update-id chain, emits rows."""

    def __init__(self, instrument: Instrument, market: str) -> None:
        self.instrument = instrument
        self.market = market
        self.synced = False
        self.last_u: int | None = None
        self.pending: list[tuple[int, dict[str, Any]]] = []
        self.stats = SyncStats()
        self.rows = _Rows()

    # --- messages ----------------------------------------------------------------------------
    def on_snapshot(self, snap: dict[str, Any], ts_init: int) -> None:
        """Apply a REST snapshot, then the buffered diffs that follow it."""
        ins = self.instrument
        last_id = int(snap["lastUpdateId"])
        te = int(snap.get("E", 0)) * 1_000_000 or ts_init
        rows = self.rows
        n0 = len(rows)
        for side, levels in ((BID, snap["bids"]), (ASK, snap["asks"])):
            for px, qty in levels:
                rows.add(te, ts_init, last_id, SNAPSHOT, side, ins.price_to_ticks(px),
                         float(qty), F_SNAPSHOT)
        if len(rows) == n0:  # an empty book: one clear-like snapshot row is not representable
            raise ValidationError("snapshot", "non-empty", "no levels")
        rows.mark_last()
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
        big_u, u = int(d["U"]), int(d["u"])
        futures = self.market == "usdm"
        if self.last_u is None:  # first diff after the snapshot
            snap_id = self._first_after
            if u < snap_id or (not futures and u <= snap_id):
                st.dropped_stale += 1
                return
            ok = big_u <= snap_id <= u if futures else big_u <= snap_id + 1 <= u
        else:
            ok = int(d["pu"]) == self.last_u if futures else big_u == self.last_u + 1
        if not ok:
            st.gaps += 1
            st.errors.append(
                f"{self.instrument.symbol}: update chain must continue from {self.last_u}, "
                f"was U={big_u} u={u} pu={d.get('pu')}"
            )
            self.synced = False  # wait for a new snapshot; never apply across a gap
            return
        ins = self.instrument
        te = int(d["E"]) * 1_000_000
        rows = self.rows
        for side, key in ((BID, "b"), (ASK, "a")):
            for px, qty in d[key]:
                rows.add(te, ts_init, u, DELTA, side, ins.price_to_ticks(px), float(qty), 0)
        rows.mark_last()
        self.last_u = u
        st.applied += 1

    def on_trade(self, d: dict[str, Any], ts_init: int) -> None:
        """Emit one trade row (``m`` true: the buyer was the maker, so the aggressor sold)."""
        if not self.synced or self.last_u is None:
            return
        ins = self.instrument
        side = ASK if d["m"] else BID
        self.rows.add(int(d["T"]) * 1_000_000, ts_init, self.last_u, TRADE, side,
                      ins.price_to_ticks(d["p"]), float(d["q"]), F_LAST)
        self.stats.trades += 1


def _market_of(data: dict[str, Any]) -> str:
    """USD-M futures messages carry ``pu`` (depth), ``X`` (trade) or ``e``/``T`` (bookTicker)."""
    if "pu" in data or "X" in data or data.get("e") == "bookTicker":
        return "usdm"
    return "spot"


def _open(path: Path) -> Iterable[str]:
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)  # noqa: SIM115


def read_session(
    paths: Iterable[str | Path],
    batch_rows: int = 20_000,
    instruments: Mapping[str, Instrument] | None = None,
    tickers: bool = True,
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
    """
    syncs: dict[str, BinanceSymbolSync] = {}
    for path in paths:
        path = Path(path)
        symbol: str | None = None
        waiting: list[tuple[int, dict[str, Any]]] = []  # a snapshot before we know the symbol
        for lineno, line in enumerate(_open(path), start=1):
            ts_s, _, body = line.partition(" ")
            try:
                ts_init = int(ts_s)
                msg = json.loads(body)
            except (ValueError, json.JSONDecodeError):
                raise ValidationError(f"{path.name}:{lineno}", "'<ns> <json>'", line[:80]) from None
            data = msg.get("data")
            if data is None and "lastUpdateId" in msg:
                if symbol is None:
                    waiting.append((ts_init, msg))
                else:
                    syncs[symbol].on_snapshot(msg, ts_init)
                continue
            if data is None:
                continue
            sym = data.get("s") or msg["stream"].split("@")[0].upper()
            sync = syncs.get(sym)
            if sync is None:
                market = _market_of(data)
                ins = (instruments or {}).get(sym) or binance_instrument(market, sym)
                sync = syncs[sym] = BinanceSymbolSync(ins, market)
            if symbol is None:
                symbol = sym
                for ti, snap in waiting:
                    sync.on_snapshot(snap, ti)
                waiting.clear()
            kind = data.get("e")
            if kind == "depthUpdate":
                sync.on_depth(data, ts_init)
            elif kind == "trade":
                sync.on_trade(data, ts_init)
            elif "A" in data and "B" in data:  # bookTicker (spot has no "e")
                if not tickers:
                    continue
                if len(sync.rows):
                    yield sym, sync.rows.take(), sync
                ins = sync.instrument
                yield sym, BookTicker(sym, int(data["u"]), ts_init,
                                      ins.price_to_ticks(data["b"]), data["B"],
                                      ins.price_to_ticks(data["a"]), data["A"]), sync
                continue
            if len(sync.rows) >= batch_rows:
                yield sym, sync.rows.take(), sync
    for sym, sync in syncs.items():
        if len(sync.rows):
            yield sym, sync.rows.take(), sync
