"""Order types (stops, post-only, FOK, expiry, amends, brackets), queue models and latency."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError as PydanticValidationError

from actors.core.clock import SimClock
from actors.core.errors import ValidationError
from actors.core.messages import (
    CancelOrder,
    LiquiditySide,
    ModifyOrder,
    OrderAccepted,
    OrderCanceled,
    OrderError,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    SubmitBracket,
    SubmitOrder,
    TimeInForce,
)
from actors.core.views import BookView
from actors.execution.engine import ExecutionEngine, OrderLatency, splitmix64
from actors.execution.orders import (
    TRANSITIONS,
    Order,
    OrderModifyRejected,
    OrderPendingUpdate,
    OrderUpdated,
)
from actors.execution.venue import PaperVenue, prob_queue_ahead, reference_price
from cluster.config import ExecutionConfig
from tests.unit.factories import (
    SYMBOL,
    T0,
    AvgCostModel,
    instruments,
    lots_book,
    random_book,
    trade,
)

BUY, SELL = OrderSide.BUY, OrderSide.SELL
S = OrderStatus
MKT, LMT = OrderType.MARKET, OrderType.LIMIT
STOP, STOP_LMT = OrderType.STOP_MARKET, OrderType.STOP_LIMIT


def make_engine(**cfg: Any) -> tuple[ExecutionEngine, SimClock]:
    clock = SimClock(T0)
    base: dict[str, Any] = {"maker_fee_bps": 1.0, "taker_fee_bps": 4.0, "order_latency_us": 0.0}
    base.update(cfg)
    return ExecutionEngine(ExecutionConfig(**base), instruments(), clock), clock


def order(
    coid: str,
    side: OrderSide,
    qty: int,
    otype: OrderType = LMT,
    price: int | None = None,
    trigger: int | None = None,
    tif: TimeInForce = TimeInForce.GTC,
    post_only: bool = False,
    expire: int = 0,
    ts: int = T0,
) -> SubmitOrder:
    return SubmitOrder(
        ts_event=ts,
        ts_init=ts,
        client_order_id=coid,
        symbol=SYMBOL,
        side=side,
        order_type=otype,
        qty_lots=qty,
        price_ticks=price,
        tif=tif,
        trigger_price_ticks=trigger,
        post_only=post_only,
        expire_ts_ns=expire,
    )


def modify(
    coid: str, qty: int | None = None, price: int | None = None, trigger: int | None = None
) -> ModifyOrder:
    return ModifyOrder(
        ts_event=T0,
        ts_init=T0,
        client_order_id=coid,
        symbol=SYMBOL,
        qty_lots=qty,
        price_ticks=price,
        trigger_price_ticks=trigger,
    )


def bracket(
    entry: SubmitOrder, tp: int, sl: int, sl_price: int | None = None, **ids: str
) -> SubmitBracket:
    return SubmitBracket(
        ts_event=T0,
        ts_init=T0,
        entry=entry,
        take_profit_price_ticks=tp,
        stop_loss_trigger_ticks=sl,
        stop_loss_price_ticks=sl_price,
        **ids,
    )


def cancel(coid: str) -> CancelOrder:
    return CancelOrder(ts_event=T0, ts_init=T0, client_order_id=coid, symbol=SYMBOL)


def of(events: Sequence[OrderEvent], cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


def names(events: Sequence[OrderEvent], coid: str | None = None) -> list[str]:
    return [type(e).__name__ for e in events if coid is None or e.client_order_id == coid]


def books(view: BookView) -> dict[str, BookView]:
    return {SYMBOL: view}


def status(eng: ExecutionEngine, coid: str) -> OrderStatus:
    o = eng.order(coid)
    assert o is not None
    return o.status


def paper(eng: ExecutionEngine) -> PaperVenue:
    venue = eng.venue
    assert isinstance(venue, PaperVenue)
    return venue


QUIET = lots_book(bids=[(999, 5)], asks=[(1001, 5)], seq=1)


# --- post-only ------------------------------------------------------------------------------
def test_post_only_limit_that_would_cross_is_rejected() -> None:
    eng, _ = make_engine()
    evs = eng.execute([order("p", BUY, 3, price=1001, post_only=True)], books(QUIET))
    assert names(evs) == ["OrderSubmitted", "OrderRejected"]
    assert evs[-1].reason == "POST_ONLY_WOULD_CROSS"  # type: ignore[attr-defined]
    assert status(eng, "p") is S.REJECTED and SYMBOL not in eng.positions()


def test_post_only_limit_rests_and_fills_only_as_maker_at_maker_fee() -> None:
    eng, _ = make_engine()
    eng.execute([order("p", BUY, 3, price=1000, post_only=True)], books(QUIET))
    assert status(eng, "p") is S.ACCEPTED
    crossed = lots_book(bids=[(998, 1)], asks=[(999, 2), (1000, 4)], seq=2)
    (f,) = of(eng.execute([], books(crossed)), OrderFilled)
    assert (f.last_qty_lots, f.last_px_ticks, f.liquidity) == (3, 1000, LiquiditySide.MAKER)
    assert f.fee == pytest.approx(instruments()[SYMBOL].notional(1000, 3) * 1.0 / 1e4)


@pytest.mark.parametrize(
    ("otype", "tif", "trigger"),
    [(LMT, TimeInForce.IOC, None), (LMT, TimeInForce.FOK, None), (STOP_LMT, TimeInForce.GTC, 990)],
)
def test_post_only_on_anything_but_a_gtc_limit_is_rejected(
    otype: OrderType, tif: TimeInForce, trigger: int | None
) -> None:
    eng, _ = make_engine()
    cmd = order("p", BUY, 1, otype, price=995, trigger=trigger, tif=tif, post_only=True)
    (rej,) = of(eng.execute([cmd], books(QUIET)), OrderRejected)
    assert rej.reason == "INVALID_POST_ONLY"


# --- FOK ------------------------------------------------------------------------------------
def test_fok_market_fills_everything_at_once_or_nothing() -> None:
    eng, _ = make_engine()
    view = lots_book(bids=[(999, 5)], asks=[(1001, 2), (1002, 2)], seq=1)
    evs = eng.execute([order("f1", BUY, 5, MKT, tif=TimeInForce.FOK)], books(view))
    assert not of(evs, OrderFilled) and evs[-1].reason == "FOK"  # type: ignore[attr-defined]
    evs = eng.execute([order("f2", BUY, 4, MKT, tif=TimeInForce.FOK)], books(view))
    assert [f.last_qty_lots for f in of(evs, OrderFilled)] == [2, 2]
    assert status(eng, "f1") is S.CANCELED and status(eng, "f2") is S.FILLED


# --- stops ----------------------------------------------------------------------------------
def test_reference_price_is_last_trade_else_mid_else_none() -> None:
    assert reference_price(lots_book(bids=[(999, 1)], asks=[(1003, 1)])) == 1001.0
    with_trades = lots_book(
        bids=[(999, 1)], asks=[(1003, 1)], trades=[trade(1000, 1, "SELL"), trade(1002, 1, "BUY")]
    )
    assert reference_price(with_trades) == 1002.0
    assert reference_price(lots_book(bids=[(999, 1)])) is None


def test_buy_stop_market_triggers_on_last_trade_at_trigger_then_takes_as_market() -> None:
    eng, _ = make_engine()
    evs = eng.execute([order("s", BUY, 4, STOP, trigger=1005)], books(QUIET))
    assert names(evs) == ["OrderSubmitted", "OrderAccepted"]
    assert paper(eng).pending_stop("s") is not None
    # a print below the trigger: nothing; the mid is above it but trades win
    below = lots_book(bids=[(1006, 1)], asks=[(1008, 9)], seq=2, trades=[trade(1004, 1, "BUY")])
    assert not eng.execute([], books(below))
    at = lots_book(
        bids=[(1004, 1)], asks=[(1006, 3), (1007, 9)], seq=3, trades=[trade(1005, 1, "BUY")]
    )
    evs = eng.execute([], books(at))
    assert names(evs) == ["OrderTriggered", "OrderFilled", "OrderFilled"]
    fills = of(evs, OrderFilled)
    assert [(f.last_qty_lots, f.last_px_ticks) for f in fills] == [(3, 1006), (1, 1007)]
    assert all(f.liquidity is LiquiditySide.TAKER for f in fills)
    assert fills[0].fee == pytest.approx(instruments()[SYMBOL].notional(1006, 3) * 4.0 / 1e4)
    o = eng.order("s")
    assert o is not None and o.status is S.FILLED and o.is_triggered
    assert paper(eng).pending_stop("s") is None


def test_sell_stop_triggers_on_mid_without_trades_and_never_in_the_other_direction() -> None:
    eng, _ = make_engine()
    eng.execute([order("s", SELL, 2, STOP, trigger=995)], books(QUIET))
    up = lots_book(bids=[(1010, 5)], asks=[(1012, 5)], seq=2)
    assert not eng.execute([], books(up))
    down = lots_book(bids=[(994, 5)], asks=[(996, 5)], seq=3)  # mid 995 <= 995
    evs = eng.execute([], books(down))
    assert names(evs) == ["OrderTriggered", "OrderFilled"]
    assert of(evs, OrderFilled)[0].last_px_ticks == 994
    assert eng.positions()[SYMBOL].qty_lots == -2


def test_stop_market_without_liquidity_is_canceled_after_trigger() -> None:
    eng, _ = make_engine()
    eng.execute([order("s", SELL, 2, STOP, trigger=995)], books(QUIET))
    evs = eng.execute([], books(lots_book(asks=[(990, 5)], seq=2, trades=[trade(990, 1, "SELL")])))
    assert names(evs) == ["OrderTriggered", "OrderCanceled"]
    assert evs[-1].reason == "NO_LIQUIDITY"  # type: ignore[attr-defined]


def test_stop_already_crossed_on_arrival_triggers_at_once() -> None:
    eng, _ = make_engine()
    evs = eng.execute([order("s", BUY, 2, STOP, trigger=990)], books(QUIET))
    assert names(evs) == ["OrderSubmitted", "OrderAccepted", "OrderTriggered", "OrderFilled"]
    assert status(eng, "s") is S.FILLED


def test_stop_limit_triggers_then_takes_to_its_limit_and_rests_the_rest() -> None:
    eng, _ = make_engine()
    eng.execute([order("sl", BUY, 6, STOP_LMT, price=1006, trigger=1005)], books(QUIET))
    view = lots_book(
        bids=[(1006, 4)], asks=[(1006, 2), (1008, 9)], seq=2, trades=[trade(1005, 1, "BUY")]
    )
    evs = eng.execute([], books(view))
    assert names(evs) == ["OrderTriggered", "OrderFilled"]
    assert of(evs, OrderFilled)[0].last_qty_lots == 2
    o = eng.order("sl")
    assert o is not None and o.status is S.PARTIALLY_FILLED and o.leaves_lots == 4
    rest = paper(eng).resting_order("sl")
    assert rest is not None and rest.price_ticks == 1006 and rest.queue_ahead_lots == 4


@pytest.mark.parametrize(
    ("otype", "price", "trigger"), [(STOP, None, None), (STOP, None, 0), (STOP_LMT, None, 1005)]
)
def test_stop_without_a_valid_trigger_or_limit_is_rejected(
    otype: OrderType, price: int | None, trigger: int | None
) -> None:
    eng, _ = make_engine()
    (rej,) = of(
        eng.execute([order("s", BUY, 1, otype, price=price, trigger=trigger)], books(QUIET)),
        OrderRejected,
    )
    assert rej.reason == ("INVALID_PRICE" if otype is STOP_LMT else "INVALID_TRIGGER_PRICE")


# --- expiry ---------------------------------------------------------------------------------
def test_open_order_past_its_expiry_is_expired_on_the_next_execute() -> None:
    eng, clock = make_engine()
    eng.execute(
        [
            order("e", BUY, 3, price=995, expire=T0 + 1_000),
            order("s", SELL, 1, STOP, trigger=900, expire=T0 + 1_000),
        ],
        books(QUIET),
    )
    clock.advance_to(T0 + 999)
    assert not eng.execute([], books(QUIET))
    clock.advance_to(T0 + 1_000)
    evs = eng.execute([], books(QUIET))
    assert names(evs) == ["OrderExpired", "OrderExpired"]
    assert status(eng, "e") is S.EXPIRED and status(eng, "s") is S.EXPIRED
    assert not paper(eng).resting() and paper(eng).pending_stop("s") is None
    # gone from the venue: a trade through its price fills nothing
    through = lots_book(bids=[(990, 1)], asks=[(992, 1)], seq=2, trades=[trade(990, 9, "SELL")])
    assert not eng.execute([], books(through))


def test_order_whose_expiry_has_passed_on_arrival_is_rejected() -> None:
    eng, _ = make_engine(order_latency_us=5.0)
    cmd = order("e", BUY, 1, price=995, expire=T0 + 4_000)
    (rej,) = of(eng.execute([cmd], books(QUIET)), OrderRejected)
    assert rej.reason == "EXPIRE_TS_PASSED"


def test_filled_order_with_expiry_is_not_expired() -> None:
    eng, clock = make_engine()
    eng.execute([order("e", BUY, 2, MKT, expire=T0 + 10)], books(QUIET))
    clock.advance_to(T0 + 100)
    assert not eng.execute([], books(QUIET))
    assert status(eng, "e") is S.FILLED


# --- modify ---------------------------------------------------------------------------------
def rest_bid(eng: ExecutionEngine, qty: int = 5, price: int = 1000, ahead: int = 7) -> None:
    eng.execute(
        [order("m", BUY, qty, price=price)],
        books(lots_book(bids=[(price, ahead)], asks=[(1002, 5)], seq=1)),
    )


def test_modify_goes_pending_update_then_updated() -> None:
    eng, _ = make_engine()
    rest_bid(eng)
    evs = eng.execute([modify("m", qty=8)], {})
    assert [type(e) for e in evs] == [OrderPendingUpdate, OrderUpdated]
    assert evs[1].qty_lots == 8  # type: ignore[attr-defined]
    o = eng.order("m")
    assert o is not None and o.status is S.ACCEPTED and o.qty_lots == 8


def test_modify_size_decrease_keeps_queue_priority_and_increase_loses_it() -> None:
    eng, _ = make_engine()
    rest_bid(eng, qty=5, ahead=7)
    # 4 lots trade at our price: 3 left ahead of us, 2 more joined behind (level 5)
    eng.execute(
        [],
        books(
            lots_book(bids=[(1000, 5)], asks=[(1002, 5)], seq=2, trades=[trade(1000, 4, "SELL")])
        ),
    )
    venue = paper(eng)
    assert venue.resting_order("m").queue_ahead_lots == 3  # type: ignore[union-attr]
    eng.execute([modify("m", qty=3)], {})
    r = venue.resting_order("m")
    assert r is not None and r.queue_ahead_lots == 3 and r.leaves_lots == 3
    eng.execute([modify("m", qty=6)], {})
    r = venue.resting_order("m")
    assert r is not None and r.queue_ahead_lots == 5 and r.leaves_lots == 6


def test_modify_price_loses_queue_priority_at_the_new_level() -> None:
    eng, _ = make_engine()
    rest_bid(eng, ahead=7)
    view = lots_book(bids=[(1000, 7), (999, 11)], asks=[(1002, 5)], seq=2)
    evs = eng.execute([modify("m", price=999)], books(view))
    assert names(evs) == ["OrderPendingUpdate", "OrderUpdated"]
    r = paper(eng).resting_order("m")
    assert r is not None and r.price_ticks == 999 and r.queue_ahead_lots == 11
    assert eng.order("m").price_ticks == 999  # type: ignore[union-attr]


def test_modify_price_across_the_spread_fills_as_taker() -> None:
    eng, _ = make_engine()
    rest_bid(eng, qty=5)
    view = lots_book(bids=[(1000, 7)], asks=[(1002, 3), (1003, 9)], seq=2)
    evs = eng.execute([modify("m", price=1002)], books(view))
    assert names(evs) == ["OrderPendingUpdate", "OrderUpdated", "OrderFilled"]
    f = of(evs, OrderFilled)[0]
    assert (f.last_qty_lots, f.liquidity) == (3, LiquiditySide.TAKER)
    r = paper(eng).resting_order("m")
    assert r is not None and r.leaves_lots == 2 and r.price_ticks == 1002


def test_modify_post_only_across_the_spread_is_refused_and_order_keeps_working() -> None:
    eng, _ = make_engine()
    eng.execute([order("p", BUY, 2, price=999, post_only=True)], books(QUIET))
    evs = eng.execute([modify("p", price=1001)], books(QUIET))
    assert [type(e) for e in evs] == [OrderPendingUpdate, OrderModifyRejected]
    assert evs[1].reason == "POST_ONLY_WOULD_CROSS"  # type: ignore[attr-defined]
    o = eng.order("p")
    assert o is not None and o.status is S.ACCEPTED and o.price_ticks == 999


def test_modify_below_filled_quantity_is_an_error_naming_the_values() -> None:
    eng, _ = make_engine()
    eng.execute([order("m", BUY, 10, price=1001)], books(QUIET))  # 5 fill, 5 rest
    before = eng.snapshot()
    (err,) = eng.execute([modify("m", qty=4)], {})
    assert isinstance(err, OrderError) and err.reason == "MODIFY_BELOW_FILLED"
    assert err.detail == "qty_lots must be >= filled_lots 5, was 4"
    assert eng.snapshot() == before


def test_modify_down_to_the_filled_quantity_completes_the_order() -> None:
    eng, _ = make_engine()
    eng.execute([order("m", BUY, 10, price=1001)], books(QUIET))
    evs = eng.execute([modify("m", qty=5)], {})
    assert names(evs) == ["OrderPendingUpdate", "OrderUpdated"]
    assert status(eng, "m") is S.FILLED and paper(eng).resting_order("m") is None


@pytest.mark.parametrize(
    ("cmd", "reason"),
    [
        (modify("m"), "INVALID_MODIFY"),
        (modify("m", qty=0), "INVALID_MODIFY"),
        (modify("m", trigger=990), "INVALID_MODIFY"),
        (modify("nope", qty=3), "UNKNOWN_ORDER"),
    ],
)
def test_malformed_modify_is_an_error_and_changes_nothing(cmd: ModifyOrder, reason: str) -> None:
    eng, _ = make_engine()
    rest_bid(eng)
    before = eng.snapshot()
    (err,) = eng.execute([cmd], {})
    assert isinstance(err, OrderError) and err.reason == reason
    assert eng.snapshot() == before


def test_modify_of_a_closed_order_is_an_illegal_transition() -> None:
    eng, _ = make_engine()
    eng.execute([order("m", BUY, 2, MKT)], books(QUIET))
    (err,) = eng.execute([modify("m", qty=3)], {})
    assert isinstance(err, OrderError) and err.reason == "ILLEGAL_TRANSITION"


def test_modify_stop_trigger_into_the_market_triggers_it() -> None:
    eng, _ = make_engine()
    eng.execute([order("s", BUY, 2, STOP, trigger=1010)], books(QUIET))
    evs = eng.execute([modify("s", trigger=1000)], books(QUIET))
    assert names(evs) == ["OrderPendingUpdate", "OrderUpdated", "OrderTriggered", "OrderFilled"]
    o = eng.order("s")
    assert o is not None and o.status is S.FILLED and o.trigger_price_ticks == 1000


# --- brackets -------------------------------------------------------------------------------
def test_bracket_exits_are_sent_when_the_entry_fills_sized_to_the_filled_quantity() -> None:
    eng, _ = make_engine()
    entry = order("b", BUY, 10, price=1001)
    evs = eng.execute([bracket(entry, tp=1010, sl=990)], books(QUIET))  # 5 fill, 5 rest
    assert names(evs, "b") == ["OrderSubmitted", "OrderAccepted", "OrderFilled"]
    assert names(evs, "b-TP") == ["OrderSubmitted", "OrderAccepted"]
    assert names(evs, "b-SL") == ["OrderSubmitted", "OrderAccepted"]
    tp, sl = eng.order("b-TP"), eng.order("b-SL")
    assert tp is not None and sl is not None
    assert (tp.side, tp.order_type, tp.qty_lots, tp.price_ticks) == (SELL, LMT, 5, 1010)
    assert (sl.side, sl.order_type, sl.qty_lots, sl.trigger_price_ticks) == (SELL, STOP, 5, 990)
    assert tp.reduce_only and tp.parent_order_id == "b" and tp.oco_order_id == "b-SL"


def test_bracket_exits_grow_as_the_entry_fills_further() -> None:
    eng, _ = make_engine()
    eng.execute([bracket(order("b", BUY, 10, price=1001), tp=1010, sl=990)], books(QUIET))
    more = lots_book(bids=[(999, 5)], asks=[(1001, 3)], seq=2)
    evs = eng.execute([], books(more))
    assert names(evs, "b-TP") == ["OrderPendingUpdate", "OrderUpdated"]
    assert eng.order("b-TP").qty_lots == 8 and eng.order("b-SL").qty_lots == 8  # type: ignore


def test_bracket_take_profit_fill_cancels_the_stop_loss_at_once() -> None:
    eng, _ = make_engine()
    eng.execute([bracket(order("b", BUY, 5, MKT), tp=1010, sl=990)], books(QUIET))
    up = lots_book(bids=[(1011, 2)], asks=[(1013, 5)], seq=2)
    evs = eng.execute([], books(up))
    assert names(evs) == ["OrderFilled", "OrderCanceled"]
    assert evs[1].client_order_id == "b-SL" and evs[1].reason == "OCO"  # type: ignore
    assert status(eng, "b-TP") is S.PARTIALLY_FILLED and status(eng, "b-SL") is S.CANCELED
    # a crash through the stop now changes nothing
    crash = lots_book(bids=[(980, 9)], asks=[(982, 9)], seq=3, trades=[trade(980, 1, "SELL")])
    assert not of(eng.execute([], books(crash)), OrderFilled)
    assert eng.positions()[SYMBOL].qty_lots == 3


def test_bracket_stop_loss_trigger_cancels_the_take_profit() -> None:
    eng, _ = make_engine()
    eng.execute([bracket(order("b", SELL, 4, MKT), tp=990, sl=1005, sl_price=1007)], books(QUIET))
    assert eng.order("b-SL").order_type is STOP_LMT  # type: ignore[union-attr]
    up = lots_book(bids=[(1004, 1)], asks=[(1006, 9)], seq=2, trades=[trade(1006, 1, "BUY")])
    evs = eng.execute([], books(up))
    assert names(evs) == ["OrderTriggered", "OrderFilled", "OrderCanceled"]
    assert evs[2].client_order_id == "b-TP"
    assert eng.positions()[SYMBOL].qty_lots == 0


def test_bracket_user_cancel_of_one_exit_cancels_the_other() -> None:
    eng, _ = make_engine()
    eng.execute([bracket(order("b", BUY, 2, MKT), tp=1010, sl=990)], books(QUIET))
    evs = eng.execute([cancel("b-TP")], {})
    assert names(evs) == ["OrderPendingCancel", "OrderCanceled"] * 2
    assert status(eng, "b-SL") is S.CANCELED


def test_bracket_entry_canceled_unfilled_never_sends_exits() -> None:
    eng, _ = make_engine()
    eng.execute([bracket(order("b", BUY, 2, price=990), tp=1010, sl=980)], books(QUIET))
    eng.execute([cancel("b")], {})
    assert eng.order("b-TP") is None and eng.order("b-SL") is None
    (err,) = eng.execute([order("b-TP", BUY, 1, MKT)], books(QUIET))
    assert err.reason == "DUPLICATE_CLIENT_ORDER_ID"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("side", "tp", "sl", "detail"),
    [
        (
            BUY,
            990,
            1010,
            "take_profit_price_ticks must be > stop_loss_trigger_ticks 1010 for a "
            "BUY entry, was 990",
        ),
        (
            SELL,
            1010,
            990,
            "take_profit_price_ticks must be < stop_loss_trigger_ticks 990 for a "
            "SELL entry, was 1010",
        ),
        (BUY, 1010, 0, "stop_loss_trigger_ticks must be > 0, was 0"),
    ],
)
def test_malformed_bracket_is_an_error_and_sends_nothing(
    side: OrderSide, tp: int, sl: int, detail: str
) -> None:
    eng, _ = make_engine()
    (err,) = eng.execute([bracket(order("b", side, 1, MKT), tp=tp, sl=sl)], books(QUIET))
    assert isinstance(err, OrderError) and err.reason == "INVALID_COMMAND" and err.detail == detail
    assert not eng.orders()


# --- queue models ---------------------------------------------------------------------------
def hftbacktest_front(front: float, back: float, chg: float, n: float) -> float:
    """hftbacktest's ProbQueueModel.depth with PowerProbQueueFunc, written out independently."""
    p = back**n / (back**n + front**n)
    return front - (1 - p) * chg + min(0.0, back - p * chg)


