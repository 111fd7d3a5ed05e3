"""Model families on the raw limit-order book: DeepLOB, a Transformer encoder and XGBoost.

They follow :class:`serve.models.Model`: 3-class probabilities ``(N, 3)`` float64 (``0=down,
1=flat, 2=up``) through one signature, ``predict_proba(features, windows)``, each family
ignoring the input it does not use:

* ``deeplob`` and ``transformer`` read ``windows (N, T, 40)`` float32: the last ``T`` book
  states, 10 levels of ``ask price, ask volume, bid price, bid volume`` (level 1 first);
* ``xgboost`` reads ``features (N, F)`` float32 (for FI-2010: the 144 non-label rows).

``windows`` may be an array or any object with ``.shape`` ``(N, T, 40)`` and ``__getitem__``
on an int index array (for example :class:`serve.fi2010.BookWindows`), so training and batch
prediction never hold all windows in memory.

Each model carries a softmax ``temperature`` (1.0 until calibrated with
:func:`serve.evaluation.fit_temperature`) that is part of its artifact.

Training is deterministic (fixed seeds, a fixed thread count). Artifacts are plain bytes:

* torch families: ``model.json`` (architecture, normalisation, window, temperature) and
  ``weights.pt`` (the ``state_dict`` saved with :func:`torch.save`, loaded back with
  ``weights_only=True``, so no arbitrary pickle is executed);
* ``xgboost``: ``model.json`` (XGBoost's own JSON model, cut at the best iteration) and
  ``meta.json``.

Torch models run on ``device`` (``"cuda"`` when available, else ``"cpu"``, unless given).

Example:
    >>> m = DeepLOBModel.train(w_train, y_train, epochs=2, seed=1, validation=(w_val, y_val))
    >>> m.predict_proba(None, w_test).shape
    (len(w_test), 3)
"""

from __future__ import annotations

import copy
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import xgboost as xgb
from torch import nn

from actors.core.errors import ValidationError
from serve.evaluation import apply_temperature, check_temperature
from serve.models import (
    N_CLASSES,
    _check_labels,
    _json_bytes,
    _normalise_rows,
    torch_threads,
)

Progress = Callable[[float], None]
N_BOOK = 40
PREDICT_BATCH = 2048


def default_device(device: str | None = None) -> str:
    """Return ``device`` or, when None, ``"cuda"`` if available else ``"cpu"``."""
    if device is not None:
        return str(device)
    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_windows(name: str, w: Any, n_features: int, window: int | None = None) -> Any:
    if w is None or not hasattr(w, "shape") or not hasattr(w, "__getitem__"):
        raise ValidationError(name, f"an array (N, T, {n_features})", type(w).__name__)
    shape = tuple(w.shape)
    if len(shape) != 3 or shape[2] != n_features or (window is not None and shape[1] != window):
        rule = f"of shape (N, {window if window is not None else 'T'}, {n_features})"
        raise ValidationError(name, rule, shape)
    return w


def _batch(w: Any, idx: np.ndarray) -> np.ndarray:
    return np.asarray(w[idx], dtype=np.float32)


LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")


def _class_weights(class_weight: str | Sequence[float] | None, y: np.ndarray) -> np.ndarray | None:
    """Return the loss weight of each class, or None for plain cross-entropy."""
    if class_weight is None:
        return None
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValidationError("class_weight", "None, 'balanced' or K weights", class_weight)
        counts = np.bincount(y, minlength=N_CLASSES).astype(np.float64)
        w = np.where(counts > 0, len(y) / (N_CLASSES * np.maximum(counts, 1.0)), 0.0)
        return w / (w @ counts / len(y))  # count-weighted mean 1: the loss keeps its scale
    w = np.asarray(class_weight, dtype=np.float64)
    if w.shape != (N_CLASSES,) or not np.all(np.isfinite(w)) or w.min() <= 0:
        raise ValidationError("class_weight", f"{N_CLASSES} finite weights > 0", class_weight)
    return w


