"""Run ids of the research jobs: ``<prefix><n>`` with ``n`` the next free number under the
storage path, the folder reserved by ``mkdir`` so two calls never get the same id."""

from __future__ import annotations

import re
from pathlib import Path

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def next_run_id(prefix: str, storage: str | Path) -> str:
    """Return ``<prefix><n>`` with ``n`` one above the highest under ``storage``."""
    root = Path(storage)
    taken = [p.name[len(prefix) :] for p in root.glob(f"{prefix}*")] if root.is_dir() else []
    return f"{prefix}{1 + max((int(n) for n in taken if n.isdigit()), default=0)}"


def reserve_run_dir(prefix: str, storage: str | Path) -> str:
    """Create ``<storage>/<prefix><n>`` for the next free ``n`` and return its name."""
    root = Path(storage)
    root.mkdir(parents=True, exist_ok=True)
    while True:
        run_id = next_run_id(prefix, root)
        try:
            (root / run_id).mkdir()
        except FileExistsError:
            continue
        return run_id
