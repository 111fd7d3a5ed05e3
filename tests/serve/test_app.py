"""The ensemble Serve app on a real local Ray cluster with real Serve (handle and HTTP)."""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cluster.config import RaydeskConfig, load_config
from serve.app import DEPLOYMENT_NAMES
from serve.dataset import build_training_set
from serve.ensemble import FALLBACK_PROBS, FAMILY_INPUTS, combine, normalise_weights
from serve.models import LGBMModel, load_from_registry, save_model
from serve.registry import ModelRegistry
from serve.training import train_models
from tests.conftest import small_config

pytestmark = pytest.mark.ray

APP = "ensemble-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tiny models in a fresh registry, plus sample requests from the same pipeline."""
    tmp = tmp_path_factory.mktemp("serve")
    cfg = load_config().with_overrides(
        models={
            "registry_path": str(tmp / "models"),
            "train_seconds": 60.0,
            "lgbm_trees": 20,
            "xgb_trees": 20,
            "torch_epochs": 1,
            "torch_hidden": 8,
            "lob_width": 8,
            "weights": {f: 1.0 for f in FAMILY_INPUTS},  # every family called
            "deadline_ms": 10_000.0,
            "http_port": _free_port(),
            "registry_poll_s": 0.2,
            "shadow_log_dir": str(tmp / "shadow"),
        }
    )
    records = train_models(cfg, console_progress=False)
    data = build_training_set(cfg.with_overrides(models={"train_seed": 99}), seconds=10)
    return {"cfg": cfg, "records": records, "data": data}


@pytest.fixture(scope="module")
def app(ray_cluster: Any, trained: dict[str, Any]) -> Any:
    """The ensemble app deployed through ``serve.client.deploy``; deleted afterwards."""
    from ray import serve
    from ray.serve.context import _get_global_client

    from serve.client import deploy

    running = _get_global_client(raise_if_no_controller_running=False)
    if running is not None and running.http_config.port != trained["cfg"].models.http_port:
        serve.shutdown()  # started by an earlier module on another port: HTTP options are fixed
    t0 = time.perf_counter()
    handle = deploy(trained["cfg"], name=APP)
    trained["deploy_s"] = time.perf_counter() - t0
    yield handle
    serve.delete(APP)


def _request(trained: dict[str, Any], n: int = 8, **extra: Any) -> dict[str, Any]:
    data = trained["data"]
    return {
        "decision_ids": [f"d-{i}" for i in range(n)],
        "features": data.features[:n],
        "windows": data.windows[:n],
        "books": data.books[:n],
        **extra,
    }


def _redeploy(cfg: RaydeskConfig, **models: Any) -> Any:
    from ray import serve

    from serve.app import build_app
    from serve.client import ROUTE_PREFIX, app_args_from_config

    args = {**app_args_from_config(cfg), **models}
    return serve.run(build_app(args), name=APP, route_prefix=ROUTE_PREFIX)


def _describe(family: str, app: str = APP) -> dict[str, Any]:
    from ray import serve

    name = DEPLOYMENT_NAMES[family]
    return serve.get_deployment_handle(name, app_name=app).describe.remote().result()


def _fitted(trained: dict[str, Any]) -> dict[str, float]:
    """The ensemble weights fitted at training (what ``models.weights: null`` serves)."""
    return ModelRegistry(trained["cfg"].models.registry_path).ensemble()["weights"]


def _other_lgbm(trained: dict[str, Any]) -> tuple[LGBMModel, str]:
    """A second LightGBM version in the registry (deterministic: same bytes every time)."""
    data = trained["data"]
    model = LGBMModel.train(
        data.features, data.labels, trees=5, seed=7, feature_names=data.feature_names
    )
    record = save_model(
        ModelRegistry(trained["cfg"].models.registry_path),
        model,
        metrics={},
        feature_spec_hash=data.feature_spec_hash,
        data_span_ns=data.span_ns,
    )
    return model, record.version


def _local(trained: dict[str, Any], family: str, req: dict[str, Any]) -> np.ndarray:
    """What the production model of ``family`` predicts in this process."""
    local, _ = load_from_registry(trained["cfg"].models.registry_path, family)
    kind = FAMILY_INPUTS[family]
    if kind == "features":
        return local.predict_proba(req["features"], None)
    return local.predict_proba(None, req[kind])


