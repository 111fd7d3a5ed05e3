"""Instruments: tick and lot sizes, and exact conversion between decimal strings and integers.

Prices travel as integer ticks and order quantities as integer lots everywhere inside raydesk;
decimals appear only at the edges (exchange messages, reports). Conversion is exact: a price
that is not a whole number of ticks is an error, never a silent rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from actors.core.errors import ValidationError

DecimalLike = str | int | Decimal


def to_decimal(field: str, value: DecimalLike | float) -> Decimal:
    """Parse ``value`` into a finite Decimal, naming ``field`` on failure.

    Floats are converted through ``repr`` so that ``0.1`` means the decimal 0.1.
    """
    try:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValidationError(field, "a decimal number", value) from None
    if not d.is_finite():
        raise ValidationError(field, "finite", value)
    return d


def format_decimal(d: Decimal) -> str:
    """Format ``d`` as a plain decimal string without exponent or trailing zeros."""
    if d == 0:
        return "0"
    s = format(d.normalize(), "f")
    return s


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable instrument.

    Attributes:
        symbol: Venue symbol, e.g. ``"BTCUSDT"``.
        tick_size: Smallest price increment (decimal string in configs).
        lot_size: Smallest quantity increment.
        venue: Venue name, e.g. ``"SIM"`` or ``"BINANCE"``.

    Example:
        >>> btc = Instrument("BTCUSDT", Decimal("0.1"), Decimal("0.001"))
        >>> btc.price_to_ticks("61830.5")
        618305
        >>> btc.ticks_to_str(618305)
        '61830.5'
    """

    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    venue: str = "SIM"

    def __post_init__(self) -> None:
        if not self.symbol:
            raise ValidationError("symbol", "non-empty", self.symbol)
        for name in ("tick_size", "lot_size"):
            v = to_decimal(name, getattr(self, name))
            if v <= 0:
                raise ValidationError(name, "> 0", str(v))
            object.__setattr__(self, name, v)

    # prices ---------------------------------------------------------------------------------
    def price_to_ticks(self, price: DecimalLike | float) -> int:
        """Convert a decimal price into integer ticks, exactly."""
        d = to_decimal("price", price)
        q, r = divmod(d, self.tick_size)
        if r != 0:
            raise ValidationError("price", f"a multiple of tick_size {self.tick_size}", str(d))
        return int(q)

    def ticks_to_price(self, ticks: int) -> Decimal:
        """Convert integer ticks into the exact decimal price."""
        return Decimal(int(ticks)) * self.tick_size

    def ticks_to_str(self, ticks: int) -> str:
        """Convert integer ticks into a decimal string without trailing zeros."""
        return format_decimal(self.ticks_to_price(ticks))

    def ticks_to_float(self, ticks: int | float) -> float:
        """Convert ticks into a float price (for features and PnL, never for orders)."""
        return float(ticks) * float(self.tick_size)

    # quantities -----------------------------------------------------------------------------
    def size_to_lots(self, size: DecimalLike | float) -> int:
        """Convert a decimal quantity into integer lots, exactly."""
        d = to_decimal("size", size)
        q, r = divmod(d, self.lot_size)
        if r != 0:
            raise ValidationError("size", f"a multiple of lot_size {self.lot_size}", str(d))
        return int(q)

    def lots_to_size(self, lots: int) -> Decimal:
        """Convert integer lots into the exact decimal quantity."""
        return Decimal(int(lots)) * self.lot_size

    def lots_to_str(self, lots: int) -> str:
        """Convert integer lots into a decimal string without trailing zeros."""
        return format_decimal(self.lots_to_size(lots))

    def lots_to_float(self, lots: int | float) -> float:
        """Convert lots into a float quantity (for notional and PnL arithmetic)."""
        return float(lots) * float(self.lot_size)

    def notional(self, ticks: int, lots: int) -> float:
        """Return price × quantity in quote currency."""
        return self.ticks_to_float(ticks) * self.lots_to_float(lots)
