"""Atomic actor checkpoints: write to a temporary file, fsync, then rename over the old one.

A reader sees either the previous checkpoint or the new one, never a torn file, whatever the
moment the writing process dies. Checkpoints are pickles: they are private to one run, written
and read by the same code, never exchanged.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any


def write_checkpoint(path: str | Path, state: Any) -> None:
    """Replace ``path`` by a pickle of ``state``, atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)


def read_checkpoint(path: str | Path) -> Any | None:
    """Return the state in ``path``, or ``None`` when there is no checkpoint yet."""
    p = Path(path)
    if not p.exists():
        return None
    with open(p, "rb") as fh:
        return pickle.load(fh)  # noqa: S301 - our own file, written by write_checkpoint