# ---------------------------------------------------------------------------------------------
# networks
# ---------------------------------------------------------------------------------------------
class _CausalConvT(nn.Sequential):
    """``(k, 1)`` convolution over time, zero-padded on the past side so T is kept."""

    def __init__(self, channels: int, k: int) -> None:
        super().__init__(
            nn.ZeroPad2d((0, 0, k - 1, 0)),
            nn.Conv2d(channels, channels, (k, 1)),
            nn.LeakyReLU(0.01),
            nn.BatchNorm2d(channels),
        )


class _ConvBlock(nn.Sequential):
    """One DeepLOB block: a spatial ``(1, width)`` convolution then two ``(4, 1)`` in time."""

    def __init__(self, c_in: int, c_out: int, width: int, stride: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, (1, width), stride=(1, stride)),
            nn.LeakyReLU(0.01),
            nn.BatchNorm2d(c_out),
            _CausalConvT(c_out, 4),
            _CausalConvT(c_out, 4),
        )


class _Inception(nn.Module):
    """Three branches over time: 1×1→(3,1), 1×1→(5,1) and max-pool(3,1)→1×1, concatenated."""

    def __init__(self, c_in: int, c: int) -> None:
        super().__init__()

        def unit(c_from: int, k: tuple[int, int], pad: tuple[int, int]) -> list[nn.Module]:
            return [nn.Conv2d(c_from, c, k, padding=pad), nn.LeakyReLU(0.01), nn.BatchNorm2d(c)]

        self.b3 = nn.Sequential(*unit(c_in, (1, 1), (0, 0)), *unit(c, (3, 1), (1, 0)))
        self.b5 = nn.Sequential(*unit(c_in, (1, 1), (0, 0)), *unit(c, (5, 1), (2, 0)))
        self.bp = nn.Sequential(
            nn.MaxPool2d((3, 1), stride=1, padding=(1, 0)), *unit(c_in, (1, 1), (0, 0))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b3(x), self.b5(x), self.bp(x)], dim=1)


class DeepLOBNet(nn.Module):
    """DeepLOB (Zhang, Zohren, Roberts 2019): conv blocks, inception, LSTM, linear head.

    ``(B, T, 40)`` → conv ``1×2`` stride 2 (price/volume pairs) → ``1×2`` stride 2 (ask/bid
    levels) → ``1×10`` (all levels) → inception → LSTM over T → logits ``(B, 3)``.
    """

    def __init__(
        self, conv_channels: int = 32, inception_channels: int = 64, lstm: int = 64
    ) -> None:
        super().__init__()
        c = conv_channels
        self.convs = nn.Sequential(
            _ConvBlock(1, c, 2, 2), _ConvBlock(c, c, 2, 2), _ConvBlock(c, c, 10, 1)
        )
        self.inception = _Inception(c, inception_channels)
        self.lstm = nn.LSTM(3 * inception_channels, lstm, batch_first=True)
        self.head = nn.Linear(lstm, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.inception(self.convs(x.unsqueeze(1)))  # (B, 3c, T, 1)
        out, _ = self.lstm(z.squeeze(3).transpose(1, 2))  # (B, T, lstm)
        return self.head(out[:, -1, :])


class LOBTransformerNet(nn.Module):
    """Linear embedding + learned positions → pre-norm Transformer encoder → pooled head."""

    def __init__(
        self,
        window: int,
        d_model: int = 48,
        heads: int = 4,
        layers: int = 2,
        pooling: str = "mean",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "last"):
            raise ValidationError("pooling", "'mean' or 'last'", pooling)
        if d_model % heads:
            raise ValidationError("d_model", f"a multiple of heads {heads}", d_model)
        self.pooling = pooling
        self.embed = nn.Linear(N_BOOK, d_model)
        self.pos = nn.Parameter(torch.zeros(1, window, d_model))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model,
            heads,
            dim_feedforward=2 * d_model,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(x) + self.pos)
        h = h.mean(dim=1) if self.pooling == "mean" else h[:, -1, :]
        return self.head(self.norm(h))


