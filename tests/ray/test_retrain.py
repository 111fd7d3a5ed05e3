"""The retrain job on the session's real local Ray cluster: Tune trials with ASHA and
checkpoints, champion/challenger promotion both ways on the same holdout, a resumed
experiment, the hot swap in a running Serve app, and ``--if-drift``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from ray import tune

from cluster.config import RaydeskConfig
from jobs import retrain as rt
from jobs.retrain_tune import RetrainInterrupted, max_reports, search_space
from serve.dataset import TrainingSet, build_training_set
from serve.models import LGBMModel, load_model
from serve.registry import ModelRegistry
from serve.training import log_loss, split_dataset, train_models
from tests.conftest import small_config

pytestmark = pytest.mark.ray

APP = "retrain-swap"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp: Path, name: str, **retrain: Any) -> RaydeskConfig:
    """Two boosting families, small searches, files under ``tmp/name``."""
    base = tmp / name
    return small_config(
        base,
        models={"families": ["lgbm", "xgboost"], "registry_poll_s": 0.5,
                "http_port": _free_port()},
        retrain={"samples": 2, "boost_rounds": [40, 60], "rounds_per_report": 20,
                 "boost_learning_rate": [0.05, 0.2], **retrain},
    )


def _write(cfg: RaydeskConfig, path: Path) -> str:
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return str(path)


def _main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = rt.main(argv)
    return code, out.getvalue(), err.getvalue()


def _holdout_loss(record: Any, holdout: TrainingSet) -> float:
    return round(float(log_loss(load_model(record).predict_proba(holdout.features, None),
                                holdout.labels)), 6)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The training set every config of this module shares (same models settings)."""
    tmp = tmp_path_factory.mktemp("retrain")
    cfg = _config(tmp, "base")
    return {"tmp": tmp, "dataset": build_training_set(cfg)}


# --- the building blocks ----------------------------------------------------------------------
def test_boosting_in_chunks_equals_boosting_in_one_go(data: dict[str, Any]) -> None:
    ds = data["dataset"]
    # without feature subsampling (reseeded at each call) the boosters are the same
    over = {"learning_rate": 0.1, "num_leaves": 7, "feature_fraction": 1.0}
    whole = LGBMModel.train(ds.features, ds.labels, trees=30, seed=1,
                            feature_names=ds.feature_names, overrides=over)
    part = None
    for _ in range(3):
        part = LGBMModel.train(ds.features, ds.labels, trees=10, seed=1,
                               feature_names=ds.feature_names, overrides=over, init_model=part)
    assert part is not None and part.params()["trees"] == 30
    np.testing.assert_array_equal(part.predict_proba(ds.features[:200]),
                                  whole.predict_proba(ds.features[:200]))


def test_search_space_follows_the_retrain_section(data: dict[str, Any]) -> None:
    cfg = _config(data["tmp"], "space", gru_hidden=[8], torch_epochs=[2, 2])
    lgbm = search_space("lgbm", cfg)
    assert set(lgbm) == {"trees", "learning_rate", "num_leaves"}
    assert (lgbm["trees"].lower, lgbm["trees"].upper) == (40, 61)  # randint: upper excluded
    assert (lgbm["learning_rate"].lower, lgbm["learning_rate"].upper) == (0.05, 0.2)
    assert set(search_space("xgboost", cfg)) == {"trees", "learning_rate", "max_depth"}
    gru = search_space("gru", cfg)
    assert gru["epochs"] == 2 and gru["hidden"] == 8  # a one-value range is a constant
    assert set(search_space("transformer", cfg)) == {"epochs", "lr", "width"}
    assert max_reports("xgboost", cfg) == 3 and max_reports("gru", cfg) == 2


