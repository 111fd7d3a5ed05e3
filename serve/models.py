"""Model families on the engineered features: LightGBM on the vector, a GRU on the window.

The raw-book families (``deeplob``, ``transformer``) and XGBoost live in
:mod:`serve.lob_models`; :func:`model_classes` lists all five, and the registry glue here
(:func:`load_model`, :func:`save_model`) serves every family.

Both predict the 3-class mid move (0=down, 1=flat, 2=up) as probabilities ``(N, 3)`` float64
through one signature, ``predict_proba(features, windows)``; each family ignores the input it
does not use. Both train deterministically (fixed seeds, one thread) and serialise to plain
bytes without pickle, so the registry version (a content hash) is reproducible. Each carries
a softmax ``temperature`` (1.0 until calibrated on validation data) in its ``model.json``:

* ``lgbm``: ``model.txt`` (LightGBM's text model) + ``model.json``;
* ``gru``: ``model.json`` (architecture, normalisation stats, tensor manifest) +
  ``weights.bin`` (raw little-endian float32 tensors, in manifest order).

Loading refuses a model whose ``feature_spec_hash`` differs from the live
``actors.book.features.FEATURE_SPEC_HASH``: features computed differently would make its
predictions silently wrong.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, Protocol

import lightgbm as lgb
import numpy as np
import torch
from torch import nn

from actors.core.errors import ValidationError
from serve.ensemble import FAMILIES  # noqa: F401 - re-exported: the families' one definition
from serve.evaluation import apply_temperature, check_temperature
from serve.registry import ModelRecord, ModelRegistry, RegistryError

N_CLASSES = 3

Progress = Callable[[float], None]


class FeatureSpecMismatch(ValueError):
    """A model was trained on a different feature spec than the live one."""

    def __init__(self, family: str, version: str, model_hash: str, live_hash: str) -> None:
        self.model_hash = model_hash
        self.live_hash = live_hash
        super().__init__(
            f"model {family}/{version} feature_spec_hash must equal the live FEATURE_SPEC_HASH "
            f"{live_hash!r}, was {model_hash!r}; retrain it (python -m jobs.train --force)"
        )


class Model(Protocol):
    """What the ensemble needs of a model family."""

    family: ClassVar[str]
    feature_names: tuple[str, ...]

    def predict_proba(self, features: np.ndarray | None, windows: np.ndarray | None) -> np.ndarray:
        """Return class probabilities ``(N, 3)`` float64, rows summing to 1."""
        ...

    def to_files(self) -> dict[str, bytes]:
        """Return the artifact files (deterministic bytes)."""
        ...

    def params(self) -> dict[str, Any]:
        """Return the training parameters."""
        ...


def live_feature_spec() -> tuple[tuple[str, ...], str]:
    """Return ``(FEATURE_NAMES, FEATURE_SPEC_HASH)`` of the running code."""
    from actors.book.features import FEATURE_NAMES, FEATURE_SPEC_HASH

    return FEATURE_NAMES, FEATURE_SPEC_HASH


@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (restored after; cheap when unchanged)."""
    prev = torch.get_num_threads()
    if prev != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if prev != n:
            torch.set_num_threads(prev)


def _as_2d(name: str, x: np.ndarray | None, n_features: int) -> np.ndarray:
    if x is None:
        raise ValueError(f"{name} must be an array (N, {n_features}), was None")
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2 or a.shape[1] != n_features:
        raise ValueError(f"{name} must have shape (N, {n_features}), was {a.shape}")
    return a


def _as_3d(name: str, x: np.ndarray | None, window: int, n_features: int) -> np.ndarray:
    if x is None:
        raise ValueError(f"{name} must be an array (N, {window}, {n_features}), was None")
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 3 or a.shape[1:] != (window, n_features):
        raise ValueError(f"{name} must have shape (N, {window}, {n_features}), was {a.shape}")
    return a


