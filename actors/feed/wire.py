"""Sources of Binance wire messages for the feed server, and the book behind its REST snapshot.

A source turns market data into *wire events*: tuples ``(t_ns, sym, chan, text, diff)`` where
``t_ns`` is the pacing clock (recorded receive time, or simulated time), ``sym`` the lower-case
symbol, ``chan`` one of :data:`DEPTH`, :data:`TRADE`, :data:`TICKER`, ``text`` the Binance
``data`` object as JSON text (sent verbatim) and ``diff`` the parsed ``depthUpdate`` (``None``
for other channels).

:class:`SymbolBook` is the exchange-side book of one symbol: the REST snapshot plus every diff
*sent so far*, applied lazily (when a snapshot is asked for, and for the never-ending
simulator every :data:`COMPACT_EVERY` diffs, so memory stays bounded).
Its ``lastUpdateId`` obeys Binance's sync rules for a client that subscribed before asking:

* spot: ``lastUpdateId`` = ``u`` of the last sent diff; the next diff has ``U == u + 1``.
* USD-M futures: ``lastUpdateId`` = ``U`` of the next diff to be sent (the book is the one
  after the last sent diff; the next diff sets absolute sizes, so a client applying it from
  this snapshot gets the exchange's book): the next diff then has ``U <= lastUpdateId <= u``
  whether or not the client also holds the last sent diff. At the end of a replay, the last
  sent ``u``.

Example:
    >>> src = BinanceReplaySource(["usdm/btcusdt_20240808.gz"])  # doctest: +SKIP
    >>> src.books["btcusdt"].rest(5)["lastUpdateId"]  # doctest: +SKIP
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from actors.book.book import L2Book
from actors.core.batch import ASK, BID, F_LAST, SNAPSHOT, TRADE
from actors.core.errors import ValidationError
from actors.core.instruments import Instrument
from actors.feed.binance import _market_of, _open

DEPTH, TRADE_CH, TICKER = 0, 1, 2
WireEvent = tuple[int, str, int, str, Any]

COMPACT_EVERY = 2_000  # simulator diffs held before the sent ones are applied and dropped


class SymbolBook:
    """The exchange's book of one symbol, as of the diffs sent so far (see module docstring).

    Args:
        symbol: Upper-case symbol.
        market: ``"usdm"`` or ``"spot"``.
        snapshot: A REST depth snapshot (``lastUpdateId``, ``bids``, ``asks``, opt. ``E``/``T``).
    """

    def __init__(self, symbol: str, market: str, snapshot: dict[str, Any]) -> None:
        self.symbol = symbol
        self.market = market
        self.lid = int(snapshot["lastUpdateId"])
        self.E = int(snapshot.get("E", 0))
        self.T = int(snapshot.get("T", 0))
        self.levels: tuple[dict[float, tuple[str, str]], dict[float, tuple[str, str]]] = ({}, {})
        for side, key in ((0, "bids"), (1, "asks")):
            self._set(side, snapshot[key])
        self.diffs: list[dict[str, Any]] = []  # every diff of the source, in send order
        self.sent = 0  # diffs[:sent] have been sent
        self.applied = 0  # diffs[:applied] are in ``levels`` (or were stale)
        self.last_u: int | None = None  # u of the last applied diff
        self.contiguous_ids = False  # ids are consecutive (the simulator): next U = u + 1

    def _set(self, side: int, levels: Iterable[Sequence[str]]) -> None:
        book = self.levels[side]
        for p, q in levels:
            if float(q) == 0.0:
                book.pop(float(p), None)
            else:
                book[float(p)] = (p, q)

    def _catch_up(self) -> None:
        futures = self.market == "usdm"
        for d in self.diffs[self.applied:self.sent]:
            u = d["u"]
            if self.last_u is None and (u < self.lid or (not futures and u <= self.lid)):
                continue  # older than the snapshot (Binance's rule 1)
            self._set(0, d["b"])
            self._set(1, d["a"])
            self.last_u = u
            self.E = d.get("E", self.E)
            self.T = d.get("T", self.T)
        self.applied = self.sent

    def compact(self, keep_unapplied: int = 10_000) -> None:
        """Bound memory on an endless source: apply the sent diffs once more than
        ``keep_unapplied`` wait, and forget the applied ones."""
        if self.sent - self.applied > keep_unapplied:
            self._catch_up()
        if self.applied:
            del self.diffs[: self.applied]
            self.sent -= self.applied
            self.applied = 0

    def last_update_id(self) -> int:
        """The ``lastUpdateId`` a snapshot taken now carries (see module docstring)."""
        self._catch_up()
        if self.last_u is None:
            return self.lid
        if self.market != "usdm":
            return self.last_u
        if self.sent < len(self.diffs):
            return int(self.diffs[self.sent]["U"])
        return self.last_u + 1 if self.contiguous_ids else self.last_u

    def rest(self, limit: int) -> dict[str, Any]:
        """The REST depth snapshot of the book now: the best ``limit`` levels per side."""
        lid = self.last_update_id()
        bids = [self.levels[0][k] for k in sorted(self.levels[0], reverse=True)[:limit]]
        asks = [self.levels[1][k] for k in sorted(self.levels[1])[:limit]]
        out: dict[str, Any] = {"lastUpdateId": lid}
        if self.market == "usdm":
            out["E"], out["T"] = self.E, self.T
        out["bids"] = [list(x) for x in bids]
        out["asks"] = [list(x) for x in asks]
        return out


# --- recorded Binance sessions -------------------------------------------------------------
def _market_of_path(path: Path) -> str | None:
    parts = {p.lower() for p in path.parts}
    if parts & {"usdm", "futures", "fapi"}:
        return "usdm"
    if "spot" in parts:
        return "spot"
    return None


def _file_events(path: Path) -> Iterator[tuple[int, str | None, dict[str, Any] | None, str]]:
    """``(ts, stream, data, data_text)`` per line; a snapshot line has stream ``None``."""
    with _open(path) as f:  # type: ignore[attr-defined]
        for lineno, line in enumerate(f, start=1):
            ts_s, _, body = line.rstrip("\n").partition(" ")
            try:
                ts = int(ts_s)
                msg = json.loads(body)
            except ValueError:
                raise ValidationError(f"{path.name}:{lineno}", "'<ns> <json>'", line[:80]) from None
            if "lastUpdateId" in msg:
                yield ts, None, msg, body
                continue
            stream, data = msg.get("stream"), msg.get("data")
            if not isinstance(stream, str) or not isinstance(data, dict):
                raise ValidationError(f"{path.name}:{lineno}", "a combined-stream message",
                                      body[:80])
            i = body.find('"data":')
            text = body[i + 7:-1] if i >= 0 and body.endswith("}") else ""
            if not (text.startswith("{") and text.endswith("}")):
                text = json.dumps(data, separators=(",", ":"))
            yield ts, stream, data, text


class BinanceReplaySource:
    """Recorded Binance sessions (``<local_ns> <json>`` lines) as wire events.

    Files of one symbol form a session, in the order given; several symbols are merged by
    recorded receive time. The market is taken from the path (``usdm``/``spot`` folder) or,
    failing that, from the content (futures diffs carry ``pu``).

    Args:
        paths: Recording files.

    Raises:
        ValidationError: A file with a bad line, or a symbol without a REST snapshot line.
    """

    def __init__(self, paths: Iterable[str | Path]) -> None:
        per_sym: dict[str, list[WireEvent]] = {}
        snaps: dict[str, dict[str, Any]] = {}
        markets: dict[str, str] = {}
        for path in map(Path, paths):
            sym_of_file: str | None = None
            early: list[dict[str, Any]] = []
            for ts, stream, data, text in _file_events(path):
                if stream is None:
                    if sym_of_file is None:
                        early.append(data)  # type: ignore[arg-type]
                    else:
                        snaps.setdefault(sym_of_file, data)  # type: ignore[arg-type]
                    continue
                assert data is not None
                sym = stream.split("@")[0].lower()
                if sym_of_file is None:
                    sym_of_file = sym
                    for snap in early:
                        snaps.setdefault(sym, snap)
                    market = _market_of_path(path) or _market_of(data)
                    markets.setdefault(sym, market)
                ev = data.get("e")
                if ev == "depthUpdate":
                    per_sym.setdefault(sym, []).append((ts, sym, DEPTH, text, data))
                elif ev == "trade":
                    per_sym.setdefault(sym, []).append((ts, sym, TRADE_CH, text, None))
                elif "A" in data and "B" in data:
                    per_sym.setdefault(sym, []).append((ts, sym, TICKER, text, None))
        self.books: dict[str, SymbolBook] = {}
        for sym, evs in per_sym.items():
            if sym not in snaps:
                raise ValidationError(f"session {sym}", "one with a REST snapshot line", "none")
            book = SymbolBook(sym.upper(), markets[sym], snaps[sym])
            book.diffs = [e[4] for e in evs if e[2] == DEPTH]
            self.books[sym] = book
        self.events: list[WireEvent] = list(
            heapq.merge(*per_sym.values(), key=lambda e: e[0])
        )

    def __iter__(self) -> Iterator[WireEvent]:
        return iter(self.events)


# --- the simulator -------------------------------------------------------------------------
def _fmt(d: Decimal, places: int) -> str:
    return f"{d:.{places}f}"


class SimWireEncoder:
    """Encode simulator rows of one symbol as futures-style Binance messages.

    One update id per market-data message (``U == u == seq``; ``pu`` the previous message's
    ``u``), a ``trade`` per trade row (``m`` true when the aggressor sold), a ``depthUpdate``
    per message with deltas and a ``bookTicker`` after it when :attr:`want_ticker` says a
    client subscribed to it. Prices and sizes are written with the instrument's decimals
    (``"61800.10"``, ``"0.250"``), like Binance; the JSON is what ``json.dumps`` writes with
    compact separators (built directly: this runs for every message the server sends).
    """

    def __init__(self, instrument: Instrument) -> None:
        self.ins = instrument
        self.sym = instrument.symbol.lower()
        self.pdp = max(0, -instrument.tick_size.as_tuple().exponent)  # type: ignore[operator]
        self.sdp = max(0, -instrument.lot_size.as_tuple().exponent)  # type: ignore[operator]
        # a price in units of 10**-pdp is ticks * unit, exactly (tick_size has pdp decimals)
        self._unit = int(instrument.tick_size.scaleb(self.pdp))
        self._scale = 10 ** self.pdp
        self._szf = f"{{:.{self.sdp}f}}".format
        self.book: SymbolBook | None = None
        self.levels = L2Book()  # every level sent, for the tickers' best bid and ask
        self.trade_id = 0
        self.last_u = 0
        self.want_ticker: Any = None  # () -> bool; None: always

    def px(self, ticks: int) -> str:
        v = ticks * self._unit
        if v < 0 or not self.pdp:
            return _fmt(self.ins.ticks_to_price(ticks), self.pdp)
        q, r = divmod(v, self._scale)
        return f"{q}.{r:0{self.pdp}d}"

    def sz(self, size: float) -> str:
        return self._szf(size)

    def encode(self, rows: Any) -> list[WireEvent]:
        """Wire events of ``rows`` (``MD_DTYPE``); snapshot rows (re)build :attr:`book`."""
        out: list[WireEvent] = []
        snap_b: list[list[str]] = []
        snap_a: list[list[str]] = []
        trades: list[tuple[int, int, int, float]] = []
        bids: list[str] = []
        asks: list[str] = []
        px, sz, level = self.px, self.sz, self.levels.set_level
        for te, _ti, seq, kind, side, price, size, flags, _oid in rows.tolist():
            if kind == SNAPSHOT:
                if not snap_b and not snap_a:
                    self.levels.clear()
                (snap_b if side == BID else snap_a).append([px(price), sz(size)])
                level(side, price, size)
                if flags & F_LAST:
                    self.book = SymbolBook(self.ins.symbol, "usdm", {
                        "lastUpdateId": seq, "E": te // 1_000_000, "T": te // 1_000_000,
                        "bids": snap_b, "asks": snap_a})
                    self.book.contiguous_ids = True
                    self.last_u = seq
                    snap_b, snap_a = [], []
                continue
            if kind == TRADE:
                trades.append((te, side, price, size))
            else:
                (bids if side == BID else asks).append(px(price))
                (bids if side == BID else asks).append(sz(size))
                level(side, price, size)
            if flags & F_LAST:
                self._message(te, seq, trades, bids, asks, out)
                trades, bids, asks = [], [], []
        return out

    def _message(self, te: int, seq: int, trades: list[tuple[int, int, int, float]],
                 bids: list[str], asks: list[str], out: list[WireEvent]) -> None:
        ms = te // 1_000_000
        s = self.ins.symbol
        for _te, side, price, size in trades:
            self.trade_id += 1
            m = "true" if side == ASK else "false"
            out.append((te, self.sym, TRADE_CH,
                        f'{{"e":"trade","E":{ms},"T":{ms},"s":"{s}","t":{self.trade_id},'
                        f'"p":"{self.px(price)}","q":"{self.sz(size)}","X":"MARKET","m":{m}}}',
                        None))
        if not (bids or asks):
            return
        b = [[bids[i], bids[i + 1]] for i in range(0, len(bids), 2)]
        a = [[asks[i], asks[i + 1]] for i in range(0, len(asks), 2)]
        diff = {"e": "depthUpdate", "E": ms, "T": ms, "s": s, "U": seq, "u": seq,
                "pu": self.last_u, "b": b, "a": a}
        bt = ",".join([f'["{bids[i]}","{bids[i + 1]}"]' for i in range(0, len(bids), 2)])
        at = ",".join([f'["{asks[i]}","{asks[i + 1]}"]' for i in range(0, len(asks), 2)])
        out.append((te, self.sym, DEPTH,
                    f'{{"e":"depthUpdate","E":{ms},"T":{ms},"s":"{s}","U":{seq},"u":{seq},'
                    f'"pu":{self.last_u},"b":[{bt}],"a":[{at}]}}', diff))
        self.last_u = seq
        if self.book is not None:
            self.book.diffs.append(diff)
            if len(self.book.diffs) > COMPACT_EVERY:
                # the simulator never ends: keep memory bounded, in small steps so the
                # server's loop never stalls on a long catch-up
                self.book.compact(keep_unapplied=0)
        lv = self.levels
        bb, ba = lv.best_bid, lv.best_ask
        if bb is not None and ba is not None and (self.want_ticker is None or self.want_ticker()):
            bl, al = lv.bids, lv.asks
            out.append((te, self.sym, TICKER,
                        f'{{"e":"bookTicker","u":{seq},"s":"{s}","b":"{self.px(bb)}",'
                        f'"B":"{self.sz(bl[bb])}","a":"{self.px(ba)}","A":"{self.sz(al[ba])}",'
                        f'"T":{ms},"E":{ms}}}', None))
