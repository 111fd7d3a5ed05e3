"""The L3 (market-by-order) book: aggregation, FIFO priority, fills, errors, checkpoints.

The property test compares the book with a plain dict-of-orders reference (FIFO lists per level)
after every row: the L2 rows it emits, applied to an ``L2Book``, must equal the reference's
per-level sums, and every level's queue must equal the reference queue.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.book.book import L2Book
from actors.book.l3 import L3Book
from actors.core.batch import (
    ADD,
    ASK,
    BID,
    CANCEL,
    CLEAR,
    DELTA,
    F_LAST,
    F_SNAPSHOT,
    MD_DTYPE,
    MODIFY,
    SNAPSHOT,
    TRADE,
)

T0 = 1_700_000_000_000_000_000


def _rows(*ops: tuple) -> np.ndarray:
    """Rows from ``(kind, side, price, size, order_id[, flags])``; seq and clocks count up."""
    out = np.zeros(len(ops), dtype=MD_DTYPE)
    for i, op in enumerate(ops):
        kind, side, price, size, oid = op[:5]
        flags = op[5] if len(op) > 5 else F_LAST
        out[i] = (T0 + i, T0 + i + 100, i + 1, kind, side, price, size, flags, oid)
    return out


def _sizes(out: np.ndarray) -> list[tuple[int, int, int, float]]:
    return [(int(r["kind"]), int(r["side"]), int(r["price"]), float(r["size"])) for r in out]


# --- aggregation --------------------------------------------------------------------------------
def test_adds_emit_the_new_aggregated_level_size():
    book = L3Book()
    out = book.apply(_rows((ADD, BID, 100, 2, 1), (ADD, BID, 100, 3, 2), (ADD, ASK, 101, 1, 3)))
    assert _sizes(out) == [(DELTA, BID, 100, 2.0), (DELTA, BID, 100, 5.0), (DELTA, ASK, 101, 1.0)]
    assert out["order_id"].tolist() == [0, 0, 0]
    assert out["seq"].tolist() == [1, 2, 3]
    assert out["ts_init"].tolist() == [T0 + 100, T0 + 101, T0 + 102]
    assert book.n_orders == 3 and book.n_levels == 2


def test_partial_cancel_reduces_the_level_and_keeps_the_queue_place():
    book = L3Book()
    book.apply(_rows((ADD, BID, 100, 5, 1), (ADD, BID, 100, 3, 2)))
    out = book.apply(_rows((CANCEL, BID, 100, 2, 1)))
    assert _sizes(out) == [(DELTA, BID, 100, 6.0)]
    assert book.level_orders(BID, 100) == [(1, 3.0), (2, 3.0)]
    out = book.apply(_rows((CANCEL, BID, 100, 3, 1), (CANCEL, BID, 100, 3, 2)))
    assert _sizes(out) == [(DELTA, BID, 100, 3.0), (DELTA, BID, 100, 0.0)]
    assert book.n_orders == 0 and book.n_levels == 0
    assert book.l2_levels(BID, 5)[0].tolist() == []


def test_modify_that_moves_price_emits_old_then_new_level_with_f_last_on_the_second():
    book = L3Book()
    book.apply(_rows((ADD, ASK, 105, 4, 9), (ADD, ASK, 105, 1, 8)))
    out = book.apply(_rows((MODIFY, ASK, 104, 2, 9, F_LAST)))
    assert _sizes(out) == [(DELTA, ASK, 105, 1.0), (DELTA, ASK, 104, 2.0)]
    assert out["flags"].tolist() == [0, F_LAST]
    assert out["seq"].tolist() == [1, 1]
    assert book.order(9)[:3] == (ASK, 104, 2.0)


def test_modify_down_keeps_priority_and_modify_up_loses_it():
    book = L3Book()
    book.apply(_rows((ADD, BID, 100, 5, 1), (ADD, BID, 100, 3, 2), (ADD, BID, 100, 4, 3)))
    assert [book.queue_ahead(o) for o in (1, 2, 3)] == [0.0, 5.0, 8.0]
    book.apply(_rows((MODIFY, BID, 100, 2, 1)))  # decrease: stays first
    assert book.level_orders(BID, 100) == [(1, 2.0), (2, 3.0), (3, 4.0)]
    assert book.queue_ahead(3) == 5.0
    book.apply(_rows((MODIFY, BID, 100, 6, 2)))  # increase: to the back
    assert book.level_orders(BID, 100) == [(1, 2.0), (3, 4.0), (2, 6.0)]
    assert book.queue_ahead(2) == 6.0 and book.queue_ahead(3) == 2.0
    book.apply(_rows((MODIFY, BID, 100, 4, 3)))  # same size: keeps its place
    assert book.level_orders(BID, 100) == [(1, 2.0), (3, 4.0), (2, 6.0)]
    book.apply(_rows((MODIFY, BID, 99, 4, 1), (MODIFY, BID, 100, 4, 1)))  # away and back
    assert book.level_orders(BID, 100) == [(3, 4.0), (2, 6.0), (1, 4.0)]


def test_queue_ahead_of_an_unknown_order_raises_a_named_error():
    with pytest.raises(ValueError, match="order_id must be a resting order, was 5"):
        L3Book().queue_ahead(5)


def test_clear_passes_through_and_empties_the_book():
    book = L3Book()
    book.apply(_rows((ADD, BID, 100, 1, 1), (ADD, ASK, 101, 1, 2)))
    out = book.apply(_rows((CLEAR, 0, 0, 0, 0), (ADD, BID, 100, 7, 1)))
    assert _sizes(out) == [(CLEAR, 0, 0, 0.0), (DELTA, BID, 100, 7.0)]
    assert book.n_orders == 1 and book.level_orders(BID, 100) == [(1, 7.0)]
    assert book.l2_levels(ASK, 5)[0].tolist() == []


def test_snapshot_flagged_rows_come_out_as_snapshot_rows():
    book = L3Book()
    out = book.apply(_rows((CLEAR, 0, 0, 0, 0, F_SNAPSHOT), (ADD, BID, 100, 1, 1, F_SNAPSHOT),
                           (ADD, BID, 100, 2, 2, F_SNAPSHOT | F_LAST)))
    assert out["kind"].tolist() == [CLEAR, SNAPSHOT, SNAPSHOT]
    assert out["size"].tolist() == [0.0, 1.0, 3.0]
    assert out["flags"].tolist() == [F_SNAPSHOT, F_SNAPSHOT, F_SNAPSHOT | F_LAST]


def test_l2_rows_and_trade_prints_pass_through_unchanged():
    book = L3Book()
    rows = _rows((DELTA, BID, 100, 3, 0, 0), (SNAPSHOT, ASK, 101, 2, 0, F_SNAPSHOT),
                 (TRADE, ASK, 100, 1, 0))
    out = book.apply(rows)
    assert out.tobytes() == rows.tobytes()
    assert book.n_orders == 0


def test_l2_levels_are_sorted_best_first_and_cut_at_depth():
    book = L3Book()
    book.apply(_rows(*[(ADD, BID, p, 1, p) for p in (97, 99, 98, 100)],
                     *[(ADD, ASK, p, 2, 1000 + p) for p in (104, 102, 103)]))
    bp, bs = book.l2_levels(BID, 3)
    ap, asz = book.l2_levels(ASK, 5)
    assert bp.tolist() == [100, 99, 98] and bs.tolist() == [1.0, 1.0, 1.0]
    assert ap.tolist() == [102, 103, 104] and asz.tolist() == [2.0, 2.0, 2.0]


# --- fills and icebergs -------------------------------------------------------------------------
def test_fills_are_consumed_and_change_nothing():
    book = L3Book()
    book.apply(_rows((ADD, BID, 100, 5, 1)))
    out = book.apply(_rows((TRADE, ASK, 100, 2, 0, 0), (TRADE, ASK, 100, 2, 1, 0),
                           (MODIFY, BID, 100, 3, 1)))
    assert _sizes(out) == [(TRADE, ASK, 100, 2.0), (DELTA, BID, 100, 3.0)]
    assert book.fills == 1 and book.iceberg_refills == 0 and book.hidden_fills == 0


def test_a_fill_with_f_last_leaves_a_restating_delta():
    book = L3Book()
    book.apply(_rows((ADD, BID, 100, 5, 1)))
    out = book.apply(_rows((TRADE, ASK, 100, 2, 1, F_LAST), (TRADE, ASK, 90, 1, 77, F_LAST)))
    assert _sizes(out) == [(DELTA, BID, 100, 5.0), (DELTA, BID, 90, 0.0)]
    assert out["flags"].tolist() == [F_LAST, F_LAST]
    assert book.fills_unknown == 1


def test_iceberg_refill_after_a_consuming_fill_is_detected_and_requeued():
    book = L3Book()
    book.apply(_rows((ADD, BID, 100, 2, 1), (ADD, BID, 100, 3, 2)))
    # the 2 shown are filled (plus 1 hidden), the order shows a fresh tranche of 2
    book.apply(_rows((TRADE, ASK, 100, 3, 0, 0), (TRADE, ASK, 100, 3, 1, 0),
                     (MODIFY, BID, 100, 2, 1)))
    assert book.iceberg_refills == 1 and book.hidden_fills == 1
    assert book.level_orders(BID, 100) == [(2, 3.0), (1, 2.0)]  # a refill loses priority
    assert book.recent_icebergs() == [{"ts_event": T0 + 2, "side": BID, "price": 100,
                                       "order_id": 1, "shown": 2.0, "filled": 3.0,
                                       "new_size": 2.0}]
    assert book.iceberg_refills_by_price() == {(BID, 100): 1}
    # an ordinary partial fill: new size == shown - filled, no refill, keeps its place
    book.apply(_rows((TRADE, BID, 100, 1, 2, 0), (MODIFY, BID, 100, 2, 2)))
    assert book.iceberg_refills == 1
    assert book.level_orders(BID, 100) == [(2, 2.0), (1, 2.0)]


# --- integrity errors ---------------------------------------------------------------------------
def test_integrity_errors_are_counted_and_described_not_raised():
    book = L3Book()
    book.apply(_rows((ADD, BID, 100, 2, 1)))
    out = book.apply(_rows(
        (ADD, BID, 101, 4, 1),  # existing id: re-placed at 101
        (CANCEL, ASK, 105, 1, 42),  # unknown: nothing changes
        (CANCEL, BID, 101, 9, 1),  # larger than the 4 left: the order leaves
        (MODIFY, ASK, 106, 3, 43),  # unknown: inserted
        (MODIFY, BID, 106, 3, 43),  # wrong side: moved to the bid
    ))
    assert book.error_counts == {
        "add_existing": 1, "cancel_unknown": 1, "cancel_exceeds": 1, "modify_unknown": 1,
        "side_mismatch": 1, "price_mismatch": 0, "order_id_zero": 0,
    }
    assert book.needs_resync
    errs = book.last_errors
    assert len(errs) == 5
    assert errs[0] == "add[row 0, seq 1].order_id must be a new order id (it rests with size 2)" \
        ", was 1"
    assert errs[1] == "cancel[row 1, seq 2].order_id must be a resting order, was 42"
    assert errs[2] == "cancel[row 2, seq 3].size must be <= the remaining size 4 of order 1, " \
        "was 9.0"
    assert errs[3] == "modify[row 3, seq 4].order_id must be a resting order, was 43"
    assert errs[4] == "modify[row 4, seq 5].side must be the side 1 of order 43, was 0"
    assert _sizes(out) == [
        (DELTA, BID, 100, 0.0), (DELTA, BID, 101, 4.0),
        (DELTA, ASK, 105, 0.0),
        (DELTA, BID, 101, 0.0),
        (DELTA, ASK, 106, 3.0),
        (DELTA, ASK, 106, 0.0), (DELTA, BID, 106, 3.0),
    ]
    assert book.n_orders == 1 and book.level_orders(BID, 106) == [(43, 3.0)]
    book.apply(_rows((ADD, BID, 100, 1, 5)))
    assert book.last_errors == [] and book.needs_resync  # sticky until a clear
    book.apply(_rows((CLEAR, 0, 0, 0, 0)))
    assert not book.needs_resync and book.error_counts["add_existing"] == 1


def test_cancel_at_the_wrong_price_is_reported_and_applied_to_the_order():
    book = L3Book()
    book.apply(_rows((ADD, ASK, 110, 2, 1)))
    out = book.apply(_rows((CANCEL, ASK, 111, 2, 1)))
    assert book.error_counts["price_mismatch"] == 1
    assert book.last_errors == ["cancel[row 0, seq 1].price must be the price 110 of order 1, "
                                "was 111"]
    assert _sizes(out) == [(DELTA, ASK, 110, 0.0)]


# --- growth and checkpoints ---------------------------------------------------------------------
def test_book_grows_from_a_tiny_capacity_without_losing_orders():
    book = L3Book(capacity=2)
    n = 5_000
    ops = [(ADD, i % 2, 1000 + (i % 700) * (1 if i % 2 else -1), 1 + i % 3, i + 1)
           for i in range(n)]
    out = book.apply(_rows(*ops))
    assert len(out) == n and book.n_orders == n
    ref: dict[tuple[int, int], float] = {}
    for _k, side, price, size, _oid in ops:
        ref[(side, price)] = ref.get((side, price), 0.0) + size
    for side in (BID, ASK):
        prices, sizes = book.l2_levels(side, 10_000)
        assert dict(zip(((side, p) for p in prices.tolist()), sizes.tolist(),
                        strict=True)) == {k: v for k, v in ref.items() if k[0] == side}
    book.apply(_rows(*[(CANCEL, side, price, size, oid) for _k, side, price, size, oid in ops]))
    assert book.n_orders == 0 and book.n_levels == 0 and not book.needs_resync


def test_snapshot_restore_keeps_queues_counters_and_pending_fills():
    book = L3Book()
    book.apply(_rows((ADD, BID, 100, 2, 1), (ADD, BID, 100, 3, 2), (ADD, ASK, 101, 1, 3),
                     (MODIFY, BID, 100, 5, 1), (CANCEL, ASK, 200, 1, 99),
                     (TRADE, BID, 100, 2, 2, 0)))
    image = json.loads(json.dumps(book.snapshot()))
    twin = L3Book.restore(image)
    assert twin.snapshot() == image
    assert twin.level_orders(BID, 100) == [(2, 3.0), (1, 5.0)]
    tail = _rows((MODIFY, BID, 100, 4, 2), (ADD, ASK, 101, 1, 4))
    assert book.apply(tail).tobytes() == twin.apply(tail).tobytes()
    assert twin.iceberg_refills == book.iceberg_refills == 1  # the pending fill survived
    assert twin.snapshot() == book.snapshot()


# --- property: against a dict-of-orders reference -----------------------------------------------
class _Ref:
    """Plain reference: orders in a dict, one FIFO list per level, the same documented rules."""

    def __init__(self) -> None:
        self.orders: dict[int, list] = {}  # id -> [side, price, size, filled]
        self.queues: dict[tuple[int, int], list[int]] = {}

    def _join(self, oid: int) -> None:
        side, price = self.orders[oid][:2]
        self.queues.setdefault((side, price), []).append(oid)

    def _leave(self, oid: int) -> None:
        side, price = self.orders[oid][:2]
        q = self.queues[(side, price)]
        q.remove(oid)
        if not q:
            del self.queues[(side, price)]

    def apply(self, kind: int, side: int, price: int, size: float, oid: int) -> None:
        if kind == CLEAR:
            self.orders.clear()
            self.queues.clear()
        elif kind == ADD:
            self.orders[oid] = [side, price, size, 0.0]
            self._join(oid)
        elif kind == CANCEL:
            o = self.orders[oid]
            o[2] -= size
            o[3] = 0.0
            if o[2] == 0:
                self._leave(oid)
                del self.orders[oid]
        elif kind == MODIFY:
            o = self.orders[oid]
            refill = o[3] > 0 and price == o[1] and size > o[2] - o[3]
            requeue = price != o[1] or size > o[2] or refill
            if requeue:
                self._leave(oid)
            o[1], o[2], o[3] = price, size, 0.0
            if requeue:
                self._join(oid)
        elif kind == TRADE and oid:
            self.orders[oid][3] += size

    def levels(self, side: int) -> dict[int, float]:
        out: dict[int, float] = {}
        for s, p, size, _f in self.orders.values():
            if s == side:
                out[p] = out.get(p, 0.0) + size
        return out


def _ops_from(draws: list[tuple[int, int, int, int]]) -> list[tuple]:
    """Turn random draws into a valid op sequence (cancels/modifies/fills name live orders)."""
    live: dict[int, list] = {}
    ops: list[tuple] = []
    next_id = 1
    for op, a, b, c in draws:
        ids = sorted(live)
        if op <= 3 or not ids:
            side = a % 2
            price = 96 + b % 5
            size = float(1 + c % 5) / (2 if c % 7 == 0 else 1)
            ops.append((ADD, side, price, size, next_id))
            live[next_id] = [side, price, size]
            next_id += 1
        elif op <= 5:
            oid = ids[a % len(ids)]
            side, price, size = live[oid]
            cut = size if b % 3 == 0 or size <= 1 else float(1 + c % int(size - 0.5))
            cut = min(cut, size)
            ops.append((CANCEL, side, price, cut, oid))
            live[oid][2] -= cut
            if live[oid][2] == 0:
                del live[oid]
        elif op <= 7:
            oid = ids[a % len(ids)]
            side, price, _size = live[oid]
            new_price = price if b % 2 else 96 + b % 5
            new_size = float(1 + c % 6)
            ops.append((MODIFY, side, new_price, new_size, oid))
            live[oid] = [side, new_price, new_size]
        elif op == 8:
            if c % 8 == 0:
                ops.append((CLEAR, 0, 0, 0.0, 0))
                live.clear()
            else:
                ops.append((TRADE, a % 2, 96 + b % 5, float(1 + c % 3), 0))
        else:
            oid = ids[a % len(ids)]
            side, price, size = live[oid]
            filled = float(1 + c % 4)
            ops.append((TRADE, 1 - side, price, filled, oid))  # a fill
            if c % 2 == 0:  # the venue's update after it: a partial fill or a refill
                new_size = max(size - filled, 0.0) if b % 3 == 0 else float(1 + b % 6)
                if new_size > 0:
                    ops.append((MODIFY, side, price, new_size, oid))
                    live[oid][2] = new_size
                else:
                    ops.append((CANCEL, side, price, size, oid))
                    del live[oid]
    return ops


def _l2_apply(book: L2Book, out: np.ndarray) -> None:
    for _te, _ti, _seq, kind, side, price, size, _flags, _oid in out.tolist():
        if kind == CLEAR:
            book.clear()
        elif kind != TRADE:
            book.set_level(side, price, size)


_DRAW = st.tuples(st.integers(0, 9), st.integers(0, 10_000), st.integers(0, 10_000),
                  st.integers(0, 10_000))


@settings(max_examples=120, deadline=None)
@given(
    draws=st.integers(1, 250).flatmap(lambda n: st.lists(_DRAW, min_size=n, max_size=n)),
    cuts=st.lists(st.integers(0, 120), max_size=6),
)
def test_l2_output_equals_the_dict_reference_after_every_row(draws, cuts):
    ops = _ops_from(draws)
    rows = _rows(*[(*op, F_LAST if i % 3 == 2 else 0) for i, op in enumerate(ops)])
    book = L3Book(capacity=2)
    l2 = L2Book()
    ref = _Ref()
    outs = []
    for i, op in enumerate(ops):
        out = book.apply(rows[i : i + 1])
        outs.append(out)
        assert len(out) <= 2
        if len(out) == 2:
            assert out["flags"][0] & F_LAST == 0 and out["flags"][1] == rows["flags"][i]
        _l2_apply(l2, out)
        ref.apply(*op)
        assert l2.bids == ref.levels(BID) and l2.asks == ref.levels(ASK), f"after row {i}: {op}"
        assert book.n_orders == len(ref.orders)
        for (side, price), queue in ref.queues.items():
            got = book.level_orders(side, price)
            want = [(oid, ref.orders[oid][2]) for oid in queue]
            assert got == want, f"queue {side}@{price} after row {i}"
            ahead = 0.0
            for oid, size in want:
                assert book.queue_ahead(oid) == ahead
                ahead += size
    assert book.error_counts == dict.fromkeys(book.error_counts, 0)
    assert not book.needs_resync
    # the same rows in arbitrary batches give the same output
    whole = np.concatenate(outs) if outs else np.zeros(0, dtype=MD_DTYPE)
    batched = L3Book(capacity=2)
    bounds = sorted({0, len(rows), *(min(c, len(rows)) for c in cuts)})
    parts = [batched.apply(rows[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    got = np.concatenate(parts) if parts else np.zeros(0, dtype=MD_DTYPE)
    assert got.tobytes() == whole.tobytes()
    assert batched.snapshot() == book.snapshot()


# --- fed by the Databento MBO loader (synthetic CSV; the real file is in tests/realdata) -------
HEADER = "ts_recv,ts_event,instrument_id,action,side,price,size,order_id,flags,sequence," \
    "is_snapshot\n"


def _mbo_csv(tmp_path, lines: list[str], name: str = "x.mbo.csv.gz"):
    import gzip

    path = tmp_path / name
    with gzip.open(path, "wt") as f:
        f.write(HEADER + "".join(line + "\n" for line in lines))
    return path


def test_databento_snapshot_gets_a_clear_and_a_last_flag_and_fills_reach_the_book(tmp_path):
    from actors.feed.databento import DatabentoStats, read_databento

    path = _mbo_csv(tmp_path, [
        "100,50,17077,A,B,4799.00,2,11,40,7,1",
        "100,50,17077,A,A,4799.25,3,12,40,5,1",  # snapshot sequence goes backwards
        "200,150,17077,A,B,4799.00,4,13,130,20,0",
        "300,250,17077,T,A,4799.00,3,99,0,21,0",
        "300,250,17077,F,B,4799.00,2,11,0,21,0",
        "300,250,17077,F,B,4799.00,1,13,0,21,0",
        "300,250,17077,C,B,4799.00,2,11,0,22,0",
        "300,250,17077,M,B,4799.00,3,13,130,22,0",
        "400,350,17077,T,N,4799.25,1,0,0,23,0",  # no aggressor: counted, not emitted
        "400,350,17077,N,N,,0,0,128,23,0",  # ends the event: F_LAST moves back one row
    ])
    stats = DatabentoStats()
    ((ins, rows),) = list(read_databento(path, stats=stats))
    assert (ins.symbol, ins.venue, str(ins.tick_size)) == ("ESH4", "GLBX", "0.25")
    assert rows["kind"].tolist() == [CLEAR, ADD, ADD, ADD, TRADE, TRADE, TRADE, CANCEL, MODIFY]
    assert rows["flags"].tolist() == [F_SNAPSHOT, F_SNAPSHOT, F_SNAPSHOT | F_LAST, F_LAST,
                                      0, 0, 0, 0, F_LAST]
    assert rows["seq"].tolist() == [7, 7, 7, 20, 21, 21, 21, 22, 22]
    assert rows["price"].tolist() == [0, 19196, 19197, 19196, 19196, 19196, 19196, 19196, 19196]
    assert rows["order_id"].tolist() == [0, 11, 12, 13, 0, 11, 13, 11, 13]
    assert rows["side"].tolist()[4:7] == [ASK, ASK, ASK]  # aggressor sold into the bids
    assert rows["ts_init"].tolist()[3] == 200 and rows["ts_event"].tolist()[3] == 150
    assert stats.skipped == {"trade_no_aggressor": 1, "none_action": 1}
    assert stats.seq_raised == 1 and stats.synthetic_clears == 1
    assert stats.snapshot_ends_marked == 1 and stats.rejected == 0

    book = L3Book()
    out = book.apply(rows)
    assert _sizes(out)[-3:] == [(TRADE, ASK, 19196, 3.0), (DELTA, BID, 19196, 4.0),
                                (DELTA, BID, 19196, 3.0)]
    assert book.fills == 2 and book.iceberg_refills == 0  # 4 - 1 filled = 3: a plain fill
    assert book.level_orders(BID, 19196) == [(13, 3.0)]


def test_databento_bad_records_are_counted_with_file_line_field_rule_and_value(tmp_path):
    from decimal import Decimal

    from actors.core.instruments import Instrument
    from actors.feed.databento import DatabentoStats, read_databento

    path = _mbo_csv(tmp_path, [
        "100,50,17077,A,B,4799.00,2,11,130,7,0",
        "100,50,17077,A,B,4799.10,2,12,130,8,0",
        "100,50,17077,X,B,4799.00,2,13,130,9,0",
        "100,50,17077,A,N,4799.00,2,14,130,10,0",
        "100,50,17077,C,B,4799.00,-1,11,130,11,0",
        "100,50,999,A,B,4799.00,1,15,130,12,0",
        "100,50,17077,A,A,4800.00,1,16,0,13,0",
        "100,50,17077,M,A,4800.00,x,16,128,13,0",  # rejected, but it ended the event
    ])
    stats = DatabentoStats()
    ((_ins, rows),) = list(read_databento(path, stats=stats))
    assert rows["order_id"].tolist() == [11, 16]
    assert rows["flags"].tolist() == [F_LAST, F_LAST]
    assert stats.records == 8 and stats.rejected == 6
    assert stats.errors == [
        "x.mbo.csv.gz:3.price must be a multiple of tick_size 0.25, was '4799.10'",
        "x.mbo.csv.gz:4.action must be one of ['A', 'C', 'M', 'R', 'T', 'F', 'N'], was 'X'",
        "x.mbo.csv.gz:5.side must be 'A' or 'B' on action A, was 'N'",
        "x.mbo.csv.gz:6.size must be > 0 on action C, was '-1'",
        "x.mbo.csv.gz:7.instrument_id must be a known instrument (pass instruments={id: "
        "Instrument}), was 999",
        "x.mbo.csv.gz:9.size must be a decimal number, was 'x'",
    ]
    # an override names the unknown instrument
    nq = Instrument("NQH4", Decimal("0.25"), Decimal("1"), "GLBX")
    got = list(read_databento(path, instruments={999: nq}, stats=DatabentoStats()))
    assert [(i.symbol, r["order_id"].tolist()) for i, r in got] == [("ESH4", [11, 16]),
                                                                    ("NQH4", [15])]
