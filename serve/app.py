"""The Serve application: an ensemble ingress fanning out to one deployment per model family.

::

    caller ─► EnsembleIngress.predict ─┬─► LGBMModelDeployment.predict (@serve.batch) ─┐
              (deadline, weights,       └─► GRUModelDeployment.predict  (@serve.batch) ─┴─► probs
               fallback, metrics)

The import path is ``serve.app:build_app``; nothing runs at import time. Hot changes go through
``user_config`` (``reconfigure``): the ensemble weights and deadline on the ingress, the model
version and batching on each model deployment. A model version is loaded from the registry and
swapped in without restarting the replica.

Every request has a deadline (``deadline_ms``). When any called model has not answered by then,
the response is :data:`~serve.ensemble.FALLBACK_PROBS` with ``fallback=True`` (never a late
decision), the late calls are cancelled and ``raydesk_inference_deadline_miss`` is counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle, DeploymentResponse
from ray.util.metrics import Counter, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse

from serve.ensemble import FALLBACK_PROBS, FAMILIES, combine, fallback_probs, normalise_weights
from serve.registry import ModelRecord, ModelRegistry

logger = logging.getLogger("ray.serve")

LATENCY_METRIC = "raydesk_inference_latency_ms"
# Ray exports a Counter named X as Prometheus "ray_X_total": this shows up as
# ray_raydesk_inference_deadline_miss_total.
DEADLINE_MISS_METRIC = "raydesk_inference_deadline_miss"
ERROR_METRIC = "raydesk_inference_errors"
COMPUTE_METRIC = "raydesk_model_compute_ms"
LATENCY_BOUNDARIES_MS = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500]


def _maybe_json(value: Any) -> Any:
    """Accept JSON text for dict fields (``serve run serve.app:build_app weights='{...}'``)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"must be a mapping or JSON object text, was {value!r}") from None
    return value


def _check_families(name: str, keys: Any) -> None:
    unknown = sorted(set(keys) - set(FAMILIES))
    if unknown:
        raise ValueError(f"{name} keys must be in {sorted(FAMILIES)}, was {unknown!r}")


def _valid_weights(cls: type, v: dict[str, float]) -> dict[str, float]:
    """Weights name known families only and have a positive sum (checked, not changed)."""
    _check_families("weights", v)
    normalise_weights(v)
    return v


class AppArgs(BaseModel):
    """Arguments of :func:`build_app` (``serve run`` / Serve config ``args``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    registry_path: str = Field(
        description="Model registry root; relative paths resolve against the builder's cwd."
    )
    weights: dict[str, float] = Field(
        default_factory=lambda: {"lgbm": 0.5, "gru": 0.5},
        description="Ensemble weight per family (>= 0, positive sum; 0 = not called).",
    )
    deadline_ms: float = Field(250.0, gt=0, description="Per-request deadline, ms.")
    max_batch_size: int = Field(16, ge=1, description="@serve.batch max batch size.")
    batch_wait_timeout_s: float = Field(0.002, ge=0, description="@serve.batch wait, s.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per torch model replica.")
    num_cpus: float = Field(0.0, ge=0, description="CPUs reserved per replica.")
    versions: dict[str, str] = Field(
        default_factory=dict,
        description="Family -> model version to serve; a missing family serves production.",
    )

    @field_validator("weights", "versions", mode="before")
    @classmethod
    def _json_text(cls, v: Any) -> Any:
        return _maybe_json(v)

    _weights = field_validator("weights")(classmethod(_valid_weights))

    @field_validator("versions")
    @classmethod
    def _versions(cls, v: dict[str, str]) -> dict[str, str]:
        _check_families("versions", v)
        return v

    def model_user_config(self, family: str) -> dict[str, Any]:
        """Return the ``user_config`` of one model deployment."""
        return {
            "version": self.versions.get(family),
            "max_batch_size": self.max_batch_size,
            "batch_wait_timeout_s": self.batch_wait_timeout_s,
        }

    def ingress_user_config(self) -> dict[str, Any]:
        """Return the ``user_config`` of the ingress."""
        return {"weights": dict(self.weights), "deadline_ms": self.deadline_ms}


class ModelUserConfig(BaseModel):
    """Hot config of a model deployment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str | None = Field(None, description="Version to serve (None = production).")
    max_batch_size: int | None = Field(None, ge=1, description="New @serve.batch size.")
    batch_wait_timeout_s: float | None = Field(None, ge=0, description="New @serve.batch wait.")


