"""Small builders for unit tests: instruments, book views, trades and order commands."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from actors.book.book import L2Book, apply_rows
from actors.core.instruments import Instrument
from actors.core.messages import (
    CancelOrder,
    OrderSide,
    OrderType,
    SubmitOrder,
    TimeInForce,
)
from actors.core.views import BookView, TradePrint
from actors.feed.binance import read_session

SYMBOL = "BTCUSDT"
LOT = 0.001  # BTCUSDT lot size as a float: sizes in views are instrument units
T0 = 1_000_000_000


def instruments() -> dict[str, Instrument]:
    """Return ``{"BTCUSDT": Instrument("BTCUSDT", 0.1, 0.001)}``."""
    return {SYMBOL: Instrument(SYMBOL, Decimal("0.1"), Decimal("0.001"))}


def trade(price_ticks: int, lots: int, aggressor: str, ts: int = T0) -> TradePrint:
    """Return a trade of ``lots`` BTCUSDT lots (converted to instrument units)."""
    return TradePrint(ts_event=ts, price_ticks=price_ticks, size=lots * LOT, aggressor=aggressor)


def book_view(
    symbol: str = SYMBOL,
    bids: Sequence[tuple[int, float]] = (),
    asks: Sequence[tuple[int, float]] = (),
    ts: int = T0,
    trades: Sequence[TradePrint] = (),
    seq: int = 0,
    quarantined: bool = False,
) -> BookView:
    """Build a view; ``bids``/``asks`` are ``(price_ticks, size)`` in instrument units."""
    return BookView(
        symbol=symbol,
        ts_event=ts,
        ts_init=ts,
        bid_ticks=tuple(p for p, _ in bids),
        bid_sizes=tuple(float(s) for _, s in bids),
        ask_ticks=tuple(p for p, _ in asks),
        ask_sizes=tuple(float(s) for _, s in asks),
        seq=seq,
        quarantined=quarantined,
        trades=tuple(trades),
    )


def lots_book(
    bids: Sequence[tuple[int, int]] = (),
    asks: Sequence[tuple[int, int]] = (),
    ts: int = T0,
    trades: Sequence[TradePrint] = (),
    seq: int = 0,
    quarantined: bool = False,
) -> BookView:
    """Like :func:`book_view` for BTCUSDT, with sizes given in lots."""
    return book_view(
        bids=[(p, n * LOT) for p, n in bids],
        asks=[(p, n * LOT) for p, n in asks],
        ts=ts,
        trades=trades,
        seq=seq,
        quarantined=quarantined,
    )


def submit(
    coid: str,
    side: OrderSide | str = OrderSide.BUY,
    qty: int = 10,
    price: int | None = None,
    tif: TimeInForce = TimeInForce.GTC,
    ts: int = T0,
    symbol: str = SYMBOL,
    reduce_only: bool = False,
    trigger_ts_init: int = 0,
) -> SubmitOrder:
    """A limit order if ``price`` is given, else a market order."""
    return SubmitOrder(
        ts_event=ts,
        ts_init=ts,
        client_order_id=coid,
        symbol=symbol,
        side=OrderSide(side),
        order_type=OrderType.MARKET if price is None else OrderType.LIMIT,
        qty_lots=qty,
        price_ticks=price,
        tif=tif,
        reduce_only=reduce_only,
        trigger_ts_init=trigger_ts_init,
    )


def cancel(coid: str, ts: int = T0, symbol: str = SYMBOL) -> CancelOrder:
    """A cancel command."""
    return CancelOrder(ts_event=ts, ts_init=ts, client_order_id=coid, symbol=symbol)


class AvgCostModel:
    """Reference average-cost position model for one BTCUSDT position, written independently
    of :class:`actors.execution.portfolio.Portfolio` (tick 0.1, lot 0.001)."""

    TICK = 0.1

    def __init__(self) -> None:
        self.qty = 0
        self.avg = 0.0
        self.realised = 0.0
        self.fees = 0.0
        self.mark: float | None = None

    def fill(self, sign: int, lots: int, px: int, fee: float = 0.0) -> None:
        """Apply a fill of ``lots`` at ``px`` on side ``sign`` (+1 buy, -1 sell)."""
        signed = sign * lots
        self.fees += fee
        if self.qty == 0 or (self.qty > 0) == (signed > 0):
            self.avg = (self.avg * abs(self.qty) + px * lots) / (abs(self.qty) + lots)
            self.qty += signed
            return
        closed = min(abs(self.qty), lots)
        direction = 1 if self.qty > 0 else -1
        self.realised += closed * LOT * (px - self.avg) * self.TICK * direction
        new = self.qty + signed
        if new == 0:
            self.avg = 0.0
        elif (new > 0) != (self.qty > 0):
            self.avg = float(px)
        self.qty = new

    @property
    def unrealised(self) -> float:
        if self.mark is None or self.qty == 0:
            return 0.0
        return self.qty * LOT * (self.mark - self.avg) * self.TICK

    @property
    def total(self) -> float:
        return self.realised - self.fees + self.unrealised


def loader_book(paths: Sequence[Path]) -> L2Book:
    """The recording loader's book after the whole session (the obviously-correct path that
    the live feed's books are compared with)."""
    book = L2Book()
    for _sym, item, _sync in read_session(list(paths), tickers=False):
        if isinstance(item, np.ndarray):
            for _ in apply_rows(book, item):
                pass
    return book


@st.composite
def random_book(
    draw: st.DrawFn,
    seq: int,
    mid: tuple[int, int] = (995, 1005),
    levels: int = 4,
    size: int = 15,
    trade_px: tuple[int, int] = (990, 1010),
    trade_lots: int = 20,
) -> BookView:
    """A random BTCUSDT view (sizes in lots) around ``mid``, with up to three trade prints."""
    m = draw(st.integers(*mid))
    spread = draw(st.integers(1, 3))
    nb, na = draw(st.integers(0, levels)), draw(st.integers(0, levels))
    bids = [(m - i, draw(st.integers(0, size))) for i in range(nb)]
    asks = [(m + spread + i, draw(st.integers(0, size))) for i in range(na)]
    trades = draw(
        st.lists(
            st.builds(
                lambda p, n, a: trade(p, n, a),
                st.integers(*trade_px),
                st.integers(1, trade_lots),
                st.sampled_from(["BUY", "SELL"]),
            ),
            max_size=3,
        )
    )
    return lots_book(bids=bids, asks=asks, seq=seq, trades=trades, ts=T0 + seq)