# ---------------------------------------------------------------------------------------------
# torch sequence families
# ---------------------------------------------------------------------------------------------
class _TorchWindowModel:
    """Shared training, prediction and serialisation of the window (torch) families."""

    family: ClassVar[str] = ""
    arch: ClassVar[str] = ""
    DEFAULT_ARCH: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        net: nn.Module,
        arch: Mapping[str, Any],
        mean: np.ndarray,
        std: np.ndarray,
        window: int,
        params: Mapping[str, Any],
        temperature: float = 1.0,
        feature_names: tuple[str, ...] | None = None,
    ) -> None:
        self.net = net.eval()
        self.arch_config = dict(arch)
        self.mean = np.asarray(mean, dtype=np.float32).reshape(N_BOOK)
        self.std = np.asarray(std, dtype=np.float32).reshape(N_BOOK)
        self.window = int(window)
        self._params = dict(params)
        self.temperature = float(temperature)
        self.feature_names = tuple(feature_names or (f"book_{i}" for i in range(N_BOOK)))
        self.device = torch.device(next(net.parameters()).device)
        #: Adam state after :meth:`train` (None when loaded from files); continuing training
        #: with ``init=`` this model resumes it. Never part of the artifact.
        self.optimizer_state: dict[str, Any] | None = None

    @classmethod
    def build_net(cls, window: int, arch: Mapping[str, Any]) -> nn.Module:
        """Return a fresh network for ``window`` and the architecture settings."""
        raise NotImplementedError

    def to(self, device: str | torch.device) -> _TorchWindowModel:
        """Move the network to ``device`` (e.g. ``"cuda"``); returns self."""
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    def with_temperature(self, temperature: float) -> _TorchWindowModel:
        """Set the softmax temperature (from :func:`serve.evaluation.fit_temperature`)."""
        self.temperature = check_temperature(temperature)
        return self

    def _tensor(self, w: np.ndarray) -> torch.Tensor:
        z = np.clip(np.nan_to_num((w - self.mean) / self.std, nan=0.0), -10.0, 10.0)
        return torch.from_numpy(z.astype(np.float32, copy=False)).to(self.device)

    @classmethod
    def train(
        cls,
        windows: Any,
        labels: Any,
        *,
        epochs: int,
        seed: int,
        validation: tuple[Any, Any] | None = None,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        threads: int = 1,
        device: str | None = None,
        progress: Progress | None = None,
        class_weight: str | Sequence[float] | None = None,
        lr_schedule: str = "constant",
        init: _TorchWindowModel | None = None,
        epoch_offset: int = 0,
        **arch: Any,
    ) -> _TorchWindowModel:
        """Train on ``windows (N, T, 40)`` and ``labels (N,)`` with Adam and cross-entropy.

        With ``class_weight`` the loss is class-weighted, so the network's probabilities lean
        towards the up-weighted classes: dividing them by ``params()["class_weight"]`` (and
        renormalising) restores the training class prior. ``predict_proba`` itself is unchanged.

        Args:
            windows: Training windows (array or lazy, see the module docstring).
            labels: Training classes in ``0..2``.
            epochs: Passes over the data.
            seed: Seed of the initial weights and of the batch order.
            validation: ``(windows, labels)`` later in time; when given, the weights of the
                epoch with the lowest validation log loss (class-weighted like the training
                loss when ``class_weight`` is given) are kept.
            batch_size: Samples per step.
            lr: Adam learning rate.
            weight_decay: Adam weight decay.
            threads: ``torch.set_num_threads`` while training.
            device: ``"cuda"`` / ``"cpu"`` (default: cuda when available).
            progress: Called with the fraction of steps done.
            class_weight: ``None`` (plain cross-entropy), ``"balanced"`` (weights
                ``N / (K * count_c)``, scaled to a count-weighted mean of 1) or ``K`` positive
                weights.
            lr_schedule: ``"constant"`` or ``"cosine"`` (decay per step from ``lr`` to 0 over
                all epochs).
            init: Continue training this model (its weights, normalisation and, when it has
                one, its ``optimizer_state``) instead of a fresh network; ``arch`` must match
                its architecture and ``lr_schedule`` must be ``"constant"``.
            epoch_offset: Epochs already trained (with ``init``): this call seeds its batch
                order and dropout with ``seed + epoch_offset``, so a chunked run is
                deterministic; 0 is the behaviour without it. ``params()["epochs"]`` counts
                them too.
            **arch: Architecture settings overriding ``DEFAULT_ARCH``.

        Raises:
            ValidationError: bad shapes, labels, epochs, class weights, schedule, unknown
                architecture settings, or an ``init`` of another architecture or window.
        """
        unknown = sorted(set(arch) - set(cls.DEFAULT_ARCH))
        if unknown:
            raise ValidationError("arch", f"keys of {sorted(cls.DEFAULT_ARCH)}", unknown)
        if epochs < 1:
            raise ValidationError("epochs", ">= 1", epochs)
        if epoch_offset < 0:
            raise ValidationError("epoch_offset", ">= 0", epoch_offset)
        w = _check_windows("windows", windows, N_BOOK)
        n, window = int(w.shape[0]), int(w.shape[1])
        if n == 0:
            raise ValidationError("windows", "non-empty", 0)
        y = _check_labels(labels, n)
        if lr_schedule not in LR_SCHEDULES:
            raise ValidationError("lr_schedule", f"one of {list(LR_SCHEDULES)}", lr_schedule)
        cw = _class_weights(class_weight, y)
        cfg = {**cls.DEFAULT_ARCH, **arch}
        if init is not None:
            if dict(init.arch_config) != cfg or init.window != window:
                raise ValidationError(
                    "init", f"a model of arch {cfg} over windows of {window}",
                    (init.arch_config, init.window),
                )
            if lr_schedule != "constant":
                raise ValidationError("lr_schedule", "'constant' with init", lr_schedule)
            mean, std = init.mean, init.std
        else:
            rng = np.random.default_rng(seed)
            sample = np.sort(rng.choice(n, size=min(n, 20_000), replace=False))
            last = _batch(w, sample)[:, -1, :].astype(np.float64)
            mean = np.nan_to_num(last.mean(axis=0)).astype(np.float32)
            std = last.std(axis=0)
            std = np.where(np.isfinite(std) & (std > 1e-6), std, 1.0).astype(np.float32)
        dev = default_device(device)
        params = {
            "epochs": int(epochs) + int(epoch_offset),
            "seed": int(seed),
            "batch_size": int(batch_size),
            "lr": float(lr),
            "weight_decay": float(weight_decay),
            "window": window,
            "optimizer": "adam",
            "threads": int(threads),
            "device": dev,
            **cfg,
        }
        if cw is not None or lr_schedule != "constant":  # older params keep their exact keys
            params.update(
                class_weight=None if cw is None else [round(float(v), 6) for v in cw],
                lr_schedule=lr_schedule,
            )
        with torch_threads(threads):
            torch.manual_seed(seed + epoch_offset)
            net = cls.build_net(window, cfg)
            if init is not None:
                net.load_state_dict(
                    {k: v.detach().cpu() for k, v in init.net.state_dict().items()}
                )
            model = cls(net, cfg, mean, std, window, params)
            model.to(dev)
            yv = None
            if validation is not None:
                wv = _check_windows("validation windows", validation[0], N_BOOK, window)
                yv = _check_labels(validation[1], int(wv.shape[0]))
            opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
            if init is not None and init.optimizer_state is not None:
                opt.load_state_dict(copy.deepcopy(init.optimizer_state))
                for group in opt.param_groups:
                    group.update(lr=lr, weight_decay=weight_decay)
            weight = None if cw is None else torch.tensor(cw, dtype=torch.float32, device=dev)
            loss_fn = nn.CrossEntropyLoss(weight=weight)
            gen = np.random.default_rng(seed + 1 + epoch_offset)
            steps = epochs * math.ceil(n / batch_size)
            sched = None
            if lr_schedule == "cosine":
                sched = torch.optim.lr_scheduler.LambdaLR(
                    opt, lambda i: 0.5 * (1.0 + math.cos(math.pi * min(i, steps) / steps))
                )
            done, best, history = 0, (math.inf, -1, None), []
            t_all = torch.from_numpy(y).to(dev)
            for epoch in range(epochs):
                net.train()
                perm = gen.permutation(n)
                for start in range(0, n, batch_size):
                    idx = np.sort(perm[start : start + batch_size])
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(net(model._tensor(_batch(w, idx))), t_all[idx])
                    loss.backward()
                    nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                    opt.step()
                    if sched is not None:
                        sched.step()
                    done += 1
                    if progress is not None and (done % 20 == 0 or done == steps):
                        progress(done / steps)
                net.eval()
                if yv is not None and len(yv):
                    p = model._predict(wv, temperature=1.0)
                    nll = -np.log(np.clip(p[np.arange(len(yv)), yv], 1e-12, 1))
                    # the training objective: class-weighted when the loss is
                    vloss = float(np.mean(nll) if cw is None else cw[yv] @ nll / cw[yv].sum())
                    history.append(round(vloss, 6))
                    if vloss < best[0]:
                        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                        best = (vloss, epoch, state)
            if best[2] is not None:
                net.load_state_dict(best[2])
            net.eval()
            model.optimizer_state = opt.state_dict()
        model._params.update(
            best_epoch=best[1] + 1 if best[1] >= 0 else epochs, val_log_loss_history=history
        )
        return model

    def _predict(self, w: Any, temperature: float) -> np.ndarray:
        n = int(w.shape[0])
        out = np.empty((n, N_CLASSES), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, n, PREDICT_BATCH):
                idx = np.arange(start, min(n, start + PREDICT_BATCH))
                logits = self.net(self._tensor(_batch(w, idx))).double() / temperature
                out[idx] = torch.softmax(logits, dim=1).cpu().numpy()
        return _normalise_rows(out)

    def predict_proba(
        self, features: np.ndarray | None, windows: Any, threads: int = 1
    ) -> np.ndarray:
        """Return ``(N, 3)`` float64 probabilities for ``windows (N, T, 40)``; features unused.

        Raises:
            ValidationError: ``windows`` missing or not of shape ``(N, T, 40)``.
        """
        w = _check_windows("windows", windows, N_BOOK, self.window)
        if int(w.shape[0]) == 0:
            return np.empty((0, N_CLASSES), dtype=np.float64)
        with torch_threads(threads):
            return self._predict(w, self.temperature)

    def params(self) -> dict[str, Any]:
        """Return the training parameters."""
        return dict(self._params)

    def to_files(self) -> dict[str, bytes]:
        """Return ``model.json`` and ``weights.pt`` (deterministic bytes)."""
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        buf = io.BytesIO()
        torch.save(state, buf)
        meta = {
            "family": self.family,
            "arch": self.arch,
            "arch_config": self.arch_config,
            "window": self.window,
            "n_features": N_BOOK,
            "feature_names": list(self.feature_names),
            "norm_mean": [float(v) for v in self.mean],
            "norm_std": [float(v) for v in self.std],
            "temperature": self.temperature,
        }
        return {"model.json": _json_bytes(meta), "weights.pt": buf.getvalue()}

    @classmethod
    def from_files(
        cls, files: Mapping[str, bytes], params: dict[str, Any], device: str | None = "cpu"
    ) -> _TorchWindowModel:
        """Rebuild a model from :meth:`to_files` output (on ``device``, default cpu)."""
        meta = json.loads(files["model.json"])
        if meta.get("family") != cls.family:
            raise ValidationError("model.json family", repr(cls.family), meta.get("family"))
        state = torch.load(io.BytesIO(files["weights.pt"]), map_location="cpu", weights_only=True)
        with torch_threads(1):
            net = cls.build_net(int(meta["window"]), meta["arch_config"])
            net.load_state_dict(state)
        model = cls(
            net,
            meta["arch_config"],
            np.asarray(meta["norm_mean"]),
            np.asarray(meta["norm_std"]),
            int(meta["window"]),
            params,
            float(meta.get("temperature", 1.0)),
            tuple(meta["feature_names"]),
        )
        return model.to(default_device(device))


