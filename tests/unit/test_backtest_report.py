"""Backtest report from synthetic journal records: every metric checked by hand (pure, no Ray)."""

from __future__ import annotations

import json
import math
import statistics
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.errors import ValidationError
from actors.core.instruments import Instrument
from actors.journal.journal import Journal
from cluster.config import ConfigError, load_config
from jobs import backtest
from jobs.report_html import (
    METRIC_KEYS,
    _downsample,
    annualisation,
    build_report,
    equity_curve,
    latency_stats,
    metrics,
    prediction_diagnostics,
    svg_lines,
)
from tests.conftest import small_config

S = 1_000_000_000
DAY_S = 86_400.0
AAA = Instrument("AAA", Decimal("1"), Decimal("1"))
BBB = Instrument("BBB", Decimal("0.5"), Decimal("0.1"))  # 1 tick = 0.5 quote, 1 lot = 0.1 units
INS = {"AAA": AAA}


def marks(step: int, **mids: float | None) -> dict:
    ts = step * S
    return {"type": "MarketMarks", "ts_event": ts, "ts_init": ts, "mids": mids, "tops": {}}


def fill(coid: str, side: str, qty: int, px: int, fee: float, sym: str = "AAA") -> dict:
    return {
        "type": "OrderFilled",
        "client_order_id": coid,
        "symbol": sym,
        "side": side,
        "last_qty_lots": qty,
        "last_px_ticks": px,
        "fee": fee,
        "liquidity": "TAKER",
        "ts_event": 0,
        "ts_init": 0,
    }


def submit(coid: str, sym: str = "AAA") -> dict:
    return {"type": "SubmitOrder", "client_order_id": coid, "symbol": sym}


def denied(coid: str, reason: str) -> dict:
    return {"type": "OrderDenied", "client_order_id": coid, "symbol": "AAA", "reason": reason}


def decision(signal: int, probs: tuple[float, float, float], models: dict | None = None) -> dict:
    return {
        "type": "DecisionMade",
        "symbol": "AAA",
        "signal": signal,
        "probs": list(probs),
        "models": {"lgbm": "v1"} if models is None else models,
    }


def journal() -> list[dict]:
    """Buy 2 @100, sell 1 @103 (+3 realised), sell 2 @99 (closes 1 at -1, opens 1 short)."""
    return [
        marks(0, AAA=100),
        submit("o1"),
        fill("o1", "BUY", 2, 100, 1.0),
        marks(1, AAA=105),
        marks(2, AAA=102),
        submit("o2"),
        fill("o2", "SELL", 1, 103, 1.0),
        submit("o3"),
        denied("o3", "RATE_LIMIT_EXCEEDED"),
        marks(3, AAA=99),
        submit("o4"),
        fill("o4", "SELL", 2, 99, 0.5),
        submit("o5"),
        denied("o5", "NOTIONAL_EXCEEDS_MAX_PER_ORDER"),
        submit("o6"),
        denied("o6", "RATE_LIMIT_EXCEEDED"),
        marks(4, AAA=97),
    ]


HAND_EQUITY = [
    1000 - 1 + 0,  # long 2 @100 marked 100, fee 1
    1000 - 1 + 2 * 5,  # marked 105
    1000 + 3 - 2 + 1 * 2,  # sold 1 @103: +3 realised, fees 2, long 1 marked 102
    1000 + 2 - 2.5 + 0,  # sold 2 @99: -1 realised on the last long lot, short 1 @99 marked 99
    1000 + 2 - 2.5 + 2,  # short 1 @99 marked 97
]


def test_equity_curve_marks_average_cost_positions_after_each_steps_fills() -> None:
    curve = equity_curve(journal(), INS, 1000.0)

    assert curve.equity == pytest.approx(HAND_EQUITY)
    assert curve.positions == {"AAA": [2, 2, 1, -1, -1]}
    assert curve.realised == pytest.approx([0, 0, 3, 2, 2])
    assert curve.fees == pytest.approx([1, 1, 2, 2.5, 2.5])
    assert curve.gross_exposure == pytest.approx([200, 210, 102, 99, 97])
    assert curve.ts_ns == [0, S, 2 * S, 3 * S, 4 * S]
    assert [(f.closing_lots, f.realised) for f in curve.fills] == [(0, 0), (1, 3), (1, -1)]
    # the trip opened at step 0 closes at step 3: 3 - 1 (fee) - 1 - 1 - 0.25 (half the flip's fee)
    assert curve.round_trips == pytest.approx([-0.25])


