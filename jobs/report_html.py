"""Backtest report of one replay, from its journal: metrics and a self-contained HTML page (pure).

Everything here is computed from the run's journal records (``MarketMarks`` first in every
step, then decisions, commands, denials and order events; ``actors/execution/analytics.py``)
and, for latency, from the run's summary. No I/O, no clock, no plotting library: the plots are
inline SVG drawn by the small helpers at the end of this module.

Definitions (quote currency unless stated; one *step* = one ``MarketMarks`` record, i.e. one
``feed.batch_interval_ms`` of simulated time):

* **equity** after step ``t`` = ``capital + realised - fees + unrealised``: positions are
  netted per symbol at average cost (:class:`actors.execution.portfolio.Position`) from the
  journaled ``OrderFilled`` records, and the open quantity is marked at the step's mid (the
  last known mid of a symbol whose book had an empty side);
* **per-step return** ``r_t = equity_t / equity_{t-1} - 1`` with ``equity_{-1} = capital``;
* **annualisation** (crypto trades 24/7): ``periods_per_year = 365 × 24 × 3600 / step_s``;
  Sharpe = ``mean(r) / std(r, ddof=1) × √periods_per_year``; Sortino = ``mean(r) /
  √mean(min(r, 0)²) × √periods_per_year``; risk-free rate 0; annualised return =
  ``(1 + total return) ^ (periods_per_year / steps) - 1`` (None when it overflows);
  Calmar = annualised return / max drawdown (fraction);
* **max drawdown**: the largest fall of equity from its running peak (the peak starts at
  capital), as a fraction of that peak and in quote (the two maxima can be at different steps);
* **turnover** = traded notional (Σ fill price × quantity) / mean equity over the steps, and the
  same per simulated day;
* **hit rate (closing fills)** = share of fills that closed some position (reduced or flipped
  it) whose realised PnL on the closed part, before fees, is > 0;
* **hit rate (round trips)** = share of round trips with net PnL > 0: a round trip of a symbol
  runs from a flat (or flipped) position until the position is next flat or flips; its PnL is
  the realised PnL of its closing fills minus the fees of its fills (a flipping fill's fee is
  split by lots between the trip it closes and the one it opens); trips still open at the end
  are not counted;
* **signal hit rate** (prediction diagnostics): over decisions with models and signal ±1 whose
  symbol has a mid ``k`` steps later, the share with ``signal × (mid_{t+k} - mid_t) > 0``; an
  unchanged mid is a miss (its share is reported as ``zero_move_share``).
"""

from __future__ import annotations

import html
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actors.core.errors import ValidationError
from actors.core.instruments import Instrument
from actors.execution.analytics import MARKS_RECORD
from actors.execution.portfolio import Position
from jobs.report_svg import (  # noqa: F401 - re-exported: the report's plotting API
    MB,
    ML,
    MR,
    MT,
    H,
    W,
    _downsample,
    _Frame,
    _nice_ticks,
    _num,
    _svg,
    _tag,
    svg_bars,
    svg_histogram,
    svg_lines,
)

SECONDS_PER_YEAR = 365 * 24 * 3600
TRADES_SHOWN = 100
CLASSES = ("down", "flat", "up")


@dataclass(frozen=True, slots=True)
class Fill:
    """One journaled fill with what it did to its position.

    Attributes:
        step: Index of the step (``MarketMarks`` record) the fill belongs to.
        ts_ns: ``ts_event`` of the fill.
        symbol: Instrument symbol.
        side: +1 buy, -1 sell.
        qty_lots: Filled lots.
        px_ticks: Fill price in ticks.
        notional: Price × quantity, quote currency.
        fee: Fee, quote currency (positive = paid).
        liquidity: ``MAKER`` or ``TAKER``.
        closing_lots: Lots of the fill that reduced an open position (0 = opening only).
        realised: PnL realised on the closed lots, before fees.
        client_order_id: The order.
    """

    step: int
    ts_ns: int
    symbol: str
    side: int
    qty_lots: int
    px_ticks: int
    notional: float
    fee: float
    liquidity: str
    closing_lots: int
    realised: float
    client_order_id: str


