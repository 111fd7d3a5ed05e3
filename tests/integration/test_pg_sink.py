"""The Postgres audit sink on a real PostgreSQL: exactly once across outages and restarts.

Needs the server at ``RAYDESK_PG_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``);
the Postgres tests are skipped, with the reason, when it cannot be reached. Every test writes
under its own ``run_id`` and deletes its rows afterwards; migration tests use a throwaway schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.errors import ValidationError
from actors.core.messages import (
    LiquiditySide,
    OrderAccepted,
    OrderFilled,
    OrderSide,
    OrderType,
    SubmitOrder,
)
from actors.journal.journal import Journal, JournalCorrupt, read_journal
from actors.journal.pg_sink import (
    JournalTail,
    Migration,
    PgSink,
    SinkOutage,
    dsn_from_env,
    migrate,
)

pytestmark = pytest.mark.timeout(120)

DSN = dsn_from_env()
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns


# --- helpers ----------------------------------------------------------------------------------
def order_records(n: int, start: int = 0) -> list[dict[str, Any]]:
    """Return ``n`` journal records: per order a SubmitOrder, an OrderAccepted, an OrderFilled,
    and every tenth record a heartbeat with no order or symbol."""
    out: list[dict[str, Any]] = []
    i = start
    while len(out) < n:
        ts = T0 + i * 1_000_000
        coid = f"O-{i // 4}"
        kind = "heartbeat" if i % 10 == 9 else ("submit", "accept", "fill", "fill")[i % 4]
        if kind == "heartbeat":
            rec = {"type": "Heartbeat", "ts_event": ts, "ts_init": ts + 5, "note": "µs ≈ 1e-6 s"}
        elif kind == "submit":
            rec = SubmitOrder(
                ts_event=ts, ts_init=ts + 10, client_order_id=coid, symbol="BTCUSDT",
                side=OrderSide.BUY, order_type=OrderType.LIMIT, qty_lots=3 + i % 7,
                price_ticks=650_000 + i, decision_id=f"D-{i}", trigger_ts_init=ts - 1_000,
            ).to_record()  # fmt: skip
        elif kind == "accept":
            rec = OrderAccepted(
                ts_event=ts, ts_init=ts + 10, client_order_id=coid, symbol="BTCUSDT",
                venue_order_id=f"V-{i}",
            ).to_record()  # fmt: skip
        else:
            rec = OrderFilled(
                ts_event=ts, ts_init=ts + 10, client_order_id=coid, symbol="ETHUSDT",
                trade_id=f"T-{i}", side=OrderSide.SELL, last_qty_lots=1, last_px_ticks=31_000 + i,
                liquidity=LiquiditySide.TAKER, fee=0.012345 * (i % 3),
            ).to_record()  # fmt: skip
        out.append(rec)
        i += 1
    return out


def write_journal(path: Path, records: list[dict[str, Any]]) -> None:
    """Append ``records`` to the journal at ``path`` (created when absent)."""
    j = Journal(path, fsync=False)
    j.append(records)
    j.close()


def pg_address() -> tuple[str, int]:
    """Return the host and port of ``DSN``."""
    parts = urlsplit(DSN)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def dsn_via(port: int) -> str:
    """Return ``DSN`` pointed at 127.0.0.1:``port`` (the test proxy)."""
    parts = urlsplit(DSN)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


async def connect(**server_settings: str) -> asyncpg.Connection:
    return await asyncpg.connect(DSN, server_settings=server_settings or None)


async def audit_rows(run_id: str) -> list[asyncpg.Record]:
    conn = await connect()
    try:
        return await conn.fetch(
            "SELECT seq, record_id, type, ts_event, ts_init, client_order_id, symbol, crc,"
            " record::text AS record FROM raydesk_audit WHERE run_id = $1 ORDER BY seq",
            run_id,
        )
    finally:
        await conn.close()


async def delete_run(run_id: str) -> None:
    conn = await connect()
    try:
        await conn.execute("DELETE FROM raydesk_audit WHERE run_id = $1", run_id)
    finally:
        await conn.close()


async def count_once(run_id: str) -> tuple[int, int, int, int]:
    """Return (rows, distinct seqs, min seq, max seq) of a run."""
    conn = await connect()
    try:
        row = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT seq), coalesce(min(seq), 0), coalesce(max(seq), 0)"
            " FROM raydesk_audit WHERE run_id = $1",
            run_id,
        )
        return tuple(row)  # type: ignore[return-value]
    finally:
        await conn.close()


async def drain(sink: PgSink, poll_s: float = 0.01) -> None:
    """Run ``sink`` until everything in its journal now is in Postgres."""
    stop = asyncio.Event()
    stop.set()
    await sink.run(stop, poll_s=poll_s)


async def wait_until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def append_in_thread(
    journal: Journal, batches: int, size: int, pause_s: float, gate: threading.Event | None = None
) -> threading.Thread:
    """Start a thread appending ``batches`` batches of ``size`` records, ``pause_s`` apart;
    with ``gate``, it waits for the gate before the second half."""

    def work() -> None:
        for b in range(batches):
            if gate is not None and b == batches // 2:
                gate.wait(10)
            journal.append(order_records(size, start=b * size))
            time.sleep(pause_s)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    return t


class TcpProxy:
    """A TCP forwarder to Postgres that can go down (drop everything, refuse) and come back."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.upstream_port = host, port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()

    @property
    def dsn(self) -> str:
        return dsn_via(self.port)

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
        for tr in list(self._transports):
            tr.abort()
        self._transports.clear()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._transports |= {writer.transport, up_w.transport}
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            dst.transport.abort()


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pg() -> str:
    """The DSN of a reachable PostgreSQL (skip the test otherwise)."""

    async def ping() -> None:
        conn = await asyncpg.connect(DSN, timeout=3)
        await conn.close()

    try:
        asyncio.run(ping())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        msg = f"PostgreSQL at {DSN} is unreachable: {exc}"
        if os.environ.get("CI"):  # CI has the service: its absence is a failure, not a skip
            pytest.fail(msg)
        pytest.skip(msg)
    return DSN


