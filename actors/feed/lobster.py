"""LOBSTER message + orderbook files → market-data batches, with the L2 book from the levels.

Files (no header, plain or ``.gz``), named ``TICKER_YYYY-MM-DD_START_END_KIND_LEVEL.csv``:

* message: ``time`` (seconds after midnight, New York time, up to 9 decimals), ``type``
  (1 new limit order, 2 partial cancel, 3 delete, 4 visible execution, 5 hidden execution,
  6 cross trade, 7 trading halt), ``order_id``, ``size`` (shares), ``price`` (dollars × 10000),
  ``direction`` (1 buy limit order, -1 sell limit order).
* orderbook: per level ``ask_price, ask_size, bid_price, bid_size``; row ``i`` is the book
  after message ``i``. ``L`` levels = columns / 4. An empty level has price ``9999999999``
  (ask) or ``-9999999999`` (bid) and never becomes a book level.

Definitions:

* Book: the book before the first message is unknown and only ``L`` levels are published, so
  the L2 stream is rebuilt from the orderbook file alone. Its first row becomes ``SNAPSHOT``
  rows (``F_SNAPSHOT``, ``F_LAST`` at the end; a ``CLEAR`` row if every level is empty). For each
  later message, the levels that differ between row ``i-1`` and row ``i`` become ``DELTA`` rows
  with absolute sizes; a price that left the published window gets size 0. The last row of the
  message carries ``F_LAST``; a message that changes no level emits no book row. A consumer's
  book therefore always equals exactly the ``L`` published levels.
* Trades: types 4, 5 and 6 also emit one ``TRADE`` row (``F_LAST``, its own message) at the
  message's price and size, before that message's book rows. The aggressor is opposite to
  ``direction``: executing a sell limit order (-1) is a buy (``BID``).
* Halts (type 7) are counted and emit nothing themselves.
* Clocks: LOBSTER has one clock, so ``ts_event = ts_init`` = the message time converted from
  New York local time on the file's date to UTC ns (``zoneinfo`` ``America/New_York``).
* ``seq``: the message's 1-based row number in the message file.
* Instrument: the ticker, tick 0.0001 (the price integer is the tick count), lot 1 share,
  venue ``NASDAQ``.

Bad rows are rejected, counted in ``LobsterStats.rejected`` and the first :data:`MAX_ERRORS`
kept as :class:`~actors.core.errors.ValidationError` naming ``file:line.field``, the rule and
the value. A message is rejected for a malformed field, a type outside 1-7, or (types 1-6)
a size or price <= 0 or a direction other than ±1; its orderbook row is rejected for a malformed
field, a published level with price or size <= 0, levels out of order, or a real level after
an empty one. A rejected message emits nothing: its book change shows up in the next accepted
message's diff, so the book is still exact wherever ``F_LAST`` is. Files of different row
counts, or an orderbook whose column count is not a multiple of 4, raise at once.

Example:
    >>> reader = LobsterReader(Path("AMZN_2012-06-21_34200000_57600000_message_1.csv.gz"))
    >>> for instrument, rows in reader:                      # doctest: +SKIP
    ...     apply(rows)
    >>> reader.stats.by_type[4], reader.stats.rejected       # doctest: +SKIP
    (8974, 0)
"""

from __future__ import annotations

import calendar
import csv
import gzip
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from numba import njit

from actors.core.batch import (
    ASK,
    BID,
    CLEAR,
    DELTA,
    F_LAST,
    F_SNAPSHOT,
    MD_DTYPE,
    SNAPSHOT,
    TRADE,
)
from actors.core.errors import ValidationError
from actors.core.instruments import Instrument

LOBSTER_NAME = re.compile(
    r"^(?P<ticker>[^_]+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)_"
    r"(?P<kind>message|orderbook)_(?P<levels>\d+)\.csv(?P<gz>\.gz)?$"
)
EMPTY_ASK = 9_999_999_999
EMPTY_BID = -9_999_999_999
MESSAGE_TYPES = {
    1: "new limit order",
    2: "partial cancel",
    3: "delete",
    4: "visible execution",
    5: "hidden execution",
    6: "cross trade",
    7: "trading halt",
}
EXECUTIONS = (4, 5, 6)
HALT = 7
MAX_ERRORS = 20  # errors kept in LobsterStats.errors (all are counted)
NEW_YORK = ZoneInfo("America/New_York")

