"""JournalActor: the one writer of the run's local durable journal (thin Ray wrapper)."""

from __future__ import annotations

from typing import Any

from actors.journal.journal import Journal
from cluster.metrics import Metrics


class JournalActor:
    """Appends record batches in the order they are received (one caller: the kernel)."""

    def __init__(self, path: str, fsync: bool) -> None:
        self.journal = Journal(path, fsync=fsync)
        self.metrics = Metrics()

    def append(self, records: list[dict[str, Any]]) -> int:
        """Append records durably; return the last sequence number."""
        seq = self.journal.append(records)
        self.metrics.inc("raydesk_journal_records", len(records))
        return seq

    def close(self) -> int:
        """Flush and close; return the number of records written."""
        self.journal.close()
        return self.journal.seq