@pytest.mark.parametrize(
    ("front", "back", "chg", "n"),
    [(6, 4, 5, 2), (6, 4, 5, 1), (2, 8, 3, 3), (9, 1, 4, 2), (5, 5, 2, 2.5), (3, 0.5, 2, 2)],
)
def test_prob_queue_ahead_is_hftbacktests_power_model(
    front: float, back: float, chg: float, n: float
) -> None:
    assert prob_queue_ahead(front, back, chg, n) == pytest.approx(
        max(0.0, hftbacktest_front(front, back, chg, n))
    )


def test_prob_queue_ahead_known_values() -> None:
    # 6 ahead, 4 behind, 5 canceled, n=2: 36/52 of 5 ahead
    assert prob_queue_ahead(6, 4, 5, 2) == pytest.approx(6 - 5 * 36 / 52)
    assert prob_queue_ahead(6, 4, 0, 2) == 6  # no decrease, no move
    # n=0.5: 61% of 6 would be ahead (3.7), but the 2 behind absorb at most 2: 4 were ahead
    assert prob_queue_ahead(5, 2, 6, 0.5) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("model", "ahead"), [("conservative", 6.0), ("probabilistic", 6 - 5 * 36 / 52)]
)
def test_cancels_at_our_level_move_us_forward_only_in_the_probabilistic_model(
    model: str, ahead: float
) -> None:
    eng, _ = make_engine(queue_model=model, queue_prob_power=2.0)
    eng.execute(
        [order("q", BUY, 2, price=1000)],
        books(lots_book(bids=[(1000, 6)], asks=[(1002, 5)], seq=1)),
    )
    # 4 join behind us, then 5 are canceled: level 6 -> 10 -> 5, no trades
    eng.execute([], books(lots_book(bids=[(1000, 10)], asks=[(1002, 5)], seq=2)))
    eng.execute([], books(lots_book(bids=[(1000, 5)], asks=[(1002, 5)], seq=3)))
    r = paper(eng).resting_order("q")
    assert r is not None and r.queue_ahead_lots == pytest.approx(min(ahead, 5.0))
    # a 3-lot sell at our price: the probabilistic queue (~2.54 ahead) fills us sooner
    evs = eng.execute(
        [],
        books(
            lots_book(bids=[(1000, 2)], asks=[(1002, 5)], seq=4, trades=[trade(1000, 3, "SELL")])
        ),
    )
    assert not of(evs, OrderFilled)  # conservative: 5 ahead; probabilistic: 3 - 2.54 < 1 lot
    evs = eng.execute(
        [],
        books(
            lots_book(bids=[(1000, 2)], asks=[(1002, 5)], seq=5, trades=[trade(1000, 2, "SELL")])
        ),
    )
    filled = sum(f.last_qty_lots for f in of(evs, OrderFilled))
    assert filled == (0 if model == "conservative" else 2)


