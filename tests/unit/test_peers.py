"""The NautilusTrader peer benchmark: the export, the delta plan and the peer's final book.

The export and the plan need no NautilusTrader; tests that run the peer skip with the setup
command when its venv is absent, and the real-data one also when ../shared/data is absent.
"""

from __future__ import annotations

import stat
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from actors.core import batch
from actors.core.batch import ASK, BID, CLEAR, DELTA, F_LAST, F_SNAPSHOT, SNAPSHOT, TRADE
from actors.core.errors import ValidationError
from actors.core.instruments import format_decimal
from actors.feed.binance import read_session
from jobs import peers
from jobs.bench import BINANCE_DATA, BINANCE_SESSIONS
from jobs.peers import nautilus_book as nb

NO_PEER = f"no NautilusTrader venv (set ${peers.NAUTILUS_VENV_ENV} or: {peers.SETUP_COMMAND})"
needs_peer = pytest.mark.skipif(peers.nautilus_python() is None, reason=NO_PEER)


def _rows(spec: list[tuple[int, int, int, float, int]]) -> np.ndarray:
    """Rows from ``(kind, side, price, size, flags)``; seq and clocks count up from 1."""
    out = np.zeros(len(spec), dtype=batch.MD_DTYPE)
    for i, (kind, side, price, size, flags) in enumerate(spec):
        out[i] = (1_000 + i, 2_000 + i, 10 + i, kind, side, price, size, flags, 0)
    return out


# a snapshot, a message of deltas with a trade in it, a second snapshot (an implied clear), a delta
SCENARIO = [
    (SNAPSHOT, BID, 100, 1.0, F_SNAPSHOT),
    (SNAPSHOT, BID, 99, 2.0, F_SNAPSHOT),
    (SNAPSHOT, ASK, 101, 1.5, F_SNAPSHOT),
    (SNAPSHOT, ASK, 102, 3.0, F_SNAPSHOT | F_LAST),
    (DELTA, BID, 100, 0.0, 0),  # delete the best bid
    (TRADE, ASK, 100, 0.5, F_LAST),
    (DELTA, BID, 98, 4.25, 0),  # a new level
    (DELTA, ASK, 105, 0.0, 0),  # delete of an absent level: no-op
    (DELTA, ASK, 101, 0.75, F_LAST),  # update
    (SNAPSHOT, BID, 200, 1.0, F_SNAPSHOT),
    (SNAPSHOT, ASK, 201, 2.0, F_SNAPSHOT | F_LAST),
    (DELTA, BID, 199, 0.125, F_LAST),
]
# an explicit CLEAR row empties both sides; only what follows it remains
CLEAR_SCENARIO = [
    (SNAPSHOT, BID, 100, 1.0, F_SNAPSHOT),
    (SNAPSHOT, ASK, 101, 1.5, F_SNAPSHOT | F_LAST),
    (CLEAR, 0, 0, 0.0, F_LAST),
    (DELTA, BID, 150, 2.5, F_LAST),
]


def test_export_keeps_book_rows_as_plain_columns_and_drops_trades(tmp_path: Path) -> None:
    rows = _rows(SCENARIO)
    path = tmp_path / "book.npz"

    peers.export_deltas(path, rows, "0.10", "0.0010")

    expected = [r for r in rows.tolist() if r[3] != TRADE]
    with np.load(path, allow_pickle=False) as z:
        assert str(z["tick_size"]) == "0.1" and str(z["lot_size"]) == "0.001"
        names = batch.MD_DTYPE.names
        for col in peers.EXPORT_COLUMNS:
            assert z[col].dtype == batch.MD_DTYPE[col], col
            assert z[col].tolist() == [r[names.index(col)] for r in expected], col
    cols, tick, lot = nb.load(path)  # what the peer script reads
    assert (tick, lot) == ("0.1", "0.001") and len(cols["kind"]) == len(SCENARIO) - 1


def test_export_rejects_market_by_order_rows_and_bad_steps(tmp_path: Path) -> None:
    rows = _rows([(batch.ADD, BID, 100, 1.0, F_LAST)])
    with pytest.raises(ValidationError, match=r"rows.kind\[0\] must be .*was 'add'"):
        peers.export_deltas(tmp_path / "x.npz", rows, "0.1", "0.001")
    ok = _rows(SCENARIO[:1])
    with pytest.raises(ValidationError, match="tick_size must be > 0"):
        peers.export_deltas(tmp_path / "x.npz", ok, "0", "0.001")
    with pytest.raises(ValidationError, match="lot_size must be a decimal number"):
        peers.export_deltas(tmp_path / "x.npz", ok, "0.1", "lots")


