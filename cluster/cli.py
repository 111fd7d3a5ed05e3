"""The ``raydesk`` command line.

Example:
    raydesk run                         # 60 s live on the embedded defaults
    raydesk run --replay --events 50000 # simulated time, as fast as possible
    raydesk config validate configs/local.yaml
    raydesk bench book --json
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from cluster.config import DEFAULT_CONFIG, ConfigError, RaydeskConfig, load_config

if TYPE_CHECKING:
    from serve.registry import ModelRecord, ModelRegistry

app = typer.Typer(add_completion=False, no_args_is_help=True, help="raydesk trading cluster.")
config_app = typer.Typer(no_args_is_help=True, help="Validate and describe configuration.")
models_app = typer.Typer(no_args_is_help=True, help="The model registry.")
app.add_typer(config_app, name="config")
app.add_typer(models_app, name="models")
risk_app = typer.Typer(no_args_is_help=True, help="Portfolio risk models.")
app.add_typer(risk_app, name="risk")
report_app = typer.Typer(no_args_is_help=True, help="Reports on finished runs.")
app.add_typer(report_app, name="report")
feed_app = typer.Typer(no_args_is_help=True, help="The exchange feed server.")
app.add_typer(feed_app, name="feed")

err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="YAML config.", show_default=True)
]


def _load(path: Path) -> RaydeskConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        err.print(f"[bold red]error:[/] invalid config {exc.source}")
        for line in exc.errors:
            err.print(f"  {line}", markup=False, highlight=False)
        raise typer.Exit(2) from None


def _progress_table(st: Any, replay: bool) -> Table:
    import time

    wall = max(time.perf_counter() - st.wall_start, 1e-9)
    t = Table(title="raydesk run" + (" --replay" if replay else ""), show_header=False)
    t.add_column(style="cyan")
    t.add_column(justify="right")
    p50, p99 = st.recent_latency()
    rows = [
        ("sim time s", f"{(st.sim_now_ns - st.sim_start_ns) / 1e9:,.1f}"),
        ("wall s", f"{wall:,.1f}"),
        ("events", f"{st.events:,}"),
        ("events/s", f"{st.events / wall:,.0f}"),
        ("decisions", f"{st.decisions:,}"),
        ("orders", f"{st.orders:,}"),
        ("fills", f"{st.fills:,}"),
        ("denials", ", ".join(f"{k}={v}" for k, v in sorted(st.denials.items())) or "0"),
        ("PnL", f"{st.pnl:,.2f}"),
        ("tick-to-order p50/p99 ms", f"{p50} / {p99}"),
        ("state", st.trading_state),
    ]
    for k, v in rows:
        t.add_row(k, v)
    return t


@app.command()
def run(
    config: ConfigOpt = DEFAULT_CONFIG,
    duration: Annotated[
        float | None, typer.Option(help="Seconds to run (simulated seconds with --replay).")
    ] = None,
    events: Annotated[int | None, typer.Option(help="Stop after N market events.")] = None,
    replay: Annotated[
        bool, typer.Option("--replay", help="Simulated time, as fast as possible.")
    ] = False,
    seed: Annotated[int | None, typer.Option(help="Override simulator.seed.")] = None,
    progress: Annotated[bool, typer.Option(help="Show live progress.")] = True,
    feed: Annotated[
        str | None,
        typer.Option(help="Live Binance-compatible feed ws://HOST:PORT (sets feed.source=ws)."),
    ] = None,
    market: Annotated[
        str | None, typer.Option(help="With --feed: usdm or spot (default: feed.market).")
    ] = None,
) -> None:
    """Run the whole topology and print runs/<run_id>/summary.json."""
    from cluster.serve_mode import apply_serve_mode

    cfg = _load(config)
    apply_serve_mode(cfg)  # before ray.serve is imported and Ray starts
    from cluster.runner import run_pipeline

    try:
        if seed is not None:
            cfg = cfg.with_overrides(simulator={"seed": seed})
        if feed is not None:  # the configured symbols Binance lists, with Binance's filters
            from pydantic import ValidationError as PydanticError

            from actors.feed.binance import KNOWN_INSTRUMENTS

            mk = market or cfg.feed.market
            data = cfg.model_dump(mode="json")
            known = [i for i in data["instruments"] if (mk, i["symbol"]) in KNOWN_INSTRUMENTS]
            if not known:
                syms = sorted(s for m, s in KNOWN_INSTRUMENTS if m == mk)
                raise ConfigError("--feed", [f"instruments must include one of {syms}, was "
                                             f"{[i['symbol'] for i in data['instruments']]}"])
            for i in known:
                i["tick_size"], i["lot_size"] = KNOWN_INSTRUMENTS[(mk, i["symbol"])]
                i["venue"] = f"BINANCE-{mk.upper()}"
            data["instruments"] = known
            data["feed"] = {**data["feed"], "source": "ws", "url": feed, "market": mk}
            try:
                cfg = RaydeskConfig.model_validate(data)
            except PydanticError as exc:
                raise ConfigError("--feed", [
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
                ]) from None
        if duration is not None and duration <= 0:
            raise ConfigError("--duration", [f"duration must be > 0, was {duration!r}"])
        if events is not None and events <= 0:
            raise ConfigError("--events", [f"events must be > 0, was {events!r}"])
    except ConfigError as exc:
        for line in exc.errors:
            err.print(f"error: {line}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    replay = replay or cfg.run.replay
    show = progress and cfg.run.progress
    if show:  # Serve's per-request INFO lines would scroll the progress view away
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    if show and sys.stderr.isatty():
        with Live(console=err, refresh_per_second=4) as live:
            summary = run_pipeline(
                cfg, replay=replay, duration_s=duration, events=events,
                progress=lambda st: live.update(_progress_table(st, replay)),
            )
    elif show:
        last = [0.0]

        def plain(st: Any) -> None:
            import time

            now = time.perf_counter()
            if now - last[0] >= 5:
                last[0] = now
                wall = max(now - st.wall_start, 1e-9)
                p50, p99 = st.recent_latency()
                err.print(
                    f"events={st.events} events/s={st.events / wall:.0f} orders={st.orders} "
                    f"fills={st.fills} denials={sum(st.denials.values())} pnl={st.pnl:.2f} "
                    f"tick-to-order p50/p99 ms={p50}/{p99}",
                    markup=False, highlight=False,
                )

        summary = run_pipeline(cfg, replay=replay, duration_s=duration, events=events,
                               progress=plain)
    else:
        summary = run_pipeline(cfg, replay=replay, duration_s=duration, events=events)
    print(json.dumps(summary, indent=2))


@app.command("replay", context_settings={"allow_extra_args": True})
def replay_cmd(
    ctx: typer.Context,
    fmt: Annotated[
        str, typer.Option("--format", help="binance | tardis | databento | lobster | sim")
    ] = "binance",
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            help="Recording file(s) of one session, in order: --data A B C (or repeated).",
        ),
    ] = None,
    book_out: Annotated[
        Path | None, typer.Option("--book-out", help="Write the final books here as JSON.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Simulated seconds (--format sim).")
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Replay recorded market data through the SymbolActors; optionally write the books."""
    from cluster.replay import FORMATS, replay

    cfg = _load(config)
    # --data A B C: click keeps the first value; the rest arrive as extra arguments
    paths = list(data or []) + [Path(a) for a in ctx.args]
    if fmt not in FORMATS:
        err.print(f"error: --format must be one of {list(FORMATS)}, was {fmt!r}", markup=False)
        raise typer.Exit(2)
    if fmt != "sim" and not paths:
        err.print(f"error: --data must name at least one file for --format {fmt}, was none",
                  markup=False)
        raise typer.Exit(2)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        err.print(f"error: --data must name readable files, was {missing}", markup=False)
        raise typer.Exit(2)
    try:
        summary = replay(cfg, fmt, paths, book_out, duration)
    except ValueError as exc:  # ValidationError from a loader: names field, rule and value
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    print(json.dumps(summary, indent=2))


