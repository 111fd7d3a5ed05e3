"""The macro-F1 decision rule and the macro-F1 ensemble weights of serve.evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.errors import ValidationError
from serve.evaluation import (
    apply_temperature,
    combine,
    fit_class_bias,
    fit_weights,
    fit_weights_f1,
    macro_f1,
    predict_with_bias,
    report,
)


def skewed(n: int = 2_000, skill: float = 0.8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of a weak model on a 20/60/20 split that over-predicts the majority."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.2, 0.6, 0.2])
    z = rng.normal(size=(n, 3))
    z[np.arange(n), y] += skill
    z[:, 1] += 1.0
    return apply_temperature(z, 1.0, logits=True), y


def f1(y: np.ndarray, pred: np.ndarray) -> float:
    return macro_f1(y, pred, labels=range(3))


# --- predict_with_bias ------------------------------------------------------------------------
def test_zero_bias_is_the_arg_max_and_a_common_shift_changes_nothing() -> None:
    p, _ = skewed(500)

    plain = predict_with_bias(p, np.zeros(3))
    shifted = predict_with_bias(p, [0.25, -0.5, 0.75])

    np.testing.assert_array_equal(plain, p.argmax(axis=1))
    np.testing.assert_array_equal(shifted, predict_with_bias(p, [1.25, 0.5, 1.75]))


def test_predict_with_bias_rejects_a_bias_of_the_wrong_shape_or_not_finite() -> None:
    p, _ = skewed(10)

    with pytest.raises(ValidationError, match=r"^bias must be of shape \(3,\)"):
        predict_with_bias(p, [0.0, 1.0])
    with pytest.raises(ValidationError, match="^bias must be finite"):
        predict_with_bias(p, [0.0, np.nan, 0.0])
    with pytest.raises(ValidationError, match="^probs must be >= 0"):
        predict_with_bias(-p, np.zeros(3))


# --- fit_class_bias ---------------------------------------------------------------------------
def test_rule_raises_macro_f1_of_a_model_that_over_predicts_the_majority() -> None:
    p, y = skewed()

    b = fit_class_bias(p, y)

    assert f1(y, predict_with_bias(p, b)) > f1(y, p.argmax(axis=1)) + 0.01
    assert b[1] < min(b[0], b[2])  # it leans away from "flat"


def test_rule_generalises_to_fresh_data_from_the_same_model() -> None:
    p_val, y_val = skewed(seed=1)
    p_test, y_test = skewed(seed=2)

    b = fit_class_bias(p_val, y_val)

    assert f1(y_test, predict_with_bias(p_test, b)) > f1(y_test, p_test.argmax(axis=1))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 300),
    seed=st.integers(0, 10_000),
    skill=st.floats(0.0, 3.0),
)
def test_rule_never_lowers_macro_f1_on_the_data_it_was_fitted_on(
    n: int, seed: int, skill: float
) -> None:
    p, y = skewed(n, skill, seed)

    b = fit_class_bias(p, y)

    assert f1(y, predict_with_bias(p, b)) >= f1(y, p.argmax(axis=1)) - 1e-12


def test_fitted_rule_is_a_coordinate_optimum_no_grid_value_beats() -> None:
    p, y = skewed(1_500, seed=3)
    b = fit_class_bias(p, y)
    fitted = f1(y, predict_with_bias(p, b))

    for c in range(3):
        for g in np.linspace(-4.0, 4.0, 161):
            moved = b.copy()
            moved[c] = g
            assert f1(y, predict_with_bias(p, moved)) <= fitted + 1e-12


def test_rule_is_deterministic_and_zero_for_empty_input() -> None:
    p, y = skewed(800, seed=4)

    np.testing.assert_array_equal(fit_class_bias(p, y), fit_class_bias(p.copy(), y.copy()))
    np.testing.assert_array_equal(fit_class_bias(np.empty((0, 3)), []), np.zeros(3))


def test_rule_respects_its_bound() -> None:
    p, y = skewed(800, seed=5)

    b = fit_class_bias(p, y, max_abs=0.1)

    assert np.all(np.abs(b) <= 0.1)


def test_rule_rejects_bad_inputs_naming_the_field() -> None:
    p, y = skewed(50)

    with pytest.raises(ValidationError, match="^probs must be of 50 rows like the labels"):
        fit_class_bias(p[:40], y)
    with pytest.raises(ValidationError, match="^y must be a 1-D array"):
        fit_class_bias(p, y.reshape(5, 10))
    with pytest.raises(ValidationError, match="^y must be < K 3"):
        fit_class_bias(p, np.full(50, 3))
    with pytest.raises(ValidationError, match="^probs must be finite"):
        fit_class_bias(np.full((50, 3), np.nan), y)
    with pytest.raises(ValidationError, match="^max_rounds must be >= 1"):
        fit_class_bias(p, y, max_rounds=0)
    with pytest.raises(ValidationError, match="^max_abs must be finite and > 0"):
        fit_class_bias(p, y, max_abs=0.0)


def test_report_scores_the_rule_decision_but_the_same_probabilities() -> None:
    p, y = skewed(seed=6)
    b = fit_class_bias(p, y)

    plain, ruled = report(p, y), report(p, y, bias=b)

    assert ruled["macro_f1"] == round(100 * f1(y, predict_with_bias(p, b)), 3)
    assert ruled["macro_f1"] > plain["macro_f1"]
    assert (ruled["log_loss"], ruled["ece"]) == (plain["log_loss"], plain["ece"])


# --- fit_weights_f1 ---------------------------------------------------------------------------
def _members(n: int = 1_500) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(11)
    y = rng.choice(3, size=n, p=[0.25, 0.5, 0.25])
    out = {}
    for name, skill in (("good", 1.2), ("ok", 0.8), ("noise", 0.0)):
        z = rng.normal(size=(n, 3))
        z[np.arange(n), y] += skill
        z[:, 1] += 0.7
        out[name] = apply_temperature(z, 1.0, logits=True)
    return out, y


def test_f1_weights_beat_every_member_under_its_own_rule_on_validation() -> None:
    per_model, y = _members()

    w, b, val_f1 = fit_weights_f1(per_model, y, steps=5)

    assert list(w) == ["good", "ok", "noise"] and sum(w.values()) == pytest.approx(1.0)
    assert val_f1 == pytest.approx(f1(y, predict_with_bias(combine(per_model, w), b)))
    for p in per_model.values():
        assert val_f1 >= f1(y, predict_with_bias(p, fit_class_bias(p, y))) - 1e-12
    assert w["good"] > w["noise"]


def test_f1_weights_try_the_extra_weightings_and_are_deterministic() -> None:
    per_model, y = _members(600)
    ll = fit_weights(per_model, y)

    first = fit_weights_f1(per_model, y, steps=1, extra=[ll])
    again = fit_weights_f1(per_model, y, steps=1, extra=[ll])

    assert first[0] == again[0] and first[2] == again[2]
    np.testing.assert_array_equal(first[1], again[1])
    ll_f1 = f1(
        y, predict_with_bias(combine(per_model, ll), fit_class_bias(combine(per_model, ll), y))
    )
    assert first[2] >= ll_f1 - 1e-12


def test_f1_weights_reject_bad_inputs_naming_the_field() -> None:
    per_model, y = _members(100)

    with pytest.raises(ValidationError, match="^per_model must be non-empty"):
        fit_weights_f1({}, y)
    with pytest.raises(ValidationError, match="^steps must be >= 1"):
        fit_weights_f1(per_model, y, steps=0)
    with pytest.raises(ValidationError, match=r"^per_model\[ok\] must be of 100 rows"):
        fit_weights_f1({**per_model, "ok": per_model["ok"][:10]}, y)
    with pytest.raises(ValidationError, match=r"^extra\[0\] must be non-negative weights"):
        fit_weights_f1(per_model, y, extra=[{"good": -1.0}])
