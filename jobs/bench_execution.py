"""``raydesk bench execution``: orders per second through the execution engine in-process and
through the ExecutionActor, journal records per second, and Postgres audit rows per second.

The workload runs on the config's instruments (three by default), each with a 10-level book
whose mid random-walks by -2..+2 ticks between ``execute`` calls; level sizes are 5 to 40 lots
and every view carries 0 to 3 trades at the touch (1 to 15 lots, either aggressor). Each call
gets fresh views of every symbol and a batch of ``BATCH`` submits (``ACTOR_BATCH`` through the
actor), each on a random symbol and side, shuffled together with the batch's cancels:

* 30 % marketable ``IOC`` limit orders, 1 to 12 lots, priced 0 to 2 ticks through the
  opposite touch: they fill at once, fully or partly (the rest is canceled, reason ``IOC``),
  or not at all when earlier orders of the same view took the liquidity;
* 70 % passive ``GTC`` limit orders, 1 to 10 lots, 0 to 4 ticks behind their own touch: they
  rest, and fill as maker when trades reach them or the moving book crosses them;
* cancels of the oldest still-open ``GTC`` orders, enough to bring the resting set back to
  ``RESTING_TARGET`` after the batch (a cancel that an earlier fill beat in the same call is
  answered ``ILLEGAL_TRANSITION``, as it would be live).

Only ``ExecutionEngine.execute`` (or the actor round trip) is timed; building the batches and
reading the events back are not. Orders are submits: each goes through the state machine and
the paper venue. The engine keeps every order it has seen, so the garbage collector's passes
grow with the run; they are part of the figures, as they are in a live actor.

* ``orders_per_s``: the engine alone on a simulated clock, ``BATCH`` submits per call, after
  ``WARMUP_CALLS`` untimed calls that fill the resting set.
* ``actor_orders_per_s``: the same workload through a real ``ExecutionActor`` on local Ray,
  ``ACTOR_BATCH`` submits per ``execute.remote`` call, one call in flight (cancels never
  touch the batch's own orders, so the resting set is then about one batch's ``GTC`` orders).
* ``journal_records_per_s``: :class:`~actors.journal.journal.Journal` appending the first
  in-process events as journal records, ``JOURNAL_BATCH`` per append, fsync on (the durable
  figure); ``journal_records_per_s_no_fsync`` with fsync off. Each is the median of three
  runs, the two modes interleaved.
* ``pg_rows_per_s``: :class:`~actors.journal.pg_sink.PgSink` copying a journal of such records
  into Postgres (``RAYDESK_PG_DSN``) under a fresh run id, connection and schema check
  included; the rows are deleted afterwards. ``None``, with ``pg_error``, when Postgres is
  unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from actors.core.clock import SimClock
from actors.core.messages import (
    CancelOrder,
    OrderCanceled,
    OrderError,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSide,
    OrderType,
    SubmitOrder,
    TimeInForce,
)
from actors.core.views import BookView, TradePrint
from actors.execution.engine import ExecutionEngine
from actors.journal.journal import Journal
from cluster.config import RaydeskConfig

BATCH = 100
ACTOR_BATCH = 1_000
JOURNAL_BATCH = 1_000
JOURNAL_RUNS = 3
RESTING_TARGET = 300
IOC_SHARE = 0.3
LEVELS = 10
STEP_NS = 100_000_000
T0 = 1_700_000_000_000_000_000
WARMUP_CALLS = 20

Command = SubmitOrder | CancelOrder


class Workload:
    """Builds the books and command batches of the benchmark and follows their outcome.

    The open ``GTC`` orders are tracked from the events alone, so the same workload drives the
    engine in-process and the actor through Ray.

    Args:
        cfg: The config (its instruments and their starting prices).
        seed: Seed of every random choice.
        prefix: Prefix of the client order ids (distinct per run).
    """

    def __init__(self, cfg: RaydeskConfig, seed: int, prefix: str) -> None:
        self._rng = random.Random(seed)
        self._prefix = prefix
        instruments = cfg.instrument_map()
        self.mids = dict(cfg.initial_prices_ticks())
        self._lot = {s: float(instruments[s].lot_size) for s in self.mids}
        self._symbols = sorted(self.mids)
        self._open: dict[str, tuple[str, int]] = {}  # GTC id -> (symbol, lots left), oldest first
        self._ioc: dict[str, tuple[int, int]] = {}  # IOC id of the current batch -> (qty, filled)
        self._n = 0
        self._seq = 0
        self.ts = T0
        self.submits: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()

    @property
    def resting(self) -> int:
        """GTC orders still open after the last batch, as the events tell."""
        return len(self._open)

    def books(self) -> dict[str, BookView]:
        """Move time and every mid on, and return the next view of every symbol."""
        rng = self._rng
        self.ts += STEP_NS
        self._seq += 1
        out: dict[str, BookView] = {}
        for sym in self._symbols:
            mid = self.mids[sym] = self.mids[sym] + rng.randint(-2, 2)
            lot = self._lot[sym]
            bid = tuple(mid - 1 - i for i in range(LEVELS))
            ask = tuple(mid + 1 + i for i in range(LEVELS))
            trades = []
            for _ in range(rng.randint(0, 3)):
                buyer = rng.random() < 0.5
                trades.append(
                    TradePrint(
                        ts_event=self.ts,
                        price_ticks=ask[0] if buyer else bid[0],
                        size=rng.randint(1, 15) * lot,
                        aggressor="BUY" if buyer else "SELL",
                    )
                )
            out[sym] = BookView(
                symbol=sym,
                ts_event=self.ts,
                ts_init=self.ts,
                bid_ticks=bid,
                bid_sizes=tuple(rng.randint(5, 40) * lot for _ in range(LEVELS)),
                ask_ticks=ask,
                ask_sizes=tuple(rng.randint(5, 40) * lot for _ in range(LEVELS)),
                seq=self._seq,
                trades=tuple(trades),
            )
        return out

    def batch(self, submits: int, books: dict[str, BookView]) -> list[Command]:
        """Return ``submits`` new orders and the cancels that keep the resting set bounded."""
        rng = self._rng
        ts = self.ts
        cmds: list[Command] = []
        gtc = 0
        for _ in range(submits):
            self._n += 1
            coid = f"{self._prefix}-{self._n}"
            sym = self._symbols[rng.randrange(len(self._symbols))]
            book = books[sym]
            buy = rng.random() < 0.5
            if rng.random() < IOC_SHARE:
                qty = rng.randint(1, 12)
                through = rng.randint(0, 2)
                price = book.ask_ticks[0] + through if buy else book.bid_ticks[0] - through
                tif = TimeInForce.IOC
                self._ioc[coid] = (qty, 0)
            else:
                qty = rng.randint(1, 10)
                behind = rng.randint(0, 4)
                price = book.bid_ticks[0] - behind if buy else book.ask_ticks[0] + behind
                tif = TimeInForce.GTC
                self._open[coid] = (sym, qty)
                gtc += 1
            self.submits[tif.value] += 1
            cmds.append(
                SubmitOrder(
                    ts_event=ts,
                    ts_init=ts,
                    client_order_id=coid,
                    symbol=sym,
                    side=OrderSide.BUY if buy else OrderSide.SELL,
                    order_type=OrderType.LIMIT,
                    qty_lots=qty,
                    price_ticks=price,
                    tif=tif,
                    trigger_ts_init=ts,
                )
            )
        excess = len(self._open) - RESTING_TARGET
        for coid in list(self._open)[: max(0, min(excess, len(self._open) - gtc))]:
            sym, _ = self._open.pop(coid)
            cmds.append(CancelOrder(ts_event=ts, ts_init=ts, client_order_id=coid, symbol=sym))
            self.submits["CANCEL"] += 1
        rng.shuffle(cmds)
        return cmds

    def observe(self, events: list[OrderEvent]) -> None:
        """Follow the open orders and count the outcomes of one batch's events."""
        out = self.outcomes
        for ev in events:
            coid = ev.client_order_id
            if isinstance(ev, OrderFilled):
                out[f"fill_{ev.liquidity.value.lower()}"] += 1
                if coid in self._ioc:
                    qty, filled = self._ioc[coid]
                    self._ioc[coid] = (qty, filled + ev.last_qty_lots)
                elif coid in self._open:
                    sym, left = self._open[coid]
                    if left > ev.last_qty_lots:
                        self._open[coid] = (sym, left - ev.last_qty_lots)
                    else:
                        del self._open[coid]
            elif isinstance(ev, OrderCanceled | OrderRejected | OrderExpired):
                self._open.pop(coid, None)
                if isinstance(ev, OrderCanceled) and ev.reason != "IOC":
                    out[f"canceled_{ev.reason.lower()}"] += 1
            elif isinstance(ev, OrderError):
                out[f"error_{ev.reason.lower()}"] += 1
        for qty, filled in self._ioc.values():
            out["ioc_filled" if filled == qty else "ioc_partly" if filled else "ioc_unfilled"] += 1
        self._ioc.clear()

    def mix(self) -> dict[str, Any]:
        """The workload actually sent, and what became of it."""
        orders = self.submits["IOC"] + self.submits["GTC"]
        return {
            "ioc_limit_marketable": self.submits["IOC"],
            "gtc_limit_passive": self.submits["GTC"],
            "cancels": self.submits["CANCEL"],
            "ioc_share": round(self.submits["IOC"] / max(1, orders), 4),
            "cancels_per_order": round(self.submits["CANCEL"] / max(1, orders), 4),
            "outcomes": dict(sorted(self.outcomes.items())),
        }


