"""A local, append-only, checksummed journal of every command, event and decision.

One record per line: ``<seq> <crc32 hex> <json>`` where the JSON has sorted keys and no
spaces, and the CRC-32 covers ``<seq> <json>``. Records are appended in batches and each batch
is flushed (and fsynced when configured) before :meth:`Journal.append` returns, so an
acknowledged record survives a crash. :func:`read_journal` verifies every checksum and that the
sequence numbers are contiguous; a torn last line (crash mid-write) is reported, not hidden.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from actors.core.errors import RaydeskError


class JournalCorrupt(RaydeskError):
    """A journal line failed its checksum or broke the sequence."""


def _encode(seq: int, record: dict[str, Any]) -> bytes:
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)
    payload = f"{seq} {body}"
    crc = zlib.crc32(payload.encode())
    return f"{seq} {crc:08x} {body}\n".encode()


class Journal:
    """Append-only journal file.

    Args:
        path: The journal file; created with its parent folder when absent. An existing journal
            is verified and appended to (sequence continues).
        fsync: fsync after every appended batch.

    Example:
        >>> j = Journal(tmp / "journal.log")
        >>> j.append([{"type": "OrderAccepted", "client_order_id": "A-1"}])
        1
    """

    def __init__(self, path: str | Path, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.seq = 0
        if self.path.exists():
            for seq, _ in read_journal(self.path):
                self.seq = seq
        self._fh = open(self.path, "ab")  # noqa: SIM115 - owned for the journal's lifetime

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Append records durably; return the sequence number of the last one."""
        chunks = []
        for rec in records:
            self.seq += 1
            chunks.append(_encode(self.seq, rec))
        if chunks:
            self._fh.write(b"".join(chunks))
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())
        return self.seq

    def close(self) -> None:
        """Flush and close the file."""
        if not self._fh.closed:
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())
            self._fh.close()


def read_journal(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(seq, record)`` from a journal, verifying checksums and contiguity.

    Raises:
        JournalCorrupt: on a bad checksum, a broken sequence or an unparsable line.
    """
    expected = 1
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.decode()
            if not line.endswith("\n"):
                raise JournalCorrupt(f"{path}:{lineno} must end with a newline, was torn")
            try:
                seq_s, crc_s, body = line[:-1].split(" ", 2)
                seq = int(seq_s)
            except ValueError:
                raise JournalCorrupt(f"{path}:{lineno} must be '<seq> <crc> <json>'") from None
            if zlib.crc32(f"{seq} {body}".encode()) != int(crc_s, 16):
                raise JournalCorrupt(f"{path}:{lineno} checksum must match, was {crc_s}")
            if seq != expected:
                raise JournalCorrupt(f"{path}:{lineno} seq must be {expected}, was {seq}")
            expected += 1
            yield seq, json.loads(body)
