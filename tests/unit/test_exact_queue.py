"""Exact queue position on market-by-order data: the paper venue reads the real L3 book's
queue priorities from the view (``BookView.queues``) instead of modelling them."""

from __future__ import annotations

from typing import Any

import numpy as np

from actors.book.l3 import L3Book
from actors.core.batch import ADD, ASK, BID, CANCEL, MD_DTYPE, MODIFY
from actors.core.clock import SimClock
from actors.core.messages import OrderFilled, OrderSide, OrderType, SubmitOrder, TimeInForce
from actors.core.views import BookView, TradePrint
from actors.execution.engine import ExecutionEngine
from cluster.config import ExecutionConfig
from tests.unit.factories import LOT, SYMBOL, T0, instruments

PX = 600_000
_seq = [0]


def rows(*ops: tuple) -> np.ndarray:
    """``(kind, side, price, lots, order_id)`` rows, sizes given in lots."""
    out = np.zeros(len(ops), dtype=MD_DTYPE)
    for i, (kind, side, price, lots, oid) in enumerate(ops):
        _seq[0] += 1
        out[i] = (T0 + _seq[0], T0 + _seq[0], _seq[0], kind, side, price, lots * LOT, 1, oid)
    return out


def view(l3: L3Book, ts: int, trades: tuple[TradePrint, ...] = ()) -> BookView:
    bp, bs = l3.l2_levels(BID, 10)
    ap, asz = l3.l2_levels(ASK, 10)
    queues = {(0, int(p)): l3.level_queue(BID, int(p)) for p in bp}
    queues.update({(1, int(p)): l3.level_queue(ASK, int(p)) for p in ap})
    return BookView(SYMBOL, ts, ts, tuple(int(p) for p in bp), tuple(bs.tolist()),
                    tuple(int(p) for p in ap), tuple(asz.tolist()), seq=_seq[0],
                    trades=trades, queues=queues)


def engine(**cfg: Any) -> tuple[ExecutionEngine, SimClock]:
    clock = SimClock(T0)
    base = {"maker_fee_bps": 0.0, "taker_fee_bps": 0.0, "order_latency_us": 0.0, **cfg}
    return ExecutionEngine(ExecutionConfig(**base), instruments(), clock), clock


def buy(coid: str, lots: int) -> SubmitOrder:
    return SubmitOrder(ts_event=T0, ts_init=T0, client_order_id=coid, symbol=SYMBOL,
                       side=OrderSide.BUY, order_type=OrderType.LIMIT, qty_lots=lots,
                       price_ticks=PX, tif=TimeInForce.GTC)


def sell_print(lots: int, ts: int) -> tuple[TradePrint, ...]:
    return (TradePrint(ts_event=ts, price_ticks=PX, size=lots * LOT, aggressor="SELL"),)


def filled(events: list[Any]) -> int:
    return sum(e.last_qty_lots for e in events if isinstance(e, OrderFilled))


def test_level_queue_lists_priorities_in_fifo_order_and_a_modify_up_loses_its_place() -> None:
    l3 = L3Book()
    l3.apply(rows((ADD, BID, PX, 2, 1), (ADD, BID, PX, 3, 2), (ADD, BID, PX, 4, 3)))
    first = l3.level_queue(BID, PX)
    assert [s for _, s in first] == [2 * LOT, 3 * LOT, 4 * LOT]
    assert [p for p, _ in first] == sorted(p for p, _ in first)
    l3.apply(rows((MODIFY, BID, PX, 5, 1)))  # a size increase goes to the back
    after = l3.level_queue(BID, PX)
    assert [s for _, s in after] == [3 * LOT, 4 * LOT, 5 * LOT]
    assert after[-1][0] > max(p for p, _ in first)
    assert l3.level_queue(ASK, PX + 1) == ()


