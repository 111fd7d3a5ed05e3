"""The trading kernel: one loop, the same for replay and live.

Each step moves one micro-batch interval through the topology, in a fixed order:

1. ``FeedActor.next_batches`` → one batch per symbol (live: when the interval has elapsed).
2. ``SymbolActor.on_batch`` for every symbol, in parallel → book views and decision points.
3. One request to the Serve ensemble with every valid decision point of the step (deadline
   enforced; a miss gives the fallback "no trade", counted).
4. The strategy engine (hosted here: it is pure, small and stateless beyond positions fed
   from fills) turns predictions into orders.
5. ``RiskActor.process``: marks and kill switch, pre-trade checks, then approved orders go on
   to ``ExecutionActor`` (paper fills against the step's books). Only the risk actor talks to
   execution, so no order can bypass it.
6. Every decision, command and event of the step goes to the ``JournalActor`` in one append,
   in canonical order (the step's ``MarketMarks``, decision records by symbol, then commands,
   then events), so a replay's journal is byte-for-byte reproducible.

Latency is measured in wall time from the triggering market event's ``ts_init`` (live) or from
the moment its batch entered the system (``wall_init_ns``, replay) to the order's acceptance.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actors.book.engine import SymbolUpdate, feature_hash
from actors.core.messages import (
    DecisionMade,
    OrderAccepted,
    OrderCanceled,
    OrderError,
    OrderFilled,
)
from actors.execution.analytics import MARKS_RECORD
from actors.strategy.engine import StrategyEngine
from cluster.config import RaydeskConfig
from cluster.metrics import Metrics
from serve.client import request_from_decisions
from serve.ensemble import FALLBACK_PROBS, fallback_probs

REPLAY_SAFETY_TIMEOUT_MS = 60_000.0
INGRESS_GRACE_S = 1.0  # beyond the deadline the ingress enforces: it did not answer at all
SAMPLE_WINDOW = 100_000  # latest samples kept per latency series (percentiles are over these)


@dataclass
class RunStats:
    """Counters the kernel keeps for progress and the summary."""

    steps: int = 0
    events: int = 0
    decisions: int = 0
    orders: int = 0
    fills: int = 0
    accepted: int = 0
    denials: Counter = field(default_factory=Counter)
    order_errors: Counter = field(default_factory=Counter)
    fallbacks: Counter = field(default_factory=Counter)
    bad_batches: int = 0
    quarantines: int = 0
    journal_records: int = 0
    # bounded sample windows, so that a long live run does not grow without limit
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLE_WINDOW))
    sim_latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLE_WINDOW))
    inference_ms: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLE_WINDOW))
    stage_ms: dict[str, deque[float]] = field(
        default_factory=lambda: defaultdict(lambda: deque(maxlen=SAMPLE_WINDOW))
    )
    pnl: float = 0.0
    trading_state: str = "ACTIVE"
    state_changes: list[dict[str, Any]] = field(default_factory=list)
    alerts: Counter = field(default_factory=Counter)
    risk_report: dict[str, Any] | None = None
    models: dict[str, str] = field(default_factory=dict)
    wall_start: float = field(default_factory=time.perf_counter)
    wall_end: float = 0.0  # set when the loop stops (before teardown)
    sim_start_ns: int = 0
    sim_now_ns: int = 0

    def recent_latency(self, n: int = 2_000) -> tuple[float | None, float | None]:
        """p50 and p99 of the last ``n`` tick-to-order latencies (for progress displays)."""
        recent = list(itertools.islice(reversed(self.latencies_ms), n))
        return self.percentile(recent, 50), self.percentile(recent, 99)

    def percentile(self, values: Iterable[float], q: float) -> float | None:
        values = list(values)
        return round(float(np.percentile(values, q)), 3) if values else None


def _top(view: Any) -> list[Any]:
    """``[bid, bid_size, ask, ask_size]`` of a view (``None`` for an empty side)."""
    bid = view.bid_ticks[0] if view.bid_ticks else None
    ask = view.ask_ticks[0] if view.ask_ticks else None
    return [bid, view.bid_sizes[0] if bid is not None else None,
            ask, view.ask_sizes[0] if ask is not None else None]


class TradingKernel:
    """Drives the topology step by step.

    Args:
        cfg: The validated config.
        topology: Handles built by :func:`cluster.topology.build_topology`.
        replay: True on simulated time.
    """

    def __init__(self, cfg: RaydeskConfig, topology: Any, replay: bool) -> None:
        self.cfg = cfg
        self.topo = topology
        self.replay = replay
        self.strategy = StrategyEngine(
            cfg.strategy, instruments=cfg.instrument_map(), capital=cfg.risk.capital
        )
        self.stats = RunStats()
        self.metrics = Metrics()
        self.symbols = [i.symbol for i in cfg.instruments]
        self._pending_journal: list[Any] = []

    # ------------------------------------------------------------------------------------------
    async def _predict(self, dps: list[Any]) -> tuple[np.ndarray, dict[str, str], float]:
        """Return combined probabilities, model versions and the round trip in ms."""
        if not dps:
            return np.zeros((0, 3)), {}, 0.0
        # Live, a late prediction is worthless: the ingress enforces the deadline and answers
        # with the fallback (counted there and below). On replay the wall clock must not change
        # decisions, so the deadline is only a safety timeout. The timeout here only guards
        # against an ingress that does not answer at all.
        deadline_ms = REPLAY_SAFETY_TIMEOUT_MS if self.replay else self.cfg.models.deadline_ms
        req = request_from_decisions(dps, deadline_ms)
        guard_s = deadline_ms / 1e3 + INGRESS_GRACE_S
        t0 = time.perf_counter()
        try:
            resp = await asyncio.wait_for(self.topo.ensemble.predict.remote(req), guard_s)
        except TimeoutError:
            self.stats.fallbacks["DEADLINE"] += len(dps)
            self.metrics.inc("raydesk_inference_fallbacks", len(dps), reason="DEADLINE")
            return fallback_probs(len(dps)), {}, guard_s * 1e3
        ms = (time.perf_counter() - t0) * 1e3
        self.metrics.observe("raydesk_pipeline_inference_ms", ms)
        if resp.get("fallback"):
            self.stats.fallbacks["SERVE_FALLBACK"] += len(dps)
            self.metrics.inc("raydesk_inference_fallbacks", len(dps), reason="SERVE")
        return np.asarray(resp["probs"], dtype=np.float64), dict(resp["models"]), ms

    async def step(self) -> None:
        """Run one micro-batch interval through the whole topology."""
        topo, st = self.topo, self.stats
        t0 = time.perf_counter()
        sim_now, batches = await topo.feed.next_batches.remote()
        t1 = time.perf_counter()
        if st.sim_start_ns == 0:
            st.sim_start_ns = sim_now - int(self.cfg.feed.batch_interval_ms * 1e6)
        st.sim_now_ns = sim_now
        refs = [topo.symbols[s].on_batch.remote(batches[s]) for s in self.symbols]
        updates: list[SymbolUpdate] = await asyncio.gather(*refs)
        t2 = time.perf_counter()
        views = {u.view.symbol: u.view for u in updates}
        dps = []
        for u in updates:
            st.events += u.events
            if u.errors:
                st.bad_batches += 1
            if u.quarantine_reason:
                st.quarantines += 1
                if self.cfg.feed.source == "ws" and u.quarantine_kind != "gap":
                    # the book broke on data the feed delivered in order (a crossed book, say):
                    # ask the feed for a fresh snapshot. A gap is the feed's own finding and
                    # already resyncing.
                    topo.feed.request_resync.remote(u.view.symbol, u.quarantine_kind)
            if u.decision is not None:
                dps.append(u.decision)
        valid = [d for d in dps if d.valid]
        probs, models, inf_ms = await self._predict(valid)
        if models:
            st.models = models
        if valid:
            st.inference_ms.append(inf_ms)
        now_ns = sim_now if self.replay else time.time_ns()
        inf_ns = 0 if self.replay else int(inf_ms * 1e6)
        pmap = {d.decision_id: probs[i] for i, d in enumerate(valid)}
        self.strategy.on_marks(now_ns, views)
        commands, decisions = [], []
        for d in dps:
            p = pmap.get(d.decision_id, FALLBACK_PROBS)
            sig, cmd = self.strategy.on_decision(d, p, views[d.symbol], now_ns)
            self.metrics.inc("raydesk_decisions", symbol=d.symbol, signal=str(sig))
            decisions.append((d, p, sig, cmd))
            if cmd is not None:
                commands.append(cmd)
                self.metrics.inc("raydesk_orders", symbol=cmd.symbol)
        st.decisions += len(dps)
        wall_init = {d.decision_id: d.wall_init_ns for d in dps}
        st.orders += len(commands)
        t3 = time.perf_counter()
        res = await topo.risk.process.remote(now_ns, commands, views, st.steps)
        t4 = time.perf_counter()
        self.strategy.on_fills(res.events)
        verdicts = {e.client_order_id: e for e in res.denials}
        # the step's marks first: execution analytics value orders at the mid the decision saw
        # and mark fills out against later steps (actors/execution/analytics.py)
        records: list[dict[str, Any]] = [{
            "type": MARKS_RECORD, "ts_event": now_ns, "ts_init": now_ns,
            "mids": {s: views[s].mid_ticks for s in sorted(views)},
            "tops": {s: _top(views[s]) for s in sorted(views)},
        }]
        for d, p, sig, cmd in decisions:
            coid = cmd.client_order_id if cmd else ""
            denied = verdicts.get(coid)
            records.append(
                DecisionMade(
                    ts_event=d.ts_event,
                    ts_init=now_ns,
                    decision_id=d.decision_id,
                    symbol=d.symbol,
                    models=models if d.valid else {},
                    feature_hash=feature_hash(d.features),
                    inference_latency_ns=inf_ns if d.valid else 0,
                    probs=tuple(round(float(x), 6) for x in p),
                    signal=sig,
                    client_order_id=coid,
                    risk_verdict=("DENIED" if denied else "ACCEPTED") if cmd else "NO_ORDER",
                    risk_reason=denied.reason if denied else "",
                ).to_record()
            )
        records += [c.to_record() for c in commands]
        records += [e.to_record() for e in res.denials]
        records += [e.to_record() for e in res.events]
        records += [e.to_record() for e in res.state_events]
        records += [e.to_record() for e in res.alerts]
        origins = {
            c.client_order_id: (c.trigger_ts_init if not self.replay else wall_init[c.decision_id])
            for c in commands
        }
        self._account(res, origins)
        st.journal_records += len(records)
        self._pending_journal.append(topo.journal.append.remote(records))
        if len(self._pending_journal) > 64:
            await asyncio.gather(*self._pending_journal)
            self._pending_journal.clear()
        st.steps += 1
        for name, dt in (("feed", t1 - t0), ("symbols", t2 - t1), ("serve_strategy", t3 - t2),
                         ("risk_execution", t4 - t3), ("journal", time.perf_counter() - t4)):
            st.stage_ms[name].append(dt * 1e3)

    def _account(self, res: Any, origins: dict[str, int]) -> None:
        st, m = self.stats, self.metrics
        for e in res.denials:
            st.denials[e.reason] += 1
            m.inc("raydesk_risk_denials", reason=e.reason)
        for e in res.events:
            if isinstance(e, OrderFilled):
                st.fills += 1
                m.inc("raydesk_fills", symbol=e.symbol)
            elif isinstance(e, OrderAccepted):
                st.accepted += 1
                wall = res.accept_wall_ns.get(e.client_order_id)
                origin = origins.get(e.client_order_id)
                if wall is not None and origin:
                    ms = (wall - origin) / 1e6
                    st.latencies_ms.append(ms)
                    m.observe("raydesk_tick_to_order_ms", ms, symbol=e.symbol)
                if e.trigger_ts_init:
                    st.sim_latencies_ms.append((e.ts_event - e.trigger_ts_init) / 1e6)
            elif isinstance(e, OrderCanceled):
                m.inc("raydesk_cancels", symbol=e.symbol)
            elif isinstance(e, OrderError):
                st.order_errors[e.reason] += 1
                m.inc("raydesk_order_errors", reason=e.reason)
        for e in res.state_events:
            st.trading_state = e.state
            st.state_changes.append(e.to_record())
            if e.state == "HALTED":
                m.inc("raydesk_kill_switch_trips", reason=e.reason)
        for a in res.alerts:
            st.alerts[a.code] += 1
            m.inc("raydesk_risk_alerts", code=a.code)
        st.pnl = res.pnl
        m.set("raydesk_pnl", res.pnl)
        for sym in self.symbols:  # the strategy's positions, fed from the same fills
            m.set("raydesk_position_lots", self.strategy.positions.get(sym, 0), symbol=sym)
        for kind, v in res.exposure.items():
            m.set("raydesk_exposure", v, kind=kind)
        if res.var_es is not None:
            m.set("raydesk_pretrade_var", res.var_es[0], measure="var")
            m.set("raydesk_pretrade_var", res.var_es[1], measure="es")
        if res.report is not None:
            st.risk_report = res.report
            m.set("raydesk_drawdown", res.report.get("drawdown", 0.0))
            heat = (res.report.get("heat") or {}).get("value")
            if heat is not None:
                m.set("raydesk_portfolio_heat", heat)
            sample_s = res.report.get("sample_s", 1.0)
            for row in (res.report.get("var") or {}).get("estimates", []):
                tags = {"method": row["method"], "alpha": str(row["alpha"]),
                        "horizon_s": f"{row['horizon'] * sample_s:g}"}
                m.set("raydesk_portfolio_var", row["var"], measure="var", **tags)
                m.set("raydesk_portfolio_var", row["es"], measure="es", **tags)

    async def run(
        self,
        duration_s: float,
        max_events: int | None,
        on_progress: Callable[[RunStats], None] | None = None,
        progress_every_s: float = 0.5,
    ) -> RunStats:
        """Step until the duration (wall live, simulated on replay) or the event count is hit."""
        st = self.stats
        st.wall_start = time.perf_counter()
        st.sim_start_ns = st.sim_now_ns = 0
        last = 0.0
        while True:
            if max_events is not None and st.events >= max_events:
                break
            elapsed = (
                (st.sim_now_ns - st.sim_start_ns) / 1e9
                if self.replay
                else time.perf_counter() - st.wall_start
            )
            if max_events is None and elapsed >= duration_s:
                break
            await self.step()
            now = time.perf_counter()
            if on_progress is not None and now - last >= progress_every_s:
                on_progress(st)
                last = now
        if self._pending_journal:
            await asyncio.gather(*self._pending_journal)
            self._pending_journal.clear()
        st.wall_end = time.perf_counter()
        if on_progress is not None:
            on_progress(st)
        return st