class IngressUserConfig(BaseModel):
    """Hot config of the ingress."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: dict[str, float] = Field(description="Ensemble weight per family.")
    deadline_ms: float = Field(250.0, gt=0, description="Default per-request deadline, ms.")

    _weights = field_validator("weights")(classmethod(_valid_weights))


# ---------------------------------------------------------------------------------------------
# model deployments
# ---------------------------------------------------------------------------------------------
class _ModelReplica:
    """One model family in one replica: load / hot-swap from the registry, batched predict."""

    family: ClassVar[str] = ""

    def __init__(self, registry_path: str, num_gpus: float = 0.0) -> None:
        self._registry = ModelRegistry(registry_path)
        self._num_gpus = float(num_gpus)
        self._current: tuple[Any, ModelRecord] | None = None
        self._compute = Histogram(
            COMPUTE_METRIC,
            description="Model compute time per @serve.batch batch, ms.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("model",),
        )
        self._compute.set_default_tags({"model": self.family})

    def _load(self, version: str | None) -> None:
        # imported here so that the ingress process never loads torch / lightgbm
        from serve.models import load_from_registry, torch_threads

        if version is None:
            prod = self._registry.production(self.family)
            if (
                prod is not None
                and self._current is not None
                and self._current[1].version == prod.version
            ):
                return
        elif self._current is not None and self._current[1].version == version:
            return
        with torch_threads(1):
            model, record = load_from_registry(self._registry, self.family, version)
        if self.family == "gru" and self._num_gpus > 0:
            import torch

            if torch.cuda.is_available():
                model.to("cuda")
        old = self._current[1].version if self._current else None
        self._current = (model, record)  # one assignment: a batch sees old or new, never mixed
        logger.info("%s model %s -> %s", self.family, old, record.version)

    def _configure_batching(self, cfg: ModelUserConfig) -> None:
        predict = self.predict  # type: ignore[attr-defined]
        if cfg.max_batch_size is not None:
            predict.set_max_batch_size(cfg.max_batch_size)
        if cfg.batch_wait_timeout_s is not None:
            predict.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply ``{"version": str | None, "max_batch_size": int, "batch_wait_timeout_s": s}``.

        The model is swapped only after the new version loaded and passed its feature spec
        check; on error the old model keeps serving and the error is raised.
        """
        cfg = ModelUserConfig.model_validate(user_config or {})
        self._configure_batching(cfg)
        self._load(cfg.version)

    def check_health(self) -> None:
        """Raise when no model is loaded."""
        if self._current is None:
            raise RuntimeError(f"{self.family} replica must have a model loaded, was none")

    def describe(self) -> dict[str, Any]:
        """Return the family, served version, process id and batching settings."""
        predict = self.predict  # type: ignore[attr-defined]
        return {
            "family": self.family,
            "version": self._current[1].version if self._current else None,
            "pid": os.getpid(),
            "max_batch_size": predict._get_max_batch_size(),
            "batch_wait_timeout_s": predict._get_batch_wait_timeout_s(),
        }

    def _predict_batch(
        self, features: list[np.ndarray | None], windows: list[np.ndarray | None]
    ) -> list[dict[str, Any]]:
        if self._current is None:
            self._load(None)
        assert self._current is not None
        model, record = self._current
        inputs = windows if self.family == "gru" else features
        sizes = [0 if a is None else int(np.shape(a)[0]) for a in inputs]
        t0 = time.perf_counter_ns()
        parts = [a for a in inputs if a is not None and np.shape(a)[0] > 0]
        if parts:
            stacked = np.concatenate(parts, axis=0)
            if self.family == "gru":
                probs = model.predict_proba(None, stacked)
            else:
                probs = model.predict_proba(stacked, None)
        else:
            probs = np.empty((0, 3), dtype=np.float64)
        self._compute.observe((time.perf_counter_ns() - t0) / 1e6)
        out, start = [], 0
        for n in sizes:
            out.append({"probs": probs[start : start + n], "version": record.version})
            start += n
        return out


@serve.deployment(name="LGBMModelDeployment")
class LGBMModelDeployment(_ModelReplica):
    """LightGBM on the feature vectors; call ``predict.remote(features (N, F), None)``."""

    family: ClassVar[str] = "lgbm"

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def predict(
        self, features: list[np.ndarray | None], windows: list[np.ndarray | None]
    ) -> list[dict[str, Any]]:
        """Return ``{"probs": (N, 3), "version": str}`` per request (batched by Serve)."""
        return self._predict_batch(features, windows)


@serve.deployment(name="GRUModelDeployment")
class GRUModelDeployment(_ModelReplica):
    """Torch GRU on the feature windows; call ``predict.remote(None, windows (N, T, F))``."""

    family: ClassVar[str] = "gru"

    def __init__(self, registry_path: str, num_gpus: float = 0.0) -> None:
        super().__init__(registry_path, num_gpus)
        import torch

        torch.set_num_threads(1)  # deterministic inference; the replica owns its process

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def predict(
        self, features: list[np.ndarray | None], windows: list[np.ndarray | None]
    ) -> list[dict[str, Any]]:
        """Return ``{"probs": (N, 3), "version": str}`` per request (batched by Serve)."""
        return self._predict_batch(features, windows)


