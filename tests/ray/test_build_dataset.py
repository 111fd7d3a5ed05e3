"""The build_dataset job end to end: the smallest recorded Binance session plus 60 s of the
simulator, replayed as Ray tasks on the session's local cluster, through ``main``."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.book.features import feature_spec
from actors.core.errors import ValidationError
from jobs import build_dataset as bd
from jobs.bench import BINANCE_DATA, BINANCE_SESSIONS
from tests.conftest import small_config

pytestmark = pytest.mark.ray

HORIZONS = (10, 20, 50)


def _smallest_session() -> str | None:
    sizes = {
        n: sum((BINANCE_DATA / f).stat().st_size for f in fs)
        for n, fs in BINANCE_SESSIONS.items()
        if all((BINANCE_DATA / f).exists() for f in fs)
    }
    return min(sizes, key=sizes.__getitem__) if sizes else None


@pytest.fixture(scope="module")
def built(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the job once: (manifest printed by --json, run folder, config, session name)."""
    session = _smallest_session()
    if session is None:
        pytest.skip(f"no Binance recordings under {BINANCE_DATA}")
    tmp = tmp_path_factory.mktemp("dataset")
    cfg = small_config(tmp)
    cfg_path = tmp / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    storage = tmp / "store"
    out, err = io.StringIO(), io.StringIO()
    argv = [
        "--config",
        str(cfg_path),
        "--source",
        "binance",
        "sim",
        "--sessions",
        session,
        "--sim-seconds",
        "60",
        "--horizons",
        *map(str, HORIZONS),
        "--storage",
        str(storage),
        "--json",
    ]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = bd.main(argv)
    assert code == 0, err.getvalue()
    manifest = json.loads(out.getvalue())
    return {
        "manifest": manifest,
        "dir": storage / manifest["run_id"],
        "cfg": cfg,
        "session": session,
        "stderr": err.getvalue(),
        "storage": storage,
    }


def test_job_writes_every_output_under_a_run_id_derived_from_its_config(built: dict) -> None:
    m, run_dir = built["manifest"], built["dir"]
    specs = [
        *bd.discover_sessions("binance", [built["session"]]),
        *bd.discover_sessions("sim", sim_seconds=60.0),
    ]
    expected_hash = bd.dataset_hash(built["cfg"], specs, sorted(HORIZONS), bd.QualityRules())

    assert re.fullmatch(r"dataset-[0-9a-f]{12}-1", m["run_id"])
    assert m["run_id"] == f"dataset-{expected_hash}-1"
    assert m["config_hash"] == built["cfg"].hash()
    for name in (
        "features.parquet",
        "books.npy",
        "labels.parquet",
        "quality.json",
        "manifest.json",
    ):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "manifest.json").read_text())["run_id"] == m["run_id"]
    assert f"{built['session']} done" in built["stderr"] and "sim done" in built["stderr"]


def test_features_books_and_labels_have_the_same_rows_and_keys(built: dict) -> None:
    run_dir, cfg = built["dir"], built["cfg"]
    feats = pq.read_table(run_dir / "features.parquet").to_pandas()
    labels = pq.read_table(run_dir / "labels.parquet").to_pandas()
    books = np.load(run_dir / "books.npy", mmap_mode="r")
    names = list(feature_spec(cfg.features)[0])

    assert len(feats) == len(labels) == books.shape[0] == built["manifest"]["counts"]["rows"]
    assert books.shape[1:] == (cfg.features.book_window, 40)
    assert list(feats.columns) == [*bd.KEYS, *names, "mid"]
    for key in ("session", "symbol", "ts_event", "decision_id"):
        assert (feats[key].to_numpy() == labels[key].to_numpy()).all(), key
    assert set(feats["session"]) == {built["session"], "sim"}
    assert feats.groupby("session")["symbol"].nunique().to_dict() == {
        built["session"]: 1,
        "sim": len(cfg.instruments),
    }
    assert feats["valid"].sum() > 0.9 * len(feats)
    assert np.isfinite(feats.loc[feats["valid"], names].to_numpy()).all()


