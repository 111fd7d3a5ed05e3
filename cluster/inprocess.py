"""The topology in one process: the same actor classes and Serve ingress, without Ray hops.

A research trial (``jobs.sweep``) replays the whole trading topology thousands of times; the
Ray topology's per-step hops (~30 steps/s on 2 cores) would make that slow, and a trial already
owns one CPU of the cluster. :func:`build_local_topology` builds the *same* objects the Ray
topology hosts — :class:`~actors.feed.actor.FeedActor`, one
:class:`~actors.book.actor.SymbolActor` per symbol, :class:`~actors.risk.actor.RiskActor`,
:class:`~actors.execution.actor.ExecutionActor`, :class:`~actors.journal.actor.JournalActor`
and the Serve app's :class:`~serve.app.EnsembleIngress` with every family colocated (the same
model loading, batching and weighting code) — and wraps each in a :class:`LocalHandle`, whose
``obj.method.remote(...)`` schedules the call on the running event loop and returns an
awaitable, like an actor handle. :class:`cluster.kernel.TradingKernel` drives it unchanged.

Ray passes arguments and results by value; so does a local handle (a pickle round trip of
both, unless ``copy=False``), so no engine can see another's later mutations. A replay run this
way writes the same journal, byte for byte, as the Ray topology with the same config and model
versions (``tests/ray/test_sweep.py`` checks it through the backtest metrics).
"""

from __future__ import annotations

import asyncio
import inspect
import pickle
from pathlib import Path
from typing import Any

from actors.book.actor import SymbolActor
from actors.execution.actor import ExecutionActor
from actors.feed.actor import FeedActor
from actors.journal.actor import JournalActor
from actors.risk.actor import RiskActor
from cluster.config import RaydeskConfig
from cluster.topology import Topology


def _copy(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


class _LocalMethod:
    """``handle.method``: ``remote(*args)`` runs the method as a task on the running loop."""

    def __init__(self, fn: Any, copy: bool) -> None:
        self._fn = fn
        self._copy = copy

    async def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        out = self._fn(*args, **kwargs)
        if inspect.isawaitable(out):
            out = await out
        return _copy(out) if self._copy else out

    def remote(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        if self._copy:
            args, kwargs = _copy((args, kwargs))
        return asyncio.ensure_future(self._call(args, kwargs))


class LocalHandle:
    """Actor-handle look-alike around a local object (``h.method.remote(...)`` → awaitable).

    Args:
        obj: The wrapped object (an actor class instance).
        copy: Pass arguments and results by value (a pickle round trip), as Ray does.
    """

    def __init__(self, obj: Any, copy: bool = True) -> None:
        self._obj = obj
        self._copy_args = copy

    @property
    def wrapped(self) -> Any:
        """The wrapped object."""
        return self._obj

    def __getattr__(self, name: str) -> _LocalMethod:
        if name.startswith("__"):
            raise AttributeError(name)
        return _LocalMethod(getattr(self._obj, name), self._copy_args)


def local_ensemble(cfg: RaydeskConfig) -> Any:
    """Return the Serve app's ingress object with every family colocated, configured as Serve.

    The weights and pinned versions are those :func:`serve.client.deploy` would serve
    (``models.weights`` or the registry's fitted ones; ``models.versions`` or production).
    """
    from serve.app import AppArgs, EnsembleIngress
    from serve.client import app_args_from_config

    args = app_args_from_config(cfg)
    app = AppArgs.model_validate({**args, "colocate": list(args["families"])})
    ingress = EnsembleIngress.func_or_class(
        {},
        None,
        {
            "families": list(app.families),
            "registry_path": app.registry_path,
            "num_gpus": 0.0,
            "registry_poll_s": 0.0,  # a replay never changes models mid-run
        },
    )
    ingress.reconfigure(app.ingress_user_config())
    # Outside a Serve replica ``@serve.batch`` cannot run. The kernel sends one request per
    # step and awaits it, so in the Ray topology every batch a model deployment runs holds
    # exactly that one request: call the same batch function with it.
    for local in ingress._local.values():
        local._own_predict = _single_batch(local)
    return ingress


def _single_batch(model: Any) -> Any:
    async def predict(x: Any) -> dict[str, Any]:
        return model._predict_batch([x])[0]

    return predict


def build_local_topology(
    cfg: RaydeskConfig, run_id: str, run_dir: Path, start_ns: int, copy: bool = True
) -> Topology:
    """Build the replay topology in this process (see the module docstring).

    Args:
        cfg: Validated config; ``journal.postgres`` / ``journal.redis`` are honoured as in the
            Ray topology (a sweep turns them off).
        run_id: The run id (journal tagging).
        run_dir: Where ``journal.log`` is written.
        start_ns: Session start, ns since epoch (:func:`cluster.runner.session_start_ns`).
        copy: Pass arguments by value between the parts, as Ray does.

    Example:
        >>> topo = build_local_topology(cfg, "r1", Path("runs/r1"), start_ns=T0)
    """
    if cfg.ray.max_restarts:
        raise ValueError(
            f"ray.max_restarts must be 0 for an in-process replay, was {cfg.ray.max_restarts}"
        )
    cfg_dict = cfg.model_dump(mode="json")
    ensemble = local_ensemble(cfg)  # first: a model that fails to load leaves nothing open
    feed = FeedActor(cfg_dict, True, start_ns)
    symbols = {
        ic.symbol: LocalHandle(
            SymbolActor(
                ic.to_instrument(),
                cfg.book.model_dump(mode="json"),
                cfg.features.model_dump(mode="json"),
                True,
            ),
            copy,
        )
        for ic in cfg.instruments
    }
    journal = JournalActor(
        str(Path(run_dir).resolve() / "journal.log"),
        cfg.journal.fsync,
        run_id,
        cfg.journal.postgres,
        cfg.journal.redis,
        cfg.journal.signal_ttl_s,
        cfg.journal.pg_drain_timeout_s,
    )
    execution = LocalHandle(ExecutionActor(cfg_dict, True, None), copy)
    risk = RiskActor(cfg_dict, True, execution, None)
    return Topology(
        run_id=run_id,
        feed=LocalHandle(feed, copy),
        symbols=symbols,
        risk=LocalHandle(risk, copy),
        execution=execution,
        journal=LocalHandle(journal, copy),
        ensemble=LocalHandle(ensemble, copy),
        actors=[],
        owns_ray=False,
    )


async def close_local_topology(topo: Topology) -> None:
    """Close the journal (drains its sinks) and stop the feed."""
    try:
        topo.journal_stats = await topo.journal.close.remote()
    finally:
        await topo.feed.stop.remote()
