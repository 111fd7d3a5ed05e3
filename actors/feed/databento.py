"""Databento MBO (market-by-order, CME Globex GLBX.MDP3) → market-data batches with order ids.

Input: a CSV decoding of Databento ``mbo`` records (plain or ``.gz``), one header line naming
at least ``ts_recv, ts_event, instrument_id, action, side, price, size, order_id, flags,
sequence`` (``is_snapshot`` and ``symbol`` are used when present; other columns are ignored);
``price`` is decimal USD. A ``.dbn`` / ``.dbn.zst`` file is read too when the optional
``databento_dbn`` package is importable (it is not a dependency).

Normalisation into :data:`~actors.core.batch.MD_DTYPE` rows (``order_id`` set on book rows):

* ``A`` → ``ADD``, ``C`` → ``CANCEL``, ``M`` → ``MODIFY``, ``R`` → ``CLEAR``.
  ``CANCEL.size`` is the quantity taken off the order, as Databento defines it ("fully or
  partially cancel"; its reference book subtracts it). In the ESH4 file every cancel removes
  the whole remaining order. ``MODIFY`` carries the order's new price and new size.
* ``T`` (trade) → ``TRADE`` with ``order_id = 0``; ``side`` is Databento's aggressor side
  (``B`` → ``BID``). A trade with side ``N`` has no aggressor (in the ESH4 file: the one opening
  auction uncross print, 44 lots at 23:00:00 UTC); the contract has no "no aggressor" side, so
  it is **not emitted** and counted in ``stats.skipped["trade_no_aggressor"]``.
* ``F`` (fill of a resting order) does **not** change the book: Databento documents that every
  fill is accompanied by the cancel/modify that updates the book (checked on the ESH4 file:
  every ``F`` of a resting order is followed by a ``C`` or ``M`` of that order before the
  event ends; 7 opening-auction fills name orders that never rested in the book). With
  ``fills=True`` (default) it becomes a ``TRADE`` row with ``order_id`` = the filled resting
  order and ``side`` = the aggressor side (the opposite of the resting side; ``BID`` when
  Databento gives ``N``, e.g. auction fills); :class:`~actors.book.l3.L3Book` consumes these
  rows (iceberg detection) and passes only the ``order_id == 0`` print on. With
  ``fills=False`` fills are only counted.
* ``N`` (none) is counted and not emitted.

Clocks and order: ``ts_event`` is Databento's ``ts_event``, ``ts_init`` its ``ts_recv``.
``seq`` is ``sequence`` made non-decreasing per instrument: the running maximum. Live records
are already in order (checked on the ESH4 file), but snapshot records carry each order's own
last sequence number (531..787 in the ESH4 file, in price order, not sequence order), so they
get the highest sequence seen so far; ``stats.seq_raised`` counts the records whose ``seq`` was
raised (8,675 of the 8,725 ESH4 snapshot records; no live record).

Flags: Databento ``F_LAST`` (128) → ``F_LAST``: the book is consistent only after such a
record; ``F_SNAPSHOT`` (32) or ``is_snapshot`` → ``F_SNAPSHOT``. A snapshot rebuilds the book
from empty: Databento starts an instrument's snapshot with an ``R`` (clear); where that record
is missing (the ESH4 file starts directly with its 8,725 snapshot adds) a ``CLEAR`` row is
inserted before the first snapshot record (``stats.synthetic_clears``), and when a snapshot
ends without ``F_LAST`` on its last record (also the ESH4 file) that row gets ``F_LAST``
(``stats.snapshot_ends_marked``). A record that is not emitted (``N``, skipped or rejected)
but carried ``F_LAST`` passes the flag to the row before it.

Bad records (an unknown action or side, a price that is not a whole number of ticks, a
negative size ...) are rejected with an error naming ``file:line``, the field, the rule and the
value; they are counted (``stats.rejected``, first errors in ``stats.errors``) and never stop
the read.

Example:
    >>> from actors.book.l3 import L3Book
    >>> book, stats = L3Book(), DatabentoStats()
    >>> for ins, rows in read_databento("esh4-glbx-mdp3-20231225.mbo.csv.gz", stats=stats):
    ...     l2_rows = book.apply(rows)  # level sizes, trade prints
    >>> stats.by_action
    {'A': 29216, 'C': 17999, 'M': 12233, 'T': 2973, 'F': 6371}
"""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from actors.core.batch import (
    ADD,
    ASK,
    BID,
    CANCEL,
    CLEAR,
    F_LAST,
    F_SNAPSHOT,
    MD_DTYPE,
    MODIFY,
    TRADE,
)
from actors.core.errors import ValidationError
from actors.core.instruments import Instrument