def _check_labels(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (n,):
        raise ValidationError("labels", f"of shape ({n},)", y.shape)
    if n and (y.min() < 0 or y.max() >= N_CLASSES):
        raise ValidationError("labels", f"in 0..{N_CLASSES - 1}", sorted(set(y.tolist()))[:5])
    return y


def _normalise_rows(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, None)
    s = p.sum(axis=1, keepdims=True)
    s[s <= 0] = 1.0
    return p / s


def _json_bytes(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


# ---------------------------------------------------------------------------------------------
# LightGBM
# ---------------------------------------------------------------------------------------------
class LGBMModel:
    """LightGBM multiclass classifier on the feature vector ``(N, F)``.

    Example:
        >>> m = LGBMModel.train(x, y, trees=50, seed=1, feature_names=names)
        >>> m.predict_proba(x, None).shape
        (len(x), 3)
    """

    family: ClassVar[str] = "lgbm"

    def __init__(
        self,
        booster: lgb.Booster,
        feature_names: tuple[str, ...],
        params: dict[str, Any],
        temperature: float = 1.0,
    ) -> None:
        self.booster = booster
        self.feature_names = tuple(feature_names)
        self._params = dict(params)
        self.temperature = check_temperature(temperature)

    def with_temperature(self, temperature: float) -> LGBMModel:
        """Set the softmax temperature on the log-probabilities (calibration); returns self."""
        self.temperature = check_temperature(temperature)
        return self

    @staticmethod
    def default_params(seed: int) -> dict[str, Any]:
        """Return the LightGBM parameters used for training (deterministic, one thread)."""
        return {
            "objective": "multiclass",
            "num_class": N_CLASSES,
            "learning_rate": 0.03,
            "num_leaves": 7,
            "min_data_in_leaf": 100,
            "lambda_l2": 1.0,
            "feature_fraction": 0.9,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 1,
            "seed": int(seed),
            "verbose": -1,
        }

    @classmethod
    def train(
        cls,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        trees: int,
        seed: int,
        feature_names: tuple[str, ...],
        early_stopping: tuple[np.ndarray, np.ndarray] | None = None,
        patience: int = 20,
        progress: Progress | None = None,
        overrides: Mapping[str, Any] | None = None,
        init_model: LGBMModel | None = None,
    ) -> LGBMModel:
        """Train on ``features (N, F)`` and ``labels (N,)`` for at most ``trees`` rounds.

        Args:
            features: Training feature vectors.
            labels: Training classes.
            trees: Maximum boosting rounds.
            seed: LightGBM seed.
            feature_names: Names of the ``F`` features.
            early_stopping: ``(features, labels)`` held out (later in time) to stop boosting
                when their log loss has not improved for ``patience`` rounds; the best
                iteration is kept.
            patience: Rounds without improvement before stopping.
            progress: Called with the fraction of rounds done.
            overrides: Parameters replacing :meth:`default_params` entries (``learning_rate``,
                ``num_leaves``, ...).
            init_model: Continue boosting this model (its trees up to its best iteration):
                ``trees`` more rounds are added; ``params()["trees"]`` counts all of them.
        """
        x = _as_2d("features", features, len(feature_names))
        y = _check_labels(labels, x.shape[0])
        if x.shape[0] == 0:
            raise ValueError("features must hold at least one sample, was 0")
        params = {**cls.default_params(seed), **dict(overrides or {})}
        init_booster = None
        done_before = 0
        if init_model is not None:
            if tuple(init_model.feature_names) != tuple(feature_names):
                raise ValueError(
                    f"init_model feature_names must equal feature_names {list(feature_names)}, "
                    f"was {list(init_model.feature_names)}"
                )
            best_before = init_model.params().get("best_iteration")
            init_booster = lgb.Booster(
                model_str=init_model.booster.model_to_string(num_iteration=best_before)
            )
            done_before = init_booster.current_iteration()
        callbacks: list[Callable[..., None]] = []
        if progress is not None:

            def _cb(env: Any) -> None:
                progress((env.iteration + 1) / max(1, env.end_iteration))

            callbacks.append(_cb)
        data = lgb.Dataset(x, label=y, feature_name=list(feature_names), free_raw_data=True)
        valid_sets = []
        if early_stopping is not None and len(early_stopping[1]) > 0:
            xv = _as_2d("early_stopping features", early_stopping[0], len(feature_names))
            yv = _check_labels(early_stopping[1], xv.shape[0])
            valid_sets.append(lgb.Dataset(xv, label=yv, reference=data))
            callbacks.append(lgb.early_stopping(patience, first_metric_only=True, verbose=False))
        booster = lgb.train(
            params,
            data,
            num_boost_round=int(trees),
            valid_sets=valid_sets,
            callbacks=callbacks,
            init_model=init_booster,
        )
        if progress is not None:
            progress(1.0)
        best = int(booster.best_iteration or 0) or booster.current_iteration()
        return cls(
            booster,
            feature_names,
            {
                **params,
                "trees": int(trees) + done_before,
                "best_iteration": best,
                "patience": patience,
            },
        )

    def predict_proba(
        self, features: np.ndarray | None, windows: np.ndarray | None = None
    ) -> np.ndarray:
        """Return ``(N, 3)`` float64 probabilities for ``features (N, F)``; ``windows`` unused."""
        x = _as_2d("features", features, len(self.feature_names))
        if x.shape[0] == 0:
            return np.empty((0, N_CLASSES), dtype=np.float64)
        p = self.booster.predict(x, num_iteration=self._params.get("best_iteration"), num_threads=1)
        p = np.asarray(p, dtype=np.float64).reshape(x.shape[0], N_CLASSES)
        if self.temperature != 1.0:
            p = apply_temperature(p, self.temperature)
        return _normalise_rows(p)

    def params(self) -> dict[str, Any]:
        """Return the training parameters."""
        return dict(self._params)

    def to_files(self) -> dict[str, bytes]:
        """Return ``model.txt`` (LightGBM text model) and ``model.json``."""
        text = self.booster.model_to_string(num_iteration=self._params.get("best_iteration"))
        meta = {
            "family": self.family,
            "feature_names": list(self.feature_names),
            "temperature": self.temperature,
        }
        return {"model.txt": text.encode(), "model.json": _json_bytes(meta)}

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], params: dict[str, Any]) -> LGBMModel:
        """Rebuild a model from :meth:`to_files` output."""
        meta = json.loads(files["model.json"])
        booster = lgb.Booster(model_str=files["model.txt"].decode())
        temperature = float(meta.get("temperature", 1.0))
        return cls(booster, tuple(meta["feature_names"]), params, temperature)


