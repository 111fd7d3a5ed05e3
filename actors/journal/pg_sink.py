"""Ship the local journal to PostgreSQL: schema migrations, batched COPY, idempotent by record id.

The local journal (:mod:`actors.journal.journal`) stays the source of truth. A :class:`PgSink`
follows it with a :class:`JournalTail` (an incremental, verifying reader that never loads the
file whole) and copies each batch into ``raydesk_audit`` in one transaction:
``copy_records_to_table`` into a session temp table, then ``INSERT ... SELECT ... ON CONFLICT
(run_id, seq) DO NOTHING``. Before every batch the sink asks Postgres for the run's last
``seq`` and positions the tail after it, so a batch whose commit was lost is sent again and a
batch that did commit is skipped: nothing is lost, nothing is duplicated. When Postgres is
unreachable the journal holds everything; :meth:`PgSink.run` backs off and catches up when it
returns.

Schema changes are the numbered ``migrations/NNNN_name.sql`` files next to this module, applied
by :func:`migrate` in order, each in its own transaction under a transaction-scoped advisory
lock, and recorded in ``raydesk_schema_migrations``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import asyncpg

from actors.core.errors import ValidationError
from actors.journal.journal import JournalCorrupt

log = logging.getLogger(__name__)

DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MIGRATIONS_TABLE = "raydesk_schema_migrations"
AUDIT_TABLE = "raydesk_audit"
# pg_advisory_xact_lock key shared by every raydesk migrator ("raydesk" in ASCII).
MIGRATION_LOCK_KEY = 0x7261796465736B
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SEEK_CHUNK = 10_000
_READ_CHUNK = 1 << 18
_MIN_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 2.0

_CREATE_MIGRATIONS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version    int         PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
_STAGE = "raydesk_audit_stage"
_STAGE_COLUMNS = (
    "seq", "type", "ts_event", "ts_init", "client_order_id", "symbol", "crc", "record",
)  # fmt: skip
_CREATE_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (
    seq             bigint NOT NULL,
    type            text   NOT NULL,
    ts_event        bigint NOT NULL,
    ts_init         bigint NOT NULL,
    client_order_id text,
    symbol          text,
    crc             bigint NOT NULL,
    record          text   NOT NULL
) ON COMMIT DELETE ROWS"""
_LAST_ROW = f"SELECT seq, crc FROM {AUDIT_TABLE} WHERE run_id = $1 ORDER BY seq DESC LIMIT 1"
_INSERT = f"""
INSERT INTO {AUDIT_TABLE}
    (run_id, seq, record_id, type, ts_event, ts_init, client_order_id, symbol, crc, record)
SELECT $1::text, s.seq, $1::text || ':' || s.seq::text, s.type, s.ts_event, s.ts_init,
       s.client_order_id, s.symbol, s.crc, s.record::jsonb
FROM pg_temp.{_STAGE} AS s
ORDER BY s.seq
ON CONFLICT (run_id, seq) DO NOTHING"""
_CONFLICTING_CRC = f"""
SELECT s.seq, s.crc AS journal_crc, a.crc AS pg_crc
FROM pg_temp.{_STAGE} AS s
JOIN {AUDIT_TABLE} AS a ON a.run_id = $1 AND a.seq = s.seq
WHERE a.crc <> s.crc
ORDER BY s.seq
LIMIT 1"""


def dsn_from_env() -> str:
    """Return ``RAYDESK_PG_DSN`` from the environment, or the local default."""
    return os.environ.get("RAYDESK_PG_DSN", DEFAULT_PG_DSN)


def is_outage(exc: BaseException) -> bool:
    """Tell whether ``exc`` means "Postgres is unreachable for now" (retry) or a real defect.

    Outages: socket errors and timeouts, a lost or refused connection, the server shutting
    down or terminating the backend, too many connections, a serialization failure. A bad DSN,
    bad data or a schema error is not an outage.
    """
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return False
    return isinstance(
        exc,
        OSError
        | ConnectionError
        | TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.OperatorInterventionError
        | asyncpg.exceptions.InsufficientResourcesError
        | asyncpg.exceptions.TransactionRollbackError,
    )


class SinkOutage(ConnectionError):
    """Postgres is unreachable for now; the journal keeps the records until it returns."""