# ---------------------------------------------------------------------------------------------
# ingress
# ---------------------------------------------------------------------------------------------
def validate_request(request: Any) -> tuple[list[str], np.ndarray, np.ndarray, float | None]:
    """Check a predict request; return ``(decision_ids, features, windows, deadline_ms)``.

    Raises:
        ValueError: naming the field, the rule and the value.
    """
    if not isinstance(request, dict):
        raise ValueError(f"request must be a dict, was {type(request).__name__}")
    for key in ("features", "windows"):
        if key not in request:
            raise ValueError(f"request.{key} must be present, was missing")
    try:
        x = np.asarray(request["features"], dtype=np.float32)
        w = np.asarray(request["windows"], dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"request.features/windows must be numeric arrays, was {exc}") from None
    if x.ndim != 2:
        raise ValueError(f"request.features must have shape (N, F), was {x.shape}")
    if w.ndim != 3 or w.shape[0] != x.shape[0] or w.shape[2] != x.shape[1]:
        raise ValueError(
            f"request.windows must have shape ({x.shape[0]}, T, {x.shape[1]}), was {w.shape}"
        )
    ids = request.get("decision_ids")
    if ids is None:
        ids = [str(i) for i in range(x.shape[0])]
    elif not isinstance(ids, list | tuple) or len(ids) != x.shape[0]:
        n = len(ids) if isinstance(ids, list | tuple) else type(ids).__name__
        raise ValueError(f"request.decision_ids must be a list of {x.shape[0]} ids, was {n}")
    deadline = request.get("deadline_ms")
    if deadline is not None:
        if isinstance(deadline, bool) or not isinstance(deadline, int | float) or deadline <= 0:
            raise ValueError(f"request.deadline_ms must be a number > 0, was {deadline!r}")
        deadline = float(deadline)
    return [str(i) for i in ids], x, w, deadline


async def _await(resp: DeploymentResponse) -> tuple[Any, int]:
    """Await a model call; return its result and the ``perf_counter_ns`` it arrived at."""
    result = await resp
    return result, time.perf_counter_ns()


