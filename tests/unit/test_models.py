"""Model registry, model families, ensemble math, training set and training (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from actors.book.features import FEATURE_NAMES, FEATURE_SPEC_HASH
from cluster.config import load_config
from serve.dataset import (
    TrainingSet,
    build_training_set,
    forward_returns_bps,
    label_returns,
)
from serve.ensemble import FALLBACK_PROBS, combine, fallback_probs, normalise_weights, signal
from serve.models import (
    FeatureSpecMismatch,
    GRUModel,
    LGBMModel,
    load_from_registry,
    load_model,
    save_model,
)
from serve.registry import ModelRegistry, RegistryError, content_version
from serve.training import accuracy, ensure_models, log_loss, train_models

NAMES = tuple(f"f{i}" for i in range(6))
T = 8


def synthetic(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows whose last step's f0 decides the class: < -0.5 down, > 0.5 up, else flat."""
    rng = np.random.default_rng(seed)
    windows = rng.normal(size=(n, T, len(NAMES))).astype(np.float32)
    features = windows[:, -1, :].copy()
    labels = np.where(features[:, 0] > 0.5, 2, np.where(features[:, 0] < -0.5, 0, 1))
    return features, windows, labels.astype(np.int64)


def small_cfg(tmp_path: Path, seconds: float = 60.0):
    return load_config().with_overrides(
        models={
            "registry_path": str(tmp_path / "registry"),
            "train_seconds": seconds,
            "lgbm_trees": 10,
            "torch_epochs": 1,
            "torch_hidden": 8,
        }
    )


