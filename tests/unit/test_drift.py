"""Drift math (serve/drift.py) with known answers, the journal labelling, and the registry's
stored drift reference."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from actors.core.errors import ValidationError
from actors.journal.journal import Journal, read_journal
from serve.drift import (
    EPS,
    DriftThresholds,
    accuracy_decay,
    bin_shares,
    check_drift,
    feature_drift,
    journal_outcomes,
    ks_binned,
    psi,
    quantile_edges,
    read_features_parquet,
    reference_histograms,
)
from serve.registry import DRIFT_REFERENCE_FILE, ModelRegistry


# --- PSI / KS ---------------------------------------------------------------------------------
def test_psi_of_two_known_share_vectors() -> None:
    expected = 0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(expected, rel=1e-12)
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(psi([0.9, 0.1], [0.5, 0.5]))


def test_psi_is_zero_for_identical_shares_and_clips_empty_bins() -> None:
    assert psi([0.2, 0.3, 0.5, 0.0], [0.2, 0.3, 0.5, 0.0]) == 0.0
    # an empty reference bin counts as EPS, not zero (finite PSI)
    want = (1.0 - EPS) * math.log(1.0 / EPS) + (EPS - 1.0) * math.log(EPS / 1.0)
    assert psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(want)


def test_psi_rejects_vectors_of_different_lengths() -> None:
    with pytest.raises(ValidationError, match="actual"):
        psi([0.5, 0.5], [1.0])


def test_ks_binned_is_the_largest_cdf_gap() -> None:
    assert ks_binned([0.25, 0.25, 0.5], [0.5, 0.25, 0.25]) == pytest.approx(0.25)
    assert ks_binned([0.1, 0.9], [0.1, 0.9]) == 0.0
    assert ks_binned([1.0, 0.0, 0.0], [0.0, 0.0, 1.0]) == pytest.approx(1.0)


def test_bin_shares_put_values_on_an_edge_in_the_lower_bin() -> None:
    assert bin_shares(np.array([0.0, 1.0, 2.0, 3.0]), [1.0, 2.5]).tolist() == [0.5, 0.25, 0.25]
    assert bin_shares(np.array([np.nan, 5.0]), [1.0]).tolist() == [0.0, 1.0]
    assert bin_shares(np.array([np.nan]), [1.0]).tolist() == [0.0, 0.0]


def test_quantile_edges_split_a_continuous_feature_into_equal_shares() -> None:
    x = np.random.default_rng(0).normal(size=100_000)
    shares = bin_shares(x, quantile_edges(x, 10))
    np.testing.assert_allclose(shares, 0.1, atol=1e-4)
    assert quantile_edges(np.arange(100.0), 4).tolist() == [24.75, 49.5, 74.25]


def test_quantile_edges_collapse_on_a_discrete_feature() -> None:
    x = np.array([0.0] * 90 + [1.0] * 10)
    edges = quantile_edges(x, 10)
    # deciles 1..8 are all 0; the 9th interpolates between x[89] = 0 and x[90] = 1
    assert edges.tolist() == pytest.approx([0.0, 0.1])
    assert bin_shares(x, edges).tolist() == pytest.approx([0.9, 0.0, 0.1])


# --- feature drift ----------------------------------------------------------------------------
def _normal(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 3))
    x[:, 1] += shift
    return x


def test_feature_drift_finds_the_shifted_feature_with_the_psi_of_a_one_sigma_shift() -> None:
    names = ("a", "b", "c")
    ref = reference_histograms(_normal(50_000, 1), names, bins=10)
    out = feature_drift(ref, _normal(50_000, 2, shift=1.0), names, psi_threshold=0.25)
    # PSI of N(0,1) vs N(1,1) is the J-divergence delta**2 = 1 before binning; ten quantile
    # bins keep most of it (the analytic binned value is 0.926)
    assert out["per_feature"]["b"]["psi"] == pytest.approx(0.926, abs=0.03)
    assert out["per_feature"]["a"]["psi"] < 0.01
    assert out["per_feature"]["c"]["psi"] < 0.01
    assert out["drifted"] == ["b"]
    assert out["max_psi"] == out["per_feature"]["b"]["psi"]
    # the binned KS of a one-sigma shift: max |Phi(x) - Phi(x - 1)| = 2 Phi(0.5) - 1 = 0.383
    assert out["per_feature"]["b"]["ks"] == pytest.approx(0.383, abs=0.02)


def test_feature_drift_of_the_same_distribution_is_below_any_threshold() -> None:
    names = ("a", "b", "c")
    ref = reference_histograms(_normal(20_000, 3), names)
    out = feature_drift(ref, _normal(20_000, 4), names, psi_threshold=0.1)
    assert out["drifted"] == []
    assert out["max_psi"] < 0.01
    assert out["n"] == 20_000 and out["n_reference"] == 20_000


def test_feature_drift_names_a_missing_column() -> None:
    ref = reference_histograms(_normal(100, 1), ("a", "b", "c"))
    with pytest.raises(ValidationError, match="missing \\['c'\\]"):
        feature_drift(ref, _normal(100, 2)[:, :2], ("a", "b"), 0.25)


def test_reference_histograms_are_json_ready_and_record_nonfinite_share() -> None:
    x = _normal(1_000, 5)
    x[:100, 0] = np.nan
    ref = reference_histograms(x, ("a", "b", "c"), bins=5)
    assert ref["bins"] == 5 and ref["n"] == 1_000
    assert ref["features"]["a"]["nonfinite"] == pytest.approx(0.1)
    assert len(ref["features"]["b"]["edges"]) == 4
    assert sum(ref["features"]["b"]["shares"]) == pytest.approx(1.0)


def test_read_features_parquet_keeps_valid_rows_of_named_columns(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"valid": [True, False, True], "a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]})
    pq.write_table(table, tmp_path / "features.parquet")
    x = read_features_parquet(tmp_path / "features.parquet", ["b", "a"])
    assert x.tolist() == [[4.0, 1.0], [6.0, 3.0]]
    with pytest.raises(ValidationError, match="missing \\['z'\\]"):
        read_features_parquet(tmp_path / "features.parquet", ["a", "z"])


# --- accuracy decay ---------------------------------------------------------------------------
def _marks(ts: int, mids: dict[str, int | None]) -> dict:
    return {"type": "MarketMarks", "ts_event": ts, "ts_init": ts, "mids": mids, "tops": {}}


def _decision(sym: str, probs: list[float], models: dict | None = None) -> dict:
    return {"type": "DecisionMade", "symbol": sym, "probs": probs, "decision_id": f"{sym}-x",
            "models": {"lgbm": "abc"} if models is None else models}


def test_journal_outcomes_label_each_decision_with_the_mid_k_steps_later(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.log", fsync=False)
    mids = [100, 101, 101, 99, 99]  # BTC; ETH stays at 50 and is missing at step 3
    for t, m in enumerate(mids):
        eth = None if t == 3 else 50
        j.append([
            _marks(t, {"BTC": m, "ETH": eth}),
            _decision("BTC", [0.1, 0.2, 0.7]),
            _decision("ETH", [0.2, 0.6, 0.2]),
            _decision("BTC", [0.0, 1.0, 0.0], models={}),  # a fallback: not scored
        ])
    j.close()
    out = journal_outcomes((r for _, r in read_journal(tmp_path / "journal.log")), 2, 0.0)
    # BTC: step 0 -> 2: 100 -> 101 up; 1 -> 3: 101 -> 99 down; 2 -> 4: 101 -> 99 down
    # ETH: 0 -> 2 flat; 1 -> 3 mid missing (censored); 2 -> 4 flat; steps 3, 4 run past the end
    assert out.symbols.tolist() == ["BTC", "ETH", "BTC", "BTC", "ETH"]
    assert out.labels.tolist() == [2, 1, 0, 0, 1]
    assert out.returns_bps[0] == pytest.approx(100.0)
    assert out.censored == 1 + 4  # ETH step 1, and steps 3 and 4 of both (past the end)
    assert out.without_models == 5
    assert out.models == {"lgbm:abc": 5}
    assert out.probs.shape == (5, 3)


def test_journal_outcomes_apply_the_flat_threshold() -> None:
    recs = [_marks(0, {"S": 10_000}), _decision("S", [0.3, 0.4, 0.3]),
            _marks(1, {"S": 10_001}), _decision("S", [0.3, 0.4, 0.3]),
            _marks(2, {"S": 10_100})]
    out = journal_outcomes(recs, 1, flat_threshold_bps=1.5)
    assert out.labels.tolist() == [1, 2]  # +1 bps is flat at 1.5 bps; +98.9 bps is up


def test_accuracy_decay_scores_the_latest_window_against_the_reference() -> None:
    good = np.tile([0.8, 0.1, 0.1], (6, 1))
    labels = np.array([0, 0, 0, 0, 1, 1])  # the last two are wrong
    out = accuracy_decay(good, labels, {"accuracy": 0.9, "log_loss": 0.5}, window=4)
    assert out["n"] == 6
    assert out["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    assert out["log_loss"] == pytest.approx(-(4 * math.log(0.8) + 2 * math.log(0.1)) / 6,
                                            abs=1e-6)
    assert [w["end"] for w in out["rolling"]] == [2, 6]
    latest = -(2 * math.log(0.8) + 2 * math.log(0.1)) / 4
    assert out["latest"] == {"n": 4, "accuracy": 0.5, "log_loss": pytest.approx(latest, abs=1e-6)}
    assert out["log_loss_increase"] == pytest.approx(latest - 0.5, abs=1e-6)
    assert out["accuracy_drop"] == pytest.approx(0.4, abs=1e-6)


def test_accuracy_decay_of_no_decision_has_no_scores() -> None:
    out = accuracy_decay(np.empty((0, 3)), np.empty(0, dtype=int), None, window=10)
    assert out["n"] == 0 and out["latest"]["accuracy"] is None and out["rolling"] == []


# --- the decision -----------------------------------------------------------------------------
def _outcomes(probs: np.ndarray, labels: np.ndarray):  # noqa: ANN202 - test helper
    from serve.drift import JournalOutcomes

    return JournalOutcomes(probs=probs, labels=labels, returns_bps=np.zeros(len(labels)),
                           symbols=np.array(["S"] * len(labels), dtype=object))


def test_check_drift_reports_accuracy_decay_with_values_and_threshold() -> None:
    n = 300
    labels = np.arange(n) % 3
    uniform = np.full((n, 3), 1.0 / 3.0)
    rep = check_drift(
        DriftThresholds(log_loss_increase=0.05, accuracy_drop=0.5, window=100, min_samples=100),
        outcomes=_outcomes(uniform, labels),
        score_reference={"accuracy": 0.45, "log_loss": 1.0},
    )
    assert rep.drift
    assert len(rep.reasons) == 1 and "log loss 1.0986" in rep.reasons[0]
    assert "+0.0986" in rep.reasons[0] and "threshold 0.05" in rep.reasons[0]
    assert rep.families == []


def test_check_drift_skips_checks_without_enough_data_or_a_reference() -> None:
    rep = check_drift(
        DriftThresholds(min_samples=500),
        references={"lgbm": None},
        features=_normal(1_000, 1),
        names=("a", "b", "c"),
        outcomes=_outcomes(np.full((10, 3), 1 / 3), np.zeros(10, dtype=int)),
        score_reference={"accuracy": 0.9, "log_loss": 0.2},
    )
    assert not rep.drift
    assert rep.skipped == [
        "features: lgbm production model has no drift reference",
        "accuracy: 10 labelled decisions < min_samples 500",
    ]


def test_check_drift_names_the_family_whose_features_shifted() -> None:
    names = ("a", "b", "c")
    ref = reference_histograms(_normal(5_000, 1), names)
    rep = check_drift(DriftThresholds(psi=0.25, min_samples=100),
                      references={"lgbm": ref, "gru": ref},
                      features=_normal(5_000, 2, shift=2.0), names=names)
    assert rep.drift and rep.families == ["lgbm", "gru"]
    assert "feature shift (lgbm): 1 feature(s) with PSI > 0.25" in rep.reasons[0]
    assert rep.to_dict()["features"]["gru"]["drifted"] == ["b"]


# --- the registry's stored reference ----------------------------------------------------------
def test_registry_stores_the_drift_reference_beside_the_version(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    ref = reference_histograms(_normal(200, 1), ("a", "b", "c"), bins=4)
    plain = reg.save("lgbm", {"model.txt": b"m1"})
    assert plain.drift_reference() is None
    other = ModelRegistry(tmp_path / "other").save(
        "lgbm", {"model.txt": b"m1"}, drift_reference=ref
    )
    assert other.version == plain.version  # not part of the content hash
    assert other.drift_reference() == ref
    assert DRIFT_REFERENCE_FILE not in other.files
    # saving the same bytes again adds a reference to a version that had none
    assert reg.save("lgbm", {"model.txt": b"m1"}, drift_reference=ref).drift_reference() == ref
    with pytest.raises(ValueError, match=DRIFT_REFERENCE_FILE):
        reg.save("lgbm", {DRIFT_REFERENCE_FILE: b"x"})
