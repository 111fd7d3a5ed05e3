"""Positions and PnL from fills: signed lots, average price in ticks, PnL in quote currency.

A :class:`Position` is netted per symbol. A fill on the same side as the position (or on a flat
position) moves the average price; a fill on the other side realises PnL on the closed part at
the average price, and a fill that flips the position opens the remainder at the fill price.
Fees accumulate separately and are subtracted in :meth:`Position.net_pnl`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from actors.core.instruments import Instrument
from actors.core.messages import OrderFilled, OrderSide


@dataclass(slots=True)
class Position:
    """A netted position in one symbol.

    Attributes:
        symbol: Instrument symbol.
        qty_lots: Signed quantity in lots (+ long, - short).
        avg_px_ticks: Average entry price of the open quantity, in ticks (0 when flat).
        realised_pnl: PnL realised by closing trades, quote currency, before fees.
        fees: Fees paid, quote currency (negative = rebates received).
        unrealised_pnl: PnL of the open quantity at the last mark.
        mark_ticks: Last mark price in ticks (``None`` before the first mark).
        fill_count: Fills applied.
    """

    symbol: str
    qty_lots: int = 0
    avg_px_ticks: float = 0.0
    realised_pnl: float = 0.0
    fees: float = 0.0
    unrealised_pnl: float = 0.0
    mark_ticks: float | None = None
    fill_count: int = 0

    @property
    def is_flat(self) -> bool:
        """True with no open quantity."""
        return self.qty_lots == 0

    @property
    def net_pnl(self) -> float:
        """``realised - fees + unrealised``."""
        return self.realised_pnl - self.fees + self.unrealised_pnl

    def apply(
        self, side: OrderSide, qty_lots: int, px_ticks: int, fee: float, instrument: Instrument
    ) -> float:
        """Apply one fill and return the PnL it realised (before fees).

        Args:
            side: Side of the fill.
            qty_lots: Filled lots (> 0).
            px_ticks: Fill price in ticks.
            fee: Fee of the fill, quote currency, positive = paid.
            instrument: The position's instrument (for tick and lot values).

        Returns:
            Realised PnL of this fill, quote currency.
        """
        signed = OrderSide(side).sign * int(qty_lots)
        realised = 0.0
        if self.qty_lots == 0 or (self.qty_lots > 0) == (signed > 0):
            held = abs(self.qty_lots)
            self.avg_px_ticks = (self.avg_px_ticks * held + float(px_ticks) * abs(signed)) / (
                held + abs(signed)
            )
            self.qty_lots += signed
        else:
            closing = min(abs(self.qty_lots), abs(signed))
            direction = 1 if self.qty_lots > 0 else -1
            realised = (
                instrument.lots_to_float(closing)
                * instrument.ticks_to_float(float(px_ticks) - self.avg_px_ticks)
                * direction
            )
            self.realised_pnl += realised
            before = self.qty_lots
            self.qty_lots += signed
            if self.qty_lots == 0:
                self.avg_px_ticks = 0.0
            elif (before > 0) != (self.qty_lots > 0):
                self.avg_px_ticks = float(px_ticks)
        self.fees += float(fee)
        self.fill_count += 1
        if self.mark_ticks is not None:
            self.remark(self.mark_ticks, instrument)
        return realised

    def remark(self, mark_ticks: float, instrument: Instrument) -> float:
        """Mark the open quantity at ``mark_ticks`` and return the unrealised PnL."""
        self.mark_ticks = float(mark_ticks)
        if self.qty_lots == 0:
            self.unrealised_pnl = 0.0
        else:
            self.unrealised_pnl = instrument.lots_to_float(self.qty_lots) * (
                instrument.ticks_to_float(self.mark_ticks - self.avg_px_ticks)
            )
        return self.unrealised_pnl

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {
            "symbol": self.symbol,
            "qty_lots": self.qty_lots,
            "avg_px_ticks": self.avg_px_ticks,
            "realised_pnl": self.realised_pnl,
            "fees": self.fees,
            "unrealised_pnl": self.unrealised_pnl,
            "mark_ticks": self.mark_ticks,
            "fill_count": self.fill_count,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Position:
        """Rebuild a position from :meth:`to_dict` output."""
        return cls(
            symbol=d["symbol"],
            qty_lots=int(d["qty_lots"]),
            avg_px_ticks=float(d["avg_px_ticks"]),
            realised_pnl=float(d["realised_pnl"]),
            fees=float(d["fees"]),
            unrealised_pnl=float(d["unrealised_pnl"]),
            mark_ticks=None if d["mark_ticks"] is None else float(d["mark_ticks"]),
            fill_count=int(d["fill_count"]),
        )


class Portfolio:
    """Positions of every symbol traded, built from fills.

    Example:
        >>> pf = Portfolio()
        >>> pf.apply_fill(fill, btc)          # doctest: +SKIP
        >>> pf.mark("BTCUSDT", 618_305.0)     # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._positions: dict[str, Position] = {}
        self._instruments: dict[str, Instrument] = {}
        self._marks: dict[str, float] = {}  # every symbol marked, traded or not

    def apply_fill(self, fill: OrderFilled, instrument: Instrument) -> float:
        """Apply one fill to its symbol's position and return the PnL it realised.

        Args:
            fill: The fill (its ``fee`` is added to the position's fees).
            instrument: The fill's instrument.

        Returns:
            Realised PnL of this fill, quote currency, before fees.
        """
        self._instruments[fill.symbol] = instrument
        pos = self._positions.get(fill.symbol)
        if pos is None:
            pos = self._positions[fill.symbol] = Position(
                fill.symbol, mark_ticks=self._marks.get(fill.symbol)
            )
        return pos.apply(fill.side, fill.last_qty_lots, fill.last_px_ticks, fill.fee, instrument)

    def mark(self, symbol: str, mid_ticks: float) -> float:
        """Mark ``symbol`` at ``mid_ticks`` and return its unrealised PnL (0 if never traded).

        The mark is kept for a symbol not traded yet too: its first fill is valued at it.
        """
        self._marks[symbol] = float(mid_ticks)
        pos = self._positions.get(symbol)
        if pos is None:
            return 0.0
        return pos.remark(mid_ticks, self._instruments[symbol])

    def marks(self) -> dict[str, float]:
        """The last mark of every symbol marked, in ticks (sorted)."""
        return dict(sorted(self._marks.items()))

    def position(self, symbol: str) -> Position | None:
        """Return the live position of ``symbol`` (``None`` if never traded)."""
        return self._positions.get(symbol)

    def qty_lots(self, symbol: str) -> int:
        """Return the signed position of ``symbol`` in lots (0 if never traded)."""
        pos = self._positions.get(symbol)
        return 0 if pos is None else pos.qty_lots

    def positions(self) -> dict[str, Position]:
        """Return copies of every position, by symbol (sorted)."""
        return {s: replace(self._positions[s]) for s in sorted(self._positions)}

    def realised_pnl(self) -> float:
        """Sum of realised PnL, before fees."""
        return sum(p.realised_pnl for p in self._positions.values())

    def fees(self) -> float:
        """Sum of fees paid."""
        return sum(p.fees for p in self._positions.values())

    def unrealised_pnl(self) -> float:
        """Sum of unrealised PnL at the last marks."""
        return sum(p.unrealised_pnl for p in self._positions.values())

    def total_pnl(self) -> float:
        """``realised - fees + unrealised`` over every symbol."""
        return sum(p.net_pnl for p in self._positions.values())

    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-safe image of every position and its instrument."""
        return {
            "positions": [self._positions[s].to_dict() for s in sorted(self._positions)],
            "instruments": {
                s: {
                    "tick_size": str(i.tick_size),
                    "lot_size": str(i.lot_size),
                    "venue": i.venue,
                }
                for s, i in sorted(self._instruments.items())
            },
            "marks": dict(sorted(self._marks.items())),
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any]) -> Portfolio:
        """Rebuild a portfolio from :meth:`snapshot` output."""
        pf = cls()
        for s, i in snapshot.get("instruments", {}).items():
            pf._instruments[s] = Instrument(
                s, Decimal(i["tick_size"]), Decimal(i["lot_size"]), i.get("venue", "SIM")
            )
        for d in snapshot.get("positions", []):
            pos = Position.from_dict(d)
            pf._positions[pos.symbol] = pos
        pf._marks = {s: float(m) for s, m in snapshot.get("marks", {}).items()}
        return pf