# --- the journal tail -------------------------------------------------------------------------
class JournalLine(NamedTuple):
    """One verified journal line: ``text`` is the JSON body exactly as written."""

    seq: int
    crc: int
    text: str


@dataclass(frozen=True)
class TailPosition:
    """Where a :class:`JournalTail` stands: after ``seq`` (whose CRC is ``crc``) at ``offset``."""

    seq: int = 0
    crc: int | None = None
    offset: int = 0


def _verify(raw: bytes, expected: int, path: Path) -> JournalLine:
    try:
        seq_s, crc_s, body = raw[:-1].decode().split(" ", 2)
        seq, crc = int(seq_s), int(crc_s, 16)
    except (UnicodeDecodeError, ValueError):
        raise JournalCorrupt(f"{path}:{expected} must be '<seq> <crc> <json>'") from None
    if zlib.crc32(f"{seq} {body}".encode()) != crc:
        raise JournalCorrupt(f"{path}:{expected} checksum must match, was {crc_s}")
    if seq != expected:
        raise JournalCorrupt(f"{path}:{expected} seq must be {expected}, was {seq}")
    return JournalLine(seq, crc, body)


class JournalTail:
    """Incremental, verifying reader of a journal that another writer is appending to.

    Each read returns the complete lines after the last one read and keeps the byte offset; a
    last line without its newline yet (the writer is mid-write) is left for the next read. Every
    line's checksum and the sequence are verified as in :func:`~actors.journal.journal.
    read_journal`. A journal that does not exist yet reads as empty.

    Args:
        path: The journal file.

    Example:
        >>> tail = JournalTail(run_dir / "journal.log")
        >>> tail.read(1000)
        [(1, 3735928559, {'type': 'SubmitOrder', ...}), ...]
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._pos = TailPosition()
        self._fh: BinaryIO | None = None

    @property
    def seq(self) -> int:
        """The sequence number of the last line read (0 before any)."""
        return self._pos.seq

    @property
    def crc(self) -> int | None:
        """The CRC-32 of the last line read (``None`` before any)."""
        return self._pos.crc

    @property
    def position(self) -> TailPosition:
        """The current position, for :meth:`restore`."""
        return self._pos

    def restore(self, position: TailPosition) -> None:
        """Go back (or forward) to a position this tail reported earlier."""
        self._pos = position

    def read(self, max_records: int) -> list[tuple[int, int, dict[str, Any]]]:
        """Return up to ``max_records`` new ``(seq, crc, record)`` and advance past them.

        Raises:
            JournalCorrupt: on a bad checksum, a broken sequence, an unparsable line, or a
                file that shrank below the position already read.
        """
        lines, pos = self._scan(_max_records(max_records))
        try:
            out = [(ln.seq, ln.crc, json.loads(ln.text)) for ln in lines]
        except ValueError:
            raise JournalCorrupt(f"{self.path}: a checksummed body must be JSON") from None
        self._pos = pos
        return out

    def read_lines(self, max_records: int) -> list[JournalLine]:
        """Like :meth:`read`, but return each body as the JSON text written, unparsed."""
        lines, self._pos = self._scan(_max_records(max_records))
        return lines

    def seek_after(self, seq: int) -> None:
        """Position the tail right after line ``seq`` (0: the start), verifying on the way.

        Scans from the start, or from the current position when ``seq`` is not behind it (the
        lines before it were verified already).

        Raises:
            JournalCorrupt: when the journal does not (yet) hold ``seq`` complete lines, or a line
                on the way is corrupt. The position is then unchanged.
        """
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValidationError("seq", "an int >= 0", seq)
        saved = self._pos
        if seq < self._pos.seq:
            self._pos = TailPosition()
        try:
            while self._pos.seq < seq:
                lines, pos = self._scan(min(seq - self._pos.seq, _SEEK_CHUNK))
                if not lines:
                    raise JournalCorrupt(
                        f"{self.path} must hold seq {seq}, ends at {self._pos.seq}"
                    )
                self._pos = pos
        except BaseException:
            self._pos = saved
            raise

    def close(self) -> None:
        """Close the file handle (a later read opens it again)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _scan(self, max_records: int) -> tuple[list[JournalLine], TailPosition]:
        # Unbuffered reads at explicit offsets: a buffered reader would serve bytes it cached
        # before the writer's latest write.
        if self._fh is None:
            try:
                self._fh = open(self.path, "rb", buffering=0)  # noqa: SIM115 - kept open
            except FileNotFoundError:
                if self._pos.offset:
                    raise JournalCorrupt(f"{self.path} must exist, was removed") from None
                return [], self._pos
        fh = self._fh
        size = os.fstat(fh.fileno()).st_size
        if size < self._pos.offset:
            raise JournalCorrupt(
                f"{self.path} size must be >= the offset read {self._pos.offset}, was {size}"
            )
        seq, crc, offset = self._pos.seq, self._pos.crc, self._pos.offset
        out: list[JournalLine] = []
        data, start, read_at = b"", 0, offset
        while len(out) < max_records:
            nl = data.find(b"\n", start)
            if nl < 0:  # need more bytes; none left: end of file or a line still being written
                fh.seek(read_at)
                chunk = fh.read(_READ_CHUNK)
                if not chunk:
                    break
                data, start, read_at = data[start:] + chunk, 0, read_at + len(chunk)
                continue
            line = _verify(data[start : nl + 1], seq + 1, self.path)
            out.append(line)
            seq, crc, offset, start = line.seq, line.crc, offset + nl + 1 - start, nl + 1
        return out, TailPosition(seq, crc, offset)


