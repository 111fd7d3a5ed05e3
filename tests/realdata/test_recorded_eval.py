"""Recorded Binance sessions as labelled samples (serve.recorded) and the evaluation job."""

from __future__ import annotations

import json

import numpy as np
import pytest

from actors.core.batch import BID, DELTA, F_LAST, empty_rows
from actors.core.errors import ValidationError
from jobs.bench import BINANCE_DATA, BINANCE_SESSIONS
from serve.dataset import label_returns
from serve.recorded import batches_by_time, build_recorded_sets, split_sessions
from tests.conftest import small_config

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not BINANCE_DATA.exists(), reason=f"real data {BINANCE_DATA} is absent"),
]
SESSION = "usdm-btc-0808"


def rows_at(ts: list[int], last: list[bool]) -> np.ndarray:
    r = empty_rows(len(ts))
    for i, (t, end) in enumerate(zip(ts, last, strict=True)):
        r[i] = (t, t, i + 1, DELTA, BID, 100, 1.0, F_LAST if end else 0, 0)
    return r


def test_batches_end_at_message_boundaries_and_cover_every_row() -> None:
    rows = rows_at([0, 5, 12, 14, 15, 31, 33, 35], [True, True, False, False, True, True, False,
                                                    False])

    out = batches_by_time(rows, 10)

    np.testing.assert_array_equal(np.concatenate(out), rows)
    # [0, 5] close the first 10 ns; the message 12-15 closes the second; 31 the fourth; the
    # trailing unfinished message is its own batch
    assert [b["ts_event"].tolist() for b in out] == [[0, 5], [12, 14, 15], [31], [33, 35]]
    assert all(b["flags"][-1] & F_LAST for b in out[:-1])
    with pytest.raises(ValidationError, match="interval_ns must be > 0"):
        batches_by_time(rows, 0)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory):
    cfg = small_config(tmp_path_factory.mktemp("rec"))
    files = {SESSION: [BINANCE_DATA / f for f in BINANCE_SESSIONS[SESSION]]}
    return cfg, build_recorded_sets(cfg, files, [5, 20])


def test_recorded_session_gives_labelled_samples_from_the_live_engines(recorded) -> None:
    cfg, sets = recorded
    a, b = sets[5], sets[20]

    assert len(a) > 3_000 and len(b) == len(a) - 15  # 15 more at the end have no label
    assert set(a.symbols) == {SESSION}
    assert a.features.shape[1] == len(a.feature_names)
    assert a.windows.shape[1:] == (cfg.features.window, len(a.feature_names))
    assert a.books.shape[1:] == (cfg.features.book_window, 40)
    # decision times are the batch's last exchange time: a trade's T can be a few ms before
    # the previous depth event's E, so rare small inversions are real
    assert np.count_nonzero(np.diff(a.ts_event) < 0) <= len(a) // 1000
    assert np.all(a.label_ts_event > a.ts_event)
    np.testing.assert_array_equal(a.labels, label_returns(a.returns_bps, 0.0))
    # real BTC moves both ways within 5 decisions (0.5 s)
    assert set(np.unique(a.labels)) == {0, 1, 2}


def test_book_windows_are_priced_around_each_decisions_own_mid(recorded) -> None:
    _cfg, sets = recorded
    a = sets[5]

    newest = a.books[:, -1, :]

    # ask 1 and bid 1 straddle the mid symmetrically; the book is never crossed
    np.testing.assert_allclose((newest[:, 0] + newest[:, 2]) / 2, 0.0, atol=1e-3)
    assert np.all(newest[:, 0] > 0) and np.all(newest[:, 2] < 0)
    assert np.all(np.diff(newest[:, 0::4], axis=1) > 0)  # asks rise level by level
    # a label of "up" means the mid rose: the forward return is the label's sign
    up = a.labels == 2
    assert np.all(a.returns_bps[up] > 0) and np.all(a.returns_bps[a.labels == 0] < 0)


def test_split_keeps_each_session_in_time_order_with_labels_purged(recorded) -> None:
    _cfg, sets = recorded
    data = sets[20]

    train, calib, holdout = split_sessions(data)

    assert len(train) and len(calib) and len(holdout)
    assert train.label_ts_event.max() < calib.ts_event.min()
    assert calib.label_ts_event.max() < holdout.ts_event.min()
    assert len(train) + len(calib) + len(holdout) < len(data)  # purged at the cuts
    with pytest.raises(ValidationError, match="train, calibration"):
        split_sessions(data, 0.8, 0.3)


def test_eval_job_reports_every_family_and_the_ensemble(tmp_path, capsys) -> None:
    from jobs.binance_eval import main

    cfg = small_config(tmp_path).with_overrides(
        models={"lgbm_trees": 20, "xgb_trees": 20, "lob_width": 4, "torch_hidden": 8}
    )
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(cfg.model_dump(mode="json")))

    code = main(["--config", str(path), "--sessions", SESSION, "--horizons", "10",
                 "--epochs", "1", "--json", "--quiet"])

    assert code == 0
    out = json.loads(capsys.readouterr().out)
    rep = out["horizons"]["10"]
    assert set(rep["models"]) == set(cfg.models.families)
    assert rep["n"]["train"] > rep["n"]["holdout"] > 0
    assert 0 < rep["ensemble"]["macro_f1"] <= 1 and rep["best_single"] in rep["models"]
    assert all(0 < s["macro_f1_rule"] <= 1 for s in rep["models"].values())
    assert isinstance(rep["ensemble_beats_best_single_macro_f1_rule"], bool)
    assert abs(sum(rep["weights"].values()) - 1) < 1e-6
    with pytest.raises(SystemExit):  # argparse refuses an unknown session name
        main(["--sessions", "nope"])


def test_risk_backtest_reports_every_method_on_real_and_simulated_returns(capsys) -> None:
    from typer.testing import CliRunner

    from cluster.cli import app

    result = CliRunner().invoke(app, ["risk", "backtest", "--json", "--sim-seconds", "60",
                                      "--window", "100"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out["series"]) >= {f"binance-{SESSION}", "simulator-BTCUSDT"}
    real = out["series"][f"binance-{SESSION}"]
    assert real["periods"] > 3_000
    for b in real["methods"].values():
        assert b["days"] == real["periods"] - 100 and 0 <= b["exceptions"] <= b["days"]
        assert 0 <= b["kupiec"]["p_value"] <= 1 and b["basel_zone"] in ("green", "yellow", "red")
    # fat tails: the normal model is exceeded more often than the historical one
    assert real["methods"]["normal"]["exceptions"] > real["methods"]["historical"]["exceptions"]
