"""A seeded, queue-reactive L2 market simulator (Cont–Stoikov–Talreja style).

Each symbol has its own limit order book of integer-lot queues at integer-tick prices, evolved
by competing Poisson processes and simulated exactly with the Gillespie algorithm: the time to
the next event is exponential with the sum of every rate, and the event is drawn in proportion
to its rate. With ``d`` the distance in ticks from the *opposite* best price and ``L`` =
``SimulatorConfig.levels``:

* **Limit orders** arrive on each side at ``limit_rate_per_s / d**limit_rate_decay`` for
  ``d = 1..L``. A limit buy at distance ``d`` rests at ``best_ask - d``: small ``d`` improves
  the bid inside the spread, and an order never crosses or locks the book.
* **Cancels** hit each resting level at ``cancel_rate_per_s * size / order_size_lots`` (its
  queue counted in unit orders) and remove one order-sized chunk (at most the whole level).
* **Market orders** arrive at ``market_rate_per_s`` per side and eat the opposite side level by
  level, walking several levels when large.

Order sizes (limit, cancel chunk, market) are geometric on ``1, 2, ...`` lots with mean
``order_size_lots``. Queues at the touch are depleted by market orders and cancels and then the
touch moves; the gap is refilled by limit orders arriving inside the spread from *either* side,
so the mid price performs a random walk whose speed follows from the rates. Each side tracks
the ``L`` ticks from its own best price; a level pushed beyond that window when the best price
improves is dropped and its removal emitted. Should a side ever empty, the same message refills
it with one order 1–3 ticks from the opposite best, so the book is two-sided after every
message and the simulation runs forever. Prices stay >= 1 tick (a limit buy that would rest
below 1 tick is discarded).

Output follows :mod:`actors.core.batch`. The first :meth:`MarketSimulator.advance` emits the
initial book as ``SNAPSHOT`` rows at ``start_ns`` with ``seq`` 0 (levels ``mid-1 .. mid-L``
and ``mid+1 .. mid+L``, sizes uniform on ``1 .. 2*initial_depth_lots-1``). Every later message
(one limit add, one cancel or one market order) gets the next ``seq`` (1, 2, ...) and one
``ts_event`` (strictly after ``start_ns``); it holds one ``TRADE`` row per level a market order
consumed (aggressor side), then one ``DELTA`` row per changed level with its new absolute size
(0 removes it), and its last row carries ``F_LAST``. ``ts_init`` is ``ts_event`` plus the feed
latency.

Each symbol draws from its own ``numpy.random.Generator(PCG64)`` seeded with
``(seed, symbol index)``, uniforms in blocks of fixed size, and the next event's time is kept
across calls, so the stream is a pure function of the seed and the instrument list: how
``advance`` is chunked never changes the rows.

Example:
    >>> from decimal import Decimal
    >>> from actors.core.instruments import Instrument
    >>> from cluster.config import SimulatorConfig
    >>> btc = Instrument("BTCUSDT", Decimal("0.1"), Decimal("0.001"))
    >>> sim = MarketSimulator(SimulatorConfig(), [btc], {"BTCUSDT": 618000}, start_ns=10**18)
    >>> rows = sim.advance(10**18 + 1_000_000_000)["BTCUSDT"]
    >>> bool(rows["kind"][0] == SNAPSHOT) and sim.now_ns == 10**18 + 1_000_000_000
    True
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from actors.core.batch import ASK, BID, DELTA, F_LAST, F_SNAPSHOT, MD_DTYPE, SNAPSHOT, TRADE
from actors.core.errors import ValidationError
from actors.core.instruments import Instrument

if TYPE_CHECKING:
    from cluster.config import SimulatorConfig

# uniforms drawn per event: inter-arrival time, event choice, order size, refill (aux)
_PER_EVENT = 4
_BLOCK_EVENTS = 2048
# a row is 5 ints in the flat output list: ts_event, seq, code (= kind * 2 + side), price, lots
_WIDTH = 5
_DELTA_BID = DELTA * 2 + BID
_DELTA_ASK = DELTA * 2 + ASK
_TRADE_BUY = TRADE * 2 + BID
_TRADE_SELL = TRADE * 2 + ASK
_SNAP_BID = SNAPSHOT * 2 + BID
_SNAP_ASK = SNAPSHOT * 2 + ASK
_REFILL_MAX_TICKS = 3


def _lot_scale(lot_size: object) -> tuple[int, int]:
    """Return ``(num, den)`` integers with ``lot_size == num / den`` exactly (den a power of 10).

    ``lots * num / den`` in float is then the correctly rounded value of the exact decimal
    quantity, whose ``repr`` parses back to the same number of lots.
    """
    _sign, digits, exponent = lot_size.as_tuple()  # type: ignore[attr-defined]
    num = int("".join(map(str, digits)))
    if exponent >= 0:
        return num * 10**exponent, 1
    return num, 10**-exponent


class _SymbolSim:
    """State and event loop of one symbol's book (internal; see the module docstring)."""

    def __init__(
        self,
        config: SimulatorConfig,
        instrument: Instrument,
        index: int,
        mid: int,
        start_ns: int,
    ) -> None:
        self.instrument = instrument
        self.start_ns = start_ns
        self.levels = levels = int(config.levels)
        self.latency_ns = round(config.feed_latency_us * 1000.0)
        self.num, self.den = _lot_scale(instrument.lot_size)
        self.rng = np.random.Generator(np.random.PCG64([int(config.seed), index]))

        rate, decay = float(config.limit_rate_per_s), float(config.limit_rate_decay)
        cum: list[float] = []
        acc = 0.0
        for d in range(1, 1 + levels):
            acc += rate / d**decay
            cum.append(acc)
        self.cum_limit = cum
        self.limit_side = cum[-1]  # limit-order rate per side
        self.market_side = float(config.market_rate_per_s)
        self.fixed_rate = 2.0 * self.limit_side + 2.0 * self.market_side
        os_lots = int(config.order_size_lots)
        self.cancel_per_lot = float(config.cancel_rate_per_s) / os_lots
        self.geo_inv = 1.0 / math.log(1.0 - 1.0 / os_lots) if os_lots > 1 else 0.0

        # initial book, symmetric around the mid
        depth = int(config.initial_depth_lots)
        draws = self.rng.random(2 * levels).tolist()
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        for i in range(levels):
            if mid - 1 - i >= 1:
                self.bids[mid - 1 - i] = 1 + int(draws[i] * (2 * depth - 1))
            self.asks[mid + 1 + i] = 1 + int(draws[levels + i] * (2 * depth - 1))
        self.best_bid = mid - 1
        self.best_ask = mid + 1
        self.bid_lots = sum(self.bids.values())
        self.ask_lots = sum(self.asks.values())

        self.t = 0.0  # ns since start_ns, of the last event
        self.pending = -1.0  # time of the drawn but not yet processed event, or -1
        self.seq = 0
        self.buf: list[float] = []
        self.k = 0
        self.snapshot_sent = False

    # ------------------------------------------------------------------------------------------
    def sizes(self, lots: np.ndarray) -> np.ndarray:
        """Convert integer lots into float instrument units (exact decimal, correctly rounded)."""
        return (lots * self.num).astype(np.float64) / float(self.den)

    def size(self, lots: int) -> float:
        """Convert integer lots into float instrument units, as :meth:`sizes` does."""
        return float(lots * self.num) / float(self.den)

    def snapshot(self) -> list[int]:
        """Return the current book as flat snapshot rows (best level first, bids then asks)."""
        out: list[int] = []
        ts = self.start_ns
        for p in sorted(self.bids, reverse=True):
            out.extend((ts, 0, _SNAP_BID, p, self.bids[p]))
        for p in sorted(self.asks):
            out.extend((ts, 0, _SNAP_ASK, p, self.asks[p]))
        return out

    def to_rows(self, flat: list[int]) -> np.ndarray:
        """Turn flat ``(ts, seq, code, price, lots)`` ints into :data:`MD_DTYPE` rows."""
        n = len(flat) // _WIDTH
        rows = np.zeros(n, dtype=MD_DTYPE)
        if n == 0:
            return rows
        a = np.array(flat, dtype=np.int64).reshape(n, _WIDTH)
        rows["ts_event"] = a[:, 0]
        rows["ts_init"] = a[:, 0] + self.latency_ns
        seq = a[:, 1]
        rows["seq"] = seq
        kind = (a[:, 2] >> 1).astype(np.uint8)
        rows["kind"] = kind
        rows["side"] = (a[:, 2] & 1).astype(np.uint8)
        rows["price"] = a[:, 3]
        rows["size"] = self.sizes(a[:, 4])
        last = np.ones(n, dtype=bool)
        last[:-1] = seq[1:] != seq[:-1]
        flags = np.where(last, F_LAST, 0) | np.where(kind == SNAPSHOT, F_SNAPSHOT, 0)
        rows["flags"] = flags.astype(np.uint8)
        return rows

    # ------------------------------------------------------------------------------------------
    def run(self, until_ns: int) -> np.ndarray:
        """Process every event with ``ts_event <= until_ns`` and return its rows."""
        out: list[int] = self.snapshot() if not self.snapshot_sent else []
        self.snapshot_sent = True
        ext = out.extend
        limit_rel = float(until_ns - self.start_ns)  # event at t goes out iff t < limit_rel

        bids = self.bids
        asks = self.asks
        bb = self.best_bid
        ba = self.best_ask
        tb = self.bid_lots
        ta = self.ask_lots
        t = self.t
        pend = self.pending
        seq = self.seq
        buf = self.buf
        k = self.k
        nbuf = len(buf)

        rng_random = self.rng.random
        log = math.log
        cum = self.cum_limit
        levels = self.levels
        lim = self.limit_side
        lim2 = 2.0 * lim
        mkt1 = lim2 + self.market_side
        mkt2 = lim2 + 2.0 * self.market_side
        fixed = self.fixed_rate
        cpl = self.cancel_per_lot
        ginv = self.geo_inv
        t0 = self.start_ns + 1
        block = _BLOCK_EVENTS * _PER_EVENT

        while True:
            if pend < 0.0:
                if k >= nbuf:
                    buf = rng_random(block).tolist()
                    nbuf = block
                    k = 0
                pend = t - log(1.0 - buf[k]) / (fixed + cpl * (tb + ta)) * 1e9
            if pend >= limit_rel:
                break
            t = pend
            pend = -1.0
            x = buf[k + 1] * (fixed + cpl * (tb + ta))
            s = 1 + int(log(1.0 - buf[k + 2]) * ginv)
            aux = buf[k + 3]
            k += _PER_EVENT
            ts = t0 + int(t)

            if x < lim:  # ---------------------------------------------------- limit buy
                d = bisect_right(cum, x) + 1
                p = ba - d
                if p < 1:
                    continue
                seq += 1
                q = bids.get(p, 0) + s
                bids[p] = q
                tb += s
                ext((ts, seq, _DELTA_BID, p, q))
                if p > bb:
                    for y in range(bb - levels + 1, p - levels + 1):
                        if y in bids:
                            tb -= bids.pop(y)
                            ext((ts, seq, _DELTA_BID, y, 0))
                    bb = p
            elif x < lim2:  # ------------------------------------------------ limit sell
                d = bisect_right(cum, x - lim) + 1
                p = bb + d
                seq += 1
                q = asks.get(p, 0) + s
                asks[p] = q
                ta += s
                ext((ts, seq, _DELTA_ASK, p, q))
                if p < ba:
                    for y in range(p + levels, ba + levels):
                        if y in asks:
                            ta -= asks.pop(y)
                            ext((ts, seq, _DELTA_ASK, y, 0))
                    ba = p
            elif x < mkt1:  # ------------------------------------------------ market buy
                seq += 1
                p = ba
                changed = []
                while True:
                    q = asks[p]
                    if q > s:
                        asks[p] = q - s
                        ta -= s
                        ext((ts, seq, _TRADE_BUY, p, s))
                        changed.append(p)
                        changed.append(q - s)
                        break
                    del asks[p]
                    ta -= q
                    s -= q
                    ext((ts, seq, _TRADE_BUY, p, q))
                    changed.append(p)
                    changed.append(0)
                    if ta == 0:
                        break
                    p += 1
                    while p not in asks:
                        p += 1
                    if s == 0:
                        break
                for i in range(0, len(changed), 2):
                    ext((ts, seq, _DELTA_ASK, changed[i], changed[i + 1]))
                if ta == 0:  # refill the empty side
                    j = int(aux * _REFILL_MAX_TICKS)
                    p = bb + 1 + j
                    q = 1 + int(log(1.0 - (aux * _REFILL_MAX_TICKS - j)) * ginv)
                    asks[p] = q
                    ta = q
                    ext((ts, seq, _DELTA_ASK, p, q))
                ba = p
            elif x < mkt2:  # ----------------------------------------------- market sell
                seq += 1
                p = bb
                changed = []
                while True:
                    q = bids[p]
                    if q > s:
                        bids[p] = q - s
                        tb -= s
                        ext((ts, seq, _TRADE_SELL, p, s))
                        changed.append(p)
                        changed.append(q - s)
                        break
                    del bids[p]
                    tb -= q
                    s -= q
                    ext((ts, seq, _TRADE_SELL, p, q))
                    changed.append(p)
                    changed.append(0)
                    if tb == 0:
                        break
                    p -= 1
                    while p not in bids:
                        p -= 1
                    if s == 0:
                        break
                for i in range(0, len(changed), 2):
                    ext((ts, seq, _DELTA_BID, changed[i], changed[i + 1]))
                if tb == 0:
                    j = int(aux * _REFILL_MAX_TICKS)
                    p = max(1, ba - 1 - j)
                    q = 1 + int(log(1.0 - (aux * _REFILL_MAX_TICKS - j)) * ginv)
                    bids[p] = q
                    tb = q
                    ext((ts, seq, _DELTA_BID, p, q))
                bb = p
            else:  # ------------------------------------------------------------- cancel
                y = int((x - mkt2) / cpl)
                if y >= tb + ta:
                    y = tb + ta - 1
                seq += 1
                if y < tb:
                    for p, q in bids.items():  # noqa: B007 - p is used after break
                        if y < q:
                            break
                        y -= q
                    if q > s:
                        bids[p] = q - s
                        tb -= s
                        ext((ts, seq, _DELTA_BID, p, q - s))
                    else:
                        del bids[p]
                        tb -= q
                        ext((ts, seq, _DELTA_BID, p, 0))
                        if tb == 0:
                            j = int(aux * _REFILL_MAX_TICKS)
                            bb = max(1, ba - 1 - j)
                            q = 1 + int(log(1.0 - (aux * _REFILL_MAX_TICKS - j)) * ginv)
                            bids[bb] = q
                            tb = q
                            ext((ts, seq, _DELTA_BID, bb, q))
                        elif p == bb:
                            bb -= 1
                            while bb not in bids:
                                bb -= 1
                else:
                    y -= tb
                    for p, q in asks.items():  # noqa: B007 - p is used after break
                        if y < q:
                            break
                        y -= q
                    if q > s:
                        asks[p] = q - s
                        ta -= s
                        ext((ts, seq, _DELTA_ASK, p, q - s))
                    else:
                        del asks[p]
                        ta -= q
                        ext((ts, seq, _DELTA_ASK, p, 0))
                        if ta == 0:
                            j = int(aux * _REFILL_MAX_TICKS)
                            ba = bb + 1 + j
                            q = 1 + int(log(1.0 - (aux * _REFILL_MAX_TICKS - j)) * ginv)
                            asks[ba] = q
                            ta = q
                            ext((ts, seq, _DELTA_ASK, ba, q))
                        elif p == ba:
                            ba += 1
                            while ba not in asks:
                                ba += 1

        self.best_bid = bb
        self.best_ask = ba
        self.bid_lots = tb
        self.ask_lots = ta
        self.t = t
        self.pending = pend
        self.seq = seq
        self.buf = buf
        self.k = k
        return self.to_rows(out)


