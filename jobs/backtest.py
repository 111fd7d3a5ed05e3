"""Backtest: one replay of the whole topology, then ``report.html`` and ``metrics.json``.

The replay is :func:`cluster.runner.run_pipeline` with ``replay=True`` (real local Ray and
Serve, or the cluster of ``RAY_ADDRESS``). It writes ``<storage>/<run id>/`` (``config.yaml``,
``journal.log``, ``summary.json``); this job then adds, next to the journal:

* ``metrics.json``: total return, Sharpe, Sortino, Calmar, max drawdown, turnover, costs, hit
  rates, order counts, prediction diagnostics and latency, with the annualisation used
  (``annualisation``; definitions in :mod:`jobs.report_html`);
* ``report.html``: one self-contained page (inline SVG, no external assets) with the metrics,
  equity, drawdown, positions, trades on the mid of each symbol, the latency histogram and the
  prediction diagnostics.

The run id defaults to ``backtest-<config hash>-<n>``, ``n`` the next free number under the
storage path: the hash covers the config with this job's overrides (``--events``,
``--duration``, replay), so the id names what was run. Progress goes to stderr.

Example:
    python -m jobs.backtest --config configs/local.yaml --events 50000
    ray job submit --working-dir . -- python -m jobs.backtest --config configs/local.yaml \\
        --duration 120 --storage /data/runs --json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from actors.journal.journal import read_journal
from cluster.config import ConfigError, RaydeskConfig, load_config, parse_config
from jobs import run_ids
from jobs.report_html import build_report
from jobs.run_ids import RUN_ID

PROGRESS_EVERY_S = 2.0


def backtest_config(
    cfg: RaydeskConfig,
    *,
    storage: str | Path | None = None,
    events: int | None = None,
    duration_s: float | None = None,
) -> RaydeskConfig:
    """Return ``cfg`` set up for a backtest: replay on, storage, length.

    Args:
        cfg: The loaded config.
        storage: Where runs are written (``run.runs_dir``); None keeps the config's.
        events: Stop after this many market events (``run.events``).
        duration_s: Simulated seconds (``run.duration_s``); given alone, it clears
            ``run.events`` so that the duration decides.

    Raises:
        ConfigError: an override broke a rule (``run.events must be >= 1``...).
    """
    data = cfg.model_dump(mode="json")
    run = data["run"]
    run["replay"] = True
    if storage is not None:
        run["runs_dir"] = str(storage)
    if duration_s is not None:
        run["duration_s"] = duration_s
        run["events"] = None
    if events is not None:
        run["events"] = events
    return parse_config(data, "command line")


def next_run_id(cfg: RaydeskConfig, storage: str | Path) -> str:
    """Return ``backtest-<config hash>-<n>`` with ``n`` one above the highest under ``storage``."""
    return run_ids.next_run_id(f"backtest-{cfg.hash()}-", storage)


def reserve_run_dir(cfg: RaydeskConfig, storage: str | Path) -> str:
    """Create the folder of the next free backtest run id and return the id (race-free)."""
    return run_ids.reserve_run_dir(f"backtest-{cfg.hash()}-", storage)


class Progress:
    """Progress callback of ``run_pipeline``: a line on stderr every few seconds.

    It keeps the kernel's last :class:`cluster.kernel.RunStats` (``stats``): the kernel calls
    it once more when the loop ends, so after the run ``stats.latencies_ms`` holds the run's
    tick-to-order samples for the latency histogram.

    Args:
        run_id: Shown on every line.
        cfg: The backtest config (its ``run.events`` / ``run.duration_s`` are the target).
        enabled: Print (the samples are kept either way).
        every_s: Seconds between lines.
    """

    def __init__(
        self, run_id: str, cfg: RaydeskConfig, enabled: bool, every_s: float = PROGRESS_EVERY_S
    ) -> None:
        self.run_id = run_id
        self.events = cfg.run.events
        self.duration_s = cfg.run.duration_s
        self.enabled = enabled
        self.every_s = every_s
        self.stats: Any = None
        self._last = 0.0

    def __call__(self, st: Any) -> None:
        self.stats = st
        now = time.perf_counter()
        if self.enabled and now - self._last >= self.every_s:
            self._last = now
            print(self.line(st), file=sys.stderr, flush=True)

    def line(self, st: Any) -> str:
        """One progress line for ``st``."""
        sim_s = (st.sim_now_ns - st.sim_start_ns) / 1e9 if st.sim_start_ns else 0.0
        if self.events is not None:
            done = f"events {st.events:,}/{self.events:,} ({min(st.events / self.events, 1):.0%})"
        else:
            done = f"sim {sim_s:,.1f}/{self.duration_s:g} s ({min(sim_s / self.duration_s, 1):.0%})"
        p50, p99 = st.recent_latency()
        return (
            f"backtest {self.run_id}: {done} orders={st.orders} fills={st.fills} "
            f"denials={sum(st.denials.values())} pnl={st.pnl:.2f} "
            f"tick-to-order p50/p99 ms={p50}/{p99}"
        )


def report_run(
    run_dir: str | Path, latency_samples_ms: Sequence[float] | None = None
) -> dict[str, Any]:
    """Write ``metrics.json`` and ``report.html`` of a finished run; return the metrics.

    Args:
        run_dir: ``<storage>/<run id>`` with ``config.yaml``, ``journal.log`` and (optionally)
            ``summary.json``.
        latency_samples_ms: The run's tick-to-order samples; without them the latency section
            shows the summary's percentiles only.

    Example:
        >>> report_run("runs/backtest-0d5e1c2a9f3b-1")  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    horizons = sorted({1, cfg.models.horizon})
    metrics, page = build_report(
        (rec for _, rec in read_journal(run_dir / "journal.log")),
        cfg.instrument_map(),
        cfg.risk.capital,
        cfg.feed.batch_interval_ms / 1e3,
        run_id=run_dir.name,
        config_hash=summary["config_hash"] if summary else cfg.hash(),
        summary=summary,
        latency_samples_ms=latency_samples_ms,
        horizons_steps=horizons,
    )
    text = json.dumps(metrics, indent=2, allow_nan=False)
    (run_dir / "metrics.json").write_text(text + "\n")
    (run_dir / "report.html").write_text(page)
    return metrics


