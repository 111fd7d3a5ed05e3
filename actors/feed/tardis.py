"""Tardis.dev CSV downloads (``incremental_book_L2``, ``trades``) → market-data batches.

Input files (plain or ``.gz``), told apart by their header:

* ``incremental_book_L2``: ``exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,
  amount``. ``side`` is ``bid``/``ask``; ``amount`` is the new absolute level size (``0``
  deletes the level). A run of ``is_snapshot=true`` rows that follows non-snapshot rows (or
  opens the stream) is a fresh full book: it becomes ``SNAPSHOT`` rows (flag ``F_SNAPSHOT``)
  whose first row implies a clear, as :mod:`actors.core.batch` defines.
* ``trades``: ``exchange,symbol,timestamp,local_timestamp,id,side,price,amount``. ``side`` is
  the aggressor (``buy`` → ``BID``, ``sell`` → ``ASK``).

Definitions:

* Clocks: ``ts_event = timestamp * 1000`` (exchange time, µs → ns) and
  ``ts_init = local_timestamp * 1000`` (Tardis' receive time).
* Message: consecutive book rows of one symbol with the same ``local_timestamp`` and the same
  ``is_snapshot``; ``F_LAST`` marks its last row, the only place where the book is consistent.
  A whole snapshot run is one message even if its rows carry several ``local_timestamp``
  values, because consumers end a snapshot at ``F_LAST``. Every trade row is its own message.
  A trade that the merge places inside a book message (possible only when a snapshot run spans
  several timestamps, or local timestamps go backwards) is moved to right after that message
  and counted in ``TardisStats.deferred_trades``.
* Merge: all files form one stream ordered by ``local_timestamp``; ties keep book files' rows
  before trade files' rows, then the order of ``paths``, then file order. Rows whose
  ``local_timestamp`` goes backwards inside a file keep their file position (the merge key is
  the file's running maximum) and are counted in ``TardisStats.ts_init_backwards``.
* ``seq``: Tardis carries no venue update id, so ``seq`` is a per-symbol running message
  counter (1, 2, ...): every row of a message has its message's number, and trades count as
  messages. It is non-decreasing, as the batch contract requires, but says nothing about gaps.
* Instruments: tick and lot size are not in the files. Without ``instruments``, a first pass
  infers per symbol ``tick_size = 10**-d`` where ``d`` is the largest number of decimal places
  of any price of that symbol (trailing zeros ignored; ``7000.5`` → 1, ``1e-7`` → 7), and
  ``lot_size`` likewise from the amounts. Every price is then an exact whole number of ticks;
  the venue's real tick may be coarser. With ``instruments``, rows of other symbols and
  prices off the tick grid are rejected.

Bad rows (missing fields, unknown side, non-numeric or negative price/amount, an unknown
aggressor) are rejected one by one: counted in ``TardisStats.rejected`` and the first
:data:`MAX_ERRORS` kept as :class:`~actors.core.errors.ValidationError` naming
``file:line.field``, the rule and the value. Reading goes on after them. A file whose header is
neither format raises at once.

Example:
    >>> reader = TardisReader([book_csv, trades_csv])           # doctest: +SKIP
    >>> for instrument, rows in reader:                          # doctest: +SKIP
    ...     apply(instrument.symbol, rows)
    >>> reader.stats.rejected                                    # doctest: +SKIP
    0
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from actors.core.batch import ASK, BID, DELTA, F_LAST, F_SNAPSHOT, MD_DTYPE, SNAPSHOT, TRADE
from actors.core.errors import ValidationError
from actors.core.instruments import Instrument

BOOK_COLUMNS = (
    "exchange", "symbol", "timestamp", "local_timestamp", "is_snapshot", "side", "price", "amount"
)
TRADE_COLUMNS = (
    "exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount"
)
MAX_ERRORS = 20  # errors kept in TardisStats.errors (all are counted)

_BLOCK_BYTES = 8 << 20  # CSV bytes parsed per chunk
_SLOW_ROWS = 1 << 16  # rows per chunk on the line-by-line path
_INT_RE = r"^[0-9]{1,18}$"
_DEC_RE = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]{1,3})?$"
_I64_MAX = (1 << 63) - 1
_MAX_US = _I64_MAX // 1000  # timestamps must still fit in int64 as ns

# a parsed row before message assembly: merge key, tie rank, file position, symbol index, ...
_ROW = np.dtype(
    [
        ("key", "i8"),
        ("rank", "i4"),
        ("pos", "i8"),
        ("sym", "i4"),
        ("ts_event", "i8"),
        ("ts_init", "i8"),
        ("side", "u1"),
        ("price", "i8"),
        ("size", "f8"),
        ("snap", "?"),
        ("trade", "?"),
    ]
)


@dataclass
class TardisStats:
    """What a :class:`TardisReader` read, emitted and rejected."""

    files: int = 0
    rows: int = 0  # data rows read, rejected ones included
    book_rows: int = 0  # DELTA + SNAPSHOT rows emitted
    trades: int = 0  # TRADE rows emitted
    messages: int = 0
    snapshots: int = 0  # snapshot runs (each one rebuilds the book)
    rejected: int = 0
    unknown_aggressor: int = 0  # trades with side "unknown" (also in rejected)
    deferred_trades: int = 0
    ts_init_backwards: int = 0
    errors: list[ValidationError] = field(default_factory=list)

    def reject(self, err: ValidationError) -> None:
        """Count one rejected row and keep its error if fewer than MAX_ERRORS are kept."""
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(err)


def read_tardis(
    paths: Sequence[str | Path],
    batch_rows: int = 65_536,
    instruments: Mapping[str, Instrument] | None = None,
) -> Iterator[tuple[Instrument, np.ndarray]]:
    """Yield ``(instrument, MD_DTYPE rows)`` per symbol from Tardis CSV files.

    A thin wrapper of :class:`TardisReader`; use the class to read ``stats`` afterwards.

    Example:
        >>> for ins, rows in read_tardis(["deribit_incremental_book_L2.csv.gz"]):  # doctest: +SKIP
        ...     print(ins.symbol, len(rows))
    """
    return iter(TardisReader(paths, batch_rows, instruments))


class TardisReader:
    """One Tardis session (book and trade files) as per-symbol :data:`MD_DTYPE` batches.

    Iterating yields ``(instrument, rows)``; a symbol's rows are in stream order, cut at message
    boundaries into batches of at most ``batch_rows`` rows (a single longer message is split).
    Batches of different symbols come out as they fill, and every symbol's rest at the end.

    Args:
        paths: ``incremental_book_L2`` and ``trades`` files, plain or ``.gz``, in session order.
        batch_rows: Most rows per yielded batch.
        instruments: Instrument per symbol; ``None`` infers decimal ticks (see module doc).

    Attributes:
        stats: :class:`TardisStats` of the latest iteration.
        instruments: Instrument per symbol seen, after iterating.

    Example:
        >>> reader = TardisReader([Path("deribit_book.csv"), Path("deribit_trades.csv")])
        >>> batches = list(reader)                                   # doctest: +SKIP
        >>> reader.stats.rejected, reader.stats.errors[:1]           # doctest: +SKIP
        (0, [])
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        batch_rows: int = 65_536,
        instruments: Mapping[str, Instrument] | None = None,
    ) -> None:
        if batch_rows < 1:
            raise ValidationError("batch_rows", ">= 1", batch_rows)
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValidationError("paths", "at least one file", [])
        self.batch_rows = batch_rows
        self._given = dict(instruments) if instruments is not None else None
        self.stats = TardisStats()
        self.instruments: dict[str, Instrument] = {}

    def __iter__(self) -> Iterator[tuple[Instrument, np.ndarray]]:
        self.stats = st = TardisStats()
        files = [_File.open(p) for p in self.paths]
        # tie rank: book files first, then trade files, each in the order given
        for rank, f in enumerate(sorted(files, key=lambda f: f.is_trades)):
            f.rank = rank
        st.files = len(files)
        table = _Symbols(self._given, _infer(files) if self._given is None else None)
        self.instruments = table.instruments
        streams = [_parsed(f, table, st) for f in files]
        asm = _Assembler(self.batch_rows, table, st)
        merged = _merge(streams, [not f.is_trades for f in files], [f.rank for f in files])
        for block, books_done in merged:
            yield from asm.push(block, books_done)
        yield from asm.finish()