@pytest.fixture
def run_id(pg: str) -> Iterator[str]:
    """A unique run id whose rows are deleted after the test."""
    rid = f"test-{uuid.uuid4().hex}"
    yield rid
    asyncio.run(delete_run(rid))


@pytest.fixture
def schema(pg: str) -> Iterator[str]:
    """A throwaway schema, dropped with everything in it after the test."""
    name = f"raydesk_test_{uuid.uuid4().hex[:12]}"

    async def run(sql: str) -> None:
        conn = await connect()
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE SCHEMA {name}"))
    yield name
    asyncio.run(run(f"DROP SCHEMA {name} CASCADE"))


# --- JournalTail ------------------------------------------------------------------------------
def test_tail_leaves_a_partial_last_line_until_it_is_completed(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    write_journal(path, order_records(3))
    full = path.read_bytes()
    head, last = full.rsplit(b"\n", 2)[0] + b"\n", full.rsplit(b"\n", 2)[1] + b"\n"
    path.write_bytes(head + last[:17])
    tail = JournalTail(path)

    first = tail.read(10)
    again = tail.read(10)
    with open(path, "ab") as fh:
        fh.write(last[17:])
    rest = tail.read(10)

    assert [s for s, _, _ in first] == [1, 2] and again == []
    assert [(s, r) for s, _, r in rest] == [(3, order_records(3)[2])]
    assert tail.position.offset == len(full)


def test_tail_raises_on_a_corrupt_checksum_and_keeps_its_position(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    write_journal(path, order_records(2))
    tail = JournalTail(path)
    tail.read(1)
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"venue_order_id":"V-1"', b'"venue_order_id":"V-7"'))
    assert path.read_bytes() != data

    with pytest.raises(JournalCorrupt, match="checksum"):
        tail.read(10)

    assert tail.seq == 1


def test_tail_raises_on_a_broken_sequence(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    write_journal(path, order_records(1))
    line = path.read_bytes()
    path.write_bytes(line + line)  # seq 1 twice: checksums fine, sequence broken

    with pytest.raises(JournalCorrupt, match="seq must be 2, was 1"):
        JournalTail(path).read(10)


def test_tail_of_a_journal_not_created_yet_reads_empty_then_follows_it(tmp_path: Path) -> None:
    path = tmp_path / "later.log"
    tail = JournalTail(path)

    before = tail.read(5)
    write_journal(path, order_records(2))
    after = tail.read(5)

    assert before == [] and [s for s, _, _ in after] == [1, 2]


def test_seek_after_positions_after_a_seq_and_refuses_one_not_written(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    write_journal(path, order_records(30))
    tail = JournalTail(path)

    tail.seek_after(20)
    after_20 = tail.read(3)
    tail.seek_after(4)  # backwards: scanned again from the start
    after_4 = tail.read(1)
    with pytest.raises(JournalCorrupt, match="must hold seq 31"):
        tail.seek_after(31)

    assert [s for s, _, _ in after_20] == [21, 22, 23]
    assert [s for s, _, _ in after_4] == [5] and tail.seq == 5


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
    reads=st.lists(st.integers(1, 7), min_size=1, max_size=12),
)
def test_tail_returns_every_record_once_in_order_however_the_bytes_arrive(
    n: int, cuts: list[int], reads: list[int]
) -> None:
    records = order_records(n)
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "src.log", Path(d) / "dst.log"
        write_journal(src, records)
        data = src.read_bytes()
        bounds = sorted({c % (len(data) + 1) for c in cuts} | {len(data)})
        dst.touch()
        tail, got, prev = JournalTail(dst), [], 0

        for i, b in enumerate(bounds):
            with open(dst, "ab") as fh:
                fh.write(data[prev:b])
            prev = b
            got += tail.read(reads[i % len(reads)])
        while batch := tail.read(7):
            got += batch
        tail.close()

    assert [s for s, _, _ in got] == list(range(1, n + 1))
    assert [r for _, _, r in got] == records


# --- migrations -------------------------------------------------------------------------------
def test_migrations_apply_once_and_are_idempotent(schema: str) -> None:
    async def scenario() -> tuple[list[int], list[int], list[tuple[Any, ...]], list[str]]:
        conn = await connect(search_path=schema)
        try:
            first = await migrate(conn)
            second = await migrate(conn)
            versions = await conn.fetch(
                "SELECT version, name FROM raydesk_schema_migrations ORDER BY version"
            )
            indexes = await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE schemaname = $1"
                " AND tablename = 'raydesk_audit' ORDER BY indexname",
                schema,
            )
            return first, second, [tuple(v) for v in versions], [i[0] for i in indexes]
        finally:
            await conn.close()

    first, second, versions, indexes = asyncio.run(scenario())

    assert first == [1] and second == []
    assert versions == [(1, "audit")]
    assert indexes == ["raydesk_audit_pkey", "raydesk_audit_run_client_order_idx"]


def test_two_concurrent_migrations_both_succeed_and_apply_each_version_once(schema: str) -> None:
    async def scenario() -> tuple[list[list[int]], int]:
        a, b = await connect(search_path=schema), await connect(search_path=schema)
        try:
            results = await asyncio.gather(migrate(a), migrate(b))
            rows = await a.fetchval("SELECT count(*) FROM raydesk_schema_migrations")
            return sorted(results), rows
        finally:
            await a.close()
            await b.close()

    results, rows = asyncio.run(scenario())

    assert results == [[], [1]] and rows == 1


def test_a_version_applied_under_another_name_is_refused(schema: str) -> None:
    async def scenario() -> None:
        conn = await connect(search_path=schema)
        try:
            await migrate(conn)
            await migrate(conn, [Migration(1, "renamed", "SELECT 1")])
        finally:
            await conn.close()

    with pytest.raises(ValidationError, match=r"raydesk_schema_migrations\[1\].name"):
        asyncio.run(scenario())


# --- the sink ---------------------------------------------------------------------------------
def test_journal_syncs_exactly_once_and_a_rerun_inserts_nothing(
    pg: str, run_id: str, tmp_path: Path
) -> None:
    records = order_records(2_345)
    path = tmp_path / "journal.log"
    write_journal(path, records)
    lines = {seq: line for seq, line in enumerate(path.read_text().splitlines(), start=1)}

    async def scenario() -> tuple[list[int], int, dict[str, Any], int]:
        sink = PgSink(pg, path, run_id, batch_rows=1_000)
        counts = [await sink.sync_once() for _ in range(4)]
        stats = sink.stats()
        await sink.close()
        again = PgSink(pg, path, run_id, batch_rows=1_000)
        await drain(again)
        await again.close()
        conn = await connect()
        try:
            equal = await conn.fetchval(
                "SELECT count(*) FROM unnest($2::bigint[], $3::text[]) AS j(seq, body)"
                " JOIN raydesk_audit a ON a.run_id = $1 AND a.seq = j.seq"
                " WHERE a.record = j.body::jsonb",
                run_id,
                list(lines),
                [line.split(" ", 2)[2] for line in lines.values()],
            )
        finally:
            await conn.close()
        return counts, again.stats()["rows_inserted"], stats, equal

    counts, rerun, stats, jsonb_equal = asyncio.run(scenario())
    rows = asyncio.run(audit_rows(run_id))

    assert counts == [1_000, 1_000, 345, 0] and rerun == 0
    assert stats["rows_inserted"] == 2_345 and stats["batches"] == 3
    assert stats["pg_seq"] == stats["journal_seq_seen"] == 2_345 and stats["lag_records"] == 0
    assert jsonb_equal == len(records)
    assert [r["seq"] for r in rows] == list(range(1, len(records) + 1))
    for row, (seq, rec) in zip(rows, read_journal(path), strict=True):
        assert row["record_id"] == f"{run_id}:{seq}"
        assert row["crc"] == int(lines[seq].split(" ", 2)[1], 16)
        assert (row["type"], row["ts_event"], row["ts_init"]) == (
            rec["type"], rec["ts_event"], rec["ts_init"],
        )  # fmt: skip
        assert (row["client_order_id"], row["symbol"]) == (
            rec.get("client_order_id"), rec.get("symbol"),
        )  # fmt: skip
        assert json.loads(row["record"]) == rec


def test_two_sinks_racing_on_one_run_insert_each_record_once(
    pg: str, run_id: str, tmp_path: Path
) -> None:
    path = tmp_path / "journal.log"
    write_journal(path, order_records(3_000))

    async def scenario() -> list[int]:
        sinks = [PgSink(pg, path, run_id, batch_rows=400) for _ in range(2)]
        await asyncio.gather(*(drain(s) for s in sinks))
        for s in sinks:
            await s.close()
        return [s.stats()["rows_inserted"] for s in sinks]

    inserted = asyncio.run(scenario())

    assert sum(inserted) == 3_000
    assert asyncio.run(count_once(run_id)) == (3_000, 3_000, 1, 3_000)


def test_a_restarted_sink_continues_where_postgres_stands(
    pg: str, run_id: str, tmp_path: Path
) -> None:
    path = tmp_path / "journal.log"
    write_journal(path, order_records(700))

    async def scenario() -> tuple[int, int]:
        first = PgSink(pg, path, run_id, batch_rows=500)
        n1 = await first.sync_once()
        await first.close()
        write_journal(path, order_records(300, start=700))
        second = PgSink(pg, path, run_id, batch_rows=500)
        await drain(second)
        await second.close()
        return n1, second.stats()["rows_inserted"]

    n1, n2 = asyncio.run(scenario())

    assert (n1, n2) == (500, 500)
    assert asyncio.run(count_once(run_id)) == (1_000, 1_000, 1, 1_000)


@settings(max_examples=10, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["append", "sync", "restart"]), st.integers(1, 60)),
        max_size=10,
    ),
)
def test_any_interleaving_of_appends_syncs_and_restarts_lands_each_record_once(
    pg: str, steps: list[tuple[str, int]]
) -> None:
    rid = f"test-{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "journal.log"
        journal = Journal(path, fsync=False)

        async def scenario() -> int:
            total, sink = 0, PgSink(pg, path, rid, batch_rows=7)
            try:
                for op, k in steps:
                    if op == "append":
                        journal.append(order_records(k, start=journal.seq))
                    elif op == "sync":
                        await sink.sync_once()
                    else:  # a new process: its tail starts at 0, Postgres says where to go on
                        total += sink.stats()["rows_inserted"]
                        await sink.close()
                        sink = PgSink(pg, path, rid, batch_rows=5 + k)
                await drain(sink)
                return total + sink.stats()["rows_inserted"]
            finally:
                await sink.close()

        try:
            inserted = asyncio.run(scenario())
            counted = asyncio.run(count_once(rid))
        finally:
            journal.close()
            asyncio.run(delete_run(rid))

    n = journal.seq
    assert inserted == n
    assert counted == (n, n, min(n, 1), n)