@feed_app.command("serve", context_settings={"allow_extra_args": True})
def feed_serve(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port (WebSocket + REST + control).")] = 9443,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    source: Annotated[str, typer.Option(help="sim | binance")] = "sim",
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", help="Recording file(s) (--source binance): --data A B C."),
    ] = None,
    speed: Annotated[float, typer.Option(help="Pace x recorded/simulated time; 0 = max.")] = 1.0,
    faults: Annotated[Path | None, typer.Option(help="Scheduled faults (YAML).")] = None,
    stamp: Annotated[bool, typer.Option(help="Add _sent_ns to combined envelopes.")] = False,
    wait_clients: Annotated[int, typer.Option(help="Start once N clients connect.")] = 1,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Serve market data in Binance's protocol (see actors/feed/server.py)."""
    import asyncio

    from actors.feed.server import FaultsConfig, FeedServer, SimSource
    from actors.feed.wire import BinanceReplaySource

    paths = list(data or []) + [Path(a) for a in ctx.args]
    if source not in ("sim", "binance") or (source == "binance" and not paths):
        err.print(f"error: --source must be sim or binance (with --data), was {source!r} "
                  f"with {len(paths)} files", markup=False)
        raise typer.Exit(2)
    try:
        src = SimSource(_load(config)) if source == "sim" else BinanceReplaySource(paths)
        fc = FaultsConfig.load(faults) if faults else None
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    srv = FeedServer(src, host=host, port=port, speed=speed, faults=fc, stamp=stamp,
                     wait_clients=wait_clients)

    async def main() -> None:
        await srv.start()
        err.print(f"feed serve: ws://{host}:{srv.port} ({source}, speed {speed})", markup=False)
        try:
            await asyncio.Event().wait()
        finally:
            await srv.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@config_app.command("validate")