# --- files and raw chunks ----------------------------------------------------------------------


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="")
    return open(path, newline="")  # noqa: SIM115


@dataclass
class _File:
    path: Path
    header: tuple[str, ...]
    is_trades: bool
    rank: int = 0

    @classmethod
    def open(cls, path: Path) -> _File:
        with _open_text(path) as f:
            first = f.readline()
        header = tuple(first.strip().split(","))
        if header == BOOK_COLUMNS:
            return cls(path, header, False)
        if header == TRADE_COLUMNS:
            return cls(path, header, True)
        raise ValidationError(
            f"{path.name}:1.header",
            f"the Tardis incremental_book_L2 ({','.join(BOOK_COLUMNS)}) or trades "
            f"({','.join(TRADE_COLUMNS)}) header",
            first.strip()[:200],
        )


def _raw_chunks(
    f: _File, columns: Sequence[str], on_bad: Any
) -> Iterator[tuple[dict[str, pa.Array], np.ndarray]]:
    """Yield ``({column: string array}, line numbers)`` chunks of ``f``'s data rows.

    The fast path is pyarrow's streaming CSV reader; at the first row with the wrong number of
    fields it hands over to a line-by-line reader from that chunk on, which reports such rows
    through ``on_bad(error)`` and keeps exact line numbers.
    """
    bad: list[object] = []

    def handler(row: object) -> str:
        bad.append(row)
        return "skip"

    done = 0
    try:
        reader = pacsv.open_csv(
            pa.input_stream(str(f.path), compression="detect"),
            read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES, use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=handler, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in f.header},
                include_columns=list(columns),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            if bad:
                break
            n = batch.num_rows
            yield {c: batch.column(c) for c in columns}, np.arange(done + 2, done + 2 + n)
            done += n
    except (pa.ArrowInvalid, UnicodeDecodeError):
        pass  # re-read the rest line by line, which names the bad line
    yield from _slow_chunks(f, columns, done, on_bad)


