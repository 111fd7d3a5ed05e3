"""What the pipeline needs to deploy the ensemble and to call it with decision points.

Example:
    >>> ensure_models(cfg)                      # serve.training: train at first start
    >>> handle = deploy(cfg)                    # Serve app "ensemble" at /ensemble
    >>> out = await handle.predict.remote(request_from_decisions(decisions))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from actors.core.views import DecisionPoint
from cluster.config import RaydeskConfig
from serve.app import DEPLOYMENT_NAMES, AppArgs, build_app

ROUTE_PREFIX = "/ensemble"
IMPORT_PATH = "serve.app:build_app"


def app_args_from_config(
    cfg: RaydeskConfig, versions: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Return :func:`~serve.app.build_app` args from the ``models`` section of ``cfg``.

    The registry and shadow log paths are made absolute here (replicas do not share the
    caller's cwd).

    Args:
        cfg: The config.
        versions: Family → version to pin (default: ``models.versions``; families not in it
            serve production).
    """
    m = cfg.models
    args = AppArgs(
        registry_path=str(Path(m.registry_path).expanduser().resolve()),
        families=list(m.families),
        colocate=list(m.colocate),
        weights=dict(m.weights) if m.weights is not None else None,
        deadline_ms=m.deadline_ms,
        max_batch_size=m.max_batch_size,
        batch_wait_timeout_s=m.batch_wait_timeout_s,
        num_gpus=m.num_gpus,
        num_cpus=m.num_cpus,
        versions=dict(m.versions if versions is None else versions),
        registry_poll_s=m.registry_poll_s,
        shadow_log_dir=(
            str(Path(m.shadow_log_dir).expanduser().resolve()) if m.shadow_log_dir else None
        ),
    )
    return args.model_dump(mode="json")


def deploy(
    cfg: RaydeskConfig,
    name: str = "ensemble",
    versions: Mapping[str, str] | None = None,
) -> DeploymentHandle:
    """Start Serve (HTTP on 127.0.0.1:``models.http_port``) and run the ensemble app.

    Ray must already be initialised (``cluster/`` does it). Returns once the app is running.

    Args:
        cfg: The config.
        name: Serve application name.
        versions: Family → version to pin (default: serve production).

    Returns:
        A handle to the ingress: ``await handle.predict.remote(request)``.
    """
    serve.start(http_options={"host": "127.0.0.1", "port": cfg.models.http_port})
    app = build_app(app_args_from_config(cfg, versions))
    return serve.run(app, name=name, route_prefix=ROUTE_PREFIX, blocking=False)


def serve_app_config(
    cfg: RaydeskConfig,
    name: str = "ensemble",
    weights: Mapping[str, float] | None = None,
    versions: Mapping[str, str | None] | None = None,
    deadline_ms: float | None = None,
) -> dict[str, Any]:
    """Return one application entry of a declarative Serve config (``serve deploy``, RayService).

    ``args`` always come from ``cfg``; ``weights``, ``versions`` and ``deadline_ms`` go into the
    deployments' ``user_config`` overrides. Re-applying the config with only those changed is a
    hot swap: Serve calls ``reconfigure`` on the running replicas (no restart), whereas
    ``serve.run`` from Python restarts them.

    Args:
        cfg: The config.
        name: Application name.
        weights: Ensemble weights (default ``models.weights``). Given either way they are
            explicit (``weights_from_registry: false``): the ingress keeps them. When both
            are None the ingress ``user_config`` has the registry's fitted weights of the time
            of the call and ``weights_from_registry: true``: the ingress follows the weights a
            retrain refits.
        versions: Family → version over ``models.versions`` (None = production, missing =
            as ``models.versions``).
        deadline_ms: Default per-request deadline (default ``models.deadline_ms``).

    Returns:
        ``{"name", "route_prefix", "import_path", "args", "deployments": [...]}``.
    """
    args = app_args_from_config(cfg)
    app = AppArgs.model_validate(
        {
            **args,
            "weights": dict(weights) if weights is not None else args["weights"],
            "versions": _merge_versions(args["versions"], versions),
            "deadline_ms": deadline_ms if deadline_ms is not None else args["deadline_ms"],
        }
    )
    return {
        "name": name,
        "route_prefix": ROUTE_PREFIX,
        "import_path": IMPORT_PATH,
        "args": args,
        "deployments": [
            {"name": "EnsembleIngress", "user_config": app.ingress_user_config()},
            *(
                {"name": DEPLOYMENT_NAMES[f], "user_config": app.model_user_config(f)}
                for f in app.families
                if f not in app.colocate
            ),
        ],
    }


def _merge_versions(
    pinned: Mapping[str, str], override: Mapping[str, str | None] | None
) -> dict[str, str]:
    out = dict(pinned)
    for family, version in (override or {}).items():
        if version is None:
            out.pop(family, None)
        else:
            out[family] = version
    return out


def request_from_decisions(
    decisions: Sequence[DecisionPoint], deadline_ms: float | None = None
) -> dict[str, Any]:
    """Pack decision points into an ingress ``predict`` request.

    Args:
        decisions: Valid decision points (same feature count and window length).
        deadline_ms: Per-request deadline (default: the app's ``deadline_ms``).

    Returns:
        ``{"decision_ids", "features": (N, F) float32, "windows": (N, T, F) float32,
        "books": (N, T_b, 40) float32}`` (plus ``deadline_ms`` when given).

    Raises:
        ValueError: no decisions, or decisions of different shapes.
    """
    if not decisions:
        raise ValueError("decisions must hold at least one decision point, was empty")
    shapes = {(d.features.shape, d.window.shape, d.book.shape) for d in decisions}
    if len(shapes) != 1:
        raise ValueError(f"decisions must share feature/window/book shapes, was {sorted(shapes)}")
    request: dict[str, Any] = {
        "decision_ids": [d.decision_id for d in decisions],
        "features": np.stack([d.features for d in decisions]).astype(np.float32, copy=False),
        "windows": np.stack([d.window for d in decisions]).astype(np.float32, copy=False),
        "books": np.stack([d.book for d in decisions]).astype(np.float32, copy=False),
    }
    if deadline_ms is not None:
        request["deadline_ms"] = float(deadline_ms)
    return request