@serve.deployment(name="EnsembleIngress")
class EnsembleIngress:
    """Fan a request out to the model deployments, combine with weights, enforce the deadline.

    Args:
        lgbm: Handle of :data:`LGBMModelDeployment`.
        gru: Handle of :data:`GRUModelDeployment`.
    """

    def __init__(self, lgbm: DeploymentHandle, gru: DeploymentHandle) -> None:
        self._handles: dict[str, DeploymentHandle] = {"lgbm": lgbm, "gru": gru}
        self._weights = normalise_weights({"lgbm": 0.5, "gru": 0.5})
        self._deadline_ms = 250.0
        self._latency = Histogram(
            LATENCY_METRIC,
            description="Inference latency seen by the ensemble ingress, ms.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("model",),
        )
        self._misses = Counter(
            DEADLINE_MISS_METRIC,
            description="Requests answered with the fallback because a model missed the deadline.",
            tag_keys=("model",),
        )
        self._errors = Counter(
            ERROR_METRIC,
            description="Requests answered with the fallback because a model call failed.",
            tag_keys=("model",),
        )

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply ``{"weights": {family: w}, "deadline_ms": float}``."""
        cfg = IngressUserConfig.model_validate(user_config or {})
        self._weights = normalise_weights(cfg.weights)
        self._deadline_ms = cfg.deadline_ms
        logger.info("ensemble weights %s deadline %.1f ms", self._weights, self._deadline_ms)

    def check_health(self) -> None:
        """Raise when the configuration is unusable."""
        if not any(w > 0 for w in self._weights.values()):
            raise RuntimeError(f"weights must have a positive sum, was {self._weights!r}")

    def config(self) -> dict[str, Any]:
        """Return the current weights, default deadline and process id."""
        return {
            "weights": dict(self._weights),
            "deadline_ms": self._deadline_ms,
            "pid": os.getpid(),
        }

    async def predict(self, request: dict[str, Any]) -> dict[str, Any]:
        """Predict ``(N, 3)`` probabilities for a batch of decision points.

        Args:
            request: ``{"decision_ids": [str], "features": (N, F) float32,
                "windows": (N, T, F) float32, "deadline_ms": float (optional)}``.

        Returns:
            ``{"decision_ids", "probs": (N, 3), "per_model": {family: (N, 3)},
            "models": {family: version}, "fallback": bool, "reason": str | None,
            "latency_ns": int}``.

        Raises:
            ValueError: a malformed request (naming the field, rule and value).
        """
        t0 = time.perf_counter_ns()
        ids, x, w, deadline_ms = validate_request(request)
        deadline_s = (deadline_ms if deadline_ms is not None else self._deadline_ms) / 1e3
        weights = {f: v for f, v in self._weights.items() if v > 0}
        n = x.shape[0]
        if n == 0:
            return self._response(ids, np.empty((0, 3)), {}, {}, None, t0)
        calls: dict[str, DeploymentResponse] = {}
        for family in weights:
            args = (None, w) if family == "gru" else (x, None)
            calls[family] = self._handles[family].predict.remote(*args)
        tasks = {f: asyncio.ensure_future(_await(r)) for f, r in calls.items()}
        remaining = deadline_s - (time.perf_counter_ns() - t0) / 1e9
        done, pending = await asyncio.wait(tasks.values(), timeout=max(0.0, remaining))
        per_model: dict[str, np.ndarray] = {}
        versions: dict[str, str] = {}
        reason: str | None = None
        for family, task in tasks.items():
            if task in pending:
                calls[family].cancel()
                task.cancel()
                self._misses.inc(tags={"model": family})
                reason = reason or "deadline"
                continue
            exc = task.exception()
            if exc is not None:
                self._errors.inc(tags={"model": family})
                logger.warning("%s model call failed: %r", family, exc)
                reason = reason or "error"
                continue
            result, arrived_ns = task.result()
            per_model[family] = np.asarray(result["probs"], dtype=np.float64)
            versions[family] = str(result["version"])
            self._latency.observe((arrived_ns - t0) / 1e6, tags={"model": family})
        probs = combine(per_model, weights) if reason is None else fallback_probs(n)
        return self._response(ids, probs, per_model, versions, reason, t0)

    def _response(
        self,
        ids: list[str],
        probs: np.ndarray,
        per_model: dict[str, np.ndarray],
        versions: dict[str, str],
        reason: str | None,
        t0: int,
    ) -> dict[str, Any]:
        latency_ns = time.perf_counter_ns() - t0
        self._latency.observe(latency_ns / 1e6, tags={"model": "ensemble"})
        return {
            "decision_ids": ids,
            "probs": probs,
            "per_model": per_model,
            "models": versions,
            "fallback": reason is not None,
            "reason": reason,
            "latency_ns": int(latency_ns),
        }

    async def __call__(self, http_request: Request) -> JSONResponse:
        """HTTP: POST JSON ``{"features": [[...]], "windows": [[[...]]]}`` → JSON lists."""
        try:
            body = await http_request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return JSONResponse({"error": f"body must be JSON, was invalid: {exc}"}, 400)
        try:
            result = await self.predict(body)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(
            {
                "decision_ids": result["decision_ids"],
                "probs": result["probs"].tolist(),
                "per_model": {k: v.tolist() for k, v in result["per_model"].items()},
                "models": result["models"],
                "fallback": result["fallback"],
                "reason": result["reason"],
                "latency_ns": result["latency_ns"],
                "fallback_probs": list(FALLBACK_PROBS),
            }
        )


def build_app(args: dict[str, Any]) -> Application:
    """Build the ensemble application (import path ``serve.app:build_app``).

    Args:
        args: :class:`AppArgs` fields (``registry_path`` required).

    Returns:
        The bound application; run it with ``serve.run`` or ``serve run serve.app:build_app``.

    Example:
        >>> app = build_app({"registry_path": "artifacts/models", "deadline_ms": 100})
        >>> handle = serve.run(app, name="ensemble", route_prefix="/ensemble")
    """
    a = AppArgs.model_validate(args)
    registry = str(Path(a.registry_path).expanduser().resolve())
    cpu = {"num_cpus": a.num_cpus, "num_gpus": 0.0}
    gpu = {"num_cpus": a.num_cpus, "num_gpus": a.num_gpus}
    ongoing = max(2 * a.max_batch_size, 2)
    queued = 8 * a.max_batch_size
    lgbm = LGBMModelDeployment.options(
        ray_actor_options=cpu,
        max_ongoing_requests=ongoing,
        max_queued_requests=queued,
        user_config=a.model_user_config("lgbm"),
    ).bind(registry, 0.0)
    gru = GRUModelDeployment.options(
        ray_actor_options=gpu,
        max_ongoing_requests=ongoing,
        max_queued_requests=queued,
        user_config=a.model_user_config("gru"),
    ).bind(registry, a.num_gpus)
    return EnsembleIngress.options(
        ray_actor_options=cpu,
        max_ongoing_requests=max(4 * a.max_batch_size, 8),
        max_queued_requests=16 * a.max_batch_size,
        user_config=a.ingress_user_config(),
    ).bind(lgbm, gru)