def test_a_journal_from_another_run_under_the_same_id_is_refused(
    pg: str, run_id: str, tmp_path: Path
) -> None:
    ours, theirs = tmp_path / "ours.log", tmp_path / "theirs.log"
    write_journal(ours, order_records(50))
    write_journal(theirs, order_records(80, start=1))

    async def scenario() -> None:
        first = PgSink(pg, ours, run_id)
        await drain(first)
        await first.close()
        other = PgSink(pg, theirs, run_id)
        try:
            await other.sync_once()
        finally:
            await other.close()

    with pytest.raises(ValidationError, match=rf"raydesk_audit\[{run_id}:50\]\.crc"):
        asyncio.run(scenario())
    assert asyncio.run(count_once(run_id)) == (50, 50, 1, 50)


def test_a_record_without_ts_event_stops_the_sink_and_nothing_is_skipped(
    pg: str, run_id: str, tmp_path: Path
) -> None:
    path = tmp_path / "journal.log"
    bad = order_records(5)
    del bad[3]["ts_event"]
    write_journal(path, bad)

    async def scenario() -> dict[str, Any]:
        sink = PgSink(pg, path, run_id, batch_rows=100)
        try:
            with pytest.raises(ValidationError, match=r"journal seq 4\.ts_event must be an int64"):
                await sink.run(asyncio.Event())
            with pytest.raises(ValidationError):
                await sink.sync_once()  # the same batch again: never skipped
            return sink.stats()
        finally:
            await sink.close()

    stats = asyncio.run(scenario())

    assert asyncio.run(count_once(run_id))[0] == 0
    assert stats["errors"] == 2 and stats["pg_seq"] == 0