# ---------------------------------------------------------------------------------------------
# GRU
# ---------------------------------------------------------------------------------------------
class _GRUNet(nn.Module):
    """Normalise → GRU over the window → linear head on the last hidden state."""

    def __init__(self, n_features: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(n_features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1, :])


class GRUModel:
    """A small GRU classifier over the feature window ``(N, T, F)``.

    Per-feature mean and standard deviation (from the training windows) are part of the
    artifact, so inputs are normalised identically at inference.

    Example:
        >>> m = GRUModel.train(w, y, hidden=32, epochs=2, seed=1, feature_names=names)
        >>> m.predict_proba(None, w).shape
        (len(w), 3)
    """

    family: ClassVar[str] = "gru"

    def __init__(
        self,
        net: _GRUNet,
        mean: np.ndarray,
        std: np.ndarray,
        window: int,
        feature_names: tuple[str, ...],
        params: dict[str, Any],
        temperature: float = 1.0,
    ) -> None:
        self.net = net.eval()
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.window = int(window)
        self.feature_names = tuple(feature_names)
        self._params = dict(params)
        self.temperature = check_temperature(temperature)
        self.device = torch.device("cpu")
        #: Adam state after :meth:`train` (None when loaded from files); continuing training
        #: with ``init=`` this model resumes it. Never part of the artifact.
        self.optimizer_state: dict[str, Any] | None = None

    def with_temperature(self, temperature: float) -> GRUModel:
        """Set the softmax temperature on the logits (calibration); returns self."""
        self.temperature = check_temperature(temperature)
        return self

    def to(self, device: str | torch.device) -> GRUModel:
        """Move the network to ``device`` (e.g. ``"cuda"``) for inference; returns self."""
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    def _normalise(self, w: np.ndarray) -> np.ndarray:
        z = (w - self.mean) / self.std
        return np.clip(np.nan_to_num(z, nan=0.0, posinf=10.0, neginf=-10.0), -10.0, 10.0)

    @classmethod
    def train(
        cls,
        windows: np.ndarray,
        labels: np.ndarray,
        *,
        hidden: int,
        epochs: int,
        seed: int,
        feature_names: tuple[str, ...],
        batch_size: int = 256,
        lr: float = 3e-3,
        progress: Progress | None = None,
        init: GRUModel | None = None,
        epoch_offset: int = 0,
    ) -> GRUModel:
        """Train on ``windows (N, T, F)`` and ``labels (N,)``: Adam, cross-entropy, one thread.

        Args:
            windows: Training feature windows.
            labels: Training classes.
            hidden: GRU hidden size.
            epochs: Passes over the data.
            seed: Seed of the initial weights and the batch order.
            feature_names: Names of the ``F`` features.
            batch_size: Samples per step.
            lr: Adam learning rate.
            progress: Called with the fraction of steps done.
            init: Continue training this model (its weights, normalisation and, when it has
                one, its ``optimizer_state``) instead of a fresh network; ``hidden`` must match.
            epoch_offset: Epochs already trained (with ``init``): this call seeds its batch
                order with ``seed + epoch_offset``, so a chunked run is deterministic; 0 is the
                behaviour without it. ``params()["epochs"]`` counts them too.
        """
        n_f = len(feature_names)
        w = np.asarray(windows, dtype=np.float32)
        if w.ndim != 3 or w.shape[2] != n_f:
            raise ValueError(f"windows must have shape (N, T, {n_f}), was {w.shape}")
        y = _check_labels(labels, w.shape[0])
        if w.shape[0] == 0:
            raise ValueError("windows must hold at least one sample, was 0")
        if epoch_offset < 0:
            raise ValidationError("epoch_offset", ">= 0", epoch_offset)
        if init is not None:
            if int(init.net.gru.hidden_size) != int(hidden) or init.window != w.shape[1]:
                raise ValidationError(
                    "init", f"a GRU of hidden {hidden} over windows of {w.shape[1]}",
                    (int(init.net.gru.hidden_size), init.window),
                )
            mean, std = init.mean, init.std
        else:
            flat = w.reshape(-1, n_f).astype(np.float64)
            mean = np.nanmean(flat, axis=0).astype(np.float32)
            std = np.nanstd(flat, axis=0).astype(np.float32)
            mean = np.nan_to_num(mean, nan=0.0)
            std = np.where(np.isfinite(std) & (std > 1e-6), std, 1.0).astype(np.float32)
        params = {
            "hidden": int(hidden),
            "epochs": int(epochs) + int(epoch_offset),
            "seed": int(seed),
            "batch_size": int(batch_size),
            "lr": float(lr),
            "window": int(w.shape[1]),
            "optimizer": "adam",
        }
        with torch_threads(1):
            torch.manual_seed(seed + epoch_offset)
            net = _GRUNet(n_f, hidden)
            if init is not None:
                net.load_state_dict(init.net.state_dict())
            model = cls(net, mean, std, w.shape[1], feature_names, params)
            x = torch.from_numpy(model._normalise(w).astype(np.float32))
            t = torch.from_numpy(y)
            opt = torch.optim.Adam(net.parameters(), lr=lr)
            if init is not None and init.optimizer_state is not None:
                opt.load_state_dict(copy.deepcopy(init.optimizer_state))
                for group in opt.param_groups:
                    group["lr"] = lr
            loss_fn = nn.CrossEntropyLoss()
            gen = torch.Generator().manual_seed(seed + epoch_offset)
            n = x.shape[0]
            steps = epochs * ((n + batch_size - 1) // batch_size)
            done = 0
            net.train()
            for _ in range(epochs):
                perm = torch.randperm(n, generator=gen)
                for start in range(0, n, batch_size):
                    idx = perm[start : start + batch_size]
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(net(x[idx]), t[idx])
                    loss.backward()
                    nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                    opt.step()
                    done += 1
                    if progress is not None and (done % 20 == 0 or done == steps):
                        progress(done / steps)
            net.eval()
            model.optimizer_state = opt.state_dict()
        return model

    def predict_proba(self, features: np.ndarray | None, windows: np.ndarray | None) -> np.ndarray:
        """Return ``(N, 3)`` float64 probabilities for ``windows (N, T, F)``; features unused."""
        w = _as_3d("windows", windows, self.window, len(self.feature_names))
        if w.shape[0] == 0:
            return np.empty((0, N_CLASSES), dtype=np.float64)
        x = torch.from_numpy(self._normalise(w).astype(np.float32)).to(self.device)
        with torch_threads(1), torch.inference_mode():
            p = torch.softmax(self.net(x).double() / self.temperature, dim=1).cpu().numpy()
        return _normalise_rows(p)

    def params(self) -> dict[str, Any]:
        """Return the training parameters."""
        return dict(self._params)

    def to_files(self) -> dict[str, bytes]:
        """Return ``model.json`` and ``weights.bin`` (no pickle; deterministic bytes)."""
        tensors: list[tuple[str, np.ndarray]] = [
            ("norm.mean", self.mean),
            ("norm.std", self.std),
        ]
        state = self.net.state_dict()
        tensors += [(k, state[k].detach().cpu().numpy()) for k in sorted(state)]
        manifest, blobs, offset = [], [], 0
        for name, arr in tensors:
            data = np.ascontiguousarray(arr, dtype="<f4").tobytes()
            manifest.append(
                {"name": name, "shape": list(arr.shape), "offset": offset, "nbytes": len(data)}
            )
            blobs.append(data)
            offset += len(data)
        meta = {
            "family": self.family,
            "arch": "gru-last-linear",
            "n_features": len(self.feature_names),
            "hidden": int(self.net.gru.hidden_size),
            "window": self.window,
            "feature_names": list(self.feature_names),
            "temperature": self.temperature,
            "dtype": "<f4",
            "tensors": manifest,
        }
        return {"model.json": _json_bytes(meta), "weights.bin": b"".join(blobs)}

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], params: dict[str, Any]) -> GRUModel:
        """Rebuild a model from :meth:`to_files` output."""
        meta = json.loads(files["model.json"])
        blob = files["weights.bin"]
        arrays: dict[str, np.ndarray] = {}
        for t in meta["tensors"]:
            raw = blob[t["offset"] : t["offset"] + t["nbytes"]]
            arrays[t["name"]] = np.frombuffer(raw, dtype="<f4").reshape(t["shape"]).copy()
        with torch_threads(1):
            net = _GRUNet(int(meta["n_features"]), int(meta["hidden"]))
            state = {k: torch.from_numpy(v) for k, v in arrays.items() if not k.startswith("norm.")}
            net.load_state_dict(state)
        return cls(
            net,
            arrays["norm.mean"],
            arrays["norm.std"],
            int(meta["window"]),
            tuple(meta["feature_names"]),
            params,
            float(meta.get("temperature", 1.0)),
        )


