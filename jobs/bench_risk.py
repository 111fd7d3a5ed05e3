"""``raydesk bench risk``: pre-trade checks in-process and through the RiskActor, and the time
of a 100-asset, 10,000-path Monte Carlo VaR.

Every check runs the whole list (no early denial): the limits are set wide enough that almost
every order is approved, the VaR / ES limit is on (delta-normal, warmed up on sampled
returns), self-trade prevention and the three token buckets are live. Orders are limit orders
within the price band on the run's instruments; they are checked in batches of
``BATCH`` and the approved ones are released between batches (untimed), so working orders,
exposures and the VaR vector move as they would live.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import numpy as np

from actors.core.clock import SimClock
from actors.core.messages import OrderSide, OrderType, SubmitOrder, TimeInForce
from actors.core.views import BookView
from actors.risk.engine import RiskEngine
from actors.risk.var import monte_carlo_var_es
from cluster.config import RaydeskConfig

BATCH = 1_000
T0 = 1_700_000_000_000_000_000


def _bench_config(cfg: RaydeskConfig) -> RaydeskConfig:
    wide = {
        "max_position_lots": 10_000_000,
        "max_notional_per_order": 1e12,
        "max_orders_per_s": 1e12,
        "order_burst": 10_000_000,
        "max_orders_per_s_global": 1e12,
        "order_burst_global": 10_000_000,
        "max_messages_per_s": 1e12,
        "message_burst": 10_000_000,
        "max_open_orders": 10 * BATCH,
        "max_open_orders_per_symbol": 10 * BATCH,
        "capital": 1e12,
        "max_gross_exposure": 1e15,
        "max_net_exposure": 1e15,
        "var": {"var_limit": 1e15, "es_limit": 1e15, "sample_ms": 1_000.0,
                "window": 600, "min_returns": 30},
    }
    data = cfg.model_dump(mode="json")
    data["risk"] = {**data["risk"], **wide}
    return RaydeskConfig.model_validate(data)


def _books(cfg: RaydeskConfig, ts: int, drift: dict[str, int]) -> dict[str, BookView]:
    out = {}
    for sym, px in cfg.initial_prices_ticks().items():
        mid = px + drift.get(sym, 0)
        out[sym] = BookView(
            symbol=sym, ts_event=ts, ts_init=ts,
            bid_ticks=tuple(mid - 1 - i for i in range(10)), bid_sizes=(5.0,) * 10,
            ask_ticks=tuple(mid + 1 + i for i in range(10)), ask_sizes=(5.0,) * 10,
        )
    return out


def _orders(cfg: RaydeskConfig, n: int, seed: int, ts: int) -> list[SubmitOrder]:
    """``n`` limit orders: buys below and sells above the mid (no self-crossing)."""
    rng = np.random.default_rng(seed)
    syms = list(cfg.initial_prices_ticks().items())
    out = []
    for k in range(n):
        sym, px = syms[k % len(syms)]
        buy = bool(rng.integers(0, 2))
        off = int(rng.integers(1, 20))
        out.append(SubmitOrder(
            ts_event=ts, ts_init=ts, client_order_id=f"b{seed}-{k}", symbol=sym,
            side=OrderSide.BUY if buy else OrderSide.SELL, order_type=OrderType.LIMIT,
            qty_lots=int(rng.integers(1, 5)), price_ticks=px - off if buy else px + off,
            tif=TimeInForce.GTC, features_ts_ns=ts, signal_ts_ns=ts,
        ))
    return out


def _warm(engine: RiskEngine, clock: SimClock, cfg: RaydeskConfig, samples: int) -> int:
    """Feed ``samples`` seconds of random-walk mids so the VaR limit is live; return now."""
    rng = np.random.default_rng(1)
    drift = {s: 0 for s in cfg.initial_prices_ticks()}
    ts = T0
    for _ in range(samples * 10):
        ts += 100_000_000
        for s in drift:
            drift[s] += int(rng.integers(-3, 4))
        clock.advance_to(ts)
        engine.on_marks(_books(cfg, ts, drift))
    return ts


def _in_process(cfg: RaydeskConfig, n: int) -> dict[str, Any]:
    clock = SimClock(T0)
    engine = RiskEngine(cfg.risk, cfg.instrument_map(), clock)
    ts = _warm(engine, clock, cfg, 60)
    books = _books(cfg, ts, {})
    engine.on_marks(books)
    orders = _orders(cfg, n, 7, ts)
    approved = denied = 0
    spent = 0.0
    for i in range(0, n, BATCH):
        batch = orders[i:i + BATCH]
        t0 = time.perf_counter()
        verdicts = engine.check_batch(batch, books)
        spent += time.perf_counter() - t0
        for cmd, v in zip(batch, verdicts, strict=True):
            if v is None:
                approved += 1
                engine.release(cmd.client_order_id)
            else:
                denied += 1
    return {
        "checks_per_s": round(n / spent),
        "check_us": round(spent / n * 1e6, 3),
        "approved": approved,
        "denied": denied,
        "var_live": engine.var_es() is not None,
    }


def _through_actor(cfg: RaydeskConfig, n: int) -> dict[str, Any]:
    import ray

    from actors.risk.actor import RiskActor
    from cluster.topology import connect_ray

    owns = connect_ray(cfg)
    actor = ray.remote(RiskActor).options(num_cpus=0).remote(
        cfg.model_dump(mode="json"), True, None
    )
    try:
        ts = T0
        for _ in range(600):  # warm the VaR history on the actor's own clock
            ts += 100_000_000
            ray.get(actor.process.remote(ts, [], _books(cfg, ts, {})))
        books = _books(cfg, ts, {})
        orders = _orders(cfg, n, 11, ts)
        batches = [orders[i:i + BATCH] for i in range(0, n, BATCH)]

        async def run() -> tuple[float, int]:
            t0 = time.perf_counter()
            ok = 0
            for b in batches:  # one call in flight: each batch sees the previous one's state
                res = await actor.process.remote(ts, b, books)
                ok += len(res.approved)
            return time.perf_counter() - t0, ok

        spent, ok = asyncio.run(run())
        return {"actor_checks_per_s": round(n / spent), "actor_batch": BATCH,
                "actor_approved": ok}
    finally:
        ray.kill(actor)
        if owns:
            ray.shutdown()


def _report(cfg: RaydeskConfig, repeats: int = 7) -> dict[str, Any]:
    """Time of the periodic portfolio-risk report (``RiskEngine.risk_report``): every VaR / ES
    method at the configured confidences and horizons, stress, heat, correlation; on a full
    return window and one open position per symbol."""
    from actors.core.messages import LiquiditySide, OrderFilled

    clock = SimClock(T0)
    engine = RiskEngine(cfg.risk, cfg.instrument_map(), clock)
    ts = _warm(engine, clock, cfg, cfg.risk.var.window + 5)
    for k, (sym, px) in enumerate(cfg.initial_prices_ticks().items()):
        engine.on_event(OrderFilled(
            ts_event=ts, ts_init=ts, client_order_id=f"r{k}", symbol=sym, trade_id=f"r{k}",
            side=OrderSide.BUY if k % 2 else OrderSide.SELL, last_qty_lots=50,
            last_px_ticks=px, liquidity=LiquiditySide.TAKER,
        ))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rep = engine.risk_report()
        times.append((time.perf_counter() - t0) * 1e3)
    assert rep["var"]["status"] == "ok", rep["var"]
    return {"report_ms": round(statistics.median(times), 3),
            "report_returns": rep["n_returns"], "report_estimates": len(rep["var"]["estimates"])}


def _mc_var(assets: int = 100, paths: int = 10_000, repeats: int = 7) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    returns = rng.standard_t(5, size=(500, assets)) * 1e-3
    positions = rng.normal(0, 1e4, size=assets)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        monte_carlo_var_es(positions, returns, alpha=0.99, horizon=1, paths=paths, dof=5.0)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"mc_var_ms": round(statistics.median(times), 3),
            "mc_var_ms_min": round(min(times), 3), "mc_assets": assets, "mc_paths": paths}


def bench_risk(cfg: RaydeskConfig, n: int = 200_000, actor_n: int = 100_000) -> dict[str, Any]:
    """Pre-trade checks per second in-process and through the RiskActor, and MC VaR time."""
    from jobs.bench import _machine

    bcfg = _bench_config(cfg)
    out: dict[str, Any] = {}
    out.update(_in_process(bcfg, n))
    out.update(_through_actor(bcfg, actor_n))
    out.update(_mc_var())
    out.update(_report(bcfg))
    out["symbols"] = len(bcfg.instruments)
    out["goals"] = {"checks_per_s": 200_000, "mc_var_ms": 50}
    out["machine"] = _machine()
    return out
