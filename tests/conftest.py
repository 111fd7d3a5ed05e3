"""Shared fixtures: a small test config and a real local Ray cluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cluster.config import RaydeskConfig, load_config

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def small_config(tmp: Path, **sections: dict) -> RaydeskConfig:
    """The embedded default, shrunk for tests: two symbols, quick training, files under tmp."""
    base = load_config()
    data = base.model_dump(mode="json")
    data["instruments"] = data["instruments"][:2]
    data["run"].update(runs_dir=str(tmp / "runs"), progress=False)
    data["ray"].update(include_dashboard=False)
    data["models"].update(
        registry_path=str(tmp / "models"), train_seconds=240.0, torch_epochs=2, lgbm_trees=40,
        deadline_ms=5_000.0, http_port=0, shadow_log_dir=str(tmp / "shadow"),
    )
    data["features"].update(window=8, book_window=8)
    data["journal"].update(fsync=False)
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return RaydeskConfig.model_validate(data)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with the ensemble's models trained once per session."""
    from serve.training import ensure_models

    tmp = tmp_path_factory.mktemp("shared")
    ensure_models(small_config(tmp), console_progress=False)
    return tmp / "models"


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster for the session (Serve is started by the topology)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, namespace="raydesk-test",
             log_to_driver=False)
    yield ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()