# --- registry ---------------------------------------------------------------------------------
def test_registry_save_gives_content_version_and_is_idempotent(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    files = {"model.txt": b"abc", "model.json": b"{}"}

    first = reg.save("lgbm", files, metrics={"val_accuracy": 0.5}, feature_spec_hash="h1")
    again = reg.save("lgbm", dict(reversed(list(files.items()))))

    assert first.version == again.version == content_version(files)
    assert len(first.version) == 12
    other = reg.save("lgbm", {"model.txt": b"abd", "model.json": b"{}"})
    assert other.version != first.version
    assert {r.version for r in reg.list("lgbm")} == {first.version, other.version}
    assert {r.family for r in reg.list()} == {"lgbm"}


def test_registry_metadata_records_provenance(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)

    rec = reg.save(
        "gru",
        {"weights.bin": b"\x00\x01"},
        metrics={"val_accuracy": 0.61},
        feature_spec_hash="abc",
        feature_names=("a", "b"),
        data_span_ns=(1_700_000_000_000_000_000, 1_700_000_060_000_000_000),
        params={"hidden": 8},
    )
    meta = json.loads((rec.path / "metadata.json").read_text())

    assert meta["family"] == "gru" and meta["version"] == rec.version
    assert meta["metrics"] == {"val_accuracy": 0.61}
    assert meta["feature_spec_hash"] == "abc" and meta["feature_names"] == ["a", "b"]
    assert meta["data_span"][0].startswith("2023-11-14T22:13:20")
    assert set(meta["code_version"]) == {"package", "git_sha"}
    assert "T" in meta["created_at"] and meta["params"] == {"hidden": 8}
    assert reg.get("gru", rec.version) == rec


def test_registry_promote_and_rollback(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    v1 = reg.save("lgbm", {"m.txt": b"1"}).version
    v2 = reg.save("lgbm", {"m.txt": b"2"}).version
    assert reg.production("lgbm") is None

    reg.promote("lgbm", v1)
    reg.promote("lgbm", v2)
    reg.promote("lgbm", v2)  # no-op

    assert reg.production("lgbm").version == v2
    assert reg.production_history("lgbm") == [v1]
    assert reg.rollback("lgbm").version == v1
    assert reg.production("lgbm").version == v1
    with pytest.raises(RegistryError, match="previous production version"):
        reg.rollback("lgbm")
    leftovers = [p.name for p in (tmp_path / "lgbm").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_registry_rejects_unknown_version_and_bad_names(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    reg.save("lgbm", {"m.txt": b"1"})

    with pytest.raises(RegistryError, match="lgbm/ffffffffffff must exist"):
        reg.promote("lgbm", "ffffffffffff")
    with pytest.raises(ValueError, match="family must match"):
        reg.save("../evil", {"m.txt": b"1"})
    with pytest.raises(ValueError, match="artifact file name"):
        reg.save("lgbm", {"metadata.json": b"1"})


# --- models -----------------------------------------------------------------------------------
def test_lgbm_trains_and_predicts_probabilities() -> None:
    x, _, y = synthetic()

    model = LGBMModel.train(x[:500], y[:500], trees=30, seed=3, feature_names=NAMES)
    p = model.predict_proba(x[500:], None)

    assert p.shape == (100, 3) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert accuracy(p, y[500:]) > 0.7


def test_gru_trains_and_predicts_probabilities() -> None:
    _, w, y = synthetic()

    model = GRUModel.train(
        w[:500], y[:500], hidden=16, epochs=8, seed=3, feature_names=NAMES, batch_size=32
    )
    p = model.predict_proba(None, w[500:])

    assert p.shape == (100, 3) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert accuracy(p, y[500:]) > 0.55


@pytest.mark.parametrize("family", ["lgbm", "gru"])
def test_same_training_gives_same_version_and_roundtrips(tmp_path: Path, family: str) -> None:
    x, w, y = synthetic(300)

    def fit() -> LGBMModel | GRUModel:
        if family == "lgbm":
            return LGBMModel.train(x, y, trees=10, seed=5, feature_names=NAMES)
        return GRUModel.train(w, y, hidden=8, epochs=2, seed=5, feature_names=NAMES)

    reg = ModelRegistry(tmp_path)
    a = save_model(reg, fit(), metrics={}, feature_spec_hash="spec1", data_span_ns=(1, 2))
    b = save_model(reg, fit(), metrics={}, feature_spec_hash="spec1", data_span_ns=(1, 2))
    loaded = load_model(a, live_hash="spec1")

    assert a.version == b.version
    np.testing.assert_array_equal(loaded.predict_proba(x, w), fit().predict_proba(x, w))


@pytest.mark.parametrize("family", ["lgbm", "gru"])
def test_load_refuses_model_of_another_feature_spec(tmp_path: Path, family: str) -> None:
    x, w, y = synthetic(200)
    model = (
        LGBMModel.train(x, y, trees=3, seed=1, feature_names=NAMES)
        if family == "lgbm"
        else GRUModel.train(w, y, hidden=4, epochs=1, seed=1, feature_names=NAMES)
    )
    reg = ModelRegistry(tmp_path)
    rec = reg.promote(
        family,
        save_model(
            reg, model, metrics={}, feature_spec_hash="old000hash00", data_span_ns=(1, 2)
        ).version,
    )

    with pytest.raises(FeatureSpecMismatch) as err:
        load_from_registry(reg, family)

    assert "old000hash00" in str(err.value) and FEATURE_SPEC_HASH in str(err.value)
    assert f"{family}/{rec.version}" in str(err.value)


def test_load_from_registry_without_production_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="jobs.train"):
        load_from_registry(ModelRegistry(tmp_path), "gru")


def test_models_reject_wrong_input_shape() -> None:
    x, w, y = synthetic(200)
    lgbm = LGBMModel.train(x, y, trees=2, seed=1, feature_names=NAMES)
    gru = GRUModel.train(w, y, hidden=4, epochs=1, seed=1, feature_names=NAMES)

    with pytest.raises(ValueError, match=r"features must have shape \(N, 6\)"):
        lgbm.predict_proba(x[:, :3], None)
    with pytest.raises(ValueError, match=r"windows must have shape \(N, 8, 6\)"):
        gru.predict_proba(None, w[:, :4])


# --- ensemble ---------------------------------------------------------------------------------
def test_combine_is_weighted_average() -> None:
    a = np.array([[0.2, 0.2, 0.6], [1.0, 0.0, 0.0]])
    b = np.array([[0.6, 0.2, 0.2], [0.0, 0.0, 1.0]])

    out = combine({"lgbm": a, "gru": b}, {"lgbm": 3.0, "gru": 1.0})

    np.testing.assert_allclose(out, [[0.3, 0.2, 0.5], [0.75, 0.0, 0.25]])


def test_combine_ignores_zero_weight_and_missing_families() -> None:
    a = np.array([[0.2, 0.2, 0.6]])

    out = combine({"lgbm": a, "gru": np.array([[1.0, 0.0, 0.0]])}, {"lgbm": 1.0, "gru": 0.0})

    np.testing.assert_allclose(out, a)
    np.testing.assert_allclose(combine({"lgbm": a}, {"lgbm": 1.0, "gru": 5.0}), a)


def test_combine_rejects_bad_inputs() -> None:
    a = np.array([[0.2, 0.2, 0.6]])
    with pytest.raises(ValueError, match="positive sum"):
        combine({"lgbm": a}, {"lgbm": 0.0})
    with pytest.raises(ValueError, match=r"must be finite and >= 0, was -1\.0"):
        normalise_weights({"lgbm": -1.0})
    with pytest.raises(ValueError, match=r"shape \(1, 3\)"):
        combine({"lgbm": a, "gru": np.ones((2, 3)) / 3}, {"lgbm": 1, "gru": 1})


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, (5, 3), elements=st.floats(0.0, 1.0)),
    arrays(np.float64, (5, 3), elements=st.floats(0.0, 1.0)),
    st.floats(0.01, 10.0),
    st.floats(0.0, 10.0),
)
def test_combined_rows_are_distributions(
    a: np.ndarray, b: np.ndarray, wa: float, wb: float
) -> None:
    a = a + 1e-3
    b = b + 1e-3
    a /= a.sum(axis=1, keepdims=True)
    b /= b.sum(axis=1, keepdims=True)

    out = combine({"lgbm": a, "gru": b}, {"lgbm": wa, "gru": wb})

    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(out >= np.minimum(a, b) - 1e-12) and np.all(out <= np.maximum(a, b) + 1e-12)


def test_signal_and_fallback() -> None:
    probs = np.array([[0.1, 0.3, 0.6], [0.6, 0.3, 0.1], [0.35, 0.3, 0.35], [0.3, 0.35, 0.35]])

    assert signal(probs, 0.1).tolist() == [1, -1, 0, 0]
    assert signal(probs[0], 0.1) == 1
    assert signal(np.array(FALLBACK_PROBS), 0.0) == 0
    np.testing.assert_array_equal(fallback_probs(2), [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])


# --- training set -----------------------------------------------------------------------------
def test_labels_from_forward_returns() -> None:
    mids = np.array([100.0, 100.0, 100.02, 99.0])

    r = forward_returns_bps(mids, 1)

    np.testing.assert_allclose(r, [0.0, 2.0, (99.0 / 100.02 - 1) * 1e4])
    assert label_returns(r, 0.5).tolist() == [1, 2, 0]
    assert label_returns(np.array([0.5, -0.5, 0.51]), 0.5).tolist() == [1, 1, 2]


def test_split_by_time_purges_label_overlap() -> None:
    n = 100
    ts = np.arange(n, dtype=np.int64) * 10
    ds = TrainingSet(
        features=np.zeros((n, 2), np.float32),
        windows=np.zeros((n, 3, 2), np.float32),
        books=np.zeros((n, 2, 40), np.float32),
        labels=np.ones(n, np.int64),
        returns_bps=np.zeros(n),
        ts_event=ts,
        label_ts_event=ts + 50,
        symbols=np.array(["X"] * n, dtype=object),
        feature_names=("a", "b"),
        feature_spec_hash="h",
        span_ns=(0, 990),
    )

    train, valid = ds.split_by_time(0.8)

    assert train.label_ts_event.max() < valid.ts_event.min()
    assert len(valid) == 20 and len(train) == 75


def test_build_training_set_is_deterministic_and_labelled(tmp_path: Path) -> None:
    cfg = small_cfg(tmp_path)
    seen: list[float] = []

    a = build_training_set(cfg, seconds=20, progress=seen.append)
    b = build_training_set(cfg, seconds=20)

    assert len(a) > 100 and seen[-1] == 1.0
    assert a.features.shape == (len(a), len(FEATURE_NAMES)) and a.features.dtype == np.float32
    assert a.windows.shape == (len(a), cfg.features.window, len(FEATURE_NAMES))
    np.testing.assert_array_equal(a.windows[:, -1, :], a.features)
    np.testing.assert_array_equal(a.windows, b.windows)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(
        a.labels, label_returns(a.returns_bps, cfg.models.flat_threshold_bps)
    )
    assert np.all(np.diff(a.ts_event) >= -int(cfg.feed.batch_interval_ms * 1e6))
    assert a.feature_spec_hash == FEATURE_SPEC_HASH


# --- training ---------------------------------------------------------------------------------
def test_train_then_ensure_reuses_production(tmp_path: Path, monkeypatch) -> None:
    cfg = small_cfg(tmp_path)
    records = train_models(cfg, console_progress=False)
    for rec in records.values():
        assert rec.metrics["n_val"] > 0 and 0.0 <= rec.metrics["val_accuracy"] <= 1.0
        assert rec.metrics["val_log_loss"] > 0
    import serve.training as training

    monkeypatch.setattr(training, "train_models", lambda *a, **k: pytest.fail("retrained"))

    again = ensure_models(cfg, console_progress=False)

    assert {f: r.version for f, r in again.items()} == {f: r.version for f, r in records.items()}


def test_ensure_retrains_when_feature_spec_changed(tmp_path: Path, monkeypatch) -> None:
    cfg = small_cfg(tmp_path)
    reg = ModelRegistry(cfg.models.registry_path)
    x, w, y = synthetic(200)
    for model in (
        LGBMModel.train(x, y, trees=2, seed=1, feature_names=NAMES),
        GRUModel.train(w, y, hidden=4, epochs=1, seed=1, feature_names=NAMES),
    ):
        rec = save_model(reg, model, metrics={}, feature_spec_hash="stale", data_span_ns=(1, 2))
        reg.promote(rec.family, rec.version)
    calls: list[bool] = []
    import serve.training as training

    monkeypatch.setattr(training, "train_models", lambda *a, **k: calls.append(True) or {})

    ensure_models(cfg, console_progress=False)

    assert calls == [True]


def test_metrics_helpers() -> None:
    p = np.array([[0.1, 0.8, 0.1], [0.5, 0.25, 0.25]])
    y = np.array([1, 2])

    assert accuracy(p, y) == 0.5
    assert log_loss(p, y) == pytest.approx(-(np.log(0.8) + np.log(0.25)) / 2)
    assert accuracy(p[:0], y[:0]) is None


def test_train_job_prints_records_as_json(tmp_path: Path, capsys) -> None:
    from jobs.train import main

    cfg = small_cfg(tmp_path, seconds=40)
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(cfg.model_dump(mode="json")))  # JSON is valid YAML

    assert main(["--config", str(path), "--no-progress"]) == 0

    out = json.loads(capsys.readouterr().out)
    assert set(out) == set(cfg.models.families)
    assert out["gru"]["feature_spec_hash"] == FEATURE_SPEC_HASH
    assert out["deeplob"]["metrics"]["n_calibration"] > 0