def _slow_chunks(
    f: _File, columns: Sequence[str], skip: int, on_bad: Any
) -> Iterator[tuple[dict[str, pa.Array], np.ndarray]]:
    idx = [f.header.index(c) for c in columns]
    n_fields = len(f.header)
    rule = f"a row of {n_fields} comma-separated fields ({','.join(f.header)})"
    cols: list[list[str]] = [[] for _ in columns]
    lines: list[int] = []
    with _open_text(f.path) as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for i, rec in enumerate(reader):
            if i < skip:
                continue
            if len(rec) != n_fields:
                on_bad(ValidationError(f"{f.path.name}:{reader.line_num}", rule, ",".join(rec)))
                continue
            for out, j in zip(cols, idx, strict=True):
                out.append(rec[j])
            lines.append(reader.line_num)
            if len(lines) >= _SLOW_ROWS:
                yield _as_chunk(columns, cols, lines)
                cols, lines = [[] for _ in columns], []
    if lines:
        yield _as_chunk(columns, cols, lines)


def _as_chunk(
    columns: Sequence[str], cols: list[list[str]], lines: list[int]
) -> tuple[dict[str, pa.Array], np.ndarray]:
    arrays = {c: pa.array(v, pa.string()) for c, v in zip(columns, cols, strict=True)}
    return arrays, np.array(lines, dtype=np.int64)