# --- champion / challenger and the hot swap ---------------------------------------------------
def test_retrain_promotes_better_challengers_and_serve_hot_swaps_them(
    ray_cluster: Any, data: dict[str, Any]
) -> None:
    from ray import serve
    from ray.serve.context import _get_global_client

    from serve.app import DEPLOYMENT_NAMES
    from serve.client import deploy

    tmp, ds = data["tmp"], data["dataset"]
    cfg = _config(tmp, "swap")
    registry = ModelRegistry(cfg.models.registry_path)
    # the champion: lgbm with a single boosting round (xgboost has none)
    weak = train_models(cfg.with_overrides(models={"families": ["lgbm"], "lgbm_trees": 1}),
                        console_progress=False, dataset=ds)["lgbm"]
    serve_cfg = cfg.with_overrides(models={"families": ["lgbm"]})
    running = _get_global_client(raise_if_no_controller_running=False)
    if running is not None and running.http_config.port != serve_cfg.models.http_port:
        serve.shutdown()  # started by an earlier module on another port: HTTP options are fixed
    handle = deploy(serve_cfg, name=APP)
    try:
        replica = serve.get_deployment_handle(DEPLOYMENT_NAMES["lgbm"], app_name=APP)
        request = {"features": ds.features[:4]}
        assert handle.predict.remote(request).result()["models"] == {"lgbm": weak.version}
        pid = replica.describe.remote().result()["pid"]

        code, out, err = _main(["--config", _write(cfg, tmp / "swap.yaml"), "--json"])
        assert code == 0, err
        result = json.loads(out)["retrain"]
        run_dir = Path(cfg.run.runs_dir).resolve() / result["run_id"]
        assert result["run_id"] == f"retrain-{cfg.hash()}-1"
        assert json.loads((run_dir / "retrain.json").read_text()) == result
        lg, xg = result["families"]["lgbm"], result["families"]["xgboost"]

        # the same holdout scores both: recomputed here from the registry's files
        _, _, holdout = split_dataset(cfg, ds)
        assert lg["champion"]["version"] == weak.version
        assert lg["champion"]["holdout"]["log_loss"] == _holdout_loss(weak, holdout)
        challenger = registry.get("lgbm", lg["challenger"]["version"])
        assert lg["challenger"]["holdout"]["log_loss"] == _holdout_loss(challenger, holdout)
        assert lg["challenger"]["holdout"]["n"] == len(holdout) == result["data"]["n_holdout"]
        assert lg["challenger"]["holdout"]["log_loss"] < lg["champion"]["holdout"]["log_loss"]
        assert lg["promoted"] and lg["decision"].startswith("promoted: challenger")
        # promoted by more than the margin, which is recorded
        margin = cfg.retrain.min_improvement
        assert margin > 0 and lg["min_improvement"] == result["min_improvement"] == margin
        assert lg["challenger"]["holdout"]["log_loss"] < (
            lg["champion"]["holdout"]["log_loss"] - margin
        )
        assert xg["champion"] is None and xg["promoted"]
        assert xg["decision"] == "promoted: no production model"
        assert result["promoted"] == ["lgbm", "xgboost"]
        # the registry: production, history, metrics, params and drift reference
        assert registry.production("lgbm").version == challenger.version
        assert registry.production_history("lgbm")[-1] == weak.version
        assert challenger.metrics["val_log_loss"] == lg["challenger"]["holdout"]["log_loss"]
        assert challenger.params["tune"] == lg["challenger"]["params"]
        assert challenger.drift_reference()["n"] == result["data"]["n_train"]
        ensemble = registry.ensemble()
        assert ensemble["versions"] == {"lgbm": challenger.version,
                                        "xgboost": xg["challenger"]["version"]}
        assert ensemble["metrics"]["retrain_run"] == result["run_id"]
        # Tune: 2 trials per family, every one with a checkpointed result
        for fam in (lg, xg):
            assert fam["n_trials"] == 2 and not fam["restored"]
            assert all(t["error"] is None and t["units_done"] >= 20 for t in fam["trials"])
            assert fam["challenger"]["params"] in [t["params"] for t in fam["trials"]]
        assert (run_dir / "tune" / "lgbm").is_dir() and (run_dir / "tune" / "xgboost").is_dir()

        # the running app picks the promoted version up by itself, in the same replica
        deadline = time.monotonic() + 30.0
        served = None
        while time.monotonic() < deadline:
            served = handle.predict.remote(request).result()["models"]["lgbm"]
            if served == challenger.version:
                break
            time.sleep(0.25)
        assert served == challenger.version
        after = replica.describe.remote().result()
        assert after["pid"] == pid and after["version"] == challenger.version
        assert after["load_errors"] == 0
    finally:
        serve.delete(APP)


