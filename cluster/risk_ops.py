"""Operator commands against a running topology's RiskActor (``raydesk risk status|halt|rearm``).

The risk actor of run ``R`` is the named actor ``risk-R`` in the config's Ray namespace. With no
run id, the only risk actor in the namespace is used (two or more is an error naming them).
"""

from __future__ import annotations

from typing import Any

from cluster.config import RaydeskConfig

RISK_ACTOR_PREFIX = "risk-"


def find_risk_actor(cfg: RaydeskConfig, address: str, run_id: str | None) -> Any:
    """Connect to the cluster at ``address`` and return the risk actor's handle.

    Raises:
        LookupError: No such actor, or several and no ``run_id`` to choose.
    """
    import ray

    if not ray.is_initialized():
        ray.init(address=address, namespace=cfg.ray.namespace, log_to_driver=False)
    if run_id is None:
        names = sorted(
            a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == cfg.ray.namespace and a["name"].startswith(RISK_ACTOR_PREFIX)
        )
        if len(names) != 1:
            raise LookupError(
                f"run_id must be given when the namespace {cfg.ray.namespace!r} holds "
                f"{len(names)} risk actors, was None (found {names})"
            )
        name = names[0]
    else:
        name = f"{RISK_ACTOR_PREFIX}{run_id}"
    try:
        return ray.get_actor(name, namespace=cfg.ray.namespace)
    except ValueError:
        raise LookupError(
            f"risk actor must be running as {name!r} in namespace {cfg.ray.namespace!r}, "
            "was not found"
        ) from None


def call(handle: Any, method: str, *args: Any, timeout_s: float = 30.0) -> Any:
    """Call ``method`` on the actor and return its result; the actor's own exception (for
    example ``RearmRefused``) is raised as itself."""
    import ray

    try:
        return ray.get(getattr(handle, method).remote(*args), timeout=timeout_s)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause()
        raise cause from None