# ---------------------------------------------------------------------------------------------
# registry glue
# ---------------------------------------------------------------------------------------------
def model_classes() -> dict[str, Any]:
    """Return family → model class for every family in ``serve.ensemble.FAMILIES``."""
    from serve.lob_models import LOB_MODEL_CLASSES  # imports this module: resolved lazily

    return {"lgbm": LGBMModel, "gru": GRUModel, **LOB_MODEL_CLASSES}


def check_feature_spec(record: ModelRecord, live_hash: str | None = None) -> None:
    """Raise :class:`FeatureSpecMismatch` when ``record`` was trained on another feature spec.

    Args:
        record: The model's registry record.
        live_hash: The expected hash (default: the live ``FEATURE_SPEC_HASH``).
    """
    expected = live_feature_spec()[1] if live_hash is None else live_hash
    if record.feature_spec_hash != expected:
        raise FeatureSpecMismatch(record.family, record.version, record.feature_spec_hash, expected)


def load_model(record: ModelRecord, live_hash: str | None = None) -> Any:
    """Load the model of a registry record after checking its feature spec hash.

    Raises:
        FeatureSpecMismatch: the model's ``feature_spec_hash`` differs from ``live_hash``
            (default: the live ``FEATURE_SPEC_HASH``).
        RegistryError: unknown family or missing artifact files.
    """
    check_feature_spec(record, live_hash)
    classes = model_classes()
    cls = classes.get(record.family)
    if cls is None:
        raise RegistryError(f"family must be one of {list(classes)}, was {record.family!r}")
    try:
        files = {name: record.read_file(name) for name in record.files}
    except OSError as exc:
        raise RegistryError(
            f"model {record.family}/{record.version} files must be readable, was {exc}"
        ) from None
    return cls.from_files(files, record.params)


