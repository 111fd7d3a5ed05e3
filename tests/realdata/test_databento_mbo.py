"""The Databento ESH4 MBO file, loaded and aggregated L3 → L2, equals a plain CSV reference.

The reference below reads the CSV itself (``csv`` module, ``Decimal`` prices, dicts of orders)
and applies Databento's documented book rules: ``A`` adds, ``C`` takes its size off the order,
``M`` sets the order's price and size, ``R`` clears, ``T``/``F`` change nothing. The book is
compared after every event end: every record with Databento's ``F_LAST`` (128), and the end of
the start-of-session snapshot (whose last record carries no ``F_LAST`` in this file).

What the data holds (checked here, documented in :mod:`actors.feed.databento`): no integrity
error at all; 7 auction fills name orders that never rested in the book (fills change nothing,
so they are counted, not errors); the book is crossed at 891 event ends, all of them in the
pre-open before the 23:00:00 UTC (17:00 CT) opening auction uncross, when CME accepts crossing
orders without matching them; never crossed after it.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from decimal import Decimal

import numpy as np
import pytest

from actors.book.book import L2Book, apply_rows
from actors.book.l3 import L3Book
from actors.core.batch import ASK, BID, F_LAST, MD_DTYPE, validate_rows
from actors.feed.databento import DatabentoStats, read_databento
from jobs.bench import SHARED_DATA

pytestmark = pytest.mark.realdata

DATA = SHARED_DATA / "databento_es_mbo"
FILE = DATA / "esh4-glbx-mdp3-20231225.mbo.csv.gz"
TICK = Decimal("0.25")
UNCROSS_NS = 1_703_545_200_000_000_000  # 2023-12-25 23:00:00 UTC, the opening auction
EVENTS = 47_023  # F_LAST records (47,022) + the snapshot's end

needs_data = pytest.mark.skipif(not FILE.exists(), reason=f"real data file {FILE} is absent")


def _ticks(price: str) -> int:
    q = Decimal(price) / TICK
    assert q == q.to_integral_value(), price
    return int(q)


class _Reference:
    """Databento's documented MBO book rules over the raw CSV, with FIFO queues per level."""

    def __init__(self) -> None:
        self.orders: dict[int, list] = {}  # id -> [side 'B'/'A', ticks, size, filled]
        self.levels: dict[str, dict[int, int]] = {"B": {}, "A": {}}
        self.queues: dict[tuple[str, int], list[int]] = {}
        self.refills: list[tuple[int, int]] = []  # (order id, ticks)
        self.hidden_fills = 0
        self.fills_unknown = 0

    def _level(self, side: str, px: int, delta: int) -> None:
        lv = self.levels[side]
        lv[px] = lv.get(px, 0) + delta
        if lv[px] == 0:
            del lv[px]

    def _join(self, oid: int) -> None:
        side, px = self.orders[oid][:2]
        self.queues.setdefault((side, px), []).append(oid)

    def _leave(self, oid: int) -> None:
        side, px = self.orders[oid][:2]
        q = self.queues[(side, px)]
        q.remove(oid)
        if not q:
            del self.queues[(side, px)]

    def record(self, r: dict[str, str]) -> None:
        action, oid, size = r["action"], int(r["order_id"]), int(r["size"])
        if action == "A":
            assert oid not in self.orders
            px = _ticks(r["price"])
            self.orders[oid] = [r["side"], px, size, 0]
            self._level(r["side"], px, size)
            self._join(oid)
        elif action == "C":
            o = self.orders[oid]
            assert size <= o[2]
            o[2] -= size
            o[3] = 0
            self._level(o[0], o[1], -size)
            if o[2] == 0:
                self._leave(oid)
                del self.orders[oid]
        elif action == "M":
            o = self.orders[oid]
            px = _ticks(r["price"])
            refill = o[3] > 0 and px == o[1] and size > o[2] - o[3]
            if refill:
                self.refills.append((oid, px))
            requeue = px != o[1] or size > o[2] or refill
            self._level(o[0], o[1], -o[2])
            if requeue:
                self._leave(oid)
            o[1], o[2], o[3] = px, size, 0
            self._level(o[0], px, size)
            if requeue:
                self._join(oid)
        elif action == "F":
            o = self.orders.get(oid)
            if o is None:
                self.fills_unknown += 1
            else:
                if o[3] <= o[2] < o[3] + size:
                    self.hidden_fills += 1
                o[3] += size
        elif action == "R":
            self.orders.clear()
            self.queues.clear()
            self.levels = {"B": {}, "A": {}}

    def events(self) -> Iterator[int]:
        """Apply the file; yield ``ts_event`` at every event end (book consistent)."""
        with gzip.open(FILE, "rt", newline="") as f:
            prev_snapshot = False
            prev_ts = 0
            for r in csv.DictReader(f):
                snapshot = r["is_snapshot"] == "1"
                if prev_snapshot and not snapshot:
                    yield prev_ts  # the snapshot ended
                self.record(r)
                prev_snapshot, prev_ts = snapshot, int(r["ts_event"])
                if int(r["flags"]) & 128:
                    yield prev_ts
            if prev_snapshot:
                yield prev_ts