VENUE = "GLBX"

# Databento record flags
DB_F_LAST = 128
DB_F_SNAPSHOT = 32

# instrument_id → raw symbol of the recordings we know (GLBX.MDP3 ids are per dataset/date)
KNOWN_INSTRUMENT_IDS: Mapping[int, str] = {17077: "ESH4"}

# CME symbol root → (tick size, lot size) in USD / contracts
ROOT_SPECS: Mapping[str, tuple[str, str]] = {
    "ES": ("0.25", "1"),
    "MES": ("0.25", "1"),
    "NQ": ("0.25", "1"),
    "MNQ": ("0.25", "1"),
}

_FUTURE = re.compile(r"^([A-Z0-9]+?)[FGHJKMNQUVXZ]\d{1,2}$")
REQUIRED = ("ts_recv", "ts_event", "instrument_id", "action", "side", "price", "size",
            "order_id", "flags", "sequence")
ACTIONS = "ACMRTFN"
MAX_ERRORS = 20


def databento_instrument(symbol: str) -> Instrument:
    """Return the instrument of a CME outright future ``symbol`` (e.g. ``"ESH4"``) by its root."""
    m = _FUTURE.match(symbol)
    spec = ROOT_SPECS.get(m.group(1)) if m else None
    if spec is None:
        raise ValidationError("symbol", f"a future of one of the roots {sorted(ROOT_SPECS)}",
                              symbol)
    return Instrument(symbol, Decimal(spec[0]), Decimal(spec[1]), VENUE)


@dataclass
class DatabentoStats:
    """What the reader did, over every file and instrument of one call.

    Attributes:
        records: Records read (data lines).
        by_action: Records by Databento action letter.
        rows: Rows emitted.
        skipped: Records not emitted on purpose, by reason (``none_action``,
            ``trade_no_aggressor``, ``fill`` when ``fills=False``).
        rejected: Bad records (not emitted); the first :data:`MAX_ERRORS` are in ``errors``.
        seq_raised: Records whose ``seq`` was raised to keep it non-decreasing.
        synthetic_clears: ``CLEAR`` rows inserted before a snapshot that lacked its ``R``.
        snapshot_ends_marked: Snapshot ends that were given ``F_LAST``.
    """

    records: int = 0
    by_action: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    seq_raised: int = 0
    synthetic_clears: int = 0
    snapshot_ends_marked: int = 0

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def reject(self, err: ValidationError) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(str(err))


class _Symbol:
    """Per-instrument state: growable row columns, running sequence, snapshot phase."""

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.cols: list[list[Any]] = [[] for _ in MD_DTYPE.names]
        self.max_seq = -1
        self.in_snapshot = False
        self.ticks: dict[str, int] = {}
        self.sizes: dict[str, float] = {}

    def add(self, *row: Any) -> None:
        for col, v in zip(self.cols, row, strict=True):
            col.append(v)

    def __len__(self) -> int:
        return len(self.cols[0])

    def mark_last(self) -> None:
        """Put ``F_LAST`` on the last buffered row (the buffer is only cut after ``F_LAST``)."""
        flags = self.cols[7]
        if flags:
            flags[-1] |= F_LAST

    def take(self) -> np.ndarray:
        out = np.zeros(len(self), dtype=MD_DTYPE)
        for name, col in zip(MD_DTYPE.names, self.cols, strict=True):
            out[name] = col
        self.cols = [[] for _ in MD_DTYPE.names]
        return out

    def price(self, text: str) -> int:
        t = self.ticks.get(text)
        if t is None:
            t = self.ticks[text] = self.instrument.price_to_ticks(text)
        return t

    def size(self, text: str) -> float:
        s = self.sizes.get(text)
        if s is None:
            lots = self.instrument.size_to_lots(text)
            s = self.sizes[text] = self.instrument.lots_to_float(lots)
        return s


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="")
    return open(path, newline="")  # noqa: SIM115


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line number, record)`` from a CSV decoding; raise on a missing column."""
    with _open_text(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ValidationError(f"{path.name}:1", f"a header with the columns {REQUIRED}",
                                  f"missing {missing}")
        names = header
        for rec in reader:
            yield reader.line_num, dict(zip(names, rec, strict=False))


def _dbn_records(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(record number, record)`` from a DBN file via the optional ``databento_dbn``.

    The records take the CSV's shape (decimal prices, action and side letters), and the
    file's symbol mappings name the instruments, so both inputs go through the same checks.
    """
    try:
        import databento_dbn as dbn  # type: ignore[import-not-found]
    except ImportError:
        raise ValidationError(
            "path", "a .csv or .csv.gz file (.dbn needs the optional databento_dbn package)",
            path.name,
        ) from None
    zst = dbn.Compression.ZSTD if path.suffix == ".zst" else dbn.Compression.NONE
    dec = dbn.DBNDecoder(compression=zst)
    dec.write(path.read_bytes())
    symbols: dict[str, str] = {}
    n = 0
    for rec in dec.decode():
        if isinstance(rec, dbn.Metadata):
            for raw_symbol, intervals in rec.mappings.items():
                for iv in intervals:
                    symbols[str(iv["symbol"])] = raw_symbol
            continue
        n += 1
        if not isinstance(rec, dbn.MBOMsg):
            yield n, {"action": f"<{type(rec).__name__} record>"}
            continue
        px = int(rec.price)
        iid = str(rec.instrument_id)
        yield n, {
            "ts_recv": str(rec.ts_recv), "ts_event": str(rec.ts_event), "instrument_id": iid,
            "action": str(getattr(rec.action, "value", rec.action)),
            "side": str(getattr(rec.side, "value", rec.side)),
            "price": "" if px == dbn.UNDEF_PRICE else str(Decimal(px) / 10**9),
            "size": str(rec.size), "order_id": str(rec.order_id), "flags": str(int(rec.flags)),
            "sequence": str(rec.sequence), "symbol": symbols.get(iid, ""),
        }