def test_retrain_keeps_a_champion_that_scores_better_on_the_holdout(
    ray_cluster: Any, data: dict[str, Any]
) -> None:
    tmp, ds = data["tmp"], data["dataset"]
    # an honestly worse challenger: one boosting round at a learning rate of 1e-4 can only
    # predict about 1/3 per class; the champion is LightGBM trained as at first start
    cfg = _config(tmp, "keep", samples=1, boost_rounds=[1, 1], rounds_per_report=1,
                  boost_learning_rate=[1e-4, 1e-4])
    cfg = rt.retrain_config(cfg, families=["lgbm"])
    champion = train_models(cfg.with_overrides(models={"families": ["lgbm"]}),
                            console_progress=False, dataset=ds)["lgbm"]
    registry = ModelRegistry(cfg.models.registry_path)
    before = registry.ensemble()

    out = rt.run(cfg, dataset=ds, progress=False)["retrain"]

    lg = out["families"]["lgbm"]
    _, _, holdout = split_dataset(cfg, ds)
    assert lg["champion"]["holdout"]["log_loss"] == _holdout_loss(champion, holdout)
    assert lg["challenger"]["holdout"]["log_loss"] > lg["champion"]["holdout"]["log_loss"]
    assert not lg["promoted"] and lg["decision"].startswith("kept champion")
    assert lg["challenger"]["params"]["trees"] == 1
    assert lg["challenger"]["params"]["learning_rate"] == 1e-4
    assert registry.production("lgbm").version == champion.version
    assert registry.get("lgbm", lg["challenger"]["version"]).metrics["retrain"]["run_id"] == (
        out["run_id"]
    )
    assert out["promoted"] == [] and out["ensemble"] is None
    assert registry.ensemble() == before  # weights are refitted only after a promotion


def test_retrain_keeps_the_champion_when_the_gain_is_within_the_margin(
    ray_cluster: Any, data: dict[str, Any]
) -> None:
    tmp, ds = data["tmp"], data["dataset"]
    # a single-tree champion against a 20-tree challenger, with a margin no gain can clear
    # (3 classes: a log loss gain is at most the champion's own loss, about 1.1 here)
    cfg = _config(tmp, "margin", samples=1, boost_rounds=[20, 20], rounds_per_report=20,
                  boost_learning_rate=[0.1, 0.1], min_improvement=5.0)
    cfg = rt.retrain_config(cfg, families=["lgbm"])
    weak = train_models(cfg.with_overrides(models={"families": ["lgbm"], "lgbm_trees": 1}),
                        console_progress=False, dataset=ds)["lgbm"]
    registry = ModelRegistry(cfg.models.registry_path)

    out = rt.run(cfg, dataset=ds, progress=False)["retrain"]

    lg = out["families"]["lgbm"]
    champ_loss = lg["champion"]["holdout"]["log_loss"]
    assert lg["challenger"]["holdout"]["log_loss"] < champ_loss < 5.0  # better, within margin
    assert not lg["promoted"] and lg["decision"].startswith("kept champion")
    assert "margin 5" in lg["decision"]
    assert lg["min_improvement"] == out["min_improvement"] == 5.0
    assert registry.production("lgbm").version == weak.version and out["promoted"] == []