def test_metrics_match_a_hand_computation_with_daily_steps() -> None:
    curve = equity_curve(journal(), INS, 1000.0)

    m = metrics(curve, DAY_S)

    prev = [1000.0, *HAND_EQUITY[:-1]]
    r = [e / p - 1 for e, p in zip(HAND_EQUITY, prev, strict=True)]
    ppy = 365.0
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in r) / len(r))
    ann = (HAND_EQUITY[-1] / 1000) ** (ppy / 5) - 1
    mean_eq = sum(HAND_EQUITY) / 5
    assert m["total_return"] == pytest.approx(0.0015)
    assert m["pnl"] == pytest.approx(1.5)
    assert m["sharpe"] == pytest.approx(statistics.fmean(r) / statistics.stdev(r) * math.sqrt(ppy))
    assert m["sortino"] == pytest.approx(statistics.fmean(r) / downside * math.sqrt(ppy))
    assert m["annualised_volatility"] == pytest.approx(statistics.stdev(r) * math.sqrt(ppy))
    assert m["annualised_return"] == pytest.approx(ann)
    assert m["max_drawdown"] == pytest.approx(9.5 / 1009)  # 1009 -> 999.5
    assert m["max_drawdown_quote"] == pytest.approx(9.5)
    assert m["calmar"] == pytest.approx(ann / (9.5 / 1009))
    assert m["traded_notional"] == pytest.approx(200 + 103 + 198)
    assert m["turnover"] == pytest.approx(501 / mean_eq)
    assert m["turnover_per_day"] == pytest.approx(501 / mean_eq / 5)
    assert m["fees"] == pytest.approx(2.5)
    assert m["fees_bps_of_notional"] == pytest.approx(2.5 / 501 * 1e4)
    assert m["closing_fills"] == 2 and m["hit_rate_closing_fills"] == 0.5
    assert m["round_trips"] == 1 and m["hit_rate_round_trips"] == 0.0
    assert (m["orders"], m["fills"], m["denials"]) == (6, 3, 3)
    assert m["denials_by_reason"] == {"NOTIONAL_EXCEEDS_MAX_PER_ORDER": 1, "RATE_LIMIT_EXCEEDED": 2}
    assert m["final_positions_lots"] == {"AAA": -1}
    assert m["max_gross_exposure"] == pytest.approx(210)
    assert m["annualisation"]["periods_per_year"] == ppy
    assert m["sim_seconds"] == 5 * DAY_S


def test_annualisation_is_24_7_periods_of_one_step() -> None:
    ann = annualisation(0.1)

    assert ann["periods_per_year"] == pytest.approx(315_360_000)
    assert "365 * 24 * 3600 / step_s" in ann["convention"]
    with pytest.raises(ValidationError, match="step_s must be > 0, was 0"):
        annualisation(0)


def test_annualised_return_that_overflows_is_none_and_metrics_stay_json_safe() -> None:
    recs = [marks(0, AAA=100), fill("a", "BUY", 10, 100, 0.0), marks(1, AAA=200)]

    m = metrics(equity_curve(recs, INS, 1000.0), 0.1)

    assert m["total_return"] == pytest.approx(1.0)
    assert m["annualised_return"] is None and m["calmar"] is None
    assert m["sharpe"] is not None  # two returns, one of them 0: std > 0
    json.dumps(m, allow_nan=False)


def test_flat_run_has_no_ratios_with_zero_denominators() -> None:
    m = metrics(equity_curve([marks(0, AAA=100), marks(1, AAA=101)], INS, 1000.0), 1.0)

    assert m["total_return"] == 0.0 and m["max_drawdown"] == 0.0
    assert m["sharpe"] is None and m["sortino"] is None and m["calmar"] is None
    assert m["hit_rate_closing_fills"] is None and m["fees_bps_of_notional"] is None
    assert m["turnover"] == 0.0