def _records(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    name = path.name
    if name.endswith((".dbn", ".dbn.zst")):
        return _dbn_records(path)
    return _csv_records(path)


INT64_MAX = 2**63 - 1


def _int(rec: dict[str, str], name: str, where: str, lo: int = 0, hi: int = INT64_MAX) -> int:
    v = rec.get(name, "")
    try:
        x = int(v)
    except ValueError:
        raise ValidationError(f"{where}.{name}", "an integer", v) from None
    if x < lo:
        raise ValidationError(f"{where}.{name}", f">= {lo}", x)
    if x > hi:  # integer columns land in int64 (order ids in uint64)
        raise ValidationError(f"{where}.{name}", f"<= {hi}", x)
    return x


class _Reader:
    """One call's state: instruments, per-instrument buffers, stats."""

    def __init__(self, instruments: Mapping[int | str, Instrument] | None, fills: bool,
                 stats: DatabentoStats) -> None:
        self.overrides = dict(instruments or {})
        self.fills = fills
        self.stats = stats
        self.by_id: dict[int, _Symbol] = {}

    def symbol_of(self, iid: int, rec: dict[str, str], where: str) -> _Symbol:
        sym = self.by_id.get(iid)
        if sym is not None:
            return sym
        ins = self.overrides.get(iid)
        name = rec.get("symbol") or KNOWN_INSTRUMENT_IDS.get(iid)
        if ins is None and name:
            ins = self.overrides.get(name)
            if ins is None:
                try:
                    ins = databento_instrument(name)
                except ValidationError as exc:
                    raise ValidationError(f"{where}.symbol", exc.rule, name) from None
        if ins is None:
            raise ValidationError(f"{where}.instrument_id",
                                  "a known instrument (pass instruments={id: Instrument})", iid)
        sym = self.by_id[iid] = _Symbol(ins)
        return sym

    def record(self, rec: dict[str, str], where: str) -> _Symbol | None:
        """Turn one record into rows of its instrument's buffer; return that instrument."""
        st = self.stats
        action = rec.get("action", "")
        if len(action) != 1 or action not in ACTIONS:
            raise ValidationError(f"{where}.action", f"one of {list(ACTIONS)}", action)
        st.by_action[action] = st.by_action.get(action, 0) + 1
        iid = _int(rec, "instrument_id", where)
        sym = self.symbol_of(iid, rec, where)
        ts_event = _int(rec, "ts_event", where, 1)
        ts_init = _int(rec, "ts_recv", where, 1)
        flags_in = _int(rec, "flags", where)
        if flags_in > 255:
            raise ValidationError(f"{where}.flags", "<= 255", flags_in)
        sequence = _int(rec, "sequence", where)
        snapshot = bool(flags_in & DB_F_SNAPSHOT) or rec.get("is_snapshot", "0") == "1"
        last = bool(flags_in & DB_F_LAST)
        side_txt = rec.get("side", "")
        if side_txt not in ("A", "B", "N"):
            raise ValidationError(f"{where}.side", "one of 'A', 'B', 'N'", side_txt)
        # the fields of the row (checked before anything is appended)
        kind, side, price, size, oid = CLEAR, BID, 0, 0.0, 0
        if action in "ACMTF":
            price_txt = rec.get("price", "")
            try:
                price = sym.price(price_txt)
            except ValidationError as exc:
                raise ValidationError(f"{where}.price", exc.rule, price_txt) from None
            if price <= 0:
                raise ValidationError(f"{where}.price", "> 0", price_txt)
            size_txt = rec.get("size", "")
            try:
                size = sym.size(size_txt)
            except ValidationError as exc:
                raise ValidationError(f"{where}.size", exc.rule, size_txt) from None
            if size <= 0 and action != "M":
                raise ValidationError(f"{where}.size", f"> 0 on action {action}", size_txt)
            if size < 0:
                raise ValidationError(f"{where}.size", ">= 0", size_txt)
        if action in "ACMF":
            oid = _int(rec, "order_id", where, 1, 2**64 - 1)
        if action in "ACM":
            if side_txt == "N":
                raise ValidationError(f"{where}.side", f"'A' or 'B' on action {action}", "N")
            kind = {"A": ADD, "C": CANCEL, "M": MODIFY}[action]
            side = BID if side_txt == "B" else ASK
        elif action == "T":
            kind = TRADE
            if side_txt == "N":
                kind = -1
                st.skip("trade_no_aggressor")
            side = BID if side_txt == "B" else ASK
        elif action == "F":
            kind = TRADE
            if not self.fills:
                kind = -1
                st.skip("fill")
            side = ASK if side_txt == "B" else BID  # the aggressor took the resting side
        elif action == "N":
            kind = -1
            st.skip("none_action")
        # sequence, snapshot phase
        if sequence < sym.max_seq:
            st.seq_raised += 1
        else:
            sym.max_seq = sequence
        seq = sym.max_seq
        if sym.in_snapshot and not snapshot:
            self.end_snapshot(sym)
        if snapshot and not sym.in_snapshot:
            sym.in_snapshot = True
            if action != "R":
                sym.add(ts_event, ts_init, seq, CLEAR, BID, 0, 0.0, F_SNAPSHOT, 0)
                st.synthetic_clears += 1
                st.rows += 1
        flags = (F_LAST if last else 0) | (F_SNAPSHOT if snapshot else 0)
        if kind < 0:
            if last:
                sym.mark_last()
            return sym
        sym.add(ts_event, ts_init, seq, kind, side, price, size, flags, oid)
        st.rows += 1
        return sym

    def end_snapshot(self, sym: _Symbol) -> None:
        sym.in_snapshot = False
        flags = sym.cols[7]
        if flags and not flags[-1] & F_LAST:
            flags[-1] |= F_LAST
            self.stats.snapshot_ends_marked += 1


def read_databento(
    paths: str | Path | Iterable[str | Path],
    batch_rows: int = 65_536,
    instruments: Mapping[int | str, Instrument] | None = None,
    *,
    fills: bool = True,
    stats: DatabentoStats | None = None,
) -> Iterator[tuple[Instrument, np.ndarray]]:
    """Yield ``(instrument, rows)`` batches of normalised MBO rows, in record order.

    Batches hold about ``batch_rows`` rows per instrument and are only cut after an ``F_LAST``
    row (a complete venue event), so the book is consistent at the end of every batch.

    Args:
        paths: Files in session order (CSV, CSV.gz; DBN with the optional ``databento_dbn``).
        batch_rows: Rows per batch (at least; a batch ends at the next event end).
        instruments: Instruments by ``instrument_id`` or raw symbol, overriding
            :data:`KNOWN_INSTRUMENT_IDS` and :data:`ROOT_SPECS`.
        fills: Emit fills (``F``) as ``TRADE`` rows with the resting ``order_id`` (see the
            module docstring); otherwise only count them.
        stats: Filled in while reading (records by action, rejected records and errors).

    Raises:
        ValidationError: a file without the required header columns (bad records are counted,
            not raised).
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    st = stats if stats is not None else DatabentoStats()
    reader = _Reader(instruments, fills, st)
    for path in paths:
        path = Path(path)
        for lineno, rec in _records(path):
            st.records += 1
            where = f"{path.name}:{lineno}"
            try:
                sym = reader.record(rec, where)
            except ValidationError as exc:
                st.reject(exc)
                # a rejected record that ended an event still ends it
                iid = rec.get("instrument_id", "")
                target = reader.by_id.get(int(iid)) if iid.isdigit() else None
                if target is not None and rec.get("flags", "").isdigit() \
                        and int(rec["flags"]) & DB_F_LAST:
                    target.mark_last()
                continue
            if len(sym) >= batch_rows and sym.cols[7][-1] & F_LAST:
                yield sym.instrument, sym.take()
    for sym in reader.by_id.values():
        if sym.in_snapshot:
            reader.end_snapshot(sym)
        if len(sym):
            yield sym.instrument, sym.take()