_MSG_COLUMNS = ("time", "type", "order_id", "size", "price", "direction")
_TIME_RE = r"^(?P<s>[0-9]{1,6})(?:\.(?P<f>[0-9]{1,9}))?$"
_NO_TRADE = 255
_CHUNK_MESSAGES = 16_384
_KERNEL_COLUMNS = ("ts_event", "seq", "kind", "side", "price", "size", "flags")


@dataclass
class LobsterStats:
    """What a :class:`LobsterReader` read, emitted and rejected."""

    messages: int = 0  # message rows read, rejected ones included
    levels: int = 0  # L, published levels per side
    by_type: dict[int, int] = field(default_factory=dict)  # accepted messages per type
    trades: int = 0
    book_rows: int = 0  # SNAPSHOT + DELTA (+ CLEAR) rows emitted
    book_messages: int = 0  # messages that emitted book rows
    halts: int = 0
    rejected: int = 0  # messages rejected (a bad message row or a bad orderbook row)
    errors: list[ValidationError] = field(default_factory=list)


def lobster_instrument(symbol: str) -> Instrument:
    """Return the LOBSTER instrument of ``symbol``: tick 0.0001 (price integer = ticks), lot 1."""
    return Instrument(symbol, Decimal("0.0001"), Decimal("1"), "NASDAQ")


def _partner(path: Path) -> Path:
    """Return the existing other file of ``path``'s message/orderbook pair."""
    m = LOBSTER_NAME.match(path.name)
    if m is None:
        raise ValidationError(
            "path", "a LOBSTER file name TICKER_YYYY-MM-DD_START_END_(message|orderbook)_L.csv"
            "[.gz]", path.name
        )
    other = "orderbook" if m["kind"] == "message" else "message"
    stem = f"{m['ticker']}_{m['date']}_{m['start']}_{m['end']}_{other}_{m['levels']}.csv"
    suffixes = (".gz", "") if m["gz"] else ("", ".gz")
    for suffix in suffixes:
        cand = path.with_name(stem + suffix)
        if cand.exists():
            return cand
    raise ValidationError(f"{path.name}.pair", "an existing file next to it", stem + suffixes[0])