def test_drawdown_runs_from_the_starting_capital() -> None:
    recs = [marks(0, AAA=100), fill("a", "BUY", 1, 100, 10.0), marks(1, AAA=95)]

    m = metrics(equity_curve(recs, INS, 1000.0), 1.0)

    assert m["max_drawdown_quote"] == pytest.approx(15.0)  # 1000 -> 990 (fee) -> 985
    assert m["max_drawdown"] == pytest.approx(0.015)


def test_prices_and_quantities_convert_with_tick_and_lot_sizes() -> None:
    recs = [marks(0, BBB=200), fill("b", "BUY", 10, 202, 0.1, sym="BBB"), marks(1, BBB=210)]

    curve = equity_curve(recs, {"BBB": BBB}, 1000.0)

    # 10 lots = 1 unit at 202 ticks = 101 quote, marked at 100 then 105
    assert curve.fills[0].notional == pytest.approx(101.0)
    assert curve.equity == pytest.approx([1000 - 0.1 - 1, 1000 - 0.1 + 4])
    assert curve.gross_exposure == pytest.approx([100.0, 105.0])
    assert curve.mids == {"BBB": [100.0, 105.0]}


def test_empty_side_keeps_the_last_mark() -> None:
    recs = [marks(0, AAA=100), fill("a", "BUY", 1, 100, 0.0), marks(1, AAA=None), marks(2, AAA=90)]

    curve = equity_curve(recs, INS, 1000.0)

    assert curve.equity == pytest.approx([1000, 1000, 990])
    assert curve.mids == {"AAA": [100.0, None, 90.0]}


def test_fill_of_a_symbol_without_instrument_is_refused() -> None:
    with pytest.raises(ValidationError, match="instruments must be a map including 'ZZZ'"):
        equity_curve([marks(0, AAA=100), fill("z", "BUY", 1, 1, 0.0, sym="ZZZ")], INS, 1000.0)


def test_journal_without_market_marks_is_refused() -> None:
    with pytest.raises(ValidationError, match="records must be a journal with MarketMarks"):
        equity_curve([submit("o1"), fill("o1", "BUY", 1, 100, 0.0)], INS, 1000.0)


STEP = st.tuples(
    st.integers(50, 150),  # AAA mid, ticks
    st.integers(100, 300),  # BBB mid, ticks
    st.lists(
        st.tuples(
            st.sampled_from(["AAA", "BBB"]),
            st.sampled_from(["BUY", "SELL"]),
            st.integers(1, 5),
            st.integers(-3, 3),
            st.floats(0, 1),
        ),
        max_size=3,
    ),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=25))
def test_equity_reconciles_with_cash_accounting_and_trips_with_pnl(steps: list) -> None:
    ins = {"AAA": AAA, "BBB": BBB}
    recs, cash, lots = [], 0.0, {"AAA": 0, "BBB": 0}
    expected = []
    for i, (ma, mb, fills) in enumerate(steps):
        recs.append(marks(i, AAA=ma, BBB=mb))
        mid = {"AAA": ma, "BBB": mb}
        for sym, side, qty, off, fee in fills:
            px = mid[sym] + off
            recs.append(fill(f"o{i}", side, qty, px, fee, sym=sym))
            sign = 1 if side == "BUY" else -1
            cash -= sign * ins[sym].notional(px, qty) + fee
            lots[sym] += sign * qty
        value = sum(ins[s].notional(mid[s], q) for s, q in lots.items())
        expected.append(1e6 + cash + value)
    flatten = [
        fill("f", "SELL" if q > 0 else "BUY", abs(q), 100, 0.25, sym=s)
        for s, q in lots.items()
        if q
    ]

    curve = equity_curve(recs, ins, 1e6)
    flat = equity_curve([*recs, *flatten], ins, 1e6)
    m = metrics(curve, 0.1)

    assert curve.equity == pytest.approx(expected, abs=1e-6)
    assert {s: q[-1] for s, q in curve.positions.items()} == lots
    assert 0.0 <= m["max_drawdown"] <= 1.0
    assert m["hit_rate_closing_fills"] is None or 0.0 <= m["hit_rate_closing_fills"] <= 1.0
    # once everything is flat, the round trips hold all the realised PnL and all the fees
    assert sum(flat.round_trips) == pytest.approx(flat.realised[-1] - flat.fees[-1], abs=1e-6)