def _np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def _decimals(text: str) -> int | None:
    """Decimal places of ``text`` without trailing zeros (``"7000.50"`` → 1); None if invalid."""
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    return max(0, -d.normalize().as_tuple().exponent)  # type: ignore[operator]


def _places(text: pa.Array) -> np.ndarray:
    """Per row, the decimal places of ``text`` without trailing zeros (0 where invalid).

    Plain decimals are counted with string kernels; exponent forms (``1e-7``) one per distinct
    text with :class:`~decimal.Decimal`.
    """
    dot = _np(pc.find_substring(text, "."))
    trimmed = _np(pc.utf8_length(pc.utf8_rtrim(text, characters="0")))
    places = np.where(dot >= 0, trimmed - dot - 1, 0).astype(np.int64)
    other = ~_np(pc.match_substring_regex(text, r"^[0-9]*\.?[0-9]*$"))
    if other.any():
        rows = np.flatnonzero(other)
        enc = pc.dictionary_encode(text.take(pa.array(rows)))
        per_text = np.array([_decimals(t) or 0 for t in enc.dictionary.to_pylist()], np.int64)
        places[rows] = per_text[_np(enc.indices)]
    return np.maximum(places, 0)


def _infer(files: Sequence[_File]) -> dict[str, tuple[int, int, str]]:
    """First pass: per symbol, the most decimal places of prices and of amounts, and venue."""
    out: dict[str, tuple[int, int, str]] = {}
    cols = ("exchange", "symbol", "price", "amount")
    for f in files:
        for chunk, _lines in _raw_chunks(f, cols, lambda err: None):
            sym = pc.dictionary_encode(chunk["symbol"])
            names = sym.dictionary.to_pylist()
            codes = _np(sym.indices)
            exch = chunk["exchange"]
            price, amount = _places(chunk["price"]), _places(chunk["amount"])
            for code, name in enumerate(names):
                mask = codes == code
                if not name or not mask.any():
                    continue
                p, a, venue = out.get(name, (0, 0, ""))
                p = max(p, int(price[mask].max()))
                a = max(a, int(amount[mask].max()))
                out[name] = (p, a, venue or str(exch[int(np.argmax(mask))]).upper())
    return out


class _Symbols:
    """Symbol → index and instrument, from the given mapping or the inferred decimals."""

    def __init__(
        self,
        given: dict[str, Instrument] | None,
        inferred: dict[str, tuple[int, int, str]] | None,
    ) -> None:
        self.given = given
        self.inferred = inferred or {}
        self.index: dict[str, int] = {}
        self.instruments: dict[str, Instrument] = {}
        self.by_index: list[Instrument] = []

    def lookup(self, name: str) -> int:
        """Return the symbol's index, or -1 when it has no instrument (given mapping)."""
        i = self.index.get(name)
        if i is not None:
            return i
        if self.given is not None:
            ins = self.given.get(name)
            if ins is None:
                return -1
        else:
            places, lots, venue = self.inferred.get(name, (0, 0, "TARDIS"))
            ins = Instrument(name, Decimal(1).scaleb(-places), Decimal(1).scaleb(-lots), venue)
        i = self.index[name] = len(self.by_index)
        self.by_index.append(ins)
        self.instruments[name] = ins
        return i


# --- parsing and validation --------------------------------------------------------------------