@dataclass
class EquityCurve:
    """Per-step equity of a run and what it is made of (lists are one entry per step)."""

    capital: float
    ts_ns: list[int] = field(default_factory=list)
    equity: list[float] = field(default_factory=list)
    realised: list[float] = field(default_factory=list)
    fees: list[float] = field(default_factory=list)
    unrealised: list[float] = field(default_factory=list)
    gross_exposure: list[float] = field(default_factory=list)
    positions: dict[str, list[int]] = field(default_factory=dict)
    mids: dict[str, list[float | None]] = field(default_factory=dict)  # quote price
    fills: list[Fill] = field(default_factory=list)
    round_trips: list[float] = field(default_factory=list)  # net PnL of each completed trip
    orders: int = 0
    denials: dict[str, int] = field(default_factory=dict)
    state_changes: list[dict[str, Any]] = field(default_factory=list)
    alerts: dict[str, int] = field(default_factory=dict)


def _instrument(instruments: Mapping[str, Instrument], symbol: str) -> Instrument:
    inst = instruments.get(symbol)
    if inst is None:
        raise ValidationError("instruments", f"a map including {symbol!r}", sorted(instruments))
    return inst


class _CurveBuilder:
    """Walks the journal once: positions from fills, one curve point per step."""

    def __init__(self, instruments: Mapping[str, Instrument], capital: float) -> None:
        self.ins = instruments
        self.curve = EquityCurve(capital=float(capital))
        self.symbols = sorted(instruments)
        self.positions: dict[str, Position] = {}
        self.marks: dict[str, float] = {}  # last known mid per symbol, ticks
        self.step_mids: Mapping[str, Any] = {}  # this step's mids as journaled (None: a side empty)
        self.trip: dict[str, float] = defaultdict(float)  # net PnL of each symbol's open trip
        self.denials: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()
        self.step = -1
        for sym in self.symbols:
            self.curve.positions[sym], self.curve.mids[sym] = [], []

    def on_marks(self, rec: Mapping[str, Any]) -> None:
        self.close_step()
        self.step += 1
        self.curve.ts_ns.append(int(rec["ts_init"]))
        self.step_mids = rec.get("mids", {})
        for sym, m in self.step_mids.items():
            if m is not None and sym in self.ins:
                self.marks[sym] = float(m)

    def on_fill(self, rec: Mapping[str, Any]) -> None:
        sym = rec["symbol"]
        inst = _instrument(self.ins, sym)
        pos = self.positions.setdefault(sym, Position(sym, mark_ticks=self.marks.get(sym)))
        side = 1 if rec["side"] == "BUY" else -1
        qty, px = int(rec["last_qty_lots"]), int(rec["last_px_ticks"])
        fee = float(rec.get("fee", 0.0))
        before = pos.qty_lots
        closing = min(abs(before), qty) if before * side < 0 else 0
        realised = pos.apply(rec["side"], qty, px, fee, inst)
        fee_close = fee * closing / qty if qty else 0.0
        self.trip[sym] += realised - fee_close
        if closing and (pos.qty_lots == 0 or (pos.qty_lots > 0) != (before > 0)):
            self.curve.round_trips.append(self.trip[sym])
            self.trip[sym] = 0.0
        self.trip[sym] -= fee - fee_close
        self.curve.fills.append(
            Fill(
                step=max(self.step, 0),
                ts_ns=int(rec.get("ts_event", 0)),
                symbol=sym,
                side=side,
                qty_lots=qty,
                px_ticks=px,
                notional=inst.notional(px, qty),
                fee=fee,
                liquidity=str(rec.get("liquidity", "")),
                closing_lots=closing,
                realised=realised,
                client_order_id=str(rec.get("client_order_id", "")),
            )
        )

    def close_step(self) -> None:
        if self.step < 0:
            return
        c, unreal, gross = self.curve, 0.0, 0.0
        for sym, pos in self.positions.items():
            if sym in self.marks:
                inst = self.ins[sym]
                unreal += pos.remark(self.marks[sym], inst)
                gross += abs(inst.lots_to_float(pos.qty_lots)) * inst.ticks_to_float(
                    self.marks[sym]
                )
        c.realised.append(sum(p.realised_pnl for p in self.positions.values()))
        c.fees.append(sum(p.fees for p in self.positions.values()))
        c.unrealised.append(unreal)
        c.gross_exposure.append(gross)
        c.equity.append(c.capital + c.realised[-1] - c.fees[-1] + unreal)
        for sym in self.symbols:
            pos = self.positions.get(sym)
            c.positions[sym].append(0 if pos is None else pos.qty_lots)
            m = self.step_mids.get(sym)
            c.mids[sym].append(None if m is None else self.ins[sym].ticks_to_float(m))

    def finish(self) -> EquityCurve:
        if self.step < 0 and (self.curve.fills or self.curve.orders):
            raise ValidationError("records", f"a journal with {MARKS_RECORD} records", "none")
        self.close_step()
        self.curve.denials = dict(sorted(self.denials.items()))
        self.curve.alerts = dict(sorted(self.alerts.items()))
        return self.curve


