"""The RiskActor with a real ExecutionActor on a real local Ray cluster: kill-switch cancels and
flattening through execution, and the operator commands (`raydesk risk status|halt|rearm`)
against the named actor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from actors.core.messages import OrderSide, OrderType, SubmitOrder, TimeInForce
from actors.core.views import BookView
from actors.execution.actor import ExecutionActor
from actors.risk.actor import RiskActor
from actors.risk.engine import RearmRefused
from cluster.cli import app
from cluster.risk_ops import call, find_risk_actor
from tests.conftest import small_config

pytestmark = pytest.mark.ray

T0 = 1_700_000_000_000_000_000
TOKEN = "ray-test-token"


def _views(cfg: Any, ts: int, move: int = 0) -> dict[str, BookView]:
    out = {}
    for sym, px in cfg.initial_prices_ticks().items():
        mid = px + move
        out[sym] = BookView(sym, ts, ts, (mid - 1, mid - 2), (5.0, 50.0),
                            (mid + 1, mid + 2), (5.0, 50.0))
    return out


def _order(coid: str, sym: str, side: OrderSide, qty: int, price: int | None,
           tif: TimeInForce = TimeInForce.GTC) -> SubmitOrder:
    return SubmitOrder(
        ts_event=T0, ts_init=T0, client_order_id=coid, symbol=sym, side=side,
        order_type=OrderType.MARKET if price is None else OrderType.LIMIT, qty_lots=qty,
        price_ticks=price, tif=TimeInForce.IOC if price is None else tif,
    )


def _start(ray: Any, cfg: Any, run_id: str) -> tuple[Any, Any]:
    d = cfg.model_dump(mode="json")
    ex = ray.remote(ExecutionActor).options(
        name=f"execution-{run_id}", namespace=cfg.ray.namespace, num_cpus=0).remote(d, True)
    risk = ray.remote(RiskActor).options(
        name=f"risk-{run_id}", namespace=cfg.ray.namespace, num_cpus=0,
        runtime_env={"env_vars": {"RAYDESK_REARM_TOKEN": TOKEN}},
    ).remote(d, True, ex)
    return risk, ex


def test_a_trip_cancels_open_orders_and_flattens_through_execution(ray_cluster, tmp_path):
    ray = ray_cluster
    cfg = small_config(tmp_path, risk={"daily_loss_limit": 5.0, "flatten_on_halt": True})
    risk, ex = _start(ray, cfg, "flat")
    try:
        sym = cfg.instruments[0].symbol
        px = cfg.initial_prices_ticks()[sym]
        views = _views(cfg, T0)
        res = ray.get(risk.process.remote(T0, [
            _order("buy", sym, OrderSide.BUY, 50, None),  # 0.05 BTC, filled at the touch
            _order("rest", sym, OrderSide.BUY, 5, px - 5_000),  # rests 500 USD below the bid
        ], views))
        assert res.denials == [] and sorted(res.approved) == ["buy", "rest"]
        assert ray.get(ex.portfolio_summary.remote())["open_orders"] == 1
        # the mid falls 200 USD: -10 USD on 0.05 BTC trips the daily loss
        res = ray.get(risk.process.remote(T0 + 10**8, [], _views(cfg, T0 + 10**8, -2_000)))
        trip = [e for e in res.state_events if e.state == "HALTED"]
        assert [e.reason for e in trip] == ["DAILY_LOSS_LIMIT"]
        kinds = {(type(e).__name__, e.client_order_id.split("-")[0]) for e in res.events}
        assert ("OrderCanceled", "rest") in kinds and ("OrderFilled", "FLATTEN") in kinds
        summary = ray.get(ex.portfolio_summary.remote())
        assert summary["open_orders"] == 0 and summary["positions"][sym] == 0
        status = ray.get(risk.status.remote())
        assert status["state"] == "HALTED" and status["positions"][sym] == 0
    finally:
        ray.kill(risk)
        ray.kill(ex)


def test_operator_halt_and_authenticated_rearm_reach_the_journal_stream(ray_cluster, tmp_path):
    ray = ray_cluster
    cfg = small_config(tmp_path)
    risk, ex = _start(ray, cfg, "ops")
    try:
        handle = find_risk_actor(cfg, "auto", "ops")
        sym = cfg.instruments[0].symbol
        px = cfg.initial_prices_ticks()[sym]
        res = ray.get(risk.process.remote(T0, [_order("rest", sym, OrderSide.BUY, 5, px - 50)],
                                          _views(cfg, T0)))
        assert res.approved == ["rest"]
        assert call(handle, "halt", "drill")["reason"] == "MANUAL:drill"
        res = ray.get(risk.process.remote(T0, [], _views(cfg, T0)))  # the halt cancels
        assert [type(e).__name__ for e in res.events] == ["OrderPendingCancel", "OrderCanceled"]
        assert [(e.state, e.reason) for e in res.state_events] == [("HALTED", "MANUAL:drill")]
        with pytest.raises(RearmRefused, match="wrong token"):
            call(handle, "rearm", "mallory", "nope")
        assert call(handle, "rearm", "alice", TOKEN)["reason"] == "REARMED:alice"
        res = ray.get(risk.process.remote(T0, [], _views(cfg, T0)))
        assert [(e.state, e.reason) for e in res.state_events] == [("ACTIVE", "REARMED:alice")]
        assert [a.code for a in res.alerts] == ["REARM_REFUSED"]
        assert call(handle, "status")["counters"]["rearm_refusals"] == 1
    finally:
        ray.kill(risk)
        ray.kill(ex)


def test_risk_cli_commands_find_the_running_actor(ray_cluster, tmp_path, monkeypatch):
    ray = ray_cluster
    cfg = small_config(tmp_path)
    path = Path(tmp_path) / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    risk, ex = _start(ray, cfg, "cli")
    runner = CliRunner()
    try:
        out = runner.invoke(app, ["risk", "status", "--config", str(path), "--run-id", "cli"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.output)["state"] == "ACTIVE"
        out = runner.invoke(app, ["risk", "halt", "drill", "--config", str(path),
                                  "--run-id", "cli"])
        assert out.exit_code == 0 and "MANUAL:drill" in out.output
        monkeypatch.setenv("RAYDESK_REARM_TOKEN", "wrong")
        out = runner.invoke(app, ["risk", "rearm", "--operator", "bob", "--config", str(path),
                                  "--run-id", "cli"])
        assert out.exit_code == 3 and "refused" in out.output
        monkeypatch.setenv("RAYDESK_REARM_TOKEN", TOKEN)
        out = runner.invoke(app, ["risk", "rearm", "--operator", "bob", "--config", str(path),
                                  "--run-id", "cli"])
        assert out.exit_code == 0 and "REARMED:bob" in out.output
        out = runner.invoke(app, ["risk", "status", "--config", str(path), "--run-id", "gone"])
        assert out.exit_code == 1 and "was not found" in out.output
    finally:
        ray.kill(risk)
        ray.kill(ex)


def test_brackets_and_amends_pass_risk_and_reach_execution(ray_cluster, tmp_path):
    from actors.core.messages import ModifyOrder, SubmitBracket

    ray = ray_cluster
    cfg = small_config(tmp_path, risk={"max_position_lots": 60})
    risk, ex = _start(ray, cfg, "brk")
    try:
        sym = cfg.instruments[0].symbol
        px = cfg.initial_prices_ticks()[sym]
        entry = _order("e1", sym, OrderSide.BUY, 20, px + 1, TimeInForce.IOC)
        bracket = SubmitBracket(ts_event=T0, ts_init=T0, entry=entry,
                                take_profit_price_ticks=px + 100,
                                stop_loss_trigger_ticks=px - 100)
        res = ray.get(risk.process.remote(T0, [bracket], _views(cfg, T0)))
        assert res.approved == ["e1"] and res.denials == []
        filled = sum(e.last_qty_lots for e in res.events
                     if type(e).__name__ == "OrderFilled" and e.client_order_id == "e1")
        assert filled == 20
        accepted = {e.client_order_id for e in res.events if type(e).__name__ == "OrderAccepted"}
        assert {"e1-TP", "e1-SL"} <= accepted
        # a resting order amended beyond the position limit: denied by risk, left as it was
        rest = _order("r1", sym, OrderSide.BUY, 10, px - 50)
        ray.get(risk.process.remote(T0, [rest], _views(cfg, T0)))
        big = ModifyOrder(ts_event=T0, ts_init=T0, client_order_id="r1", symbol=sym,
                          qty_lots=50)
        res = ray.get(risk.process.remote(T0, [big], _views(cfg, T0)))
        assert [a.code for a in res.alerts] == ["MODIFY_DENIED:POSITION_EXCEEDS_MAX"]
        assert not [e for e in res.events if e.client_order_id == "r1"]
        small = ModifyOrder(ts_event=T0, ts_init=T0, client_order_id="r1", symbol=sym,
                            qty_lots=5)
        res = ray.get(risk.process.remote(T0, [small], _views(cfg, T0)))
        assert "OrderUpdated" in [type(e).__name__ for e in res.events]
        # the take-profit fills when the market rises through it; the stop-loss is canceled
        res = ray.get(risk.process.remote(T0 + 10**8, [], _views(cfg, T0 + 10**8, 150)))
        kinds = {(type(e).__name__, e.client_order_id) for e in res.events}
        assert ("OrderFilled", "e1-TP") in kinds and ("OrderCanceled", "e1-SL") in kinds
        assert ray.get(risk.status.remote())["positions"][sym] == 0
    finally:
        ray.kill(risk)
        ray.kill(ex)