def test_predict_via_handle_combines_every_family(app: Any, trained: dict[str, Any]) -> None:
    req = _request(trained)
    weights = trained["cfg"].models.weights

    out = app.predict.remote(req).result(timeout_s=60)

    assert out["fallback"] is False and out["reason"] is None
    assert out["decision_ids"] == req["decision_ids"]
    assert out["models"] == {f: r.version for f, r in trained["records"].items()}
    assert set(out["models"]) == set(FAMILY_INPUTS)
    assert out["probs"].shape == (8, 3) and out["latency_ns"] > 0
    for family in FAMILY_INPUTS:
        np.testing.assert_allclose(
            out["per_model"][family], _local(trained, family, req), rtol=1e-5, atol=1e-7
        )
    np.testing.assert_allclose(out["probs"], combine(out["per_model"], weights))
    no_books = {k: v for k, v in req.items() if k != "books"}
    with pytest.raises(ValueError, match=r"request\.books must be present"):
        app.predict.remote(no_books).result(timeout_s=60)


@pytest.mark.parametrize("family", list(FAMILY_INPUTS))
def test_every_family_deployment_serves_its_production_model(
    app: Any, trained: dict[str, Any], family: str
) -> None:
    from ray import serve

    req = _request(trained, n=5)
    handle = serve.get_deployment_handle(DEPLOYMENT_NAMES[family], app_name=APP)

    out = handle.predict.remote(req[FAMILY_INPUTS[family]]).result(timeout_s=60)

    assert out["version"] == trained["records"][family].version
    np.testing.assert_allclose(out["probs"], _local(trained, family, req), rtol=1e-5, atol=1e-7)
    handle.check_health.remote().result(timeout_s=30)


def test_app_without_weights_serves_the_weights_fitted_at_training(
    app: Any, trained: dict[str, Any]
) -> None:
    from ray import serve

    req = _request(trained, n=4)
    fitted = _fitted(trained)
    called = {f for f, w in fitted.items() if w > 0}

    try:
        handle = _redeploy(trained["cfg"], weights=None)
        out = handle.predict.remote(req).result(timeout_s=60)
        ingress = serve.get_deployment_handle("EnsembleIngress", app_name=APP)
        served = ingress.config.remote().result()["weights"]
    finally:
        _redeploy(trained["cfg"])

    assert set(fitted) == set(FAMILY_INPUTS) and called
    assert served == pytest.approx({f: w / sum(fitted.values()) for f, w in fitted.items()})
    assert set(out["per_model"]) == called and not out["fallback"]
    np.testing.assert_allclose(out["probs"], combine(out["per_model"], fitted))


def test_concurrent_requests_are_batched_and_answered(app: Any, trained: dict[str, Any]) -> None:
    reqs = [_request(trained, n=1 + i % 4) for i in range(24)]

    responses = [app.predict.remote(r) for r in reqs]
    outs = [r.result(timeout_s=60) for r in responses]

    assert [o["probs"].shape[0] for o in outs] == [1 + i % 4 for i in range(24)]
    assert not any(o["fallback"] for o in outs)
    for o in outs:
        np.testing.assert_allclose(o["probs"].sum(axis=1), 1.0, atol=1e-9)


def test_http_predict_returns_json_lists(app: Any, trained: dict[str, Any]) -> None:
    from ray.serve.context import _get_global_client

    url = _get_global_client().root_url.rstrip("/") + "/ensemble"
    req = _request(trained, n=3)
    body = json.dumps(
        {k: req[k].tolist() for k in ("features", "windows", "books")}
    ).encode()

    with urllib.request.urlopen(
        urllib.request.Request(url, body, {"Content-Type": "application/json"}), timeout=30
    ) as resp:
        out = json.loads(resp.read())

    assert out["fallback"] is False and len(out["probs"]) == 3
    np.testing.assert_allclose(np.asarray(out["probs"]).sum(axis=1), 1.0, atol=1e-9)
    bad = json.dumps(
        {"features": [[1.0, 2.0]], "windows": [[[1.0]]], "books": req["books"][:1].tolist()}
    ).encode()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(url, bad), timeout=30)
    assert err.value.code == 400
    assert "request.windows must have shape" in json.loads(err.value.read())["error"]


