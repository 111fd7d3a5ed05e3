"""Serve's throughput-optimised mode for a Ray that raydesk starts itself.

Ray Serve 2.60 reads ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` once, when ``ray.serve`` is imported, in
every process: the driver that holds the handles, the controller, the proxy and each replica.
With it set, replicas talk to each other over direct gRPC and a handle's router runs on the
caller's own event loop (the kernel keeps one loop per run for that reason). On this 2-core
machine it roughly halves Serve latency (``docs/benchmarks.md``).

:func:`apply_serve_mode` sets the variable before Ray starts, so the raylet's workers inherit
it, and before ``ray.serve`` is imported, so the driver agrees with them. It only acts when the
process will start a local Ray itself. On an existing cluster (``RAY_ADDRESS`` /
``ray.address``; KubeRay) the cluster's own environment decides: set the variable on every node
and on the driver alike.
"""

from __future__ import annotations

import os
import sys
from typing import Any

ENV = "RAY_SERVE_THROUGHPUT_OPTIMIZED"


def apply_serve_mode(cfg: Any) -> bool:
    """Turn on Serve's throughput-optimised mode when this process will start local Ray.

    Args:
        cfg: The config (``ray.serve_throughput_optimized``, ``ray.address``).

    Returns:
        Whether the mode is on for this process's Serve: True when set here or already set to
        ``1`` in the environment; False when off in the config, when joining an existing
        cluster, or when ``ray.serve`` was imported or Ray started before this call (too late).
    """
    if ENV in os.environ:  # the operator's explicit choice wins
        return os.environ[ENV] == "1"
    if not cfg.ray.serve_throughput_optimized:
        return False
    if os.environ.get("RAY_ADDRESS") or cfg.ray.address:
        return False
    if "ray.serve" in sys.modules:
        return False
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return False
    os.environ[ENV] = "1"
    return True


def serve_mode_on() -> bool:
    """Whether this process runs Serve in throughput-optimised mode."""
    return os.environ.get(ENV) == "1"
