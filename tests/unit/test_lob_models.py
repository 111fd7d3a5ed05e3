"""LOB model families (DeepLOB, Transformer, XGBoost) and the quality math of serve.evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.errors import ValidationError
from serve.evaluation import (
    apply_temperature,
    combine,
    confusion,
    expected_calibration_error,
    fit_temperature,
    fit_weights,
    log_loss,
    macro_f1,
    per_class_f1,
    report,
)
from serve.lob_models import LOB_MODEL_CLASSES, DeepLOBModel, TransformerModel, XGBModel

T = 12
TINY_DEEPLOB = {"conv_channels": 4, "inception_channels": 4, "lstm": 8}
TINY_TRANSFORMER = {"d_model": 16, "heads": 4, "layers": 2}
NAMES = tuple(f"f{i}" for i in range(6))


def book_windows(n: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Windows whose last level-1 ask volume decides the class: < -0.5 down, > 0.5 up."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n, T, 40)).astype(np.float32)
    v = w[:, -1, 1]
    return w, np.where(v > 0.5, 2, np.where(v < -0.5, 0, 1)).astype(np.int64)


def flat_features(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(NAMES))).astype(np.float32)
    return x, np.where(x[:, 0] > 0.5, 2, np.where(x[:, 0] < -0.5, 0, 1)).astype(np.int64)


@pytest.fixture(scope="module")
def deeplob() -> tuple[DeepLOBModel, np.ndarray]:
    w, y = book_windows()
    return DeepLOBModel.train(w, y, epochs=1, seed=3, batch_size=32, **TINY_DEEPLOB), w


@pytest.fixture(scope="module")
def transformer() -> tuple[TransformerModel, np.ndarray]:
    w, y = book_windows()
    return TransformerModel.train(w, y, epochs=1, seed=3, batch_size=32, **TINY_TRANSFORMER), w


@pytest.fixture(scope="module")
def xgboost() -> tuple[XGBModel, np.ndarray]:
    x, y = flat_features()
    return XGBModel.train(
        x[:500],
        y[:500],
        trees=30,
        seed=3,
        feature_names=NAMES,
        early_stopping=(x[500:], y[500:]),
        patience=5,
    ), x


# --- models -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["deeplob", "transformer"])
def test_window_model_predicts_rows_of_three_probabilities(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    model, w = request.getfixturevalue(fixture)

    p = model.predict_proba(None, w)

    assert p.shape == (len(w), 3) and p.dtype == np.float64
    assert np.allclose(p.sum(axis=1), 1.0) and (p >= 0).all()
    assert model.predict_proba(None, w[:0]).shape == (0, 3)


@pytest.mark.parametrize("fixture", ["deeplob", "transformer", "xgboost"])
def test_model_round_trip_through_files_gives_identical_probabilities(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    model, x = request.getfixturevalue(fixture)
    model.with_temperature(1.7)
    cls = LOB_MODEL_CLASSES[model.family]
    args = (x, None) if model.family == "xgboost" else (None, x)

    files = model.to_files()
    again = cls.from_files(files, model.params())

    assert files == model.to_files()  # deterministic bytes
    assert again.temperature == 1.7
    np.testing.assert_array_equal(again.predict_proba(*args), model.predict_proba(*args))
    model.with_temperature(1.0)


def test_deeplob_training_is_deterministic_for_a_seed() -> None:
    w, y = book_windows(48)

    a = DeepLOBModel.train(w, y, epochs=1, seed=5, batch_size=16, **TINY_DEEPLOB)
    b = DeepLOBModel.train(w, y, epochs=1, seed=5, batch_size=16, **TINY_DEEPLOB)

    np.testing.assert_array_equal(a.predict_proba(None, w), b.predict_proba(None, w))


def test_transformer_keeps_the_best_validation_epoch() -> None:
    w, y = book_windows(64)

    m = TransformerModel.train(
        w[:48],
        y[:48],
        epochs=2,
        seed=1,
        batch_size=16,
        validation=(w[48:], y[48:]),
        **TINY_TRANSFORMER,
    )

    assert m.params()["best_epoch"] in (1, 2)
    assert len(m.params()["val_log_loss_history"]) == 2


def test_balanced_loss_and_cosine_schedule_are_recorded_and_deterministic() -> None:
    w, y = book_windows(64)
    kw = dict(epochs=1, seed=2, batch_size=16, class_weight="balanced", lr_schedule="cosine")

    a = TransformerModel.train(w, y, **kw, **TINY_TRANSFORMER)
    b = TransformerModel.train(w, y, **kw, **TINY_TRANSFORMER)

    counts = np.bincount(y, minlength=3)
    cw = np.asarray(a.params()["class_weight"])
    assert a.params()["lr_schedule"] == "cosine"
    assert cw[counts.argmin()] > cw[counts.argmax()]  # the rarest class weighs most
    np.testing.assert_array_equal(a.predict_proba(None, w), b.predict_proba(None, w))


def test_balanced_training_picks_its_epoch_by_the_class_weighted_validation_loss() -> None:
    w, y = book_windows(64)

    m = DeepLOBModel.train(
        w[:48],
        y[:48],
        epochs=1,
        seed=4,
        batch_size=16,
        validation=(w[48:], y[48:]),
        class_weight="balanced",
        **TINY_DEEPLOB,
    )

    cw = np.asarray(m.params()["class_weight"])[y[48:]]
    p = m.predict_proba(None, w[48:])
    nll = -np.log(p[np.arange(16), y[48:]])
    assert m.params()["val_log_loss_history"][0] == pytest.approx(cw @ nll / cw.sum(), abs=1e-5)


def test_plain_training_keeps_its_params_keys() -> None:
    w, y = book_windows(32)

    m = DeepLOBModel.train(w, y, epochs=1, seed=1, batch_size=16, **TINY_DEEPLOB)

    assert "class_weight" not in m.params() and "lr_schedule" not in m.params()


def test_explicit_class_weights_are_used_and_bad_ones_rejected() -> None:
    w, y = book_windows(32)

    m = DeepLOBModel.train(w, y, epochs=1, seed=1, class_weight=[1.0, 0.5, 2.0], **TINY_DEEPLOB)

    assert m.params()["class_weight"] == [1.0, 0.5, 2.0]
    with pytest.raises(ValidationError, match="^class_weight must be"):
        DeepLOBModel.train(w, y, epochs=1, seed=1, class_weight="inverse", **TINY_DEEPLOB)
    with pytest.raises(ValidationError, match="^class_weight must be 3 finite weights > 0"):
        DeepLOBModel.train(w, y, epochs=1, seed=1, class_weight=[1.0, 0.0, 1.0], **TINY_DEEPLOB)
    with pytest.raises(ValidationError, match="^lr_schedule must be one of"):
        DeepLOBModel.train(w, y, epochs=1, seed=1, lr_schedule="step", **TINY_DEEPLOB)


def test_temperature_softens_the_window_model_probabilities(deeplob) -> None:
    model, w = deeplob
    sharp = model.predict_proba(None, w)

    soft = model.with_temperature(100.0).predict_proba(None, w)
    model.with_temperature(1.0)

    assert soft.max(axis=1).mean() < sharp.max(axis=1).mean()
    assert np.array_equal(soft.argmax(axis=1), sharp.argmax(axis=1))


def test_window_models_reject_bad_inputs(deeplob) -> None:
    model, w = deeplob

    with pytest.raises(ValidationError, match="windows must be"):
        model.predict_proba(None, w[:, :-1, :])
    with pytest.raises(ValidationError, match="windows must be"):
        model.predict_proba(np.zeros((2, 40)), None)
    with pytest.raises(ValidationError, match="arch must be"):
        DeepLOBModel.train(w, np.zeros(len(w), dtype=int), epochs=1, seed=1, width=3)
    with pytest.raises(ValidationError, match="labels must be"):
        DeepLOBModel.train(w, np.full(len(w), 3), epochs=1, seed=1, **TINY_DEEPLOB)


def test_xgboost_learns_a_separable_rule_and_stops_early(xgboost) -> None:
    model, x = xgboost
    _, y = flat_features()

    p = model.predict_proba(x, None)

    assert p.shape == (len(x), 3)
    assert np.mean(p.argmax(axis=1) == y) > 0.9
    assert 1 <= model.params()["best_iteration"] <= 30
    with pytest.raises(ValidationError, match="features must be"):
        model.predict_proba(x[:, :3], None)


# --- macro-F1 and friends ---------------------------------------------------------------------
def test_macro_f1_matches_a_hand_computed_case() -> None:
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    # class 0: P=2/2 R=2/3 F1=0.8; class 1: P=1/2 R=1/2 F1=0.5; class 2: P=1/2 R=1 F1=2/3

    assert macro_f1(y_true, y_pred) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert per_class_f1(y_true, y_pred) == pytest.approx([0.8, 0.5, 2 / 3])
    assert confusion(y_true, y_pred).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_macro_f1_averages_over_present_classes_unless_labels_given() -> None:
    assert macro_f1([0, 0, 1], [0, 0, 1]) == 1.0
    assert macro_f1([0, 0, 1], [0, 0, 1], labels=[0, 1, 2]) == pytest.approx(2 / 3)
    assert macro_f1([0, 1], [1, 0]) == 0.0
    assert macro_f1([], []) == 0.0


def test_macro_f1_rejects_mismatched_or_negative_labels() -> None:
    with pytest.raises(ValidationError, match="y_pred must be"):
        macro_f1([0, 1], [0])
    with pytest.raises(ValidationError, match="class ids >= 0"):
        macro_f1([0, -1], [0, 1])


labels_st = st.lists(st.integers(0, 2), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(labels_st)
def test_perfect_prediction_scores_one(y: list[int]) -> None:
    assert macro_f1(y, y) == 1.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=60),
    st.permutations([0, 1, 2]),
)
def test_macro_f1_is_invariant_to_renaming_the_classes(
    pairs: list[tuple[int, int]], perm: list[int]
) -> None:
    t = np.array([a for a, _ in pairs])
    p = np.array([b for _, b in pairs])
    m = np.array(perm)

    assert macro_f1(m[t], m[p]) == pytest.approx(macro_f1(t, p))


def test_report_gives_scaled_macro_f1_and_per_class_scores() -> None:
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])

    r = report(probs, [0, 1, 2, 2])

    assert r["macro_f1"] == pytest.approx(100 * (1 + 2 / 3 + 2 / 3) / 3, abs=1e-3)
    assert r["accuracy"] == 0.75 and r["n"] == 4
    assert set(r["f1"]) == {"down", "flat", "up"}


# --- calibration and weights ------------------------------------------------------------------
def test_temperature_above_one_is_fitted_for_over_confident_logits() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    hit = rng.random(2000) < 0.6  # right 60 % of the time ...
    pred = np.where(hit, y, (y + rng.integers(1, 3, 2000)) % 3)
    logits = np.zeros((2000, 3))
    logits[np.arange(2000), pred] = 8.0  # ... but ~100 % confident

    t = fit_temperature(logits, y, logits=True)
    calibrated = apply_temperature(logits, t, logits=True)

    assert t > 1.0
    assert log_loss(calibrated, y) < log_loss(apply_temperature(logits, 1.0, logits=True), y)
    assert expected_calibration_error(calibrated, y) < 0.05
    assert np.array_equal(calibrated.argmax(axis=1), pred)


def test_temperature_below_one_is_fitted_for_under_confident_probabilities() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 1000)
    probs = np.full((1000, 3), 0.3)
    probs[np.arange(1000), y] = 0.4  # always right, barely confident

    assert fit_temperature(probs, y) < 1.0
    with pytest.raises(ValidationError, match="temperature must be"):
        apply_temperature(probs, 0.0)


def _three_models(n: int = 3000) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Three noisy, differently informative forecasters of the same labels."""
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, n)
    out = {}
    for name, skill in (("good", 1.6), ("ok", 0.9), ("noise", 0.0)):
        z = rng.normal(size=(n, 3))
        z[np.arange(n), y] += skill
        out[name] = apply_temperature(z, 1.0, logits=True)
    return out, y


def test_fit_weights_returns_a_simplex_point_no_worse_than_best_single_or_equal() -> None:
    per_model, y = _three_models()

    w = fit_weights(per_model, y)

    assert list(w) == ["good", "ok", "noise"]
    assert all(v >= 0 for v in w.values()) and sum(w.values()) == pytest.approx(1.0, abs=1e-9)
    fitted = log_loss(combine(per_model, w), y)
    assert fitted <= min(log_loss(p, y) for p in per_model.values()) + 1e-9
    assert fitted <= log_loss(combine(per_model, dict.fromkeys(per_model, 1.0)), y) + 1e-9
    assert w["good"] > w["ok"] > w["noise"]
    assert fit_weights(per_model, y) == w  # deterministic


def test_fit_weights_handles_one_model_and_rejects_bad_shapes() -> None:
    per_model, y = _three_models(100)

    assert fit_weights({"good": per_model["good"]}, y) == {"good": 1.0}
    with pytest.raises(ValidationError, match="per_model must be"):
        fit_weights({}, y)
    with pytest.raises(ValidationError, match="rows like the labels"):
        fit_weights({"a": per_model["good"][:50]}, y)
