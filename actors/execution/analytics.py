"""Execution analytics from a run's journal: slippage, implementation shortfall, fill ratio and
markouts, per symbol and per model version (pure; ``raydesk report executions RUN_ID``).

What the journal gives (``cluster/kernel.py`` writes it): a ``MarketMarks`` record first in
every step (the mid of every symbol, in ticks, at the step's time), then the step's
``DecisionMade`` records (model versions per decision), ``SubmitOrder`` commands, denials and
order events.

Definitions (``side`` = +1 buy, -1 sell; prices in quote currency; bps of the arrival mid):

* **arrival mid**: the mid of the step in which the order was sent, the book the decision saw;
* **slippage**: ``side × (average fill price − arrival mid) / arrival mid``, positive = cost,
  averaged over orders weighted by filled notional;
* **implementation shortfall** (Perold): ``Σ side × (fill price − arrival mid) × filled
  quantity + fees + side × (last mid − arrival mid) × unfilled quantity`` — execution cost,
  fees, and the opportunity cost of what never filled, valued at the run's last mid of the
  symbol; in quote currency and in bps of the intended notional at the arrival mid;
* **fill ratio**: filled quantity / ordered quantity over orders that reached the venue
  (denied orders are counted apart);
* **markout at h**: ``side × (mid(t_fill + h) − fill price) / fill price`` in bps, positive =
  the fill was good, with ``mid(t)`` the last mark at or before ``t``; fills within ``h`` of the
  end of the journal have no markout (counted as ``censored``).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from actors.core.instruments import Instrument

MARKS_RECORD = "MarketMarks"
DEFAULT_HORIZONS_S = (1.0, 10.0, 60.0)


@dataclass
class _Order:
    symbol: str
    side: int
    qty: int
    ts: int
    model: str
    arrival: float | None  # ticks
    denied: bool = False
    fills: list[tuple[int, int, int, float]] = field(default_factory=list)  # ts, lots, px, fee


@dataclass
class _Agg:
    orders: int = 0
    denied: int = 0
    fills: int = 0
    ordered_lots: int = 0
    filled_lots: int = 0
    filled_notional: float = 0.0
    fees: float = 0.0
    slip_cost: float = 0.0  # Σ side × (px − arrival) × qty, quote
    slip_base: float = 0.0  # Σ arrival × filled qty, quote
    is_cost: float = 0.0
    is_base: float = 0.0
    markout_sum: dict[float, float] = field(default_factory=lambda: defaultdict(float))
    markout_n: dict[float, int] = field(default_factory=lambda: defaultdict(int))
    censored: dict[float, int] = field(default_factory=lambda: defaultdict(int))

    def result(self, horizons: Sequence[float]) -> dict[str, Any]:
        def bps(num: float, den: float) -> float | None:
            return None if den == 0 else round(num / den * 1e4, 4)

        return {
            "orders": self.orders,
            "denied": self.denied,
            "fills": self.fills,
            "ordered_lots": self.ordered_lots,
            "filled_lots": self.filled_lots,
            "fill_ratio": (
                None if self.ordered_lots == 0
                else round(self.filled_lots / self.ordered_lots, 6)
            ),
            "filled_notional": round(self.filled_notional, 6),
            "fees": round(self.fees, 6),
            "slippage_bps": bps(self.slip_cost, self.slip_base),
            "implementation_shortfall": round(self.is_cost, 6),
            "implementation_shortfall_bps": bps(self.is_cost, self.is_base),
            "markout_bps": {
                f"{h:g}s": (
                    None if self.markout_n[h] == 0
                    else round(self.markout_sum[h] / self.markout_n[h], 4)
                )
                for h in horizons
            },
            "markout_fills": {f"{h:g}s": self.markout_n[h] for h in horizons},
            "markout_censored": {f"{h:g}s": self.censored[h] for h in horizons},
        }


class _Mids:
    """Step-wise mid series of one symbol: the last mark at or before a time."""

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.mid: list[float] = []

    def add(self, ts: int, mid: float) -> None:
        if self.ts and ts < self.ts[-1]:
            raise ValueError(f"{MARKS_RECORD} ts_init must not go backwards, was {ts}")
        self.ts.append(ts)
        self.mid.append(mid)

    def at(self, ts: int) -> float | None:
        i = bisect.bisect_right(self.ts, ts) - 1
        return None if i < 0 else self.mid[i]


def _model_key(models: Mapping[str, str]) -> str:
    return ",".join(f"{k}:{v}" for k, v in sorted(models.items())) or "none"


def execution_report(
    records: Iterable[dict[str, Any]],
    instruments: Mapping[str, Instrument],
    horizons_s: Sequence[float] = DEFAULT_HORIZONS_S,
) -> dict[str, Any]:
    """Analyse the orders of one run's journal records (in journal order).

    Args:
        records: Journal records (``read_journal`` yields ``(seq, record)``: pass the records).
        instruments: Instruments by symbol (tick and lot values).
        horizons_s: Markout horizons, seconds.

    Returns:
        ``{"total": {...}, "by_symbol": {sym: {...}}, "by_model": {versions: {...}},
        "horizons_s": [...], "definitions": "..."}``; each ``{...}`` has orders, denied, fills,
        ordered/filled lots, fill ratio, filled notional, fees, slippage bps, implementation
        shortfall (quote and bps) and markouts by horizon.
    """
    mids: dict[str, _Mids] = defaultdict(_Mids)
    models: dict[str, str] = {}
    orders: dict[str, _Order] = {}
    last_ts = 0
    for rec in records:
        t = rec.get("type")
        if t == MARKS_RECORD:
            ts = int(rec["ts_init"])
            last_ts = max(last_ts, ts)
            for sym, m in rec["mids"].items():
                if m is not None:
                    mids[sym].add(ts, float(m))
        elif t == "DecisionMade":
            models[rec["decision_id"]] = _model_key(rec.get("models") or {})
        elif t == "SubmitOrder":
            sym = rec["symbol"]
            ts = int(rec["ts_init"])
            orders[rec["client_order_id"]] = _Order(
                symbol=sym, side=1 if rec["side"] == "BUY" else -1, qty=int(rec["qty_lots"]),
                ts=ts, model=models.get(rec.get("decision_id", ""), "none"),
                arrival=mids[sym].at(ts) if sym in mids else None,
            )
        elif t == "OrderDenied":
            o = orders.get(rec["client_order_id"])
            if o is not None:
                o.denied = True
        elif t == "OrderFilled":
            o = orders.get(rec["client_order_id"])
            if o is not None:
                o.fills.append((int(rec["ts_event"]), int(rec["last_qty_lots"]),
                                int(rec["last_px_ticks"]), float(rec.get("fee", 0.0))))
    hs = [float(h) for h in horizons_s]
    total, by_sym, by_model = _Agg(), defaultdict(_Agg), defaultdict(_Agg)
    for o in orders.values():
        inst = instruments.get(o.symbol)
        if inst is None:
            raise ValueError(f"instruments must include {o.symbol!r}, was missing")
        tick, lot = float(inst.tick_size), float(inst.lot_size)
        series = mids.get(o.symbol)
        last_mid = series.mid[-1] if series is not None and series.mid else None
        for agg in (total, by_sym[o.symbol], by_model[o.model]):
            _account(agg, o, tick, lot, series, last_mid, last_ts, hs)
    return {
        "horizons_s": hs,
        "total": total.result(hs),
        "by_symbol": {s: a.result(hs) for s, a in sorted(by_sym.items())},
        "by_model": {m: a.result(hs) for m, a in sorted(by_model.items())},
        "definitions": "docs: actors/execution/analytics.py (slippage and shortfall vs the "
        "arrival mid, positive = cost; markouts positive = good)",
    }


def _account(
    agg: _Agg, o: _Order, tick: float, lot: float, series: _Mids | None,
    last_mid: float | None, last_ts: int, hs: Sequence[float],
) -> None:
    agg.orders += 1
    if o.denied:
        agg.denied += 1
        return
    agg.ordered_lots += o.qty
    filled = 0
    for ts, lots, px, fee in o.fills:
        filled += lots
        agg.fills += 1
        agg.filled_lots += lots
        agg.filled_notional += px * tick * lots * lot
        agg.fees += fee
        if o.arrival is not None:
            agg.slip_cost += o.side * (px - o.arrival) * tick * lots * lot
            agg.slip_base += o.arrival * tick * lots * lot
        for h in hs:
            end = ts + int(h * 1e9)
            if series is None or end > last_ts:
                agg.censored[h] += 1
                continue
            m = series.at(end)
            if m is None:
                agg.censored[h] += 1
                continue
            agg.markout_sum[h] += o.side * (m - px) / px * 1e4
            agg.markout_n[h] += 1
    if o.arrival is None:
        return
    cost = sum(o.side * (px - o.arrival) * tick * lots * lot for _, lots, px, _ in o.fills)
    cost += sum(f for *_, f in o.fills)
    unfilled = max(0, o.qty - filled)
    if unfilled and last_mid is not None:
        cost += o.side * (last_mid - o.arrival) * tick * unfilled * lot
    agg.is_cost += cost
    agg.is_base += o.arrival * tick * o.qty * lot
