"""Execution engine, paper venue and portfolio (no Ray)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.clock import SimClock
from actors.core.messages import (
    LiquiditySide,
    ModifyOrder,
    OrderAccepted,
    OrderCanceled,
    OrderError,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    SubmitOrder,
    TimeInForce,
)
from actors.core.views import BookView
from actors.execution.engine import ExecutionEngine
from actors.execution.orders import (
    Order,
    OrderPendingCancel,
    OrderPendingUpdate,
    OrderTriggered,
    OrderUpdated,
)
from actors.execution.portfolio import Portfolio
from actors.execution.venue import PaperVenue
from cluster.config import ExecutionConfig
from tests.unit.factories import (
    SYMBOL,
    T0,
    AvgCostModel,
    cancel,
    instruments,
    lots_book,
    random_book,
    submit,
    trade,
)

BUY, SELL = OrderSide.BUY, OrderSide.SELL
INS = instruments()[SYMBOL]


def make_engine(
    latency_us: float = 0.0, venue: object | None = None, maker: float = 1.0, taker: float = 4.0
) -> tuple[ExecutionEngine, SimClock]:
    clock = SimClock(T0)
    cfg = ExecutionConfig(maker_fee_bps=maker, taker_fee_bps=taker, order_latency_us=latency_us)
    return ExecutionEngine(cfg, instruments(), clock, venue=venue), clock  # type: ignore[arg-type]


def of(events: Sequence[OrderEvent], cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


def books(view: BookView) -> dict[str, BookView]:
    return {SYMBOL: view}


# --- market orders --------------------------------------------------------------------------
def test_market_order_walks_levels_as_taker() -> None:
    eng, _ = make_engine()
    view = lots_book(bids=[(999, 5)], asks=[(1001, 5), (1002, 10)])
    evs = eng.execute([submit("m1", BUY, qty=8)], books(view))
    assert [type(e).__name__ for e in evs] == [
        "OrderSubmitted",
        "OrderAccepted",
        "OrderFilled",
        "OrderFilled",
    ]
    fills = of(evs, OrderFilled)
    assert [(f.last_qty_lots, f.last_px_ticks) for f in fills] == [(5, 1001), (3, 1002)]
    assert all(f.liquidity is LiquiditySide.TAKER for f in fills)
    assert [f.trade_id for f in fills] == ["m1-1", "m1-2"]
    o = eng.order("m1")
    assert o is not None and o.status is OrderStatus.FILLED and o.filled_lots == 8
    assert eng.positions()[SYMBOL].qty_lots == 8


def test_market_order_without_liquidity_is_accepted_then_canceled() -> None:
    eng, _ = make_engine()
    evs = eng.execute([submit("m1", BUY, qty=3)], books(lots_book(bids=[(999, 5)])))
    assert isinstance(evs[1], OrderAccepted)
    assert isinstance(evs[-1], OrderCanceled) and evs[-1].reason == "NO_LIQUIDITY"
    assert eng.order("m1").status is OrderStatus.CANCELED  # type: ignore[union-attr]


def test_market_order_partial_liquidity_cancels_the_rest() -> None:
    eng, _ = make_engine()
    evs = eng.execute([submit("m1", SELL, qty=9)], books(lots_book(bids=[(999, 4)])))
    assert [f.last_qty_lots for f in of(evs, OrderFilled)] == [4]
    assert evs[-1].reason == "NO_LIQUIDITY"  # type: ignore[attr-defined]
    o = eng.order("m1")
    assert o is not None and o.status is OrderStatus.CANCELED and o.filled_lots == 4


def test_liquidity_taken_on_a_view_is_not_reused_by_the_next_order() -> None:
    eng, _ = make_engine()
    view = lots_book(asks=[(1001, 5)], seq=1)
    evs = eng.execute([submit("a", BUY, qty=5), submit("b", BUY, qty=5)], books(view))
    assert [f.client_order_id for f in of(evs, OrderFilled)] == ["a"]
    assert eng.order("b").status is OrderStatus.CANCELED  # type: ignore[union-attr]
    # the same view again: still consumed
    evs = eng.execute([submit("c", BUY, qty=1)], books(view))
    assert not of(evs, OrderFilled)
    # a new view refreshes liquidity
    evs = eng.execute([submit("d", BUY, qty=2)], books(lots_book(asks=[(1001, 5)], seq=2)))
    assert [f.last_qty_lots for f in of(evs, OrderFilled)] == [2]


# --- limit orders: IOC / FOK / GTC ------------------------------------------------------------
def test_limit_ioc_fills_marketable_part_and_cancels_rest() -> None:
    eng, _ = make_engine()
    view = lots_book(asks=[(1001, 5), (1003, 10)])
    evs = eng.execute([submit("i1", BUY, qty=8, price=1002, tif=TimeInForce.IOC)], books(view))
    assert [(f.last_qty_lots, f.last_px_ticks) for f in of(evs, OrderFilled)] == [(5, 1001)]
    assert evs[-1].reason == "IOC"  # type: ignore[attr-defined]
    o = eng.order("i1")
    assert o is not None and o.status is OrderStatus.CANCELED and o.filled_lots == 5


def test_limit_fok_is_all_or_nothing() -> None:
    eng, _ = make_engine()
    view = lots_book(asks=[(1001, 5), (1002, 5), (1004, 50)], seq=1)
    evs = eng.execute([submit("f1", BUY, qty=11, price=1002, tif=TimeInForce.FOK)], books(view))
    assert not of(evs, OrderFilled)
    assert evs[-1].reason == "FOK"  # type: ignore[attr-defined]
    evs = eng.execute([submit("f2", BUY, qty=10, price=1002, tif=TimeInForce.FOK)], books(view))
    assert sum(f.last_qty_lots for f in of(evs, OrderFilled)) == 10
    assert eng.order("f2").status is OrderStatus.FILLED  # type: ignore[union-attr]


def test_limit_gtc_marketable_part_fills_then_rests() -> None:
    eng, _ = make_engine()
    view = lots_book(bids=[(999, 3)], asks=[(1001, 4)])
    evs = eng.execute([submit("g1", BUY, qty=10, price=1001)], books(view))
    assert [f.last_qty_lots for f in of(evs, OrderFilled)] == [4]
    o = eng.order("g1")
    assert o is not None and o.status is OrderStatus.PARTIALLY_FILLED
    assert [x.client_order_id for x in eng.open_orders()] == ["g1"]


def test_resting_order_filled_by_trades_after_queue_ahead_is_consumed() -> None:
    eng, _ = make_engine()
    v0 = lots_book(bids=[(1000, 7)], asks=[(1002, 5)], seq=1)
    eng.execute([submit("r1", BUY, qty=5, price=1000)], books(v0))
    venue = eng.venue
    assert isinstance(venue, PaperVenue)
    assert venue.resting_order("r1").queue_ahead_lots == 7  # type: ignore[union-attr]
    # 4 lots trade at our price: all of it eats the queue ahead of us
    v1 = lots_book(bids=[(1000, 3)], asks=[(1002, 5)], seq=2, trades=[trade(1000, 4, "SELL")])
    assert not of(eng.execute([], books(v1)), OrderFilled)
    assert venue.resting_order("r1").queue_ahead_lots == 3  # type: ignore[union-attr]
    # buyer-initiated trades never fill a resting bid
    v2 = lots_book(bids=[(1000, 3)], asks=[(1002, 5)], seq=3, trades=[trade(1002, 9, "BUY")])
    assert not of(eng.execute([], books(v2)), OrderFilled)
    # 6 more lots: 3 finish the queue, 3 fill us as maker
    v3 = lots_book(bids=[(1000, 1)], asks=[(1002, 5)], seq=4, trades=[trade(1000, 6, "SELL")])
    fills = of(eng.execute([], books(v3)), OrderFilled)
    assert [(f.last_qty_lots, f.last_px_ticks, f.liquidity) for f in fills] == [
        (3, 1000, LiquiditySide.MAKER)
    ]
    # a sell trade through our price fills the rest
    v4 = lots_book(bids=[(998, 1)], asks=[(1002, 5)], seq=5, trades=[trade(999, 2, "SELL")])
    fills = of(eng.execute([], books(v4)), OrderFilled)
    assert [(f.last_qty_lots, f.last_px_ticks) for f in fills] == [(2, 1000)]
    assert eng.order("r1").status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert not eng.open_orders()


def test_resting_order_filled_when_opposite_touch_crosses_it() -> None:
    eng, _ = make_engine()
    eng.execute(
        [submit("r1", SELL, qty=5, price=1002)],
        books(lots_book(bids=[(1000, 1)], asks=[(1002, 9)], seq=1)),
    )
    evs = eng.execute([], books(lots_book(bids=[(1003, 2), (1002, 1)], asks=[(1004, 1)], seq=2)))
    fills = of(evs, OrderFilled)
    assert [(f.last_qty_lots, f.last_px_ticks, f.liquidity) for f in fills] == [
        (3, 1002, LiquiditySide.MAKER)
    ]
    assert eng.order("r1").filled_lots == 3  # type: ignore[union-attr]


def test_trades_of_the_arrival_view_do_not_fill_a_new_resting_order() -> None:
    eng, _ = make_engine()
    view = lots_book(bids=[(1000, 0)], asks=[(1002, 5)], seq=1, trades=[trade(999, 5, "SELL")])
    eng.execute([submit("r1", BUY, qty=5, price=1000)], books(view))
    assert not of(eng.execute([], books(view)), OrderFilled)


def test_engine_marks_positions_to_mid_of_each_book() -> None:
    eng, _ = make_engine(taker=0.0)
    eng.execute([submit("a", BUY, qty=10)], books(lots_book(bids=[(999, 5)], asks=[(1001, 50)])))
    eng.execute([], books(lots_book(bids=[(1010, 5)], asks=[(1012, 5)], seq=2)))
    expected = INS.lots_to_float(10) * INS.ticks_to_float(1011 - 1001)
    assert eng.positions()[SYMBOL].unrealised_pnl == pytest.approx(expected)
    assert eng.portfolio.total_pnl() == pytest.approx(expected)


def test_fees_are_bps_of_notional_maker_and_taker() -> None:
    eng, _ = make_engine(maker=-1.0, taker=4.0)
    eng.execute([submit("t", BUY, qty=10)], books(lots_book(asks=[(600_000, 10)], seq=1)))
    taker_fee = INS.notional(600_000, 10) * 4.0 / 1e4
    assert eng.positions()[SYMBOL].fees == pytest.approx(taker_fee)
    eng.execute(
        [submit("m", SELL, qty=10, price=600_010)],
        books(lots_book(bids=[(599_990, 1)], asks=[(600_010, 0)], seq=2)),
    )
    evs = eng.execute(
        [],
        books(
            lots_book(
                bids=[(599_990, 1)], asks=[(600_020, 1)], seq=3, trades=[trade(600_010, 10, "BUY")]
            )
        ),
    )
    (f,) = of(evs, OrderFilled)
    assert f.fee == pytest.approx(-INS.notional(600_010, 10) * 1.0 / 1e4)
    pos = eng.positions()[SYMBOL]
    assert pos.qty_lots == 0 and pos.fees == pytest.approx(taker_fee + f.fee)
    assert pos.realised_pnl == pytest.approx(INS.lots_to_float(10) * INS.ticks_to_float(10))


# --- engine semantics ----------------------------------------------------------------------
def test_latency_sets_acceptance_time_and_advances_clock() -> None:
    eng, clock = make_engine(latency_us=300.0)
    cmd = submit("l1", BUY, qty=1, ts=T0, trigger_ts_init=T0 - 50)
    evs = eng.execute([cmd], books(lots_book(asks=[(1001, 5)])))
    sub, acc = evs[0], evs[1]
    assert isinstance(sub, OrderSubmitted) and sub.ts_init == T0
    assert isinstance(acc, OrderAccepted)
    assert acc.ts_event == T0 + 300_000 and acc.trigger_ts_init == T0 - 50
    assert clock.now_ns() == T0 + 300_000


def test_duplicate_client_order_id_is_an_error_and_changes_nothing() -> None:
    eng, _ = make_engine()
    view = lots_book(asks=[(1001, 50)], seq=1)
    eng.execute([submit("d1", BUY, qty=2)], books(view))
    before = eng.snapshot()
    evs = eng.execute([submit("d1", BUY, qty=3)], books(view))
    assert len(evs) == 1 and isinstance(evs[0], OrderError)
    assert evs[0].reason == "DUPLICATE_CLIENT_ORDER_ID"
    assert eng.snapshot() == before


def test_unknown_cancel_is_an_error() -> None:
    eng, _ = make_engine()
    (ev,) = eng.execute([cancel("nope")], {})
    assert isinstance(ev, OrderError) and ev.reason == "UNKNOWN_ORDER"


def test_cancel_resting_order_then_cancel_again_is_illegal() -> None:
    eng, _ = make_engine()
    view = lots_book(bids=[(1000, 5)], asks=[(1002, 5)], seq=1)
    eng.execute([submit("c1", BUY, qty=3, price=1000)], books(view))
    evs = eng.execute([cancel("c1")], books(view))
    assert [type(e).__name__ for e in evs] == ["OrderPendingCancel", "OrderCanceled"]
    assert eng.order("c1").status is OrderStatus.CANCELED  # type: ignore[union-attr]
    (err,) = eng.execute([cancel("c1")], {})
    assert isinstance(err, OrderError) and err.reason == "ILLEGAL_TRANSITION"


class ScriptedVenue:
    """A venue that accepts everything and replays scripted events on cancel/on_market."""

    def __init__(self) -> None:
        self.on_cancel: list[OrderEvent] = []
        self.on_modify: list[OrderEvent] = []
        self.on_tick: list[OrderEvent] = []

    def submit(self, order: Order, book: BookView | None, now_ns: int) -> list[OrderEvent]:
        return [
            OrderAccepted(
                ts_event=now_ns,
                ts_init=now_ns,
                venue_order_id="V-1",
                client_order_id=order.client_order_id,
                symbol=order.symbol,
            )
        ]

    def cancel(self, order: Order, now_ns: int) -> list[OrderEvent]:
        out, self.on_cancel = self.on_cancel, []
        return out

    def modify(
        self,
        order: Order,
        qty_lots: int | None,
        price_ticks: int | None,
        trigger_price_ticks: int | None,
        book: BookView | None,
        now_ns: int,
    ) -> list[OrderEvent]:
        out, self.on_modify = self.on_modify, []
        return out

    def expire(self, order: Order, now_ns: int) -> list[OrderEvent]:
        return [
            OrderExpired(
                ts_event=now_ns,
                ts_init=now_ns,
                client_order_id=order.client_order_id,
                symbol=order.symbol,
            )
        ]

    def on_market(self, book: BookView, now_ns: int) -> list[OrderEvent]:
        out, self.on_tick = self.on_tick, []
        return out


def vfill(coid: str, trade_id: str, qty: int, px: int = 1000) -> OrderFilled:
    return OrderFilled(
        ts_event=T0,
        ts_init=T0,
        client_order_id=coid,
        symbol=SYMBOL,
        trade_id=trade_id,
        side=BUY,
        last_qty_lots=qty,
        last_px_ticks=px,
        liquidity=LiquiditySide.MAKER,
    )


def vcancel(coid: str) -> OrderCanceled:
    return OrderCanceled(ts_event=T0, ts_init=T0, client_order_id=coid, symbol=SYMBOL)


def test_fill_racing_cancel_is_applied_then_cancel() -> None:
    venue = ScriptedVenue()
    eng, _ = make_engine(venue=venue)
    view = lots_book(bids=[(999, 1)], asks=[(1001, 1)])
    eng.execute([submit("x", BUY, qty=10, price=1000)], books(view))
    venue.on_cancel = [vfill("x", "x-1", 4), vcancel("x")]
    evs = eng.execute([cancel("x")], books(view))
    assert [type(e) for e in evs] == [OrderPendingCancel, OrderFilled, OrderCanceled]
    o = eng.order("x")
    assert o is not None and o.status is OrderStatus.CANCELED and o.filled_lots == 4
    assert eng.positions()[SYMBOL].qty_lots == 4


def test_fill_racing_amend_is_applied_then_the_update() -> None:
    venue = ScriptedVenue()
    eng, _ = make_engine(venue=venue)
    view = lots_book(bids=[(999, 1)], asks=[(1001, 1)])
    eng.execute([submit("x", BUY, qty=10, price=1000)], books(view))
    venue.on_modify = [
        vfill("x", "x-1", 4),
        OrderUpdated(ts_event=T0, ts_init=T0, client_order_id="x", symbol=SYMBOL, qty_lots=6),
    ]
    evs = eng.execute(
        [ModifyOrder(ts_event=T0, ts_init=T0, client_order_id="x", symbol=SYMBOL, qty_lots=6)],
        books(view),
    )
    assert [type(e) for e in evs] == [OrderPendingUpdate, OrderFilled, OrderUpdated]
    o = eng.order("x")
    assert o is not None and o.status is OrderStatus.PARTIALLY_FILLED
    assert (o.filled_lots, o.qty_lots) == (4, 6)


def test_trigger_racing_cancel_is_legal_and_cancel_still_closes() -> None:
    venue = ScriptedVenue()
    eng, _ = make_engine(venue=venue)
    view = lots_book(bids=[(999, 1)], asks=[(1001, 1)])
    stop = SubmitOrder(
        ts_event=T0,
        ts_init=T0,
        client_order_id="s",
        symbol=SYMBOL,
        side=BUY,
        order_type=OrderType.STOP_MARKET,
        qty_lots=2,
        trigger_price_ticks=1005,
    )
    eng.execute([stop], books(view))
    venue.on_cancel = [
        OrderTriggered(ts_event=T0, ts_init=T0, client_order_id="s", symbol=SYMBOL),
        vfill("s", "s-1", 2),
        vcancel("s"),
    ]
    evs = eng.execute([cancel("s")], books(view))
    assert [type(e) for e in evs] == [OrderPendingCancel, OrderTriggered, OrderFilled, OrderError]
    assert evs[-1].reason == "ILLEGAL_TRANSITION"  # type: ignore[attr-defined]
    assert eng.order("s").status is OrderStatus.FILLED  # type: ignore[union-attr]


def test_venue_expiry_of_an_order_past_expire_ts() -> None:
    venue = ScriptedVenue()
    eng, clock = make_engine(venue=venue)
    view = lots_book(bids=[(999, 1)], asks=[(1001, 1)])
    cmd = SubmitOrder(
        ts_event=T0,
        ts_init=T0,
        client_order_id="g",
        symbol=SYMBOL,
        side=BUY,
        order_type=OrderType.LIMIT,
        qty_lots=2,
        price_ticks=990,
        expire_ts_ns=T0 + 5,
    )
    eng.execute([cmd], books(view))
    clock.advance_to(T0 + 5)
    (ev,) = eng.execute([], {})
    assert isinstance(ev, OrderExpired)
    assert eng.order("g").status is OrderStatus.EXPIRED  # type: ignore[union-attr]


def test_fill_after_cancel_is_an_error_and_not_booked() -> None:
    venue = ScriptedVenue()
    eng, _ = make_engine(venue=venue)
    view = lots_book(bids=[(999, 1)], asks=[(1001, 1)])
    eng.execute([submit("x", BUY, qty=10, price=1000)], books(view))
    venue.on_cancel = [vcancel("x")]
    eng.execute([cancel("x")], books(view))
    venue.on_tick = [vfill("x", "x-1", 4)]
    (err,) = eng.execute([], books(view))
    assert isinstance(err, OrderError) and err.reason == "ILLEGAL_TRANSITION"
    assert SYMBOL not in eng.positions()


def test_duplicate_trade_id_is_rejected_and_booked_once() -> None:
    venue = ScriptedVenue()
    eng, _ = make_engine(venue=venue)
    view = lots_book(bids=[(999, 1)], asks=[(1001, 1)])
    eng.execute([submit("x", BUY, qty=10, price=1000)], books(view))
    venue.on_tick = [vfill("x", "x-1", 3), vfill("x", "x-1", 3)]
    evs = eng.execute([], books(view))
    assert isinstance(evs[0], OrderFilled)
    assert isinstance(evs[1], OrderError) and evs[1].reason == "DUPLICATE_TRADE_ID"
    assert eng.order("x").filled_lots == 3  # type: ignore[union-attr]
    assert eng.positions()[SYMBOL].qty_lots == 3


def test_overfill_is_recorded_and_reported() -> None:
    venue = ScriptedVenue()
    eng, _ = make_engine(venue=venue)
    view = lots_book(bids=[(999, 1)], asks=[(1001, 1)])
    eng.execute([submit("x", BUY, qty=10, price=1000)], books(view))
    venue.on_tick = [vfill("x", "x-1", 8), vfill("x", "x-2", 5)]
    evs = eng.execute([], books(view))
    assert [type(e) for e in evs] == [OrderFilled, OrderFilled, OrderError]
    assert evs[2].reason == "OVERFILL"  # type: ignore[attr-defined]
    o = eng.order("x")
    assert o is not None and o.status is OrderStatus.FILLED
    assert o.filled_lots == 10 and o.overfill_lots == 3
    assert eng.positions()[SYMBOL].qty_lots == 13  # the venue really traded 13


def test_venue_rejects_unknown_instrument_and_missing_book() -> None:
    eng, _ = make_engine()
    evs = eng.execute([submit("u", BUY, qty=1, symbol="DOGEUSDT"), submit("n", BUY, qty=1)], {})
    rejected = [e for e in evs if type(e).__name__ == "OrderRejected"]
    assert [r.reason for r in rejected] == ["INSTRUMENT_UNKNOWN", "NO_MARKET_DATA"]
    assert eng.order("u").status is OrderStatus.REJECTED  # type: ignore[union-attr]


def test_snapshot_restore_round_trips_through_json() -> None:
    eng, _ = make_engine()
    eng.execute(
        [submit("a", BUY, qty=4), submit("r", SELL, qty=5, price=1003)],
        books(lots_book(bids=[(999, 1)], asks=[(1001, 10), (1003, 2)], seq=1)),
    )
    snap = json.loads(json.dumps(eng.snapshot()))
    eng2, _ = make_engine()
    eng2.restore(snap)
    assert eng2.snapshot() == eng.snapshot()
    assert [o.client_order_id for o in eng2.open_orders()] == ["r"]
    (err,) = eng2.execute([submit("a", BUY, qty=1)], {})
    assert err.reason == "DUPLICATE_CLIENT_ORDER_ID"  # type: ignore[attr-defined]
    evs = eng2.execute([], books(lots_book(bids=[(1003, 9)], asks=[(1004, 1)], seq=2)))
    assert [f.trade_id for f in of(evs, OrderFilled)] == ["r-1"]


# --- portfolio ------------------------------------------------------------------------------
def pf_fill(side: OrderSide, qty: int, px: int, fee: float = 0.0, n: int = 0) -> OrderFilled:
    return OrderFilled(
        ts_event=0,
        ts_init=0,
        client_order_id="p",
        symbol=SYMBOL,
        trade_id=f"p-{n}",
        side=side,
        last_qty_lots=qty,
        last_px_ticks=px,
        liquidity=LiquiditySide.TAKER,
        fee=fee,
    )


def test_portfolio_flip_realises_closed_part_and_reopens_at_fill_price() -> None:
    pf = Portfolio()
    pf.apply_fill(pf_fill(BUY, 10, 1000, fee=0.5), INS)
    pf.apply_fill(pf_fill(BUY, 10, 1010), INS)
    pos = pf.position(SYMBOL)
    assert pos is not None and pos.qty_lots == 20 and pos.avg_px_ticks == pytest.approx(1005)
    realised = pf.apply_fill(pf_fill(SELL, 30, 1020, fee=0.25), INS)
    assert realised == pytest.approx(INS.lots_to_float(20) * INS.ticks_to_float(15))
    assert pos.qty_lots == -10 and pos.avg_px_ticks == 1020
    assert pf.mark(SYMBOL, 1000.0) == pytest.approx(INS.lots_to_float(10) * INS.ticks_to_float(20))
    assert pf.total_pnl() == pytest.approx(realised - 0.75 + pos.unrealised_pnl)
    pf.apply_fill(pf_fill(BUY, 10, 1000), INS)
    assert pos.qty_lots == 0 and pos.avg_px_ticks == 0.0 and pos.unrealised_pnl == 0.0
    snap = json.loads(json.dumps(pf.snapshot()))
    assert Portfolio.restore(snap).snapshot() == pf.snapshot()


# --- property: positions reconcile with fills; histories are legal paths -------------------


order_spec = st.tuples(
    st.sampled_from(["market", "limit", "cancel"]),
    st.sampled_from([BUY, SELL]),
    st.integers(1, 25),
    st.integers(990, 1010),
    st.sampled_from(list(TimeInForce)),
    st.integers(0, 12),
)


@settings(max_examples=120, deadline=None)
@given(data=st.data(), n_steps=st.integers(1, 8))
def test_property_positions_reconcile_with_fills_and_histories_are_legal(
    data: st.DataObject, n_steps: int
) -> None:
    eng, _ = make_engine()
    submits: dict[str, object] = {}
    all_events: list[OrderEvent] = []
    n = 0
    for step in range(n_steps):
        view = data.draw(random_book(step + 1))
        cmds = []
        for kind, side, qty, px, tif, target in data.draw(st.lists(order_spec, max_size=4)):
            if kind == "cancel":
                cmds.append(cancel(f"o{target}"))
                continue
            n += 1
            cmd = submit(f"o{n}", side, qty=qty, price=None if kind == "market" else px, tif=tif)
            submits[cmd.client_order_id] = cmd
            cmds.append(cmd)
        all_events.extend(eng.execute(cmds, books(view)))

    errors = of(all_events, OrderError)
    assert {e.reason for e in errors} <= {"UNKNOWN_ORDER", "ILLEGAL_TRANSITION"}
    fills = of(all_events, OrderFilled)
    assert len({f.trade_id for f in fills}) == len(fills)

    # positions and realised PnL recomputed independently (average cost)
    ref = AvgCostModel()
    for f in fills:
        ref.fill(f.side.sign, f.last_qty_lots, f.last_px_ticks, f.fee)
    pos = eng.positions().get(SYMBOL)
    if fills:
        assert pos is not None
        assert pos.qty_lots == ref.qty == sum(f.side.sign * f.last_qty_lots for f in fills)
        assert pos.realised_pnl == pytest.approx(ref.realised, abs=1e-9)
        assert pos.fees == pytest.approx(ref.fees, abs=1e-12)
        assert pos.avg_px_ticks == pytest.approx(ref.avg)
    else:
        assert pos is None

    # every order's event history is a legal path through the table, ending where the engine is
    by_order: dict[str, list[OrderEvent]] = {}
    for e in all_events:
        if not isinstance(e, OrderError):
            by_order.setdefault(e.client_order_id, []).append(e)
    for coid, cmd in submits.items():
        replay = Order.from_submit(cmd)  # type: ignore[arg-type]
        for e in by_order.get(coid, []):
            replay.apply(e)  # raises on an illegal path
        live = eng.order(coid)
        assert live is not None and replay.status is live.status
        assert live.filled_lots == sum(f.last_qty_lots for f in fills if f.client_order_id == coid)
        assert live.overfill_lots == 0 and live.filled_lots <= live.qty_lots
        if live.tif is TimeInForce.FOK and live.order_type.value == "LIMIT":
            assert live.filled_lots in (0, live.qty_lots)
        if live.tif is not TimeInForce.GTC or live.order_type.value == "MARKET":
            assert live.is_closed


def test_a_trade_through_fills_resting_orders_no_more_than_its_size() -> None:
    eng, _ = make_engine()
    v0 = lots_book(bids=[(1000, 7)], asks=[(1002, 5)], seq=1)
    eng.execute(
        [submit("a", BUY, qty=50, price=1000), submit("b", BUY, qty=50, price=1000)], books(v0)
    )
    v1 = lots_book(bids=[(998, 1)], asks=[(1002, 5)], seq=2, trades=[trade(999, 1, "SELL")])
    fills = of(eng.execute([], books(v1)), OrderFilled)
    assert [(f.client_order_id, f.last_qty_lots) for f in fills] == [("a", 1)]


def test_closed_orders_are_kept_for_a_window_then_forgotten() -> None:
    clock = SimClock(T0)
    cfg = ExecutionConfig(order_latency_us=0.0, closed_orders_kept=2)
    eng = ExecutionEngine(cfg, instruments(), clock)
    view = lots_book(bids=[(999, 50)], asks=[(1001, 50)])
    for k in range(5):  # five IOC buys: each fills and closes
        eng.execute([submit(f"o{k}", BUY, qty=1, price=1001, tif=TimeInForce.IOC)], books(view))
    assert [o.client_order_id for o in eng.orders()] == ["o3", "o4"]
    assert len(json.loads(json.dumps(eng.snapshot()))["orders"]) == 2  # bounded checkpoint
    again = eng.execute([submit("o4", BUY, qty=1, price=1001)], books(view))
    assert [e.reason for e in of(again, OrderError)] == ["DUPLICATE_CLIENT_ORDER_ID"]
    late = eng.execute([cancel("o0")], books(view))  # forgotten: an unknown order now
    assert [e.reason for e in of(late, OrderError)] == ["UNKNOWN_ORDER"]
    assert eng.positions()[SYMBOL].qty_lots == 5  # the portfolio keeps every fill
    restored, _ = make_engine()
    restored.restore(eng.snapshot())
    assert [o.client_order_id for o in restored.orders()] == ["o3", "o4"]
