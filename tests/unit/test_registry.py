"""Registry shadow pointer, pointer stamps, the shadow log and ``raydesk models`` (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cluster.cli import app
from cluster.config import load_config
from serve.registry import ModelRegistry, RegistryError


def _registry(tmp_path: Path) -> tuple[ModelRegistry, str, str]:
    """A registry with two lgbm versions, the first in production."""
    reg = ModelRegistry(tmp_path / "models")
    v1 = reg.save(
        "lgbm",
        {"model.txt": b"one"},
        metrics={"val_accuracy": 0.41},
        feature_spec_hash="spec0001",
        feature_names=["f0", "f1"],
        data_span_ns=(1_700_000_000_000_000_000, 1_700_000_060_000_000_000),
        params={"trees": 5},
    ).version
    v2 = reg.save("lgbm", {"model.txt": b"two"}, params={"trees": 7}).version
    reg.promote("lgbm", v1)
    return reg, v1, v2


def _config_file(tmp_path: Path, reg: ModelRegistry) -> Path:
    cfg = load_config().with_overrides(models={"registry_path": str(reg.root)})
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(cfg.model_dump(mode="json")))  # JSON is valid YAML
    return path


# --- registry ---------------------------------------------------------------------------------
def test_shadow_pointer_set_read_and_clear(tmp_path: Path) -> None:
    reg, v1, v2 = _registry(tmp_path)
    assert reg.shadow("lgbm") is None

    rec = reg.set_shadow("lgbm", v2)

    assert rec.version == v2 and reg.shadow("lgbm") == rec
    assert json.loads((reg.root / "lgbm" / "SHADOW.json").read_text())["version"] == v2
    assert reg.production("lgbm").version == v1  # the shadow never touches production
    assert reg.clear_shadow("lgbm") == v2
    assert reg.shadow("lgbm") is None and reg.clear_shadow("lgbm") is None
    leftovers = [p.name for p in (reg.root / "lgbm").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_shadow_of_unknown_version_is_refused(tmp_path: Path) -> None:
    reg, _, _ = _registry(tmp_path)

    with pytest.raises(RegistryError, match="lgbm/ffffffffffff must exist"):
        reg.set_shadow("lgbm", "ffffffffffff")
    assert reg.shadow("lgbm") is None


def test_promoting_the_shadow_clears_it(tmp_path: Path) -> None:
    reg, v1, v2 = _registry(tmp_path)
    reg.set_shadow("lgbm", v2)

    reg.promote("lgbm", v2)

    assert reg.production("lgbm").version == v2 and reg.shadow("lgbm") is None
    assert reg.production_history("lgbm") == [v1]


def test_pointer_stamp_changes_on_every_pointer_write(tmp_path: Path) -> None:
    reg, v1, v2 = _registry(tmp_path)
    stamps = [reg.pointer_stamp("lgbm")]

    reg.promote("lgbm", v2)
    stamps.append(reg.pointer_stamp("lgbm"))
    reg.set_shadow("lgbm", v1)
    stamps.append(reg.pointer_stamp("lgbm"))
    reg.clear_shadow("lgbm")
    stamps.append(reg.pointer_stamp("lgbm"))

    assert all(a != b for a, b in zip(stamps, stamps[1:], strict=False))
    assert stamps[3] == stamps[1]  # the same pointer files again: the same stamp
    assert stamps[0][1] is None and stamps[2][1] is not None and stamps[3][1] is None
    assert reg.pointer_stamp("gru") == (None, None)
    assert reg.families() == ["lgbm"]


# --- shadow log -------------------------------------------------------------------------------
def test_shadow_log_writes_one_line_per_decision_and_bounds_its_buffer(tmp_path: Path) -> None:
    from serve.shadow import ShadowLog

    log = ShadowLog(tmp_path / "shadow" / "s.jsonl", max_rows=4)
    champion = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    shadow = np.array([[0.2, 0.2, 0.6], [0.1, 0.3, 0.6]])

    log.add(1, ["a", "b"], "lgbm", ("v1", champion), ("v2", shadow))
    written = log.flush()
    for i in range(3):
        log.add(2, [f"c{i}", f"d{i}"], "lgbm", ("v1", champion), ("v2", shadow))

    rows = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert written == 2 and log.flush() == 4 and log.flush() == 0
    assert log.dropped == 2 and log.pending_rows == 0
    assert rows == [
        {"ts_ns": 1, "decision_id": "a", "family": "lgbm", "champion_version": "v1",
         "champion_probs": [0.1, 0.2, 0.7], "shadow_version": "v2",
         "shadow_probs": [0.2, 0.2, 0.6], "agree": True},
        {"ts_ns": 1, "decision_id": "b", "family": "lgbm", "champion_version": "v1",
         "champion_probs": [0.6, 0.3, 0.1], "shadow_version": "v2",
         "shadow_probs": [0.1, 0.3, 0.6], "agree": False},
    ]
    ids = [json.loads(line)["decision_id"] for line in log.path.read_text().splitlines()]
    assert ids == ["a", "b", "c1", "d1", "c2", "d2"]  # the oldest pending batch was dropped


def test_app_args_carry_poll_interval_and_shadow_dir(tmp_path: Path) -> None:
    from serve.client import app_args_from_config

    cfg = load_config().with_overrides(
        models={"registry_poll_s": 0.5, "shadow_log_dir": "rel/shadow"}
    )

    args = app_args_from_config(cfg)

    assert args["registry_poll_s"] == 0.5
    assert Path(args["shadow_log_dir"]).is_absolute()
    assert args["shadow_log_dir"].endswith("rel/shadow")
    off = app_args_from_config(cfg.with_overrides(models={"shadow_log_dir": None}))
    assert off["shadow_log_dir"] is None


# --- CLI --------------------------------------------------------------------------------------
def test_cli_show_prints_metadata_and_roles(tmp_path: Path) -> None:
    reg, v1, v2 = _registry(tmp_path)
    cfg = _config_file(tmp_path, reg)
    reg.set_shadow("lgbm", v2)
    runner = CliRunner()

    text = runner.invoke(app, ["models", "show", "lgbm", "--config", str(cfg)])
    as_json = runner.invoke(app, ["models", "show", "lgbm", v2, "--json", "-c", str(cfg)])

    assert text.exit_code == 0, text.output
    assert f"lgbm {v1}  (production)" in text.stdout
    for part in ("spec0001", "val_accuracy", "2023-11-14T22:13:20+00:00", "model.txt", '"trees"'):
        assert part in text.stdout
    assert as_json.exit_code == 0, as_json.output
    info = json.loads(as_json.stdout)
    assert info["version"] == v2 and info["shadow"] is True and info["production"] is False
    assert info["params"] == {"trees": 7} and info["files"] == ["model.txt"]
    assert info["production_history"] == [] and "git_sha" in info["code_version"]


def test_cli_promote_rollback_and_shadow_move_the_pointers(tmp_path: Path) -> None:
    reg, v1, v2 = _registry(tmp_path)
    cfg = ["--config", str(_config_file(tmp_path, reg))]
    runner = CliRunner()

    shadow = runner.invoke(app, ["models", "shadow", "lgbm", v2, *cfg])
    assert shadow.exit_code == 0 and reg.shadow("lgbm").version == v2
    listed = runner.invoke(app, ["models", "list", *cfg])
    assert f"* lgbm        {v1}" in listed.stdout and f"~ lgbm        {v2}" in listed.stdout
    cleared = runner.invoke(app, ["models", "shadow", "lgbm", "--clear", *cfg])
    assert cleared.exit_code == 0 and f"shadow cleared (was {v2})" in cleared.stdout
    assert reg.shadow("lgbm") is None

    promoted = runner.invoke(app, ["models", "promote", "lgbm", v2, *cfg])
    assert promoted.exit_code == 0 and f"production {v2} (was {v1})" in promoted.stdout
    assert reg.production("lgbm").version == v2
    rolled = runner.invoke(app, ["models", "rollback", "lgbm", *cfg])
    assert rolled.exit_code == 0 and f"production {v1} (rolled back from {v2})" in rolled.stdout
    assert reg.production("lgbm").version == v1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "xgb"], "family must be one of ['lgbm']"),
        (["show", "lgbm", "ffffffffffff"], "lgbm/ffffffffffff must exist"),
        (["promote", "lgbm", "ffffffffffff"], "lgbm/ffffffffffff must exist"),
        (["promote", "nope", "ffffffffffff"], "was 'nope'"),
        (["rollback", "lgbm"], "must have a previous production version"),
        (["shadow", "lgbm", "ffffffffffff"], "lgbm/ffffffffffff must exist"),
        (["shadow", "lgbm"], "shadow must be given a VERSION or --clear"),
        (["show", "lgbm", "../x"], "version must match"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path, argv: list[str], message: str) -> None:
    reg, _, _ = _registry(tmp_path)
    cfg = _config_file(tmp_path, reg)

    result = CliRunner().invoke(app, ["models", *argv, "--config", str(cfg)])

    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_cli_show_without_production_names_the_fix(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "models")
    reg.save("gru", {"w.bin": b"x"})
    cfg = _config_file(tmp_path, reg)

    result = CliRunner().invoke(app, ["models", "show", "gru", "-c", str(cfg)])

    assert result.exit_code == 2
    assert "gru must have a production version to show, was none" in result.stderr