def test_outage_while_the_journal_grows_loses_and_duplicates_nothing(
    pg: str, run_id: str, tmp_path: Path
) -> None:
    path = tmp_path / "journal.log"
    batches, size = 60, 25

    async def scenario() -> dict[str, Any]:
        proxy = TcpProxy(*pg_address())
        await proxy.up()
        sink = PgSink(proxy.dsn, path, run_id, batch_rows=200, timeout_s=3)
        journal = Journal(path, fsync=False)
        stop = asyncio.Event()
        task = asyncio.create_task(sink.run(stop, poll_s=0.02))
        writer = append_in_thread(journal, batches, size, pause_s=0.01)
        await wait_until(lambda: sink.stats()["pg_seq"] > 0)

        await proxy.down()  # connections dropped, connects refused
        await wait_until(lambda: sink.stats()["errors"] >= 2)
        await asyncio.sleep(0.3)
        await proxy.up()
        await asyncio.to_thread(writer.join)
        stop.set()
        await asyncio.wait_for(task, 30)

        journal.close()
        await sink.close()
        await proxy.down()
        return sink.stats()

    stats = asyncio.run(scenario())

    n = batches * size
    assert asyncio.run(count_once(run_id)) == (n, n, 1, n)
    assert stats["errors"] > 0 and stats["reconnects"] > 0 and stats["last_error"]
    assert stats["pg_seq"] == stats["journal_seq_seen"] == n and stats["lag_records"] == 0


