"""RiskActor: every order passes here before the ExecutionActor (thin Ray wrapper)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.core.clock import make_clock
from actors.core.messages import OrderDenied, OrderEvent, SubmitOrder, TradingStateChanged
from actors.core.views import BookView
from actors.risk.engine import RiskEngine, TradingState
from cluster.config import RaydeskConfig


@dataclass(frozen=True, slots=True)
class RiskResult:
    """Denials, execution events, trading-state changes and PnL of one step."""

    denials: list[OrderDenied]
    events: list[OrderEvent]
    state_events: list[TradingStateChanged]
    accept_wall_ns: dict[str, int]
    pnl: float


class RiskActor:
    """Checks orders, forwards the approved ones to execution, and runs the kill switch."""

    def __init__(self, cfg: dict[str, Any], replay: bool, execution: Any) -> None:
        c = RaydeskConfig.model_validate(cfg)
        self.clock = make_clock(replay)
        self.engine = RiskEngine(c.risk, c.instrument_map(), self.clock)
        self.execution = execution

    async def process(
        self, now_ns: int, commands: list[SubmitOrder], views: dict[str, BookView]
    ) -> RiskResult:
        """Mark, check every order, execute the approved ones, and account their fills."""
        self.clock.advance_to(now_ns)
        was_halted = self.engine.state is TradingState.HALTED
        state_events = list(self.engine.on_marks(views))
        approved: list[SubmitOrder] = []
        denials: list[OrderDenied] = []
        for cmd in commands:
            denied = self.engine.check(cmd, views.get(cmd.symbol))
            if denied is None:
                approved.append(cmd)
            else:
                denials.append(denied)
        halted_now = self.engine.state is TradingState.HALTED and not was_halted
        res = await self.execution.execute.remote(now_ns, approved, views, halted_now)
        for ev in res.events:
            state_events.extend(self.engine.on_event(ev))
        if self.engine.state is TradingState.HALTED and not halted_now and not was_halted:
            # tripped by this step's fills: cancel whatever is still working
            more = await self.execution.execute.remote(now_ns, [], {}, True)
            res.events.extend(more.events)
            for ev in more.events:
                state_events.extend(self.engine.on_event(ev))
        return RiskResult(denials, res.events, state_events, res.accept_wall_ns, self.engine.pnl())

    def rearm(self, operator: str) -> TradingStateChanged:
        """Deliberately re-arm after a kill-switch trip."""
        return self.engine.rearm(operator)

    def snapshot(self) -> dict[str, Any]:
        """Return the engine's checkpoint image."""
        return self.engine.snapshot()
