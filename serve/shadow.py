"""Shadow (challenger) predictions logged beside the champion's, as JSON lines.

The ingress of ``serve.app`` queues each batch's champion and shadow probabilities here on
the request path and a background task flushes them to the log (see :class:`ShadowLog`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


class ShadowLog:
    """Buffered JSON-lines log of shadow vs champion predictions, with bounded memory.

    :meth:`add` only queues references to the arrays (cheap on the request path); :meth:`flush`
    formats one line per decision and family and appends them to ``path``::

        {"ts_ns": ..., "decision_id": "d-1", "family": "lgbm", "champion_version": "...",
         "champion_probs": [..3..], "shadow_version": "...", "shadow_probs": [..3..],
         "agree": true}

    At most ``max_rows`` rows wait for a flush; beyond that the oldest are dropped and counted
    in :attr:`dropped` (as are rows lost to a failed write).

    Args:
        path: File to append to (its directory is created on the first flush).
        max_rows: Bound of the rows waiting for a flush.
    """

    def __init__(self, path: str | Path, max_rows: int = 100_000) -> None:
        self.path = Path(path)
        self.max_rows = max(1, int(max_rows))
        self.dropped = 0
        self._pending: deque[tuple[Any, ...]] = deque()
        self._rows = 0
        self._lock = threading.Lock()  # add() on the event loop, flush() in a worker thread
        self._write_lock = threading.Lock()  # flushes append whole batches, in order

    @property
    def pending_rows(self) -> int:
        """Rows waiting for a flush."""
        return self._rows

    def add(
        self,
        ts_ns: int,
        decision_ids: list[str],
        family: str,
        champion: tuple[str, np.ndarray],
        shadow: tuple[str, np.ndarray],
    ) -> None:
        """Queue one batch: champion and shadow ``(version, (N, 3) probs)`` of one family."""
        n = len(decision_ids)
        with self._lock:
            self._pending.append((ts_ns, decision_ids, family, *champion, *shadow))
            self._rows += n
            while self._rows > self.max_rows and len(self._pending) > 1:
                lost = len(self._pending.popleft()[1])
                self._rows -= lost
                self.dropped += lost

    def flush(self) -> int:
        """Append every queued row to the file; return the number of rows written."""
        with self._write_lock:
            with self._lock:
                batch, self._pending, self._rows = self._pending, deque(), 0
            return self._write(batch) if batch else 0

    def _write(self, batch: deque[tuple[Any, ...]]) -> int:
        lines = []
        for ts_ns, ids, family, c_version, c_probs, s_version, s_probs in batch:
            agree = np.argmax(c_probs, axis=1) == np.argmax(s_probs, axis=1)
            for i, decision_id in enumerate(ids):
                row = {
                    "ts_ns": ts_ns,
                    "decision_id": decision_id,
                    "family": family,
                    "champion_version": c_version,
                    "champion_probs": [round(float(p), 6) for p in c_probs[i]],
                    "shadow_version": s_version,
                    "shadow_probs": [round(float(p), 6) for p in s_probs[i]],
                    "agree": bool(agree[i]),
                }
                lines.append(json.dumps(row, separators=(",", ":")))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write("\n".join(lines) + "\n")
        except OSError as exc:
            self.dropped += len(lines)
            logger.warning("shadow log %s lost %d rows: %s", self.path, len(lines), exc)
            return 0
        return len(lines)