def equity_curve(
    records: Iterable[Mapping[str, Any]], instruments: Mapping[str, Instrument], capital: float
) -> EquityCurve:
    """Rebuild the mark-to-market equity of every step from a run's journal records.

    Args:
        records: Journal records in journal order (``read_journal`` yields ``(seq, record)``).
        instruments: Instruments by symbol (tick and lot values).
        capital: Equity at the start, quote currency (``risk.capital``).

    Returns:
        The curve: one point per ``MarketMarks`` record, valued after the step's fills; its
        ``mids`` are the step's own (None where a book side was empty), while positions are
        valued at the last known mid.

    Raises:
        ValidationError: ``capital`` not > 0, a fill of a symbol not in ``instruments``, or
            orders in a journal without ``MarketMarks`` (written before marks were journaled).

    Example:
        >>> curve = equity_curve(recs, cfg.instrument_map(), cfg.risk.capital)  # doctest: +SKIP
    """
    if not capital > 0:
        raise ValidationError("capital", "> 0", capital)
    b = _CurveBuilder(instruments, capital)
    for rec in records:
        kind = rec.get("type")
        if kind == MARKS_RECORD:
            b.on_marks(rec)
        elif kind == "OrderFilled":
            b.on_fill(rec)
        elif kind == "SubmitOrder":
            b.curve.orders += 1
        elif kind == "OrderDenied":
            b.denials[str(rec.get("reason", ""))] += 1
        elif kind == "TradingStateChanged":
            b.curve.state_changes.append(dict(rec))
        elif kind == "RiskAlert":
            b.alerts[str(rec.get("code", ""))] += 1
    return b.finish()


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else _finite(num / den)


def annualisation(step_s: float) -> dict[str, Any]:
    """Return the annualisation convention used for ``step_s``-second periods."""
    if not step_s > 0:
        raise ValidationError("step_s", "> 0", step_s)
    return {
        "convention": "crypto trades 24/7: periods_per_year = 365 * 24 * 3600 / step_s, one "
        "period = one replay step (feed.batch_interval_ms of simulated time); Sharpe and "
        "Sortino = mean per-step equity return / its std (ddof 1) or downside deviation "
        "(root mean square of min(r, 0)) * sqrt(periods_per_year), risk-free rate 0; "
        "annualised return = (1 + total return) ** (periods_per_year / steps) - 1",
        "step_s": float(step_s),
        "periods_per_year": SECONDS_PER_YEAR / step_s,
        "risk_free_rate": 0.0,
    }