def test_missed_deadline_returns_fallback_not_late_decision(
    app: Any, trained: dict[str, Any]
) -> None:
    out = app.predict.remote(_request(trained, deadline_ms=0.001)).result(timeout_s=60)

    assert out["fallback"] is True and out["reason"] == "deadline"
    np.testing.assert_array_equal(out["probs"], np.tile(FALLBACK_PROBS, (8, 1)))
    assert out["models"] == {}


def test_bad_request_is_a_clear_error(app: Any, trained: dict[str, Any]) -> None:
    req = _request(trained)
    req["windows"] = req["windows"][:, :, :3]

    with pytest.raises(ValueError, match=r"request\.windows must have shape"):
        app.predict.remote(req).result(timeout_s=60)


def test_redeploy_changes_weights_and_model_version(app: Any, trained: dict[str, Any]) -> None:
    cfg: RaydeskConfig = trained["cfg"]
    req = _request(trained)
    other, v2 = _other_lgbm(trained)

    handle = _redeploy(cfg, weights={"lgbm": 1.0, "gru": 0.0}, versions={"lgbm": v2})
    out = handle.predict.remote(req).result(timeout_s=60)

    assert set(out["per_model"]) == {"lgbm"} and out["models"] == {"lgbm": v2}
    np.testing.assert_allclose(out["probs"], other.predict_proba(req["features"], None))
    assert _describe("lgbm")["version"] == v2

    handle = _redeploy(cfg)
    out = handle.predict.remote(req).result(timeout_s=60)

    assert out["models"]["lgbm"] == trained["records"]["lgbm"].version
    assert set(out["per_model"]) == set(FAMILY_INPUTS)


def test_declarative_reconfigure_hot_swaps_in_place(app: Any, trained: dict[str, Any]) -> None:
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    from serve.client import serve_app_config

    name = "ensemble-decl"
    cfg: RaydeskConfig = trained["cfg"]
    client = _get_global_client()

    def apply(**overrides: Any) -> None:
        entry = {**serve_app_config(cfg, name=name, **overrides), "route_prefix": "/decl"}
        client.deploy_apps(ServeDeploySchema(applications=[entry]), _blocking=True)

    other, v2 = _other_lgbm(trained)
    req = _request(trained)
    apply()
    before = _describe("lgbm", name)
    t0 = time.perf_counter()

    apply(weights={"lgbm": 1.0, "gru": 0.0}, versions={"lgbm": v2})
    while _describe("lgbm", name)["version"] != v2 and time.perf_counter() - t0 < 30:
        time.sleep(0.05)
    swap_s = time.perf_counter() - t0
    out = serve.get_app_handle(name).predict.remote(req).result(timeout_s=60)

    after = _describe("lgbm", name)
    assert before["version"] == trained["records"]["lgbm"].version
    assert after["version"] == v2 and after["pid"] == before["pid"]  # no restart
    assert out["models"] == {"lgbm": v2}
    np.testing.assert_allclose(out["probs"], other.predict_proba(req["features"], None))
    print(f"declarative hot swap took {swap_s:.2f}s")
    serve.delete(name)


def test_deploy_time_is_reported(app: Any, trained: dict[str, Any]) -> None:
    assert trained["deploy_s"] < 60
    print(f"deploy took {trained['deploy_s']:.1f}s")


def test_handle_is_usable_from_threads(app: Any, trained: dict[str, Any]) -> None:
    req = _request(trained, n=2)

    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: app.predict.remote(req).result(timeout_s=60), range(8)))

    assert all(not o["fallback"] for o in outs)
    assert Path(trained["cfg"].models.registry_path).is_dir()


def _until(probe: Callable[[], Any], ok: Callable[[Any], bool], timeout_s: float = 30.0) -> Any:
    """Call ``probe`` until ``ok(result)``; return that result (fail after ``timeout_s``)."""
    deadline = time.perf_counter() + timeout_s
    while True:
        result = probe()
        if ok(result):
            return result
        assert time.perf_counter() < deadline, f"condition not met in {timeout_s}s: {result!r}"
        time.sleep(0.05)


def _ingress_config() -> dict[str, Any]:
    from ray import serve

    handle = serve.get_deployment_handle("EnsembleIngress", app_name=APP)
    return handle.config.remote().result()


