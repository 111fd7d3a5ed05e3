"""The risk engine's building blocks: denial codes, trading states, token buckets, the per-symbol
state and its working-order price sets, and book pricing helpers (microprice, market sweep).

They are public to :mod:`actors.risk.engine` only; import the codes from either module.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from actors.core.instruments import Instrument
from actors.core.views import BookView

if TYPE_CHECKING:
    from cluster.config import RiskConfig


class DenyReason(StrEnum):
    """Stable codes of :class:`OrderDenied`."""

    TRADING_HALTED = "TRADING_HALTED"
    TRADING_REDUCING = "TRADING_REDUCING"
    DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"
    INVALID_ORDER = "INVALID_ORDER"
    INSTRUMENT_UNKNOWN = "INSTRUMENT_UNKNOWN"
    QTY_PRECISION = "QTY_PRECISION"
    QTY_NOT_POSITIVE = "QTY_NOT_POSITIVE"
    QTY_BELOW_MIN = "QTY_BELOW_MIN"
    QTY_ABOVE_MAX = "QTY_ABOVE_MAX"
    PRICE_PRECISION = "PRICE_PRECISION"
    PRICE_NOT_POSITIVE = "PRICE_NOT_POSITIVE"
    SYMBOL_QUARANTINED = "SYMBOL_QUARANTINED"
    BOOK_MISSING = "BOOK_MISSING"
    BOOK_STALE = "BOOK_STALE"
    FEATURES_STALE = "FEATURES_STALE"
    SIGNAL_STALE = "SIGNAL_STALE"
    REDUCE_ONLY_VIOLATION = "REDUCE_ONLY_VIOLATION"
    PRICE_OUTSIDE_BAND = "PRICE_OUTSIDE_BAND"
    NOTIONAL_BELOW_MIN = "NOTIONAL_BELOW_MIN"
    NOTIONAL_EXCEEDS_MAX_PER_ORDER = "NOTIONAL_EXCEEDS_MAX_PER_ORDER"
    POSITION_EXCEEDS_MAX = "POSITION_EXCEEDS_MAX"
    OPEN_ORDERS_EXCEEDS_MAX = "OPEN_ORDERS_EXCEEDS_MAX"
    SELF_TRADE_PREVENTED = "SELF_TRADE_PREVENTED"
    GROSS_EXPOSURE_EXCEEDS_MAX = "GROSS_EXPOSURE_EXCEEDS_MAX"
    NET_EXPOSURE_EXCEEDS_MAX = "NET_EXPOSURE_EXCEEDS_MAX"
    CONCENTRATION_EXCEEDS_MAX = "CONCENTRATION_EXCEEDS_MAX"
    VAR_LIMIT_EXCEEDED = "VAR_LIMIT_EXCEEDED"
    ES_LIMIT_EXCEEDED = "ES_LIMIT_EXCEEDED"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    GLOBAL_RATE_LIMIT_EXCEEDED = "GLOBAL_RATE_LIMIT_EXCEEDED"
    MESSAGE_RATE_EXCEEDED = "MESSAGE_RATE_EXCEEDED"


class TradingState(StrEnum):
    """``ACTIVE``: all checks apply. ``REDUCING``: only exposure-reducing orders. ``HALTED``:
    nothing."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class Bucket:
    """Token bucket: ``rate`` tokens per second up to ``burst``."""

    __slots__ = ("tokens", "last_ns", "rate_per_ns", "burst")

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.tokens = float(burst)
        self.last_ns: int | None = None
        self.rate_per_ns = rate_per_s / 1e9
        self.burst = float(burst)

    def refill(self, now: int) -> float:
        last = self.last_ns
        if last is None:
            self.last_ns = now
        elif now > last:
            t = self.tokens + (now - last) * self.rate_per_ns
            self.tokens = t if t < self.burst else self.burst
            self.last_ns = now
        return self.tokens