def config_validate(path: Annotated[Path, typer.Argument(help="YAML config to check.")]) -> None:
    """Validate a config file; exit non-zero naming each bad field, rule and value."""
    cfg = _load(path)
    print(f"ok: {path} (config hash {cfg.hash()}, {len(cfg.instruments)} instruments)")


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of the config."""
    print(json.dumps(RaydeskConfig.model_json_schema(), indent=2))


@config_app.command("docs")
def config_docs() -> None:
    """Print every config field as Markdown (docs/configuration.md)."""
    from cluster.config import config_markdown

    print(config_markdown(), end="")


@contextlib.contextmanager
def _registry_errors() -> Iterator[None]:
    """Turn registry errors (unknown family / version, nothing to roll back) into exit 2."""
    from serve.registry import RegistryError

    try:
        yield
    except (RegistryError, ValueError) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None


def _family_registry(config: Path, family: str) -> ModelRegistry:
    """Return the configured registry after checking that ``family`` has saved versions."""
    from serve.registry import ModelRegistry, RegistryError

    reg = ModelRegistry(_load(config).models.registry_path)
    known = reg.families()
    if family not in known:
        raise RegistryError(f"family must be one of {known} in {reg.root}, was {family!r}")
    return reg


def _version_of(rec: ModelRecord | None) -> str | None:
    return rec.version if rec is not None else None


FamilyArg = Annotated[
    str, typer.Argument(help="Model family (lgbm, xgboost, gru, deeplob, transformer).")
]


@risk_app.command("backtest")
def risk_backtest(
    config: ConfigOpt = DEFAULT_CONFIG,
    alpha: Annotated[float, typer.Option(help="VaR confidence level.")] = 0.99,
    window: Annotated[int, typer.Option(help="Periods of history per VaR estimate.")] = 250,
    sim_seconds: Annotated[
        float, typer.Option(help="Simulated seconds of the simulator series (0 = none).")
    ] = 900.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Backtest the VaR models (Kupiec, Christoffersen, Basel light) on the recorded Binance
    sessions' and the simulator's mid returns."""
    from jobs.risk_backtest import main as backtest_main

    argv = ["--config", str(config), "--alpha", str(alpha), "--window", str(window),
            "--sim-seconds", str(sim_seconds)] + (["--json"] if as_json else [])
    raise typer.Exit(backtest_main(argv))


AddressOpt = Annotated[
    str, typer.Option("--address", help="Ray cluster address of the running topology.")
]
RunIdOpt = Annotated[
    str | None, typer.Option("--run-id", help="Run id (default: the only running one).")
]


def _risk_actor(config: Path, address: str, run_id: str | None) -> tuple[RaydeskConfig, Any]:
    from cluster.risk_ops import find_risk_actor

    cfg = _load(config)
    try:
        return cfg, find_risk_actor(cfg, address, run_id)
    except (LookupError, ConnectionError) as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None


@risk_app.command("status")
def risk_status(
    config: ConfigOpt = DEFAULT_CONFIG, address: AddressOpt = "auto", run_id: RunIdOpt = None
) -> None:
    """Print the running risk actor's state, PnL, drawdown, exposure, VaR/ES and counters."""
    from cluster.risk_ops import call

    _, actor = _risk_actor(config, address, run_id)
    print(json.dumps(call(actor, "status"), indent=2, sort_keys=True))


