"""NautilusTrader's order book on raydesk's book rows: the peer half of ``raydesk bench book``.

A standalone script run by :func:`jobs.peers.run_nautilus_book` under the separate
``.venv-nautilus`` interpreter (NautilusTrader needs pandas < 3, raydesk does not). It imports
only the standard library, numpy and ``nautilus_trader``, never raydesk, and NautilusTrader is
imported inside :func:`main` only, so the pure numpy planning below can be tested from raydesk's
own venv.

Input: an ``.npz`` written by :func:`jobs.peers.export_deltas` (columns ``side price size flags
kind seq ts_event ts_init`` of raydesk ``MD_DTYPE`` book rows, plus ``tick_size``/``lot_size``
strings). Each row becomes one NautilusTrader ``OrderBookDelta`` for an ``L2_MBP`` book:

* the first ``SNAPSHOT`` row of a snapshot (after anything but an unfinished snapshot) is
  preceded by a ``CLEAR`` delta, then each snapshot row is an ``ADD`` (``DELETE`` if size 0);
* a ``DELTA`` row with size 0 is a ``DELETE``, otherwise an ``UPDATE`` (an ``L2_MBP`` book keys
  levels by price, and ``UPDATE`` of an absent level inserts it, which is what an absolute
  Binance level size means);
* a ``CLEAR`` row is a ``CLEAR`` delta;
* raydesk ``F_LAST``/``F_SNAPSHOT`` become NautilusTrader's ``RecordFlag.F_LAST``/``F_SNAPSHOT``.

Deltas are built with ``OrderBookDelta.from_raw`` (fixed-point raw price and size, no
``Price``/``Quantity`` objects), the fastest documented constructor of the Cython objects.

Output: one JSON object on stdout (see :func:`main`).

Example:
    .venv-nautilus/bin/python jobs/peers/nautilus_book.py /tmp/btc.npz --repeats 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

# raydesk's market-data contract (actors/core/batch.py); a raydesk test keeps these in step
DELTA = 0
TRADE = 1
SNAPSHOT = 2
CLEAR = 3
BID = 0
ASK = 1
F_LAST = 1
F_SNAPSHOT = 2

# NautilusTrader's BookAction values and RecordFlag bits (checked against the package in main)
NT_ADD = 1
NT_UPDATE = 2
NT_DELETE = 3
NT_CLEAR = 4
NT_F_LAST = 128
NT_F_SNAPSHOT = 32

COLUMNS = ("side", "price", "size", "flags", "kind", "seq", "ts_event", "ts_init")
INSTRUMENT_ID = "BTCUSDT-PERP.BINANCE"


def precision_of(step: str) -> int:
    """Return the number of decimals of a tick or lot size string (``"0.010"`` → 2)."""
    exp = Decimal(step).normalize().as_tuple().exponent
    return max(0, -int(exp))


def load(path: Path) -> tuple[dict[str, np.ndarray], str, str]:
    """Read an exported ``.npz``: the row columns, tick size and lot size."""
    with np.load(path, allow_pickle=False) as z:
        cols = {c: z[c] for c in COLUMNS}
        return cols, str(z["tick_size"]), str(z["lot_size"])


def plan(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Turn raydesk row columns into NautilusTrader delta columns (vectorised, no nautilus).

    Returns:
        ``action`` (NautilusTrader BookAction value per row), ``flags`` (NautilusTrader record
        flags per row) and ``clear_before`` (True where a CLEAR delta precedes the row: the
        first row of each snapshot).

    Raises:
        ValueError: on a kind other than delta, snapshot or clear.
    """
    kind = cols["kind"]
    flags = cols["flags"]
    bad = (kind != DELTA) & (kind != SNAPSHOT) & (kind != CLEAR)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"kind[{i}] must be 0=delta, 2=snapshot or 3=clear, was {int(kind[i])}")
    snap = kind == SNAPSHOT
    # a snapshot continues while the previous row is an unfinished snapshot row
    prev_open = np.zeros(len(kind), dtype=bool)
    prev_open[1:] = snap[:-1] & ((flags[:-1] & F_LAST) == 0)
    clear_before = snap & ~prev_open
    zero = cols["size"] == 0.0
    action = np.where(snap, NT_ADD, NT_UPDATE)
    action = np.where(zero, NT_DELETE, action)
    action = np.where(kind == CLEAR, NT_CLEAR, action).astype(np.uint8)
    nt_flags = np.where(flags & F_LAST, NT_F_LAST, 0) | np.where(
        flags & F_SNAPSHOT, NT_F_SNAPSHOT, 0
    )
    return {"action": action, "flags": nt_flags.astype(np.uint8), "clear_before": clear_before}