def _engine(cfg: RaydeskConfig) -> ExecutionEngine:
    return ExecutionEngine(cfg.execution, cfg.instrument_map(), SimClock(T0))


def _in_process(
    cfg: RaydeskConfig, n: int, keep: int = 0
) -> tuple[dict[str, Any], list[OrderEvent]]:
    """Run ``n`` orders through the engine; return the figures and the first ``keep`` events
    of the timed calls (kept for the journal; keeping them all would slow the garbage
    collector down, and the engine with it)."""
    engine = _engine(cfg)
    wl = Workload(cfg, seed=7, prefix="E")
    for _ in range(WARMUP_CALLS):  # reach the steady resting set first (not timed)
        books = wl.books()
        wl.observe(engine.execute(wl.batch(BATCH, books), books))
    wl.submits.clear()
    wl.outcomes.clear()
    spent = 0.0
    events = 0
    kept: list[OrderEvent] = []
    calls = -(-n // BATCH)
    for _ in range(calls):
        books = wl.books()
        cmds = wl.batch(BATCH, books)
        t0 = time.perf_counter()
        out = engine.execute(cmds, books)
        spent += time.perf_counter() - t0
        wl.observe(out)
        events += len(out)
        if len(kept) < keep:
            kept.extend(out[: keep - len(kept)])
    orders = calls * BATCH
    return {
        "orders_per_s": round(orders / spent),
        "order_us": round(spent / orders * 1e6, 3),
        "events_per_s": round(events / spent),
        "orders": orders,
        "events": events,
        "batch": BATCH,
        "calls": calls,
        "mix": wl.mix(),
        "resting_orders": len(engine.venue.resting()),  # type: ignore[attr-defined]
        "resting_target": RESTING_TARGET,
    }, kept


def _through_actor(cfg: RaydeskConfig, n: int) -> dict[str, Any]:
    import ray

    from actors.execution.actor import ExecutionActor
    from cluster.topology import connect_ray

    owns = connect_ray(cfg)
    actor = ray.remote(ExecutionActor).options(num_cpus=0).remote(cfg.model_dump(mode="json"), True)
    try:
        wl = Workload(cfg, seed=11, prefix="A")
        for _ in range(2):  # warm the actor and the resting set (not timed)
            books = wl.books()
            wl.observe(
                ray.get(actor.execute.remote(wl.ts, wl.batch(ACTOR_BATCH, books), books)).events
            )
        calls = -(-n // ACTOR_BATCH)
        spent = 0.0
        events = 0
        for _ in range(calls):  # one call in flight: each batch sees the previous one's state
            books = wl.books()
            cmds = wl.batch(ACTOR_BATCH, books)
            t0 = time.perf_counter()
            res = ray.get(actor.execute.remote(wl.ts, cmds, books))
            spent += time.perf_counter() - t0
            wl.observe(res.events)
            events += len(res.events)
        orders = calls * ACTOR_BATCH
        return {
            "actor_orders_per_s": round(orders / spent),
            "actor_events_per_s": round(events / spent),
            "actor_batch": ACTOR_BATCH,
            "actor_orders": orders,
            "actor_resting_orders": wl.resting,
        }
    finally:
        ray.kill(actor)
        if owns:
            ray.shutdown()


def _journal_rate(records: list[dict[str, Any]], path: Path, fsync: bool) -> float:
    journal = Journal(path, fsync=fsync)
    try:
        t0 = time.perf_counter()
        for i in range(0, len(records), JOURNAL_BATCH):
            journal.append(records[i : i + JOURNAL_BATCH])
        spent = time.perf_counter() - t0
    finally:
        journal.close()
    return len(records) / spent


def _journal(records: list[dict[str, Any]], folder: Path) -> dict[str, Any]:
    rates: dict[bool, list[float]] = {True: [], False: []}
    for run in range(JOURNAL_RUNS):
        for fsync in (True, False):  # interleaved: a disk's slow moment hits both modes
            path = folder / f"journal-{run}-{'fsync' if fsync else 'nofsync'}.log"
            rates[fsync].append(_journal_rate(records, path, fsync))
    durable, buffered = statistics.median(rates[True]), statistics.median(rates[False])
    return {
        "journal_records_per_s": round(durable),
        "journal_records_per_s_fsync": round(durable),
        "journal_records_per_s_no_fsync": round(buffered),
        "journal_batch": JOURNAL_BATCH,
        "journal_records": len(records),
    }


async def _pg_sync(path: Path, records: int) -> dict[str, Any]:
    import asyncpg

    from actors.journal.pg_sink import AUDIT_TABLE, PgSink, dsn_from_env

    dsn = dsn_from_env()
    try:
        probe = await asyncpg.connect(dsn, timeout=5.0)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return {"pg_rows_per_s": None, "pg_error": f"{type(exc).__name__}: {exc}"}
    run_id = f"bench-execution-{uuid.uuid4().hex[:12]}"
    sink = PgSink(dsn, path, run_id)
    try:
        rows = 0
        t0 = time.perf_counter()
        while rows < records:
            got = await sink.sync_once()
            if got == 0:
                break
            rows += got
        spent = time.perf_counter() - t0
        return {
            "pg_rows_per_s": round(rows / spent),
            "pg_rows": rows,
            "pg_batch": sink.batch_rows,
            "pg_error": None,
        }
    except Exception as exc:  # a broken Postgres: report it, the other figures still count
        return {"pg_rows_per_s": None, "pg_error": f"{type(exc).__name__}: {exc}"}
    finally:
        await sink.close()
        with contextlib.suppress(asyncpg.UndefinedTableError):  # never migrated: nothing to delete
            await probe.execute(f"DELETE FROM {AUDIT_TABLE} WHERE run_id = $1", run_id)
        await probe.close()


def _pg(records: list[dict[str, Any]], folder: Path) -> dict[str, Any]:
    path = folder / "journal-pg.log"
    journal = Journal(path, fsync=False)
    try:
        for i in range(0, len(records), JOURNAL_BATCH):
            journal.append(records[i : i + JOURNAL_BATCH])
    finally:
        journal.close()
    return asyncio.run(_pg_sync(path, len(records)))


def _records(events: list[OrderEvent], n: int) -> list[dict[str, Any]]:
    """``n`` journal records of order events (the run's events, repeated if too few)."""
    base = [ev.to_record() for ev in events[:n]]
    return [base[i % len(base)] for i in range(n)] if base else []


def bench_execution(
    cfg: RaydeskConfig,
    n: int = 200_000,
    actor_n: int = 50_000,
    journal_n: int = 50_000,
    pg_n: int = 50_000,
) -> dict[str, Any]:
    """Orders per second in-process and through the ExecutionActor, journal records per second
    (fsync on and off) and Postgres audit rows per second.

    Args:
        cfg: The config (instruments and execution settings).
        n: Orders (submits) through the engine in-process.
        actor_n: Orders through the actor on local Ray.
        journal_n: Records appended to each journal.
        pg_n: Records of the journal synced into Postgres.

    Example:
        >>> out = bench_execution(load_config("configs/local.yaml"))  # doctest: +SKIP
        >>> out["orders_per_s"], out["journal_records_per_s"]  # doctest: +SKIP
        (41796, 143527)
    """
    from jobs.bench import _machine

    out, events = _in_process(cfg, n, keep=max(journal_n, pg_n))
    out.update(_through_actor(cfg, actor_n))
    with tempfile.TemporaryDirectory(prefix="raydesk-bench-exec-") as tmp:
        folder = Path(tmp)
        out.update(_journal(_records(events, journal_n), folder))
        out.update(_pg(_records(events, pg_n), folder))
        out["journal_dir"] = tempfile.gettempdir()
    out["symbols"] = len(cfg.instruments)
    out["goals"] = {"orders_per_s": 100_000}
    out["machine"] = _machine()
    return out