def _parsed(f: _File, table: _Symbols, st: TardisStats) -> Iterator[np.ndarray]:
    """Yield ``f``'s valid rows as ``_ROW`` arrays, rejecting bad rows into ``st``."""
    cols = ("symbol", "timestamp", "local_timestamp", "side", "price", "amount")
    if not f.is_trades:
        cols += ("is_snapshot",)
    pos = 0
    last_ti = -1
    running_key = -1
    name = f.path.name

    def structural(err: ValidationError) -> None:
        st.rows += 1
        st.reject(err)

    for chunk, lines in _raw_chunks(f, cols, structural):
        n = len(lines)
        st.rows += n
        if n == 0:
            continue
        bad = np.zeros(n, dtype=bool)
        failures: list[tuple[np.ndarray, str, str]] = []  # (mask, field, rule), first one wins

        def check(
            ok: np.ndarray, col: str, rule: str, bad: np.ndarray = bad,
            failures: list[tuple[np.ndarray, str, str]] = failures,
        ) -> None:
            miss = ~ok & ~bad
            if miss.any():
                failures.append((miss, col, rule))
                bad |= miss

        # symbol
        sym_enc = pc.dictionary_encode(chunk["symbol"])
        names = sym_enc.dictionary.to_pylist()
        lut = np.array([table.lookup(s) if s else -2 for s in names], dtype=np.int32)
        sym = lut[_np(sym_enc.indices)] if len(lut) else np.zeros(n, np.int32)
        check(sym != -2, "symbol", "non-empty")
        if table.given is not None:
            check(sym != -1, "symbol", f"one of the given instruments {sorted(table.given)}")
        # clocks
        ts = {}
        for col in ("timestamp", "local_timestamp"):
            ok, v = _numbers(chunk[col], _INT_RE, pa.int64())
            check(ok & (v > 0) & (v <= _MAX_US), col, "an integer number of microseconds > 0")
            ts[col] = v
        # book flag and side
        if f.is_trades:
            snap = np.zeros(n, dtype=bool)
            buy = _np(pc.equal(chunk["side"], "buy"))
            sell = _np(pc.equal(chunk["side"], "sell"))
            unknown = _np(pc.equal(chunk["side"], "unknown")) & ~bad
            check(buy | sell | ~unknown, "side", "'buy' or 'sell' (the aggressor; an unknown "
                  "aggressor cannot be represented)")
            st.unknown_aggressor += int(unknown.sum())
            check(buy | sell, "side", "'buy' or 'sell'")
            side = np.where(sell, ASK, BID).astype(np.uint8)
        else:
            snap = _np(pc.equal(chunk["is_snapshot"], "true"))
            check(snap | _np(pc.equal(chunk["is_snapshot"], "false")), "is_snapshot",
                  "'true' or 'false'")
            bid = _np(pc.equal(chunk["side"], "bid"))
            ask = _np(pc.equal(chunk["side"], "ask"))
            check(bid | ask, "side", "'bid' or 'ask'")
            side = np.where(ask, ASK, BID).astype(np.uint8)
        # price → ticks, per distinct (symbol, price) text, exactly
        price, price_fail = _ticks(chunk["price"], sym, bad, table)
        for rule, mask in price_fail.items():
            check(~mask, "price", rule)
        # amount
        ok, size = _numbers(chunk["amount"], _DEC_RE, pa.float64())
        if f.is_trades:
            check(ok & (size > 0) & np.isfinite(size), "amount", "a decimal number > 0")
        else:
            check(ok & (size >= 0) & np.isfinite(size), "amount", "a decimal number >= 0")

        if bad.any():
            _report(st, failures, chunk, lines, name)
        good = ~bad
        m = int(good.sum())
        out = np.empty(m, dtype=_ROW)
        ti = ts["local_timestamp"][good]
        if m:
            back = np.diff(ti, prepend=last_ti if last_ti >= 0 else ti[0]) < 0
            st.ts_init_backwards += int(back.sum())
            last_ti = int(ti[-1])
            key = np.maximum.accumulate(np.maximum(ti, running_key))
            running_key = int(key[-1])
        else:
            key = ti
        out["key"] = key
        out["rank"] = f.rank
        out["pos"] = np.arange(pos, pos + m)
        pos += m
        out["sym"] = sym[good]
        out["ts_event"] = ts["timestamp"][good] * 1000
        out["ts_init"] = ti * 1000
        out["side"] = side[good]
        out["price"] = price[good]
        out["size"] = size[good]
        out["snap"] = snap[good]
        out["trade"] = f.is_trades
        yield out