def size_precision(size: np.ndarray, lot_size: str, max_precision: int = 16) -> int:
    """Return the decimals needed to hold every size exactly: at least the lot size's.

    Venue books may quote sizes finer than the order lot (Binance spot BTCUSDT has lot 0.00001
    and book sizes like ``25.426189``), so the lot size alone is not enough.

    Raises:
        ValueError: when no precision up to ``max_precision`` holds a size exactly.
    """
    for prec in range(precision_of(lot_size), max_precision + 1):
        scaled = size * 10.0**prec
        # a float parsed from a decimal string is off by a few ulps at most once scaled
        if np.all(np.abs(scaled - np.rint(scaled)) <= 1e-9 + 1e-15 * np.abs(scaled)):
            return prec
    scaled = size * 10.0**max_precision
    i = int(np.argmax(np.abs(scaled - np.rint(scaled))))
    raise ValueError(f"size[{i}] must have at most {max_precision} decimals, was {size[i]!r}")


def prepare(cols: dict[str, np.ndarray], tick_size: str, lot_size: str, fixed: int) -> dict:
    """What the deltas are built from, worked out once (not part of the timed creation):
    precisions, raw units per tick and per size unit, sizes in units, and the action plan."""
    size_prec = size_precision(cols["size"], lot_size, fixed)
    raw_per_tick = Decimal(tick_size) * 10**fixed
    if raw_per_tick != int(raw_per_tick):
        raise ValueError(f"tick_size must have at most {fixed} decimals, was {tick_size}")
    return {
        "price_prec": precision_of(tick_size),
        "size_prec": size_prec,
        "rpt": int(raw_per_tick),
        "rpu": 10 ** (fixed - size_prec),
        "units": np.rint(cols["size"] * 10.0**size_prec).astype(np.int64),
        "plan": plan(cols),
    }


def build_deltas(cols: dict[str, np.ndarray], prep: dict, nt: Any) -> list:
    """Build one NautilusTrader ``OrderBookDelta`` per row (plus a CLEAR before each snapshot)."""
    price_prec, size_prec = prep["price_prec"], prep["size_prec"]
    rpt, rpu, units, p = prep["rpt"], prep["rpu"], prep["units"], prep["plan"]
    iid = nt.InstrumentId.from_str(INSTRUMENT_ID)
    actions = [nt.BookAction(a) for a in (NT_ADD, NT_UPDATE, NT_DELETE, NT_CLEAR)]
    sides = [nt.OrderSide.BUY, nt.OrderSide.SELL]
    no_side = nt.OrderSide.NO_ORDER_SIDE
    clear = actions[NT_CLEAR - 1]
    from_raw = nt.OrderBookDelta.from_raw
    out: list = []
    append = out.append
    for clr, act, side, ticks, size, flags, seq, te, ti in zip(
        p["clear_before"].tolist(),
        p["action"].tolist(),
        cols["side"].tolist(),
        cols["price"].tolist(),
        units.tolist(),
        p["flags"].tolist(),
        cols["seq"].tolist(),
        cols["ts_event"].tolist(),
        cols["ts_init"].tolist(),
        strict=True,
    ):
        if clr:
            append(from_raw(iid, clear, no_side, 0, 0, 0, 0, 0, NT_F_SNAPSHOT, seq, te, ti))
        if act == NT_CLEAR:
            append(from_raw(iid, clear, no_side, 0, 0, 0, 0, 0, flags, seq, te, ti))
        else:
            append(
                from_raw(
                    iid,
                    actions[act - 1],
                    sides[side],
                    ticks * rpt,
                    price_prec,
                    size * rpu,
                    size_prec,
                    0,
                    flags,
                    seq,
                    te,
                    ti,
                )
            )
    return out


def group_messages(deltas: list, nt: Any) -> list:
    """Group deltas into one ``OrderBookDeltas`` per exchange message (ending at F_LAST)."""
    iid = nt.InstrumentId.from_str(INSTRUMENT_ID)
    out, cur = [], []
    for d in deltas:
        cur.append(d)
        if d.flags & NT_F_LAST:
            out.append(nt.OrderBookDeltas(iid, cur))
            cur = []
    if cur:
        out.append(nt.OrderBookDeltas(iid, cur))
    return out