class SymbolRisk:
    """Everything risk keeps per symbol: limits, working orders, position, exposure cache."""

    __slots__ = (
        "symbol", "inst", "idx", "unit", "lot", "max_pos", "max_notional", "min_notional",
        "min_qty", "max_qty", "band", "max_open", "bucket", "operator_quarantine", "pos",
        "buy_lots", "sell_lots", "buys", "sells", "buy_px", "sell_px", "mark", "hi", "lo", "ex",
    )

    def __init__(self, symbol: str, inst: Instrument, idx: int, cfg: RiskConfig) -> None:
        o = cfg.symbols.get(symbol)

        def lim(name: str) -> Any:
            v = getattr(o, name) if o is not None else None
            return getattr(cfg, name) if v is None else v

        self.symbol = symbol
        self.inst = inst
        self.idx = idx
        self.unit = float(inst.lot_size) * float(inst.tick_size)  # quote per lot per tick
        self.lot = float(inst.lot_size)
        self.max_pos = int(lim("max_position_lots"))
        self.max_notional = float(lim("max_notional_per_order"))
        self.min_notional = float(lim("min_notional"))
        self.min_qty = int(lim("min_qty_lots"))
        self.max_qty = int(lim("max_qty_lots"))
        self.band = float(lim("price_band_bps")) / 1e4
        ov_open = o.max_open_orders if o is not None else None
        self.max_open = int(cfg.max_open_orders_per_symbol if ov_open is None else ov_open)
        self.bucket = Bucket(float(lim("max_orders_per_s")), int(lim("order_burst")))
        self.operator_quarantine = symbol in cfg.quarantined_symbols
        self.pos = 0
        self.buy_lots = 0
        self.sell_lots = 0
        self.buys: dict[str, int | None] = {}  # working buys: client order id -> limit price
        self.sells: dict[str, int | None] = {}
        self.buy_px = PriceSet(1)  # prices of working buys (None = market)
        self.sell_px = PriceSet(-1)
        self.mark: float | None = None  # last mid, ticks
        self.hi = 0.0  # long extreme (position + working buys), quote
        self.lo = 0.0  # short extreme (position - working sells), quote
        self.ex = 0.0  # max(|hi|, |lo|)

    def extremes(self, mark: float, d_buy: int = 0, d_sell: int = 0) -> tuple[float, float]:
        v = self.unit * mark
        return (self.pos + self.buy_lots + d_buy) * v, (self.pos - self.sell_lots - d_sell) * v


class PriceSet:
    """Multiset of working-order prices on one side, with the most aggressive one cached
    (recomputed lazily after that one leaves). ``None`` is a market order (most aggressive)."""

    __slots__ = ("sign", "counts", "market", "_best", "_dirty")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.counts: dict[int, int] = {}
        self.market = 0
        self._best: int | None = None
        self._dirty = False

    def add(self, price: int | None) -> None:
        if price is None:
            self.market += 1
            return
        self.counts[price] = self.counts.get(price, 0) + 1
        b = self._best
        if not self._dirty and (b is None or (price > b if self.sign > 0 else price < b)):
            self._best = price

    def remove(self, price: int | None) -> None:
        if price is None:
            self.market -= 1
            return
        n = self.counts[price] - 1
        if n:
            self.counts[price] = n
        else:
            del self.counts[price]
            if price == self._best:
                self._dirty = True

    def best(self) -> int | None:
        """Most aggressive limit price (highest buy / lowest sell), ``None`` if none."""
        if self._dirty:
            c = self.counts
            self._best = (max(c) if self.sign > 0 else min(c)) if c else None
            self._dirty = False
        return self._best


@dataclass(slots=True)
class Working:
    sym: SymbolRisk
    sign: int
    leaves_lots: int
    price: int | None
    rests: bool = True  # in the book at ``price`` (None = market); a stop is not, until it fires
    filled_lots: int = 0
    otype: str = "LIMIT"
    trigger: int | None = None


def sweep(book: BookView, sign: int, lot: float, qty_lots: int) -> tuple[float, int]:
    """Return (notional in ticks × lots, deepest price in ticks) of a market order sweeping
    ``book`` for ``qty_lots``; quantity beyond the visible depth is priced at the deepest
    level (the paper venue cancels it as ``NO_LIQUIDITY``; a live venue could fill worse)."""
    if sign > 0:
        prices, sizes = book.ask_ticks, book.ask_sizes
    else:
        prices, sizes = book.bid_ticks, book.bid_sizes
    left, acc, px = qty_lots, 0.0, prices[0]
    for px, size in zip(prices, sizes, strict=True):
        take = min(left, int(round(size / lot)))
        acc += px * take
        left -= take
        if left <= 0:
            return acc, px
    return acc + px * left, px


def reference(book: BookView) -> float | None:
    """Microprice of the top level, or the one side's price when the other is empty."""
    if book.bid_ticks and book.ask_ticks:
        b, a = book.bid_ticks[0], book.ask_ticks[0]
        bs, as_ = book.bid_sizes[0], book.ask_sizes[0]
        tot = bs + as_
        return (b * as_ + a * bs) / tot if tot > 0 else (a + b) / 2.0
    if book.bid_ticks:
        return float(book.bid_ticks[0])
    if book.ask_ticks:
        return float(book.ask_ticks[0])
    return None