def test_terminated_backend_mid_transaction_and_mid_run_loses_and_duplicates_nothing(
    pg: str, run_id: str, tmp_path: Path
) -> None:
    path = tmp_path / "journal.log"
    batches, size = 40, 25
    app = f"raydesk-sink-{run_id[-12:]}"
    blocked_seq = 230

    async def terminate(admin: asyncpg.Connection) -> int:
        return await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            app,
        )

    async def scenario() -> tuple[dict[str, Any], list[int]]:
        admin = await connect()
        blocker = await connect()
        # An uncommitted row at blocked_seq makes the sink's INSERT wait inside its transaction.
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(
            "INSERT INTO raydesk_audit (run_id, seq, record_id, type, ts_event, ts_init, crc,"
            " record) VALUES ($1, $2, $3, 'X', 0, 0, 0, '{}')",
            run_id,
            blocked_seq,
            f"{run_id}:{blocked_seq}",
        )
        sink = PgSink(pg, path, run_id, batch_rows=100, application_name=app)
        journal = Journal(path, fsync=False)
        stop = asyncio.Event()
        gate = threading.Event()
        task = asyncio.create_task(sink.run(stop, poll_s=0.02))
        writer = append_in_thread(journal, batches, size, pause_s=0.005, gate=gate)

        waiting, deadline = 0, time.monotonic() + 10
        while not waiting and time.monotonic() < deadline:  # the sink's INSERT waits on the row
            waiting = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
                " AND wait_event_type = 'Lock'",
                app,
            )
            await asyncio.sleep(0.01)
        assert waiting, "the sink never blocked on the uncommitted row"
        killed = [await terminate(admin)]
        await wait_until(lambda: sink.stats()["errors"] >= 1)
        await tx.rollback()
        gate.set()
        await wait_until(lambda: sink.stats()["pg_seq"] > blocked_seq)
        killed.append(await terminate(admin))  # again, at whatever it is doing now
        await asyncio.to_thread(writer.join)
        stop.set()
        await asyncio.wait_for(task, 30)

        journal.close()
        await sink.close()
        await blocker.close()
        await admin.close()
        return sink.stats(), killed

    stats, killed = asyncio.run(scenario())

    n = batches * size
    assert killed == [1, 1]
    assert asyncio.run(count_once(run_id)) == (n, n, 1, n)
    assert stats["errors"] >= 1 and stats["reconnects"] >= 2
    assert stats["pg_seq"] == n and stats["lag_records"] == 0