def _numbers(text: pa.Array, pattern: str, to: pa.DataType) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``text`` into ``to``: ``(ok, values)`` with 0 where not ok.

    A column that casts as a whole (the usual case) skips the pattern; otherwise only rows
    matching ``pattern`` are cast. Signs, NaN and infinities that a whole cast lets through are
    left to the callers' range checks.
    """
    try:
        return np.ones(len(text), dtype=bool), _np(pc.cast(text, to))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        ok = _np(pc.match_substring_regex(text, pattern))
        return ok, _np(pc.cast(pc.if_else(pa.array(ok), text, "0"), to))


def _ticks(
    text: pa.Array, sym: np.ndarray, bad: np.ndarray, table: _Symbols
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Convert price strings to integer ticks of each row's symbol; return failures by rule."""
    n = len(sym)
    enc = pc.dictionary_encode(text)
    uniq = enc.dictionary.to_pylist()
    code = _np(enc.indices).astype(np.int64)
    ticks = np.zeros(n, dtype=np.int64)
    fails: dict[str, np.ndarray] = {}
    live = ~bad
    if not live.any():
        return ticks, fails
    # one conversion per distinct (symbol, price text) pair among the live rows
    pair = sym.astype(np.int64) * max(len(uniq), 1) + code
    pairs, inverse = np.unique(pair[live], return_inverse=True)
    values = np.zeros(len(pairs), dtype=np.int64)
    rules: list[str | None] = [None] * len(pairs)
    for k, p in enumerate(pairs.tolist()):
        s, c = divmod(p, max(len(uniq), 1))
        raw = uniq[c]
        ins = table.by_index[s]
        try:
            d = Decimal(raw)
        except InvalidOperation:
            rules[k] = "a decimal number > 0"
            continue
        if not d.is_finite() or d <= 0:
            rules[k] = "a decimal number > 0"
            continue
        q, r = divmod(d, ins.tick_size)
        if r != 0:
            rules[k] = f"a multiple of tick_size {ins.tick_size}"
        elif q > _I64_MAX:
            rules[k] = "at most 2**63-1 ticks"
        else:
            values[k] = int(q)
    ticks[live] = values[inverse]
    idx_live = np.flatnonzero(live)
    for k, rule in enumerate(rules):
        if rule is not None:
            mask = fails.setdefault(rule, np.zeros(n, dtype=bool))
            mask[idx_live[inverse == k]] = True
    return ticks, fails


def _report(
    st: TardisStats,
    failures: list[tuple[np.ndarray, str, str]],
    chunk: dict[str, pa.Array],
    lines: np.ndarray,
    name: str,
) -> None:
    """Count every rejected row; build errors for the first ones (in line order)."""
    reason: dict[int, tuple[str, str]] = {}
    total = 0
    for mask, col, rule in failures:
        rows = np.flatnonzero(mask)
        total += len(rows)
        for i in rows[: MAX_ERRORS].tolist():
            reason[i] = (col, rule)
    room = max(MAX_ERRORS - len(st.errors), 0)
    for i in sorted(reason)[:room]:
        col, rule = reason[i]
        st.errors.append(
            ValidationError(f"{name}:{int(lines[i])}.{col}", rule, chunk[col][i].as_py())
        )
    st.rejected += total


# --- merge and message assembly ----------------------------------------------------------------