def test_promotion_hot_swaps_replicas_that_follow_production(
    app: Any, trained: dict[str, Any]
) -> None:
    reg = ModelRegistry(trained["cfg"].models.registry_path)
    original = trained["records"]["lgbm"].version
    other, v2 = _other_lgbm(trained)
    req = _request(trained)
    before = _describe("lgbm")
    assert before["version"] == original and not before["pinned"] and before["polling"]

    reg.promote("lgbm", v2)
    try:
        t0 = time.perf_counter()
        out = _until(
            lambda: app.predict.remote(req).result(timeout_s=60),
            lambda o: o["models"].get("lgbm") == v2,
        )
        swap_s = time.perf_counter() - t0
        after = _describe("lgbm")

        assert after["version"] == v2 and after["pid"] == before["pid"]  # no restart
        assert all(out["models"][f] == trained["records"][f].version for f in out["models"]
                   if f != "lgbm")
        np.testing.assert_allclose(
            out["per_model"]["lgbm"], other.predict_proba(req["features"], None)
        )
        print(f"promotion hot swap seen after {swap_s:.2f}s")
    finally:
        reg.rollback("lgbm")
        _until(lambda: _describe("lgbm"), lambda d: d["version"] == original)
    assert _describe("lgbm")["pid"] == before["pid"]


def test_failed_load_on_promotion_keeps_the_old_model(app: Any, trained: dict[str, Any]) -> None:
    from serve.models import save_model

    reg = ModelRegistry(trained["cfg"].models.registry_path)
    original = trained["records"]["lgbm"].version
    data = trained["data"]
    model = LGBMModel.train(
        data.features, data.labels, trees=3, seed=11, feature_names=data.feature_names
    )
    bad = save_model(reg, model, metrics={}, feature_spec_hash="0ther5pec000", data_span_ns=(1, 2))
    before = _describe("lgbm")

    reg.promote("lgbm", bad.version)
    try:
        seen = _until(lambda: _describe("lgbm"), lambda d: d["load_errors"] > before["load_errors"])
        out = app.predict.remote(_request(trained)).result(timeout_s=60)

        assert seen["version"] == original and out["models"]["lgbm"] == original
        assert out["fallback"] is False
    finally:
        reg.rollback("lgbm")