class DeepLOBModel(_TorchWindowModel):
    """DeepLOB-style CNN + inception + LSTM over book windows ``(N, T, 40)``.

    Example:
        >>> m = DeepLOBModel.train(w, y, epochs=1, seed=1, conv_channels=8)
        >>> m.predict_proba(None, w).shape
        (len(w), 3)
    """

    family: ClassVar[str] = "deeplob"
    arch: ClassVar[str] = "deeplob-conv-inception-lstm"
    DEFAULT_ARCH: ClassVar[dict[str, Any]] = {
        "conv_channels": 32,
        "inception_channels": 64,
        "lstm": 64,
    }

    @classmethod
    def build_net(cls, window: int, arch: Mapping[str, Any]) -> nn.Module:
        """Return a fresh :class:`DeepLOBNet` (the window length does not change it)."""
        return DeepLOBNet(
            int(arch["conv_channels"]), int(arch["inception_channels"]), int(arch["lstm"])
        )


class TransformerModel(_TorchWindowModel):
    """A small Transformer encoder over book windows ``(N, T, 40)``.

    Example:
        >>> m = TransformerModel.train(w, y, epochs=1, seed=1, d_model=32)
        >>> m.predict_proba(None, w).shape
        (len(w), 3)
    """

    family: ClassVar[str] = "transformer"
    arch: ClassVar[str] = "transformer-prenorm-learnedpos"
    DEFAULT_ARCH: ClassVar[dict[str, Any]] = {
        "d_model": 48,
        "heads": 4,
        "layers": 2,
        "pooling": "mean",
        "dropout": 0.1,
    }

    @classmethod
    def build_net(cls, window: int, arch: Mapping[str, Any]) -> nn.Module:
        """Return a fresh :class:`LOBTransformerNet` for ``window`` steps."""
        return LOBTransformerNet(
            window,
            int(arch["d_model"]),
            int(arch["heads"]),
            int(arch["layers"]),
            str(arch["pooling"]),
            float(arch["dropout"]),
        )