def test_prediction_diagnostics_by_hand() -> None:
    recs = [
        marks(0, AAA=100),
        decision(1, (0.1, 0.2, 0.7)),
        marks(1, AAA=101),
        decision(-1, (0.6, 0.3, 0.1)),
        marks(2, AAA=101),
        decision(0, (0.3, 0.4, 0.3)),
        marks(3, AAA=99),
        decision(1, (0.2, 0.2, 0.6)),
        decision(0, (0, 1, 0), models={}),
        marks(4, AAA=100),
    ]

    d = prediction_diagnostics(recs, (1, 2))

    assert (d["decisions"], d["without_models"]) == (4, 1)
    assert d["signal_counts"] == {"-1": 1, "0": 1, "1": 2}
    assert d["mean_probs"] == pytest.approx({"down": 0.3, "flat": 0.275, "up": 0.425})
    assert d["mean_probs_by_signal"]["1"] == pytest.approx({"down": 0.15, "flat": 0.2, "up": 0.65})
    h1 = d["horizons"]["1"]
    assert h1["by_signal"]["1"]["mean_move_bps"] == pytest.approx((100 + 1 / 99 * 1e4) / 2)
    assert h1["by_signal"]["-1"] == {"n": 1, "mean_move_bps": 0.0}
    assert h1["by_signal"]["0"]["mean_move_bps"] == pytest.approx(-2 / 101 * 1e4)
    assert h1["direction_n"] == 3 and h1["direction_hit_rate"] == pytest.approx(2 / 3)
    assert h1["zero_move_share"] == pytest.approx(1 / 3) and h1["censored"] == 0
    h2 = d["horizons"]["2"]
    assert h2["by_signal"]["-1"]["mean_move_bps"] == pytest.approx(-2 / 101 * 1e4)
    assert h2["direction_n"] == 2 and h2["direction_hit_rate"] == 1.0
    assert h2["censored"] == 1  # the step-3 decision has no step 5


def test_prediction_horizon_below_one_is_refused() -> None:
    with pytest.raises(ValidationError, match="horizons_steps must be >= 1 each"):
        prediction_diagnostics([], (0,))


def test_latency_histogram_from_samples_and_percentiles_from_summary_without() -> None:
    summary = {
        "latency_ms": {"what": "tick-to-order", "count": 7, "p50": 5.0, "p99": 9.0, "max": 12.0},
        "stage_ms_p50": {"feed": 1.0},
    }

    with_samples = latency_stats(summary, [1.0, 2.0, 3.0, 4.0, 100.0], bins=3)
    without = latency_stats(summary)

    assert with_samples["source"] == "samples" and with_samples["count"] == 5
    assert with_samples["histogram"] == {"edges_ms": [1.0, 34.0, 67.0, 100.0], "counts": [4, 0, 1]}
    assert (with_samples["p50"], with_samples["max"], with_samples["mean"]) == (3.0, 100.0, 22.0)
    assert without["source"] == "summary percentiles" and without["histogram"] is None
    assert (without["count"], without["p50"], without["p99"]) == (7, 5.0, 9.0)
    assert without["stage_ms_p50"] == {"feed": 1.0}


def test_downsampling_keeps_the_extremes_and_the_ends() -> None:
    xs = [float(i) for i in range(10_000)]
    ys = [float(i % 7) for i in range(10_000)]
    ys[4_321], ys[6_789] = 1e6, -1e6

    dx, dy = _downsample(xs, ys, 1_000)

    assert len(dx) <= 1_002 and dx[0] == 0.0 and dx[-1] == 9_999.0
    assert 1e6 in dy and -1e6 in dy and dx == sorted(dx)


def test_line_chart_without_data_says_so() -> None:
    assert "Equity: no data" in svg_lines([("e", [], [])], "Equity", "s", "quote")


