"""What the book kernel hands the feature library for each batch: message ends and trades.

The compiled book kernel (:mod:`actors.book.ladder`) applies a batch of market-data rows and
records, in preallocated arrays,

* one :data:`MSG_DTYPE` entry at the end of every book message (a row with ``F_LAST`` that is
  not a trade): the clock, the update id, and the best :data:`DEPTH` levels per side after the
  message (empty levels are price 0, size 0); and
* one :data:`TRADE_DTYPE` entry per trade: price, size, aggressor side, the size that was
  displayed at the trade price on the passive side just before the trade (``shown``; what
  iceberg and absorption detection compare executed volume with), and ``msg``, the number of
  book message ends recorded before it in the same chunk of frames (so trades and book states can be
  interleaved exactly).

The feature library consumes only these arrays, so features are identical however the stream
was batched, in replay and live.
"""

from __future__ import annotations

import numpy as np

DEPTH = 10  # levels per side recorded at every message end

MSG_DTYPE = np.dtype(
    [
        ("ts_event", "i8"),
        ("seq", "i8"),
        ("bid_px", "i8", (DEPTH,)),
        ("bid_sz", "f8", (DEPTH,)),
        ("ask_px", "i8", (DEPTH,)),
        ("ask_sz", "f8", (DEPTH,)),
    ]
)

TRADE_DTYPE = np.dtype(
    [
        ("ts_event", "i8"),
        ("price", "i8"),  # ticks
        ("size", "f8"),
        ("side", "u1"),  # aggressor: 0 = buyer, 1 = seller
        ("shown", "f8"),  # passive-side size displayed at ``price`` just before the trade
        ("msg", "i4"),  # book message ends recorded before this trade in the same chunk
    ]
)

NO_MSGS = np.zeros(0, dtype=MSG_DTYPE)  # empty frames, for an update that carries none
NO_TRADES = np.zeros(0, dtype=TRADE_DTYPE)


def reference_frames(book: object, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plain-Python reference of the kernel's frames: apply ``rows`` to an ``L2Book``.

    Slow and obviously correct (dicts and sorting); tests compare the compiled kernel and the
    feature library's inputs with it. Mutates ``book``.
    """
    from actors.book.book import L2Book
    from actors.core.batch import BID, CLEAR, F_LAST, SNAPSHOT, TRADE

    assert isinstance(book, L2Book)
    msgs: list[tuple] = []
    trades: list[tuple] = []
    for te, _ti, seq, kind, side, price, size, flags, _oid in rows.tolist():
        if kind == TRADE:
            passive = book.asks if side == BID else book.bids
            trades.append((te, price, size, side, passive.get(price, 0.0), len(msgs)))
            continue
        if kind == CLEAR:
            book.clear()
        else:
            if kind == SNAPSHOT and not book.in_snapshot:
                book.clear()
                book.in_snapshot = True
            book.set_level(side, price, size)
        book.last_seq = seq
        if flags & F_LAST:
            book.in_snapshot = False
            bp = sorted(book.bids, reverse=True)[:DEPTH]
            ap = sorted(book.asks)[:DEPTH]
            pad = [0] * DEPTH
            msgs.append(
                (
                    te,
                    seq,
                    (bp + pad)[:DEPTH],
                    ([book.bids[p] for p in bp] + [0.0] * DEPTH)[:DEPTH],
                    (ap + pad)[:DEPTH],
                    ([book.asks[p] for p in ap] + [0.0] * DEPTH)[:DEPTH],
                )
            )
    return np.array(msgs, dtype=MSG_DTYPE), np.array(trades, dtype=TRADE_DTYPE)