def load_from_registry(
    registry: ModelRegistry | str,
    family: str,
    version: str | None = None,
    live_hash: str | None = None,
) -> tuple[Any, ModelRecord]:
    """Load ``family`` at ``version`` (default: production) from a registry.

    Returns:
        ``(model, record)``.

    Raises:
        RegistryError: nothing promoted (when ``version`` is None) or no such version.
        FeatureSpecMismatch: the model was trained on another feature spec.
    """
    reg = registry if isinstance(registry, ModelRegistry) else ModelRegistry(registry)
    if version is None:
        record = reg.production(family)
        if record is None:
            raise RegistryError(
                f"model {family} must have a production version in {reg.root}, was none; "
                f"train one (python -m jobs.train)"
            )
    else:
        record = reg.get(family, version)
    return load_model(record, live_hash), record


def save_model(
    registry: ModelRegistry,
    model: Any,
    *,
    metrics: Mapping[str, Any],
    feature_spec_hash: str,
    data_span_ns: tuple[int, int],
    extra_params: Mapping[str, Any] | None = None,
    drift_reference: Mapping[str, Any] | None = None,
) -> ModelRecord:
    """Save ``model`` into ``registry`` with its metadata and return the record.

    ``drift_reference`` (feature histograms of the training data,
    :func:`serve.drift.reference_histograms`) is stored beside the version.
    """
    return registry.save(
        model.family,
        model.to_files(),
        metrics=metrics,
        feature_spec_hash=feature_spec_hash,
        feature_names=model.feature_names,
        data_span_ns=data_span_ns,
        params={**model.params(), **dict(extra_params or {})},
        drift_reference=drift_reference,
    )