def test_probabilistic_queue_ignores_the_part_of_a_decrease_explained_by_trades() -> None:
    eng, _ = make_engine(queue_model="probabilistic")
    eng.execute(
        [order("q", BUY, 2, price=1000)],
        books(lots_book(bids=[(1000, 6)], asks=[(1002, 5)], seq=1)),
    )
    eng.execute([], books(lots_book(bids=[(1000, 10)], asks=[(1002, 5)], seq=2)))
    # 4 trade at our level and the level shrinks by exactly 4: no cancel ahead assumed
    eng.execute(
        [],
        books(
            lots_book(bids=[(1000, 6)], asks=[(1002, 5)], seq=3, trades=[trade(1000, 4, "SELL")])
        ),
    )
    assert paper(eng).resting_order("q").queue_ahead_lots == pytest.approx(2.0)  # type: ignore


def test_unknown_queue_model_is_refused() -> None:
    with pytest.raises(PydanticValidationError):
        ExecutionConfig(queue_model="optimistic")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="queue_model must be one of"):
        PaperVenue(instruments(), queue_model="optimistic")


# --- latency --------------------------------------------------------------------------------
def test_sampled_latency_is_deterministic_and_drawn_from_the_samples() -> None:
    samples = [100.0, 250.0, 900.0]
    a, b = OrderLatency(0.0, samples, seed=3), OrderLatency(0.0, samples, seed=3)
    draws = [a.next_ns() for _ in range(300)]
    assert draws == [b.next_ns() for _ in range(300)]
    assert set(draws) == {100_000, 250_000, 900_000}
    other = OrderLatency(0.0, samples, seed=4)
    assert [other.next_ns() for _ in range(300)] != draws
    assert OrderLatency(42.0).next_ns() == 42_000
    assert splitmix64(0) == 0 and splitmix64(1) == 0x5692161D100B05E5