def test_shadow_challenger_is_returned_and_logged_never_combined(
    app: Any, trained: dict[str, Any]
) -> None:
    cfg: RaydeskConfig = trained["cfg"]
    reg = ModelRegistry(cfg.models.registry_path)
    champion = trained["records"]["lgbm"].version
    other, v2 = _other_lgbm(trained)
    req = _request(trained)
    local, _ = load_from_registry(reg, "lgbm")

    reg.set_shadow("lgbm", v2)
    try:
        out = _until(
            lambda: app.predict.remote(req).result(timeout_s=60),
            lambda o: o["shadow"].get("lgbm", {}).get("version") == v2,
        )
        log = Path(_ingress_config()["shadow_log"])
        rows = _until(
            lambda: [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else [],
            lambda r: {x["decision_id"] for x in r} >= set(req["decision_ids"]),
        )

        assert out["models"]["lgbm"] == champion and set(out["shadow"]) == {"lgbm"}
        np.testing.assert_allclose(
            out["shadow"]["lgbm"]["probs"], other.predict_proba(req["features"], None)
        )
        np.testing.assert_allclose(
            out["per_model"]["lgbm"], local.predict_proba(req["features"], None), rtol=1e-6
        )
        np.testing.assert_allclose(out["probs"], combine(out["per_model"], cfg.models.weights))
        assert _describe("lgbm")["shadow"] == v2 and _describe("gru")["shadow"] is None
        last = rows[-1]
        assert last["family"] == "lgbm" and last["shadow_version"] == v2
        assert last["champion_version"] == champion and len(last["shadow_probs"]) == 3
    finally:
        reg.clear_shadow("lgbm")
        _until(lambda: _describe("lgbm"), lambda d: d["shadow"] is None)
    assert app.predict.remote(req).result(timeout_s=60)["shadow"] == {}


def test_colocated_families_run_in_the_ingress_and_follow_the_registry(
    app: Any, trained: dict[str, Any]
) -> None:
    from ray import serve

    cfg: RaydeskConfig = trained["cfg"]
    reg = ModelRegistry(cfg.models.registry_path)
    req = _request(trained)
    other, v2 = _other_lgbm(trained)
    ingress = serve.get_deployment_handle("EnsembleIngress", app_name=APP)
    try:
        handle = _redeploy(cfg, colocate=["lgbm", "deeplob"])
        out = handle.predict.remote(req).result(timeout_s=60)
        local = ingress.describe_colocated.remote().result()
        deployments = set(serve.status().applications[APP].deployments)

        assert set(local) == {"lgbm", "deeplob"} and all(d["polling"] for d in local.values())
        assert not {"LGBMModelDeployment", "DeepLOBModelDeployment"} & deployments
        assert out["models"] == {f: r.version for f, r in trained["records"].items()}
        for family in ("lgbm", "deeplob", "gru"):
            np.testing.assert_allclose(
                out["per_model"][family], _local(trained, family, req), rtol=1e-5, atol=1e-7
            )
        # a promotion hot-swaps a colocated family too, in the ingress's own process
        reg.promote("lgbm", v2)
        swapped = _until(
            lambda: handle.predict.remote(req).result(timeout_s=60),
            lambda o: o["models"].get("lgbm") == v2,
        )
        np.testing.assert_allclose(
            swapped["per_model"]["lgbm"], other.predict_proba(req["features"], None)
        )
    finally:
        reg.rollback("lgbm")
        _redeploy(cfg)


# --- the ingress follows the registry's refitted weights ------------------------------------
WEIGHTS_APP = "ensemble-weights"


def _weights_config(tmp_path: Path, model_dir: Path, **models: Any) -> RaydeskConfig:
    """A copy of the session's registry under ``tmp_path`` and a two-family app config on it:
    lgbm colocated in the ingress, xgboost in a deployment of its own; fast registry polls."""
    shutil.copytree(model_dir, tmp_path / "models")
    return small_config(tmp_path, models={
        "families": ["lgbm", "xgboost"], "colocate": ["lgbm"], "weights": None,
        "registry_poll_s": 0.1, "deadline_ms": 10_000.0, **models,
    })


def _serve_running() -> None:
    """Start Serve (HTTP on a free local port) unless an earlier test started it."""
    from ray import serve
    from ray.serve.context import _get_global_client

    if _get_global_client(raise_if_no_controller_running=False) is None:
        serve.start(http_options={"host": "127.0.0.1", "port": _free_port()})


def _apply_declaratively(cfg: RaydeskConfig, **overrides: Any) -> None:
    """Deploy (or hot-reconfigure) the app the way ``serve deploy`` / a RayService does."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    from serve.client import serve_app_config

    entry = {**serve_app_config(cfg, name=WEIGHTS_APP, **overrides), "route_prefix": "/weights"}
    _get_global_client().deploy_apps(ServeDeploySchema(applications=[entry]), _blocking=True)


def _weights_ingress() -> dict[str, Any]:
    from ray import serve

    handle = serve.get_deployment_handle("EnsembleIngress", app_name=WEIGHTS_APP)
    return handle.config.remote().result(timeout_s=30)


def _production(reg: ModelRegistry) -> dict[str, str]:
    return {f: reg.production(f).version for f in ("lgbm", "xgboost")}


def _features(reg: ModelRegistry, n: int = 6) -> np.ndarray:
    """Random rows with the lgbm model's feature count (only the weighting is checked)."""
    model, _ = load_from_registry(reg, "lgbm")
    rng = np.random.default_rng(3)
    return rng.normal(size=(n, len(model.feature_names))).astype(np.float32)


def test_ingress_follows_refitted_weights_until_explicit_weights_are_pushed(
    ray_cluster: Any, model_dir: Path, tmp_path: Path
) -> None:
    from ray import serve

    # Arrange: an app that serves the fitted weights (models.weights: null)
    cfg = _weights_config(tmp_path, model_dir)
    reg = ModelRegistry(cfg.models.registry_path)
    fitted = reg.ensemble()["weights"]
    _serve_running()
    _apply_declaratively(cfg)
    try:
        before = _weights_ingress()
        assert before["weights_from_registry"] and before["weights_polling"]
        assert before["weights"] == pytest.approx(
            normalise_weights({f: fitted[f] for f in ("lgbm", "xgboost")})
        )

        # Act: a retrain refits the weights (gru is not deployed here: left out)
        t0 = time.perf_counter()
        reg.set_ensemble({"lgbm": 3.0, "xgboost": 1.0, "gru": 5.0}, {
            **_production(reg), "gru": "0000gru00000"})
        seen = _until(_weights_ingress, lambda c: c["weight_reloads"] > before["weight_reloads"])
        follow_s = time.perf_counter() - t0
        x = _features(reg)
        out = serve.get_app_handle(WEIGHTS_APP).predict.remote({"features": x}).result(
            timeout_s=60)

        # Assert: applied in the same replica, and predict combines with them
        assert seen["weights"] == pytest.approx({"lgbm": 0.75, "xgboost": 0.25})
        assert seen["weights_fitted_for"] == _production(reg)
        assert seen["pid"] == before["pid"] and seen["weight_reload_errors"] == 0
        assert set(out["per_model"]) == {"lgbm", "xgboost"} and not out["fallback"]
        np.testing.assert_allclose(
            out["probs"], combine(out["per_model"], {"lgbm": 3.0, "xgboost": 1.0})
        )
        print(f"refitted weights seen by the ingress after {follow_s:.2f}s")

        # weights fitted for versions that are not served are still applied (and logged)
        stale = {"lgbm": "0ld0ld0ld0ld", "xgboost": _production(reg)["xgboost"]}
        reg.set_ensemble({"lgbm": 1.0, "xgboost": 4.0}, stale)
        seen = _until(_weights_ingress, lambda c: c["weights_fitted_for"] == stale)
        assert seen["weights"] == pytest.approx({"lgbm": 0.2, "xgboost": 0.8})

        # an unreadable file keeps the weights and is counted
        bad = Path(cfg.models.registry_path) / "ENSEMBLE.json.tmp-test"
        bad.write_text("{not json")
        bad.replace(Path(cfg.models.registry_path) / "ENSEMBLE.json")
        broken = _until(_weights_ingress, lambda c: c["weight_reload_errors"] == 1)
        assert broken["weights"] == pytest.approx({"lgbm": 0.2, "xgboost": 0.8})

        # Act: explicit weights pushed through user_config (a declarative hot change)
        _apply_declaratively(cfg, weights={"lgbm": 1.0, "xgboost": 1.0})
        explicit = _until(_weights_ingress, lambda c: not c["weights_from_registry"])
        reg.set_ensemble({"lgbm": 9.0, "xgboost": 1.0}, _production(reg))
        time.sleep(15 * cfg.models.registry_poll_s)  # many polls later
        after = _weights_ingress()

        # Assert: the explicit weights win, in the same replica that kept polling
        assert explicit["weights"] == pytest.approx({"lgbm": 0.5, "xgboost": 0.5})
        assert after["weights"] == pytest.approx({"lgbm": 0.5, "xgboost": 0.5})
        assert after["weight_reloads"] == explicit["weight_reloads"]
        assert after["weights_polling"] and after["pid"] == before["pid"]
    finally:
        serve.delete(WEIGHTS_APP)


def test_app_with_explicit_model_weights_never_takes_the_registry_weights(
    ray_cluster: Any, model_dir: Path, tmp_path: Path
) -> None:
    from ray import serve

    from serve.app import build_app
    from serve.client import app_args_from_config

    # Arrange: models.weights set in the config
    cfg = _weights_config(tmp_path, model_dir, weights={"lgbm": 1.0, "xgboost": 3.0})
    reg = ModelRegistry(cfg.models.registry_path)
    _serve_running()
    serve.run(build_app(app_args_from_config(cfg)), name=WEIGHTS_APP, route_prefix="/weights")
    try:
        before = _weights_ingress()

        # Act: a retrain refits the weights
        reg.set_ensemble({"lgbm": 5.0, "xgboost": 1.0}, _production(reg))
        time.sleep(15 * cfg.models.registry_poll_s)
        after = _weights_ingress()

        # Assert
        assert not before["weights_from_registry"] and after["weights_polling"]
        assert after["weights"] == before["weights"] == pytest.approx(
            {"lgbm": 0.25, "xgboost": 0.75}
        )
        assert after["weight_reloads"] == 0 and after["weights_fitted_for"] is None
    finally:
        serve.delete(WEIGHTS_APP)