def metrics(curve: EquityCurve, step_s: float) -> dict[str, Any]:
    """Compute the performance metrics of a curve (definitions in the module docstring).

    Args:
        curve: From :func:`equity_curve`.
        step_s: Simulated seconds per step (``feed.batch_interval_ms / 1000``).

    Returns:
        JSON-safe dict: returns, risk-adjusted ratios, drawdown, turnover, costs, hit rates,
        order counts and the ``annualisation`` used. A ratio whose denominator is 0 is None.
    """
    ann = annualisation(step_s)
    ppy = ann["periods_per_year"]
    cap = curve.capital
    eq = np.asarray(curve.equity, dtype=np.float64)
    n = int(eq.size)
    out: dict[str, Any] = {"steps": n, "sim_seconds": n * step_s, "capital": cap}
    prev = np.concatenate(([cap], eq[:-1]))
    r = eq / prev - 1.0 if n else eq
    total = float(eq[-1] / cap - 1.0) if n else 0.0
    std = float(r.std(ddof=1)) if n > 1 else 0.0
    mean = float(r.mean()) if n else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))) if n else 0.0
    ann_ret = None
    if n:
        growth = math.log1p(total) * ppy / n if total > -1 else -math.inf
        ann_ret = -1.0 if growth == -math.inf else (None if growth > 700 else math.expm1(growth))
    path = np.concatenate(([cap], eq))
    peak = np.maximum.accumulate(path)
    dd_q = float((peak - path).max())
    dd_f = float(((peak - path) / peak).max())
    fills = curve.fills
    traded = sum(f.notional for f in fills)
    fees = sum(f.fee for f in fills)
    closing = [f for f in fills if f.closing_lots > 0]
    days = n * step_s / 86_400
    mean_eq = float(eq.mean()) if n else cap
    turnover = traded / mean_eq if mean_eq > 0 else None
    out.update(
        {
            "final_equity": float(eq[-1]) if n else cap,
            "pnl": float(eq[-1] - cap) if n else 0.0,
            "realised_pnl": curve.realised[-1] if n else 0.0,
            "unrealised_pnl": curve.unrealised[-1] if n else 0.0,
            "total_return": total,
            "mean_step_return": mean,
            "annualised_return": _finite(ann_ret),
            "annualised_volatility": std * math.sqrt(ppy),
            "sharpe": None if std == 0 else _finite(mean / std * math.sqrt(ppy)),
            "sortino": None if downside == 0 else _finite(mean / downside * math.sqrt(ppy)),
            "max_drawdown": dd_f,
            "max_drawdown_quote": dd_q,
            "calmar": None if ann_ret is None else _ratio(ann_ret, dd_f),
            "traded_notional": traded,
            "mean_equity": mean_eq,
            "turnover": turnover,
            "turnover_per_day": None if turnover is None or days == 0 else turnover / days,
            "fees": fees,
            "fees_bps_of_notional": None if traded == 0 else fees / traded * 1e4,
            "maker_fills": sum(1 for f in fills if f.liquidity == "MAKER"),
            "taker_fills": sum(1 for f in fills if f.liquidity == "TAKER"),
            "closing_fills": len(closing),
            "hit_rate_closing_fills": _ratio(
                sum(1 for f in closing if f.realised > 0), len(closing)
            ),
            "round_trips": len(curve.round_trips),
            "hit_rate_round_trips": _ratio(
                sum(1 for p in curve.round_trips if p > 0), len(curve.round_trips)
            ),
            "orders": curve.orders,
            "fills": len(fills),
            "denials": sum(curve.denials.values()),
            "denials_by_reason": dict(curve.denials),
            "final_positions_lots": {s: v[-1] for s, v in curve.positions.items() if v},
            "max_gross_exposure": max(curve.gross_exposure, default=0.0),
            "trading_state_changes": len(curve.state_changes),
            "risk_alerts": dict(curve.alerts),
            "annualisation": ann,
        }
    )
    return out


