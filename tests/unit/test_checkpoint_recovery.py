"""Checkpoints of the execution and risk actors, in-process (the Ray retry path is covered by
tests/ray/test_recovery.py): a restarted actor continues from its checkpoint, and a call that
repeats the last id is answered from the checkpoint instead of running twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from actors.core.checkpoint import read_checkpoint, write_checkpoint
from actors.core.messages import OrderSide, OrderType, SubmitOrder, TimeInForce
from actors.core.views import BookView
from actors.execution.actor import ExecutionActor
from actors.risk.actor import RiskActor
from tests.conftest import small_config

T0 = 1_700_000_000_000_000_000


class _Remote:
    """``handle.method.remote(...)`` for an in-process actor: runs it, returns an awaitable."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def remote(self, *args: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(self.fn(*args))
        return fut


class _Handle:
    def __init__(self, actor: ExecutionActor) -> None:
        self.execute = _Remote(actor.execute)


def _views(cfg: Any, ts: int) -> dict[str, BookView]:
    return {s: BookView(s, ts, ts, (px - 1,), (5.0,), (px + 1,), (5.0,))
            for s, px in cfg.initial_prices_ticks().items()}


def _orders(cfg: Any, n: int, ts: int) -> list[SubmitOrder]:
    sym, px = next(iter(cfg.initial_prices_ticks().items()))
    return [SubmitOrder(ts_event=ts, ts_init=ts, client_order_id=f"o{ts}-{k}", symbol=sym,
                        side=OrderSide.BUY if k % 2 else OrderSide.SELL,
                        order_type=OrderType.LIMIT, qty_lots=1,
                        price_ticks=px - 5 if k % 2 else px + 5, tif=TimeInForce.GTC)
            for k in range(n)]


def test_checkpoint_writes_are_atomic_and_readable(tmp_path: Path) -> None:
    p = tmp_path / "c" / "x.pkl"
    assert read_checkpoint(p) is None
    write_checkpoint(p, {"a": 1})
    write_checkpoint(p, {"a": 2})
    assert read_checkpoint(p) == {"a": 2}
    assert [f.name for f in p.parent.iterdir()] == ["x.pkl"]  # no temporary left behind


def test_a_restarted_execution_actor_answers_a_retried_call_without_running_it_twice(
    tmp_path: Path,
) -> None:
    cfg = small_config(tmp_path)
    d, path = cfg.model_dump(mode="json"), str(tmp_path / "execution.pkl")
    a = ExecutionActor(d, True, path)
    first = a.execute(T0, _orders(cfg, 4, T0), _views(cfg, T0), False, (0, 0))
    b = ExecutionActor(d, True, path)  # Ray re-ran __init__ after a crash
    assert b.restored and len(b.engine.open_orders()) == 4
    again = b.execute(T0, _orders(cfg, 4, T0), _views(cfg, T0), False, (0, 0))
    assert [e.to_record() for e in again.events] == [e.to_record() for e in first.events]
    assert len(b.engine.open_orders()) == 4  # not submitted twice
    nxt = b.execute(T0 + 10**8, _orders(cfg, 2, T0 + 10**8), _views(cfg, T0 + 10**8), False,
                    (1, 0))
    assert len(b.engine.open_orders()) == 6 and nxt.events


def test_a_restarted_risk_actor_continues_from_its_checkpoint(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, risk={"max_open_orders_per_symbol": 5})
    d = cfg.model_dump(mode="json")
    ex = ExecutionActor(d, True, str(tmp_path / "execution.pkl"))
    path = str(tmp_path / "risk.pkl")

    async def scenario() -> None:
        r1 = RiskActor(d, True, _Handle(ex), path)
        res = await r1.process(T0, _orders(cfg, 4, T0), _views(cfg, T0), 0)
        assert len(res.approved) == 4
        r1.halt("drill")  # an operator halt is checkpointed at once
        r2 = RiskActor(d, True, _Handle(ex), path)
        assert r2.restored and r2.engine.open_orders() == 4
        again = await r2.process(T0, _orders(cfg, 4, T0), _views(cfg, T0), 0)
        assert again.approved == res.approved  # the retried step, from the checkpoint
        nxt = await r2.process(T0 + 10**8, [], _views(cfg, T0 + 10**8), 1)
        assert [(e.state, e.reason) for e in nxt.state_events] == [("HALTED", "MANUAL:drill")]
        assert {type(e).__name__ for e in nxt.events} >= {"OrderCanceled"}  # halt cancels

    asyncio.run(scenario())