def _max_records(max_records: int) -> int:
    if isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1:
        raise ValidationError("max_records", "an int >= 1", max_records)
    return max_records


# --- migrations -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Migration:
    """One numbered schema change: ``NNNN_name.sql``."""

    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """Return the packaged ``migrations/*.sql`` files in version order.

    Raises:
        ValidationError: when a ``.sql`` file is misnamed or two share a version.
    """
    folder = resources.files("actors.journal").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        m = _MIGRATION_FILE.match(entry.name)
        if m is None:
            raise ValidationError("migration file name", "'NNNN_lower_snake.sql'", entry.name)
        found.append(Migration(int(m[1]), m[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mg: mg.version)
    versions = [mg.version for mg in found]
    if len(set(versions)) != len(versions):
        raise ValidationError("migration versions", "unique", versions)
    return found


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply the migrations not applied yet; return the versions this call applied.

    Each migration runs in its own transaction holding ``pg_advisory_xact_lock``, so two
    processes migrating at once serialize: the second finds the version recorded and skips it.
    Tables are created in the connection's ``search_path``.

    Args:
        conn: An open connection (not inside a transaction).
        migrations: The migrations to apply; default :func:`load_migrations`.

    Raises:
        ValidationError: when an applied version is recorded under another name.

    Example:
        >>> conn = await asyncpg.connect(dsn_from_env())
        >>> await migrate(conn)
        [1]
    """
    todo = load_migrations() if migrations is None else migrations
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(_CREATE_MIGRATIONS_TABLE)
    applied: list[int] = []
    for mg in todo:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            name = await conn.fetchval(
                f"SELECT name FROM {MIGRATIONS_TABLE} WHERE version = $1", mg.version
            )
            if name is not None:
                if name != mg.name:
                    raise ValidationError(
                        f"{MIGRATIONS_TABLE}[{mg.version}].name", f"{mg.name!r}", name
                    )
                continue
            await conn.execute(mg.sql)
            await conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (version, name) VALUES ($1, $2)",
                mg.version,
                mg.name,
            )
            applied.append(mg.version)
            log.info("applied migration %04d_%s", mg.version, mg.name)
    return applied


# --- the sink ---------------------------------------------------------------------------------
def _describe(exc: BaseException) -> str:
    """``"Type: message"``, with the error it interrupted when there is one (asyncpg raises
    ``InterfaceError`` from ``Transaction.__aexit__`` over the server's own error)."""
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__ or exc.__context__
    return f"{text} (during {type(cause).__name__}: {cause})" if cause is not None else text


def _stage_row(line: JournalLine) -> tuple[Any, ...]:
    """The temp-table row of one journal line; the JSON text is passed through untouched."""
    rec = json.loads(line.text)
    where = f"journal seq {line.seq}"
    if not isinstance(rec, dict):
        raise ValidationError(where, "a JSON object", type(rec).__name__)
    kind = rec.get("type")
    if not isinstance(kind, str) or not kind:
        raise ValidationError(f"{where}.type", "a non-empty string", kind)
    ts: list[int] = []
    for key in ("ts_event", "ts_init"):
        v = rec.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or not -(2**63) <= v < 2**63:
            raise ValidationError(f"{where}.{key}", "an int64 of ns", v)
        ts.append(v)
    coid = rec.get("client_order_id")
    symbol = rec.get("symbol")
    return (
        line.seq,
        kind,
        ts[0],
        ts[1],
        coid if isinstance(coid, str) else None,
        symbol if isinstance(symbol, str) else None,
        line.crc,
        line.text,
    )


class PgSink:
    """Follow a run's journal and copy it into ``raydesk_audit``, exactly once per record.

    Args:
        dsn: libpq connection string (see :func:`dsn_from_env`).
        journal_path: The run's journal, possibly still being appended to.
        run_id: The run's id; rows are keyed by ``(run_id, seq)``.
        batch_rows: Most records per COPY transaction.
        application_name: Shown in ``pg_stat_activity``.
        timeout_s: Connect and per-command timeout (a hung server counts as an outage).

    Calls from several tasks are serialized by a lock. Two sinks (two processes) on the same run
    are safe too: their rows conflict on ``(run_id, seq)`` and are skipped.

    Example:
        >>> sink = PgSink(dsn_from_env(), run_dir / "journal.log", run_id="20260101-abc")
        >>> stop = asyncio.Event()
        >>> task = asyncio.create_task(sink.run(stop))
        >>> ...  # the run appends to the journal
        >>> stop.set(); await task; await sink.close()
    """

    def __init__(
        self,
        dsn: str,
        journal_path: str | Path,
        run_id: str,
        batch_rows: int = 5000,
        application_name: str = "raydesk-sink",
        timeout_s: float = 10.0,
    ) -> None:
        if not isinstance(run_id, str) or not run_id:
            raise ValidationError("run_id", "a non-empty string", run_id)
        if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
            raise ValidationError("batch_rows", "an int >= 1", batch_rows)
        if not timeout_s > 0:
            raise ValidationError("timeout_s", "> 0", timeout_s)
        self.dsn = dsn
        self.run_id = run_id
        self.batch_rows = batch_rows
        self.application_name = application_name
        self.timeout_s = float(timeout_s)
        self._tail = JournalTail(journal_path)
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._migrated = False
        self._lost = False
        self._drained = False
        self._rows = 0
        self._batches = 0
        self._errors = 0
        self._reconnects = 0
        self._last_error = ""
        self._seen = 0
        self._pg_seq = 0

    async def sync_once(self) -> int:
        """Copy the next batch (up to ``batch_rows`` records) into Postgres; return rows inserted.

        Connects (and migrates, once) when needed, asks Postgres for the run's last ``seq``,
        positions the tail after it, and inserts the following records in one transaction.
        On any error the tail goes back to where it was; on an outage the connection is dropped
        (the next call reconnects).

        Raises:
            SinkOutage: Postgres is unreachable or the connection died (see :func:`is_outage`);
                the original error is its ``__cause__``. Call again later.
            JournalCorrupt: when the journal fails verification or lacks a row Postgres has.
            ValidationError: when a record lacks ``type``/``ts_event``/``ts_init``, or Postgres
                holds a different record (CRC) under the same ``(run_id, seq)``.
        """
        async with self._lock:
            mark = self._tail.position
            try:
                conn = await self._connection()
                return await self._sync_batch(conn)
            except asyncio.CancelledError:
                self._tail.restore(mark)
                self._drop()
                raise
            except Exception as exc:
                self._tail.restore(mark)
                self._errors += 1
                self._last_error = _describe(exc)
                died = self._conn is not None and self._conn.is_closed()
                if is_outage(exc) or died:
                    self._drop()
                    raise SinkOutage(self._last_error) from exc
                raise

    async def run(
        self, stop: asyncio.Event, poll_s: float = 0.1, drain_timeout_s: float | None = None
    ) -> None:
        """Sync until ``stop`` is set and everything written before it is in Postgres.

        Outages never raise: the connection is dropped, counted, and retried with exponential
        back-off capped at 2 s. Other errors (a corrupt journal, a conflicting row) raise.

        Args:
            stop: Set it to finish; records appended before it is set are still delivered.
            poll_s: Wait between polls of a drained journal.
            drain_timeout_s: After ``stop``, give up waiting for Postgres after this long (the
                journal keeps the rest for the next sink); ``None`` waits for ever.
        """
        loop = asyncio.get_running_loop()
        backoff = 0.0
        deadline: float | None = None
        while True:
            stopping = stop.is_set()
            if stopping and drain_timeout_s is not None and deadline is None:
                deadline = loop.time() + drain_timeout_s
            try:
                await self.sync_once()
            except SinkOutage as exc:
                backoff = min(_MAX_BACKOFF_S, max(_MIN_BACKOFF_S, backoff * 2))
                log.warning("audit sink outage (%s); retrying in %.2f s", exc, backoff)
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        log.warning("audit sink stopped %d records behind", self._lag())
                        return
                    await asyncio.sleep(min(backoff, left))
                else:
                    await asyncio.sleep(backoff)
                continue
            backoff = 0.0
            if self._drained and stopping:
                return
            if not self._drained:
                if deadline is not None and loop.time() >= deadline:
                    log.warning("audit sink stopped %d records behind", self._lag())
                    return
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)

    def stats(self) -> dict[str, Any]:
        """Return the counters: rows, batches, errors, reconnects, seqs seen and confirmed, lag."""
        return {
            "rows_inserted": self._rows,
            "batches": self._batches,
            "errors": self._errors,
            "reconnects": self._reconnects,
            "last_error": self._last_error,
            "journal_seq_seen": self._seen,
            "pg_seq": self._pg_seq,
            "lag_records": self._lag(),
        }

    async def close(self) -> None:
        """Close the connection (gracefully when possible) and the journal file."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=self.timeout_s)
            except Exception:  # a broken connection cannot close gracefully: terminate it
                conn.terminate()
        self._tail.close()

    def _lag(self) -> int:
        return max(0, self._seen - self._pg_seq)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
            self._lost = True

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is not None:
            if not self._conn.is_closed():
                return self._conn
            self._drop()  # closed by the server while idle
        conn = await asyncpg.connect(
            self.dsn,
            timeout=self.timeout_s,
            command_timeout=self.timeout_s,
            server_settings={"application_name": self.application_name},
        )
        try:
            if not self._migrated:
                await migrate(conn)
                self._migrated = True
            await conn.execute(_CREATE_STAGE)
        except BaseException:
            conn.terminate()
            raise
        if self._lost:
            self._reconnects += 1
            self._lost = False
        self._conn = conn
        return conn

    async def _sync_batch(self, conn: asyncpg.Connection) -> int:
        last = await conn.fetchrow(_LAST_ROW, self.run_id)
        pg_seq, pg_crc = (last["seq"], last["crc"]) if last is not None else (0, None)
        self._pg_seq = pg_seq
        if self._tail.seq != pg_seq:
            self._tail.seek_after(pg_seq)
            self._seen = max(self._seen, self._tail.seq)
        if self._tail.crc != pg_crc:
            raise ValidationError(
                f"{AUDIT_TABLE}[{self.run_id}:{pg_seq}].crc",
                f"the journal's {self._tail.crc:08x}",
                f"{pg_crc:08x}",
            )
        lines = self._tail.read_lines(self.batch_rows)
        self._seen = max(self._seen, self._tail.seq)
        self._drained = len(lines) < self.batch_rows
        if not lines:
            return 0
        rows = [_stage_row(line) for line in lines]
        async with conn.transaction():
            await conn.copy_records_to_table(_STAGE, records=rows, columns=_STAGE_COLUMNS)
            status = await conn.execute(_INSERT, self.run_id)
            inserted = int(status.rsplit(" ", 1)[1])
            if inserted < len(rows):
                clash = await conn.fetchrow(_CONFLICTING_CRC, self.run_id)
                if clash is not None:
                    raise ValidationError(
                        f"{AUDIT_TABLE}[{self.run_id}:{clash['seq']}].crc",
                        f"the journal's {clash['journal_crc']:08x}",
                        f"{clash['pg_crc']:08x}",
                    )
        self._pg_seq = lines[-1].seq
        self._rows += inserted
        self._batches += 1
        return inserted