def _short(m: dict[str, Any], run_dir: Path) -> str:
    def f(v: Any, spec: str) -> str:
        return "–" if v is None else format(v, spec)

    return "\n".join(
        [
            f"run {m['run_id']}  ({m['steps']} steps, {m['sim_seconds']:.1f} simulated s)",
            f"total return {f(m['total_return'], '.4%')}  pnl {m['pnl']:.2f}  "
            f"max drawdown {f(m['max_drawdown'], '.4%')}",
            f"sharpe {f(m['sharpe'], '.2f')}  sortino {f(m['sortino'], '.2f')}  "
            f"calmar {f(m['calmar'], '.2f')}  (annualised: 24/7, step "
            f"{m['annualisation']['step_s']:g} s)",
            f"orders {m['orders']}  fills {m['fills']}  denials {m['denials']}  "
            f"fees {m['fees']:.2f} ({f(m['fees_bps_of_notional'], '.2f')} bps)  "
            f"turnover {f(m['turnover'], '.2f')}",
            f"report  {run_dir / 'report.html'}",
            f"metrics {run_dir / 'metrics.json'}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one backtest and write its report; return the process exit code (2: bad input)."""
    p = argparse.ArgumentParser(prog="python -m jobs.backtest", description=__doc__.split("\n")[0])
    p.add_argument("--config", default=None, help="YAML config (default: configs/local.yaml)")
    p.add_argument("--events", type=int, default=None, help="stop after N market events")
    p.add_argument("--duration", type=float, default=None, help="simulated seconds to run")
    p.add_argument("--storage", default=None, help="where runs go (default: run.runs_dir)")
    p.add_argument("--run-id", default=None, help="default: backtest-<config hash>-<n>")
    p.add_argument("--json", action="store_true", help="print metrics.json to stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    ns = p.parse_args(argv)
    try:
        cfg = backtest_config(
            load_config(ns.config), storage=ns.storage, events=ns.events, duration_s=ns.duration
        )
        storage = Path(cfg.run.runs_dir)
        if ns.run_id is not None and not RUN_ID.match(ns.run_id):
            raise ConfigError(
                "--run-id", [f"run id must match {RUN_ID.pattern}, was {ns.run_id!r}"]
            )
        if ns.run_id is not None and (storage / ns.run_id / "journal.log").exists():
            raise ConfigError(
                "--run-id",
                [f"run id must be new under {storage}, was {ns.run_id!r} (has a journal)"],
            )
    except ConfigError as exc:
        print(f"error: invalid config {exc.source}", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return 2
    from cluster.serve_mode import apply_serve_mode

    apply_serve_mode(cfg)  # before ray.serve is imported and Ray starts
    from cluster.runner import run_pipeline

    run_id = ns.run_id or reserve_run_dir(cfg, storage)
    progress = Progress(run_id, cfg, enabled=cfg.run.progress and not ns.no_progress)
    if progress.enabled:  # Serve's per-request INFO lines would drown the progress lines
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    summary = run_pipeline(cfg, replay=True, progress=progress, run_id=run_id)
    if progress.enabled and progress.stats is not None:
        print(progress.line(progress.stats) + " done", file=sys.stderr, flush=True)
    run_dir = storage / summary["run_id"]
    samples = list(progress.stats.latencies_ms) if progress.stats is not None else None
    metrics = report_run(run_dir, samples)
    if ns.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(_short(metrics, run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
