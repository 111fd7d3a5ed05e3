"""FI-2010 loader, stock segments and book windows; the jobs.fi2010 report on the real files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from actors.core.errors import ValidationError
from serve.fi2010 import (
    HORIZONS,
    N_ROWS,
    BookWindows,
    default_root,
    load_fi2010,
    parse_matrix,
    split_by_time,
    stock_segments,
    window_indices,
    windows,
)

ROOT = default_root()
needs_data = pytest.mark.skipif(
    not (ROOT / "Train_Dst_NoAuction_ZScore_CF_1.txt.xz").is_file(),
    reason=f"FI-2010 files missing under {ROOT}",
)


def raw_matrix(n: int = 50, seed: int = 0) -> np.ndarray:
    """A (149, n) matrix shaped like the public files: book, handcrafted rows, labels 1..3."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(N_ROWS, n))
    a[144:] = rng.integers(1, 4, size=(5, n))
    return a


def stepped_book(lengths: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A book of several 'stocks' whose price levels differ by a jump of 1.0 each."""
    rng = np.random.default_rng(seed)
    parts = []
    for s, n in enumerate(lengths):
        b = rng.normal(scale=0.001, size=(n, 40)).astype(np.float32)
        b[:, 0::2] += float(s)  # prices of stock s sit around s
        parts.append(b)
    return np.concatenate(parts)


# --- parsing ----------------------------------------------------------------------------------
def test_parse_matrix_maps_labels_to_down_flat_up() -> None:
    a = raw_matrix()

    d = parse_matrix(a, "train")

    assert d.book.shape == (50, 40) and d.book.dtype == np.float32
    assert d.features.shape == (50, 104) and d.labels.shape == (50, 5)
    np.testing.assert_array_equal(d.labels, 3 - a[144:].T)  # 1=up → 2, 3=down → 0
    np.testing.assert_array_equal(d.book, a[:40].T.astype(np.float32))
    assert d.flat_features().shape == (50, 144)
    assert len(d.flat_feature_names()) == 144
    np.testing.assert_array_equal(d.labels_for(100), d.labels[:, 4])


def test_parse_matrix_rejects_wrong_rows_and_labels() -> None:
    a = raw_matrix()
    bad = a.copy()
    bad[146, 3] = 4.0

    with pytest.raises(ValidationError, match="fi2010 matrix must be"):
        parse_matrix(a[:148])
    with pytest.raises(ValidationError, match=r"fi2010 labels must be in \{1, 2, 3\}"):
        parse_matrix(bad)
    with pytest.raises(ValidationError, match="horizon must be one of"):
        parse_matrix(a).labels_for(40)


def test_load_rejects_an_unknown_split_and_a_missing_file(tmp_path) -> None:
    with pytest.raises(ValidationError, match="split must be one of"):
        load_fi2010("valid", tmp_path)
    with pytest.raises(FileNotFoundError, match="must exist"):
        load_fi2010("train", tmp_path)


# --- windows ----------------------------------------------------------------------------------
def test_window_of_sample_i_is_rows_i_minus_t_plus_one_to_i() -> None:
    book = np.arange(20 * 40, dtype=np.float32).reshape(20, 40)

    w = windows(book, 5, np.array([4, 10, 19]))

    assert w.shape == (3, 5, 40)
    np.testing.assert_array_equal(w[1], book[6:11])
    np.testing.assert_array_equal(w[2], book[15:20])


def test_contiguous_range_gives_a_view_without_copy() -> None:
    book = np.arange(30 * 40, dtype=np.float32).reshape(30, 40)

    w = windows(book, 4, range(3, 30))

    assert w.shape == (27, 4, 40) and np.shares_memory(w, book)
    np.testing.assert_array_equal(w, windows(book, 4, np.arange(3, 30)))


def test_windows_reject_indices_without_a_full_window() -> None:
    book = np.zeros((10, 40), dtype=np.float32)

    with pytest.raises(ValidationError, match="idx must be"):
        windows(book, 5, np.array([3]))
    with pytest.raises(ValidationError, match="window must be"):
        windows(book, 11, np.array([10]))


def test_book_windows_builds_batches_lazily() -> None:
    book = np.arange(30 * 40, dtype=np.float32).reshape(30, 40)
    idx = np.array([5, 9, 29])

    lazy = BookWindows(book, 6, idx)

    assert lazy.shape == (3, 6, 40) and len(lazy) == 3
    np.testing.assert_array_equal(lazy[np.array([0, 2])], windows(book, 6, idx[[0, 2]]))
    np.testing.assert_array_equal(np.asarray(lazy), windows(book, 6, idx))
    np.testing.assert_array_equal(lazy[1], book[4:10])


def test_stock_segments_find_the_price_jumps() -> None:
    book = stepped_book((1_000, 1_500, 800))

    seg = stock_segments(book)

    assert seg.tolist() == [0, 1_000, 2_500]
    assert stock_segments(book[:900]).tolist() == [0]


def test_window_indices_drop_windows_crossing_a_stock_change() -> None:
    seg = np.array([0, 30, 70])

    idx = window_indices(95, 10, seg)

    assert idx[0] == 9 and 38 not in idx and 39 in idx and 78 not in idx and 79 in idx
    assert len(idx) == (30 - 9) + (40 - 9) + (25 - 9)
    assert len(window_indices(95, 10)) == 86


def test_split_by_time_keeps_the_first_part_of_each_stock_for_training() -> None:
    seg = np.array([0, 30, 70])
    idx = window_indices(95, 10, seg)

    first, rest = split_by_time(idx, seg, 0.8)

    assert len(first) + len(rest) == len(idx)
    for a, b in ((0, 30), (30, 70), (70, 95)):
        f, r = first[(first >= a) & (first < b)], rest[(rest >= a) & (rest < b)]
        assert f.max() < r.min()  # validation is later in time within each stock
        assert len(f) == round(0.8 * (len(f) + len(r)))


# --- the real files ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fi_train():
    return load_fi2010("train")


@pytest.mark.realdata
@needs_data
def test_real_train_day_has_the_readme_shapes_and_class_counts(fi_train) -> None:
    d = fi_train

    assert (d.n, d.book.shape[1], d.features.shape[1]) == (39_512, 40, 104)
    assert d.horizons == HORIZONS == (10, 20, 30, 50, 100)
    assert set(np.unique(d.labels).tolist()) == {0, 1, 2}
    # README, label row counts of 1/2/3 (up/flat/down): k=10 7,476 / 24,940 / 7,096,
    # k=100 16,023 / 8,875 / 14,614; here ordered down, flat, up.
    assert d.class_counts(10) == [7_096, 24_940, 7_476]
    assert d.class_counts(100) == [14_614, 8_875, 16_023]
    assert abs(float(d.book.mean())) < 0.5  # z-scored with its own statistics


@pytest.mark.realdata
@needs_data
def test_real_train_day_concatenates_five_stocks(fi_train) -> None:
    seg = stock_segments(fi_train.book)

    assert seg.tolist() == [0, 3_454, 9_772, 14_694, 25_413]


@pytest.mark.realdata
@needs_data
def test_real_test_day_class_counts_match_the_readme() -> None:
    d = load_fi2010("test")

    assert d.n == 38_397
    assert d.class_counts(10) == [7_691, 22_699, 8_007]
    assert len(stock_segments(d.book)) == 5


@pytest.mark.realdata
@needs_data
def test_fi2010_job_reports_every_model_and_the_ensembles(capsys: pytest.CaptureFixture) -> None:
    from jobs.fi2010 import main

    rc = main(
        [
            "--horizons",
            "10",
            "--epochs",
            "1",
            "--max-train",
            "3000",
            "--max-test",
            "1500",
            "--window",
            "20",
            "--trees",
            "100",
            "--f1-grid-steps",
            "4",
            "--json",
            "--quiet",
        ]
    )
    report = json.loads(capsys.readouterr().out)

    assert rc == 0
    k10 = report["horizons"]["10"]
    assert set(k10["models"]) == {"deeplob", "transformer", "xgboost", "lgbm"}
    ensembles = ("ensemble", "ensemble_equal", "ensemble_f1")
    for entry in [*k10["models"].values(), *(k10[e] for e in ensembles)]:
        for scored in (entry["test"], entry["test_rule"]):
            assert 0.0 <= scored["macro_f1"] <= 100.0
            assert set(scored["f1"]) == {"down", "flat", "up"}
            assert 0.0 <= scored["accuracy"] <= 1.0
        assert len(entry["bias"]) == 3
    for m in k10["models"].values():  # the rule never loses on the data it was fitted on
        assert m["val"]["macro_f1_rule"] >= m["val"]["macro_f1"]
    assert k10["n_train"] == 3000 and k10["n_test"] == 1500
    assert sum(k10["ensemble"]["weights"].values()) == pytest.approx(1.0)
    assert sum(k10["ensemble_f1"]["weights"].values()) == pytest.approx(1.0)
    assert k10["ensemble"]["val_log_loss"] <= k10["ensemble_equal"]["val_log_loss"] + 1e-6
    best_val_single_rule = max(m["val"]["macro_f1_rule"] for m in k10["models"].values())
    assert k10["ensemble_f1"]["val_macro_f1_rule"] >= best_val_single_rule - 1e-3
    sel = k10["ensemble_selected"]
    assert sel["variant"].split("+")[0] in ensembles
    assert sel["val_macro_f1"] >= k10["ensemble_f1"]["val_macro_f1_rule"]
    assert isinstance(k10["ensemble_beats_best_single"], bool)
    assert k10["best_single_macro_f1"] == max(
        max(m["test"]["macro_f1"], m["test_rule"]["macro_f1"]) for m in k10["models"].values()
    )
    families = ("deeplob", "transformer", "xgboost", "lgbm", *ensembles)
    assert set(report["summary"]["10"]) == {
        *families,
        *(f"{f}+rule" for f in families),
        "ensemble_selected",
    }
    assert report["params"]["max_train"] == 3000 and report["wall_s"] > 0
    assert report["params"]["class_weight"] == "balanced"
