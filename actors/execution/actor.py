"""ExecutionActor: owns every order's life and the positions (thin Ray wrapper).

Only the RiskActor calls :meth:`ExecutionActor.execute`, so no order reaches the venue without
passing risk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from actors.core.checkpoint import read_checkpoint, write_checkpoint
from actors.core.clock import make_clock
from actors.core.messages import (
    CancelOrder,
    ModifyOrder,
    OrderAccepted,
    OrderEvent,
    SubmitBracket,
    SubmitOrder,
)
from actors.core.views import BookView
from actors.execution.engine import ExecutionEngine
from cluster.config import RaydeskConfig


@dataclass(frozen=True, slots=True)
class ExecResult:
    """Events of one call, and the wall-clock moment each order was accepted."""

    events: list[OrderEvent]
    accept_wall_ns: dict[str, int]


class ExecutionActor:
    """Paper execution against the symbols' current books."""

    def __init__(
        self, cfg: dict[str, Any], replay: bool, checkpoint_path: str | None = None
    ) -> None:
        c = RaydeskConfig.model_validate(cfg)
        self.clock = make_clock(replay)
        self.engine = ExecutionEngine(c.execution, c.instrument_map(), self.clock)
        self.checkpoint_path = checkpoint_path
        self.restored = False
        self._last_call: Any = None  # the id of the last call whose result is checkpointed
        self._last_result: ExecResult | None = None
        state = read_checkpoint(checkpoint_path) if checkpoint_path else None
        if state is not None:  # a restart: continue exactly where the last call left off
            self.clock.advance_to(state["now_ns"])
            self.engine.restore(state["engine"])
            self._last_call, self._last_result = state["call_id"], state["result"]
            self.restored = True

    def execute(
        self,
        now_ns: int,
        commands: list[SubmitOrder | CancelOrder | ModifyOrder | SubmitBracket],
        views: dict[str, BookView],
        cancel_open: bool = False,
        call_id: Any = None,
    ) -> ExecResult:
        """Match resting orders, then run the commands (after cancelling all if asked).

        With a checkpoint path, the engine and the result are checkpointed before the result
        is returned, and a call repeating the last ``call_id`` (Ray retrying it after a
        restart) gets that result again instead of running twice: exactly-once effects over
        at-least-once delivery.
        """
        if call_id is not None and call_id == self._last_call and self._last_result is not None:
            return self._last_result
        self.clock.advance_to(now_ns)
        if cancel_open:
            now = self.clock.now_ns()
            cancels: list[SubmitOrder | CancelOrder | ModifyOrder | SubmitBracket] = [
                CancelOrder(ts_event=now, ts_init=now, client_order_id=o.client_order_id,
                            symbol=o.symbol)
                for o in self.engine.open_orders()
            ]
            commands = cancels + list(commands)
        events = self.engine.execute(commands, views)
        wall = time.time_ns()
        accepted = {e.client_order_id: wall for e in events if isinstance(e, OrderAccepted)}
        result = ExecResult(events, accepted)
        if self.checkpoint_path:
            write_checkpoint(self.checkpoint_path, {
                "now_ns": self.clock.now_ns(), "engine": self.engine.snapshot(),
                "call_id": call_id, "result": result,
            })
            self._last_call, self._last_result = call_id, result
        return result

    def portfolio_summary(self) -> dict[str, Any]:
        """Positions and PnL (realised, fees, unrealised at the last marks, total)."""
        pf = self.engine.portfolio
        return {
            "realised_pnl": round(pf.realised_pnl(), 6),
            "fees": round(pf.fees(), 6),
            "unrealised_pnl": round(pf.unrealised_pnl(), 6),
            "total_pnl": round(pf.total_pnl(), 6),
            "positions": {s: p.qty_lots for s, p in pf.positions().items()},
            "open_orders": len(self.engine.open_orders()),
        }

    def snapshot(self) -> dict[str, Any]:
        """Return the engine's checkpoint image."""
        return self.engine.snapshot()