@risk_app.command("halt")
def risk_halt(
    reason: Annotated[str, typer.Argument(help="Why (recorded as MANUAL:<reason>).")],
    config: ConfigOpt = DEFAULT_CONFIG, address: AddressOpt = "auto", run_id: RunIdOpt = None,
) -> None:
    """Halt trading now (no token needed: stopping is always allowed)."""
    from cluster.risk_ops import call

    _, actor = _risk_actor(config, address, run_id)
    print(json.dumps(call(actor, "halt", reason), sort_keys=True))


@risk_app.command("rearm")
def risk_rearm(
    operator: Annotated[str, typer.Option("--operator", help="Who re-arms (recorded).")],
    config: ConfigOpt = DEFAULT_CONFIG, address: AddressOpt = "auto", run_id: RunIdOpt = None,
) -> None:
    """Re-arm trading after a kill-switch trip. The token is read from the environment
    variable named by ``risk.rearm_token_env`` (default RAYDESK_REARM_TOKEN), or prompted for;
    the risk actor compares it with its own copy of that variable."""
    import os

    from actors.risk.engine import RearmRefused
    from cluster.risk_ops import call

    cfg, actor = _risk_actor(config, address, run_id)
    token = os.environ.get(cfg.risk.rearm_token_env)
    if not token:
        if not sys.stdin.isatty():
            err.print(f"[bold red]error:[/] {cfg.risk.rearm_token_env} must be set, was unset")
            raise typer.Exit(2)
        token = typer.prompt("re-arm token", hide_input=True)
    try:
        print(json.dumps(call(actor, "rearm", operator, token), sort_keys=True))
    except (RearmRefused, PermissionError) as exc:
        err.print(f"[bold red]refused:[/] {exc}")
        raise typer.Exit(3) from None
    except ValueError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None


@app.command()
def backtest(
    config: ConfigOpt = DEFAULT_CONFIG,
    events: Annotated[int | None, typer.Option(help="Stop after N market events.")] = None,
    duration: Annotated[
        float | None, typer.Option(help="Simulated seconds to run.")
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="Where runs go (default: run.runs_dir).")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Default: backtest-<config hash>-<n>.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics.json.")] = False,
) -> None:
    """One replay, then runs/<id>/report.html and metrics.json (``python -m jobs.backtest``)."""
    from jobs.backtest import main as backtest_main

    argv = ["--config", str(config)]
    for flag, value in (("--events", events), ("--duration", duration),
                        ("--storage", storage), ("--run-id", run_id)):
        if value is not None:
            argv += [flag, str(value)]
    raise typer.Exit(backtest_main(argv + (["--json"] if as_json else [])))


