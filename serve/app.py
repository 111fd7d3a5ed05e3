"""The Serve application: an ensemble ingress fanning out to one deployment per model family.

::

    caller ─► EnsembleIngress.predict ─┬─► LGBMModelDeployment.predict        (features) ─┐
              (deadline, weights,       ├─► XGBoostModelDeployment.predict     (features)  │
               fallback, metrics)       ├─► GRUModelDeployment.predict         (windows)   ├─► probs
                                        ├─► DeepLOBModelDeployment.predict     (books)     │
                                        └─► TransformerModelDeployment.predict (books)  ───┘

Each model deployment batches its calls with ``@serve.batch``. The families deployed are
``families`` (default all five); a family with weight 0 is deployed but not called, so a
``reconfigure`` can bring it in without a redeploy. ``weights`` default to those fitted on
validation data at training (the registry's ``ENSEMBLE.json``); an app deployed that way
(``weights`` None) follows the registry: the ingress checks ``ENSEMBLE.json`` every
``registry_poll_s`` and applies the weights that ``python -m jobs.retrain`` refits after a
promotion. Explicit weights (``weights`` given, or pushed in the ingress ``user_config``) are
never replaced by the registry's.

The import path is ``serve.app:build_app``; nothing runs at import time. Hot changes go through
``user_config`` (``reconfigure``): the ensemble weights and deadline on the ingress, the model
version and batching on each model deployment. A model version is loaded from the registry and
swapped in without restarting the replica. Replicas with no pinned version follow the registry:
``raydesk models promote`` / ``rollback`` hot-swap them within ``registry_poll_s``.

A shadow (challenger) version set with ``raydesk models shadow`` predicts in the same replica
call as the champion; its probabilities come back under ``shadow`` and are logged as JSON lines
beside the champion's, never combined into ``probs``.

Every request has a deadline (``deadline_ms``). When any called model has not answered by then,
the response is :data:`~serve.ensemble.FALLBACK_PROBS` with ``fallback=True`` (never a late
decision), the late calls are cancelled and ``raydesk_inference_deadline_miss`` is counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle, DeploymentResponse
from ray.util.metrics import Counter, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse

from actors.book.book_window import BOOK_COLUMNS
from serve.ensemble import (
    FALLBACK_PROBS,
    FAMILIES,
    FAMILY_INPUTS,
    TORCH_FAMILIES,
    combine,
    fallback_probs,
    normalise_weights,
)
from serve.registry import ENSEMBLE_FILE, ModelRecord, ModelRegistry
from serve.shadow import ShadowLog

logger = logging.getLogger("ray.serve")

LATENCY_METRIC = "raydesk_inference_latency_ms"
# Ray exports a Counter named X as Prometheus "ray_X_total": this shows up as
# ray_raydesk_inference_deadline_miss_total.
DEADLINE_MISS_METRIC = "raydesk_inference_deadline_miss"
ERROR_METRIC = "raydesk_inference_errors"
COMPUTE_METRIC = "raydesk_model_compute_ms"
LOAD_ERROR_METRIC = "raydesk_model_load_errors"
SHADOW_ERROR_METRIC = "raydesk_shadow_errors"
SHADOW_PREDICTIONS_METRIC = "raydesk_shadow_predictions"
SHADOW_DISAGREEMENTS_METRIC = "raydesk_shadow_disagreements"
WEIGHT_RELOAD_METRIC = "raydesk_ensemble_weight_reloads"
WEIGHT_RELOAD_ERROR_METRIC = "raydesk_ensemble_weight_reload_errors"
SHADOW_FLUSH_S = 0.5  # the ingress appends queued shadow rows to its log this often
LATENCY_BOUNDARIES_MS = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500]
#: Serve deployment name of each family's model deployment.
DEPLOYMENT_NAMES: dict[str, str] = {
    "lgbm": "LGBMModelDeployment",
    "xgboost": "XGBoostModelDeployment",
    "gru": "GRUModelDeployment",
    "deeplob": "DeepLOBModelDeployment",
    "transformer": "TransformerModelDeployment",
}


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
        raise ValueError(f"{name} must name families in {sorted(FAMILIES)}, was {unknown!r}")


def _valid_weights(cls: type, v: dict[str, float]) -> dict[str, float]:
    """Weights name known families only and have a positive sum (checked, not changed)."""
    _check_families("weights", v)
    normalise_weights(v)
    return v


def fitted_weights(record: dict[str, Any] | None, families: list[str]) -> dict[str, float]:
    """Return the weights to serve for a registry ensemble record (``ENSEMBLE.json``).

    The record's weights restricted to ``families``; equal weights over ``families`` when the
    record is missing or gives them no positive weight.

    Args:
        record: :meth:`~serve.registry.ModelRegistry.ensemble` (None: no fitted weights).
        families: The deployed families.
    """
    fitted = (record or {}).get("weights") or {}
    w = {f: float(v) for f, v in fitted.items() if f in families}
    if w and sum(w.values()) > 0:
        return w
    return {f: 1.0 for f in families}


def ensemble_stamp(registry_root: Path) -> tuple[int, int, int] | None:
    """Return a cheap change stamp of the registry's ``ENSEMBLE.json`` (one ``stat``).

    ``(inode, mtime_ns, size)``, None when the file is missing; the registry replaces the file
    by rename, so every write changes the stamp.
    """
    try:
        st = (registry_root / ENSEMBLE_FILE).stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class AppArgs(BaseModel):
    """Arguments of :func:`build_app` (``serve run`` / Serve config ``args``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    registry_path: str = Field(
        description="Model registry root; relative paths resolve against the builder's cwd."
    )
    families: list[str] = Field(
        default_factory=lambda: list(FAMILIES),
        min_length=1,
        description="Model families to deploy, one deployment each.",
    )
    weights: dict[str, float] | None = Field(
        None,
        description="Ensemble weight per family (>= 0, positive sum; 0 = not called). None: "
        "the registry's fitted weights (ENSEMBLE.json), else equal weights.",
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
    colocate: list[str] = Field(
        default_factory=list,
        description="Families run inside the ingress replica instead of a deployment of "
        "their own: no handle hop for them (same loading, hot swap, shadow and batching).",
    )
    registry_poll_s: float = Field(
        2.0, ge=0, description="How often replicas check the registry pointers, s (0 = never)."
    )
    shadow_log_dir: str | None = Field(
        None, description="Directory of the shadow prediction log (None = no log)."
    )

    @field_validator("weights", "versions", mode="before")
    @classmethod
    def _json_text(cls, v: Any) -> Any:
        return _maybe_json(v)

    @field_validator("families", "colocate", mode="before")
    @classmethod
    def _families_text(cls, v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) and v.startswith("[") else v

    @field_validator("families")
    @classmethod
    def _families(cls, v: list[str]) -> list[str]:
        _check_families("families", v)
        if len(set(v)) != len(v):
            raise ValueError(f"families must not repeat, was {v!r}")
        return v

    @model_validator(mode="after")
    def _keys(self) -> AppArgs:
        for name, keys in (
            ("weights", self.weights or {}), ("versions", self.versions),
            ("colocate", self.colocate),
        ):
            unknown = sorted(set(keys) - set(self.families))
            if unknown:
                raise ValueError(f"{name} keys must be in families {self.families}, was {unknown}")
        if self.weights is not None:
            normalise_weights(self.weights)
        return self

    def resolved_weights(self) -> dict[str, float]:
        """Return the weights to serve: the given ones, else the registry's fitted ones
        (restricted to ``families``), else equal weights over ``families``."""
        if self.weights is not None:
            return dict(self.weights)
        return fitted_weights(ModelRegistry(self.registry_path).ensemble(), self.families)

    def model_user_config(self, family: str) -> dict[str, Any]:
        """Return the ``user_config`` of one model deployment."""
        return {
            "version": self.versions.get(family),
            "max_batch_size": self.max_batch_size,
            "batch_wait_timeout_s": self.batch_wait_timeout_s,
        }

    def ingress_user_config(self) -> dict[str, Any]:
        """Return the ``user_config`` of the ingress (with its colocated families' configs).

        Without explicit ``weights`` the ingress follows the registry's fitted weights
        (``weights_from_registry``); ``weights`` holds those of the time of the call.
        """
        return {
            "weights": self.resolved_weights(),
            "weights_from_registry": self.weights is None,
            "deadline_ms": self.deadline_ms,
            "models": {f: self.model_user_config(f) for f in self.colocate},
        }


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
    weights_from_registry: bool = Field(
        False,
        description="Follow the registry's fitted weights (ENSEMBLE.json, restricted to the "
        "deployed families): read at reconfigure and again whenever the file changes, checked "
        "every registry_poll_s; `weights` serve only while the registry cannot be read. "
        "False: `weights` are explicit and the registry never replaces them.",
    )
    deadline_ms: float = Field(250.0, gt=0, description="Default per-request deadline, ms.")
    models: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Colocated family -> its model user_config (version, batching).",
    )

    _weights = field_validator("weights")(classmethod(_valid_weights))


# ---------------------------------------------------------------------------------------------
# model deployments
# ---------------------------------------------------------------------------------------------
@serve.deployment(name="ModelDeployment")
class ModelDeployment:
    """One model family in one replica: load / hot-swap from the registry, batched predict.

    One class serves every family; :func:`build_app` names each family's deployment
    (:data:`DEPLOYMENT_NAMES`). Call ``predict.remote(inputs)`` with the family's input
    (:data:`~serve.ensemble.FAMILY_INPUTS`): ``features (N, F)``, ``windows (N, T, F)`` or
    ``books (N, T_b, 40)``.

    The served (champion) version is the pinned ``user_config`` version, or the registry's
    production version when none is pinned. With ``registry_poll_s > 0`` a background task on
    the replica's event loop checks the registry pointers (two ``stat`` calls) that often and,
    on a change, loads the new production / shadow version in a worker thread and swaps it in
    with one assignment; requests keep being served by the old model meanwhile. A failed load
    keeps the old model, is logged and counted in ``raydesk_model_load_errors``, and is retried
    at the next pointer change. A shadow (challenger) version set in the registry is loaded the
    same way and predicts every batch next to the champion; its failures never fail the batch.
    """

    def __init__(
        self,
        family: str,
        registry_path: str,
        num_gpus: float = 0.0,
        registry_poll_s: float = 0.0,
    ) -> None:
        if family not in FAMILY_INPUTS:
            raise ValueError(f"family must be one of {list(FAMILY_INPUTS)}, was {family!r}")
        self.family = family
        self._input = FAMILY_INPUTS[family]
        if family in TORCH_FAMILIES:
            import torch

            torch.set_num_threads(1)  # deterministic inference; the replica owns its process
        self._registry = ModelRegistry(registry_path)
        self._num_gpus = float(num_gpus)
        self._poll_s = float(registry_poll_s)
        self._pinned: str | None = None
        self._current: tuple[Any, ModelRecord] | None = None
        self._shadow: tuple[Any, ModelRecord] | None = None
        self._stamp: tuple[Any, ...] | None = None
        self._load_lock = threading.Lock()  # reconfigure runs in Serve's threadpool
        self._poller: asyncio.Task[None] | None = None
        self._load_error_count = 0
        self._compute = Histogram(
            COMPUTE_METRIC,
            description="Model compute time per @serve.batch batch, ms.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("model",),
        )
        self._compute.set_default_tags({"model": self.family})
        self._load_errors = Counter(
            LOAD_ERROR_METRIC,
            description="Model versions that failed to load (the old model kept serving).",
            tag_keys=("family",),
        )
        self._load_errors.set_default_tags({"family": self.family})
        self._shadow_errors = Counter(
            SHADOW_ERROR_METRIC,
            description="Batches whose shadow (challenger) prediction failed.",
            tag_keys=("family",),
        )
        self._shadow_errors.set_default_tags({"family": self.family})
        self._start_poller()  # Serve runs __init__ on the replica's event loop

    # loading --------------------------------------------------------------------------------
    def _start_poller(self) -> None:
        """Start the registry poll on the running event loop (once; no-op without a loop)."""
        if self._poll_s <= 0 or self._poller is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop (threadpool method, plain unit test)
            return
        self._poller = loop.create_task(self._poll_registry())

    async def _poll_registry(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                if self._registry.pointer_stamp(self.family) != self._stamp:
                    await asyncio.to_thread(self._sync, False)
            except Exception:  # keep polling whatever happens; _sync logs and counts
                logger.exception("%s registry poll failed", self.family)

    def _load_version(self, version: str | None) -> tuple[Any, ModelRecord]:
        # imported here so that the ingress process never loads torch / lightgbm
        from serve.models import load_from_registry, torch_threads

        with torch_threads(1):
            model, record = load_from_registry(self._registry, self.family, version)
        if self.family in TORCH_FAMILIES and self._num_gpus > 0:
            import torch

            if torch.cuda.is_available():
                model.to("cuda")
        return model, record

    def _sync(self, strict: bool) -> None:
        """Load the champion (pin or production) and shadow versions the registry asks for.

        Args:
            strict: Raise a champion load error (``reconfigure``) instead of only counting it.
        """
        with self._load_lock:
            self._stamp = self._registry.pointer_stamp(self.family)  # before reading pointers
            try:
                target = self._pinned
                if target is None:
                    prod = self._registry.production(self.family)
                    target = prod.version if prod is not None else None
                if self._current is None or target is None or self._current[1].version != target:
                    old = self._current[1].version if self._current else None
                    self._current = self._load_version(target)  # one assignment: atomic swap
                    logger.info("%s model %s -> %s", self.family, old, self._current[1].version)
            except Exception as exc:
                self._load_errors.inc()
                self._load_error_count += 1
                logger.warning("%s model load failed, old model kept: %s", self.family, exc)
                if strict:
                    raise
            try:
                rec = self._registry.shadow(self.family)
                champion = self._current[1].version if self._current else None
                want = None if rec is None or rec.version == champion else rec.version
                if want is None:
                    self._shadow = None
                elif self._shadow is None or self._shadow[1].version != want:
                    self._shadow = self._load_version(want)
                    logger.info("%s shadow model -> %s", self.family, want)
            except Exception as exc:
                self._load_errors.inc()
                self._load_error_count += 1
                logger.warning("%s shadow load failed, old shadow kept: %s", self.family, exc)

    # Serve hooks ----------------------------------------------------------------------------
    def use_own_batch_queue(self) -> None:
        """Batch this object's calls in a queue of its own, called through :meth:`batched`.

        ``@serve.batch`` keeps one queue per decorated function, so two objects of this class
        in one process (families colocated in the ingress) would otherwise be batched
        together.
        """

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
        async def predict(inputs: list[np.ndarray | None]) -> list[dict[str, Any]]:
            return self._predict_batch(inputs)

        self._own_predict = predict

    @property
    def batched(self) -> Any:
        """The batched predict of this object: its own queue if it has one, else ``predict``."""
        own = getattr(self, "_own_predict", None)
        return own if own is not None else self.predict

    def _configure_batching(self, cfg: ModelUserConfig) -> None:
        predict = self.batched
        if cfg.max_batch_size is not None:
            predict.set_max_batch_size(cfg.max_batch_size)
        if cfg.batch_wait_timeout_s is not None:
            predict.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply ``{"version": str | None, "max_batch_size": int, "batch_wait_timeout_s": s}``.

        ``version`` pins the served version; None follows the registry's production pointer.
        The model is swapped only after the new version loaded and passed its feature spec
        check; on error the old model keeps serving and the error is raised.
        """
        cfg = ModelUserConfig.model_validate(user_config or {})
        self._configure_batching(cfg)
        self._pinned = cfg.version
        self._sync(strict=True)

    def check_health(self) -> None:
        """Raise when no model is loaded."""
        if self._current is None:
            raise RuntimeError(f"{self.family} replica must have a model loaded, was none")

    def describe(self) -> dict[str, Any]:
        """Return the family, served and shadow versions, load errors, pid and settings."""
        predict = self.batched
        return {
            "family": self.family,
            "version": self._current[1].version if self._current else None,
            "pinned": self._pinned is not None,
            "shadow": self._shadow[1].version if self._shadow else None,
            "registry_poll_s": self._poll_s,
            "polling": self._poller is not None and not self._poller.done(),
            "load_errors": self._load_error_count,
            "pid": os.getpid(),
            "max_batch_size": predict._get_max_batch_size(),
            "batch_wait_timeout_s": predict._get_batch_wait_timeout_s(),
        }

    # predicting -----------------------------------------------------------------------------
    def _run(self, model: Any, stacked: np.ndarray) -> np.ndarray:
        if self._input == "features":
            return model.predict_proba(stacked, None)
        return model.predict_proba(None, stacked)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def predict(self, inputs: list[np.ndarray | None]) -> list[dict[str, Any]]:
        """Return ``{"probs": (N, 3), "version": str}`` per request (batched by Serve).

        Each request's ``inputs`` is the family's input array (see the class docstring).
        With a shadow version loaded, each item also has ``"shadow": {"version", "probs"}``.
        """
        return self._predict_batch(inputs)

    def _predict_batch(self, inputs: list[np.ndarray | None]) -> list[dict[str, Any]]:
        self._start_poller()
        if self._current is None:
            self._sync(strict=True)
        assert self._current is not None
        model, record = self._current
        shadow = self._shadow
        sizes = [0 if a is None else int(np.shape(a)[0]) for a in inputs]
        t0 = time.perf_counter_ns()
        parts = [a for a in inputs if a is not None and np.shape(a)[0] > 0]
        stacked = np.concatenate(parts, axis=0) if parts else None
        probs = self._run(model, stacked) if parts else np.empty((0, 3), dtype=np.float64)
        self._compute.observe((time.perf_counter_ns() - t0) / 1e6)
        shadow_probs: np.ndarray | None = None
        if shadow is not None and stacked is not None:
            try:
                shadow_probs = self._run(shadow[0], stacked)
            except Exception as exc:  # the champion's answer never depends on the shadow
                self._shadow_errors.inc()
                logger.warning("%s shadow %s failed: %r", self.family, shadow[1].version, exc)
        out, start = [], 0
        for n in sizes:
            item: dict[str, Any] = {"probs": probs[start : start + n], "version": record.version}
            if shadow_probs is not None and shadow is not None:
                item["shadow"] = {
                    "version": shadow[1].version,
                    "probs": shadow_probs[start : start + n],
                }
            out.append(item)
            start += n
        return out


# ---------------------------------------------------------------------------------------------
# ingress
# ---------------------------------------------------------------------------------------------
def validate_request(
    request: Any, fields: tuple[str, ...] | list[str] = ("features", "windows")
) -> tuple[list[str], dict[str, np.ndarray], float | None]:
    """Check a predict request; return ``(decision_ids, arrays, deadline_ms)``.

    ``fields`` are the inputs the called families read (``features``, ``windows``,
    ``books``); each must be present. ``features`` is ``(N, F)``, ``windows`` ``(N, T, F)``
    with the same ``F`` when both are given, ``books`` ``(N, T_b, 40)``; all share ``N``.

    Raises:
        ValueError: naming the field, the rule and the value.
    """
    if not isinstance(request, dict):
        raise ValueError(f"request must be a dict, was {type(request).__name__}")
    arrays: dict[str, np.ndarray] = {}
    for key in fields:
        if key not in request:
            raise ValueError(f"request.{key} must be present, was missing")
        try:
            arrays[key] = np.asarray(request[key], dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"request.{key} must be a numeric array, was {exc}") from None
    want = {"features": 2, "windows": 3, "books": 3}
    n: int | None = None
    for key, a in arrays.items():
        rule = {"features": "(N, F)", "windows": "(N, T, F)", "books": "(N, T_b, 40)"}[key]
        if a.ndim != want[key] or (key == "books" and a.shape[2] != BOOK_COLUMNS):
            raise ValueError(f"request.{key} must have shape {rule}, was {a.shape}")
        if n is not None and a.shape[0] != n:
            raise ValueError(f"request.{key} must have {n} rows like the other inputs, "
                             f"was {a.shape[0]}")
        n = int(a.shape[0])
    if "features" in arrays and "windows" in arrays:
        f = arrays["features"].shape[1]
        if arrays["windows"].shape[2] != f:
            raise ValueError(f"request.windows must have shape (N, T, {f}), "
                             f"was {arrays['windows'].shape}")
    n = n or 0
    ids = request.get("decision_ids")
    if ids is None:
        ids = [str(i) for i in range(n)]
    elif not isinstance(ids, list | tuple) or len(ids) != n:
        got = len(ids) if isinstance(ids, list | tuple) else type(ids).__name__
        raise ValueError(f"request.decision_ids must be a list of {n} ids, was {got}")
    deadline = request.get("deadline_ms")
    if deadline is not None:
        if isinstance(deadline, bool) or not isinstance(deadline, int | float) or deadline <= 0:
            raise ValueError(f"request.deadline_ms must be a number > 0, was {deadline!r}")
        deadline = float(deadline)
    return [str(i) for i in ids], arrays, deadline


async def _await(resp: Any) -> tuple[Any, int]:
    """Await a model call (a handle response or a colocated coroutine); return its result and
    the ``perf_counter_ns`` it arrived at."""
    result = await resp
    return result, time.perf_counter_ns()


@serve.deployment(name="EnsembleIngress")
class EnsembleIngress:
    """Fan a request out to the model deployments, combine with weights, enforce the deadline.

    Shadow (challenger) outputs that the model deployments return are passed through under
    ``shadow``, counted (``raydesk_shadow_predictions`` / ``raydesk_shadow_disagreements``, by
    family) and logged to ``<shadow_log_dir>/shadow-<pid>.jsonl`` by a background flush every
    :data:`SHADOW_FLUSH_S`; they never enter ``probs``.

    Colocated families (``colocated["families"]``) run in this replica: each is a plain
    :class:`ModelDeployment` object (same loading, registry polling, shadow and
    ``@serve.batch``), called without a handle hop.

    With ``weights_from_registry`` in its ``user_config`` the ingress follows the registry's
    fitted weights like model replicas follow production: a background task on the replica's
    event loop checks ``ENSEMBLE.json`` (one ``stat``) every ``registry_poll_s`` and, on a
    change, reads it in a worker thread and swaps the weights (restricted to the deployed
    families) in with one assignment. Weights fitted for versions other than the registry's
    production ones are applied and logged
    (``raydesk_ensemble_weight_reloads{versions="other"}``); an unreadable file keeps the old
    weights and counts ``raydesk_ensemble_weight_reload_errors``. Explicit weights
    (``weights_from_registry`` false) stop the following at once and are never overwritten by
    a poll.

    Args:
        handles: Family → handle of its :class:`ModelDeployment`.
        shadow_log_dir: Directory of the shadow log (None = no log).
        colocated: ``{"families": [...], "registry_path", "num_gpus", "registry_poll_s"}``.
        registry_path: Model registry root whose fitted weights to follow (None = never).
        registry_poll_s: How often to check the fitted weights for a change, s (0 = never).
    """

    def __init__(
        self,
        handles: dict[str, DeploymentHandle],
        shadow_log_dir: str | None = None,
        colocated: dict[str, Any] | None = None,
        registry_path: str | None = None,
        registry_poll_s: float = 0.0,
    ) -> None:
        _check_families("handles", handles)
        self._handles: dict[str, DeploymentHandle] = dict(handles)
        co = colocated or {}
        replica_cls = ModelDeployment.func_or_class
        self._local: dict[str, Any] = {}
        for f in co.get("families", []):
            local = replica_cls(
                f, co["registry_path"],
                float(co.get("num_gpus", 0.0)) if f in TORCH_FAMILIES else 0.0,
                float(co.get("registry_poll_s", 0.0)),
            )
            local.use_own_batch_queue()
            self._local[f] = local
        self._shadow_log = (
            ShadowLog(Path(shadow_log_dir) / f"shadow-{os.getpid()}.jsonl")
            if shadow_log_dir
            else None
        )
        self._flusher: asyncio.Task[None] | None = None
        self._weights = normalise_weights({f: 1.0 for f in [*self._handles, *self._local]})
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
        self._shadow_predictions = Counter(
            SHADOW_PREDICTIONS_METRIC,
            description="Decisions predicted by a shadow (challenger) model.",
            tag_keys=("family",),
        )
        self._shadow_disagreements = Counter(
            SHADOW_DISAGREEMENTS_METRIC,
            description="Shadow predictions whose most likely class differs from the champion's.",
            tag_keys=("family",),
        )
        # following the registry's fitted weights (reconfigure runs in Serve's threadpool)
        self._registry = ModelRegistry(registry_path) if registry_path else None
        self._weights_poll_s = float(registry_poll_s)
        self._weights_lock = threading.Lock()
        self._follow = False
        self._ensemble_stamp: tuple[int, int, int] | None = None
        self._fitted_versions: dict[str, str] | None = None
        self._weight_reload_count = 0
        self._weight_error_count = 0
        self._weights_poller: asyncio.Task[None] | None = None
        self._weight_reloads = Counter(
            WEIGHT_RELOAD_METRIC,
            description="Ensemble weights reloaded from the registry's ENSEMBLE.json "
            "(versions: production = fitted for the production versions, other = for other "
            "versions, none = no file: equal weights).",
            tag_keys=("versions",),
        )
        self._weight_reload_errors = Counter(
            WEIGHT_RELOAD_ERROR_METRIC,
            description="Registry ensemble weights that could not be applied (old weights kept).",
        )
        self._start_weights_poller()  # Serve runs __init__ on the replica's event loop

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply ``{"weights": {family: w}, "weights_from_registry": bool, "deadline_ms": float,
        "models": {family: model user_config}}``.

        With ``weights_from_registry`` the registry's current fitted weights are applied at
        once (``weights`` only when the registry cannot be read) and followed afterwards;
        without it ``weights`` are applied and kept.
        """
        cfg = IngressUserConfig.model_validate(user_config or {})
        if cfg.weights_from_registry and self._registry is None:
            raise ValueError("weights_from_registry must be false without a registry_path, "
                             "was true")
        served = sorted([*self._handles, *self._local])
        unknown = sorted(set(cfg.weights) - set(served))
        if unknown:
            raise ValueError(f"weights keys must be deployed families {served}, was {unknown}")
        unknown = sorted(set(cfg.models) - set(self._local))
        if unknown:
            raise ValueError(
                f"models keys must be colocated families {sorted(self._local)}, was {unknown}"
            )
        for family, model_cfg in cfg.models.items():
            self._local[family].reconfigure(model_cfg)
        with self._weights_lock:  # a poll in flight sees the new mode before it applies
            self._follow = cfg.weights_from_registry
            self._weights = normalise_weights(cfg.weights)
            self._fitted_versions = None
            self._ensemble_stamp = None
        self._deadline_ms = cfg.deadline_ms
        if cfg.weights_from_registry:
            self._reload_weights()
        logger.info("ensemble weights %s (%s) deadline %.1f ms", self._weights,
                    "from registry" if self._follow else "explicit", self._deadline_ms)

    # following the registry's fitted weights -------------------------------------------------
    def _start_weights_poller(self) -> None:
        """Start the ENSEMBLE.json poll on the running event loop (once; no-op without one)."""
        if self._registry is None or self._weights_poll_s <= 0 or self._weights_poller is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop (threadpool method, plain unit test)
            return
        self._weights_poller = loop.create_task(self._poll_weights())

    async def _poll_weights(self) -> None:
        assert self._registry is not None
        while True:
            await asyncio.sleep(self._weights_poll_s)
            if not self._follow:
                continue
            try:
                if ensemble_stamp(self._registry.root) != self._ensemble_stamp:
                    await asyncio.to_thread(self._reload_weights)
            except Exception:  # keep polling whatever happens; _reload_weights logs and counts
                logger.exception("ensemble weights poll failed")

    def _reload_weights(self) -> bool:
        """Apply the registry's fitted weights if this replica follows them.

        Returns:
            True when weights were applied; False when not following (explicit weights won) or
            the file could not be used (old weights kept, logged and counted).
        """
        assert self._registry is not None
        served = sorted([*self._handles, *self._local])
        with self._weights_lock:
            if not self._follow:
                return False
            self._ensemble_stamp = ensemble_stamp(self._registry.root)  # before reading
            try:
                record = self._registry.ensemble()
                weights = normalise_weights(fitted_weights(record, served))
                fitted_for = {
                    str(f): str(v) for f, v in ((record or {}).get("versions") or {}).items()
                    if f in weights and weights[f] > 0
                }
                production = {
                    f: getattr(self._registry.production(f), "version", None) for f in fitted_for
                }
            except Exception as exc:
                self._weight_reload_errors.inc()
                self._weight_error_count += 1
                logger.warning("ensemble weights reload failed, old weights %s kept: %s",
                               self._weights, exc)
                return False
            changed = weights != self._weights
            self._weights = weights  # one assignment: predict reads it once per request
            self._fitted_versions = fitted_for if record else None
        kind = "none" if not record else "production" if fitted_for == production else "other"
        self._weight_reloads.inc(tags={"versions": kind})
        self._weight_reload_count += 1
        if kind == "other":
            logger.warning("ensemble weights %s from the registry were fitted for versions %s, "
                           "production is %s: applied anyway", weights, fitted_for, production)
        elif changed:
            logger.info("ensemble weights %s from the registry (fitted for %s)",
                        weights, fitted_for)
        return True

    def check_health(self) -> None:
        """Raise when the configuration is unusable or a colocated family has no model."""
        if not any(w > 0 for w in self._weights.values()):
            raise RuntimeError(f"weights must have a positive sum, was {self._weights!r}")
        for local in self._local.values():
            local.check_health()

    def describe_colocated(self) -> dict[str, dict[str, Any]]:
        """Return ``ModelDeployment.describe()`` of each colocated family."""
        return {f: local.describe() for f, local in self._local.items()}

    def config(self) -> dict[str, Any]:
        """Return the current weights and where they come from (``weights_from_registry``,
        the versions they were fitted for, reloads, reload errors), the default deadline,
        process id, shadow log path and colocated families."""
        return {
            "weights": dict(self._weights),
            "weights_from_registry": self._follow,
            "weights_fitted_for": dict(self._fitted_versions or {}) or None,
            "weights_polling": (
                self._weights_poller is not None and not self._weights_poller.done()
            ),
            "weight_reloads": self._weight_reload_count,
            "weight_reload_errors": self._weight_error_count,
            "deadline_ms": self._deadline_ms,
            "pid": os.getpid(),
            "shadow_log": str(self._shadow_log.path) if self._shadow_log else None,
            "colocated": sorted(self._local),
        }

    async def flush_shadow_log(self) -> int:
        """Write the queued shadow rows now; return how many were written."""
        if self._shadow_log is None:
            return 0
        return await asyncio.to_thread(self._shadow_log.flush)

    async def _flush_loop(self) -> None:
        assert self._shadow_log is not None
        while True:
            await asyncio.sleep(SHADOW_FLUSH_S)
            if self._shadow_log.pending_rows:
                try:
                    await asyncio.to_thread(self._shadow_log.flush)
                except Exception:  # keep flushing whatever happens
                    logger.exception("shadow log flush failed")

    def _record_shadow(
        self,
        ids: list[str],
        per_model: dict[str, np.ndarray],
        versions: dict[str, str],
        shadows: dict[str, dict[str, Any]],
    ) -> None:
        """Count shadow predictions and disagreements and queue them for the log."""
        for family, sh in shadows.items():
            champion = per_model.get(family)
            if champion is None or sh["probs"].shape != champion.shape:
                continue
            n = champion.shape[0]
            differ = int(np.count_nonzero(champion.argmax(axis=1) != sh["probs"].argmax(axis=1)))
            self._shadow_predictions.inc(n, tags={"family": family})
            if differ:
                self._shadow_disagreements.inc(differ, tags={"family": family})
            if self._shadow_log is not None:
                if self._flusher is None:
                    self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
                self._shadow_log.add(
                    time.time_ns(), ids, family, (versions[family], champion),
                    (sh["version"], sh["probs"]),
                )

    def __del__(self) -> None:
        if getattr(self, "_shadow_log", None) is not None:
            self._shadow_log.flush()

    async def predict(self, request: dict[str, Any]) -> dict[str, Any]:
        """Predict ``(N, 3)`` probabilities for a batch of decision points.

        Args:
            request: ``{"decision_ids": [str], "features": (N, F) float32,
                "windows": (N, T, F) float32, "books": (N, T_b, 40) float32,
                "deadline_ms": float (optional)}``; only the inputs of the called families
                (weight > 0) are required.

        Returns:
            ``{"decision_ids", "probs": (N, 3), "per_model": {family: (N, 3)},
            "models": {family: version}, "shadow": {family: {"version", "probs": (N, 3)}},
            "fallback": bool, "reason": str | None, "latency_ns": int}``. ``shadow`` holds
            the challengers' outputs (empty when none is set); they never enter ``probs``.

        Raises:
            ValueError: a malformed request (naming the field, rule and value).
        """
        t0 = time.perf_counter_ns()
        if self._weights_poller is None:
            self._start_weights_poller()
        weights = {f: v for f, v in self._weights.items() if v > 0}
        fields = tuple(dict.fromkeys(FAMILY_INPUTS[f] for f in weights))
        ids, arrays, deadline_ms = validate_request(request, fields)
        deadline_s = (deadline_ms if deadline_ms is not None else self._deadline_ms) / 1e3
        n = len(ids)
        if n == 0:
            return self._response(ids, np.empty((0, 3)), {}, {}, {}, None, t0)
        calls: dict[str, DeploymentResponse] = {}
        tasks: dict[str, asyncio.Future[tuple[Any, int]]] = {}
        for family in weights:
            x = arrays[FAMILY_INPUTS[family]]
            if family in self._local:
                tasks[family] = asyncio.ensure_future(_await(self._local[family].batched(x)))
            else:
                calls[family] = self._handles[family].predict.remote(x)
                tasks[family] = asyncio.ensure_future(_await(calls[family]))
        remaining = deadline_s - (time.perf_counter_ns() - t0) / 1e9
        done, pending = await asyncio.wait(tasks.values(), timeout=max(0.0, remaining))
        per_model: dict[str, np.ndarray] = {}
        versions: dict[str, str] = {}
        shadows: dict[str, dict[str, Any]] = {}
        reason: str | None = None
        for family, task in tasks.items():
            if task in pending:
                if family in calls:
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
            if result.get("shadow") is not None:
                shadows[family] = {
                    "version": str(result["shadow"]["version"]),
                    "probs": np.asarray(result["shadow"]["probs"], dtype=np.float64),
                }
            self._latency.observe((arrived_ns - t0) / 1e6, tags={"model": family})
        probs = combine(per_model, weights) if reason is None else fallback_probs(n)
        response = self._response(ids, probs, per_model, versions, shadows, reason, t0)
        if shadows:  # after the latency is taken: the log never delays the decision
            self._record_shadow(ids, per_model, versions, shadows)
        return response

    def _response(
        self,
        ids: list[str],
        probs: np.ndarray,
        per_model: dict[str, np.ndarray],
        versions: dict[str, str],
        shadows: dict[str, dict[str, Any]],
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
            "shadow": shadows,
            "fallback": reason is not None,
            "reason": reason,
            "latency_ns": int(latency_ns),
        }

    async def __call__(self, http_request: Request) -> JSONResponse:
        """HTTP: POST JSON ``{"features": [[...]], "windows": [[[...]]], "books": [[[...]]]}``
        → JSON lists."""
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
                "shadow": {
                    k: {"version": v["version"], "probs": v["probs"].tolist()}
                    for k, v in result["shadow"].items()
                },
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
    a = a.model_copy(update={"registry_path": registry})
    shadow_dir = str(Path(a.shadow_log_dir).expanduser().resolve()) if a.shadow_log_dir else None
    ongoing = max(2 * a.max_batch_size, 2)
    queued = 8 * a.max_batch_size
    handles = {}
    for family in a.families:
        if family in a.colocate:
            continue
        gpus = a.num_gpus if family in TORCH_FAMILIES else 0.0
        handles[family] = ModelDeployment.options(
            name=DEPLOYMENT_NAMES[family],
            ray_actor_options={"num_cpus": a.num_cpus, "num_gpus": gpus},
            max_ongoing_requests=ongoing,
            max_queued_requests=queued,
            user_config=a.model_user_config(family),
        ).bind(family, registry, gpus, a.registry_poll_s)
    ingress_gpus = a.num_gpus if set(a.colocate) & set(TORCH_FAMILIES) else 0.0
    return EnsembleIngress.options(
        ray_actor_options={"num_cpus": a.num_cpus, "num_gpus": ingress_gpus},
        max_ongoing_requests=max(4 * a.max_batch_size, 8),
        max_queued_requests=16 * a.max_batch_size,
        user_config=a.ingress_user_config(),
    ).bind(handles, shadow_dir, {
        "families": list(a.colocate), "registry_path": registry, "num_gpus": a.num_gpus,
        "registry_poll_s": a.registry_poll_s,
    }, registry, a.registry_poll_s)