def test_sampled_latency_applies_to_entry_and_cancel() -> None:
    eng, clock = make_engine(latency_samples_us=[500.0], latency_seed=1)
    evs = eng.execute([order("l", BUY, 1, price=995)], books(QUIET))
    assert of(evs, OrderAccepted)[0].ts_event == T0 + 500_000
    evs = eng.execute([cancel("l")], {})
    assert of(evs, OrderCanceled)[0].ts_event == T0 + 500_000  # ts_init T0 + 500 us
    late = CancelOrder(
        ts_event=T0 + 1_000_000, ts_init=T0 + 1_000_000, client_order_id="x", symbol=SYMBOL
    )
    eng.execute([order("x", BUY, 1, price=995, ts=T0 + 1_000_000), late], books(QUIET))
    assert clock.now_ns() == T0 + 1_500_000


def test_latency_samples_must_be_non_negative_and_non_empty() -> None:
    with pytest.raises(PydanticValidationError, match=r"latency_samples_us must be >= 0"):
        ExecutionConfig(latency_samples_us=[1.0, -2.0])
    with pytest.raises(PydanticValidationError):
        ExecutionConfig(latency_samples_us=[])


# --- snapshot / restore ---------------------------------------------------------------------
def scenario_books(n: int) -> list[BookView]:
    out = []
    for i in range(n):
        mid = 1000 + (i % 7) - 3
        out.append(
            lots_book(
                bids=[(mid - 1, 3 + i % 4), (mid - 2, 6)],
                asks=[(mid + 1, 2 + i % 3), (mid + 2, 6)],
                seq=i + 1,
                ts=T0 + i,
                trades=[trade(mid - 1, 2, "SELL")] if i % 2 else [trade(mid + 1, 1, "BUY")],
            )
        )
    return out


