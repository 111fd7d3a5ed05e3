"""Order state machine: the transition table, fills, duplicates, overfills, races."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.errors import IllegalTransition, ValidationError
from actors.core.messages import (
    LiquiditySide,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    SubmitOrder,
)
from actors.execution.orders import (
    TERMINAL,
    TRANSITIONS,
    Bracket,
    DuplicateTradeId,
    Order,
    OrderModifyRejected,
    OrderPendingCancel,
    OrderPendingUpdate,
    OrderTriggered,
    OrderUpdated,
    transition,
)
from tests.unit.factories import submit

S = OrderStatus
COID = "o-1"
BASE = {"ts_event": 5, "ts_init": 5, "client_order_id": COID, "symbol": "BTCUSDT"}


def new_order(qty: int = 10) -> Order:
    return Order.from_submit(submit(COID, OrderSide.BUY, qty=qty, price=1000))


def fill(trade_id: str, qty: int, px: int = 1000, side: OrderSide = OrderSide.BUY) -> OrderFilled:
    return OrderFilled(
        trade_id=trade_id,
        side=side,
        last_qty_lots=qty,
        last_px_ticks=px,
        liquidity=LiquiditySide.TAKER,
        **BASE,
    )


def working_order(qty: int = 10) -> Order:
    o = new_order(qty)
    o.apply(OrderSubmitted(**BASE))
    o.apply(OrderAccepted(venue_order_id="P-1", **BASE))
    return o


def test_order_happy_path_partial_then_filled() -> None:
    o = working_order(10)
    assert o.status is S.ACCEPTED and o.venue_order_id == "P-1" and o.is_open
    assert o.apply(fill("t1", 4, px=1000)) is S.PARTIALLY_FILLED
    assert o.leaves_lots == 6
    assert o.apply(fill("t2", 6, px=1010)) is S.FILLED
    assert o.filled_lots == 10 and o.leaves_lots == 0 and o.is_closed
    assert o.avg_px_ticks == pytest.approx((4 * 1000 + 6 * 1010) / 10)
    assert o.ts_closed == 5 and o.event_count == 4


def test_order_fill_from_initialized_is_illegal_and_leaves_order_unchanged() -> None:
    o = new_order()
    before = o.to_dict()
    with pytest.raises(IllegalTransition):
        o.apply(fill("t1", 1))
    assert o.to_dict() == before


def test_order_denied_is_terminal() -> None:
    o = new_order()
    assert o.apply(OrderDenied(reason="X", **BASE)) is S.DENIED
    with pytest.raises(IllegalTransition):
        o.apply(OrderSubmitted(**BASE))


def test_order_fill_racing_cancel_is_legal() -> None:
    o = working_order(10)
    o.apply(OrderPendingCancel(**BASE))
    assert o.apply(fill("t1", 3)) is S.PARTIALLY_FILLED
    assert o.apply(OrderCanceled(**BASE)) is S.CANCELED
    assert o.filled_lots == 3


def test_order_full_fill_racing_cancel_goes_filled() -> None:
    o = working_order(10)
    o.apply(OrderPendingCancel(**BASE))
    assert o.apply(fill("t1", 10)) is S.FILLED


def test_order_fill_after_cancel_is_illegal() -> None:
    o = working_order(10)
    o.apply(OrderCanceled(**BASE))
    with pytest.raises(IllegalTransition):
        o.apply(fill("t1", 1))
    assert o.filled_lots == 0 and o.status is S.CANCELED


def test_order_cancel_refused_returns_to_working_status() -> None:
    o = working_order(10)
    o.apply(fill("t1", 2))
    o.apply(OrderPendingCancel(**BASE))
    assert o.apply(OrderAccepted(venue_order_id="P-1", **BASE)) is S.PARTIALLY_FILLED


def test_order_update_after_partial_fill_returns_to_partially_filled() -> None:
    o = working_order(10)
    o.apply(fill("t1", 2))
    o.apply(OrderPendingUpdate(**BASE))
    assert o.apply(OrderUpdated(price_ticks=990, **BASE)) is S.PARTIALLY_FILLED
    assert o.price_ticks == 990


def test_order_duplicate_trade_id_is_rejected_and_order_unchanged() -> None:
    o = working_order(10)
    o.apply(fill("t1", 2))
    before = o.to_dict()
    with pytest.raises(DuplicateTradeId):
        o.apply(fill("t1", 2))
    assert o.to_dict() == before


def test_order_overfill_is_recorded_and_order_filled() -> None:
    o = working_order(10)
    o.apply(fill("t1", 6, px=1000))
    assert o.apply(fill("t2", 7, px=1002)) is S.FILLED
    assert o.filled_lots == 10 and o.overfill_lots == 3
    assert o.avg_px_ticks == pytest.approx((6 * 1000 + 4 * 1002) / 10)


def test_order_malformed_fill_is_a_validation_error() -> None:
    o = working_order(10)
    with pytest.raises(ValidationError):
        o.apply(fill("t1", 0))
    with pytest.raises(ValidationError):
        o.apply(fill("t2", 1, side=OrderSide.SELL))
    with pytest.raises(ValidationError):
        o.apply(OrderCanceled(ts_event=1, ts_init=1, client_order_id="other", symbol="BTCUSDT"))
    assert o.status is S.ACCEPTED and o.filled_lots == 0


def test_transition_table_covers_every_status_and_terminals_are_dead_ends() -> None:
    assert set(TRANSITIONS) == set(OrderStatus)
    assert {S.DENIED, S.REJECTED, S.FILLED, S.CANCELED, S.EXPIRED} == TERMINAL
    for status in TERMINAL:
        assert TRANSITIONS[status] == {}
    assert "OrderFilled" not in TRANSITIONS[S.CANCELED]
    assert TRANSITIONS[S.PENDING_CANCEL]["OrderFilled"] is S.PARTIALLY_FILLED


def test_order_round_trips_through_json() -> None:
    o = working_order(10)
    o.apply(fill("t1", 3))
    d = json.loads(json.dumps(o.to_dict()))
    o2 = Order.from_dict(d)
    assert o2.to_dict() == o.to_dict()
    assert o2.trade_ids == {"t1"}


def test_transition_resolves_fills_by_quantity_for_journal_walkers() -> None:
    kw = {"qty_lots": 10}
    assert transition(S.ACCEPTED, "OrderFilled", filled_lots=0, last_qty_lots=4, **kw) is (
        S.PARTIALLY_FILLED
    )
    assert transition("PARTIALLY_FILLED", "OrderFilled", filled_lots=4, last_qty_lots=6, **kw) is (
        S.FILLED
    )
    assert transition(S.PENDING_CANCEL, "OrderAccepted", filled_lots=3, **kw) is (
        S.PARTIALLY_FILLED
    )
    with pytest.raises(IllegalTransition):
        transition(S.CANCELED, "OrderFilled", filled_lots=0, last_qty_lots=1, **kw)


def test_order_fill_racing_amend_then_update_ack_is_legal() -> None:
    o = working_order(10)
    o.apply(OrderPendingUpdate(**BASE))
    assert o.apply(fill("t1", 3)) is S.PARTIALLY_FILLED
    assert o.apply(OrderUpdated(qty_lots=6, **BASE)) is S.PARTIALLY_FILLED
    assert (o.qty_lots, o.leaves_lots) == (6, 3)


def test_order_amend_refused_returns_to_working_and_keeps_values() -> None:
    o = working_order(10)
    o.apply(OrderPendingUpdate(**BASE))
    assert o.apply(OrderModifyRejected(reason="POST_ONLY_WOULD_CROSS", **BASE)) is S.ACCEPTED
    assert o.qty_lots == 10 and o.price_ticks == 1000


def test_order_amend_down_to_filled_quantity_fills_it() -> None:
    o = working_order(10)
    o.apply(fill("t1", 4))
    o.apply(OrderPendingUpdate(**BASE))
    assert o.apply(OrderUpdated(qty_lots=4, **BASE)) is S.FILLED
    assert o.is_closed and o.ts_closed == 5


def stop_order() -> Order:
    cmd = SubmitOrder(
        ts_event=1,
        ts_init=1,
        client_order_id=COID,
        symbol="BTCUSDT",
        side=OrderSide.SELL,
        order_type=OrderType.STOP_LIMIT,
        qty_lots=4,
        price_ticks=990,
        trigger_price_ticks=995,
        expire_ts_ns=99,
        post_only=False,
    )
    return Order.from_submit(cmd)


def test_stop_order_trigger_is_recorded_and_trigger_price_amendable() -> None:
    o = stop_order()
    assert o.trigger_price_ticks == 995 and o.expire_ts_ns == 99 and not o.is_triggered
    o.apply(OrderSubmitted(**BASE))
    o.apply(OrderAccepted(venue_order_id="P-1", **BASE))
    o.apply(OrderPendingUpdate(**BASE))
    o.apply(OrderUpdated(trigger_price_ticks=994, **BASE))
    assert o.trigger_price_ticks == 994
    trig = {**BASE, "ts_event": 7}
    assert o.apply(OrderTriggered(**trig)) is S.TRIGGERED
    assert o.is_triggered and o.ts_triggered == 7


def test_trigger_racing_cancel_is_legal() -> None:
    o = stop_order()
    o.apply(OrderSubmitted(**BASE))
    o.apply(OrderAccepted(venue_order_id="P-1", **BASE))
    o.apply(OrderPendingCancel(**BASE))
    assert o.apply(OrderTriggered(**BASE)) is S.TRIGGERED
    assert o.apply(OrderCanceled(**BASE)) is S.CANCELED


def test_order_with_new_fields_round_trips_and_old_dicts_still_load() -> None:
    o = stop_order()
    o.parent_order_id, o.oco_order_id = "E", "E-TP"
    assert Order.from_dict(json.loads(json.dumps(o.to_dict()))).to_dict() == o.to_dict()
    old = {
        k: v
        for k, v in working_order().to_dict().items()
        if k
        not in (
            "trigger_price_ticks",
            "expire_ts_ns",
            "post_only",
            "parent_order_id",
            "oco_order_id",
            "ts_triggered",
        )
    }
    loaded = Order.from_dict(old)
    assert loaded.trigger_price_ticks is None and loaded.oco_order_id == "" and not loaded.post_only


def test_bracket_round_trips_and_names_the_other_exit() -> None:
    b = Bracket(
        "E", "E-TP", "E-SL", 1010, 990, None, resolved=True, sized={"E-TP": 3}, canceled={"E-SL"}
    )
    assert Bracket.from_dict(json.loads(json.dumps(b.to_dict()))).to_dict() == b.to_dict()
    assert b.other("E-TP") == "E-SL" and b.other("E-SL") == "E-TP"


# --- property: only legal transitions -------------------------------------------------------
def _event(kind: str, qty: int, trade_no: int) -> OrderEvent:
    if kind == "OrderFilled":
        return fill(f"t{trade_no}", qty, px=1000 + trade_no)
    if kind == "OrderAccepted":
        return OrderAccepted(venue_order_id="P-1", **BASE)
    if kind in ("OrderDenied", "OrderRejected"):
        cls = OrderDenied if kind == "OrderDenied" else OrderRejected
        return cls(reason="X", **BASE)
    if kind == "OrderUpdated":
        return OrderUpdated(price_ticks=999, **BASE)
    if kind == "OrderModifyRejected":
        return OrderModifyRejected(reason="X", **BASE)
    classes = {
        "OrderSubmitted": OrderSubmitted,
        "OrderCanceled": OrderCanceled,
        "OrderExpired": OrderExpired,
        "OrderPendingCancel": OrderPendingCancel,
        "OrderPendingUpdate": OrderPendingUpdate,
        "OrderTriggered": OrderTriggered,
    }
    return classes[kind](**BASE)


EVENT_KINDS = [
    "OrderSubmitted",
    "OrderAccepted",
    "OrderRejected",
    "OrderDenied",
    "OrderFilled",
    "OrderFilled",
    "OrderFilled",
    "OrderCanceled",
    "OrderExpired",
    "OrderPendingCancel",
    "OrderPendingUpdate",
    "OrderUpdated",
    "OrderModifyRejected",
    "OrderTriggered",
]


@settings(max_examples=200, deadline=None)
@given(
    qty=st.integers(1, 20),
    steps=st.lists(
        st.tuples(st.sampled_from(EVENT_KINDS), st.integers(1, 12), st.integers(0, 6)),
        max_size=25,
    ),
)
def test_property_order_only_takes_legal_transitions(
    qty: int, steps: list[tuple[str, int, int]]
) -> None:
    o = new_order(qty)
    applied_fill_lots = 0
    for kind, n, trade_no in steps:
        ev = _event(kind, n, trade_no)
        before = o.to_dict()
        allowed = TRANSITIONS[o.status]
        legal = kind in allowed and not (isinstance(ev, OrderFilled) and ev.trade_id in o.trade_ids)
        if legal:
            new = o.apply(ev)
            target = allowed[kind]
            if kind == "OrderFilled":
                applied_fill_lots += n
                assert new in (S.PARTIALLY_FILLED, S.FILLED)
                assert (new is S.FILLED) == (o.filled_lots == o.qty_lots)
            elif target is S.ACCEPTED and before["status"] in ("PENDING_CANCEL", "PENDING_UPDATE"):
                assert new in (S.ACCEPTED, S.PARTIALLY_FILLED)
            else:
                assert new is target
        else:
            with pytest.raises((IllegalTransition, DuplicateTradeId)):
                o.apply(ev)
            assert o.to_dict() == before
        assert 0 <= o.filled_lots <= o.qty_lots
        assert o.filled_lots + o.overfill_lots == applied_fill_lots
        assert (o.overfill_lots == 0) or o.status is S.FILLED