def summary(book: Any, tick_size: str, size_prec: int) -> dict[str, Any]:
    """Describe the final book: best prices (decimal strings and ticks) and a full-book digest.

    ``{bid,ask}_ticks_sum`` sums the level prices in ticks, ``{bid,ask}_size_units`` the level
    sizes in units of ``10**-size_prec``.
    """
    fixed = _fixed()
    rpt = int(Decimal(tick_size) * 10**fixed)
    rpu = 10 ** (fixed - size_prec)
    out: dict[str, Any] = {"size_precision": size_prec}
    for name, levels in (("bid", book.bids()), ("ask", book.asks())):
        ticks = [lv.price.raw // rpt for lv in levels]
        units = [sum(o.size.raw for o in lv.orders()) // rpu for lv in levels]
        best = book.best_bid_price() if name == "bid" else book.best_ask_price()
        out[f"best_{name}"] = None if best is None else str(best)
        out[f"best_{name}_ticks"] = None if best is None else best.raw // rpt
        out[f"{name}_levels"] = len(levels)
        out[f"{name}_ticks_sum"] = int(sum(ticks))
        out[f"{name}_size_units"] = int(sum(units))
    return out


def _fixed() -> int:
    from nautilus_trader.model.objects import FIXED_PRECISION

    return int(FIXED_PRECISION)


class _Nautilus:
    """The NautilusTrader names the script uses, imported on demand."""

    def __init__(self) -> None:
        import nautilus_trader
        from nautilus_trader.model.book import OrderBook
        from nautilus_trader.model.data import OrderBookDelta, OrderBookDeltas
        from nautilus_trader.model.enums import BookAction, BookType, OrderSide, RecordFlag
        from nautilus_trader.model.identifiers import InstrumentId

        self.version = nautilus_trader.__version__
        self.FIXED_PRECISION = _fixed()
        self.OrderBook = OrderBook
        self.OrderBookDelta = OrderBookDelta
        self.OrderBookDeltas = OrderBookDeltas
        self.BookAction = BookAction
        self.BookType = BookType
        self.OrderSide = OrderSide
        self.InstrumentId = InstrumentId
        expected = {
            (BookAction.ADD, NT_ADD),
            (BookAction.UPDATE, NT_UPDATE),
            (BookAction.DELETE, NT_DELETE),
            (BookAction.CLEAR, NT_CLEAR),
            (RecordFlag.F_LAST, NT_F_LAST),
            (RecordFlag.F_SNAPSHOT, NT_F_SNAPSHOT),
        }
        for member, value in expected:
            if int(member) != value:
                raise RuntimeError(f"nautilus {member!r} must be {value}, was {int(member)}")


def _best_of(repeats: int, fn: Any) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        result = None  # free the previous result before building the next one
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv: list[str] | None = None) -> int:
    """Build, time and apply the deltas; print one JSON object.

    Keys: ``peer``, ``version``, ``rows`` (input rows), ``deltas`` (OrderBookDelta objects,
    rows plus one CLEAR per snapshot), ``create_s`` (build every delta from the columns, best of
    repeats), ``apply_s`` (fresh ``OrderBook(L2_MBP)`` + ``apply_delta`` of each prebuilt delta,
    best of repeats), ``apply_deltas_per_s`` = deltas / apply_s,
    ``create_and_apply_deltas_per_s`` = deltas / (create_s + apply_s), ``messages``,
    ``batched_apply_s`` / ``batched_apply_deltas_per_s`` (``apply_deltas`` of one prebuilt
    ``OrderBookDeltas`` per message), and the final book from :func:`summary`.
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path, help=".npz written by jobs.peers.export_deltas")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    repeats = max(1, args.repeats)

    nt = _Nautilus()
    cols, tick_size, lot_size = load(args.file)
    iid = nt.InstrumentId.from_str(INSTRUMENT_ID)

    prep = prepare(cols, tick_size, lot_size, nt.FIXED_PRECISION)
    create_s, deltas = _best_of(repeats, lambda: build_deltas(cols, prep, nt))

    def apply_all() -> Any:
        book = nt.OrderBook(iid, nt.BookType.L2_MBP)
        apply = book.apply_delta
        for d in deltas:
            apply(d)
        return book

    apply_s, book = _best_of(repeats, apply_all)

    messages = group_messages(deltas, nt)

    def apply_batched() -> Any:
        b = nt.OrderBook(iid, nt.BookType.L2_MBP)
        apply = b.apply_deltas
        for m in messages:
            apply(m)
        return b

    batched_s, batched_book = _best_of(repeats, apply_batched)
    size_prec = prep["size_prec"]
    final = summary(book, tick_size, size_prec)
    if summary(batched_book, tick_size, size_prec) != final:
        raise RuntimeError("apply_deltas must end in the same book as apply_delta, was different")

    n = len(deltas)
    out = {
        "peer": "nautilus_trader",
        "version": nt.version,
        "instrument_id": INSTRUMENT_ID,
        "book_type": "L2_MBP",
        "rows": len(cols["kind"]),
        "deltas": n,
        "repeats": repeats,
        "create_s": round(create_s, 6),
        "apply_s": round(apply_s, 6),
        "apply_deltas_per_s": round(n / apply_s) if apply_s > 0 else None,
        "create_and_apply_deltas_per_s": round(n / (create_s + apply_s)) if n else None,
        "messages": len(messages),
        "batched_apply_s": round(batched_s, 6),
        "batched_apply_deltas_per_s": round(n / batched_s) if batched_s > 0 else None,
        **final,
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