def test_restored_engine_continues_exactly_like_the_original() -> None:
    cfg = {"queue_model": "probabilistic", "latency_samples_us": [10.0, 20.0, 70.0]}
    eng, clock = make_engine(**cfg)
    views = scenario_books(12)
    eng.execute(
        [
            bracket(order("b", BUY, 6, price=999), tp=1003, sl=995),
            order("p", SELL, 3, price=1003, post_only=True),
            order("s", SELL, 2, STOP_LMT, price=996, trigger=997),
            order("e", BUY, 2, price=996, expire=T0 + 5_000_000),
        ],
        books(views[0]),
    )
    for v in views[1:4]:
        eng.execute([], books(v))
    snap = json.loads(json.dumps(eng.snapshot()))
    twin, twin_clock = make_engine(**cfg)
    twin.restore(snap)
    twin_clock.advance_to(clock.now_ns())
    assert twin.snapshot() == eng.snapshot()
    for i, v in enumerate(views[4:]):
        cmds: list[Any] = [
            order(f"n{i}", BUY if i % 2 else SELL, 1 + i % 3, price=v.ask_ticks[0] - 2 + i % 4)
        ]
        if i == 2:
            cmds.append(modify("p", price=1004))
        clock.advance_to(clock.now_ns() + 1_000_000)
        twin_clock.advance_to(twin_clock.now_ns() + 1_000_000)
        assert twin.execute(cmds, books(v)) == eng.execute(cmds, books(v))
    assert twin.snapshot() == eng.snapshot()
    assert twin_clock.now_ns() == clock.now_ns()