# --- app arguments and requests (pure parts of serve.app / serve.client) ----------------------
def test_app_args_validate_families_and_accept_json_text() -> None:
    from serve.app import AppArgs

    args = AppArgs.model_validate({"registry_path": "x", "weights": '{"lgbm": 2, "gru": 0}'})

    assert args.weights == {"lgbm": 2.0, "gru": 0.0}
    assert args.model_user_config("gru") == {
        "version": None,
        "max_batch_size": 16,
        "batch_wait_timeout_s": 0.002,
    }
    with pytest.raises(ValueError, match=r"weights keys must be in families \['lgbm', 'xgb"):
        AppArgs.model_validate({"registry_path": "x", "weights": {"xgb": 1.0}})
    with pytest.raises(ValueError, match=r"versions keys must be in families \['lgbm'\]"):
        AppArgs.model_validate(
            {"registry_path": "x", "families": ["lgbm"], "versions": {"gru": "v"}}
        )
    with pytest.raises(ValueError, match=r"families must name families in \['deeplob'"):
        AppArgs.model_validate({"registry_path": "x", "families": '["lgbm", "svm"]'})
    with pytest.raises(ValueError, match=r"colocate keys must be in families \['gru'\]"):
        AppArgs.model_validate({"registry_path": "x", "families": ["gru"], "colocate": ["lgbm"]})
    co = AppArgs.model_validate(
        {"registry_path": "x", "weights": {"lgbm": 1.0}, "colocate": '["lgbm"]'}
    )
    assert co.ingress_user_config()["models"] == {"lgbm": co.model_user_config("lgbm")}
    from cluster.config import ModelsConfig

    with pytest.raises(ValueError, match=r"colocate must name families in \['lgbm'\]"):
        ModelsConfig(families=["lgbm"], colocate=["gru"])
    with pytest.raises(ValueError, match=r"families must not repeat"):
        AppArgs.model_validate({"registry_path": "x", "families": ["lgbm", "lgbm"]})
    with pytest.raises(ValueError, match="positive sum"):
        AppArgs.model_validate({"registry_path": "x", "weights": {"lgbm": 0.0}})
    with pytest.raises(ValueError, match="deadline_ms"):
        AppArgs.model_validate({"registry_path": "x", "deadline_ms": 0})