@report_app.command("backtest")
def report_backtest(
    run_id: Annotated[str, typer.Argument(help="Run id (a folder under run.runs_dir).")],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Re-render report.html and metrics.json of a finished run (no Ray needed)."""
    from jobs.backtest import report_run

    cfg = _load(config)
    run_dir = Path(cfg.run.runs_dir) / run_id
    if not (run_dir / "journal.log").exists():
        err.print(f"[bold red]error:[/] run_id must name a run with journal.log under "
                  f"{cfg.run.runs_dir}, was {run_id!r}")
        raise typer.Exit(2)
    report_run(run_dir)
    print(run_dir / "report.html")


@report_app.command("executions")
def report_executions(
    run_id: Annotated[str, typer.Argument(help="Run id (a folder under run.runs_dir).")],
    config: ConfigOpt = DEFAULT_CONFIG,
    horizons: Annotated[
        str, typer.Option(help="Markout horizons, seconds, comma-separated.")
    ] = "1,10,60",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Slippage, implementation shortfall, fill ratio and markouts of a run's orders, per
    symbol and per model version, from its journal (``actors/execution/analytics.py``)."""
    from actors.execution.analytics import execution_report
    from actors.journal.journal import JournalCorrupt, read_journal

    cfg = _load(config)
    run_dir = Path(cfg.run.runs_dir) / run_id
    journal, run_cfg = run_dir / "journal.log", run_dir / "config.yaml"
    if not journal.exists() or not run_cfg.exists():
        err.print(f"[bold red]error:[/] run_id must name a run with journal.log and config.yaml "
                  f"under {cfg.run.runs_dir}, was {run_id!r}")
        raise typer.Exit(2)
    try:
        hs = [float(h) for h in horizons.split(",") if h.strip()]
    except ValueError:
        err.print(f"[bold red]error:[/] horizons must be numbers, was {horizons!r}")
        raise typer.Exit(2) from None
    try:
        rep = execution_report(
            (r for _, r in read_journal(journal)), _load(run_cfg).instrument_map(), hs
        )
    except JournalCorrupt as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    rep["run_id"] = run_id
    if as_json:
        print(json.dumps(rep, indent=2))
        return
    table = Table(title=f"executions of {run_id} (bps; slippage/shortfall + = cost, "
                  "markout + = good)")
    cols = ["orders", "denied", "fills", "fill_ratio", "slippage_bps",
            "implementation_shortfall_bps"]
    table.add_column("group")
    for c in cols + [f"markout {h:g}s" for h in hs]:
        table.add_column(c, justify="right")
    groups = [("total", rep["total"])] + list(rep["by_symbol"].items()) + [
        (f"model {m}", v) for m, v in rep["by_model"].items()]
    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    for name, row in groups:
        table.add_row(name, *[cell(row[c]) for c in cols],
                      *[cell(row["markout_bps"][f"{h:g}s"]) for h in hs])
    Console().print(table)


@models_app.command("list")
def models_list(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """List model versions in the registry (``*`` marks production, ``~`` the shadow), then
    the ensemble weights fitted at the last training."""
    from serve.registry import ModelRegistry

    cfg = _load(config)
    reg = ModelRegistry(cfg.models.registry_path)
    for rec in reg.list():
        with _registry_errors():
            prod = _version_of(reg.production(rec.family))
            shadow = _version_of(reg.shadow(rec.family))
        mark = "*" if prod == rec.version else "~" if shadow == rec.version else " "
        print(f"{mark} {rec.family:11s} {rec.version}  {json.dumps(rec.metrics, sort_keys=True)}")
    with _registry_errors():
        fitted = reg.ensemble()
    if fitted:
        print(f"ensemble weights (fitted {fitted.get('updated_at')}): "
              f"{json.dumps(fitted.get('weights', {}), sort_keys=True)}")


@models_app.command("show")
def models_show(
    family: FamilyArg,
    version: Annotated[
        str | None, typer.Argument(help="Version (default: the production version).")
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show one version's metadata: metrics, feature spec, data span, code, params, files."""
    with _registry_errors():
        reg = _family_registry(config, family)
        prod, shadow = reg.production(family), reg.shadow(family)
        if version is None and prod is None:
            known = [r.version for r in reg.list(family)]
            err.print(f"error: {family} must have a production version to show, was none; "
                      f"name a version (known: {known})", markup=False, highlight=False)
            raise typer.Exit(2)
        rec = reg.get(family, version) if version is not None else prod
        assert rec is not None
        info = {
            **rec.to_dict(),
            "production": rec.version == _version_of(prod),
            "shadow": rec.version == _version_of(shadow),
            "production_history": reg.production_history(family),
        }
    if as_json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return
    roles = [r for r in ("production", "shadow") if info[r]]
    code = rec.code_version
    print(f"{rec.family} {rec.version}" + (f"  ({', '.join(roles)})" if roles else ""))
    rows = [
        ("created", rec.created_at),
        ("metrics", json.dumps(rec.metrics, sort_keys=True)),
        ("feature spec", rec.feature_spec_hash or "-"),
        ("features", ", ".join(rec.feature_names) or "-"),
        ("data span", " .. ".join(info["data_span"])),
        ("code", f"{code.get('package')} (git {code.get('git_sha') or 'unknown'})"),
        ("params", json.dumps(rec.params, sort_keys=True)),
        ("files", ", ".join(rec.files)),
        ("path", str(rec.path)),
    ]
    for k, v in rows:
        print(f"  {k:13s} {v}")


@models_app.command("promote")
def models_promote(
    family: FamilyArg,
    version: Annotated[str, typer.Argument(help="Version to make production.")],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Make VERSION production; replicas that follow production hot-swap to it."""
    with _registry_errors():
        reg = _family_registry(config, family)
        before = _version_of(reg.production(family))
        rec = reg.promote(family, version)
    print(f"{family}: production {rec.version} (was {before})")


@models_app.command("rollback")
def models_rollback(family: FamilyArg, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Restore the previous production version of FAMILY."""
    with _registry_errors():
        reg = _family_registry(config, family)
        before = _version_of(reg.production(family))
        rec = reg.rollback(family)
    print(f"{family}: production {rec.version} (rolled back from {before})")


@models_app.command("shadow")
def models_shadow(
    family: FamilyArg,
    version: Annotated[
        str | None, typer.Argument(help="Version to run in shadow beside production.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Stop the shadow.")] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Run VERSION in shadow (predicted and logged, never acted on), or --clear it."""
    if (version is None) == (not clear):
        err.print("error: shadow must be given a VERSION or --clear (one of them), was "
                  f"version={version!r} clear={clear}", markup=False, highlight=False)
        raise typer.Exit(2)
    with _registry_errors():
        reg = _family_registry(config, family)
        if clear:
            print(f"{family}: shadow cleared (was {reg.clear_shadow(family)})")
            return
        assert version is not None
        rec = reg.set_shadow(family, version)
    print(f"{family}: shadow {rec.version} (production {_version_of(reg.production(family))})")


@models_app.command("train")
def models_train(
    config: ConfigOpt = DEFAULT_CONFIG,
    force: Annotated[bool, typer.Option(help="Train even if production models exist.")] = False,
) -> None:
    """Train the ensemble's models on simulator data and promote them."""
    from serve.training import ensure_models, train_models

    cfg = _load(config)
    recs = train_models(cfg) if force else ensure_models(cfg)
    print(json.dumps({k: v.version for k, v in recs.items()}, indent=2))


@app.command()
def bench(
    name: Annotated[
        str,
        typer.Argument(
            help="Benchmark: book | simulator | replay | feed | inference | risk | execution "
            "| sweep."
        ),
    ],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Run a benchmark and print its results."""
    from cluster.serve_mode import apply_serve_mode

    cfg = _load(config)
    apply_serve_mode(cfg)  # Serve benchmarks measure the mode raydesk run uses
    from jobs.bench import BENCHMARKS

    if name not in BENCHMARKS:
        err.print(f"error: name must be one of {sorted(BENCHMARKS)}, was {name!r}")
        raise typer.Exit(2)
    result = BENCHMARKS[name](cfg)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:28s} {v}")


@app.command("status")
def status_cmd(
    config: ConfigOpt = DEFAULT_CONFIG,
    address: Annotated[
        str | None,
        typer.Option("--address", help="Ray cluster address (default: RAY_ADDRESS, else auto)."),
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Only this run (default: every run found).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Longest wait for any one answer, s.")] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the health of a running topology: actors, Serve app, feed, books, trading state.

    Exit 0 when healthy, 1 when something needs looking at (listed), 2 without a cluster.
    """
    import ray

    from cluster.status import collect_status, connect, default_address, render

    cfg = _load(config)
    try:
        owns = connect(address or default_address(), cfg.ray.namespace)
    except ConnectionError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    try:
        status = collect_status(cfg.ray.namespace, run_id, timeout)
    finally:
        if owns:
            ray.shutdown()
    if as_json:
        print(json.dumps(status, indent=2, sort_keys=True, default=str))
    else:
        render(status, Console(soft_wrap=True))
    if not status["healthy"]:
        raise typer.Exit(1)


@models_app.command("drift")
def models_drift(
    journal: Annotated[
        Path | None, typer.Option(help="A run's journal.log: accuracy decay of served decisions.")
    ] = None,
    features: Annotated[
        Path | None, typer.Option(help="A features.parquet (jobs.build_dataset): feature shift.")
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check the production models for drift, as ``python -m jobs.retrain --if-drift`` does.

    Thresholds are the ``retrain`` config section. Exit 0 without drift, 1 with drift (the
    reasons are listed), 2 on bad input.
    """
    from jobs.retrain import drift_check

    cfg = _load(config)
    try:
        report = drift_check(cfg, journal=journal, features=features)
    except ConfigError as exc:
        err.print(f"[bold red]error:[/] invalid {exc.source}")
        for line in exc.errors:
            err.print(f"  {line}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        print("drift" if report.drift else "no drift")
        for line in report.reasons:
            print(f"  {line}")
        for line in report.skipped:
            print(f"  skipped: {line}")
    if report.drift:
        raise typer.Exit(1)

def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
