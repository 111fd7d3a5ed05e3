"""The signal-following strategy engine."""

from __future__ import annotations

import numpy as np

from actors.core.messages import LiquiditySide, OrderFilled, OrderSide, OrderType
from actors.core.views import BookView, DecisionPoint
from actors.strategy.engine import StrategyEngine
from cluster.config import StrategyConfig

VIEW = BookView("BTCUSDT", 1, 2, (100,), (1.0,), (101,), (1.0,))


def dp(valid: bool = True, n: int = 1) -> DecisionPoint:
    z = np.zeros(3, dtype=np.float32)
    return DecisionPoint("BTCUSDT", f"BTCUSDT-{n}", 10, 20, 30, z, np.zeros((2, 3)), valid)


def test_strategy_buys_through_the_ask_on_up_signal() -> None:
    s = StrategyEngine(StrategyConfig(entry_edge=0.1, order_qty_lots=5, target_position_lots=8))
    sig, cmd = s.on_decision(dp(), [0.1, 0.3, 0.6], VIEW, now_ns=99)
    assert sig == 1 and cmd is not None
    assert (cmd.side, cmd.order_type, cmd.qty_lots, cmd.price_ticks) == (
        OrderSide.BUY, OrderType.LIMIT, 5, 102)
    assert cmd.trigger_ts_init == 20 and cmd.decision_id == "BTCUSDT-1"


def test_strategy_stops_at_target_position() -> None:
    s = StrategyEngine(StrategyConfig(entry_edge=0.1, order_qty_lots=5, target_position_lots=8))
    s.on_fills([OrderFilled(ts_event=1, ts_init=1, client_order_id="a", symbol="BTCUSDT",
                            trade_id="t", side=OrderSide.BUY, last_qty_lots=5,
                            last_px_ticks=101, liquidity=LiquiditySide.TAKER)])
    _, cmd = s.on_decision(dp(), [0.1, 0.3, 0.6], VIEW, 1)
    assert cmd.qty_lots == 3
    s.on_fills([OrderFilled(ts_event=1, ts_init=1, client_order_id="b", symbol="BTCUSDT",
                            trade_id="t2", side=OrderSide.BUY, last_qty_lots=3,
                            last_px_ticks=101, liquidity=LiquiditySide.TAKER)])
    assert s.on_decision(dp(), [0.1, 0.3, 0.6], VIEW, 1)[1] is None


def test_strategy_does_nothing_on_flat_or_invalid_decisions() -> None:
    s = StrategyEngine(StrategyConfig(entry_edge=0.2))
    assert s.on_decision(dp(), [0.3, 0.3, 0.4], VIEW, 1) == (0, None)
    assert s.on_decision(dp(valid=False), [0.0, 0.0, 1.0], VIEW, 1) == (0, None)


def test_strategy_market_orders_have_no_price() -> None:
    s = StrategyEngine(StrategyConfig(order_type="market"))
    _, cmd = s.on_decision(dp(), [0.9, 0.1, 0.0], VIEW, 1)
    assert cmd.side is OrderSide.SELL and cmd.order_type is OrderType.MARKET
    assert cmd.price_ticks is None


def _fill(side: OrderSide, qty: int, n: int) -> OrderFilled:
    return OrderFilled(ts_event=1, ts_init=1, client_order_id=f"f{n}", symbol="BTCUSDT",
                       trade_id=f"t{n}", side=side, last_qty_lots=qty, last_px_ticks=101,
                       liquidity=LiquiditySide.TAKER)


def test_strategy_hold_steps_flattens_after_the_holding_horizon() -> None:
    s = StrategyEngine(StrategyConfig(entry_edge=0.1, order_qty_lots=5, target_position_lots=8,
                                      hold_steps=3))
    _, cmd = s.on_decision(dp(), [0.1, 0.3, 0.6], VIEW, 1)
    s.on_fills([_fill(OrderSide.BUY, 5, 1)])
    flat = [0.3, 0.4, 0.3]
    # two quiet decisions: still inside the horizon
    assert s.on_decision(dp(), flat, VIEW, 2) == (0, None)
    assert s.on_decision(dp(valid=False), flat, VIEW, 3) == (0, None)
    sig, cmd = s.on_decision(dp(), flat, VIEW, 4)  # the third: exit, through the bid
    assert sig == 0 and cmd is not None
    assert (cmd.side, cmd.qty_lots, cmd.price_ticks) == (OrderSide.SELL, 5, 99)
    s.on_fills([_fill(OrderSide.SELL, 5, 2)])
    assert s.on_decision(dp(), flat, VIEW, 5) == (0, None)  # flat: nothing more to do


def test_strategy_hold_steps_resets_on_a_new_signal_and_zero_holds() -> None:
    held = StrategyEngine(StrategyConfig(order_qty_lots=5, target_position_lots=5, hold_steps=0))
    held.on_fills([_fill(OrderSide.SELL, 5, 1)])
    assert all(held.on_decision(dp(), [0.3, 0.4, 0.3], VIEW, i)[1] is None for i in range(50))
    s = StrategyEngine(StrategyConfig(order_qty_lots=5, target_position_lots=5, hold_steps=2))
    s.on_fills([_fill(OrderSide.SELL, 5, 1)])
    assert s.on_decision(dp(), [0.3, 0.4, 0.3], VIEW, 1) == (0, None)
    assert s.on_decision(dp(), [0.6, 0.3, 0.1], VIEW, 2) == (-1, None)  # renewed, at target
    assert s.on_decision(dp(), [0.3, 0.4, 0.3], VIEW, 3) == (0, None)
    _, cmd = s.on_decision(dp(), [0.3, 0.4, 0.3], VIEW, 4)
    assert cmd.side is OrderSide.BUY and cmd.qty_lots == 5 and cmd.price_ticks == 102
