"""The columnar market-data batch: the one shape market data takes between processes.

A batch is a numpy structured array of :data:`MD_DTYPE` rows plus the instrument it belongs to.
Rows are in arrival order. Semantics per ``kind``:

* ``DELTA``: the level ``(side, price)`` now holds ``size`` (absolute, as Binance diff-depth);
  ``size == 0`` removes the level.
* ``SNAPSHOT``: as ``DELTA``, but part of a full-book image; the first snapshot row after
  anything else implies a clear of the book.
* ``CLEAR``: remove every level of the book (``side``, ``price``, ``size`` ignored).
* ``TRADE``: a trade of ``size`` at ``price``; ``side`` is the aggressor (``BID`` = buyer).

Market-by-order (L3) rows name one resting order by ``order_id`` (0 on every L2 row):

* ``ADD``: a new order ``order_id`` of ``size`` at ``(side, price)``.
* ``CANCEL``: ``size`` is taken off order ``order_id`` (the order leaves when nothing remains).
* ``MODIFY``: order ``order_id`` now rests at ``(side, price)`` with ``size`` (a price change
  loses queue priority; a size decrease at the same price keeps it).

An L3 book (:mod:`actors.book.l3`) turns these into L2 level sizes; ``CLEAR`` clears both.

``flags`` carries ``F_LAST`` on the last row of an exchange message (the book is consistent
after it, so features may be sampled there) and ``F_SNAPSHOT`` on snapshot rows. A feed that
detects a sequence gap sends a ``CLEAR`` row flagged ``F_GAP``: the book is emptied and the
symbol quarantined until a snapshot resyncs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from actors.core.errors import BatchError
from actors.core.instruments import Instrument

# kind
DELTA = 0
TRADE = 1
SNAPSHOT = 2
CLEAR = 3
ADD = 4
CANCEL = 5
MODIFY = 6
KIND_NAMES = {
    DELTA: "delta",
    TRADE: "trade",
    SNAPSHOT: "snapshot",
    CLEAR: "clear",
    ADD: "add",
    CANCEL: "cancel",
    MODIFY: "modify",
}

# side (book side for deltas; aggressor side for trades)
BID = 0
ASK = 1

# flags
F_LAST = 1
F_SNAPSHOT = 2
F_GAP = 4  # on a CLEAR row: the feed lost data (sequence gap); the book is void until resync

MD_DTYPE = np.dtype(
    [
        ("ts_event", "i8"),  # exchange time, ns since epoch
        ("ts_init", "i8"),  # our receive time, ns since epoch
        ("seq", "i8"),  # venue sequence / update id (monotone non-decreasing)
        ("kind", "u1"),
        ("side", "u1"),
        ("price", "i8"),  # integer ticks
        ("size", "f8"),  # quantity in instrument units (not lots)
        ("flags", "u1"),
        ("order_id", "u8"),  # venue order id on market-by-order rows; 0 on L2 rows
    ]
)


@dataclass(frozen=True, slots=True)
class MarketBatch:
    """A batch of market-data rows for one instrument.

    Attributes:
        instrument: The instrument every row belongs to.
        data: Rows of :data:`MD_DTYPE`, in arrival order.
        wall_init_ns: Wall-clock ns when the batch entered raydesk. Equal to the last row's
            ``ts_init`` when live; on simulated time it is the real moment the feed emitted the
            batch, which is what processing latency is measured from.
    """

    instrument: Instrument
    data: np.ndarray
    wall_init_ns: int = 0
    meta: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def symbol(self) -> str:
        return self.instrument.symbol


OPTIONAL_COLUMNS = ("order_id",)


def empty_rows(n: int) -> np.ndarray:
    """Return ``n`` zeroed rows of :data:`MD_DTYPE`."""
    return np.zeros(n, dtype=MD_DTYPE)


def validate_rows(data: object, symbol: str = "") -> np.ndarray:
    """Check a batch's rows against the contract and return them as a :data:`MD_DTYPE` array.

    Raises:
        BatchError: naming the column (``batch[SYMBOL].price[3]``), the rule and the value.
    """
    where = f"batch[{symbol}]" if symbol else "batch"
    if not isinstance(data, np.ndarray):
        raise BatchError(where, "a numpy structured array of MD_DTYPE", type(data).__name__)
    if data.dtype != MD_DTYPE:
        names = data.dtype.names or ()
        # order_id may be left out by L2 producers (it is 0 on every L2 row)
        missing = [n for n in MD_DTYPE.names if n not in names and n not in OPTIONAL_COLUMNS]
        if missing:
            raise BatchError(f"{where}.dtype", f"have columns {list(MD_DTYPE.names)}", missing)
        # copy column by column, by name (a structured astype would match fields by position)
        out = np.empty(data.shape, dtype=MD_DTYPE)
        for name in MD_DTYPE.names:
            if name not in names:
                out[name] = 0
                continue
            col = data[name]
            if not np.can_cast(col.dtype, MD_DTYPE[name], casting="same_kind"):
                raise BatchError(f"{where}.{name}", f"castable to {MD_DTYPE[name]}", str(col.dtype))
            out[name] = col
        data = out
    if data.ndim != 1:
        raise BatchError(f"{where}.shape", "1-dimensional", data.shape)
    if len(data) == 0:
        return data

    def first_bad(mask: np.ndarray, col: str, rule: str) -> None:
        if mask.any():
            i = int(np.argmax(mask))
            raise BatchError(f"{where}.{col}[{i}]", rule, data[col][i].item())

    first_bad(
        data["kind"] > MODIFY,
        "kind",
        "one of 0=delta 1=trade 2=snapshot 3=clear 4=add 5=cancel 6=modify",
    )
    not_clear = data["kind"] != CLEAR
    first_bad(not_clear & (data["side"] > ASK), "side", "0 (bid/buy) or 1 (ask/sell)")
    size = data["size"]
    first_bad(~np.isfinite(size), "size", "finite")
    first_bad(size < 0, "size", ">= 0")
    kind = data["kind"]
    l3 = (kind >= ADD) & (kind <= MODIFY)
    first_bad(l3 & (data["order_id"] == 0), "order_id", "> 0 on an add/cancel/modify row")
    trade = kind == TRADE
    first_bad(trade & (size <= 0), "size", "> 0 for a trade")
    first_bad(not_clear & (data["price"] <= 0), "price", "> 0 ticks")
    first_bad(data["ts_event"] <= 0, "ts_event", "> 0 ns")
    first_bad(data["ts_init"] <= 0, "ts_init", "> 0 ns")
    if len(data) > 1:
        # seq may only go back where a snapshot starts (a resync to the venue's image, which
        # can be older than the chain it replaces); the book then continues from it
        back = np.concatenate(([False], np.diff(data["seq"]) < 0))
        if back.any():  # rare: only then look for snapshot starts
            starts = np.concatenate(([False], (kind[1:] == SNAPSHOT) & (kind[:-1] != SNAPSHOT)))
            first_bad(back & ~starts, "seq", "non-decreasing (except where a snapshot starts)")
    return data