def prediction_diagnostics(
    records: Iterable[Mapping[str, Any]], horizons_steps: Sequence[int] = (1, 10)
) -> dict[str, Any]:
    """Check the served predictions against the mids that followed them.

    Only decisions that carry model versions (a real prediction, not the fallback) count.

    Args:
        records: Journal records in journal order.
        horizons_steps: ``k`` values, steps after the decision's step.

    Returns:
        ``decisions``, ``without_models``, ``signal_counts``, ``mean_probs`` (over all, and
        ``mean_probs_by_signal``) and per horizon ``k``: for each signal the count and mean mid
        move in bps, plus ``direction_hit_rate``, ``direction_n``, ``zero_move_share`` and
        ``censored`` (no mid ``k`` steps later).
    """
    ks = [int(k) for k in horizons_steps]
    for k in ks:
        if k < 1:
            raise ValidationError("horizons_steps", ">= 1 each", list(horizons_steps))
    mids: dict[str, list[float | None]] = defaultdict(list)
    step = -1
    decided: list[tuple[int, str, int, Sequence[float]]] = []
    without = 0
    for rec in records:
        kind = rec.get("type")
        if kind == MARKS_RECORD:
            step += 1
            for sym, m in rec.get("mids", {}).items():
                series = mids[sym]
                series.extend([None] * (step - len(series)))
                series.append(None if m is None else float(m))
        elif kind == "DecisionMade":
            if not rec.get("models"):
                without += 1
                continue
            decided.append((max(step, 0), rec["symbol"], int(rec["signal"]), rec["probs"]))
    signals = Counter(str(s) for _, _, s, _ in decided)
    probs = np.asarray([p for *_, p in decided], dtype=np.float64).reshape(-1, 3)
    out: dict[str, Any] = {
        "decisions": len(decided),
        "without_models": without,
        "signal_counts": {s: signals.get(s, 0) for s in ("-1", "0", "1")},
        "mean_probs": dict(zip(CLASSES, probs.mean(axis=0).tolist(), strict=True))
        if len(probs)
        else None,
        "mean_probs_by_signal": {},
        "horizons": {},
    }
    sig_arr = np.asarray([s for _, _, s, _ in decided])
    for s in (-1, 0, 1):
        sel = probs[sig_arr == s] if len(probs) else probs
        if len(sel):
            out["mean_probs_by_signal"][str(s)] = dict(
                zip(CLASSES, sel.mean(axis=0).tolist(), strict=True)
            )
    for k in ks:
        moves: dict[int, list[float]] = {-1: [], 0: [], 1: []}
        censored = 0
        for t, sym, s, _ in decided:
            series = mids.get(sym, [])
            a = series[t] if t < len(series) else None
            b = series[t + k] if t + k < len(series) else None
            if a is None or b is None or a == 0:
                censored += 1
                continue
            moves[s if s in moves else int(np.sign(s))].append((b - a) / a * 1e4)
        directional = [(s, m) for s in (-1, 1) for m in moves[s]]
        hits = sum(1 for s, m in directional if s * m > 0)
        zeros = sum(1 for _, m in directional if m == 0)
        out["horizons"][str(k)] = {
            "by_signal": {
                str(s): {"n": len(v), "mean_move_bps": float(np.mean(v)) if v else None}
                for s, v in moves.items()
            },
            "direction_n": len(directional),
            "direction_hit_rate": _ratio(hits, len(directional)),
            "zero_move_share": _ratio(zeros, len(directional)),
            "censored": censored,
        }
    return out