# --- resume -----------------------------------------------------------------------------------
class InterruptOnce(tune.Callback):
    """Send SIGINT (what Ctrl+C sends) to this process at the first checkpoint of a trial
    while another trial has already finished; once (a marker file), so the resumed run,
    which restores this callback with the experiment, runs to the end."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any,
                      **info: Any) -> None:
        finished = [t for t in trials if t.status == "TERMINATED"]
        if finished and trial not in finished and not os.path.exists(self.marker):
            Path(self.marker).write_text(json.dumps({"finished": finished[0].trial_id,
                                                     "interrupted": trial.trial_id}))
            os.kill(os.getpid(), signal.SIGINT)


def _rows(exp: Path) -> dict[str, list[dict]]:
    out = {}
    for trial_dir in exp.glob("train_trial_*"):
        lines = (trial_dir / "result.json").read_text().splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        out[rows[0]["trial_id"]] = rows
    return out


def test_an_interrupted_retrain_resumes_without_redoing_finished_trials(
    ray_cluster: Any, data: dict[str, Any]
) -> None:
    tmp, ds = data["tmp"], data["dataset"]
    # one trial at a time, four reports each, no early stopping (grace period = max reports)
    cfg = _config(tmp, "resume", boost_rounds=[40, 40], rounds_per_report=10,
                  max_concurrent_trials=1, grace_period=4)
    cfg = rt.retrain_config(cfg, families=["lgbm"])
    marker = tmp / "resume" / "interrupted.json"

    with pytest.raises(RetrainInterrupted) as info:
        rt.run(cfg, dataset=ds, progress=False, callbacks=[InterruptOnce(str(marker))])

    run_id = info.value.run_id
    storage = Path(cfg.run.runs_dir).resolve()
    assert not (storage / run_id / "retrain.json").exists()
    assert rt.unfinished_run(cfg, storage) == run_id
    which = json.loads(marker.read_text())
    exp = storage / run_id / "tune" / "lgbm"
    before = _rows(exp)
    assert before[which["finished"]][-1]["units_done"] == 40
    assert before[which["interrupted"]][-1]["units_done"] < 40

    out = rt.run(cfg, dataset=ds, progress=False, resume=True)["retrain"]

    assert out["run_id"] == run_id and (storage / run_id / "retrain.json").exists()
    lg = out["families"]["lgbm"]
    assert lg["restored"] and lg["n_trials"] == 2
    after = _rows(exp)
    assert set(after) == set(before)  # no new trial
    assert after[which["finished"]] == before[which["finished"]]  # not redone
    resumed = after[which["interrupted"]]
    assert resumed[-1]["units_done"] == 40
    assert resumed[-1]["resumed_from"] > 0  # it continued from its checkpoint
    assert {t["trial_id"]: t["units_done"] for t in lg["trials"]} == {
        which["finished"]: 40, which["interrupted"]: 40}


def test_resume_without_an_unfinished_run_is_an_error(data: dict[str, Any]) -> None:
    cfg = _config(data["tmp"], "nothing")
    code, _, err = _main(["--config", _write(cfg, data["tmp"] / "nothing.yaml"), "--resume"])
    assert code == 2
    assert f"an unfinished retrain-{cfg.hash()}-<n> run must exist" in err


# --- drift ------------------------------------------------------------------------------------
def _features_parquet(path: Path, x: np.ndarray, names: tuple[str, ...]) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {"valid": np.ones(len(x), dtype=bool), **{n: x[:, j] for j, n in enumerate(names)}}
    pq.write_table(pa.table(cols), path)
    return str(path)


def test_if_drift_skips_without_drift_and_retrains_when_a_feature_shifts(
    ray_cluster: Any, data: dict[str, Any]
) -> None:
    tmp, ds = data["tmp"], data["dataset"]
    cfg = _config(tmp, "drift", samples=1, boost_rounds=[20, 20])
    train_models(cfg.with_overrides(models={"families": ["lgbm"]}), console_progress=False,
                 dataset=ds)
    path = _write(cfg, tmp / "drift.yaml")
    train, _, _ = split_dataset(cfg, ds)
    names = ds.feature_names
    same = _features_parquet(tmp / "same.parquet", train.features, names)
    j = names.index("imbalance_l1")
    shifted_x = train.features.copy()
    shifted_x[:, j] += 5.0 * float(np.std(train.features[:, j]))
    shifted = _features_parquet(tmp / "shifted.parquet", shifted_x, names)
    argv = ["--config", path, "--families", "lgbm", "--if-drift", "--json"]
    # the same check from the CLI: exit 1 with drift, 0 without
    from typer.testing import CliRunner

    from cluster.cli import app

    cli = CliRunner()
    lgbm_only = _write(cfg.with_overrides(retrain={"families": ["lgbm"]}), tmp / "drift1.yaml")
    flagged = cli.invoke(app, ["models", "drift", "-c", lgbm_only, "--features", shifted])
    assert flagged.exit_code == 1, flagged.output
    assert "feature shift (lgbm)" in flagged.output and "imbalance_l1" in flagged.output
    calm = cli.invoke(app, ["models", "drift", "-c", lgbm_only, "--features", same, "--json"])
    assert calm.exit_code == 0, calm.output
    assert json.loads(calm.output)["drift"] is False

    code, out, err = _main([*argv, "--features", same])

    assert code == 0, err
    quiet = json.loads(out)
    assert quiet["retrained"] is False and quiet["retrain"] is None
    assert quiet["drift"]["features"]["lgbm"]["max_psi"] < 0.01
    assert "no drift" in err
    assert not list(Path(cfg.run.runs_dir).glob("retrain-*"))

    code, out, err = _main([*argv, "--features", shifted])

    assert code == 0, err
    loud = json.loads(out)
    assert loud["retrained"] is True
    assert loud["drift"]["families"] == ["lgbm"]
    assert loud["drift"]["features"]["lgbm"]["drifted"] == ["imbalance_l1"]
    assert "drift: feature shift (lgbm): 1 feature(s) with PSI > 0.25" in err
    run = loud["retrain"]
    assert list(run["families"]) == ["lgbm"] and run["drift"] == loud["drift"]
    saved = json.loads((Path(cfg.run.runs_dir) / run["run_id"] / "retrain.json").read_text())
    assert saved["drift"]["reasons"] == loud["drift"]["reasons"]
