"""RiskActor: every order passes here before the ExecutionActor (thin Ray wrapper).

Operators reach a running risk actor by name (``risk-{run_id}`` in the run's namespace):
``raydesk risk rearm|halt|status`` call :meth:`RiskActor.rearm`, :meth:`RiskActor.halt` and
:meth:`RiskActor.status`. Their state changes and refusals are queued and handed to the kernel
with the next step's result, so the journal records them in order with everything else.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

from actors.core.checkpoint import read_checkpoint, write_checkpoint
from actors.core.clock import make_clock
from actors.core.messages import (
    CancelOrder,
    ModifyOrder,
    OrderDenied,
    OrderEvent,
    RiskAlert,
    SubmitBracket,
    SubmitOrder,
    TradingStateChanged,
)
from actors.core.views import BookView
from actors.risk.engine import RiskEngine, TradingState
from cluster.config import RaydeskConfig

ALERT_MODIFY_DENIED = "MODIFY_DENIED"


@dataclass(frozen=True, slots=True)
class RiskResult:
    """Denials, execution events, trading-state changes, alerts and PnL of one step.

    ``report`` is the periodic portfolio-risk report when one was built since the last step
    (it is built after a step's reply, off the critical path).
    ``approved`` lists the client order ids approved (also when there is no execution actor).
    """

    denials: list[OrderDenied]
    events: list[OrderEvent]
    state_events: list[TradingStateChanged]
    accept_wall_ns: dict[str, int]
    pnl: float
    alerts: list[RiskAlert] = field(default_factory=list)
    exposure: dict[str, float] = field(default_factory=dict)
    var_es: tuple[float, float] | None = None
    report: dict[str, Any] | None = None
    approved: list[str] = field(default_factory=list)


class RiskActor:
    """Checks orders, forwards the approved ones to execution, and runs the kill switches.

    Args:
        cfg: The run's config as a dict.
        replay: Simulated time.
        execution: The ExecutionActor handle; ``None`` for a check-only risk service (the risk
            benchmark): approved orders are then released at once, as if canceled.
    """

    def __init__(
        self,
        cfg: dict[str, Any],
        replay: bool,
        execution: Any,
        checkpoint_path: str | None = None,
    ) -> None:
        c = RaydeskConfig.model_validate(cfg)
        self.clock = make_clock(replay)
        secret = os.environ.get(c.risk.rearm_token_env) or None
        self.engine = RiskEngine(c.risk, c.instrument_map(), self.clock, secret)
        self.flatten = c.risk.flatten_on_halt
        self.execution = execution
        self._pending: list[TradingStateChanged] = []
        self._halt_requested = False  # an operator halt: cancel (and flatten) on the next step
        self._report: dict[str, Any] | None = None  # built after a step, sent with the next
        self._report_scheduled = False
        self.checkpoint_path = checkpoint_path
        self.restored = False
        self._last_step: Any = None
        self._last_result: RiskResult | None = None
        state = read_checkpoint(checkpoint_path) if checkpoint_path else None
        if state is not None:  # a restart: continue exactly where the last step left off
            self.clock.advance_to(state["now_ns"])
            self.engine.restore(state["engine"])
            self._pending = state["pending"]
            self._halt_requested = state["halt_requested"]
            self._last_step, self._last_result = state["step_id"], state["result"]
            self.restored = True

    async def process(
        self,
        now_ns: int,
        commands: list[SubmitOrder | CancelOrder | ModifyOrder | SubmitBracket],
        views: dict[str, BookView],
        step_id: Any = None,
    ) -> RiskResult:
        """Mark, check every order, execute the approved ones, and account their fills.

        With a checkpoint path, the engine's state and the result are checkpointed before the
        result is returned, and a call repeating the last ``step_id`` (Ray retrying it after a
        restart of this actor) gets that result again instead of running the step twice. The
        calls to execution carry ``(step_id, n)`` for the same reason.
        """
        if step_id is not None and step_id == self._last_step and self._last_result is not None:
            return self._last_result
        self.clock.advance_to(now_ns)
        eng = self.engine
        was_halted = eng.state is TradingState.HALTED
        state_events = self._pending
        self._pending = []
        state_events.extend(eng.on_marks(views))
        approved: list[SubmitOrder | CancelOrder | ModifyOrder | SubmitBracket] = []
        denials: list[OrderDenied] = []
        # cancels reduce risk and are never denied, but spend the message budget first (the
        # conservative order); then one batch check of the new orders (a bracket's entry is
        # checked as its order; its exits only ever close it); then the commands go on in
        # their own order, amends checked in place
        alerts: list[RiskAlert] = []
        submits = []
        for cmd in commands:
            if isinstance(cmd, CancelOrder):
                eng.on_message_sent(cmd)
            elif isinstance(cmd, SubmitBracket):
                submits.append(cmd.entry)
            elif isinstance(cmd, SubmitOrder):
                submits.append(cmd)
        verdicts = iter(eng.check_batch(submits, views))
        for cmd in commands:
            if isinstance(cmd, CancelOrder):
                approved.append(cmd)
            elif isinstance(cmd, ModifyOrder):
                denied = eng.check_modify(cmd, views.get(cmd.symbol))
                if denied is None:
                    approved.append(cmd)
                else:
                    alerts.append(RiskAlert(
                        ts_event=denied.ts_event, ts_init=denied.ts_init,
                        code=f"{ALERT_MODIFY_DENIED}:{denied.reason}",
                        detail=f"{denied.client_order_id}: {denied.detail}",
                    ))
            else:
                denied = next(verdicts)
                if denied is None:
                    approved.append(cmd)
                else:
                    denials.append(denied)
        tripped = eng.state is TradingState.HALTED and (not was_halted or self._halt_requested)
        self._halt_requested = False
        if tripped and self.flatten:
            approved.extend(eng.flatten_orders(views))
        ids = [c.client_order_id for c in approved if isinstance(c, SubmitOrder | SubmitBracket)]
        events: list[OrderEvent] = []
        wall: dict[str, int] = {}
        if self.execution is None:
            for coid in ids:
                eng.release(coid)
        else:
            res = await self.execution.execute.remote(
                now_ns, approved, views, tripped, None if step_id is None else (step_id, 0)
            )
            events, wall = res.events, res.accept_wall_ns
            for ev in events:
                state_events.extend(eng.on_event(ev))
            if eng.state is TradingState.HALTED and not tripped and not was_halted:
                # tripped by this step's fills: cancel whatever is still working (and flatten)
                more_cmds = eng.flatten_orders(views) if self.flatten else []
                more = await self.execution.execute.remote(
                    now_ns, more_cmds, views, True, None if step_id is None else (step_id, 1)
                )
                events.extend(more.events)
                wall.update(more.accept_wall_ns)
                for ev in more.events:
                    state_events.extend(eng.on_event(ev))
        report, self._report = self._report, None
        if eng.report_due() and not self._report_scheduled:
            # off the step's critical path: built once this reply is on its way, handed over
            # with the next step's result
            self._report_scheduled = True
            asyncio.get_running_loop().call_soon(self._build_report)
        result = RiskResult(
            denials=denials,
            events=events,
            state_events=state_events,
            accept_wall_ns=wall,
            pnl=eng.pnl(),
            alerts=alerts + eng.drain_alerts(),
            exposure=eng.exposure(),
            var_es=eng.var_es(),
            report=report,
            approved=ids,
        )
        self._last_step, self._last_result = step_id, result
        self._save()
        return result

    def _save(self) -> None:
        """Checkpoint the engine, the queued operator events and the last step's result."""
        if self.checkpoint_path:
            write_checkpoint(self.checkpoint_path, {
                "now_ns": self.clock.now_ns(), "engine": self.engine.snapshot(),
                "pending": self._pending, "halt_requested": self._halt_requested,
                "step_id": self._last_step, "result": self._last_result,
            })

    def _build_report(self) -> None:
        self._report_scheduled = False
        self._report = self.engine.risk_report()

    # --- operator commands (by name, from `raydesk risk ...`) ----------------------------------
    def rearm(self, operator: str, token: str) -> dict[str, Any]:
        """Re-arm after a trip (authenticated; refusals raise ``RearmRefused`` and are
        journaled with the next step)."""
        try:
            ev = self.engine.rearm(operator, token)
        finally:
            self._save()  # a refusal is counted and queued too
        self._pending.append(ev)
        self._save()
        return ev.to_record()

    def halt(self, reason: str) -> dict[str, Any]:
        """Halt trading by hand (no authentication: stopping is always allowed). The next step
        cancels every open order (and flattens with ``risk.flatten_on_halt``), as a trip does."""
        ev = self.engine.halt(reason)
        self._pending.append(ev)
        self._halt_requested = True
        self._save()  # a halt must survive a crash
        return ev.to_record()

    def status(self) -> dict[str, Any]:
        """State, PnL, drawdown, exposure, pre-trade VaR/ES, open orders and counters."""
        e = self.engine
        var_es = e.var_es()
        return {
            "state": e.state.value,
            "pnl_today": e.pnl(),
            "equity": e.equity(),
            "drawdown": e.drawdown(),
            "exposure": e.exposure(),
            "var_es": None if var_es is None else {"var": var_es[0], "es": var_es[1]},
            "open_orders": e.open_orders(),
            "positions": {s: p.qty_lots for s, p in e.positions().items()},
            "counters": dict(e.counters),
        }

    def snapshot(self) -> dict[str, Any]:
        """Return the engine's checkpoint image."""
        return self.engine.snapshot()