@pytest.fixture(scope="module")
def loaded() -> tuple[list[np.ndarray], DatabentoStats]:
    if not FILE.exists():
        pytest.skip(f"real data file {FILE} is absent")
    stats = DatabentoStats()
    batches = []
    for ins, rows in read_databento(FILE, stats=stats):
        assert (ins.symbol, str(ins.tick_size), str(ins.lot_size), ins.venue) == \
            ("ESH4", "0.25", "1", "GLBX")
        batches.append(validate_rows(rows, ins.symbol))  # the batch contract holds
    return batches, stats


@needs_data
def test_loader_counts_every_record_and_rejects_none(loaded):
    batches, stats = loaded
    assert stats.records == 68_792 and stats.rejected == 0 and stats.errors == []
    assert stats.by_action == {"A": 29_216, "C": 17_999, "M": 12_233, "F": 6_371, "T": 2_973}
    assert stats.skipped == {"trade_no_aggressor": 1}  # the opening auction print (side N)
    assert stats.synthetic_clears == 1 and stats.snapshot_ends_marked == 1
    rows = np.concatenate(batches)
    assert stats.rows == len(rows) == 68_792 - 1 + 1
    assert np.all(np.diff(rows["seq"]) >= 0)
    assert int((rows["flags"] & F_LAST != 0).sum()) == EVENTS
    for b in batches:
        assert b["flags"][-1] & F_LAST  # batches end at event ends


@needs_data
def test_l3_to_l2_book_equals_the_csv_reference_after_every_event(loaded):
    batches, _stats = loaded
    l3 = L3Book()
    book = L2Book()
    ref = _Reference()
    ref_events = ref.events()
    crossed: list[int] = []
    n = 0
    for rows in batches:
        for seq in apply_rows(book, l3.apply(rows)):
            ts = next(ref_events)
            assert book.bids == ref.levels["B"], f"bids differ at event {n} (seq {seq})"
            assert book.asks == ref.levels["A"], f"asks differ at event {n} (seq {seq})"
            if book.crossed:
                crossed.append(ts)
            n += 1
    assert next(ref_events, None) is None
    assert n == EVENTS
    assert len(crossed) == 891 and max(crossed) < UNCROSS_NS  # only in the pre-open

    assert l3.error_counts == dict.fromkeys(l3.error_counts, 0) and not l3.needs_resync
    assert l3.fills == 6_371 and l3.fills_unknown == ref.fills_unknown == 7
    assert l3.n_orders == len(ref.orders) == 11_217
    # every queue in exact priority order, and every order's queue position
    for (side, px), queue in ref.queues.items():
        s = BID if side == "B" else ASK
        want = [(oid, float(ref.orders[oid][2])) for oid in queue]
        assert l3.level_orders(s, px) == want, f"queue {side}@{px}"
        ahead = 0.0
        for oid, size in want:
            assert l3.queue_ahead(oid) == ahead
            ahead += size
    # icebergs: the same refills, in the same order
    assert l3.iceberg_refills == len(ref.refills) == 83
    assert [(e["order_id"], e["price"]) for e in l3.recent_icebergs()] == ref.refills
    assert l3.hidden_fills == ref.hidden_fills == 28
    # the final top of book (ticks of 0.25: 19240 = 4810.00)
    bp, bs = l3.l2_levels(BID, 5)
    ap, asz = l3.l2_levels(ASK, 5)
    assert list(zip(bp.tolist(), bs.tolist(), strict=True)) == [
        (19240, 22.0), (19239, 47.0), (19238, 50.0), (19237, 60.0), (19236, 85.0)]
    assert list(zip(ap.tolist(), asz.tolist(), strict=True)) == [
        (19241, 28.0), (19242, 40.0), (19243, 41.0), (19244, 60.0), (19245, 65.0)]
    assert book.top(5) == (bp.tolist(), bs.tolist(), ap.tolist(), asz.tolist())