# --- property -------------------------------------------------------------------------------
def small_book(seq: int) -> st.SearchStrategy[BookView]:
    """Random views with at most 3 levels of up to 12 lots around 996-1004."""
    return random_book(seq, mid=(996, 1004), levels=3, size=12, trade_px=(992, 1008),
                       trade_lots=15)




KINDS = ["market", "limit", "post_only", "stop", "stop_limit", "bracket", "cancel", "modify"]
cmd_spec = st.tuples(
    st.sampled_from(KINDS),
    st.sampled_from([BUY, SELL]),
    st.integers(1, 15),
    st.integers(992, 1008),
    st.sampled_from(list(TimeInForce)),
    st.integers(0, 59),  # picks the target of a cancel / modify, and what a modify changes
    st.sampled_from([0, 0, 2, 5]),  # expiry, in steps
)


def build(spec: tuple, coid: str, now: int) -> SubmitOrder | SubmitBracket:
    """Build a submit (or bracket) command from a drawn spec."""
    kind, side, qty, px, tif, _, expire_steps = spec
    expire = now + expire_steps * 1_000_000 if expire_steps else 0
    if kind == "market":
        return order(coid, side, qty, MKT, tif=tif, expire=expire, ts=now)
    if kind in ("limit", "post_only"):
        po = kind == "post_only"
        tif = TimeInForce.GTC if po else tif
        return order(coid, side, qty, price=px, tif=tif, post_only=po, expire=expire, ts=now)
    if kind in ("stop", "stop_limit"):
        otype = STOP if kind == "stop" else STOP_LMT
        limit = px + (2 if side is BUY else -2) if otype is STOP_LMT else None
        return order(
            coid, side, qty, otype, price=limit, trigger=px, tif=tif, expire=expire, ts=now
        )
    entry = order(coid, side, qty, MKT if tif is TimeInForce.IOC else LMT, price=px, ts=now)
    sign = 1 if side is BUY else -1
    return bracket(entry, tp=px + sign * 3, sl=px - sign * 3)