def test_labels_match_a_recomputation_from_the_mids(built: dict) -> None:
    run_dir, flat = built["dir"], built["cfg"].models.flat_threshold_bps
    feats = pq.read_table(run_dir / "features.parquet").to_pandas()
    labels = pq.read_table(run_dir / "labels.parquet").to_pandas()

    for (_sess, _sym), idx in feats.groupby(["session", "symbol"], sort=False).groups.items():
        mids = feats.loc[idx, "mid"].to_numpy()
        seq = [int(d.rsplit("-", 1)[1]) for d in feats.loc[idx, "decision_id"]]
        assert seq == list(range(1, len(seq) + 1))  # every decision, in replay order
        for h in HORIZONS:
            want_ret = [
                (mids[i + h] / mids[i] - 1) * 1e4 if i + h < len(mids) else None
                for i in range(len(mids))
            ]
            want_lab = [
                None if r is None else (1 if r > flat else -1 if r < -flat else 0) for r in want_ret
            ]
            got_ret = labels.loc[idx, f"ret_bps_h{h}"].to_numpy(dtype=float, na_value=np.nan)
            got_lab = (
                labels.loc[idx, f"label_h{h}"]
                .astype("Float64")
                .to_numpy(dtype=float, na_value=np.nan)
            )
            assert np.isnan(got_ret[-h:]).all() and np.isnan(got_lab[-h:]).all()
            np.testing.assert_allclose(got_ret[:-h], np.array(want_ret[:-h], float), rtol=1e-9)
            assert got_lab[:-h].tolist() == [float(v) for v in want_lab[:-h]]


def test_quality_report_has_every_field_for_every_session_and_symbol(built: dict) -> None:
    quality = json.loads((built["dir"] / "quality.json").read_text())
    feats = pq.read_table(built["dir"] / "features.parquet").to_pandas()

    assert set(quality) == {built["session"], "sim"}
    for sess, by_sym in quality.items():
        for sym, q in by_sym.items():
            assert set(bd.QUALITY_FIELDS) <= set(q), (sess, sym)
            assert q["decisions"] == ((feats["session"] == sess) & (feats["symbol"] == sym)).sum()
            assert q["rows"] >= q["batches"] >= q["decisions"] > 0
            assert set(q["clock_skew"]) == {
                "count",
                "p50_ms",
                "p99_ms",
                "max_ms",
                "min_ms",
                "negatives",
            }
            assert q["clock_skew"]["count"] == q["rows"]
            assert {"count", "max_ms", "threshold_ms"} <= set(q["gaps"])
            assert {"total", "by_kind"} <= set(q["quarantines"])
            assert {"count", "robust_sigma_bps"} <= set(q["outliers"])
    (binance,) = quality[built["session"]].values()
    assert {"diffs", "gaps", "dropped_stale", "rejected"} <= set(binance["feed"])


def test_run_ids_count_up_and_a_bad_run_id_is_refused(tmp_path: Path) -> None:
    first = bd.reserve_run_dir("dataset-abc-", tmp_path)
    second = bd.reserve_run_dir("dataset-abc-", tmp_path)

    code = bd.main(
        ["--source", "sim", "--run-id", "../escape", "--storage", str(tmp_path), "--quiet"]
    )

    assert (first, second) == ("dataset-abc-1", "dataset-abc-2")
    assert code == 2
    with pytest.raises(ValidationError, match="sessions"):
        bd.discover_sessions("binance", ["no-such-session"])


@settings(max_examples=50, deadline=None)
@given(
    mids=st.lists(st.floats(1.0, 1e6), min_size=1, max_size=40),
    h=st.integers(1, 10),
    flat=st.floats(0.0, 5.0),
)
def test_labels_are_the_sign_of_the_forward_return_beyond_the_flat_band(
    mids: list[float], h: int, flat: float
) -> None:
    out = bd.label_columns(np.array(mids), [h], flat)

    ret, lab = out[f"ret_bps_h{h}"], out[f"label_h{h}"]
    defined = np.arange(len(mids)) < len(mids) - h
    assert (np.isfinite(ret) == defined).all() and (np.isfinite(lab) == defined).all()
    want = np.where(ret[defined] > flat, 1, np.where(ret[defined] < -flat, -1, 0))
    assert (lab[defined] == want).all()