def latency_stats(
    summary: Mapping[str, Any] | None, samples_ms: Sequence[float] | None = None, bins: int = 30
) -> dict[str, Any]:
    """Describe the run's tick-to-order latency, as a histogram when samples are given.

    Args:
        summary: The run's ``summary.json`` (``latency_ms``, ``sim_latency_ms``,
            ``stage_ms_p50``), or None.
        samples_ms: Wall-clock tick-to-order samples of the run (the kernel's
            ``RunStats.latencies_ms``); without them only the summary's percentiles are shown.
        bins: Histogram bins.

    Returns:
        ``source`` (``"samples"`` or ``"summary percentiles"``), ``what``, ``count``, ``p50``,
        ``p90``, ``p99``, ``max``, ``histogram`` (``edges_ms``, ``counts``; None without
        samples), ``stage_ms_p50`` and ``sim_latency_ms``.
    """
    summary = summary or {}
    lat = summary.get("latency_ms") or {}
    out: dict[str, Any] = {
        "what": lat.get("what", "tick-to-order latency, wall clock"),
        "stage_ms_p50": dict(summary.get("stage_ms_p50") or {}),
        "sim_latency_ms": dict(summary.get("sim_latency_ms") or {}),
    }
    xs = np.asarray(list(samples_ms or []), dtype=np.float64)
    if xs.size:
        counts, edges = np.histogram(xs, bins=max(1, int(bins)))
        out.update(
            {
                "source": "samples",
                "count": int(xs.size),
                **{f"p{q}": float(np.percentile(xs, q)) for q in (50, 90, 99)},
                "max": float(xs.max()),
                "mean": float(xs.mean()),
                "histogram": {"edges_ms": edges.tolist(), "counts": counts.tolist()},
            }
        )
    else:
        out.update(
            {
                "source": "summary percentiles",
                "count": lat.get("count"),
                "p50": lat.get("p50"),
                "p90": None,
                "p99": lat.get("p99"),
                "max": lat.get("max"),
                "mean": None,
                "histogram": None,
            }
        )
    return out


METRIC_KEYS = (
    "total_return",
    "pnl",
    "final_equity",
    "annualised_return",
    "annualised_volatility",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "max_drawdown_quote",
    "traded_notional",
    "turnover",
    "turnover_per_day",
    "fees",
    "fees_bps_of_notional",
    "hit_rate_closing_fills",
    "closing_fills",
    "hit_rate_round_trips",
    "round_trips",
    "orders",
    "fills",
    "maker_fills",
    "taker_fills",
    "denials",
    "denials_by_reason",
    "final_positions_lots",
    "max_gross_exposure",
    "trading_state_changes",
    "risk_alerts",
    "steps",
    "sim_seconds",
)
METRIC_LABELS = {
    "pnl": "PnL (quote)",
    "max_drawdown": "max drawdown (fraction of peak)",
    "max_drawdown_quote": "max drawdown (quote)",
    "turnover": "turnover (traded notional / mean equity)",
    "fees_bps_of_notional": "fees, bps of traded notional",
    "final_positions_lots": "final positions (lots)",
}
CSS = (
    "body{font-family:sans-serif;margin:24px;max-width:1100px;color:#222}"
    "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;"
    "padding:3px 8px;font-size:13px;text-align:right}th{background:#f4f4f4}"
    "td:first-child{text-align:left}h2{margin-top:28px;border-bottom:1px solid #ddd}"
    ".note{color:#555;font-size:13px}svg{display:block;margin:6px 0}"
)
X_LABEL = "simulated seconds since the first step"


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={_cell(x)}" for k, x in v.items()) or "–"
    return str(v)


def _table(rows: Iterable[Sequence[Any]], head: str) -> str:
    """An HTML table; ``head`` is the column titles joined by ``|``."""
    e = html.escape
    out = ["<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head.split("|")) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{e(_cell(c))}</td>" for c in row) + "</tr>")
    return "".join(out) + "</table>"


def _note(text: str) -> str:
    return _tag("p", text, **{"class": "note"})


def _performance_html(curve: EquityCurve, xs: list[float]) -> list[str]:
    peak = np.maximum.accumulate(np.concatenate(([curve.capital], curve.equity)))[1:]
    dd = (-(peak - np.asarray(curve.equity)) / peak * 100).tolist() if curve.equity else []
    positions = [(s, xs, [float(v) for v in q]) for s, q in curve.positions.items()]
    return [
        '<h2 id="equity">Equity</h2>',
        svg_lines(
            [("equity", xs, curve.equity)],
            "Equity: capital + realised - fees + unrealised",
            X_LABEL,
            "quote",
        ),
        '<h2 id="drawdown">Drawdown</h2>',
        svg_lines(
            [("drawdown", xs, dd)],
            "Drawdown from the running peak",
            X_LABEL,
            "%",
            fill_to_zero=True,
        ),
        '<h2 id="positions">Positions</h2>',
        svg_lines(positions, "Position per symbol", X_LABEL, "lots"),
        svg_lines([("gross", xs, curve.gross_exposure)], "Gross exposure", X_LABEL, "quote"),
    ]


