"""The full topology on a real local Ray cluster with real Serve."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from actors.core.messages import OrderStatus
from actors.execution.orders import transition
from actors.journal.journal import read_journal
from cluster.cli import app
from cluster.runner import run_pipeline
from serve.registry import ModelRegistry
from tests.conftest import small_config

pytestmark = pytest.mark.ray

TERMINAL = {"FILLED", "CANCELED", "REJECTED", "EXPIRED", "DENIED"}


def _cfg(tmp: Path, model_dir: Path, **sections: dict):
    cfg = small_config(tmp, **sections)
    return cfg.with_overrides(models={"registry_path": str(model_dir)})


def _journal(summary: dict) -> list[dict]:
    return [rec for _, rec in read_journal(summary["journal"]["path"])]


def _replay_statuses(records: list[dict]) -> dict[str, list[str]]:
    """Walk every order's journaled events through the transition table (raises if illegal)."""
    status: dict[str, OrderStatus] = {}
    qty: dict[str, int] = {}
    filled: dict[str, int] = {}
    path: dict[str, list[str]] = {}
    for rec in records:
        t = rec["type"]
        coid = rec.get("client_order_id")
        if t == "SubmitOrder":
            assert coid not in status, f"duplicate client order id {coid}"
            status[coid], qty[coid], filled[coid] = OrderStatus.INITIALIZED, rec["qty_lots"], 0
            path[coid] = ["INITIALIZED"]
        elif t.startswith("Order") and t != "OrderError":
            assert coid in status, f"{t} for unknown order {coid}"
            last = rec.get("last_qty_lots", 0)
            status[coid] = transition(
                status[coid], t, qty_lots=qty[coid], filled_lots=filled[coid],
                last_qty_lots=last, client_order_id=coid,
            )
            filled[coid] += last
            path[coid].append(status[coid].value)
    return path


def test_pipeline_orders_reach_journal_with_only_legal_transitions(
    ray_cluster, model_dir, tmp_path
) -> None:
    cfg = _cfg(tmp_path, model_dir, strategy={"entry_edge": 0.02})
    summary = run_pipeline(cfg, replay=True, events=6_000)

    assert summary["events"] >= 6_000
    assert summary["orders"] > 0 and summary["fills"] > 0
    assert summary["order_errors"] == {}
    records = _journal(summary)
    types = {r["type"] for r in records}
    assert {"DecisionMade", "SubmitOrder", "OrderAccepted", "OrderFilled"} <= types
    assert "OrderError" not in types
    paths = _replay_statuses(records)
    assert len(paths) == summary["orders"]
    # every accepted order ends in a terminal state (the strategy only sends IOC orders)
    accepted = [p for p in paths.values() if "ACCEPTED" in p]
    assert accepted and all(p[-1] in TERMINAL for p in accepted)
    decisions = [r for r in records if r["type"] == "DecisionMade" and r["models"]]
    assert decisions and all(r["feature_hash"] for r in decisions)
    fitted = ModelRegistry(model_dir).ensemble()["weights"]  # models.weights unset: served
    assert set(decisions[0]["models"]) == {f for f, w in fitted.items() if w > 0}
    on_disk = json.loads((Path(cfg.run.runs_dir) / summary["run_id"] / "summary.json").read_text())
    assert on_disk["orders"] == summary["orders"]
    assert summary["latency_ms"]["p50"] is not None
    # positions of record reconcile with the journaled fills
    net: dict[str, int] = {}
    for r in records:
        if r["type"] == "OrderFilled":
            sign = 1 if r["side"] == "BUY" else -1
            net[r["symbol"]] = net.get(r["symbol"], 0) + sign * r["last_qty_lots"]
    assert net == summary["portfolio"]["positions"]
    # execution analytics from the same journal, through the CLI
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    out = CliRunner().invoke(app, ["report", "executions", summary["run_id"], "--config",
                                   str(cfg_path), "--json"])
    assert out.exit_code == 0, out.output
    rep = json.loads(out.output)
    assert rep["total"]["fills"] == summary["fills"]
    assert rep["total"]["orders"] == summary["orders"]
    assert rep["total"]["slippage_bps"] is not None
    assert rep["total"]["markout_fills"]["1s"] > 0
    assert set(rep["by_symbol"]) <= {i.symbol for i in cfg.instruments}


def _scrape_until(ray_mod, needles: list[str], timeout_s: float = 45.0) -> str:
    """Poll this node's Prometheus endpoint until every needle shows up; return the text."""
    port = ray_mod._private.worker._global_node.metrics_export_port
    deadline = time.monotonic() + timeout_s
    body = ""
    while time.monotonic() < deadline:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        body = body.decode()
        if all(n in body for n in needles):
            return body
        time.sleep(2)
    missing = [n for n in needles if n not in body]
    raise AssertionError(f"metrics must include {missing}, were absent after {timeout_s} s")