def _merge(
    streams: list[Iterator[np.ndarray]], is_book: list[bool], ranks: list[int]
) -> Iterator[tuple[np.ndarray, bool]]:
    """Merge per-file row streams by (key, rank, pos); yield ``(block, all book files done)``.

    Only rows with a key below every live file's buffered maximum are emitted, so a later
    chunk can never hold a row that sorts before an emitted one.
    """
    n = len(streams)
    by_rank = sorted(range(n), key=lambda i: ranks[i])
    bufs = [np.empty(0, dtype=_ROW) for _ in range(n)]
    live = [True] * n

    def pull(i: int) -> None:
        try:
            nxt = next(streams[i])
        except StopIteration:
            live[i] = False
            return
        bufs[i] = np.concatenate((bufs[i], nxt)) if len(bufs[i]) else nxt

    while True:
        for i in range(n):
            while live[i] and not len(bufs[i]):
                pull(i)
        active = [i for i in range(n) if live[i]]
        if not active:
            rest = [bufs[i] for i in by_rank if len(bufs[i])]
            if rest:
                yield _ordered(np.concatenate(rest)), True
            return
        w = min(int(bufs[i]["key"][-1]) for i in active)
        parts = []
        for i in by_rank:
            b = bufs[i]
            if not len(b):
                continue
            cut = int(np.searchsorted(b["key"], w, side="left"))
            if cut:
                parts.append(b[:cut])
                bufs[i] = b[cut:]
        if parts:
            # no book row can follow once every book file is read and emitted
            books_done = not any(is_book[i] and (live[i] or len(bufs[i])) for i in range(n))
            yield _ordered(np.concatenate(parts)), books_done
        else:
            for i in active:
                if int(bufs[i]["key"][-1]) == w:
                    pull(i)


def _ordered(rows: np.ndarray) -> np.ndarray:
    """Sort rows concatenated in rank order, each part in file order, by key (stable)."""
    return rows[np.argsort(rows["key"], kind="stable")]


@dataclass
class _SymbolState:
    carry: np.ndarray  # rows from the start of the last (maybe unfinished) book message on
    seq: int = 0
    out: list[np.ndarray] = field(default_factory=list)
    out_rows: int = 0