def _fill_row(f: Fill, inst: Instrument) -> tuple[Any, ...]:
    side = "BUY" if f.side > 0 else "SELL"
    realised = f.realised if f.closing_lots else None
    qty, px = inst.lots_to_str(f.qty_lots), inst.ticks_to_str(f.px_ticks)
    return (f.step, f.symbol, side, qty, px, f.fee, f.liquidity, realised, f.client_order_id)


def _trades_html(
    curve: EquityCurve, xs: list[float], instruments: Mapping[str, Instrument]
) -> list[str]:
    out = ['<h2 id="trades">Trades</h2>']
    for sym, mids in curve.mids.items():
        to_px = instruments[sym].ticks_to_float
        marks = [
            (xs[min(f.step, len(xs) - 1)], to_px(f.px_ticks), f.side)
            for f in curve.fills
            if f.symbol == sym and xs
        ]
        out.append(
            svg_lines(
                [(f"{sym} mid", xs, mids)], f"{sym}: mid and fills", X_LABEL, "price", markers=marks
            )
        )
    shown = curve.fills[-TRADES_SHOWN:]
    out.append(
        _note(
            f"The last {len(shown)} of {len(curve.fills)} fills (realised: PnL of the "
            "closed lots, before fees)."
        )
    )
    out.append(
        _table(
            (_fill_row(f, instruments[f.symbol]) for f in shown),
            "step|symbol|side|qty|price|fee|liquidity|realised|order",
        )
    )
    return out


def _latency_html(lat: Mapping[str, Any]) -> list[str]:
    out = [
        '<h2 id="latency">Latency</h2>',
        _note(
            f"{lat.get('what', '')}. Source: {lat.get('source')}, "
            f"count {_cell(lat.get('count'))}. "
            "On replay these wall-clock latencies measure this machine, not the market; "
            "DecisionMade.inference_latency_ns is 0 on replay and is not used."
        ),
    ]
    hist = lat.get("histogram")
    if hist:
        out.append(
            svg_histogram(
                hist["edges_ms"], hist["counts"], "Tick-to-order latency", "ms (wall clock)"
            )
        )
    rows = [(q, lat.get(q)) for q in ("p50", "p90", "p99", "max", "mean")]
    out.append(_table(rows, "tick-to-order|ms"))
    stages = lat.get("stage_ms_p50") or {}
    if stages:
        out.append(
            svg_bars(
                list(stages),
                list(stages.values()),
                "Time per step and stage, p50",
                "ms (wall clock)",
            )
        )
    return out


def _prediction_html(d: Mapping[str, Any]) -> list[str]:
    out = [
        '<h2 id="predictions">Prediction diagnostics</h2>',
        _note(
            f"{d['decisions']} decisions with model predictions ({d['without_models']} without: "
            "fallback or invalid decision point). Mid move in bps from the decision's step to k "
            "steps later; a hit is a ±1 signal followed by a move its way (no move is a miss)."
        ),
    ]
    by_sig, signs = d.get("mean_probs_by_signal") or {}, ("-1", "0", "1")
    rows = [
        (s, d["signal_counts"].get(s, 0), *((by_sig.get(s) or {}).get(c) for c in CLASSES))
        for s in signs
    ]
    rows.append(("all", d["decisions"], *((d.get("mean_probs") or {}).get(c) for c in CLASSES)))
    out.append(_table(rows, "signal|decisions|mean p(down)|mean p(flat)|mean p(up)"))
    hrows = [
        (
            k,
            *(h["by_signal"][s]["mean_move_bps"] for s in signs),
            h["direction_hit_rate"],
            h["direction_n"],
            h["zero_move_share"],
            h["censored"],
        )
        for k, h in d["horizons"].items()
    ]
    out.append(
        _table(
            hrows,
            "k steps|move bps after -1|after 0|after +1|signal hit rate|±1 signals|"
            "zero-move share|censored",
        )
    )
    for k, h in d["horizons"].items():
        moves = [h["by_signal"][s]["mean_move_bps"] for s in signs]
        out.append(
            svg_bars(
                ["signal -1", "signal 0", "signal +1"],
                moves,
                f"Mean mid move {k} steps after the decision, by signal",
                "bps",
            )
        )
    return out