def test_validate_request_names_the_bad_field() -> None:
    from serve.app import validate_request

    x = np.zeros((2, 4), np.float32)
    w = np.zeros((2, 5, 4), np.float32)

    ids, arrays, deadline = validate_request({"features": x, "windows": w, "deadline_ms": 5})

    assert ids == ["0", "1"] and deadline == 5
    assert arrays["features"].shape == (2, 4) and arrays["windows"].shape == (2, 5, 4)
    with pytest.raises(ValueError, match=r"request\.windows must have 2 rows like the other"):
        validate_request({"features": x, "windows": w[:1]})
    with pytest.raises(ValueError, match=r"request\.windows must have shape \(N, T, 4\)"):
        validate_request({"features": x, "windows": w[:, :, :3]})
    b = np.zeros((2, 6, 40), np.float32)
    _, arrays, _ = validate_request({"books": b}, ("books",))
    assert set(arrays) == {"books"}
    with pytest.raises(ValueError, match=r"request\.books must have shape \(N, T_b, 40\)"):
        validate_request({"features": x, "books": b[:, :, :39]}, ("features", "books"))
    with pytest.raises(ValueError, match=r"request\.books must be present"):
        validate_request({"features": x}, ("features", "books"))
    with pytest.raises(ValueError, match=r"request\.decision_ids must be a list of 2 ids, was 1"):
        validate_request({"features": x, "windows": w, "decision_ids": ["a"]})
    with pytest.raises(ValueError, match=r"request\.features must be present"):
        validate_request({"windows": w})
    with pytest.raises(ValueError, match=r"request\.deadline_ms must be a number > 0, was -1"):
        validate_request({"features": x, "windows": w, "deadline_ms": -1})