@needs_data
def test_checkpoint_mid_session_continues_identically(loaded):
    batches, _stats = loaded
    rows = np.concatenate(batches)
    ends = np.flatnonzero(rows["flags"] & F_LAST)
    cut = int(ends[len(ends) // 2]) + 1  # after an event end in the live session
    book = L3Book()
    book.apply(rows[:cut])
    twin = L3Book.restore(json.loads(json.dumps(book.snapshot())))
    a = book.apply(rows[cut:])
    b = twin.apply(rows[cut:])
    assert a.dtype == MD_DTYPE and a.tobytes() == b.tobytes()
    assert twin.snapshot() == book.snapshot()


@needs_data
def test_batching_does_not_change_the_output(loaded):
    batches, _stats = loaded
    rows = np.concatenate(batches)
    whole = L3Book().apply(rows)
    small = L3Book(capacity=4)
    parts = [small.apply(rows[i : i + 997]) for i in range(0, len(rows), 997)]
    assert np.concatenate(parts).tobytes() == whole.tobytes()


@needs_data
def test_dbn_file_reads_the_same_rows_as_the_csv(loaded):
    pytest.importorskip("databento_dbn", reason="the optional databento_dbn package is absent")
    batches, stats = loaded
    dbn_stats = DatabentoStats()
    dbn = [rows for _ins, rows in read_databento(FILE.with_name(
        "esh4-glbx-mdp3-20231225.mbo.dbn.zst"), stats=dbn_stats)]
    assert np.concatenate(dbn).tobytes() == np.concatenate(batches).tobytes()
    assert dbn_stats == stats


def test_symbol_engine_quarantines_the_preopen_cross_and_heals_after_the_uncross(loaded):
    """Through the SymbolEngine (the SymbolActor's engine): the crossed pre-open book is
    quarantined (decisions invalid), and the L3 book lifts it by itself after the open."""
    from actors.book.engine import SymbolEngine
    from actors.core.clock import SimClock
    from actors.feed.databento import databento_instrument
    from cluster.config import BookConfig, FeaturesConfig

    batches, _stats = loaded
    eng = SymbolEngine(databento_instrument("ESH4"), BookConfig(), FeaturesConfig(window=2),
                       SimClock())
    quarantined_at: list[int] = []
    valid_after_open = 0
    for rows in batches:
        for i in range(0, len(rows), 512):
            upd = eng.on_batch(rows[i : i + 512])
            assert upd.errors == ()
            if upd.view.quarantined:
                quarantined_at.append(int(rows[min(i + 511, len(rows) - 1)]["ts_event"]))
            if upd.decision is not None and upd.decision.ts_event > UNCROSS_NS:
                valid_after_open += upd.decision.valid
    assert eng.quarantines >= 1 and quarantined_at
    assert max(quarantined_at) <= UNCROSS_NS + 1_000_000_000  # healed at the uncross
    assert not eng.quarantined and valid_after_open > 50
    top = eng.book.top(1)
    assert (top[0], top[2]) == ([4810 * 4], [4810 * 4 + 1])  # 4810.00 / 4810.25 in 0.25 ticks
