"""Tests of the queue-reactive market simulator (:mod:`actors.feed.simulator`)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.core.batch import (
    ASK,
    BID,
    DELTA,
    F_LAST,
    F_SNAPSHOT,
    MD_DTYPE,
    SNAPSHOT,
    TRADE,
    validate_rows,
)
from actors.core.errors import ValidationError
from actors.core.instruments import Instrument
from actors.feed.simulator import MarketSimulator
from cluster.config import SimulatorConfig

START = 1_700_000_000_000_000_000
SEC = 1_000_000_000

BTC = Instrument("BTCUSDT", Decimal("0.1"), Decimal("0.001"))
ETH = Instrument("ETHUSDT", Decimal("0.01"), Decimal("0.01"))
SOL = Instrument("SOLUSDT", Decimal("0.01"), Decimal("0.1"))
PRICES = {"BTCUSDT": 618_000, "ETHUSDT": 340_000, "SOLUSDT": 15_000}


def make(
    config: SimulatorConfig | None = None,
    instruments: tuple[Instrument, ...] = (BTC, ETH, SOL),
    prices: dict[str, int] | None = None,
) -> MarketSimulator:
    """Build a simulator at :data:`START` (defaults: default config, three symbols)."""
    return MarketSimulator(
        config or SimulatorConfig(), list(instruments), prices or PRICES, start_ns=START
    )


def run_chunks(sim: MarketSimulator, ends: list[int]) -> dict[str, np.ndarray]:
    """Advance through every end time and concatenate each symbol's rows."""
    parts: dict[str, list[np.ndarray]] = {s: [] for s in sim.symbols}
    for end in ends:
        for sym, rows in sim.advance(end).items():
            parts[sym].append(rows)
    return {s: np.concatenate(p) for s, p in parts.items()}


class Replay:
    """A dict book rebuilt from rows, checking the contract at every message boundary.

    Attributes:
        bids: Price ticks -> size, as the rows left it.
        asks: Price ticks -> size.
        messages: Messages (``F_LAST`` rows) seen.
        trades: Trade rows seen.
        mids: Mid price in ticks after each message.
        spreads: Spread in ticks after each message.
    """

    def __init__(self) -> None:
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self.messages = 0
        self.trades = 0
        self.mids: list[float] = []
        self.spreads: list[int] = []

    def apply(self, rows: np.ndarray) -> None:
        """Apply rows in order; assert the book is sane after every ``F_LAST`` row."""
        pre_bids, pre_asks = dict(self.bids), dict(self.asks)
        for seq, kind, side, price, size, flags in zip(
            rows["seq"].tolist(),
            rows["kind"].tolist(),
            rows["side"].tolist(),
            rows["price"].tolist(),
            rows["size"].tolist(),
            rows["flags"].tolist(),
            strict=True,
        ):
            assert size >= 0
            assert bool(flags & F_SNAPSHOT) == (kind == SNAPSHOT)
            if kind == TRADE:
                self.trades += 1
                # the aggressor consumes a level that rested on the opposite side before
                resting = pre_asks if side == BID else pre_bids
                assert price in resting, (seq, price)
                assert 0 < size <= resting[price] + 1e-9
            else:
                assert kind in (DELTA, SNAPSHOT)
                book = self.bids if side == BID else self.asks
                if size == 0:
                    assert price in book, f"removal of an absent level {price} (seq {seq})"
                    del book[price]
                else:
                    book[price] = size
            if flags & F_LAST:
                self.messages += 1
                assert self.bids and self.asks, f"one-sided book after seq {seq}"
                bb, ba = max(self.bids), min(self.asks)
                assert bb < ba, f"crossed/locked book after seq {seq}: {bb} >= {ba}"
                assert bb >= 1
                self.mids.append((bb + ba) / 2)
                self.spreads.append(ba - bb)
                pre_bids, pre_asks = dict(self.bids), dict(self.asks)


# ------------------------------------------------------------------------------------------
def test_determinism_same_seed_same_bytes_other_seed_differs() -> None:
    ends = [START + SEC * 5]
    a = run_chunks(make(), ends)
    b = run_chunks(make(), ends)
    c = run_chunks(make(SimulatorConfig(seed=8)), ends)
    for sym in PRICES:
        assert a[sym].tobytes() == b[sym].tobytes()
        assert a[sym].tobytes() != c[sym].tobytes()


