"""Property tests of the risk engine over two symbols: for any sequence of orders, fills, cancels,
price moves and waits, no approved order breaches a configured limit, and the kill switches trip
exactly at their thresholds (checked against a reference written independently of the engine)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from actors.core.clock import SimClock
from actors.core.instruments import Instrument
from actors.core.messages import (
    LiquiditySide,
    OrderCanceled,
    OrderFilled,
    OrderSide,
    OrderType,
    SubmitOrder,
    TimeInForce,
    TradingStateChanged,
)
from actors.core.views import BookView
from actors.risk.engine import RiskEngine, TradingState
from actors.risk.monitor import normal_var_es_factors
from cluster.config import RiskConfig

T0 = 1_000_000_000
INSTRUMENTS = {
    "BTCUSDT": Instrument("BTCUSDT", Decimal("0.1"), Decimal("0.001")),
    "ETHUSDT": Instrument("ETHUSDT", Decimal("0.01"), Decimal("0.001")),
}
START = {"BTCUSDT": 600_000, "ETHUSDT": 340_000}  # 60,000.0 and 3,400.00
SYMS = list(INSTRUMENTS)
UNIT = {s: float(i.tick_size) * float(i.lot_size) for s, i in INSTRUMENTS.items()}

CFG = RiskConfig(
    max_position_lots=40,
    max_notional_per_order=1_000.0,
    min_notional=5.0,
    max_qty_lots=30,
    price_band_bps=60.0,
    max_open_orders_per_symbol=3,
    max_open_orders=5,
    max_orders_per_s=5.0,
    order_burst=4,
    max_orders_per_s_global=8.0,
    order_burst_global=6,
    max_messages_per_s=4.0,
    message_burst=5,
    capital=3_000.0,
    max_gross_exposure=1_600.0,
    max_net_exposure=1_400.0,
    max_concentration=0.5,
    daily_loss_limit=4.0,
    max_drawdown=None,
    var={"alpha": 0.99, "horizon_s": 1.0, "var_limit": 5.0, "sample_ms": 1_000.0,
         "window": 50, "min_returns": 5},
)


def view(sym: str, mid: int, ts: int) -> BookView:
    return BookView(
        symbol=sym, ts_event=ts, ts_init=ts,
        bid_ticks=(mid - 1, mid - 2, mid - 3), bid_sizes=(0.2, 0.5, 5.0),
        ask_ticks=(mid + 1, mid + 2, mid + 3), ask_sizes=(0.2, 0.5, 5.0),
    )


class Ref:
    """Independent average-cost book of both symbols, and the kill-switch reference."""

    def __init__(self, cfg: RiskConfig) -> None:
        self.cfg = cfg
        self.qty = dict.fromkeys(SYMS, 0)
        self.avg = dict.fromkeys(SYMS, 0.0)
        self.realised = 0.0
        self.fees = 0.0
        self.mark: dict[str, float] = {}
        self.hwm = self.cfg.capital
        self.tripped = False

    def fill(self, sym: str, sign: int, lots: int, px: int, fee: float) -> None:
        q = self.qty[sym]
        self.fees += fee
        if q == 0 or (q > 0) == (sign > 0):
            self.avg[sym] = (self.avg[sym] * abs(q) + px * lots) / (abs(q) + lots)
            self.qty[sym] = q + sign * lots
            return
        closed = min(abs(q), lots)
        self.realised += closed * UNIT[sym] * (px - self.avg[sym]) * (1 if q > 0 else -1)
        new = q + sign * lots
        if new == 0:
            self.avg[sym] = 0.0
        elif (new > 0) != (q > 0):
            self.avg[sym] = float(px)
        self.qty[sym] = new

    def pnl(self) -> float:
        unreal = sum(
            self.qty[s] * UNIT[s] * (self.mark[s] - self.avg[s])
            for s in SYMS if self.qty[s] and s in self.mark
        )
        return self.realised - self.fees + unreal

    def should_trip(self) -> bool:
        equity = self.cfg.capital + self.pnl()
        self.hwm = max(self.hwm, equity)
        dd = self.cfg.max_drawdown
        loss = self.pnl() <= -self.cfg.daily_loss_limit
        return loss or (dd is not None and self.hwm - equity >= dd)


action = st.one_of(
    st.tuples(
        st.just("order"), st.sampled_from(SYMS), st.sampled_from([1, -1]),
        st.one_of(st.integers(1, 35), st.integers(1, 150)),
        st.sampled_from(["market", "limit"]),
        st.one_of(st.integers(-300, 300), st.integers(-6_000, 6_000)),
    ),
    st.tuples(st.just("fill"), st.integers(0, 10), st.floats(0.1, 1.0)),
    st.tuples(st.just("cancel"), st.integers(0, 10)),
    st.tuples(st.just("mark"), st.sampled_from(SYMS), st.integers(-2_500, 2_500)),
    st.tuples(st.just("wait"), st.integers(0, 1_500_000_000)),
    st.tuples(st.just("step"), st.integers(-1_500, 1_500), st.integers(-1_000, 1_000)),
    st.tuples(st.just("fill"), st.integers(0, 10), st.just(1.0)),
)


def worst(pos: dict[str, int], working: dict[str, Any], marks: dict[str, float]) -> dict:
    """Worst-case exposures recomputed from scratch."""
    hi = {s: pos[s] for s in SYMS}
    lo = {s: pos[s] for s in SYMS}
    for w in working.values():
        if w["sign"] > 0:
            hi[w["sym"]] += w["leaves"]
        else:
            lo[w["sym"]] -= w["leaves"]
    hv = {s: hi[s] * UNIT[s] * marks.get(s, 0.0) for s in SYMS}
    lv = {s: lo[s] * UNIT[s] * marks.get(s, 0.0) for s in SYMS}
    ex = {s: max(abs(hv[s]), abs(lv[s])) for s in SYMS}
    x = np.array([hv[s] if abs(hv[s]) >= abs(lv[s]) else lv[s] for s in SYMS])
    return {
        "gross": sum(ex.values()), "net": max(sum(hv.values()), -sum(lv.values())),
        "ex": ex, "x": x,
    }


CONFIGS = {
    "daily_loss": CFG,
    "drawdown": CFG.model_copy(update={"daily_loss_limit": 1e9, "max_drawdown": 3.0}),
    # exposure caps bind before the per-symbol limits
    "exposure": CFG.model_copy(update={
        "max_position_lots": 400, "max_qty_lots": 150, "max_notional_per_order": 10_000.0,
        "max_gross_exposure": 1_600.0, "max_net_exposure": 1_500.0, "max_concentration": 0.45,
        "var": CFG.var.model_copy(update={"var_limit": 50.0}),
    }),
}


@pytest.mark.parametrize("switch", sorted(CONFIGS))
@settings(max_examples=400, deadline=None)
@given(actions=st.lists(action, min_size=20, max_size=100))
def test_property_no_approved_order_breaches_a_limit_and_kill_switch_is_exact(
    switch: str, actions: list[tuple],
) -> None:
    cfg = CONFIGS[switch]
    clock = SimClock(T0)
    risk = RiskEngine(cfg, INSTRUMENTS, clock, "tok")
    ref = Ref(cfg)
    mids = dict(START)
    working: dict[str, dict[str, Any]] = {}
    approvals: dict[str, list[int]] = {s: [] for s in [*SYMS, "*"]}
    z, _ = normal_var_es_factors(cfg.var.alpha)
    n = 0

    def books() -> dict[str, BookView]:
        return {s: view(s, mids[s], clock.now_ns()) for s in SYMS}

    def after(changes: list[TradingStateChanged]) -> None:
        assert risk.pnl() == pytest.approx(ref.pnl(), abs=1e-6)
        should = ref.should_trip()
        if ref.tripped:
            assert changes == []
        else:
            assert [c.state for c in changes] == (["HALTED"] if should else [])
            ref.tripped = should
        assert (risk.state is TradingState.HALTED) == ref.tripped
        if ref.tripped:
            event("kill switch tripped")

    after(risk.on_marks(books()))
    for m in START:
        ref.mark[m] = float(START[m])
    warmup = [("step", 1_000 * (-1) ** k, 300 * (-1) ** (k // 2)) for k in range(8)]
    for act in warmup + actions:
        kind = act[0]
        if kind == "step":  # one return sample: 1 s later, both mids moved
            clock.advance_to(clock.now_ns() + 1_000_000_000)
            for sym, move in zip(SYMS, act[1:], strict=True):
                mids[sym] += move
                ref.mark[sym] = float(mids[sym])
            after(risk.on_marks(books()))
            continue
        if kind == "wait":
            clock.advance_to(clock.now_ns() + act[1])
            after(risk.on_marks(books()))
            continue
        if kind == "mark":
            _, sym, move = act
            mids[sym] = START[sym] + move
            ref.mark[sym] = float(mids[sym])
            after(risk.on_marks(books()))
            continue
        if kind in ("fill", "cancel"):
            if not working:
                continue
            coid = sorted(working)[act[1] % len(working)]
            w = working[coid]
            if kind == "cancel":
                risk.on_message_sent(None)  # type: ignore[arg-type]
                risk.on_event(OrderCanceled(ts_event=clock.now_ns(), ts_init=clock.now_ns(),
                                            client_order_id=coid, symbol=w["sym"]))
                del working[coid]
                continue
            lots = max(1, int(w["leaves"] * act[2]))
            px = w["price"] if w["price"] is not None else mids[w["sym"]] + w["sign"]
            fee = lots * UNIT[w["sym"]] * px * 4e-4
            ref.fill(w["sym"], w["sign"], lots, px, fee)
            w["leaves"] -= lots
            if w["leaves"] <= 0:
                del working[coid]
            after(risk.on_event(OrderFilled(
                ts_event=clock.now_ns(), ts_init=clock.now_ns(), client_order_id=coid,
                symbol=w["sym"], trade_id=f"{coid}-{w['leaves']}",
                side=OrderSide.BUY if w["sign"] > 0 else OrderSide.SELL, last_qty_lots=lots,
                last_px_ticks=px, liquidity=LiquiditySide.TAKER, fee=fee,
            )))
            continue

        _, sym, sign, qty, okind, offset = act
        n += 1
        price = None if okind == "market" else mids[sym] + offset
        cmd = SubmitOrder(
            ts_event=clock.now_ns(), ts_init=clock.now_ns(), client_order_id=f"o{n}",
            symbol=sym, side=OrderSide.BUY if sign > 0 else OrderSide.SELL,
            order_type=OrderType.MARKET if price is None else OrderType.LIMIT, qty_lots=qty,
            price_ticks=price, tif=TimeInForce.GTC,
        )
        marks = {s: float(mids[s]) for s in SYMS}
        before = worst(ref.qty, working, marks)
        var_before = None
        if risk.history.n_returns >= cfg.var.min_returns:
            cov = risk.history.covariance()
            var_before = z * math.sqrt(max(before["x"] @ cov @ before["x"], 0.0) * 1.0)
        bk = books()[sym]
        denied = risk.check(cmd, bk)
        if ref.tripped:
            assert denied is not None and denied.reason == "TRADING_HALTED"
            continue
        event(f"verdict {denied.reason if denied else 'APPROVED'}")
        if var_before is not None:
            event("VaR limit live")
        if denied is not None:
            continue
        # --- the approved order breaches nothing ---------------------------------------------
        working[cmd.client_order_id] = {"sym": sym, "sign": sign, "leaves": qty, "price": price}
        now = clock.now_ns()
        approvals[sym].append(now)
        approvals["*"].append(now)
        after_w = worst(ref.qty, working, marks)
        same = sum(w["leaves"] for w in working.values() if w["sym"] == sym and w["sign"] == sign)
        assert abs(ref.qty[sym] + sign * same) <= cfg.max_position_lots
        assert cfg.min_qty_lots <= qty <= cfg.max_qty_lots
        assert sum(1 for w in working.values() if w["sym"] == sym) <= cfg.max_open_orders_per_symbol
        assert len(working) <= cfg.max_open_orders
        micro = (bk.bid_ticks[0] * bk.ask_sizes[0] + bk.ask_ticks[0] * bk.bid_sizes[0]) / (
            bk.bid_sizes[0] + bk.ask_sizes[0])
        if price is not None:
            notional = price * qty * UNIT[sym]
            assert abs(price - micro) / micro <= cfg.price_band_bps / 1e4 + 1e-12
            others = [w for c, w in working.items()
                      if c != cmd.client_order_id and w["sym"] == sym and w["sign"] == -sign]
            for o in others:  # no self-cross
                assert o["price"] is not None
                assert (o["price"] > price) if sign > 0 else (o["price"] < price)
        else:
            notional = None
        if notional is not None:
            assert cfg.min_notional <= notional <= cfg.max_notional_per_order + 1e-9
        eps = 1e-6
        assert after_w["gross"] <= cfg.max_gross_exposure + eps or (
            after_w["gross"] <= before["gross"] + eps)
        assert after_w["net"] <= cfg.max_net_exposure + eps or (
            after_w["net"] <= before["net"] + eps)
        equity = cfg.capital + ref.pnl()
        assert after_w["ex"][sym] <= cfg.max_concentration * equity + eps or (
            after_w["ex"][sym] <= before["ex"][sym] + eps)
        if var_before is not None:
            cov = risk.history.covariance()
            var_after = z * math.sqrt(max(after_w["x"] @ cov @ after_w["x"], 0.0))
            assert var_after <= cfg.var.var_limit + 1e-6 or var_after <= var_before + 1e-6

    # token buckets: any window [t_i, t_j] holds at most burst + rate * (t_j - t_i) approvals
    for key, (rate, burst) in {
        **{s: (cfg.max_orders_per_s, cfg.order_burst) for s in SYMS},
        "*": (cfg.max_orders_per_s_global, cfg.order_burst_global),
    }.items():
        ts = approvals[key]
        for i in range(len(ts)):
            for j in range(i, len(ts)):
                assert j - i + 1 <= burst + rate * (ts[j] - ts[i]) / 1e9 + 1e-9