def render_html(
    run_id: str,
    config_hash: str,
    metrics_: Mapping[str, Any],
    curve: EquityCurve,
    diagnostics: Mapping[str, Any],
    latency: Mapping[str, Any],
    instruments: Mapping[str, Instrument],
) -> str:
    """Render the report as one self-contained HTML page (inline CSS and SVG, no scripts).

    Args:
        run_id: The run.
        config_hash: Its config hash.
        metrics_: From :func:`metrics`.
        curve: From :func:`equity_curve`.
        diagnostics: From :func:`prediction_diagnostics`.
        latency: From :func:`latency_stats`.
        instruments: Instruments by symbol (for the trades table).
    """
    e, ann = html.escape, metrics_["annualisation"]
    t0 = curve.ts_ns[0] if curve.ts_ns else 0
    xs = [(t - t0) / 1e9 for t in curve.ts_ns]
    rows = ((METRIC_LABELS.get(k, k.replace("_", " ")), metrics_.get(k)) for k in METRIC_KEYS)
    page = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>raydesk backtest '
        f"{e(run_id)}</title><style>{CSS}</style></head><body><h1>raydesk backtest</h1>",
        f"<p>run id <code>{e(run_id)}</code> · config hash <code>{e(config_hash)}</code> · "
        f"{metrics_['steps']} steps of {_num(ann['step_s'])} s ({_num(metrics_['sim_seconds'])} "
        f"simulated s) · capital {_num(curve.capital)}</p>",
        _note(
            f"Annualisation: {ann['convention']} (periods per year = "
            f"{_num(ann['periods_per_year'])}). A short replay annualised is an "
            "extrapolation: compare runs with these ratios, do not forecast with them."
        ),
        '<h2 id="metrics">Metrics</h2>',
        _table(rows, "metric|value"),
        *_performance_html(curve, xs),
        *_trades_html(curve, xs, instruments),
        *_latency_html(latency),
        *_prediction_html(diagnostics),
        "</body></html>\n",
    ]
    return "".join(page)


def build_report(
    records: Iterable[Mapping[str, Any]],
    instruments: Mapping[str, Instrument],
    capital: float,
    step_s: float,
    *,
    run_id: str,
    config_hash: str,
    summary: Mapping[str, Any] | None = None,
    latency_samples_ms: Sequence[float] | None = None,
    horizons_steps: Sequence[int] = (1, 10),
) -> tuple[dict[str, Any], str]:
    """Compute everything and render: return ``(metrics.json content, report.html text)``.

    Example:
        >>> m, page = build_report(recs, cfg.instrument_map(), cfg.risk.capital,  # doctest: +SKIP
        ...                        0.1, run_id="r", config_hash="h")
    """
    recs = list(records)
    curve = equity_curve(recs, instruments, capital)
    out = metrics(curve, step_s)
    diag = prediction_diagnostics(recs, horizons_steps)
    lat = latency_stats(summary, latency_samples_ms)
    page = render_html(run_id, config_hash, out, curve, diag, lat, instruments)
    out = {
        "run_id": run_id,
        "config_hash": config_hash,
        **out,
        "predictions": diag,
        "latency": {k: v for k, v in lat.items() if k != "histogram"},
        "definitions": "jobs/report_html.py module docstring",
    }
    return out, page