def lobster_pairs(paths: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """Pair LOBSTER message and orderbook files: ``[(message, orderbook), ...]``.

    Either file of a pair may be given (the other is found next to it, plain or ``.gz``);
    a folder stands for the LOBSTER files in it. Pairs come once each, in the order given.

    Example:
        >>> pairs = lobster_pairs(["lobster/AMZN_2012-06-21_34200000_57600000_orderbook_1.csv"])
        >>> [m.name for m, _ob in pairs]                                  # doctest: +SKIP
        ['AMZN_2012-06-21_34200000_57600000_message_1.csv']
    """
    out: list[tuple[Path, Path]] = []
    seen: set[tuple[Path, Path]] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = [c for c in sorted(p.iterdir()) if LOBSTER_NAME.match(c.name)]
        else:
            files = [p]
        for f in files:
            other = _partner(f)
            kind = LOBSTER_NAME.match(f.name)["kind"]  # type: ignore[index]
            pair = (f, other) if kind == "message" else (other, f)
            key = (pair[0].resolve(), pair[1].resolve())
            if key not in seen:
                seen.add(key)
                out.append(pair)
    return out


def read_lobster(
    message_path: str | Path,
    orderbook_path: str | Path | None = None,
    batch_rows: int = 65_536,
) -> Iterator[tuple[Instrument, np.ndarray]]:
    """Yield ``(instrument, MD_DTYPE rows)`` from one LOBSTER message/orderbook pair.

    A thin wrapper of :class:`LobsterReader`; use the class to read ``stats`` afterwards.

    Example:
        >>> for ins, rows in read_lobster("AMZN_2012-06-21_34200000_57600000_message_1.csv.gz"):
        ...     print(ins.symbol, len(rows))                  # doctest: +SKIP
    """
    return iter(LobsterReader(message_path, orderbook_path, batch_rows))


class LobsterReader:
    """One LOBSTER pair as :data:`MD_DTYPE` batches of at most ``batch_rows`` rows.

    Batches end at message boundaries (a single longer message is split).

    Args:
        message_path: The message file; its name gives the ticker and the date.
        orderbook_path: The orderbook file (default: found next to the message file).
        batch_rows: Most rows per yielded batch.

    Attributes:
        instrument: The ticker's instrument (:func:`lobster_instrument`).
        stats: :class:`LobsterStats` of the latest iteration.

    Example:
        >>> reader = LobsterReader("GOOG_2012-06-21_34200000_57600000_message_1.csv.gz")
        >>> rows = np.concatenate([r for _ins, r in reader])           # doctest: +SKIP
        >>> int((rows["kind"] == TRADE).sum()) == reader.stats.trades  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        message_path: str | Path,
        orderbook_path: str | Path | None = None,
        batch_rows: int = 65_536,
    ) -> None:
        if batch_rows < 1:
            raise ValidationError("batch_rows", ">= 1", batch_rows)
        self.message_path = Path(message_path)
        m = LOBSTER_NAME.match(self.message_path.name)
        if m is None or m["kind"] != "message":
            raise ValidationError(
                "message_path", "a LOBSTER message file TICKER_YYYY-MM-DD_START_END_message_L"
                ".csv[.gz]", self.message_path.name
            )
        self.orderbook_path = (
            Path(orderbook_path) if orderbook_path is not None else _partner(self.message_path)
        )
        self.batch_rows = batch_rows
        self.day = date.fromisoformat(m["date"])
        self.instrument = lobster_instrument(m["ticker"])
        self.stats = LobsterStats()

    def __iter__(self) -> Iterator[tuple[Instrument, np.ndarray]]:
        self.stats = st = LobsterStats()
        errors: list[tuple[int, int, ValidationError]] = []  # (file, line, error)
        msg = _read_messages(self.message_path, errors)
        book = _read_orderbook(self.orderbook_path, errors)
        n = len(msg["valid"])
        if len(book["valid"]) != n:
            raise ValidationError(
                f"{self.orderbook_path.name}.rows",
                f"as many as the message file's {n} rows", len(book["valid"])
            )
        st.messages = n
        st.levels = book["ask_p"].shape[1]
        ok = msg["valid"] & book["valid"]
        st.rejected = int((~ok).sum())
        kinds = msg["type"][ok]
        st.by_type = {t: int((kinds == t).sum()) for t in MESSAGE_TYPES if (kinds == t).any()}
        st.halts = st.by_type.get(HALT, 0)
        errors.sort(key=lambda e: (e[1], e[0]))
        st.errors = [e for _f, _l, e in errors[:MAX_ERRORS]]

        ts = _utc_ns(self.day, msg["time_ns"])
        execution = ok & np.isin(msg["type"], EXECUTIONS)
        trade_side = np.full(n, _NO_TRADE, dtype=np.uint8)
        trade_side[execution] = np.where(msg["direction"][execution] == -1, BID, ASK)
        yield from self._batches(ts, ok, trade_side, msg, book)

    def _batches(
        self,
        ts: np.ndarray,
        ok: np.ndarray,
        trade_side: np.ndarray,
        msg: dict[str, np.ndarray],
        book: dict[str, np.ndarray],
    ) -> Iterator[tuple[Instrument, np.ndarray]]:
        st = self.stats
        n = len(ts)
        levels = book["ask_p"].shape[1]
        prev_p = np.zeros((2, levels), dtype=np.int64)
        prev_s = np.zeros((2, levels), dtype=np.int64)
        prev_n = np.zeros(2, dtype=np.int64)
        has_prev = np.zeros(1, dtype=np.bool_)
        pending: list[np.ndarray] = []
        pending_rows = 0
        for i0 in range(0, n, _CHUNK_MESSAGES):
            i1 = min(i0 + _CHUNK_MESSAGES, n)
            cap = (i1 - i0) * (1 + 4 * levels) + 1
            cols = [np.zeros(cap, dtype=MD_DTYPE[c]) for c in _KERNEL_COLUMNS]
            k = _diff_kernel(
                book["ask_p"], book["ask_s"], book["bid_p"], book["bid_s"],
                book["ask_n"], book["bid_n"], ok, trade_side, msg["price"], msg["size"], ts,
                i0, i1, prev_p, prev_s, prev_n, has_prev, *cols,
            )
            out = np.zeros(k, dtype=MD_DTYPE)
            for name, col in zip(_KERNEL_COLUMNS, cols, strict=True):
                out[name] = col[:k]
            out["ts_init"] = out["ts_event"]
            trades = out["kind"] == TRADE
            st.trades += int(trades.sum())
            st.book_rows += int(k - trades.sum())
            st.book_messages += int(((out["flags"] & F_LAST) != 0).sum() - trades.sum())
            pending.append(out)
            pending_rows += k
            if pending_rows >= self.batch_rows:
                rows = np.concatenate(pending)
                while len(rows) >= self.batch_rows:
                    head = rows[: self.batch_rows]
                    ends = np.flatnonzero(head["flags"] & F_LAST)
                    cut = int(ends[-1]) + 1 if len(ends) else self.batch_rows
                    yield self.instrument, rows[:cut]
                    rows = rows[cut:]
                pending, pending_rows = [rows], len(rows)
        if pending_rows:
            yield self.instrument, np.concatenate(pending)


# --- the diff kernel ---------------------------------------------------------------------------


@njit(cache=True)
def _put(k, ts, seq, kind, side, price, size, flags, o_ts, o_seq, o_kind, o_side, o_price,
         o_size, o_flags):  # pragma: no cover - compiled
    o_ts[k] = ts
    o_seq[k] = seq
    o_kind[k] = kind
    o_side[k] = side
    o_price[k] = price
    o_size[k] = size
    o_flags[k] = flags
    return k + 1


@njit(cache=True)
def _diff_kernel(ask_p, ask_s, bid_p, bid_s, ask_n, bid_n, ok, trade_side, trade_px, trade_sz,
                 ts, i0, i1, prev_p, prev_s, prev_n, has_prev, o_ts, o_seq, o_kind, o_side,
                 o_price, o_size, o_flags):  # pragma: no cover - compiled
    """Emit the rows of messages ``i0..i1``; ``prev_*``/``has_prev`` carry the last book."""
    k = 0
    for i in range(i0, i1):
        if not ok[i]:
            continue
        t = ts[i]
        seq = i + 1
        if trade_side[i] != _NO_TRADE:
            k = _put(k, t, seq, TRADE, trade_side[i], trade_px[i], float(trade_sz[i]), F_LAST,
                     o_ts, o_seq, o_kind, o_side, o_price, o_size, o_flags)
        first = k
        if not has_prev[0]:
            for s in range(2):
                p = bid_p if s == BID else ask_p
                z = bid_s if s == BID else ask_s
                m = bid_n[i] if s == BID else ask_n[i]
                for j in range(m):
                    k = _put(k, t, seq, SNAPSHOT, s, p[i, j], float(z[i, j]), F_SNAPSHOT,
                             o_ts, o_seq, o_kind, o_side, o_price, o_size, o_flags)
            if k == first:  # nothing published: the book is empty
                k = _put(k, t, seq, CLEAR, 0, 0, 0.0, 0, o_ts, o_seq, o_kind, o_side, o_price,
                         o_size, o_flags)
            has_prev[0] = True
        else:
            for s in range(2):
                p = bid_p if s == BID else ask_p
                z = bid_s if s == BID else ask_s
                m = bid_n[i] if s == BID else ask_n[i]
                sign = -1 if s == BID else 1  # walk both lists from the best price outwards
                a = 0
                b = 0
                na = prev_n[s]
                while a < na or b < m:
                    if b >= m or (a < na and sign * prev_p[s, a] < sign * p[i, b]):
                        k = _put(k, t, seq, DELTA, s, prev_p[s, a], 0.0, 0, o_ts, o_seq, o_kind,
                                 o_side, o_price, o_size, o_flags)
                        a += 1
                    elif a >= na or sign * p[i, b] < sign * prev_p[s, a]:
                        k = _put(k, t, seq, DELTA, s, p[i, b], float(z[i, b]), 0, o_ts, o_seq,
                                 o_kind, o_side, o_price, o_size, o_flags)
                        b += 1
                    else:
                        if z[i, b] != prev_s[s, a]:
                            k = _put(k, t, seq, DELTA, s, p[i, b], float(z[i, b]), 0, o_ts,
                                     o_seq, o_kind, o_side, o_price, o_size, o_flags)
                        a += 1
                        b += 1
        if k > first:
            o_flags[k - 1] |= F_LAST
        for s in range(2):
            p = bid_p if s == BID else ask_p
            z = bid_s if s == BID else ask_s
            m = bid_n[i] if s == BID else ask_n[i]
            prev_n[s] = m
            for j in range(m):
                prev_p[s, j] = p[i, j]
                prev_s[s, j] = z[i, j]
    return k


# --- reading and validation --------------------------------------------------------------------


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="")
    return open(path, newline="")  # noqa: SIM115


def _first_fields(path: Path) -> int:
    with _open_text(path) as f:
        line = f.readline()
    return len(line.strip().split(",")) if line.strip() else 0


def _read_table(
    path: Path, names: list[str], string_cols: tuple[str, ...], file_no: int,
    errors: list[tuple[int, int, ValidationError]],
) -> tuple[dict[str, np.ndarray | pa.Array], np.ndarray]:
    """Read a headerless CSV into int64 columns (``string_cols`` as text) and a valid mask.

    pyarrow reads the whole file; a file it cannot read cleanly (a field that is not an
    integer, a missing field, a blank line) is re-read line by line, which rejects just the
    bad lines with their numbers.
    """
    types = {c: (pa.string() if c in string_cols else pa.int64()) for c in names}
    try:
        table = pacsv.read_csv(
            pa.input_stream(str(path), compression="detect"),
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=types),
        )
        if not any(table.column(c).null_count for c in names):
            cols: dict[str, np.ndarray | pa.Array] = {
                c: (table.column(c).combine_chunks() if c in string_cols
                    else table.column(c).to_numpy())
                for c in names
            }
            return cols, np.ones(table.num_rows, dtype=bool)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        pass
    values: dict[str, list] = {c: [] for c in names}
    valid: list[bool] = []
    rule = f"a row of {len(names)} comma-separated fields ({','.join(names)})"
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        for rec in reader:
            line = reader.line_num
            good = len(rec) == len(names)
            if not good:
                errors.append((file_no, line, ValidationError(f"{path.name}:{line}", rule,
                                                              ",".join(rec))))
            row: list[str | int] = []
            for c, text in zip(names, rec if good else [""] * len(names), strict=True):
                if c in string_cols:
                    row.append(text)
                    continue
                try:
                    row.append(int(text))
                except ValueError:
                    if good:
                        errors.append((file_no, line, ValidationError(
                            f"{path.name}:{line}.{c}", "an integer", text)))
                        good = False
                    row.append(0)
            for c, v in zip(names, row, strict=True):
                values[c].append(v)
            valid.append(good)
    cols = {
        c: (pa.array(values[c], pa.string()) if c in string_cols
            else np.array(values[c], dtype=np.int64))
        for c in names
    }
    return cols, np.array(valid, dtype=bool)


def _reject(
    valid: np.ndarray, bad: np.ndarray, path: Path, col: str, rule: str, values: np.ndarray,
    file_no: int, errors: list[tuple[int, int, ValidationError]],
) -> None:
    """Mark rows ``bad & valid`` invalid; keep errors for the first of them."""
    new = bad & valid
    for i in np.flatnonzero(new)[:MAX_ERRORS].tolist():
        value = values[i]
        value = value.item() if isinstance(value, np.generic) else value
        errors.append((file_no, i + 1, ValidationError(f"{path.name}:{i + 1}.{col}", rule, value)))
    valid &= ~new


def _read_messages(
    path: Path, errors: list[tuple[int, int, ValidationError]]
) -> dict[str, np.ndarray]:
    cols, valid = _read_table(path, list(_MSG_COLUMNS), ("time",), 0, errors)
    time = cols["time"]
    parts = pc.extract_regex(time, _TIME_RE)
    good_time = _np_bool(pc.is_valid(parts)) & valid
    mask = pa.array(good_time)
    secs = _np_int(pc.if_else(mask, pc.struct_field(parts, "s"), "0"))
    frac = pc.utf8_rpad(pc.struct_field(parts, "f"), width=9, padding="0")
    frac = _np_int(pc.if_else(mask, frac, "0"))
    time_text = np.asarray(time.to_numpy(zero_copy_only=False))
    _reject(valid, ~good_time, path, "time",
            "seconds after midnight with at most 9 decimals", time_text, 0, errors)
    typ, size, price, direction = (cols[c] for c in ("type", "size", "price", "direction"))
    _reject(valid, ~np.isin(typ, list(MESSAGE_TYPES)), path, "type",
            "one of 1-7 (1 new, 2 partial cancel, 3 delete, 4 visible execution, "
            "5 hidden execution, 6 cross trade, 7 halt)", typ, 0, errors)
    active = typ != HALT
    _reject(valid, active & (size <= 0), path, "size", "> 0 for types 1-6", size, 0, errors)
    _reject(valid, active & (price <= 0), path, "price", "> 0 for types 1-6", price, 0, errors)
    _reject(valid, active & (direction != 1) & (direction != -1), path, "direction",
            "1 (buy) or -1 (sell) for types 1-6", direction, 0, errors)
    return {
        "valid": valid, "time_ns": secs * 1_000_000_000 + frac, "type": typ, "size": size,
        "price": price, "direction": direction,
    }


def _np_int(arr: pa.Array) -> np.ndarray:
    return pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False)


def _np_bool(arr: pa.Array) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


def _read_orderbook(
    path: Path, errors: list[tuple[int, int, ValidationError]]
) -> dict[str, np.ndarray]:
    width = _first_fields(path)
    if width == 0 or width % 4:
        raise ValidationError(f"{path.name}:1.columns", "a positive multiple of 4", width)
    levels = width // 4
    names = [f"{what}_{j}" for j in range(1, levels + 1)
             for what in ("ask_price", "ask_size", "bid_price", "bid_size")]
    cols, valid = _read_table(path, names, (), 1, errors)
    ask_p = np.stack([cols[f"ask_price_{j}"] for j in range(1, levels + 1)], axis=1)
    ask_s = np.stack([cols[f"ask_size_{j}"] for j in range(1, levels + 1)], axis=1)
    bid_p = np.stack([cols[f"bid_price_{j}"] for j in range(1, levels + 1)], axis=1)
    bid_s = np.stack([cols[f"bid_size_{j}"] for j in range(1, levels + 1)], axis=1)
    out = {"valid": valid, "ask_p": ask_p, "ask_s": ask_s, "bid_p": bid_p, "bid_s": bid_s}
    for side, p, z, empty in (("ask", ask_p, ask_s, EMPTY_ASK), ("bid", bid_p, bid_s, EMPTY_BID)):
        real = p != empty
        for j in range(levels):
            col = f"{side}_price_{j + 1}"
            _reject(valid, real[:, j] & (p[:, j] <= 0), path, col,
                    f"> 0 or {empty} (empty level)", p[:, j], 1, errors)
            _reject(valid, real[:, j] & (z[:, j] <= 0), path, f"{side}_size_{j + 1}",
                    "> 0 at a published level", z[:, j], 1, errors)
            if j:
                _reject(valid, real[:, j] & ~real[:, j - 1], path, col,
                        f"{empty} (empty) after an empty level", p[:, j], 1, errors)
                worse = p[:, j] <= p[:, j - 1] if side == "ask" else p[:, j] >= p[:, j - 1]
                rule = (f"{'above' if side == 'ask' else 'below'} {side}_price_{j} "
                        f"(levels in price order)")
                _reject(valid, real[:, j] & real[:, j - 1] & worse, path, col, rule, p[:, j],
                        1, errors)
        out[f"{side}_n"] = real.sum(axis=1).astype(np.int64)
    return out


def _utc_ns(day: date, local_ns: np.ndarray) -> np.ndarray:
    """Convert ns after midnight New York time on ``day`` into UTC ns since the epoch.

    The UTC offset is taken per whole hour of wall time (DST changes on the hour).
    """
    midnight = calendar.timegm(day.timetuple()) * 1_000_000_000
    hours = local_ns // 3_600_000_000_000
    start = datetime(day.year, day.month, day.day, tzinfo=NEW_YORK)
    offset = np.zeros(len(local_ns), dtype=np.int64)
    for h in np.unique(hours).tolist():
        off = (start + timedelta(hours=int(h))).utcoffset()
        assert off is not None
        offset[hours == h] = int(off.total_seconds()) * 1_000_000_000
    return midnight + local_ns - offset