class MarketSimulator:
    """Deterministic multi-symbol L2 order-flow simulator (model: see the module docstring).

    Args:
        config: Order-flow rates, sizes, seed and feed latency.
        instruments: The symbols to simulate; output follows this order.
        initial_prices: Symbol -> initial mid price in integer ticks (>= 2).
        start_ns: Simulated start time, ns since epoch (> 0); the snapshot's ``ts_event``.

    Raises:
        ValidationError: a symbol without an initial price, a price below 2 ticks, a duplicate
            symbol or ``start_ns <= 0``.
    """

    def __init__(
        self,
        config: SimulatorConfig,
        instruments: Sequence[Instrument],
        initial_prices: Mapping[str, int],
        start_ns: int,
    ) -> None:
        if start_ns <= 0:
            raise ValidationError("start_ns", "> 0", start_ns)
        self._sims: dict[str, _SymbolSim] = {}
        for index, inst in enumerate(instruments):
            if inst.symbol in self._sims:
                raise ValidationError("instruments", "unique symbols", inst.symbol)
            if inst.symbol not in initial_prices:
                raise ValidationError(f"initial_prices[{inst.symbol}]", "given", None)
            mid = int(initial_prices[inst.symbol])
            if mid < 2:
                raise ValidationError(f"initial_prices[{inst.symbol}]", ">= 2 ticks", mid)
            self._sims[inst.symbol] = _SymbolSim(config, inst, index, mid, int(start_ns))
        self._now_ns = int(start_ns)

    @property
    def now_ns(self) -> int:
        """The ``until_ns`` of the last :meth:`advance` (``start_ns`` before the first)."""
        return self._now_ns

    @property
    def symbols(self) -> list[str]:
        """The simulated symbols, in instrument order."""
        return list(self._sims)

    def advance(self, until_ns: int) -> dict[str, np.ndarray]:
        """Generate every event with ``now_ns < ts_event <= until_ns``.

        The first call also emits each symbol's initial book as snapshot rows at ``start_ns``.

        Args:
            until_ns: Simulated time to advance to, ns since epoch (>= :attr:`now_ns`).

        Returns:
            Symbol -> :data:`MD_DTYPE` rows (possibly empty), for every symbol, in instrument
            order.

        Raises:
            ValidationError: ``until_ns`` is before :attr:`now_ns`.
        """
        until_ns = int(until_ns)
        if until_ns < self._now_ns:
            raise ValidationError("until_ns", f">= now_ns {self._now_ns}", until_ns)
        out = {sym: sim.run(until_ns) for sym, sim in self._sims.items()}
        self._now_ns = until_ns
        return out

    def book(self, symbol: str) -> tuple[dict[int, float], dict[int, float]]:
        """Return the simulator's true book of ``symbol`` (for tests).

        Returns:
            ``(bids, asks)``: price in ticks -> size in instrument units, as the rows carry it.

        Raises:
            KeyError: ``symbol`` is not simulated.
        """
        sim = self._sims[symbol]
        return (
            {p: sim.size(q) for p, q in sorted(sim.bids.items(), reverse=True)},
            {p: sim.size(q) for p, q in sorted(sim.asks.items())},
        )