def draw_commands(
    data: st.DataObject, known: list[str], eng: ExecutionEngine, now: int
) -> list[Any]:
    """Draw up to 4 commands; cancels and amends mostly target open orders, else any id sent
    before (bracket exits included)."""
    cmds: list[Any] = []
    for spec in data.draw(st.lists(cmd_spec, max_size=4)):
        kind, _, qty, px, _, pick, _ = spec
        if kind in ("cancel", "modify"):
            open_ids = [o.client_order_id for o in eng.open_orders()]
            pool = open_ids if open_ids and pick % 4 else known
            target = pool[pick % len(pool)] if pool else "nope"
            if kind == "cancel":
                cmds.append(cancel(target))
            else:
                cmds.append(
                    ModifyOrder(
                        ts_event=now,
                        ts_init=now,
                        client_order_id=target,
                        symbol=SYMBOL,
                        qty_lots=qty if pick % 3 else None,
                        price_ticks=px if pick % 2 else None,
                        trigger_price_ticks=px if pick % 5 == 0 else None,
                    )
                )
            continue
        coid = f"o{len(known)}"
        cmd = build(spec, coid, now)
        known.append(coid)
        if isinstance(cmd, SubmitBracket):
            known.extend([f"{coid}-TP", f"{coid}-SL"])
        cmds.append(cmd)
    return cmds


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    n_steps=st.integers(1, 7),
    model=st.sampled_from(["conservative", "probabilistic"]),
)
def test_property_random_commands_keep_every_order_legal_and_positions_reconciled(
    data: st.DataObject, n_steps: int, model: str
) -> None:
    eng, clock = make_engine(queue_model=model)
    submits: dict[str, SubmitOrder] = {}
    brackets: dict[str, tuple[str, str]] = {}
    known: list[str] = []
    events: list[OrderEvent] = []
    for step in range(n_steps):
        clock.advance_to(T0 + step * 1_000_000)
        view = data.draw(small_book(step + 1))
        cmds = draw_commands(data, known, eng, clock.now_ns())
        for cmd in cmds:
            if isinstance(cmd, SubmitBracket):
                brackets[cmd.client_order_id] = (
                    f"{cmd.client_order_id}-TP",
                    f"{cmd.client_order_id}-SL",
                )
                submits[cmd.client_order_id] = cmd.entry
            elif isinstance(cmd, SubmitOrder):
                submits[cmd.client_order_id] = cmd
        events.extend(eng.execute(cmds, books(view)))

    errors = of(events, OrderError)
    allowed = {"UNKNOWN_ORDER", "ILLEGAL_TRANSITION", "MODIFY_BELOW_FILLED", "INVALID_MODIFY"}
    assert {e.reason for e in errors} <= allowed, errors
    fills = of(events, OrderFilled)
    assert len({f.trade_id for f in fills}) == len(fills)

    # positions reconcile with the sum of fills (independent average-cost model)
    ref = AvgCostModel()
    for f in fills:
        ref.fill(f.side.sign, f.last_qty_lots, f.last_px_ticks, f.fee)
    pos = eng.positions().get(SYMBOL)
    if fills:
        assert pos is not None
        assert pos.qty_lots == ref.qty == sum(f.side.sign * f.last_qty_lots for f in fills)
        assert pos.realised_pnl == pytest.approx(ref.realised, abs=1e-9)
        assert pos.fees == pytest.approx(ref.fees, abs=1e-12)
    else:
        assert pos is None

    # every order's events are a legal path through TRANSITIONS, ending where the engine is
    initial_qty = {coid: cmd.qty_lots for coid, cmd in submits.items()}
    parent = {x: e for e, pair in brackets.items() for x in pair}
    entry_filled: dict[str, int] = {}
    by_order: dict[str, list[OrderEvent]] = {}
    for e in events:
        if isinstance(e, OrderError):
            continue
        coid = e.client_order_id
        if isinstance(e, OrderFilled) and coid in brackets:
            entry_filled[coid] = entry_filled.get(coid, 0) + e.last_qty_lots
        if isinstance(e, OrderSubmitted) and coid in parent:  # an exit is sized at its entry
            initial_qty[coid] = entry_filled[parent[coid]]
        by_order.setdefault(coid, []).append(e)
    for coid, evs in by_order.items():
        live = eng.order(coid)
        assert live is not None
        replay = Order.from_dict(
            {
                **live.to_dict(),
                "status": "INITIALIZED",
                "filled_lots": 0,
                "trade_ids": [],
                "qty_lots": initial_qty[coid],
                "overfill_lots": 0,
            }
        )
        for e in evs:
            assert type(e).__name__ in TRANSITIONS[replay.status], (coid, names(evs))
            replay.apply(e)
        assert replay.status is live.status and replay.filled_lots == live.filled_lots
        assert live.overfill_lots == 0 and live.filled_lots <= live.qty_lots
        own = [e for e in evs if isinstance(e, OrderFilled)]
        assert live.filled_lots == sum(f.last_qty_lots for f in own)
        if live.tif is TimeInForce.FOK:  # all at once or nothing
            assert live.filled_lots in (0, live.qty_lots)
            assert len({f.ts_event for f in own}) <= 1
        if live.post_only:  # never takes liquidity
            assert all(f.liquidity is LiquiditySide.MAKER for f in own)
        if live.order_type is MKT or (live.order_type is STOP and live.is_triggered):
            assert live.is_closed

    # one-cancels-other: the exits never both fill, never beyond the entry's fills
    for entry_id, (tp_id, sl_id) in brackets.items():
        entry, tp, sl = eng.order(entry_id), eng.order(tp_id), eng.order(sl_id)
        e_filled = entry.filled_lots if entry is not None else 0
        tp_f = tp.filled_lots if tp is not None else 0
        sl_f = sl.filled_lots if sl is not None else 0
        assert tp_f + sl_f <= e_filled
        assert tp_f == 0 or sl_f == 0
        if e_filled == 0:
            assert tp is None and sl is None


@settings(max_examples=100, deadline=None)
@given(data=st.data(), split=st.integers(1, 4))
def test_property_restored_engine_produces_the_same_events(data: st.DataObject, split: int) -> None:
    cfg = {
        "queue_model": data.draw(st.sampled_from(["conservative", "probabilistic"])),
        "latency_samples_us": [5.0, 50.0, 400.0],
    }
    eng, clock = make_engine(**cfg)
    twin: ExecutionEngine | None = None
    twin_clock = SimClock(T0)
    known: list[str] = []
    for step in range(6):
        clock.advance_to(T0 + step * 1_000_000)
        if step == split:
            twin, twin_clock = make_engine(**cfg)
            twin.restore(json.loads(json.dumps(eng.snapshot())))
        twin_clock.advance_to(clock.now_ns())
        view = data.draw(small_book(step + 1))
        cmds = draw_commands(data, known, eng, clock.now_ns())
        evs = eng.execute(cmds, books(view))
        if twin is not None:
            assert twin.execute(cmds, books(view)) == evs
            assert twin_clock.now_ns() == clock.now_ns()
    assert twin is not None and twin.snapshot() == eng.snapshot()