def test_peer_script_constants_match_the_batch_contract() -> None:
    for name in ("DELTA", "TRADE", "SNAPSHOT", "CLEAR", "BID", "ASK", "F_LAST", "F_SNAPSHOT"):
        assert getattr(nb, name) == getattr(batch, name), name


def test_plan_clears_before_each_snapshot_and_maps_actions_and_flags() -> None:
    rows = peers.book_rows(_rows(SCENARIO))
    cols = {c: rows[c] for c in nb.COLUMNS}

    p = nb.plan(cols)

    add, upd, dele = nb.NT_ADD, nb.NT_UPDATE, nb.NT_DELETE
    last, snap = nb.NT_F_LAST, nb.NT_F_SNAPSHOT
    assert p["action"].tolist() == [add, add, add, add, dele, upd, dele, upd, add, add, upd]
    assert p["clear_before"].tolist() == [True] + [False] * 7 + [True, False, False]
    assert p["flags"].tolist() == [
        snap,
        snap,
        snap,
        snap | last,
        0,
        0,
        0,
        last,
        snap,
        snap | last,
        last,
    ]


def test_plan_maps_a_clear_row_to_a_clear_delta() -> None:
    rows = _rows(CLEAR_SCENARIO)

    p = nb.plan({c: rows[c] for c in nb.COLUMNS})

    assert p["action"].tolist() == [nb.NT_ADD, nb.NT_ADD, nb.NT_CLEAR, nb.NT_UPDATE]
    assert p["clear_before"].tolist() == [True, False, False, False]
    assert p["flags"].tolist()[2] == nb.NT_F_LAST


def test_plan_rejects_trades_and_order_rows() -> None:
    rows = _rows([(TRADE, BID, 100, 1.0, F_LAST)])
    with pytest.raises(ValueError, match=r"kind\[0\] must be 0=delta, 2=snapshot or 3=clear"):
        nb.plan({c: rows[c] for c in nb.COLUMNS})


def test_size_precision_covers_sizes_finer_than_the_lot() -> None:
    assert nb.size_precision(np.array([1.0, 0.001, 12.345]), "0.001") == 3
    assert nb.size_precision(np.array([25.426189, 0.00001]), "0.00001") == 6
    assert nb.size_precision(np.array([2.0, 4.0]), "1") == 0
    with pytest.raises(ValueError, match=r"size\[0\] must have at most 2 decimals"):
        nb.size_precision(np.array([0.125]), "0.1", max_precision=2)


def test_nautilus_python_prefers_the_environment_variable(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(peers.NAUTILUS_VENV_ENV, str(tmp_path / "py"))
    assert peers.nautilus_python() == tmp_path / "py"
    monkeypatch.delenv(peers.NAUTILUS_VENV_ENV)
    default = peers.NAUTILUS_VENV / "bin" / "python"
    assert peers.nautilus_python() == (default if default.exists() else None)


def test_run_is_skipped_with_the_setup_command_when_no_peer_python(monkeypatch) -> None:
    monkeypatch.setattr(peers, "nautilus_python", lambda: None)
    out = peers.run_nautilus_book(_rows(SCENARIO), "0.1", "0.001")
    assert set(out) == {"skipped"} and peers.SETUP_COMMAND in out["skipped"]


def _fake_python(tmp: Path, body: str) -> Path:
    py = tmp / "fake-python"
    py.write_text(f"#!/bin/sh\n{body}\n")
    py.chmod(py.stat().st_mode | stat.S_IXUSR)
    return py


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("echo 'Traceback: boom' >&2; exit 3", "exited 3: Traceback: boom"),
        ("echo 'not json'", "must print one JSON object, was 'not json'"),
        ("echo '[1, 2]'", "must print one JSON object, was [1, 2]"),
    ],
)
def test_run_reports_peer_failures_as_errors(tmp_path: Path, body: str, message: str) -> None:
    out = peers.run_nautilus_book(_rows(SCENARIO), "0.1", "0.001", _fake_python(tmp_path, body))
    assert set(out) == {"error"} and message in out["error"]


