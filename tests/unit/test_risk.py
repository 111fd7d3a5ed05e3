"""Risk engine: pre-trade checks, position and loss limits, kill switch (no Ray)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.clock import SimClock
from actors.core.errors import ValidationError
from actors.core.messages import (
    LiquiditySide,
    OrderCanceled,
    OrderDenied,
    OrderError,
    OrderFilled,
    OrderSide,
    SubmitOrder,
    TradingStateChanged,
)
from actors.core.views import BookView
from actors.risk.engine import DenyReason, RiskEngine, TradingState
from cluster.config import RiskConfig
from tests.unit.factories import (
    SYMBOL,
    T0,
    AvgCostModel,
    instruments,
    lots_book,
    submit,
)

BUY, SELL = OrderSide.BUY, OrderSide.SELL
INS = instruments()[SYMBOL]
PX = 600_000  # 60000.0


TOKEN = "test-rearm-token"


def make_risk(**overrides: Any) -> tuple[RiskEngine, SimClock]:
    clock = SimClock(T0)
    return RiskEngine(RiskConfig(**overrides), instruments(), clock, TOKEN), clock


def book(mid: int = PX, ts: int = T0, quarantined: bool = False) -> BookView:
    return lots_book(bids=[(mid - 1, 50)], asks=[(mid + 1, 50)], ts=ts, quarantined=quarantined)


def filled(
    cmd: SubmitOrder, px: int, qty: int | None = None, n: int = 1, fee: float = 0.0
) -> OrderFilled:
    return OrderFilled(
        ts_event=T0,
        ts_init=T0,
        client_order_id=cmd.client_order_id,
        symbol=cmd.symbol,
        trade_id=f"{cmd.client_order_id}-{n}",
        side=cmd.side,
        last_qty_lots=cmd.qty_lots if qty is None else qty,
        last_px_ticks=px,
        liquidity=LiquiditySide.TAKER,
        fee=fee,
    )


def reason(d: OrderDenied | None) -> str | None:
    return None if d is None else d.reason


# --- single checks --------------------------------------------------------------------------
def test_risk_approves_a_plain_order() -> None:
    risk, _ = make_risk()
    assert risk.check(submit("a", BUY, qty=10, price=PX), book()) is None
    assert risk.working_lots(SYMBOL, BUY) == 10


def test_risk_denies_order_over_max_notional() -> None:
    risk, _ = make_risk(max_notional_per_order=50_000.0)
    d = risk.check(submit("a", BUY, qty=1000, price=PX), book())
    assert d is not None and d.reason == DenyReason.NOTIONAL_EXCEEDS_MAX_PER_ORDER
    assert d.detail.startswith("notional 60000.0 > max 50000.0")
    assert risk.working_lots(SYMBOL, BUY) == 0


def test_risk_prices_market_orders_at_the_far_touch() -> None:
    risk, _ = make_risk(max_notional_per_order=60_000.0, max_position_lots=10_000)
    view = lots_book(bids=[(590_000, 5)], asks=[(610_000, 5)])
    # 1 BTC: buy at the ask 61000 > 60000, sell at the bid 59000 <= 60000
    assert reason(risk.check(submit("b", BUY, qty=1000), view)) == "NOTIONAL_EXCEEDS_MAX_PER_ORDER"
    assert risk.check(submit("s", SELL, qty=1000), view) is None
    no_asks = lots_book(bids=[(590_000, 5)])
    assert reason(risk.check(submit("b2", BUY, qty=1), no_asks)) == "BOOK_MISSING"


def test_risk_denies_bad_inputs_with_stable_codes() -> None:
    risk, _ = make_risk()
    assert reason(risk.check(submit("a", BUY, qty=1, price=PX, symbol="DOGEUSDT"), book())) == (
        "INSTRUMENT_UNKNOWN"
    )
    assert reason(risk.check(submit("b", BUY, qty=0, price=PX), book())) == "QTY_NOT_POSITIVE"
    assert reason(risk.check(submit("c", BUY, qty=1, price=0), book())) == "PRICE_NOT_POSITIVE"
    assert reason(risk.check(submit("d", BUY, qty=1, price=PX), None)) == "BOOK_MISSING"
    assert reason(risk.check(submit("e", BUY, qty=1, price=PX), book(quarantined=True))) == (
        "SYMBOL_QUARANTINED"
    )


def test_risk_denies_order_on_stale_book() -> None:
    risk, clock = make_risk(max_book_age_ms=100.0)
    view = book(ts=T0)
    clock.advance_to(T0 + 100_000_000)
    assert risk.check(submit("a", BUY, qty=1, price=PX), view) is None
    clock.advance_to(T0 + 100_000_001)
    d = risk.check(submit("b", BUY, qty=1, price=PX), view)
    assert d is not None and d.reason == DenyReason.BOOK_STALE and "> max 100.0 ms" in d.detail


def test_risk_denies_order_over_max_position_counting_working_orders() -> None:
    risk, _ = make_risk(max_position_lots=100)
    a = submit("a", BUY, qty=60, price=PX)
    assert risk.check(a, book()) is None
    d = risk.check(submit("b", BUY, qty=50, price=PX), book())
    assert d is not None and d.reason == DenyReason.POSITION_EXCEEDS_MAX
    assert "position 110 > max 100" in d.detail
    # the other side does not add to the worst case
    assert risk.check(submit("s", SELL, qty=100, price=PX + 5), book()) is None
    risk.on_event(OrderCanceled(ts_event=T0, ts_init=T0, client_order_id="a", symbol=SYMBOL))
    assert risk.check(submit("c", BUY, qty=50, price=PX), book()) is None


def test_risk_position_limit_uses_fills() -> None:
    risk, _ = make_risk(max_position_lots=100)
    a = submit("a", BUY, qty=90, price=PX)
    assert risk.check(a, book()) is None
    risk.on_event(filled(a, PX))
    assert risk.positions()[SYMBOL].qty_lots == 90
    assert risk.working_lots(SYMBOL, BUY) == 0
    assert reason(risk.check(submit("b", BUY, qty=11, price=PX), book())) == (
        "POSITION_EXCEEDS_MAX"
    )
    assert risk.check(submit("c", SELL, qty=190, price=PX), book()) is None
    assert reason(risk.check(submit("d", SELL, qty=1, price=PX), book())) == (
        "POSITION_EXCEEDS_MAX"
    )


def test_risk_rate_limit_is_a_token_bucket_and_denials_take_no_token() -> None:
    risk, clock = make_risk(max_orders_per_s=2.0, order_burst=3, max_position_lots=10_000)
    view = book()
    for i in range(3):
        assert risk.check(submit(f"a{i}", BUY, qty=1, price=PX), view) is None
    d = risk.check(submit("x", BUY, qty=1, price=PX), view)
    assert d is not None and d.reason == DenyReason.RATE_LIMIT_EXCEEDED
    clock.advance_to(T0 + 499_000_000)
    assert reason(risk.check(submit("y", BUY, qty=1, price=PX), view)) == "RATE_LIMIT_EXCEEDED"
    clock.advance_to(T0 + 500_000_000)
    view = book(ts=clock.now_ns())
    assert risk.check(submit("b", BUY, qty=1, price=PX), view) is None
    assert reason(risk.check(submit("z", BUY, qty=1, price=PX), view)) == "RATE_LIMIT_EXCEEDED"


def test_risk_kill_switch_trips_once_on_daily_loss_and_halts_trading() -> None:
    risk, _ = make_risk(daily_loss_limit=50.0)
    a = submit("a", BUY, qty=100, price=PX)  # 0.1 BTC: 1 tick = 0.01 USD
    assert risk.check(a, book()) is None
    risk.on_event(filled(a, PX, fee=1.0))
    assert risk.on_marks({SYMBOL: book(PX - 4_899)}) == []  # -48.99 - 1.0 fee = -49.99
    (ev,) = risk.on_marks({SYMBOL: book(PX - 4_900)})  # -49.00 - 1.0 = -50.0
    assert isinstance(ev, TradingStateChanged)
    assert (ev.state, ev.reason) == ("HALTED", "DAILY_LOSS_LIMIT")
    assert risk.state is TradingState.HALTED
    assert risk.on_marks({SYMBOL: book(PX - 9_000)}) == []
    assert reason(risk.check(submit("b", SELL, qty=1, price=PX), book())) == "TRADING_HALTED"


def test_risk_kill_switch_checks_after_fills() -> None:
    risk, _ = make_risk(daily_loss_limit=10.0)
    risk.on_marks({SYMBOL: book(PX)})
    a = submit("a", BUY, qty=100, price=PX + 1_000)  # buy 10 USD over the mark
    assert risk.check(a, book()) is None
    (ev,) = risk.on_event(filled(a, PX + 1_000))
    assert ev.state == "HALTED"


def test_risk_rearm_is_deliberate_and_counts_from_rearm_pnl() -> None:
    risk, _ = make_risk(daily_loss_limit=50.0)
    a = submit("a", BUY, qty=100, price=PX)
    risk.check(a, book())
    risk.on_event(filled(a, PX))
    assert risk.on_marks({SYMBOL: book(PX - 6_000)})
    assert risk.on_marks({SYMBOL: book(PX - 6_000)}) == []  # never automatic
    assert risk.state is TradingState.HALTED
    with pytest.raises(ValidationError):
        risk.rearm("", TOKEN)
    ev = risk.rearm("alice", TOKEN)
    assert (ev.state, ev.reason) == ("ACTIVE", "REARMED:alice")
    assert risk.on_marks({SYMBOL: book(PX - 6_000)}) == []
    assert risk.check(submit("b", SELL, qty=10, price=PX), book()) is None
    assert risk.on_marks({SYMBOL: book(PX - 11_000)})[0].reason == "DAILY_LOSS_LIMIT"


def test_risk_reducing_state_lets_only_reducing_orders_through() -> None:
    risk, _ = make_risk()
    a = submit("a", BUY, qty=30, price=PX)
    risk.check(a, book())
    risk.on_event(filled(a, PX))
    assert risk.reduce_only("operator").state == "REDUCING"
    assert reason(risk.check(submit("b", BUY, qty=1, price=PX), book())) == "TRADING_REDUCING"
    assert reason(risk.check(submit("c", SELL, qty=31, price=PX), book())) == "TRADING_REDUCING"
    assert risk.check(submit("d", SELL, qty=20, price=PX), book()) is None
    assert reason(risk.check(submit("e", SELL, qty=20, price=PX), book())) == "TRADING_REDUCING"


def test_risk_reduce_only_flag_must_reduce() -> None:
    risk, _ = make_risk()
    assert reason(risk.check(submit("a", SELL, qty=5, price=PX, reduce_only=True), book())) == (
        "REDUCE_ONLY_VIOLATION"
    )


def test_risk_snapshot_restore_round_trips_through_json() -> None:
    risk, clock = make_risk(daily_loss_limit=50.0)
    a = submit("a", BUY, qty=40, price=PX)
    risk.check(a, book())
    risk.on_event(filled(a, PX, qty=30))
    risk.on_marks({SYMBOL: book(PX - 100)})
    snap = json.loads(json.dumps(risk.snapshot()))
    risk2 = RiskEngine(RiskConfig(daily_loss_limit=50.0), instruments(), clock)
    risk2.restore(snap)
    assert risk2.snapshot() == risk.snapshot()
    assert risk2.working_lots(SYMBOL, BUY) == 10
    assert risk2.positions()[SYMBOL].qty_lots == 30


def test_risk_denies_a_client_order_id_still_working_and_frees_execution_duplicates() -> None:
    risk, _ = make_risk()
    a = submit("a", BUY, qty=10, price=PX)
    assert risk.check(a, book()) is None
    assert reason(risk.check(a, book())) == "DUPLICATE_CLIENT_ORDER_ID"
    risk.on_event(filled(a, PX))
    assert risk.check(a, book()) is None  # closed in risk: execution must refuse it
    risk.on_event(
        OrderError(
            ts_event=T0,
            ts_init=T0,
            client_order_id="a",
            symbol=SYMBOL,
            reason="DUPLICATE_CLIENT_ORDER_ID",
        )
    )
    assert risk.working_lots(SYMBOL, BUY) == 0


def test_deny_reasons_are_stable_strings() -> None:
    assert {r.value for r in DenyReason} >= {
        "INSTRUMENT_UNKNOWN",
        "QTY_NOT_POSITIVE",
        "PRICE_NOT_POSITIVE",
        "NOTIONAL_EXCEEDS_MAX_PER_ORDER",
        "POSITION_EXCEEDS_MAX",
        "RATE_LIMIT_EXCEEDED",
        "TRADING_HALTED",
        "SYMBOL_QUARANTINED",
        "BOOK_STALE",
        "BOOK_MISSING",
    }


# --- property: limits hold for any sequence -----------------------------------------------
MAX_POS, MAX_NOTIONAL, RATE, BURST, LOSS = 50, 1_500.0, 5.0, 4, 20.0

action = st.one_of(
    st.tuples(
        st.just("order"),
        st.sampled_from([BUY, SELL]),
        st.integers(1, 40),
        st.sampled_from(["market", "limit"]),
        st.integers(-50, 50),
    ),
    st.tuples(st.just("mark"), st.integers(-3_000, 3_000)),
    st.tuples(st.just("wait"), st.integers(0, 1_000_000_000)),
)


@settings(max_examples=150, deadline=None)
@given(actions=st.lists(action, max_size=40))
def test_property_risk_limits_hold_for_any_sequence(actions: list[tuple]) -> None:
    risk, clock = make_risk(
        max_position_lots=MAX_POS,
        max_notional_per_order=MAX_NOTIONAL,
        max_orders_per_s=RATE,
        order_burst=BURST,
        daily_loss_limit=LOSS,
    )
    ref = AvgCostModel()
    mid = PX
    approved_at: list[int] = []
    tripped = False
    n = 0

    def after(changes: list[TradingStateChanged]) -> None:
        nonlocal tripped
        assert risk.pnl() == pytest.approx(ref.total, abs=1e-6)
        should = risk.pnl() <= -LOSS
        if tripped:
            assert changes == []
            return
        assert [(c.state, c.reason) for c in changes] == (
            [("HALTED", "DAILY_LOSS_LIMIT")] if should else []
        )
        tripped = should
        assert risk.state is (TradingState.HALTED if tripped else TradingState.ACTIVE)

    for act in actions:
        if act[0] == "wait":
            clock.advance_to(clock.now_ns() + act[1])
            continue
        view = book(mid, ts=clock.now_ns())
        if act[0] == "mark":
            mid = PX + act[1]
            ref.mark = float(mid)
            after(risk.on_marks({SYMBOL: book(mid, ts=clock.now_ns())}))
            continue
        _, side, qty, kind, offset = act
        n += 1
        price = None if kind == "market" else mid + offset
        cmd = submit(f"o{n}", side, qty=qty, price=price, ts=clock.now_ns())
        denied = risk.check(cmd, view)
        if tripped:
            assert denied is not None and denied.reason == DenyReason.TRADING_HALTED
            continue
        if denied is not None:
            continue
        px = price if price is not None else (view.best_ask if side is BUY else view.best_bid)
        assert px is not None
        assert INS.notional(px, qty) <= MAX_NOTIONAL
        approved_at.append(clock.now_ns())
        fee = INS.notional(px, qty) * 4e-4
        ref.fill(side.sign, qty, px, fee)
        after(risk.on_event(filled(cmd, px, fee=fee)))
        assert abs(ref.qty) <= MAX_POS
        assert risk.positions()[SYMBOL].qty_lots == ref.qty
        assert risk.working_lots(SYMBOL, side) == 0

    # token bucket: any window [t_i, t_j] holds at most burst + rate * (t_j - t_i) approvals
    for i in range(len(approved_at)):
        for j in range(i, len(approved_at)):
            window_s = (approved_at[j] - approved_at[i]) / 1e9
            assert j - i + 1 <= BURST + RATE * window_s + 1e-9


def test_risk_prices_a_market_order_at_the_levels_it_would_sweep() -> None:
    risk, _clock = make_risk(max_notional_per_order=1_000.0, price_band_bps=20_000.0)
    sweep = lots_book(asks=[(1000, 1), (2000, 50)], bids=[(999, 5)])
    # priced at the touch, 9,000 lots (9 units) would cost 900; sweeping the asks costs ~1,800
    cmd = submit("m1", BUY, qty=9_000, price=None)
    denied = risk.check(cmd, sweep)
    assert denied is not None and denied.reason == "NOTIONAL_EXCEEDS_MAX_PER_ORDER"


def test_risk_denies_unknown_enum_values_instead_of_crashing() -> None:
    risk, _clock = make_risk()
    cmd = dataclasses.replace(submit("x1", BUY, qty=1, price=PX), tif="DAY")
    denied = risk.check(cmd, book())
    assert denied is not None and denied.reason == "INVALID_ORDER" and "'DAY'" in denied.detail


def test_working_lots_are_released_when_execution_refuses_the_submit() -> None:
    risk, _clock = make_risk()
    assert risk.check(submit("w1", BUY, qty=60, price=PX), book()) is None
    assert risk.working_lots(SYMBOL, BUY) == 60
    risk.on_event(OrderError(ts_event=T0, ts_init=T0, client_order_id="w1", symbol=SYMBOL,
                             reason="INVALID_COMMAND"))
    assert risk.working_lots(SYMBOL, BUY) == 0
