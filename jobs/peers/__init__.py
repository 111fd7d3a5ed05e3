"""Peer benchmarks: other engines measured on the same rows in the same run.

NautilusTrader (``nautilus_trader`` on PyPI) needs pandas < 3, so it cannot share raydesk's venv;
it lives in its own venv (``<repo>/.venv-nautilus``, or the interpreter named by
``$RAYDESK_NAUTILUS_PYTHON``) and runs :mod:`jobs.peers.nautilus_book` as a subprocess on rows
exported to an ``.npz``. Nothing here imports NautilusTrader.

Example:
    >>> peer = run_nautilus_book(rows, "0.1", "0.001")  # MD_DTYPE rows of one symbol
    >>> peer["apply_deltas_per_s"]  # or peer == {"skipped": why} / {"error": stderr tail}
    5363946
    >>> book_mismatches(peer, reference_book(rows, peer["size_precision"]))
    []
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from actors.core.batch import CLEAR, DELTA, KIND_NAMES, SNAPSHOT, TRADE
from actors.core.errors import ValidationError
from actors.core.instruments import format_decimal, to_decimal

NAUTILUS_VENV_ENV = "RAYDESK_NAUTILUS_PYTHON"
REPO_ROOT = Path(__file__).resolve().parents[2]
NAUTILUS_VENV = REPO_ROOT / ".venv-nautilus"
NAUTILUS_SCRIPT = Path(__file__).resolve().with_name("nautilus_book.py")
SETUP_COMMAND = (
    'python3 -m venv .venv-nautilus && .venv-nautilus/bin/pip install nautilus_trader "pandas<3" '
    "numpy"
)
# the columns an export holds (each as a plain array), plus the tick_size and lot_size strings
EXPORT_COLUMNS = ("side", "price", "size", "flags", "kind", "seq", "ts_event", "ts_init")
BOOK_KINDS = (DELTA, SNAPSHOT, CLEAR)


def nautilus_python() -> Path | None:
    """Return the interpreter of the NautilusTrader venv, or None when there is none.

    ``$RAYDESK_NAUTILUS_PYTHON`` when set (taken as given), else
    ``<repo>/.venv-nautilus/bin/python`` when it exists.
    """
    env = os.environ.get(NAUTILUS_VENV_ENV)
    if env:
        return Path(env)
    py = NAUTILUS_VENV / "bin" / "python"
    return py if py.exists() else None


def book_rows(rows: np.ndarray) -> np.ndarray:
    """Return the book rows (delta, snapshot, clear) of ``rows``; trades are dropped.

    Raises:
        ValidationError: on market-by-order rows (an L2 peer book cannot take them).
    """
    kind = rows["kind"]
    keep = np.isin(kind, BOOK_KINDS)
    bad = ~keep & (kind != TRADE)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValidationError(
            f"rows.kind[{i}]",
            "delta, snapshot, clear or trade for an L2 peer book",
            KIND_NAMES.get(int(kind[i]), int(kind[i])),
        )
    return rows[keep]


def _step(name: str, value: str) -> str:
    d = to_decimal(name, value)
    if d <= 0:
        raise ValidationError(name, "> 0", value)
    return format_decimal(d)


def export_deltas(path: Path, rows: np.ndarray, tick_size: str, lot_size: str) -> None:
    """Write the book rows of ``rows`` to ``path`` (``.npz``) for a peer process.

    Args:
        path: Output file (numpy adds ``.npz`` when the name lacks it).
        rows: :data:`~actors.core.batch.MD_DTYPE` rows of one instrument, in arrival order.
        tick_size: Instrument tick size as a decimal string (``price`` is in ticks of it).
        lot_size: Instrument lot size as a decimal string.

    The file holds one plain array per column of :data:`EXPORT_COLUMNS` (``price`` int64 ticks,
    ``size`` float64 units, ``flags``/``kind``/``side`` uint8, ``seq``/``ts_*`` int64) and the
    0-d string arrays ``tick_size`` and ``lot_size``; it loads with ``allow_pickle=False``.

    Example:
        >>> export_deltas(Path("/tmp/btc.npz"), rows, "0.1", "0.001")
    """
    tick, lot = _step("tick_size", tick_size), _step("lot_size", lot_size)
    br = book_rows(rows)
    cols = {c: np.ascontiguousarray(br[c]) for c in EXPORT_COLUMNS}
    np.savez(path, **cols, tick_size=np.str_(tick), lot_size=np.str_(lot))


def _tail(text: str, n: int = 2000) -> str:
    return text[-n:].strip()


def run_nautilus_book(
    rows: np.ndarray,
    tick_size: str,
    lot_size: str,
    python: Path | None = None,
    repeats: int = 3,
    timeout_s: float = 600,
) -> dict[str, Any]:
    """Measure NautilusTrader's ``L2_MBP`` order book on ``rows`` in a subprocess.

    Returns:
        The peer's JSON object (see :func:`jobs.peers.nautilus_book.main`: ``create_s``,
        ``apply_s``, ``apply_deltas_per_s``, ``create_and_apply_deltas_per_s``, ``best_bid``,
        ``best_ask``, level counts and a book digest); ``{"skipped": reason}`` when no
        NautilusTrader interpreter is found; ``{"error": stderr tail}`` when the peer fails.
        Peer failures never raise.

    Example:
        >>> run_nautilus_book(rows, "0.1", "0.001", repeats=1)["apply_deltas_per_s"]
        4000000
    """
    py = python or nautilus_python()
    if py is None:
        return {
            "skipped": (
                f"no NautilusTrader venv: set ${NAUTILUS_VENV_ENV} or run, in {REPO_ROOT}: "
                f"{SETUP_COMMAND}"
            )
        }
    with tempfile.TemporaryDirectory(prefix="raydesk-peer-") as tmp:
        data = Path(tmp) / "book.npz"
        export_deltas(data, rows, tick_size, lot_size)
        cmd = [str(py), str(NAUTILUS_SCRIPT), str(data), "--repeats", str(int(repeats))]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"error": f"nautilus peer must finish within {timeout_s} s, was killed"}
        except OSError as exc:
            return {"error": f"nautilus peer could not start ({py}): {exc}"}
    if proc.returncode != 0:
        return {"error": f"nautilus peer exited {proc.returncode}: {_tail(proc.stderr)}"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    try:
        out = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"nautilus peer must print one JSON object, was {_tail(proc.stdout)!r}"}
    if not isinstance(out, dict):
        return {"error": f"nautilus peer must print one JSON object, was {out!r}"}
    return out


def reference_book(rows: np.ndarray, size_precision: int) -> dict[str, Any]:
    """Rebuild raydesk's reference book (``L2Book`` + ``apply_rows``) and describe it.

    Args:
        rows: The rows given to the peer.
        size_precision: Decimals of the size units to sum (the peer's ``size_precision``).

    Returns the same keys the peer reports about its final book: ``best_bid_ticks``,
    ``best_ask_ticks``, ``bid_levels``, ``ask_levels``, ``{bid,ask}_ticks_sum`` (level prices in
    ticks) and ``{bid,ask}_size_units`` (level sizes in units of ``10**-size_precision``).
    """
    from actors.book.book import L2Book, apply_rows

    book = L2Book()
    for _ in apply_rows(book, rows):
        pass
    scale = 10.0**size_precision
    out: dict[str, Any] = {}
    for name, levels, best in (
        ("bid", book.bids, book.best_bid),
        ("ask", book.asks, book.best_ask),
    ):
        out[f"best_{name}_ticks"] = best
        out[f"{name}_levels"] = len(levels)
        out[f"{name}_ticks_sum"] = int(sum(levels))
        out[f"{name}_size_units"] = int(sum(round(s * scale) for s in levels.values()))
    return out


def book_mismatches(peer: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """Return ``"key: peer X != raydesk Y"`` for each final-book figure that differs."""
    return [
        f"{k}: peer {peer.get(k)!r} != raydesk {v!r}"
        for k, v in reference.items()
        if peer.get(k) != v
    ]