def test_chunking_invariance() -> None:
    one = run_chunks(make(), [START + 7 * SEC])
    two = run_chunks(make(), [START + 3 * SEC + 123_457, START + 7 * SEC])
    rng = np.random.default_rng(1)
    cuts = sorted(set(rng.integers(START, START + 7 * SEC, size=200).tolist()))
    many = run_chunks(make(), [*cuts, START + 7 * SEC])
    for sym in PRICES:
        assert one[sym].tobytes() == two[sym].tobytes()
        assert one[sym].tobytes() == many[sym].tobytes()


def test_rows_valid_and_in_window_and_now_ns() -> None:
    sim = make()
    assert sim.now_ns == START
    prev = START
    for end in (START, START + SEC // 10, START + SEC, START + SEC, START + 3 * SEC):
        out = sim.advance(end)
        assert list(out) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
        assert sim.now_ns == end
        for sym, rows in out.items():
            assert rows.dtype == MD_DTYPE
            validate_rows(rows, sym)
            flow = rows[rows["kind"] != SNAPSHOT]
            if len(flow):
                assert flow["ts_event"].min() > prev
                assert flow["ts_event"].max() <= end
        prev = end
    empty = sim.advance(START + 3 * SEC)
    assert all(len(r) == 0 for r in empty.values())


def test_first_advance_starts_with_snapshot_only_once() -> None:
    sim = make()
    first = sim.advance(START + SEC)
    second = sim.advance(START + 2 * SEC)
    for sym, rows in first.items():
        snap = rows[rows["kind"] == SNAPSHOT]
        n = len(snap)
        assert n == 2 * SimulatorConfig().levels
        assert (rows["kind"][:n] == SNAPSHOT).all()
        assert (snap["ts_event"] == START).all()
        assert (snap["seq"] == 0).all()
        assert (snap["flags"][:-1] == F_SNAPSHOT).all()
        assert snap["flags"][-1] == F_SNAPSHOT | F_LAST
        bids = snap[snap["side"] == BID]["price"]
        asks = snap[snap["side"] == ASK]["price"]
        assert bids.max() == PRICES[sym] - 1 and asks.min() == PRICES[sym] + 1
        assert not (second[sym]["kind"] == SNAPSHOT).any()


def test_seq_flags_and_latency() -> None:
    config = SimulatorConfig(feed_latency_us=321.5)
    out = run_chunks(make(config), [START + 2 * SEC, START + 4 * SEC])
    for rows in out.values():
        assert (rows["ts_init"] - rows["ts_event"] == 321_500).all()
        flow = rows[rows["kind"] != SNAPSHOT]
        seq = flow["seq"]
        last = (flow["flags"] & F_LAST) != 0
        # message boundaries are exactly where seq changes; seq goes 1, 2, 3, ...
        assert last[-1]
        np.testing.assert_array_equal(last[:-1], seq[1:] != seq[:-1])
        np.testing.assert_array_equal(seq[last], np.arange(1, last.sum() + 1))
        # one ts_event per message, non-decreasing
        assert (np.diff(flow["ts_event"]) >= 0).all()
        same_msg = seq[1:] == seq[:-1]
        assert (flow["ts_event"][1:][same_msg] == flow["ts_event"][:-1][same_msg]).all()


def test_trades_lead_their_message() -> None:
    rows = run_chunks(make(), [START + 5 * SEC])["BTCUSDT"]
    flow = rows[rows["kind"] != SNAPSHOT]
    kinds, seqs = flow["kind"].tolist(), flow["seq"].tolist()
    seen_delta: set[int] = set()
    for kind, seq in zip(kinds, seqs, strict=True):
        if kind == TRADE:
            assert seq not in seen_delta, "trade rows come before the deltas of their message"
        else:
            seen_delta.add(seq)


def test_replay_never_crossed_and_matches_true_book() -> None:
    sim = make()
    replays = {s: Replay() for s in sim.symbols}
    for i in range(1, 31):
        for sym, rows in sim.advance(START + i * SEC).items():
            replays[sym].apply(rows)
    for sym, rp in replays.items():
        bids, asks = sim.book(sym)
        assert rp.bids == bids
        assert rp.asks == asks
        assert rp.trades > 0
        assert len(set(rp.mids)) > 5, "the price must move"


def test_sizes_round_trip_to_lots() -> None:
    insts = (
        BTC,
        ETH,
        SOL,
        Instrument("ONE", Decimal("1"), Decimal("1")),
        Instrument("TEN", Decimal("0.5"), Decimal("1E+1")),
        Instrument("ODD", Decimal("0.0001"), Decimal("0.00025")),
    )
    prices = {i.symbol: 10_000 for i in insts}
    sim = make(instruments=insts, prices=prices)
    out = sim.advance(START + 2 * SEC)
    for inst in insts:
        rows = out[inst.symbol]
        for size in np.unique(rows["size"]).tolist():
            lots = inst.size_to_lots(repr(size))
            assert float(inst.lots_to_size(lots)) == size
        bids, asks = sim.book(inst.symbol)
        for size in [*bids.values(), *asks.values()]:
            inst.size_to_lots(repr(size))


def test_symbol_streams_independent_of_other_symbols() -> None:
    alone = run_chunks(make(instruments=(BTC,)), [START + 3 * SEC])
    together = run_chunks(make(instruments=(BTC, ETH)), [START + 3 * SEC])
    assert alone["BTCUSDT"].tobytes() == together["BTCUSDT"].tobytes()
    assert together["ETHUSDT"].tobytes() != together["BTCUSDT"].tobytes()


def test_default_calibration() -> None:
    """Defaults: 200-800 msgs/s, spread mostly 1-3 ticks, a moving mid, touch turnover."""
    sim = make(instruments=(BTC,))
    rp = Replay()
    secs = 120
    for i in range(1, secs + 1):
        rp.apply(sim.advance(START + i * SEC)["BTCUSDT"])
    rate = (rp.messages - 1) / secs
    assert 200 <= rate <= 800
    spreads = np.array(rp.spreads)
    assert (spreads <= 3).mean() > 0.95
    mids = np.array(rp.mids)
    assert (np.diff(mids) != 0).sum() / secs > 2, "the touch must turn over often"
    assert np.ptp(mids) >= 3
    assert np.ptp(mids) < 500
    assert rp.trades / secs > 5


def test_extreme_flow_empties_sides_and_recovers() -> None:
    """Heavy market orders on a thin, narrow book: sides empty and are refilled."""
    config = SimulatorConfig(
        levels=5,
        limit_rate_per_s=5.0,
        cancel_rate_per_s=5.0,
        market_rate_per_s=50.0,
        order_size_lots=20,
        initial_depth_lots=2,
    )
    sim = make(config, instruments=(SOL,), prices={"SOLUSDT": 3})
    rp = Replay()
    for i in range(1, 21):
        rows = sim.advance(START + i * SEC)["SOLUSDT"]
        validate_rows(rows)
        rp.apply(rows)
    bids, asks = sim.book("SOLUSDT")
    assert rp.bids == bids and rp.asks == asks
    assert min(bids) >= 1
    assert rp.messages > 100


def test_validation_errors() -> None:
    with pytest.raises(ValidationError):
        make(prices={"BTCUSDT": 618_000})
    with pytest.raises(ValidationError):
        make(prices={**PRICES, "ETHUSDT": 1})
    with pytest.raises(ValidationError):
        make(instruments=(BTC, BTC))
    sim = make()
    sim.advance(START + SEC)
    with pytest.raises(ValidationError):
        sim.advance(START)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    levels=st.integers(min_value=5, max_value=12),
    market=st.floats(min_value=0.0, max_value=40.0),
    cuts=st.lists(st.integers(min_value=0, max_value=5 * SEC), max_size=8),
)
def test_property_chunking_and_book_sanity(
    seed: int, levels: int, market: float, cuts: list[int]
) -> None:
    config = SimulatorConfig(seed=seed, levels=levels, market_rate_per_s=market)
    end = START + 5 * SEC
    whole = run_chunks(make(config, instruments=(BTC, SOL)), [end])
    sim = make(config, instruments=(BTC, SOL))
    chunked = run_chunks(sim, [START + c for c in sorted(cuts)] + [end])
    for sym in ("BTCUSDT", "SOLUSDT"):
        assert whole[sym].tobytes() == chunked[sym].tobytes()
        validate_rows(chunked[sym], sym)
        rp = Replay()
        rp.apply(chunked[sym])
        bids, asks = sim.book(sym)
        assert rp.bids == bids and rp.asks == asks
        # tracked window: each side holds at most `levels` ticks from its best
        assert max(bids) - min(bids) < levels and max(asks) - min(asks) < levels
