"""jobs.sweep without Ray: candidates, walk-forward folds, scores, the coarse mode, selection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.config import ConfigError
from jobs.report_html import EquityCurve, metrics
from jobs.sweep import (
    Fold,
    Tape,
    _confirm_set,
    apply_candidate,
    candidate_key,
    candidates,
    coarse_equity,
    fold_plan,
    main,
    objective_value,
    score,
    step_returns,
    walk_forward,
)
from tests.conftest import small_config


def _cfg(tmp: Path, **sweep: object):
    return small_config(tmp, sweep=sweep)


def test_candidates_are_the_grid_or_a_seeded_draw(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, space={"strategy.entry_edge": [0.1, 0.2, 0.3],
                                "risk.max_position_lots": [5, 10]})
    grid = candidates(cfg)
    assert len(grid) == 6 and len({candidate_key(c) for c in grid}) == 6
    assert {"strategy.entry_edge": 0.3, "risk.max_position_lots": 5} in grid
    drawn = candidates(_cfg(tmp_path, space=cfg.sweep.space, samples=4, seed=3))
    assert len(drawn) == 4 and all(c in grid for c in drawn)
    assert drawn == candidates(_cfg(tmp_path, space=cfg.sweep.space, samples=4, seed=3))


def test_apply_candidate_validates_paths_and_values(tmp_path: Path) -> None:
    base = small_config(tmp_path).model_dump(mode="json")
    cfg = apply_candidate(base, {"strategy.entry_edge": 0.3, "risk.var.var_limit": 10.0})
    assert cfg.strategy.entry_edge == 0.3 and cfg.risk.var.var_limit == 10.0
    assert base["strategy"]["entry_edge"] != 0.3  # the base is not changed
    with pytest.raises(ConfigError) as e:
        apply_candidate(base, {"strategy.entry_edg": 0.3})
    assert "strategy.entry_edg" in str(e.value) and "unknown" in str(e.value)
    with pytest.raises(ConfigError) as e:
        apply_candidate(base, {"strategy.entry_edge": 7})
    assert "entry_edge" in str(e.value) and "7" in str(e.value)
    with pytest.raises(Exception, match="space keys must be dotted paths"):
        _cfg(tmp_path, space={"models.horizon": [1, 2]})
    with pytest.raises(Exception, match="must not repeat a value"):
        _cfg(tmp_path, space={"strategy.entry_edge": [0.1, 0.1]})


def test_fold_plan_anchored_purges_and_embargoes(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, folds=3, warmup_s=1.0, purge_s=0.5, embargo_s=0.3)
    folds, span, plan = fold_plan(100, 0.1, cfg)
    assert span == (10, 100) and plan["block_steps"] == 22
    assert [f.test for f in folds] == [(32, 54), (54, 76), (76, 100)]
    assert folds[0].train == ((10, 27),)
    assert folds[1].train == ((10, 49),)
    assert folds[2].train == ((10, 54), (57, 71))  # embargo after test block 1 ends at 54
    rolling = _cfg(tmp_path, folds=3, warmup_s=1.0, purge_s=0.5, embargo_s=0.3, scheme="rolling")
    assert [f.train for f in fold_plan(100, 0.1, rolling)[0]] == [
        ((10, 27),), ((32, 49),), ((57, 71),)]


def test_fold_plan_default_purge_is_the_label_horizon_and_short_spans_fail(
    tmp_path: Path,
) -> None:
    cfg = small_config(tmp_path, models={"horizon": 7}, sweep={"folds": 2, "warmup_s": 0.0})
    assert fold_plan(300, 0.1, cfg)[2]["purge_steps"] == 7
    with pytest.raises(ConfigError, match="duration_s must leave"):
        fold_plan(20, 0.1, cfg)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(20, 3000), folds=st.integers(1, 6), purge=st.integers(0, 30),
       embargo=st.integers(0, 30), warm=st.integers(0, 50),
       scheme=st.sampled_from(["anchored", "rolling"]))
def test_fold_plan_never_trains_on_or_after_its_test(
    tmp_path_factory: pytest.TempPathFactory, n: int, folds: int, purge: int, embargo: int,
    warm: int, scheme: str,
) -> None:
    cfg = _cfg(tmp_path_factory.getbasetemp(), folds=folds, purge_s=purge / 10,
               embargo_s=embargo / 10, warmup_s=warm / 10, scheme=scheme)
    try:
        plan, span, _ = fold_plan(n, 0.1, cfg)
    except ConfigError:
        return  # too short: refused with a reason, never a bad plan
    assert len(plan) == folds
    tests = [f.test for f in plan]
    assert tests[-1][1] == n and all(a < b for a, b in tests)
    assert all(tests[i][1] == tests[i + 1][0] for i in range(folds - 1))
    for f in plan:
        a, _ = f.test
        for ta, tb in f.train:
            assert span[0] <= ta < tb <= a - purge  # before the test block, purged
            for g in plan[: f.index - 1]:  # embargo after every earlier test block
                e0, e1 = g.test[1], g.test[1] + embargo
                assert tb <= e0 or ta >= e1


def test_score_matches_the_backtest_metrics_on_the_whole_span() -> None:
    rng = np.random.default_rng(5)
    eq = list(100_000 * np.cumprod(1 + rng.normal(0, 1e-4, 400)))
    curve = EquityCurve(capital=100_000.0, equity=eq, realised=[0.0] * 400, fees=[0.0] * 400,
                        unrealised=[0.0] * 400, gross_exposure=[0.0] * 400)
    m = metrics(curve, 0.1)
    s = score(step_returns(eq, 100_000.0), [(0, 400)], 0.1)
    for k in ("total_return", "sharpe", "sortino", "max_drawdown", "calmar"):
        assert s[k] == pytest.approx(m[k], rel=1e-9), k
    assert s["steps"] == 400
    half = score(step_returns(eq, 100_000.0), [(0, 100), (300, 400)], 0.1)
    assert half["steps"] == 200


def test_objective_ranks_a_flat_candidate_at_zero_and_a_broken_one_last() -> None:
    flat = score(np.zeros(50), [(0, 50)], 0.1)
    assert flat["sharpe"] is None and objective_value(flat, "sharpe") == 0.0
    assert objective_value({"sharpe": None, "total_return": -0.1, "max_drawdown": 0.1},
                           "sharpe") == -math.inf
    assert objective_value({"sharpe": 1.5}, "sharpe") == 1.5
    # no losing step but a gain (Sortino undefined): the best, not the worst
    rising = score(np.full(50, 1e-4), [(0, 50)], 0.1)
    assert rising["sortino"] is None and objective_value(rising, "sortino") == math.inf


def _tape(tv: float) -> Tape:
    up, flat = (0.0, 0.2, 0.8), (0.3, 0.4, 0.3)
    t = Tape(symbols=["BTCUSDT"], tick_value={"BTCUSDT": tv})
    for mid, bid, ask, probs in ((100, 99, 101, up), (110, 109, 111, up), (120, 119, 121, flat),
                                 (130, 129, 131, flat), (140, 139, 141, flat)):
        t.mids.append({"BTCUSDT": mid})
        t.tops.append({"BTCUSDT": [bid, 1.0, ask, 1.0]})
        t.decisions.append([("BTCUSDT", probs)])
    return t


def test_coarse_equity_known_answer(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, strategy={"entry_edge": 0.1, "order_qty_lots": 5,
                                           "target_position_lots": 8, "hold_steps": 2},
                       execution={"taker_fee_bps": 10.0})
    tv = cfg.instrument_map()["BTCUSDT"].notional(1, 1)
    eq = coarse_equity(_tape(tv), cfg)
    cap, fee = cfg.risk.capital, 10.0 / 1e4
    cash = cap - 5 * 101 * tv * (1 + fee)  # buy 5 at the ask
    assert eq[0] == pytest.approx(cash + 5 * 100 * tv)
    cash -= 3 * 111 * tv * (1 + fee)  # up to the target of 8
    assert eq[1] == pytest.approx(cash + 8 * 110 * tv)
    assert eq[2] == pytest.approx(cash + 8 * 120 * tv)  # one quiet decision: hold
    cash += 5 * 129 * tv * (1 - fee)  # the second: exit 5 through the bid
    assert eq[3] == pytest.approx(cash + 3 * 130 * tv)
    cash += 3 * 139 * tv * (1 - fee)
    assert eq[4] == pytest.approx(cash)


def test_coarse_equity_respects_the_position_cap(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, strategy={"entry_edge": 0.1, "order_qty_lots": 5,
                                           "target_position_lots": 8},
                       risk={"max_position_lots": 6}, execution={"taker_fee_bps": 0.0})
    tv = cfg.instrument_map()["BTCUSDT"].notional(1, 1)
    eq = coarse_equity(_tape(tv), cfg)
    cash = cfg.risk.capital - 5 * 101 * tv - 1 * 111 * tv  # 5, then only 1 more
    assert eq[1] == pytest.approx(cash + 6 * 110 * tv)


def _full(train: list[float], test: list[float], span: float) -> dict[str, object]:
    return {"scores": {"span": {"sharpe": span},
                       "folds": [{"train": {"sharpe": a}, "test": {"sharpe": b}}
                                 for a, b in zip(train, test, strict=True)]},
            "returns": [0.001] * 40}


def test_walk_forward_selects_on_train_scores_only(tmp_path: Path) -> None:
    folds = [Fold(1, ((0, 10),), (12, 20)), Fold(2, ((0, 18),), (20, 30))]
    full = {"a": _full([2.0, 1.0], [-5.0, 9.0], 0.5), "b": _full([1.0, 3.0], [7.0, -1.0], 0.9)}
    confirm = {"all": ["a", "b"], "per_fold": {"1": ["a", "b"], "2": ["a"]}, "span": ["b"]}
    wf = walk_forward(folds, confirm, full, "sharpe", (0, 30), 0.1, tmp_path)
    # fold 1: a has the better train score (its test is worse: never looked at);
    # fold 2: only a was in its coarse pool, though b trains better
    assert [r["selected"] for r in wf["folds"]] == ["a", "a"]
    assert [r["test_score"]["sharpe"] for r in wf["folds"]] == [-5.0, 9.0]
    assert wf["out_of_sample"]["steps"] == 18
    assert (tmp_path / "walk_forward.json").exists()


def test_confirm_set_takes_each_folds_top_k_by_train_score() -> None:
    folds = [Fold(1, ((0, 10),), (12, 20)), Fold(2, ((0, 18),), (20, 30))]
    coarse = {k: {"span": {"sharpe": s},
                  "folds": [{"train": {"sharpe": a}}, {"train": {"sharpe": b}}]}
              for k, s, a, b in (("a", 3.0, 0.0, 0.0), ("b", 0.0, 5.0, 0.0),
                                 ("c", 0.0, 0.0, 4.0), ("d", -1.0, -1.0, -1.0))}
    c = _confirm_set(["a", "b", "c", "d"], coarse, folds, "sharpe", 1, True)
    assert c["per_fold"] == {"1": ["b"], "2": ["c"]} and c["span"] == ["a"]
    assert c["all"] == ["a", "b", "c"]
    assert _confirm_set(["a", "d"], {}, folds, "sharpe", 1, False)["all"] == ["a", "d"]


def test_main_rejects_a_bad_candidate_before_running(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "bad.yaml"
    import yaml

    data = small_config(tmp_path).model_dump(mode="json")
    data["sweep"]["space"] = {"strategy.order_qty_lots": [5, 0]}
    cfg.write_text(yaml.safe_dump(data))
    assert main(["--config", str(cfg), "--storage", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "order_qty_lots" in err and "0" in err
    assert not (tmp_path / "s").exists()