def test_client_config_helpers(tmp_path: Path) -> None:
    from actors.core.views import DecisionPoint
    from serve.client import app_args_from_config, request_from_decisions, serve_app_config

    cfg = small_cfg(tmp_path)
    points = [
        DecisionPoint(
            symbol="X",
            decision_id=f"X-{i}",
            ts_event=1,
            ts_init=1,
            wall_init_ns=0,
            features=np.full(4, i, np.float32),
            window=np.full((3, 4), i, np.float32),
        )
        for i in range(2)
    ]

    args = app_args_from_config(cfg, versions={"lgbm": "abc"})
    entry = serve_app_config(cfg, weights={"lgbm": 1.0, "gru": 0.0}, versions={"gru": "def"})
    req = request_from_decisions(points, deadline_ms=50)

    assert Path(args["registry_path"]).is_absolute() and args["versions"] == {"lgbm": "abc"}
    assert entry["import_path"] == "serve.app:build_app" and entry["args"]["versions"] == {}
    by_name = {d["name"]: d["user_config"] for d in entry["deployments"]}
    assert by_name["EnsembleIngress"]["weights"] == {"lgbm": 1.0, "gru": 0.0}
    assert by_name["GRUModelDeployment"]["version"] == "def"
    assert by_name["LGBMModelDeployment"]["version"] is None
    assert set(by_name) == {"EnsembleIngress", "LGBMModelDeployment", "XGBoostModelDeployment",
                            "GRUModelDeployment", "DeepLOBModelDeployment",
                            "TransformerModelDeployment"}
    assert req["books"].shape == (2, 0, 40)
    colocated = serve_app_config(cfg.with_overrides(models={"colocate": ["lgbm", "deeplob"]}))
    names = {d["name"] for d in colocated["deployments"]}
    assert "LGBMModelDeployment" not in names and "DeepLOBModelDeployment" not in names
    assert set(colocated["args"]["colocate"]) == {"lgbm", "deeplob"}
    assert req["decision_ids"] == ["X-0", "X-1"] and req["deadline_ms"] == 50.0
    assert req["features"].shape == (2, 4) and req["windows"].shape == (2, 3, 4)