def test_low_risk_limit_produces_denials_with_reason_codes(ray_cluster, model_dir, tmp_path):
    cfg = _cfg(
        tmp_path, model_dir, strategy={"entry_edge": 0.02}, risk={"max_notional_per_order": 1.0}
    )
    summary = run_pipeline(cfg, replay=True, events=4_000)

    assert summary["denials"].get("NOTIONAL_EXCEEDS_MAX_PER_ORDER", 0) == summary["orders"] > 0
    assert summary["fills"] == 0
    records = _journal(summary)
    denied = [r for r in records if r["type"] == "OrderDenied"]
    assert denied and all(r["reason"] == "NOTIONAL_EXCEEDS_MAX_PER_ORDER" for r in denied)
    assert "> max 1.0" in denied[0]["detail"]
    verdicts = [r for r in records if r["type"] == "DecisionMade" and r["client_order_id"]]
    assert verdicts and all(r["risk_verdict"] == "DENIED" for r in verdicts)
    # ... and they are counted through Ray's metrics API, on the node's Prometheus endpoint
    _scrape_until(ray_cluster, [
        'ray_raydesk_risk_denials_total{', 'reason="NOTIONAL_EXCEEDS_MAX_PER_ORDER"',
        "ray_raydesk_events_total{", "ray_raydesk_book_apply_us_bucket{",
        "ray_raydesk_orders_total{",
    ])


def test_two_replays_give_byte_identical_journals(ray_cluster, model_dir, tmp_path) -> None:
    cfg = _cfg(tmp_path, model_dir, strategy={"entry_edge": 0.02})
    a = run_pipeline(cfg, replay=True, events=3_000)
    b = run_pipeline(cfg, replay=True, events=3_000)

    assert a["run_id"] != b["run_id"]
    ja = Path(a["journal"]["path"]).read_bytes()
    jb = Path(b["journal"]["path"]).read_bytes()
    assert a["orders"] > 0
    assert ja == jb


def test_live_run_trades_on_wall_clock(ray_cluster, model_dir, tmp_path) -> None:
    cfg = _cfg(tmp_path, model_dir, strategy={"entry_edge": 0.02})
    summary = run_pipeline(cfg, replay=False, duration_s=4.0)

    assert summary["mode"] == "live"
    assert 3.5 <= summary["wall_s"] < 15
    assert summary["events"] > 0 and summary["decisions"] > 0
    # live books are fresh: the feed's clock starts when trading starts, not at cluster start
    assert "BOOK_STALE" not in summary["denials"]
    assert summary["orders"] > 0 and summary["latency_ms"]["count"] > 0
    assert summary["latency_ms"]["p50"] < 1_000


def test_malformed_batch_gets_clear_error_and_actor_survives(ray_cluster, tmp_path) -> None:
    import ray

    from actors.book.actor import SymbolActor
    from actors.core.batch import MarketBatch
    from tests.unit.test_book import INS, make_rows, snapshot

    cfg = small_config(tmp_path)
    actor = ray.remote(SymbolActor).remote(
        INS, cfg.book.model_dump(), cfg.features.model_dump(), True
    )
    ok = ray.get(actor.on_batch.remote(MarketBatch(INS, snapshot([(100, 1.0)], [(101, 1.0)]))))
    assert ok.errors == ()
    from actors.core.batch import BID, DELTA, F_LAST

    bad = make_rows([(DELTA, BID, 100, float("inf"), F_LAST)], start_seq=2)
    upd = ray.get(actor.on_batch.remote(MarketBatch(INS, bad)))
    assert upd.errors == ("batch[BTCUSDT].size[0] must be finite, was inf",)
    assert upd.view.bid_sizes == (1.0,) and upd.view.quarantined  # missed data: quarantined
    again = ray.get(actor.on_batch.remote(MarketBatch(INS, make_rows(
        [(DELTA, BID, 100, 2.0, F_LAST)], start_seq=3))))
    assert again.errors == () and again.view.bid_sizes == (2.0,) and again.view.quarantined
    ray.kill(actor)


def test_kill_switch_halts_trading_and_is_journaled_once(ray_cluster, model_dir, tmp_path):
    cfg = _cfg(tmp_path, model_dir, strategy={"entry_edge": 0.02}, risk={"daily_loss_limit": 1.0})
    summary = run_pipeline(cfg, replay=True, events=8_000)

    assert summary["trading_state"] == "HALTED"
    records = _journal(summary)
    trips = [r for r in records if r["type"] == "TradingStateChanged"]
    assert [(r["state"], r["reason"]) for r in trips] == [("HALTED", "DAILY_LOSS_LIMIT")]
    after = records[records.index(trips[0]) + 1 :]
    submits = [r for r in after if r["type"] == "SubmitOrder"]
    denied = {r["client_order_id"] for r in after if r["type"] == "OrderDenied"}
    assert submits, "the strategy kept trying after the trip"
    assert all(r["client_order_id"] in denied for r in submits)
    assert summary["denials"]["TRADING_HALTED"] == len(submits)
    assert not [r for r in after if r["type"] == "OrderAccepted"]


def test_a_topology_that_cannot_start_leaves_nothing_behind(ray_cluster, model_dir, tmp_path):
    from ray import serve

    from cluster.topology import SERVE_APP_NAME, build_topology

    cfg = _cfg(tmp_path, model_dir).with_overrides(ray={"start_timeout_s": 0.001})
    with pytest.raises(ray_cluster.exceptions.GetTimeoutError):
        build_topology(cfg, "wontstart", tmp_path, True, 1_700_000_000_000_000_000)

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        names = ray_cluster.util.list_named_actors(all_namespaces=True)
        left = [n for n in names if "wontstart" in n["name"]]
        if not left:
            break
        time.sleep(0.5)
    assert left == []
    assert SERVE_APP_NAME not in serve.status().applications
