"""Configuration models, loading and error messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pydantic
import pytest

from cluster.config import DEFAULT_CONFIG, ConfigError, RaydeskConfig, load_config, parse_config


def test_embedded_default_config_is_valid_and_frozen() -> None:
    cfg = load_config()
    assert cfg.instruments[0].symbol == "BTCUSDT"
    with pytest.raises(pydantic.ValidationError):
        cfg.risk.max_position_lots = 1  # type: ignore[misc]


def test_bad_config_errors_name_path_rule_and_value(tmp_path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(
        "instruments:\n"
        '  - {symbol: BTCUSDT, tick_size: "-0.1", lot_size: "0.001", initial_price: "1"}\n'
        "risk:\n  max_notional_per_order: 0\n  colour: blue\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert exc.value.errors == [
        "instruments.0.tick_size must be greater than 0, was '-0.1'",
        "risk.max_notional_per_order must be greater than 0, was 0",
        "risk.colour must be a known field (unknown key), was 'blue'",
    ]


def test_cross_field_rule_prints_values() -> None:
    data = {"instruments": [{"symbol": "X", "tick_size": "0.5", "lot_size": "1",
                             "initial_price": "10.25"}]}
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert "initial_price must be a multiple of tick_size 0.5, was '10.25'" in exc.value.errors[0]


def test_duplicate_symbols_are_rejected() -> None:
    ins = {"symbol": "X", "tick_size": "1", "lot_size": "1", "initial_price": "10"}
    with pytest.raises(ConfigError, match="unique"):
        parse_config({"instruments": [ins, ins]})


def test_unreadable_and_non_mapping_configs(tmp_path) -> None:
    with pytest.raises(ConfigError, match="readable"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")


def test_hash_ignores_bookkeeping_but_not_decisions() -> None:
    cfg = load_config()
    assert cfg.with_overrides(run={"progress": False}).hash() == cfg.hash()
    assert cfg.with_overrides(strategy={"entry_edge": 0.3}).hash() != cfg.hash()


def test_with_overrides_validates() -> None:
    with pytest.raises(pydantic.ValidationError):
        load_config().with_overrides(risk={"max_position_lots": -1})


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_config_validate_bad_file_exits_nonzero_without_traceback(tmp_path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("instruments: []\nfeed: {batch_interval_ms: -5}\n")
    r = _cli("config", "validate", str(p))
    assert r.returncode == 2
    assert "feed.batch_interval_ms must be greater than 0, was -5" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_cli_config_validate_and_schema_ok() -> None:
    r = _cli("config", "validate", str(DEFAULT_CONFIG))
    assert r.returncode == 0 and "ok:" in r.stdout
    r = _cli("config", "schema")
    schema = json.loads(r.stdout)
    assert schema == RaydeskConfig.model_json_schema()
    assert "risk" in schema["properties"]


def test_cli_run_with_bad_config_starts_nothing(tmp_path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("instruments: [{symbol: x}]\n")
    r = _cli("run", "--config", str(p), "--replay", "--events", "10")
    assert r.returncode == 2
    assert "instruments.0.symbol" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


def test_configuration_doc_is_current() -> None:
    from pathlib import Path

    from cluster.config import config_markdown

    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert doc.read_text() == config_markdown(), "run: raydesk config docs > docs/configuration.md"


def test_feed_queue_must_hold_a_snapshot() -> None:
    from cluster.config import FeedConfig

    with pytest.raises(pydantic.ValidationError, match="queue_rows must be >= 4 x snapshot_lim"):
        FeedConfig(queue_rows=1_000, snapshot_limit=1_000)