def test_sink_started_while_postgres_is_down_catches_up_when_it_returns(
    pg: str, run_id: str, tmp_path: Path
) -> None:
    path = tmp_path / "journal.log"
    write_journal(path, order_records(120))

    async def scenario() -> tuple[dict[str, Any], float, tuple[int, int, int, int], int]:
        proxy = TcpProxy(*pg_address())
        await proxy.up()
        await proxy.down()  # the port is known but nothing listens
        sink = PgSink(proxy.dsn, path, run_id, batch_rows=50, timeout_s=1)
        with pytest.raises(SinkOutage) as direct:
            await sink.sync_once()
        assert isinstance(direct.value.__cause__, ConnectionRefusedError)
        stop = asyncio.Event()
        stop.set()
        t0 = time.monotonic()
        await sink.run(stop, drain_timeout_s=0.3)  # gives up: Postgres is down
        gave_up_after = time.monotonic() - t0
        during = sink.stats()
        before = await count_once(run_id)

        await proxy.up()
        await sink.run(stop)
        await sink.close()
        await proxy.down()
        return during, gave_up_after, before, sink.stats()["rows_inserted"]

    during, gave_up_after, before, inserted = asyncio.run(scenario())

    assert during["errors"] >= 3 and during["last_error"].startswith("ConnectionRefusedError")
    assert gave_up_after < 2.5 and before[0] == 0
    assert inserted == 120
    assert asyncio.run(count_once(run_id)) == (120, 120, 1, 120)
