"""Execution analytics from journal records: every number checked against a hand computation."""

from __future__ import annotations

from decimal import Decimal

import pytest

from actors.core.instruments import Instrument
from actors.execution.analytics import execution_report

S = 1_000_000_000
INS = {"X": Instrument("X", Decimal("0.5"), Decimal("2"))}  # 1 tick = 0.5, 1 lot = 2 units


def marks(ts: int, mid: float) -> dict:
    return {"type": "MarketMarks", "ts_event": ts, "ts_init": ts, "mids": {"X": mid}}


def decision(did: str, models: dict) -> dict:
    return {"type": "DecisionMade", "decision_id": did, "models": models, "symbol": "X"}


def submit(coid: str, side: str, qty: int, ts: int, did: str) -> dict:
    return {"type": "SubmitOrder", "client_order_id": coid, "symbol": "X", "side": side,
            "qty_lots": qty, "ts_init": ts, "ts_event": ts, "decision_id": did}


def fill(coid: str, qty: int, px: int, ts: int, fee: float = 0.0) -> dict:
    return {"type": "OrderFilled", "client_order_id": coid, "symbol": "X", "last_qty_lots": qty,
            "last_px_ticks": px, "ts_event": ts, "fee": fee}


def journal() -> list[dict]:
    return [
        marks(0, 100.0),
        decision("X-1", {"lgbm": "v1"}),
        submit("a", "BUY", 4, 0, "X-1"),
        fill("a", 3, 101, 0, fee=1.0),  # 3 of 4 lots, 1 tick above the arrival mid
        decision("X-2", {"lgbm": "v2"}),
        submit("s", "SELL", 2, 0, "X-2"),
        fill("s", 2, 99, 0),  # 1 tick below the arrival mid: a cost for a sell too
        {"type": "OrderDenied", "client_order_id": "d", "symbol": "X"},
        marks(1 * S, 104.0),
        marks(10 * S, 96.0),
    ]


def test_report_computes_slippage_shortfall_fill_ratio_and_markouts_by_hand() -> None:
    rep = execution_report(journal(), INS, horizons_s=(1.0, 10.0, 60.0))
    a = rep["by_model"]["lgbm:v1"]
    # buy 3 lots at 101 vs 100: cost 1 tick * 0.5 * 3 lots * 2 units = 3.0 on 300.0 base
    assert a["slippage_bps"] == pytest.approx(3.0 / 300.0 * 1e4)
    # shortfall: 3.0 + fee 1.0 + unfilled 1 lot * (96 - 100) ticks * 0.5 * 2 = -4.0 -> 0.0 on 400
    assert a["implementation_shortfall"] == pytest.approx(0.0)
    assert a["fill_ratio"] == pytest.approx(0.75)
    assert a["markout_bps"]["1s"] == pytest.approx((104 - 101) / 101 * 1e4)
    assert a["markout_bps"]["10s"] == pytest.approx((96 - 101) / 101 * 1e4)
    assert a["markout_bps"]["60s"] is None and a["markout_censored"]["60s"] == 1
    s = rep["by_model"]["lgbm:v2"]
    assert s["slippage_bps"] == pytest.approx(1.0 / 100.0 * 1e4)  # -1 * (99 - 100) = +1 tick
    assert s["markout_bps"]["1s"] == pytest.approx(-1 * (104 - 99) / 99 * 1e4)
    t = rep["total"]
    assert (t["orders"], t["denied"], t["fills"], t["filled_lots"]) == (2, 0, 2, 5)
    assert t["filled_notional"] == pytest.approx(101 * 0.5 * 6 + 99 * 0.5 * 4)
    assert rep["by_symbol"]["X"]["orders"] == 2


def test_denied_orders_are_counted_apart_and_not_in_the_fill_ratio() -> None:
    recs = [marks(0, 100.0), submit("d", "BUY", 5, 0, ""),
            {"type": "OrderDenied", "client_order_id": "d", "symbol": "X"}]
    t = execution_report(recs, INS)["total"]
    assert (t["orders"], t["denied"], t["ordered_lots"], t["fill_ratio"]) == (1, 1, 0, None)


def test_unknown_instrument_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="instruments must include 'X'"):
        execution_report(journal(), {})
