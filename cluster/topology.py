"""The one assembly function: builds the actor topology on local Ray or an existing cluster.

Replay and live are built here the same way; ``replay`` only picks the clock inside each actor
and how the feed paces itself. All actor options (names, namespace, CPUs, restarts) are set in
this module and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from actors.book.actor import SymbolActor
from actors.execution.actor import ExecutionActor
from actors.feed.actor import FeedActor
from actors.journal.actor import JournalActor
from actors.risk.actor import RiskActor
from cluster.config import RaydeskConfig

log = logging.getLogger(__name__)

SERVE_APP_NAME = "raydesk-ensemble"


@dataclass
class Topology:
    """Handles to every part of a running topology."""

    run_id: str
    feed: Any
    symbols: dict[str, Any]
    risk: Any
    execution: Any
    journal: Any
    ensemble: Any
    actors: list[Any]
    owns_ray: bool
    journal_drain_s: float = 0.0
    journal_stats: dict[str, Any] = field(default_factory=dict)  # set by teardown


def connect_ray(cfg: RaydeskConfig) -> bool:
    """Connect to ``RAY_ADDRESS`` / ``cfg.ray.address``, or start local Ray. Return True if started.

    Reuses an already initialised Ray (tests, ``ray job submit`` drivers).
    """
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS") or cfg.ray.address
    if address:
        ray.init(address=address, namespace=cfg.ray.namespace, log_to_driver=False)
    else:
        ray.init(
            namespace=cfg.ray.namespace,
            num_cpus=cfg.ray.num_cpus,
            include_dashboard=cfg.ray.include_dashboard,
            log_to_driver=False,
        )
    return True


def build_topology(
    cfg: RaydeskConfig, run_id: str, run_dir: Path, replay: bool, start_ns: int
) -> Topology:
    """Create every actor and the Serve application for one run.

    Args:
        cfg: Validated config (validate before calling: nothing here checks it again).
        run_id: Unique run id; actor names carry it so runs never collide on a shared cluster.
        run_dir: Where the journal is written.
        replay: Simulated time (True) or live (False).
        start_ns: Session start, ns since epoch.

    Example:
        >>> topo = build_topology(cfg, "r1", Path("runs/r1"), replay=True, start_ns=T0)
    """
    from serve.client import deploy

    owns = connect_ray(cfg)
    ns = cfg.ray.namespace
    cpus = cfg.ray.actor_num_cpus
    restarts = cfg.ray.max_restarts
    cfg_dict = cfg.model_dump(mode="json")

    def opts(name: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": f"{name}-{run_id}",
            "namespace": ns,
            "num_cpus": cpus,
            "max_restarts": 0,
            **extra,
        }

    # Risk and execution checkpoint every step and answer a retried call from the checkpoint,
    # so only they may restart, with Ray retrying their calls (at-least-once delivery,
    # exactly-once effects). The other actors would come back empty: they stay at 0.
    ckpt_dir = Path(run_dir).resolve() / "checkpoints"
    recover = {"max_restarts": restarts, "max_task_retries": restarts} if restarts else {}

    def ckpt(name: str) -> str | None:
        return str(ckpt_dir / f"{name}.pkl") if restarts else None

    created: list[Any] = []
    try:
        ensemble = deploy(cfg, name=SERVE_APP_NAME)
        feed = ray.remote(FeedActor).options(**opts("feed")).remote(cfg_dict, replay, start_ns)
        created.append(feed)
        symbols = {}
        for ic in cfg.instruments:
            symbols[ic.symbol] = (
                ray.remote(SymbolActor)
                .options(**opts(f"symbol-{ic.symbol.lower()}"))
                .remote(
                    ic.to_instrument(),
                    cfg.book.model_dump(mode="json"),
                    cfg.features.model_dump(mode="json"),
                    replay,
                )
            )
            created.append(symbols[ic.symbol])
        journal = (
            ray.remote(JournalActor)
            .options(**opts("journal"))
            .remote(
                str(Path(run_dir).resolve() / "journal.log"),
                cfg.journal.fsync,
                run_id,
                cfg.journal.postgres,
                cfg.journal.redis,
                cfg.journal.signal_ttl_s,
                cfg.journal.pg_drain_timeout_s,
            )
        )
        created.append(journal)
        execution = (
            ray.remote(ExecutionActor)
            .options(**opts("execution", **recover))
            .remote(cfg_dict, replay, ckpt("execution"))
        )
        created.append(execution)
        risk = (
            ray.remote(RiskActor)
            .options(**opts("risk", **recover))
            .remote(cfg_dict, replay, execution, ckpt("risk"))
        )
        created.append(risk)
        # fail fast, and completely, if any actor cannot start: never half a topology
        ray.get([a.__ray_ready__.remote() for a in created], timeout=cfg.ray.start_timeout_s)
    except BaseException:
        for a in created:
            ray.kill(a)
        from ray import serve

        with contextlib.suppress(Exception):
            serve.delete(SERVE_APP_NAME)
        if owns:
            ray.shutdown()
        raise
    actors = created
    return Topology(
        run_id=run_id,
        feed=feed,
        symbols=symbols,
        risk=risk,
        execution=execution,
        journal=journal,
        ensemble=ensemble,
        actors=actors,
        owns_ray=owns,
        journal_drain_s=cfg.journal.pg_drain_timeout_s if cfg.journal.postgres else 0.0,
    )


def teardown(topo: Topology) -> None:
    """Close the journal, kill the run's actors, and stop Serve/Ray if this run started them."""
    try:
        topo.journal_stats = ray.get(
            topo.journal.close.remote(), timeout=60 + topo.journal_drain_s
        )
    except Exception as exc:  # noqa: BLE001 - teardown must go on
        log.warning("journal close failed: %s", exc)
    for a in topo.actors:
        ray.kill(a)
    if topo.owns_ray:
        # Ray started by this run: shutting it down stops Serve with it. (serve.shutdown()
        # first would kill the controller under the driver's long-poll and print retries.)
        ray.shutdown()
    else:
        from ray import serve

        serve.delete(SERVE_APP_NAME)
