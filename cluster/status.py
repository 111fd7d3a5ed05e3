"""``raydesk status``: the health of a running topology, asked of the cluster itself.

A run's actors are the named actors ``<role>-<run_id>`` of the config's Ray namespace
(``cluster/topology.py``): ``feed``, ``symbol-<symbol>``, ``journal``, ``execution`` and
``risk``. For each run found (a ``risk-<run_id>`` actor) this module pings every actor, then
asks the feed for its live client's counters, each symbol actor for its book's health, the risk
actor for the trading state and the journal for its sinks; and Serve for the ensemble
application's status. Every call has a timeout: an actor that does not answer is reported, not
waited for.

Example:
    >>> connect("auto", "raydesk")
    >>> status = collect_status("raydesk")
    >>> problems(status)
    []
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from rich.console import Console
from rich.table import Table

RISK_PREFIX = "risk-"
SERVE_APP_NAME = "raydesk-ensemble"  # cluster.topology.SERVE_APP_NAME (no Ray import here)
FIXED_ROLES = ("feed", "journal", "execution", "risk")
SYMBOL_PREFIX = "symbol-"
ALIVE, UNRESPONSIVE, DEAD = "ALIVE", "UNRESPONSIVE", "DEAD"


def default_address() -> str:
    """``RAY_ADDRESS`` when set, else ``auto`` (the cluster this node belongs to)."""
    return os.environ.get("RAY_ADDRESS") or "auto"


def connect(address: str, namespace: str) -> bool:
    """Connect to the cluster at ``address`` unless Ray is already initialised.

    Returns:
        True when this call connected (the caller should ``ray.shutdown()`` when done).

    Raises:
        ConnectionError: no cluster at ``address``.
    """
    import ray

    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, namespace=namespace, log_to_driver=False,
                 logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConnectionError(
            f"address must reach a running Ray cluster, was {address!r} ({exc})"
        ) from None
    return True


def find_runs(namespace: str) -> dict[str, dict[str, str]]:
    """Return ``{run_id: {role: actor name}}`` of the runs whose actors are in ``namespace``.

    A run is identified by its risk actor; the symbol actors' roles are ``symbol-<symbol>``.
    """
    import ray

    names = sorted(
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == namespace
    )
    runs: dict[str, dict[str, str]] = {}
    for name in names:
        if name.startswith(RISK_PREFIX):
            runs[name[len(RISK_PREFIX):]] = {}
    for run_id, roles in runs.items():
        suffix = f"-{run_id}"
        for name in names:
            if not name.endswith(suffix):
                continue
            role = name[: -len(suffix)]
            if role in FIXED_ROLES or role.startswith(SYMBOL_PREFIX):
                roles[role] = name
    return runs


def _ping(handles: dict[str, Any], timeout_s: float) -> dict[str, dict[str, Any]]:
    """Ping every actor at once; return ``{name: {"state", "ping_ms", "error"}}``."""
    import ray

    t0 = time.perf_counter()
    refs = {h.__ray_ready__.remote(): name for name, h in handles.items()}
    answered: dict[Any, float] = {}
    pending = list(refs)
    while pending:
        left = timeout_s - (time.perf_counter() - t0)
        if left <= 0:
            break
        done, pending = ray.wait(pending, num_returns=1, timeout=left)
        if not done:
            break
        answered[done[0]] = (time.perf_counter() - t0) * 1e3
    out: dict[str, dict[str, Any]] = {}
    for ref, name in refs.items():
        if ref not in answered:
            out[name] = {"state": UNRESPONSIVE, "ping_ms": None,
                         "error": f"no answer within {timeout_s:g} s"}
            continue
        try:
            ray.get(ref)
            out[name] = {"state": ALIVE, "ping_ms": round(answered[ref], 1), "error": None}
        except ray.exceptions.RayError as exc:
            out[name] = {"state": DEAD, "ping_ms": None, "error": str(exc).splitlines()[0]}
    return out


def _call(handle: Any, method: str, timeout_s: float) -> tuple[Any, str | None]:
    """Return ``(result, None)`` or ``(None, error)`` of one actor call."""
    import ray

    try:
        return ray.get(getattr(handle, method).remote(), timeout=timeout_s), None
    except ray.exceptions.GetTimeoutError:
        return None, f"{method} did not answer within {timeout_s:g} s"
    except ray.exceptions.RayError as exc:
        return None, f"{method} failed: {str(exc).splitlines()[0]}"


def _run_status(run_id: str, roles: dict[str, str], namespace: str,
                timeout_s: float) -> dict[str, Any]:
    import ray

    handles = {}
    for name in roles.values():
        with contextlib.suppress(ValueError):  # gone between the listing and now
            handles[name] = ray.get_actor(name, namespace=namespace)
    pings = _ping(handles, timeout_s) if handles else {}
    actors = [
        {"role": role, "name": name,
         **pings.get(name, {"state": DEAD, "ping_ms": None, "error": "not found"})}
        for role, name in sorted(roles.items())
    ]
    alive = {a["role"]: handles[a["name"]] for a in actors if a["state"] == ALIVE}
    run: dict[str, Any] = {"run_id": run_id, "actors": actors, "errors": []}

    def ask(role: str, method: str) -> Any:
        if role not in alive:
            return None
        result, error = _call(alive[role], method, timeout_s)
        if error:
            run["errors"].append(f"{role}: {error}")
        return result

    run["trading"] = ask("risk", "status")
    feed = ask("feed", "feed_stats")
    run["feed"] = None if feed is None else ({"source": "ws", **feed} if feed
                                             else {"source": "sim"})
    books = {}
    for role in sorted(r for r in alive if r.startswith(SYMBOL_PREFIX)):
        book = ask(role, "barrier")
        if book is not None:
            books[book["symbol"]] = {k: v for k, v in book.items() if k != "symbol"}
    run["books"] = books
    run["journal"] = ask("journal", "stats")
    return run


def _serve_status() -> dict[str, Any]:
    from ray import serve

    try:
        st = serve.status()
    except Exception as exc:  # noqa: BLE001 - reported, never fatal
        return {"error": f"serve.status failed: {exc}", "applications": {}, "proxies": {}}
    apps = {}
    for name, app in st.applications.items():
        apps[name] = {
            "status": str(app.status.value),
            "message": app.message,
            "deployments": {
                d: {"status": str(dep.status.value), "message": dep.message,
                    "replicas": {str(getattr(k, "value", k)): n
                                 for k, n in dep.replica_states.items()}}
                for d, dep in app.deployments.items()
            },
        }
    proxies = {node[:12]: str(getattr(p, "value", p)) for node, p in st.proxies.items()}
    return {"applications": apps, "proxies": proxies}


def collect_status(
    namespace: str, run_id: str | None = None, timeout_s: float = 5.0
) -> dict[str, Any]:
    """Collect the health of every run in ``namespace`` (or of ``run_id``) and of Serve.

    Ray must be connected (:func:`connect`).

    Args:
        namespace: The config's Ray namespace (``ray.namespace``).
        run_id: Only this run (default: every run found).
        timeout_s: Longest wait for any one answer.

    Returns:
        ``{"namespace", "runs": [{"run_id", "actors", "trading", "feed", "books", "journal",
        "errors"}], "serve": {"applications", "proxies"}, "problems": [str], "healthy"}``.
    """
    runs = find_runs(namespace)
    if run_id is not None:
        runs = {run_id: runs[run_id]} if run_id in runs else {}
    status: dict[str, Any] = {
        "namespace": namespace,
        "runs": [_run_status(r, roles, namespace, timeout_s) for r, roles in sorted(runs.items())],
        "serve": _serve_status(),
    }
    if run_id is not None:
        status["run_id"] = run_id
    status["problems"] = problems(status)
    status["healthy"] = not status["problems"]
    return status


def problems(status: dict[str, Any]) -> list[str]:
    """Everything an operator must look at, one line each (empty: healthy)."""
    out = []
    if not status["runs"]:
        which = f"run {status['run_id']!r}" if status.get("run_id") else "topology"
        out.append(f"no running {which} in namespace {status['namespace']!r}")
    serve_st = status["serve"]
    if serve_st.get("error"):
        out.append(serve_st["error"])
    elif status["runs"]:
        app = serve_st["applications"].get(SERVE_APP_NAME)
        if app is None:
            out.append(f"Serve application {SERVE_APP_NAME!r} is not deployed")
        else:
            if app["status"] != "RUNNING":
                out.append(f"Serve application {SERVE_APP_NAME} is {app['status']}: "
                           f"{app['message']}".rstrip(": "))
            for name, dep in app["deployments"].items():
                if dep["status"] != "HEALTHY":
                    out.append(f"Serve deployment {name} is {dep['status']}")
    for run in status["runs"]:
        rid = run["run_id"]
        for a in run["actors"]:
            if a["state"] != ALIVE:
                out.append(f"{rid}: actor {a['name']} is {a['state']} ({a['error']})")
        missing = [r for r in FIXED_ROLES if r not in {a["role"] for a in run["actors"]}]
        if missing:
            out.append(f"{rid}: actors missing: {missing}")
        out += [f"{rid}: {e}" for e in run["errors"]]
        trading = run.get("trading") or {}
        if trading and trading.get("state") != "ACTIVE":
            out.append(f"{rid}: trading is {trading.get('state')}")
        for sym, book in sorted((run.get("books") or {}).items()):
            if book.get("quarantined"):
                out.append(f"{rid}: book {sym} is quarantined")
        feed = run.get("feed") or {}
        for sym, synced in sorted((feed.get("synced") or {}).items()):
            if not synced:
                out.append(f"{rid}: feed {sym} is not synced")
        pg = (run.get("journal") or {}).get("postgres") or {}
        if pg.get("failed"):
            out.append(f"{rid}: Postgres sink failed: {pg['failed']}")
    return out


# --- terminal rendering -------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in sorted(v.items())) or "-"
    return str(v)


def render(status: dict[str, Any], console: Console) -> None:
    """Print ``status`` as tables: actors, Serve, books, trading, feed, journal, problems."""
    console.print(f"[bold]raydesk status[/] namespace {status['namespace']}, "
                  f"{len(status['runs'])} run(s)")
    serve_st = status["serve"]
    t = Table(title="Serve", show_lines=False)
    for col in ("application / deployment", "status", "replicas", "message"):
        t.add_column(col)
    for name, app in sorted(serve_st.get("applications", {}).items()):
        t.add_row(f"[bold]{name}[/]", app["status"], "", app["message"] or "")
        for dname, dep in sorted(app["deployments"].items()):
            t.add_row(f"  {dname}", dep["status"], _fmt(dep["replicas"]), dep["message"] or "")
    if serve_st.get("proxies"):
        t.add_row("proxies", _fmt(serve_st["proxies"]), "", "")
    console.print(t)
    for run in status["runs"]:
        _render_run(run, console)
    if status["problems"]:
        console.print("[bold red]problems:[/]")
        for p in status["problems"]:
            console.print(f"  - {p}", markup=False, highlight=False)
    else:
        console.print("[bold green]healthy[/]")


def _render_run(run: dict[str, Any], console: Console) -> None:
    console.rule(f"run {run['run_id']}")
    t = Table(title="actors")
    for col in ("role", "name", "state", "ping ms"):
        t.add_column(col)
    for a in run["actors"]:
        color = "green" if a["state"] == ALIVE else "red"
        t.add_row(a["role"], a["name"], f"[{color}]{a['state']}[/]", _fmt(a["ping_ms"]))
    console.print(t)
    books = run.get("books") or {}
    if books:
        t = Table(title="books")
        for col in ("symbol", "health", "events", "batches", "seq"):
            t.add_column(col, justify="right" if col in ("events", "batches", "seq") else "left")
        for sym, b in sorted(books.items()):
            health = "[red]QUARANTINED[/]" if b.get("quarantined") else "[green]ok[/]"
            t.add_row(sym, health, f"{b.get('events', 0):,}", f"{b.get('batches', 0):,}",
                      _fmt(b.get("seq")))
        console.print(t)
    trading = run.get("trading")
    if trading:
        t = Table(title="trading", show_header=False)
        t.add_column(style="cyan")
        t.add_column()
        state = trading.get("state")
        color = "green" if state == "ACTIVE" else "red"
        for k, v in (("state", f"[{color}]{state}[/]"),
                     ("PnL today", _fmt(trading.get("pnl_today"))),
                     ("equity", _fmt(trading.get("equity"))),
                     ("drawdown", _fmt(trading.get("drawdown"))),
                     ("exposure", _fmt(trading.get("exposure"))),
                     ("VaR / ES", _fmt(trading.get("var_es"))),
                     ("open orders", _fmt(trading.get("open_orders"))),
                     ("positions, lots", _fmt(trading.get("positions"))),
                     ("counters", _fmt(trading.get("counters")))):
            t.add_row(k, v)
        console.print(t)
    feed = run.get("feed")
    if feed is not None:
        if feed.get("source") == "sim":
            console.print("feed: built-in simulator")
        else:
            t = Table(title="feed (live)", show_header=False)
            t.add_column(style="cyan")
            t.add_column()
            for k in ("synced", "messages", "faults", "resyncs", "reconnects", "dropped",
                      "connections"):
                t.add_row(k, _fmt(feed.get(k)))
            console.print(t)
    journal = run.get("journal")
    if journal is not None:
        pg, rd = journal.get("postgres"), journal.get("redis")
        console.print(
            f"journal: {journal.get('records', 0):,} records; "
            f"postgres: {'off' if pg is None else _fmt(pg)}; "
            f"redis: {'off' if rd is None else _fmt(rd)}",
            markup=False, highlight=False,
        )