class _Assembler:
    """Per symbol: group rows into messages, set kind/flags/seq, cut batches."""

    def __init__(self, batch_rows: int, table: _Symbols, st: TardisStats) -> None:
        self.batch_rows = batch_rows
        self.table = table
        self.st = st
        self.state: dict[int, _SymbolState] = {}

    def push(self, block: np.ndarray, books_done: bool) -> Iterator[tuple[Instrument, np.ndarray]]:
        sym = block["sym"]
        if sym[0] == sym.min() == sym.max():
            syms, starts, ends = sym[:1], np.zeros(1, np.int64), np.array([len(block)])
        else:
            block = block[np.argsort(sym, kind="stable")]
            syms, starts = np.unique(block["sym"], return_index=True)
            ends = np.append(starts[1:], len(block))
        for s, a, b in zip(syms.tolist(), starts.tolist(), ends.tolist(), strict=True):
            state = self.state.get(s)
            if state is None:
                state = self.state[s] = _SymbolState(np.empty(0, dtype=_ROW))
            rows = np.concatenate((state.carry, block[a:b])) if len(state.carry) else block[a:b]
            cut = len(rows) if books_done else _last_book_message_start(rows)
            state.carry = rows[cut:]
            if cut:
                self._emit(state, rows[:cut])
            yield from self._drain(s, state, final=False)
        if books_done:  # no book row can come any more: release every carry
            yield from self.finish(drain=False)

    def finish(self, drain: bool = True) -> Iterator[tuple[Instrument, np.ndarray]]:
        for s, state in self.state.items():
            if len(state.carry):
                self._emit(state, state.carry)
                state.carry = state.carry[:0]
            yield from self._drain(s, state, final=drain)

    def _emit(self, state: _SymbolState, rows: np.ndarray) -> None:
        """Turn complete messages into MD rows (defer trades inside a book message)."""
        st = self.st
        trade = rows["trade"]
        book = ~trade
        n = len(rows)
        bidx = np.flatnonzero(book)
        if len(bidx):
            bstart = _book_message_starts(rows[bidx])
            bmsg = np.cumsum(bstart)
            # a trade lies inside a book message when the book rows around it share the message
            prev_b = np.searchsorted(bidx, np.arange(n), side="right") - 1
            next_b = prev_b + 1
            inside = trade & (prev_b >= 0) & (next_b < len(bidx))
            if inside.any():
                ti = np.flatnonzero(inside)
                same = bmsg[prev_b[ti]] == bmsg[next_b[ti]]
                ti = ti[same]
                if len(ti):
                    st.deferred_trades += len(ti)
                    # sort key: 2*position, a deferred trade goes after its message's last row
                    last_of_msg = np.append(np.flatnonzero(np.diff(bmsg)), len(bidx) - 1)
                    msg_end = bidx[last_of_msg[bmsg[prev_b[ti]] - 1]]
                    sort_key = np.arange(n, dtype=np.int64) * 2
                    sort_key[ti] = msg_end * 2 + 1
                    rows = rows[np.argsort(sort_key, kind="stable")]
                    trade = rows["trade"]
                    book = ~trade
                    bidx = np.flatnonzero(book)
                    bstart = _book_message_starts(rows[bidx])
            start = trade.copy()
            start[bidx] = bstart
        else:
            start = trade.copy()
        start[0] = True
        seq = state.seq + np.cumsum(start)
        last = np.append(start[1:], True)
        snap = rows["snap"]
        md = np.zeros(n, dtype=MD_DTYPE)
        md["ts_event"] = rows["ts_event"]
        md["ts_init"] = rows["ts_init"]
        md["seq"] = seq
        md["kind"] = np.where(trade, TRADE, np.where(snap, SNAPSHOT, DELTA))
        md["side"] = rows["side"]
        md["price"] = rows["price"]
        md["size"] = rows["size"]
        md["flags"] = np.where(last, F_LAST, 0) | np.where(snap, F_SNAPSHOT, 0)
        state.seq = int(seq[-1])
        state.out.append(md)
        state.out_rows += n
        st.messages += int(start.sum())
        st.trades += int(trade.sum())
        st.book_rows += int(n - trade.sum())
        st.snapshots += int((start & snap).sum())

    def _drain(
        self, s: int, state: _SymbolState, final: bool
    ) -> Iterator[tuple[Instrument, np.ndarray]]:
        ins = self.table.by_index[s]
        if state.out_rows < self.batch_rows and not (final and state.out_rows):
            return
        rows = np.concatenate(state.out) if len(state.out) > 1 else state.out[0]
        while len(rows) >= self.batch_rows:
            head = rows[: self.batch_rows]
            ends = np.flatnonzero(head["flags"] & F_LAST)
            cut = int(ends[-1]) + 1 if len(ends) else self.batch_rows
            yield ins, rows[:cut]
            rows = rows[cut:]
        if final and len(rows):
            yield ins, rows
            rows = rows[:0]
        state.out = [rows] if len(rows) else []
        state.out_rows = len(rows)


def _book_message_starts(book: np.ndarray) -> np.ndarray:
    """True where a book row starts a message: the snapshot flag or (outside a snapshot run)
    the local timestamp changes."""
    snap = book["snap"]
    ti = book["ts_init"]
    start = np.ones(len(book), dtype=bool)
    if len(book) > 1:
        start[1:] = (snap[1:] != snap[:-1]) | (~snap[1:] & (ti[1:] != ti[:-1]))
    return start


def _last_book_message_start(rows: np.ndarray) -> int:
    """Index of the first row of the last book message (``len(rows)`` if none)."""
    bidx = np.flatnonzero(~rows["trade"])
    if not len(bidx):
        return len(rows)
    snap = rows["snap"][bidx]
    ti = rows["ts_init"][bidx]
    # the message reaches back to the row after the last one that cannot belong to it
    other = ~snap if snap[-1] else snap | (ti != ti[-1])
    before = np.flatnonzero(other)
    return int(bidx[before[-1] + 1]) if len(before) else int(bidx[0])
