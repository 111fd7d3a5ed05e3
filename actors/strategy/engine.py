"""Strategy engine: turns ensemble predictions into orders. Pure (no Ray).

The default strategy is a position-targeting signal follower: when ``p_up - p_down`` exceeds
``entry_edge`` it steers the symbol's position towards ``+target_position_lots`` (towards
``-target`` on the opposite signal), one order of at most ``order_qty_lots`` per decision.
With ``hold_steps`` > 0 a position whose symbol has had no signal for that many decisions
(the holding horizon, in the model's label units) is steered back to flat the same way.
How big the target is comes from ``strategy.sizing`` (``actors/strategy/sizer.py``: fixed,
vol_target, kelly or risk_parity). It crosses the spread with an IOC limit a few ticks
through the touch (or a market order), so it never leaves resting orders behind. Its position
is fed from fills, so it agrees with the execution engine's book of record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from actors.core.errors import ValidationError
from actors.core.instruments import Instrument
from actors.core.messages import OrderFilled, OrderSide, OrderType, SubmitOrder, TimeInForce
from actors.core.views import BookView, DecisionPoint
from actors.strategy.sizer import Sizer


class StrategyEngine:
    """Signal-following strategy across symbols.

    Args:
        config: ``StrategyConfig``.
        strategy_id: Tag carried on every order.
    """

    def __init__(
        self,
        config: Any,
        strategy_id: str = "signal-follower",
        instruments: Mapping[str, Instrument] | None = None,
        capital: float = 100_000.0,
    ) -> None:
        self.cfg = config
        self.strategy_id = strategy_id
        self.positions: dict[str, int] = {}
        self._quiet: dict[str, int] = {}  # decisions per symbol since its last signal
        self._order_seq = 0
        sizing = getattr(config, "sizing", "fixed")
        if sizing != "fixed" and not instruments:
            raise ValidationError("instruments", f"given for sizing {sizing!r}", instruments)
        # fixed sizing needs no estimate: no sampler to feed every step
        self.sizer = (
            Sizer(config, instruments, capital) if sizing != "fixed" and instruments else None
        )

    def on_marks(self, now_ns: int, views: Mapping[str, BookView]) -> None:
        """Feed the sizer the step's books (every step, before the decisions)."""
        if self.sizer is not None:
            self.sizer.on_marks(now_ns, views)

    @staticmethod
    def signal(probs: Sequence[float], edge: float) -> int:
        """Return +1, -1 or 0 from class probabilities ``[down, flat, up]``."""
        d = float(probs[2]) - float(probs[0])
        if d > edge:
            return 1
        if d < -edge:
            return -1
        return 0

    def on_fills(self, events: Iterable[Any]) -> None:
        """Update positions from fill events."""
        for ev in events:
            if isinstance(ev, OrderFilled):
                self.positions[ev.symbol] = (
                    self.positions.get(ev.symbol, 0) + ev.side.sign * ev.last_qty_lots
                )

    def on_decision(
        self, dp: DecisionPoint, probs: Sequence[float], view: BookView, now_ns: int
    ) -> tuple[int, SubmitOrder | None]:
        """Return the signal and the order (or None) for one decision point."""
        sig = self.signal(probs, self.cfg.entry_edge) if dp.valid else 0
        age = 0 if sig != 0 else self._quiet.get(dp.symbol, 0) + 1
        self._quiet[dp.symbol] = age
        if view.best_bid is None or view.best_ask is None:
            return sig, None
        pos = self.positions.get(dp.symbol, 0)
        hold = getattr(self.cfg, "hold_steps", 0)
        if sig == 0:
            if not (hold and age >= hold and pos != 0):
                return sig, None
            # the signal is older than the holding horizon: steer back to flat
            direction = -1 if pos > 0 else 1
            qty = min(abs(pos), self.cfg.order_qty_lots)
        else:
            size = (
                self.cfg.target_position_lots if self.sizer is None
                else self.sizer.target_lots(dp.symbol, sig, probs, self.positions)
            )
            if size is None:  # no volatility estimate yet: a sized strategy waits
                return sig, None
            delta = sig * size - pos
            if delta == 0 or (delta > 0) != (sig > 0):
                return sig, None
            direction = sig
            qty = min(abs(delta), self.cfg.order_qty_lots)
        side = OrderSide.BUY if direction > 0 else OrderSide.SELL
        self._order_seq += 1
        coid = f"{dp.symbol}-O{self._order_seq}"
        if self.cfg.order_type == "market":
            otype, price, tif = OrderType.MARKET, None, TimeInForce.IOC
        else:
            off = self.cfg.limit_offset_ticks
            price = view.best_ask + off if direction > 0 else view.best_bid - off
            otype, tif = OrderType.LIMIT, TimeInForce.IOC
        return sig, SubmitOrder(
            ts_event=dp.ts_event,
            ts_init=now_ns,
            client_order_id=coid,
            symbol=dp.symbol,
            side=side,
            order_type=otype,
            qty_lots=qty,
            price_ticks=price,
            tif=tif,
            strategy_id=self.strategy_id,
            decision_id=dp.decision_id,
            trigger_ts_init=dp.ts_init,
            features_ts_ns=dp.ts_init,
            signal_ts_ns=now_ns,
        )