def test_app_serves_fitted_weights_unless_weights_are_given(tmp_path: Path) -> None:
    from serve.app import AppArgs
    from serve.registry import ModelRegistry

    root = tmp_path / "models"
    none_fitted = AppArgs(registry_path=str(root), families=["lgbm", "gru"])
    assert none_fitted.resolved_weights() == {"lgbm": 1.0, "gru": 1.0}

    ModelRegistry(root).set_ensemble(
        {"lgbm": 0.7, "gru": 0.0, "deeplob": 0.3}, {"lgbm": "a", "gru": "b", "deeplob": "c"}
    )

    fitted = AppArgs(registry_path=str(root), families=["lgbm", "gru"])
    given = AppArgs(registry_path=str(root), families=["lgbm", "gru"], weights={"gru": 1.0})
    assert fitted.resolved_weights() == {"lgbm": 0.7, "gru": 0.0}  # deeplob is not deployed
    assert fitted.ingress_user_config()["weights"] == {"lgbm": 0.7, "gru": 0.0}
    assert given.resolved_weights() == {"gru": 1.0}


def test_registry_refuses_ensemble_weights_that_cannot_be_served(tmp_path: Path) -> None:
    from serve.registry import ModelRegistry

    reg = ModelRegistry(tmp_path)
    with pytest.raises(ValueError, match=r"weights\[lgbm\] must be a finite number >= 0"):
        reg.set_ensemble({"lgbm": -1.0}, {"lgbm": "a"})
    with pytest.raises(ValueError, match="versions must name a version for gru"):
        reg.set_ensemble({"gru": 1.0}, {"lgbm": "a"})
    with pytest.raises(ValueError, match="positive sum"):
        reg.set_ensemble({"lgbm": 0.0}, {"lgbm": "a"})
    assert reg.ensemble() is None