def test_exact_queue_counts_only_the_orders_still_ahead() -> None:
    l3 = L3Book()
    l3.apply(rows((ADD, BID, PX, 2, 1), (ADD, BID, PX, 3, 2), (ADD, BID, PX, 4, 3),
                  (ADD, ASK, PX + 1, 5, 9)))
    eng, clock = engine()
    eng.execute([buy("me", 5)], {SYMBOL: view(l3, T0)})
    assert eng.venue.resting_order("me").queue_ahead_lots == 9  # 2 + 3 + 4 ahead
    # an order ahead cancels, a new one joins behind us, the first one enlarges (to the back)
    l3.apply(rows((CANCEL, BID, PX, 3, 2), (ADD, BID, PX, 10, 4), (MODIFY, BID, PX, 3, 1)))
    clock.advance_to(T0 + 1)
    eng.execute([], {SYMBOL: view(l3, T0 + 1)})
    assert eng.venue.resting_order("me").queue_ahead_lots == 4  # only order 3 is ahead now
    # a 6-lot sell print at our price eats the 4 ahead, then fills 2 of ours
    clock.advance_to(T0 + 2)
    ev = eng.execute([], {SYMBOL: view(l3, T0 + 2, sell_print(6, T0 + 2))})
    assert filled(ev) == 2


def test_without_queue_data_the_conservative_model_would_not_have_filled() -> None:
    l3 = L3Book()
    l3.apply(rows((ADD, BID, PX, 2, 1), (ADD, BID, PX, 3, 2), (ADD, BID, PX, 4, 3),
                  (ADD, ASK, PX + 1, 5, 9)))
    eng, clock = engine()

    def l2(v: BookView) -> BookView:
        return BookView(v.symbol, v.ts_event, v.ts_init, v.bid_ticks, v.bid_sizes, v.ask_ticks,
                        v.ask_sizes, v.seq, v.quarantined, v.trades, None)

    eng.execute([buy("me", 5)], {SYMBOL: l2(view(l3, T0))})
    l3.apply(rows((CANCEL, BID, PX, 3, 2), (ADD, BID, PX, 10, 4), (MODIFY, BID, PX, 3, 1)))
    clock.advance_to(T0 + 1)
    eng.execute([], {SYMBOL: l2(view(l3, T0 + 1))})
    assert eng.venue.resting_order("me").queue_ahead_lots == 9  # cancels assumed behind
    clock.advance_to(T0 + 2)
    ev = eng.execute([], {SYMBOL: l2(view(l3, T0 + 2, sell_print(6, T0 + 2)))})
    assert filled(ev) == 0


def test_a_new_level_inside_the_spread_has_nobody_ahead_and_restore_keeps_the_priority() -> None:
    l3 = L3Book()
    l3.apply(rows((ADD, BID, PX - 1, 2, 1), (ADD, ASK, PX + 1, 5, 9)))
    eng, clock = engine()
    eng.execute([buy("me", 3)], {SYMBOL: view(l3, T0)})  # at PX: inside the spread
    r = eng.venue.resting_order("me")
    assert r.queue_ahead_lots == 0 and r.join_prio == -1
    snap = eng.snapshot()
    other, _ = engine()
    other.restore(snap)
    assert other.venue.resting_order("me").join_prio == -1


def test_the_symbol_engine_publishes_queues_only_for_market_by_order_data() -> None:
    from actors.book.engine import SymbolEngine
    from actors.core.batch import SNAPSHOT
    from cluster.config import BookConfig, FeaturesConfig

    ins = instruments()[SYMBOL]
    mbo = SymbolEngine(ins, BookConfig(levels_out=5), FeaturesConfig(window=2), SimClock())
    upd = mbo.on_batch(rows((ADD, BID, PX, 2, 1), (ADD, BID, PX, 3, 2), (ADD, ASK, PX + 1, 5, 9)))
    q = upd.view.queues
    assert q is not None and [s for _, s in q[(0, PX)]] == [2 * LOT, 3 * LOT]
    assert [s for _, s in q[(1, PX + 1)]] == [5 * LOT]
    l2 = SymbolEngine(ins, BookConfig(levels_out=5), FeaturesConfig(window=2), SimClock())
    assert l2.on_batch(rows((SNAPSHOT, BID, PX, 2, 0), (SNAPSHOT, ASK, PX + 1, 5, 0))
                       ).view.queues is None
