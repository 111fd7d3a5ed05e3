"""The monitoring, against real runs on a local Ray cluster with real Serve and Postgres.

Two short runs export every metric the Grafana dashboard (``kuberay/grafana-dashboard.yaml``)
reads:

* a replay with IOC limit orders larger than the touch (cancelled remainders), a kill switch
  that trips (daily loss limit 1: denials) and a fast VaR grid (pre-trade and report VaR);
* live, on raydesk's own Binance-compatible feed server (the simulator, paced in real time)
  with a dropped connection and a sequence gap injected, a deadline too short for any model
  (every request misses it) and the journal mirrored to Postgres.

The node's Prometheus endpoint is scraped during and after the runs, and every metric named by
every panel query must be there. While the live run trades, ``raydesk status`` is asked about
it, and once it is torn down, again.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cluster.cli import app
from cluster.runner import run_pipeline
from tests.conftest import small_config
from tests.unit.test_kuberay import dashboard, panel_metric_names

pytestmark = pytest.mark.ray

# Dashboard metrics that these runs cannot make appear, each with the reason. Empty: the live
# run's feed server injects the faults that the live-feed-only metrics count.
NOT_EXPORTED_BY_TEST_RUNS: dict[str, str] = {}
SCRAPE_TIMEOUT_S = 45.0
LIVE_RUN_S = 18.0
# What only the live run exports: the live feed's counters, and what its too-short deadline and
# its Postgres mirror produce.
LIVE_RUN_METRICS = {
    "ray_raydesk_feed_messages_total", "ray_raydesk_feed_reconnects_total",
    "ray_raydesk_feed_resyncs_total", "ray_raydesk_feed_faults_total",
    "ray_raydesk_inference_deadline_miss_total", "ray_raydesk_inference_fallbacks_total",
    "ray_raydesk_audit_lag_records", "ray_raydesk_quarantines_total",
}
METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{|\s)", re.M)


def scrape_names(ray_mod: Any) -> set[str]:
    """Metric names on this node's Prometheus endpoint (found through Ray's node table)."""
    (node,) = [n for n in ray_mod.nodes() if n["Alive"]]
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    body = urllib.request.urlopen(url, timeout=10).read().decode()
    return set(METRIC_LINE.findall(body))


class Scraper:
    """Accumulates the metric names seen in every scrape."""

    def __init__(self, ray_mod: Any) -> None:
        self.ray = ray_mod
        self.seen: set[str] = set()

    def scrape(self) -> set[str]:
        self.seen |= scrape_names(self.ray)
        return self.seen

    def until(self, wanted: set[str], timeout_s: float) -> set[str]:
        """Scrape until ``wanted`` were all seen or ``timeout_s`` passed; return what is missing
        (metrics are flushed to the endpoint every few seconds)."""
        deadline = time.monotonic() + timeout_s
        while True:
            missing = wanted - self.scrape()
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(2.0)


def _status(cfg_path: Path, *args: str) -> tuple[int, str]:
    out = CliRunner().invoke(app, ["status", "--config", str(cfg_path), *args])
    return out.exit_code, out.output


async def _delete_audit(run_id: str) -> None:
    import asyncpg

    from actors.journal.pg_sink import dsn_from_env

    conn = await asyncpg.connect(dsn_from_env())
    try:
        await conn.execute("DELETE FROM raydesk_audit WHERE run_id = $1", run_id)
    finally:
        await conn.close()


def _live_run(cfg: Any, run_id: str, cfg_path: Path, scraper: Scraper) -> dict[str, Any]:
    """Run ``cfg`` live in a thread; meanwhile ask ``raydesk status`` until it reports the
    running topology healthy, and scrape the metrics endpoint."""
    result: dict[str, Any] = {"statuses": []}

    def target() -> None:
        try:
            result["summary"] = run_pipeline(cfg, replay=False, run_id=run_id)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            result["error"] = exc

    th = threading.Thread(target=target, name="live-run", daemon=True)
    th.start()
    while th.is_alive():
        code, text = _status(cfg_path, "--run-id", run_id, "--json")
        st = json.loads(text) if text.startswith("{") else {"raw": text}
        if st.get("runs"):
            books = st["runs"][0]["books"]
            if books and all(b["events"] > 0 for b in books.values()):
                result["statuses"].append((code, st))
                if code == 0 and "text" not in result:
                    result["text"] = _status(cfg_path, "--run-id", run_id)
        scraper.scrape()
        time.sleep(0.5)
    th.join()
    if "error" in result:
        raise result["error"]
    return result


@pytest.fixture(scope="module")
def runs(ray_cluster, model_dir, tmp_path_factory) -> dict[str, Any]:
    from actors.feed.server import FaultsConfig, FeedServer, SimSource

    tmp = tmp_path_factory.mktemp("grafana")
    scraper = Scraper(ray_cluster)
    wanted = set().union(*panel_metric_names(dashboard()).values())
    # the replay first (it also compiles what both runs share): IOC limit orders at the touch,
    # bigger than the touch (cancelled remainders), a kill switch that trips (denials), and a
    # VaR on a 100 ms grid with a 1 s report horizon, so that 8,000 events (~8 simulated
    # seconds) are enough for the pre-trade VaR and the report's
    replay_cfg = small_config(
        tmp, strategy={"entry_edge": 0.02, "order_type": "limit_ioc", "limit_offset_ticks": 0,
                       "order_qty_lots": 50},
        risk={"daily_loss_limit": 1.0,
              "var": {"sample_ms": 100.0, "min_returns": 10, "window": 100,
                      "var_limit": 2500.0, "es_limit": 3000.0},
              "report": {"every_s": 2.0, "horizons_s": [1.0]}},
    ).with_overrides(models={"registry_path": str(model_dir)})
    replay = run_pipeline(replay_cfg, replay=True, events=8_000)
    # gauges of finished processes leave the endpoint after a while: scrape now, until the
    # replay's metrics are all there (the live-feed and deadline ones come from the next run)
    scraper.until(wanted - LIVE_RUN_METRICS, SCRAPE_TIMEOUT_S)
    # the live run: raydesk's feed server with a dropped connection and a gap, every inference
    # later than its deadline, the journal mirrored to Postgres. Long enough for Ray's 10 s
    # metrics flush to happen after the faults, before teardown kills the actors.
    base = small_config(tmp, strategy={"entry_edge": 0.02}, journal={"postgres": True})
    faults = FaultsConfig.model_validate({"faults": [
        {"kind": "drop", "at_s": 2.0}, {"kind": "gap", "symbol": "BTCUSDT", "at_s": 4.0}]})
    server = FeedServer(SimSource(base), speed=1.0, faults=faults, wait_clients=1)
    with server.run_in_thread():
        live_cfg = base.with_overrides(
            models={"registry_path": str(model_dir), "deadline_ms": 0.5},
            feed={"source": "ws", "url": f"ws://127.0.0.1:{server.port}",
                  "reconnect_initial_s": 0.05, "reconnect_max_s": 0.2, "stall_timeout_s": 2.0},
            run={"duration_s": LIVE_RUN_S},
        )
        cfg_path = tmp / "live.yaml"
        cfg_path.write_text(yaml.safe_dump(live_cfg.model_dump(mode="json")))
        run_id = f"grafana-live-{time.time_ns()}"
        live = _live_run(live_cfg, run_id, cfg_path, scraper)
    live["after"] = _status(cfg_path, "--run-id", run_id, "--json")
    asyncio.run(_delete_audit(run_id))
    return {"live": live, "live_summary": live["summary"], "replay": replay,
            "scraper": scraper, "run_id": run_id, "wanted": wanted}


def test_every_dashboard_query_names_a_metric_the_runs_export(runs) -> None:
    # Arrange
    wanted = runs["wanted"]
    assert set(NOT_EXPORTED_BY_TEST_RUNS) <= wanted, "stale allow-list entries"
    assert wanted >= LIVE_RUN_METRICS
    # Act
    missing = runs["scraper"].until(wanted - set(NOT_EXPORTED_BY_TEST_RUNS), SCRAPE_TIMEOUT_S)
    # Assert
    assert not missing, f"dashboard metrics never exported: {sorted(missing)}"
    # the runs did what the metrics say they did
    live, replay = runs["live_summary"], runs["replay"]
    assert live["inference_fallbacks"].get("SERVE_FALLBACK", 0) > 0
    assert replay["trading_state"] == "HALTED" and replay["denials"].get("TRADING_HALTED")
    assert replay["fills"] > 0 and replay["risk"]["last_report"]["var"]["status"] == "ok"


def test_status_reports_the_running_topology_and_its_absence(runs) -> None:
    live = runs["live"]
    statuses = live["statuses"]
    assert statuses, "raydesk status never saw the running topology"
    # a healthy moment: exit 0, and everything the operator needs is there
    healthy = [st for code, st in statuses if code == 0]
    assert healthy, [st["problems"] for _, st in statuses]
    st = healthy[-1]
    (run,) = st["runs"]
    assert run["run_id"] == runs["run_id"] and st["problems"] == [] and st["healthy"]
    roles = {a["role"] for a in run["actors"]}
    assert roles == {"feed", "journal", "execution", "risk", "symbol-btcusdt", "symbol-ethusdt"}
    assert all(a["state"] == "ALIVE" and a["ping_ms"] >= 0 for a in run["actors"])
    ensemble = st["serve"]["applications"]["raydesk-ensemble"]
    assert ensemble["status"] == "RUNNING"
    assert ensemble["deployments"] and all(
        d["status"] == "HEALTHY" for d in ensemble["deployments"].values())
    assert set(run["books"]) == {"BTCUSDT", "ETHUSDT"}
    assert all(b["events"] > 0 and not b["quarantined"] for b in run["books"].values())
    assert run["feed"]["source"] == "ws" and all(run["feed"]["synced"].values())
    assert sum(run["feed"]["messages"].values()) > 0
    assert run["trading"]["state"] == "ACTIVE" and "positions" in run["trading"]
    assert run["journal"]["records"] > 0 and run["journal"]["postgres"] is not None
    # the terminal rendering of a healthy topology
    code, text = live["text"]
    assert code == 0
    for part in ("raydesk status", "raydesk-ensemble", "actors", "books", "trading",
                 "feed (live)", "journal:", "healthy"):
        assert part in text, part
    # the feed faults were seen while it ran (the counters the dashboard's feed panels read)
    last = statuses[-1][1]["runs"][0]["feed"]
    assert sum(last["reconnects"].values()) >= 1 and last["faults"].get("gap", 0) >= 1
    # once the run is torn down, status says so and exits 1
    code, text = live["after"]
    after = json.loads(text)
    assert code == 1 and after["runs"] == []
    assert after["problems"] == [f"no running run {runs['run_id']!r} in namespace 'raydesk'"]