def test_run_reports_a_missing_interpreter_and_a_timeout_as_errors(tmp_path: Path) -> None:
    missing = peers.run_nautilus_book(_rows(SCENARIO), "0.1", "0.001", tmp_path / "nope")
    assert "could not start" in missing["error"]
    slow = _fake_python(tmp_path, "sleep 5")
    out = peers.run_nautilus_book(_rows(SCENARIO), "0.1", "0.001", slow, timeout_s=0.5)
    assert "must finish within 0.5 s" in out["error"]


@needs_peer
def test_peer_ends_in_the_hand_computed_book() -> None:
    rows = _rows(SCENARIO)

    out = peers.run_nautilus_book(rows, "0.1", "0.001", repeats=1)

    # the second snapshot replaced everything: bid 200 x 1.0 and 199 x 0.125, ask 201 x 2.0
    assert "error" not in out, out.get("error")
    assert out["rows"] == 11 and out["deltas"] == 13  # + one CLEAR before each snapshot
    assert (out["best_bid"], out["best_ask"]) == ("20.0", "20.1")
    assert (out["best_bid_ticks"], out["best_ask_ticks"]) == (200, 201)
    assert (out["bid_levels"], out["ask_levels"]) == (2, 1)
    assert out["size_precision"] == 3
    assert (out["bid_ticks_sum"], out["bid_size_units"]) == (399, 1125)
    assert (out["ask_ticks_sum"], out["ask_size_units"]) == (201, 2000)
    assert out["messages"] == 4
    assert peers.book_mismatches(out, peers.reference_book(rows, 3)) == []
    for key in ("create_s", "apply_s", "apply_deltas_per_s", "create_and_apply_deltas_per_s"):
        assert out[key] > 0, key


@needs_peer
def test_peer_clear_row_empties_the_book() -> None:
    out = peers.run_nautilus_book(_rows(CLEAR_SCENARIO), "0.01", "0.1", repeats=1)

    assert "error" not in out, out.get("error")
    assert (out["best_bid"], out["best_ask"]) == ("1.50", None)
    assert (out["bid_levels"], out["ask_levels"]) == (1, 0)
    assert (out["bid_size_units"], out["size_precision"]) == (25, 1)


def _session_slice(name: str, rows_wanted: int) -> tuple[np.ndarray, str, str]:
    """The first ``rows_wanted`` rows (or so, to a message end) of a recorded session."""
    parts, ins = [], None
    for _sym, item, sync in read_session(
        [BINANCE_DATA / p for p in BINANCE_SESSIONS[name]], tickers=False
    ):
        if isinstance(item, np.ndarray):
            parts.append(item)
            ins = sync.instrument
        if sum(len(p) for p in parts) >= rows_wanted:
            break
    rows = np.concatenate(parts)
    ends = np.flatnonzero(rows["flags"] & F_LAST)
    rows = rows[: ends[np.searchsorted(ends, rows_wanted - 1)] + 1]
    assert ins is not None
    return rows, format_decimal(ins.tick_size), format_decimal(ins.lot_size)


@pytest.mark.realdata
@pytest.mark.skipif(not BINANCE_DATA.exists(), reason=f"real data folder {BINANCE_DATA} is absent")
@needs_peer
@pytest.mark.parametrize("session", ["usdm-btc-0808", "spot-btc-0808"])
def test_peer_book_equals_raydesk_reference_on_a_real_session(session: str) -> None:
    rows, tick, lot = _session_slice(session, 40_000)

    out = peers.run_nautilus_book(rows, tick, lot, repeats=1)

    assert "error" not in out, out.get("error")
    ref = peers.reference_book(rows, out["size_precision"])
    assert peers.book_mismatches(out, ref) == []
    assert out["deltas"] == int((rows["kind"] != TRADE).sum()) + 1  # one snapshot → one CLEAR
    step = Decimal(tick)
    assert Decimal(out["best_bid"]) == ref["best_bid_ticks"] * step
    assert Decimal(out["best_ask"]) == ref["best_ask_ticks"] * step
    assert ref["bid_levels"] > 100 and ref["ask_levels"] > 100  # a real, deep book
    # the comparison can fail: the book one message earlier differs
    ends = np.flatnonzero(rows["flags"] & F_LAST)
    earlier = peers.reference_book(rows[: ends[-2] + 1], out["size_precision"])
    assert peers.book_mismatches(out, earlier) != []
