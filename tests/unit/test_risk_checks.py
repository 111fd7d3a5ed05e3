"""Risk engine: the pre-trade checks added for issue 6, portfolio limits, kill switches, re-arm
authentication, flattening and checkpoints (no Ray)."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from actors.core.clock import SimClock
from actors.core.instruments import Instrument
from actors.core.messages import (
    CancelOrder,
    LiquiditySide,
    OrderCanceled,
    OrderFilled,
    OrderSide,
    OrderType,
    SubmitOrder,
)
from actors.core.views import BookView
from actors.execution.portfolio import Portfolio
from actors.risk.engine import DenyReason, RearmRefused, RiskEngine, TradingState
from cluster.config import RaydeskConfig, RiskConfig
from tests.unit.factories import SYMBOL, T0, lots_book, submit

BUY, SELL = OrderSide.BUY, OrderSide.SELL
PX = 600_000  # BTCUSDT 60,000.0; 1 lot = 0.001 BTC = 60 USD
ETH = "ETHUSDT"
EPX = 340_000  # 3,400.00; 1 lot = 0.01 ETH = 34 USD
TOKEN = "s3cret-token"
INSTR = {
    SYMBOL: Instrument(SYMBOL, Decimal("0.1"), Decimal("0.001")),
    ETH: Instrument(ETH, Decimal("0.01"), Decimal("0.01")),
}


def make(secret: str | None = TOKEN, **overrides: Any) -> tuple[RiskEngine, SimClock]:
    clock = SimClock(T0)
    return RiskEngine(RiskConfig(**overrides), INSTR, clock, secret), clock


def bk(sym: str = SYMBOL, mid: int = PX, ts: int = T0, size: float = 1.0) -> BookView:
    return BookView(symbol=sym, ts_event=ts, ts_init=ts, bid_ticks=(mid - 1, mid - 2),
                    bid_sizes=(size, 10.0), ask_ticks=(mid + 1, mid + 2), ask_sizes=(size, 10.0))


def books(ts: int = T0, btc: int = PX, eth: int = EPX) -> dict[str, BookView]:
    return {SYMBOL: bk(SYMBOL, btc, ts), ETH: bk(ETH, eth, ts)}


def order(coid: str, side: OrderSide = BUY, qty: int = 1, price: int | None = PX,
          sym: str = SYMBOL, **kw: Any) -> SubmitOrder:
    return dataclasses.replace(submit(coid, side, qty=qty, price=price, symbol=sym), **kw)


def fill(cmd: SubmitOrder, px: int, qty: int | None = None) -> OrderFilled:
    return OrderFilled(
        ts_event=T0, ts_init=T0, client_order_id=cmd.client_order_id, symbol=cmd.symbol,
        trade_id=f"{cmd.client_order_id}-f", side=cmd.side,
        last_qty_lots=cmd.qty_lots if qty is None else qty, last_px_ticks=px,
        liquidity=LiquiditySide.TAKER, fee=0.0,
    )


def reason(d: Any) -> str | None:
    return None if d is None else d.reason


def held(risk: RiskEngine, cmd: SubmitOrder, px: int, ts: int = T0) -> None:
    """Approve and fill ``cmd`` at ``px``."""
    assert risk.check(cmd, bk(cmd.symbol, px if cmd.symbol == SYMBOL else EPX, ts)) is None
    risk.on_event(fill(cmd, px))


# --- the order itself ---------------------------------------------------------------------
def test_risk_denies_fractional_quantities_and_prices_but_accepts_numpy_integers() -> None:
    risk, _ = make()
    d = risk.check(order("a", qty=1.5), bk())  # type: ignore[arg-type]
    assert reason(d) == "QTY_PRECISION" and "lot_size 0.001" in d.detail and "1.5" in d.detail
    d = risk.check(order("b", price=600_000.5), bk())  # type: ignore[arg-type]
    assert reason(d) == "PRICE_PRECISION" and "tick_size 0.1" in d.detail
    assert reason(risk.check(order("c", qty=True), bk())) == "QTY_PRECISION"  # type: ignore
    assert risk.check(order("d", qty=np.int64(2), price=np.int64(PX)), bk()) is None


def test_risk_applies_min_and_max_quantity_with_per_symbol_overrides() -> None:
    risk, _ = make(min_qty_lots=2, max_qty_lots=50, symbols={ETH: {"max_qty_lots": 5}})
    assert reason(risk.check(order("a", qty=1), bk())) == "QTY_BELOW_MIN"
    d = risk.check(order("b", qty=51), bk())
    assert reason(d) == "QTY_ABOVE_MAX" and d.detail == "qty_lots must be <= 50, was 51"
    assert risk.check(order("c", qty=50, price=PX - 10), bk()) is None
    e = risk.check(order("e", qty=6, price=EPX, sym=ETH), bk(ETH, EPX))
    assert reason(e) == "QTY_ABOVE_MAX" and "<= 5" in e.detail


def test_risk_denies_notional_below_min() -> None:
    risk, _ = make(min_notional=100.0)
    d = risk.check(order("a", qty=1), bk())  # 60 USD
    assert reason(d) == "NOTIONAL_BELOW_MIN" and "< min 100.0" in d.detail
    assert risk.check(order("b", qty=2), bk()) is None


# --- freshness and quarantine ---------------------------------------------------------------
def test_risk_denies_stale_features_and_stale_model_output_but_not_unstamped_orders() -> None:
    risk, clock = make(max_feature_age_ms=200.0, max_signal_age_ms=50.0)
    clock.advance_to(T0 + 300_000_000)
    view = bk(ts=T0 + 300_000_000)
    d = risk.check(order("a", features_ts_ns=T0), view)
    assert reason(d) == "FEATURES_STALE" and "feature age 300.0 ms > max 200.0 ms" in d.detail
    d = risk.check(order("b", features_ts_ns=T0 + 200_000_000,
                         signal_ts_ns=T0 + 240_000_000), view)
    assert reason(d) == "SIGNAL_STALE" and "60.0 ms > max 50.0 ms" in d.detail
    assert risk.check(order("c", features_ts_ns=T0 + 100_000_000,
                            signal_ts_ns=T0 + 250_000_000), view) is None
    assert risk.check(order("d"), view) is None  # 0 = not model-driven


def test_risk_denies_orders_on_an_operator_quarantined_symbol() -> None:
    risk, _ = make(quarantined_symbols=(ETH,))
    d = risk.check(order("a", sym=ETH, price=EPX), bk(ETH, EPX))
    assert reason(d) == "SYMBOL_QUARANTINED" and "operator" in d.detail
    assert risk.check(order("b"), bk()) is None


def test_config_rejects_limits_for_unknown_symbols() -> None:
    base = {"instruments": [{"symbol": "BTCUSDT", "tick_size": "0.1", "lot_size": "0.001",
                             "initial_price": "60000"}]}
    with pytest.raises(ValueError, match="risk.symbols must name configured instruments"):
        RaydeskConfig.model_validate({**base, "risk": {"symbols": {"XRPUSDT": {}}}})
    with pytest.raises(ValueError, match="min_qty_lots must be <= max_qty_lots"):
        RiskConfig(min_qty_lots=10, max_qty_lots=5)


# --- fat finger ------------------------------------------------------------------------------
def test_risk_price_band_is_measured_from_the_microprice() -> None:
    risk, _ = make(price_band_bps=10.0)  # 10 bps of 60,000 = 600 ticks
    view = BookView(symbol=SYMBOL, ts_event=T0, ts_init=T0, bid_ticks=(PX - 1,),
                    bid_sizes=(3.0,), ask_ticks=(PX + 1,), ask_sizes=(1.0,))
    # microprice leans to the ask when the bid is heavier: (b*1 + a*3) / 4 = PX + 0.5
    assert risk.check(order("a", price=PX + 600), view) is None
    d = risk.check(order("b", price=PX + 601), view)
    assert reason(d) == "PRICE_OUTSIDE_BAND" and "microprice 600000.50" in d.detail
    assert reason(risk.check(order("c", SELL, price=PX - 600), view)) == "PRICE_OUTSIDE_BAND"


def test_risk_denies_a_market_order_that_would_sweep_beyond_the_band() -> None:
    risk, _ = make(price_band_bps=10.0, max_notional_per_order=1e9)
    deep = lots_book(bids=[(PX - 1, 5)], asks=[(PX + 1, 5), (PX + 2_000, 500)])
    assert risk.check(order("a", qty=5, price=None), deep) is None
    d = risk.check(order("b", qty=6, price=None), deep)
    assert reason(d) == "PRICE_OUTSIDE_BAND" and d.detail.startswith("sweep price 602000")


# --- open orders and self-trade prevention -----------------------------------------------------
def test_risk_caps_open_orders_per_symbol_and_overall() -> None:
    risk, _ = make(max_open_orders_per_symbol=2, max_open_orders=3)
    assert risk.check(order("a", price=PX - 5), bk()) is None
    assert risk.check(order("b", price=PX - 6), bk()) is None
    d = risk.check(order("c", price=PX - 7), bk())
    assert reason(d) == "OPEN_ORDERS_EXCEEDS_MAX" and "BTCUSDT 2 + 1 > max 2" in d.detail
    assert risk.check(order("e1", sym=ETH, price=EPX), bk(ETH, EPX)) is None
    d = risk.check(order("e2", sym=ETH, price=EPX - 1), bk(ETH, EPX))
    assert reason(d) == "OPEN_ORDERS_EXCEEDS_MAX" and "open orders 3 + 1 > max 3" in d.detail
    risk.on_event(OrderCanceled(ts_event=T0, ts_init=T0, client_order_id="a", symbol=SYMBOL))
    assert risk.open_orders() == 2 and risk.open_orders(SYMBOL) == 1
    assert risk.check(order("c", price=PX - 7), bk()) is None


def test_self_trade_prevention_denies_crossing_our_own_working_orders() -> None:
    risk, _ = make()
    assert risk.check(order("s1", SELL, price=PX + 5), bk()) is None
    assert risk.check(order("s2", SELL, price=PX + 3), bk()) is None
    assert risk.check(order("b1", BUY, price=PX + 2), bk()) is None  # below our best ask
    d = risk.check(order("b2", BUY, price=PX + 3), bk())
    assert reason(d) == "SELF_TRADE_PREVENTED" and "working SELL @ 600003" in d.detail
    assert reason(risk.check(order("b3", BUY, price=None), bk())) == "SELF_TRADE_PREVENTED"
    # once the best sell is gone, the next one is the reference
    risk.on_event(OrderCanceled(ts_event=T0, ts_init=T0, client_order_id="s2", symbol=SYMBOL))
    assert risk.check(order("b4", BUY, price=PX + 4), bk()) is None
    d = risk.check(order("b5", BUY, price=PX + 5), bk())
    assert reason(d) == "SELF_TRADE_PREVENTED" and "@ 600005" in d.detail


def test_self_trade_prevention_can_be_turned_off() -> None:
    risk, _ = make(self_trade_prevention=False)
    assert risk.check(order("s1", SELL, price=PX), bk()) is None
    assert risk.check(order("b1", BUY, price=PX), bk()) is None


# --- portfolio caps ---------------------------------------------------------------------------
def test_gross_net_and_concentration_caps_count_working_orders_and_spare_reducing_orders() -> None:
    risk, _ = make(max_gross_exposure=1_000.0, max_net_exposure=850.0, max_concentration=0.007,
                   capital=100_000.0)  # concentration cap 700 USD per symbol
    risk.on_marks(books())
    assert risk.check(order("a", qty=10), bk()) is None  # 600 USD working
    d = risk.check(order("b", qty=2), bk())  # 720 > 700
    assert reason(d) == "CONCENTRATION_EXCEEDS_MAX" and "exposure 720.00" in d.detail
    assert risk.check(order("e", qty=6, sym=ETH, price=EPX), bk(ETH, EPX)) is None  # net 804
    d = risk.check(order("e2", qty=2, sym=ETH, price=EPX), bk(ETH, EPX))
    assert reason(d) == "NET_EXPOSURE_EXCEEDS_MAX" and "net exposure 872.00" in d.detail
    assert risk.check(order("e3", SELL, qty=6, sym=ETH, price=EPX + 5), bk(ETH, EPX)) is None
    d = risk.check(order("e4", SELL, qty=6, sym=ETH, price=EPX + 6), bk(ETH, EPX))
    assert reason(d) == "GROSS_EXPOSURE_EXCEEDS_MAX" and "> max 1000.0" in d.detail
    assert risk.exposure()["gross"] == pytest.approx(600 + 204)
    # a price move puts the book over the gross cap; an order that reduces it still passes
    risk.on_event(fill(order("a", qty=10), PX))
    risk.on_marks(books(btc=PX * 2))
    assert risk.exposure()["gross"] > 1_000
    assert risk.check(order("r", SELL, qty=4, price=PX * 2 + 5), bk(mid=PX * 2)) is None


def _warm(risk: RiskEngine, clock: SimClock, n: int = 40, amp: int = 600) -> None:
    """``n`` one-second samples of alternating moves (BTC ±0.1 %, ETH against it)."""
    for k in range(n):
        clock.advance_to(clock.now_ns() + 1_000_000_000)
        move = amp if k % 2 else -amp
        risk.on_marks(books(clock.now_ns(), PX + move, EPX - move // 2))


@pytest.mark.parametrize("method", ["normal", "historical"])
def test_var_limit_denies_orders_that_raise_post_trade_var_over_the_limit(method: str) -> None:
    risk, clock = make(var={"var_limit": 10.0, "method": method, "horizon_s": 1.0,
                            "min_returns": 20, "window": 100}, max_position_lots=10_000)
    risk.on_marks(books())
    assert risk.check(order("w", qty=1), bk()) is None  # history not warm yet: counted
    assert risk.counters["var_warmup_checks"] == 1
    risk.release("w")
    _warm(risk, clock)
    now = clock.now_ns()
    assert risk.var_es() == (0.0, 0.0) or risk.var_es()[0] == pytest.approx(0.0, abs=1e-9)
    # |return| is 0.2 % every second: VaR of x USD is ~ x * 0.002 * 2.33 (normal) or
    # x * 0.002 (historical)
    d = risk.check(order("big", qty=200, price=PX), bk(ts=now))  # 12,000 USD
    assert reason(d) == "VAR_LIMIT_EXCEEDED" and method in d.detail
    assert risk.check(order("ok", qty=20, price=PX), bk(ts=now)) is None  # 1,200 USD
    var_now, es_now = risk.var_es()
    assert 0 < var_now <= 10.0 and es_now >= var_now


def test_var_limit_lets_a_hedge_through_even_when_over_the_limit() -> None:
    risk, clock = make(var={"var_limit": 1.0, "horizon_s": 1.0, "min_returns": 20})
    risk.on_marks(books())
    held(risk, order("long", qty=100), PX)  # bought before the history was warm
    _warm(risk, clock)
    now = clock.now_ns()
    var_before = risk.var_es()[0]
    assert var_before > 1.0
    # ETH moves against BTC: buying ETH hedges, selling more ETH would not
    assert risk.check(order("hedge", qty=20, sym=ETH, price=EPX), bk(ETH, EPX, now)) is None
    # worst case per symbol: with 20 bought and 40 sold working, ETH counts as short 40
    d = risk.check(order("more", SELL, qty=40, sym=ETH, price=EPX + 5), bk(ETH, EPX, now))
    assert reason(d) == "VAR_LIMIT_EXCEEDED"
    assert risk.var_es()[0] < var_before


def test_es_limit_is_checked_after_the_var_limit() -> None:
    risk, clock = make(var={"es_limit": 5.0, "horizon_s": 1.0, "min_returns": 20})
    risk.on_marks(books())
    _warm(risk, clock)
    d = risk.check(order("big", qty=100), bk(ts=clock.now_ns()))
    assert reason(d) == "ES_LIMIT_EXCEEDED" and "post-trade ES" in d.detail


# --- rate budgets -------------------------------------------------------------------------------
def test_global_bucket_and_message_budget_limit_orders_and_cancels_spend_messages() -> None:
    risk, clock = make(max_orders_per_s_global=1.0, order_burst_global=3, max_messages_per_s=1.0,
                       message_burst=4)
    assert risk.check(order("a", price=PX - 1), bk()) is None
    assert risk.check(order("b", price=EPX, sym=ETH), bk(ETH, EPX)) is None
    risk.on_message_sent(CancelOrder(ts_event=T0, ts_init=T0, client_order_id="a",
                                     symbol=SYMBOL))
    risk.on_message_sent(CancelOrder(ts_event=T0, ts_init=T0, client_order_id="b", symbol=ETH))
    d = risk.check(order("c", price=PX - 2), bk())
    assert reason(d) == "MESSAGE_RATE_EXCEEDED" and "message tokens 0.000 < 1" in d.detail
    clock.advance_to(T0 + 1_000_000_000)
    assert risk.check(order("c", price=PX - 2), bk(ts=clock.now_ns())) is None
    assert reason(risk.check(order("e", price=PX - 3), bk(ts=clock.now_ns()))) == (
        "MESSAGE_RATE_EXCEEDED")
    # the global bucket spans symbols
    risk, _ = make(max_orders_per_s_global=1.0, order_burst_global=2)
    assert risk.check(order("a", price=PX - 1), bk()) is None
    assert risk.check(order("b", price=EPX, sym=ETH), bk(ETH, EPX)) is None
    d = risk.check(order("c", price=PX - 2), bk())
    assert reason(d) == "GLOBAL_RATE_LIMIT_EXCEEDED" and "burst 2" in d.detail


# --- kill switches ------------------------------------------------------------------------------
def _long_btc(risk: RiskEngine) -> None:
    risk.on_marks(books())
    held(risk, order("long", qty=100), PX)  # 0.1 BTC: 1 tick = 0.01 USD


def test_daily_loss_trips_exactly_at_the_limit() -> None:
    risk, _ = make(daily_loss_limit=5.0)
    _long_btc(risk)
    assert risk.on_marks(books(btc=PX - 499)) == []  # -4.99
    (ev,) = risk.on_marks(books(btc=PX - 500))  # -5.00
    assert (ev.state, ev.reason) == ("HALTED", "DAILY_LOSS_LIMIT")
    assert ev.detail == "pnl -5.000000 <= -5.0"
    assert risk.counters["trips"] == 1 and risk.counters["trips_DAILY_LOSS_LIMIT"] == 1


def test_drawdown_trips_exactly_at_the_limit_from_the_high_water_mark() -> None:
    risk, _ = make(max_drawdown=3.0, daily_loss_limit=1e9)
    _long_btc(risk)
    assert risk.on_marks(books(btc=PX + 1_000)) == []  # +10: new high-water mark
    assert risk.on_marks(books(btc=PX + 701)) == []  # 2.99 below it
    (ev,) = risk.on_marks(books(btc=PX + 700))
    assert ev.reason == "MAX_DRAWDOWN" and "drawdown 3.000000 >= 3.0" in ev.detail
    assert risk.state is TradingState.HALTED


def test_daily_loss_counts_from_the_start_of_each_utc_day() -> None:
    day = 86_400 * 1_000_000_000
    risk, clock = make(daily_loss_limit=5.0)
    _long_btc(risk)
    assert risk.on_marks(books(btc=PX - 400)) == []  # -4 today
    clock.advance_to(T0 + day)
    assert risk.on_marks(books(clock.now_ns(), btc=PX - 400)) == []  # new day: 0
    assert risk.pnl() == pytest.approx(0.0)
    assert risk.on_marks(books(clock.now_ns(), btc=PX - 800)) == []  # -4 today, -8 overall
    (ev,) = risk.on_marks(books(clock.now_ns(), btc=PX - 900))
    assert ev.reason == "DAILY_LOSS_LIMIT"


def test_rearm_needs_the_token_and_refusals_are_counted_and_recorded() -> None:
    risk, _ = make(daily_loss_limit=5.0)
    _long_btc(risk)
    risk.on_marks(books(btc=PX - 600))
    assert risk.state is TradingState.HALTED
    with pytest.raises(RearmRefused, match="wrong token"):
        risk.rearm("mallory", "guess")
    (alert,) = risk.drain_alerts()
    assert alert.code == "REARM_REFUSED" and "mallory" in alert.detail
    assert risk.counters["rearm_refusals"] == 1 and risk.state is TradingState.HALTED
    with pytest.raises(RearmRefused):
        risk.rearm("mallory", "again")
    assert [a.code for a in risk.drain_alerts()] == ["REARM_REFUSED"]  # queued after a drain
    assert risk.drain_alerts() == []
    assert risk.on_marks(books(btc=PX)) == []  # never re-arms by itself
    ev = risk.rearm("alice", TOKEN)
    assert (ev.state, ev.reason) == ("ACTIVE", "REARMED:alice")
    assert risk.counters["rearm_refusals"] == 2 and risk.counters["rearms"] == 1
    with pytest.raises(ValueError, match="HALTED or REDUCING to re-arm"):
        risk.rearm("alice", TOKEN)


def test_rearm_is_refused_when_no_secret_is_configured() -> None:
    risk, _ = make(secret=None)
    risk.halt("test")
    with pytest.raises(RearmRefused, match="no re-arm secret configured"):
        risk.rearm("alice", "")
    assert risk.state is TradingState.HALTED


def test_after_rearm_the_drawdown_counts_from_the_equity_at_rearm() -> None:
    risk, _ = make(max_drawdown=3.0, daily_loss_limit=1e9)
    _long_btc(risk)
    (ev,) = risk.on_marks(books(btc=PX - 300))
    risk.rearm("alice", TOKEN)
    assert risk.drawdown() == pytest.approx(0.0)
    assert risk.on_marks(books(btc=PX - 599)) == []
    assert risk.on_marks(books(btc=PX - 600))[0].reason == "MAX_DRAWDOWN"


def test_flatten_orders_close_every_position_reduce_only() -> None:
    risk, _ = make()
    risk.on_marks(books())
    held(risk, order("l", qty=7), PX)
    held(risk, order("s", SELL, qty=3, sym=ETH, price=EPX), EPX)
    risk.halt("test")
    cmds = risk.flatten_orders(books())
    got = {(c.symbol, c.side, c.qty_lots, c.order_type, c.reduce_only) for c in cmds}
    assert got == {(SYMBOL, "SELL", 7, "MARKET", True), (ETH, "BUY", 3, "MARKET", True)}
    assert risk.flatten_orders(books()) == []  # already being closed
    for c in cmds:
        risk.on_event(fill(c, PX if c.symbol == SYMBOL else EPX))
    assert all(p.qty_lots == 0 for p in risk.positions().values())
    assert risk.open_orders() == 0


# --- checkpoints --------------------------------------------------------------------------------
def test_snapshot_restore_continues_exactly_like_the_original() -> None:
    cfg = {"var": {"var_limit": 50.0, "horizon_s": 1.0, "min_returns": 10}, "max_drawdown": 30.0}
    a, clock = make(**cfg)
    a.on_marks(books())
    _warm(a, clock, n=15)
    held(a, order("x", qty=20), PX, clock.now_ns())
    now = clock.now_ns()
    assert a.check(order("w1", SELL, qty=5, price=PX + 3), bk(ts=now)) is None
    snap = json.loads(json.dumps(a.snapshot()))
    b = RiskEngine(RiskConfig(**cfg), INSTR, clock, TOKEN)
    b.restore(snap)
    assert json.loads(json.dumps(b.snapshot())) == snap
    probe = [order("p1", BUY, qty=3, price=PX + 3), order("p2", BUY, qty=3, price=PX + 2),
             order("p3", SELL, qty=30, price=PX + 9), order("p4", BUY, qty=400, price=PX - 9)]
    for p in probe:
        assert reason(a.check(p, bk(ts=now))) == reason(b.check(p, bk(ts=now)))
    assert a.var_es() == pytest.approx(b.var_es())
    assert a.exposure() == pytest.approx(b.exposure())


def test_portfolio_values_a_first_fill_at_a_mark_taken_before_it() -> None:
    pf = Portfolio()
    assert pf.mark(SYMBOL, PX + 100) == 0.0
    pf.apply_fill(fill(order("a", qty=10), PX), INSTR[SYMBOL])
    assert pf.unrealised_pnl() == pytest.approx(10 * 0.001 * 10.0)
    assert Portfolio.restore(pf.snapshot()).marks() == {SYMBOL: PX + 100}


def test_deny_reasons_cover_the_issue_list() -> None:
    assert {r.value for r in DenyReason} >= {
        "QTY_PRECISION", "PRICE_PRECISION", "QTY_BELOW_MIN", "QTY_ABOVE_MAX",
        "NOTIONAL_BELOW_MIN", "PRICE_OUTSIDE_BAND", "OPEN_ORDERS_EXCEEDS_MAX",
        "SELF_TRADE_PREVENTED", "GROSS_EXPOSURE_EXCEEDS_MAX", "NET_EXPOSURE_EXCEEDS_MAX",
        "CONCENTRATION_EXCEEDS_MAX", "VAR_LIMIT_EXCEEDED", "ES_LIMIT_EXCEEDED",
        "GLOBAL_RATE_LIMIT_EXCEEDED", "MESSAGE_RATE_EXCEEDED", "FEATURES_STALE",
        "SIGNAL_STALE", "TRADING_REDUCING", "TRADING_HALTED",
    }


# --- stops and amends -------------------------------------------------------------------------
def stop(
    coid: str, side: OrderSide, qty: int, trigger: Any, limit: int | None = None
) -> SubmitOrder:
    otype = "STOP_LIMIT" if limit is not None else "STOP_MARKET"
    return dataclasses.replace(order(coid, side, qty, limit), order_type=OrderType(otype),
                               trigger_price_ticks=trigger)


def test_stops_are_checked_on_their_trigger_and_do_not_block_self_trade_checks() -> None:
    risk, _ = make(price_band_bps=50.0)  # 50 bps of 60,000 = 3,000 ticks
    d = risk.check(stop("s0", SELL, 2, 590_000.5), bk())
    assert reason(d) == "PRICE_PRECISION" and "trigger_price_ticks" in d.detail
    assert reason(risk.check(stop("s1", SELL, 2, 0), bk())) == "PRICE_NOT_POSITIVE"
    assert risk.check(stop("sl", SELL, 2, PX - 20_000), bk()) is None  # far stop: no band
    d = risk.check(stop("sx", SELL, 2, PX - 20_000, limit=PX - 25_000), bk())
    assert reason(d) == "PRICE_OUTSIDE_BAND" and "from trigger" in d.detail
    assert risk.open_orders(SYMBOL) == 1
    # a resting stop is not in the book: a buy above its trigger does not self-trade
    assert risk.check(order("b", BUY, 1, PX), bk()) is None


def test_amends_that_reduce_pass_and_amends_that_add_risk_are_checked_and_undone() -> None:
    from actors.core.messages import ModifyOrder

    risk, _ = make(max_position_lots=10)
    assert risk.check(order("a", BUY, 6, PX - 5), bk()) is None
    assert risk.check(order("s", SELL, 2, PX + 5), bk()) is None

    def amend(**kw: Any) -> Any:
        return risk.check_modify(ModifyOrder(ts_event=T0, ts_init=T0, client_order_id="a",
                                             symbol=SYMBOL, **kw), bk())

    assert amend(qty_lots=4) is None and risk.working_lots(SYMBOL, BUY) == 4
    d = amend(qty_lots=11)
    assert reason(d) == "POSITION_EXCEEDS_MAX" and d.detail.startswith("amend: position 11")
    assert risk.working_lots(SYMBOL, BUY) == 4 and risk.open_orders(SYMBOL) == 2  # unchanged
    d = amend(price_ticks=PX + 5)  # would cross our own sell
    assert reason(d) == "SELF_TRADE_PREVENTED"
    assert amend(qty_lots=9, price_ticks=PX - 2) is None
    assert risk.working_lots(SYMBOL, BUY) == 9
    risk.on_event(fill(order("a", BUY, 9, PX - 2), PX - 2, qty=3))
    assert amend(qty_lots=5) is None and risk.working_lots(SYMBOL, BUY) == 2  # 3 filled + 2
    assert risk.check_modify(ModifyOrder(ts_event=T0, ts_init=T0, client_order_id="zz",
                                         symbol=SYMBOL, qty_lots=1), bk()) is None