# ---------------------------------------------------------------------------------------------
# XGBoost
# ---------------------------------------------------------------------------------------------
class XGBModel:
    """XGBoost multiclass trees (``hist``, ``multi:softprob``) on features ``(N, F)``.

    Trained with XGBoost's native ``xgb.train`` (what ``XGBClassifier`` wraps; the wrapper
    needs scikit-learn, which raydesk does not depend on).

    Example:
        >>> m = XGBModel.train(x, y, trees=200, seed=1, feature_names=names)
        >>> m.predict_proba(x, None).shape
        (len(x), 3)
    """

    family: ClassVar[str] = "xgboost"

    def __init__(
        self,
        booster: xgb.Booster,
        feature_names: tuple[str, ...],
        params: Mapping[str, Any],
        temperature: float = 1.0,
    ) -> None:
        self.booster = booster
        self.feature_names = tuple(feature_names)
        self._params = dict(params)
        self.temperature = float(temperature)

    @staticmethod
    def default_params(seed: int, threads: int = 1) -> dict[str, Any]:
        """Return the XGBoost parameters used for training (deterministic)."""
        return {
            "objective": "multi:softprob",
            "num_class": N_CLASSES,
            "tree_method": "hist",
            "eval_metric": "mlogloss",
            "eta": 0.05,
            "max_depth": 6,
            "min_child_weight": 5.0,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "lambda": 1.0,
            "seed": int(seed),
            "nthread": int(threads),
            "verbosity": 0,
        }

    @classmethod
    def train(
        cls,
        features: Any,
        labels: Any,
        *,
        trees: int,
        seed: int,
        feature_names: tuple[str, ...],
        early_stopping: tuple[Any, Any] | None = None,
        patience: int = 30,
        threads: int = 1,
        overrides: Mapping[str, Any] | None = None,
        init_model: XGBModel | None = None,
    ) -> XGBModel:
        """Train on ``features (N, F)`` and ``labels (N,)`` for at most ``trees`` rounds.

        Args:
            features: Training feature vectors.
            labels: Training classes.
            trees: Maximum boosting rounds.
            seed: XGBoost seed.
            feature_names: Names of the ``F`` features.
            early_stopping: ``(features, labels)`` later in time; boosting stops when their log
                loss has not improved for ``patience`` rounds and the best round is kept.
            patience: Rounds without improvement before stopping.
            threads: XGBoost ``nthread``.
            overrides: Parameters replacing :meth:`default_params` entries.
            init_model: Continue boosting this model: ``trees`` more rounds are added;
                ``params()["trees"]`` counts all of them.

        Raises:
            ValidationError: bad shapes or labels, or an ``init_model`` on other features.
        """
        x = cls._features(features, len(feature_names))
        if x.shape[0] == 0:
            raise ValidationError("features", "non-empty", 0)
        if trees < 1:
            raise ValidationError("trees", ">= 1", trees)
        y = _check_labels(labels, x.shape[0])
        params = {**cls.default_params(seed, threads), **dict(overrides or {})}
        names = list(feature_names)
        done_before = 0
        if init_model is not None:
            if tuple(init_model.feature_names) != tuple(feature_names):
                raise ValidationError(
                    "init_model feature_names", f"equal to {names}", list(init_model.feature_names)
                )
            done_before = init_model.booster.num_boosted_rounds()
        dtrain = xgb.DMatrix(x, label=y, feature_names=names)
        evals, kwargs = [], {}
        if early_stopping is not None and len(early_stopping[1]) > 0:
            xv = cls._features(early_stopping[0], len(feature_names))
            yv = _check_labels(early_stopping[1], xv.shape[0])
            evals = [(xgb.DMatrix(xv, label=yv, feature_names=names), "valid")]
            kwargs = {"early_stopping_rounds": int(patience)}
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=int(trees),
            evals=evals,
            verbose_eval=False,
            xgb_model=init_model.booster if init_model is not None else None,
            **kwargs,
        )
        best = booster.best_iteration + 1 if evals else booster.num_boosted_rounds()
        booster = booster[:best]
        return cls(
            booster,
            feature_names,
            {
                **params,
                "trees": int(trees) + done_before,
                "best_iteration": int(best),
                "patience": patience,
            },
        )

    @staticmethod
    def _features(x: Any, n_features: int) -> np.ndarray:
        if x is None:
            raise ValidationError("features", f"an array (N, {n_features})", None)
        a = np.asarray(x, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != n_features:
            raise ValidationError("features", f"of shape (N, {n_features})", a.shape)
        return a

    def with_temperature(self, temperature: float) -> XGBModel:
        """Set the softmax temperature applied to the log-probabilities."""
        self.temperature = check_temperature(temperature)
        return self

    def predict_proba(self, features: Any, windows: Any = None) -> np.ndarray:
        """Return ``(N, 3)`` float64 probabilities for ``features (N, F)``; windows unused."""
        x = self._features(features, len(self.feature_names))
        if x.shape[0] == 0:
            return np.empty((0, N_CLASSES), dtype=np.float64)
        p = np.asarray(self.booster.inplace_predict(x), dtype=np.float64).reshape(-1, N_CLASSES)
        if self.temperature != 1.0:
            p = apply_temperature(p, self.temperature)
        return _normalise_rows(p)

    def params(self) -> dict[str, Any]:
        """Return the training parameters."""
        return dict(self._params)

    def to_files(self) -> dict[str, bytes]:
        """Return ``model.json`` (XGBoost JSON model) and ``meta.json``."""
        meta = {
            "family": self.family,
            "feature_names": list(self.feature_names),
            "temperature": self.temperature,
        }
        raw = bytes(self.booster.save_raw(raw_format="json"))
        return {"model.json": raw, "meta.json": _json_bytes(meta)}

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], params: dict[str, Any]) -> XGBModel:
        """Rebuild a model from :meth:`to_files` output."""
        meta = json.loads(files["meta.json"])
        booster = xgb.Booster()
        booster.load_model(bytearray(files["model.json"]))
        booster.set_param({"nthread": 1})
        return cls(booster, tuple(meta["feature_names"]), params, float(meta["temperature"]))


LOB_MODEL_CLASSES: dict[str, type[DeepLOBModel] | type[TransformerModel] | type[XGBModel]] = {
    "deeplob": DeepLOBModel,
    "transformer": TransformerModel,
    "xgboost": XGBModel,
}