def test_report_html_is_self_contained_with_every_section() -> None:
    summary = {"latency_ms": {"what": "tick-to-order", "count": 3}, "stage_ms_p50": {"feed": 1.0}}

    m, page = build_report(
        [*journal()[:3], decision(1, (0.1, 0.2, 0.7)), *journal()[3:]],
        INS,
        1000.0,
        0.1,
        run_id="bt-<1>",
        config_hash="abc123",
        summary=summary,
        latency_samples_ms=[1.0, 2.0, 3.0],
        horizons_steps=(1, 2),
    )

    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "bt-&lt;1&gt;" in page and "bt-<1>" not in page and "abc123" in page
    for section in (
        "metrics",
        "equity",
        "drawdown",
        "positions",
        "trades",
        "latency",
        "predictions",
    ):
        assert f'id="{section}"' in page
    # equity, drawdown, positions, gross, AAA trades, latency histogram, stages, 2 horizons
    assert page.count("<svg") == 9
    for external in ("http:", "https:", "src=", "<script", "<link", "url(", "@import"):
        assert external not in page
    assert "365 * 24 * 3600 / step_s" in page
    assert set(METRIC_KEYS) <= set(m)  # every row of the metrics table has its value
    assert m["run_id"] == "bt-<1>" and m["fills"] == 3
    assert m["latency"]["source"] == "samples" and "histogram" not in m["latency"]
    assert m["predictions"]["decisions"] == 1
    json.dumps(m, allow_nan=False)


# --- jobs.backtest: the parts that need no Ray --------------------------------------------------
def test_run_ids_are_derived_from_the_config_hash_and_numbered(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    prefix = f"backtest-{cfg.hash()}-"
    for name in (f"{prefix}1", f"{prefix}3", f"{prefix}x", "other-9"):
        (tmp_path / "store" / name).mkdir(parents=True)

    first = backtest.reserve_run_dir(cfg, tmp_path / "store")
    second = backtest.reserve_run_dir(cfg, tmp_path / "store")

    assert (first, second) == (f"{prefix}4", f"{prefix}5")
    assert (tmp_path / "store" / first).is_dir()
    assert backtest.next_run_id(cfg, tmp_path / "none") == f"{prefix}1"


def test_backtest_config_applies_replay_storage_and_length(tmp_path: Path) -> None:
    base = small_config(tmp_path).with_overrides(run={"events": 5})

    by_events = backtest.backtest_config(base, storage=tmp_path / "s", events=7)
    by_duration = backtest.backtest_config(base, duration_s=3.0)

    assert by_events.run.replay and by_events.run.events == 7
    assert by_events.run.runs_dir == str(tmp_path / "s")
    assert by_duration.run.events is None and by_duration.run.duration_s == 3.0
    assert by_events.hash() != backtest.backtest_config(base, events=8).hash()
    with pytest.raises(ConfigError, match="run.events must be greater than or equal to 1"):
        backtest.backtest_config(base, events=0)


def test_main_exits_2_naming_the_field_of_a_bad_config(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    data = load_config().model_dump(mode="json")
    data["risk"]["capital"] = -1
    bad.write_text(yaml.safe_dump(data))

    code = backtest.main(["--config", str(bad), "--storage", str(tmp_path / "s")])

    assert code == 2
    assert "risk.capital must be greater than 0, was -1" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_main_refuses_a_run_id_that_already_has_a_journal(tmp_path: Path, capsys) -> None:
    (tmp_path / "s" / "mine").mkdir(parents=True)
    (tmp_path / "s" / "mine" / "journal.log").write_text("")

    code = backtest.main(["--storage", str(tmp_path / "s"), "--run-id", "mine"])

    assert code == 2 and "run id must be new" in capsys.readouterr().err


def test_report_run_writes_metrics_and_html_next_to_the_journal(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    sym = cfg.instruments[0].symbol
    run_dir = tmp_path / "runs" / "backtest-x-1"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    (run_dir / "summary.json").write_text(json.dumps({"config_hash": "feedbeef"}))
    j = Journal(run_dir / "journal.log", fsync=False)
    j.append([marks(0, **{sym: 1000}), fill("o1", "BUY", 2, 1000, 0.5, sym=sym)])
    j.append([marks(1, **{sym: 1010})])
    j.close()

    m = backtest.report_run(run_dir, [1.0, 2.0])

    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(m))
    assert m["run_id"] == "backtest-x-1" and m["config_hash"] == "feedbeef"
    inst = cfg.instrument_map()[sym]
    assert m["pnl"] == pytest.approx(inst.notional(10, 2) - 0.5)
    assert m["annualisation"]["step_s"] == cfg.feed.batch_interval_ms / 1e3
    assert sorted(m["predictions"]["horizons"], key=int) == ["1", str(cfg.models.horizon)]
    assert "backtest-x-1" in (run_dir / "report.html").read_text()
