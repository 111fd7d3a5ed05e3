"""Portfolio-risk monitor of the risk actor: return history, VaR / ES report, stress and heat.

Pure numpy, no Ray and no wall clock: time enters only as the ``ts_ns`` arguments. Exposures are
signed quote values per symbol (position times mid); losses are positive numbers, as in
:mod:`actors.risk.var`.

* :class:`ReturnHistory`: fixed-interval samples of every symbol's mid and their simple returns,
  in a preallocated ring buffer; covariance, correlation, JSON snapshot / restore.
* :func:`risk_report`: VaR and ES of the current exposures for every confidence x horizon by
  historical simulation, normal, Cornish-Fisher and Monte Carlo (the estimators of
  :mod:`actors.risk.var`), stress results, portfolio heat, sigmas, correlations and alerts.
* :func:`stress_test`, :func:`historical_stress_scenarios`: P&L under given joint moves, and the
  largest joint moves the history itself holds.
* :class:`DeltaNormalVar`: delta-normal VaR / ES kept incrementally, so a pre-trade check of
  "this position plus this order" costs O(1).

Bad input raises :class:`~actors.core.errors.ValidationError` naming the field, rule and value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from actors.core.errors import ValidationError
from actors.risk.var import (
    _alpha,
    _horizon,
    historical_var_es,
    monte_carlo_var_es,
    parametric_var_es,
)

SNAPSHOT_VERSION = 1
STRESS_KINDS = ("hypothetical", "historical")


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValidationError(name, f"an int >= {minimum}", value)
    return int(value)


def _finite(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValidationError(name, "a finite number", value) from None
    if not math.isfinite(v):
        raise ValidationError(name, "a finite number", value)
    return v


def _json_float(v: float) -> float | None:
    """A finite float (``-0.0`` as ``0.0``), or None for NaN and infinities."""
    v = float(v)
    return v + 0.0 if math.isfinite(v) else None


def _json_floats(a: np.ndarray) -> list[Any]:
    """Nested lists of floats with NaN as None."""
    if a.ndim == 1:
        return [_json_float(v) for v in a]
    return [_json_floats(row) for row in a]


def _from_json(name: str, values: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of :func:`_json_floats`: None back to NaN, the shape checked."""
    if len(values) == 0 and 0 in shape:
        return np.empty(shape)
    try:
        a = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(name, "numbers or None", values) from None
    if a.shape != shape:
        raise ValidationError(name, f"of shape {shape}", a.shape)
    return a


class ReturnHistory:
    """Rolling, fixed-interval samples of every symbol's mid price and their simple returns.

    :meth:`on_marks` takes the current time and the latest mids (any subset of the symbols, at
    any rate, e.g. every 100 ms). The first call sets the grid: sample boundaries are
    ``t0 + m * sample_ns``. A call with ``ts_ns`` at or past the next boundary takes a sample
    row after applying its own mids; the row holds the last known mid of every symbol (carried
    forward), stamped with that call's ``ts_ns``, and its returns are ``mid / previous row's
    mid - 1``. A symbol with no mid yet makes that row's return NaN for that symbol (and the
    next one, whose previous mid is missing); :meth:`returns` gives only rows where every
    symbol has a return. Those incomplete rows can only come first, so complete rows are
    consecutive samples.

    If several intervals pass without a call, the next call adds ONE row whose return spans
    the whole gap (it is not rescaled to one interval, so a long gap shows as one large
    return), and the next boundary is the first grid point after that call.

    The last ``window`` rows (complete or not) are kept in a preallocated ring buffer: O(k)
    per sample, nothing allocated. Mids must be finite and > 0; symbols not tracked are ignored;
    ``ts_ns`` must not go backwards.

    Example:
        >>> h = ReturnHistory(["A", "B"], sample_ns=1_000, window=3)
        >>> h.on_marks(0, {"A": 100.0, "B": 10.0})
        False
        >>> h.on_marks(1_000, {"A": 101.0})
        True
        >>> h.returns().round(6).tolist()
        [[0.01, 0.0]]
    """

    __slots__ = (
        "symbols",
        "sample_ns",
        "window",
        "_index",
        "_mid",
        "_base",
        "_next_ns",
        "_last_ns",
        "_rows",
        "_row_ns",
        "_complete",
        "_head",
        "_count",
        "_incomplete",
    )

    def __init__(self, symbols: Sequence[str], sample_ns: int, window: int) -> None:
        syms = tuple(symbols)
        if not syms or len(set(syms)) != len(syms) or not all(isinstance(s, str) for s in syms):
            raise ValidationError("symbols", "distinct strings, at least one", syms)
        self.symbols: tuple[str, ...] = syms
        self.sample_ns = _int("sample_ns", sample_ns, 1)
        self.window = _int("window", window, 1)
        k = len(syms)
        self._index = {s: j for j, s in enumerate(syms)}
        self._mid: list[float] = [math.nan] * k  # latest mid per symbol
        self._base = np.full(k, np.nan)  # mids of the last sample row
        self._next_ns: int | None = None  # next sample boundary; None before the first call
        self._last_ns: int | None = None
        self._rows = np.full((self.window, k), np.nan)
        self._row_ns = np.zeros(self.window, dtype=np.int64)
        self._complete = np.zeros(self.window, dtype=bool)
        self._head = 0  # next slot written
        self._count = 0  # rows held (<= window)
        self._incomplete = 0  # rows held with a NaN

    def on_marks(self, ts_ns: int, mids: Mapping[str, float]) -> bool:
        """Apply the latest mids at ``ts_ns``; take a sample row if a boundary was reached.

        Args:
            ts_ns: Current time (int ns), not before the previous call's.
            mids: Latest mid per symbol, any subset; symbols not tracked are ignored.

        Returns:
            True if a return row was appended (never on the first call, which only records
            the first sample's mids).
        """
        ts = _int("ts_ns", ts_ns, -(2**63))
        if self._last_ns is not None and ts < self._last_ns:
            raise ValidationError("ts_ns", f">= the previous ts_ns {self._last_ns}", ts_ns)
        index, mid = self._index, self._mid
        for sym, value in mids.items():
            j = index.get(sym)
            if j is None:
                continue
            v = float(value)
            if not (v > 0.0 and math.isfinite(v)):
                raise ValidationError(f"mids[{sym!r}]", "finite and > 0", value)
            mid[j] = v
        self._last_ns = ts
        if self._next_ns is None:  # the first call sets the grid and the first sample
            self._base = np.array(mid)
            self._next_ns = ts + self.sample_ns
            return False
        if ts < self._next_ns:
            return False
        cur = np.array(mid)
        self._append(ts, cur / self._base - 1.0)
        self._base = cur
        self._next_ns += ((ts - self._next_ns) // self.sample_ns + 1) * self.sample_ns
        return True

    def _append(self, ts: int, row: np.ndarray) -> None:
        i = self._head
        complete = bool(np.isfinite(row).all())
        if self._count == self.window:
            self._incomplete -= not self._complete[i]
        else:
            self._count += 1
        self._rows[i] = row
        self._row_ns[i] = ts
        self._complete[i] = complete
        self._incomplete += not complete
        self._head = (i + 1) % self.window

    def _order(self) -> np.ndarray:
        """Slots of the held rows, oldest first."""
        return (self._head - self._count + np.arange(self._count)) % self.window

    @property
    def n_returns(self) -> int:
        """Complete rows available."""
        return self._count - self._incomplete

    def returns(self) -> np.ndarray:
        """``(n, k)`` complete return rows, oldest first (a copy)."""
        idx = self._order()
        return self._rows[idx[self._complete[idx]]]

    def timestamps(self) -> np.ndarray:
        """``(n,)`` int ns of the sample that ends each row of :meth:`returns`."""
        idx = self._order()
        return self._row_ns[idx[self._complete[idx]]]

    def covariance(self) -> np.ndarray:
        """``(k, k)`` sample covariance (ddof 1) of :meth:`returns`; zeros if fewer than 2."""
        k = len(self.symbols)
        if self.n_returns < 2:
            return np.zeros((k, k))
        return np.atleast_2d(np.cov(self.returns(), rowvar=False))

    def correlation(self) -> np.ndarray:
        """``(k, k)`` correlation; 1 on the diagonal, 0 off it where a variance is 0."""
        return _correlation(self.covariance())

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe state (lists of floats, NaN as None); :meth:`restore` inverts it."""
        idx = self._order()
        return {
            "version": SNAPSHOT_VERSION,
            "symbols": list(self.symbols),
            "sample_ns": self.sample_ns,
            "window": self.window,
            "next_ns": self._next_ns,
            "last_ns": self._last_ns,
            "mids": _json_floats(np.array(self._mid)),
            "base": _json_floats(self._base),
            "rows": _json_floats(self._rows[idx]),
            "row_ns": [int(t) for t in self._row_ns[idx]],
        }

    @classmethod
    def restore(cls, snap: Mapping[str, Any]) -> ReturnHistory:
        """Rebuild a history from :meth:`snapshot` (after a JSON round trip too)."""
        if snap.get("version") != SNAPSHOT_VERSION:
            raise ValidationError("snapshot.version", f"{SNAPSHOT_VERSION}", snap.get("version"))
        try:
            h = cls(snap["symbols"], snap["sample_ns"], snap["window"])
            next_ns, last_ns, row_ns = snap["next_ns"], snap["last_ns"], list(snap["row_ns"])
            mids, base, rows = snap["mids"], snap["base"], snap["rows"]
        except KeyError as e:
            raise ValidationError("snapshot", "a ReturnHistory.snapshot()", f"no {e}") from None
        k, n = len(h.symbols), len(row_ns)
        if n > h.window:
            raise ValidationError("snapshot.row_ns", f"at most {h.window} rows", n)
        if (next_ns is None) != (last_ns is None):
            raise ValidationError("snapshot.next_ns", "None exactly when last_ns is", next_ns)
        h._mid = [float(v) for v in _from_json("snapshot.mids", mids, (k,))]
        h._base = _from_json("snapshot.base", base, (k,))
        r = _from_json("snapshot.rows", rows, (n, k))
        h._next_ns = None if next_ns is None else int(next_ns)
        h._last_ns = None if last_ns is None else int(last_ns)
        for t, row in zip(row_ns, r, strict=True):
            h._append(int(t), row)
        return h


def _correlation(cov: np.ndarray) -> np.ndarray:
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    denom = np.outer(sd, sd)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), 0.0)
    corr = np.clip(corr, -1.0, 1.0)
    np.fill_diagonal(corr, 1.0)
    return corr


@dataclass(frozen=True, slots=True)
class StressScenario:
    """A joint move: ``shocks`` maps symbol to simple return; ``"*"`` is every symbol not named.

    ``kind`` is ``"hypothetical"`` (given) or ``"historical"`` (observed). Shocks must be
    finite and >= -1 (a price cannot fall below zero).
    """

    name: str
    shocks: Mapping[str, float]
    kind: str = "hypothetical"

    def __post_init__(self) -> None:
        if self.kind not in STRESS_KINDS:
            raise ValidationError("kind", " or ".join(STRESS_KINDS), self.kind)
        shocks = {str(s): _finite(f"shocks[{s!r}]", v) for s, v in self.shocks.items()}
        for s, v in shocks.items():
            if v < -1.0:
                raise ValidationError(f"shocks[{s!r}]", ">= -1", v)
        object.__setattr__(self, "shocks", shocks)

    def shock(self, symbol: str) -> float:
        """The simple return this scenario applies to ``symbol``."""
        return self.shocks.get(symbol, self.shocks.get("*", 0.0))


def _exposures(exposures: Mapping[str, float]) -> dict[str, float]:
    return {s: _finite(f"exposures[{s!r}]", v) for s, v in exposures.items()}


def stress_test(
    exposures: Mapping[str, float], scenarios: Sequence[StressScenario]
) -> list[dict[str, Any]]:
    """P&L of ``exposures`` (signed quote values) under each scenario, worst first.

    A symbol neither named in a scenario nor covered by its ``"*"`` shock is unchanged.

    Returns:
        ``[{"name", "kind", "pnl"}]`` sorted by ``pnl`` ascending (ties keep the given order).

    Example:
        >>> stress_test({"A": 100.0, "B": -50.0},
        ...             [StressScenario("crash", {"A": -0.2, "*": -0.1})])
        [{'name': 'crash', 'kind': 'hypothetical', 'pnl': -15.0}]
    """
    x = _exposures(exposures)
    out = [
        {
            "name": sc.name,
            "kind": sc.kind,
            "pnl": math.fsum(v * sc.shock(s) for s, v in x.items()) + 0.0,
        }
        for sc in scenarios
    ]
    out.sort(key=lambda r: r["pnl"])
    return out


def historical_stress_scenarios(
    history: ReturnHistory, horizon: int, top: int = 3
) -> list[StressScenario]:
    """The ``top`` largest joint moves over ``horizon`` consecutive samples of the history.

    Every window of ``horizon`` complete rows gives one joint move per symbol (returns
    compounded over the window); the windows with the largest ``|equal-weighted move|`` (the
    mean over symbols) are taken greedily, skipping any that overlaps one already taken, so a
    single crash is not reported ``horizon`` times. Applying them to the current exposures is
    :func:`stress_test`'s job.

    Returns:
        Scenarios named ``hist_h<horizon>_<i>_<ts_ns>`` (``i``: index in
        :meth:`ReturnHistory.returns` of the window's first row; ``ts_ns``: the time of its
        last sample), ``kind="historical"``, largest move first; fewer than ``top`` (or none)
        when the history is short.
    """
    h, top = _horizon(horizon), _int("top", top, 0)
    r = history.returns()
    n = r.shape[0]
    if n < h or top == 0:
        return []
    log = np.vstack([np.zeros((1, r.shape[1])), np.cumsum(np.log1p(r), axis=0)])
    moves = np.expm1(log[h:] - log[:-h])  # (n - h + 1, k): window starting at row i
    size = np.abs(moves.mean(axis=1))
    ts = history.timestamps()
    taken: list[int] = []
    for i in np.argsort(-size, kind="stable"):
        if all(abs(int(i) - j) >= h for j in taken):
            taken.append(int(i))
            if len(taken) == top:
                break
    return [
        StressScenario(
            f"hist_h{h}_{i}_{int(ts[i + h - 1])}",
            {s: float(m) for s, m in zip(history.symbols, moves[i], strict=True)},
            "historical",
        )
        for i in taken
    ]


def portfolio_heat(
    exposures: Mapping[str, float], sigmas: Mapping[str, float], equity: float, z: float
) -> float:
    """Undiversified loss at ``z`` standard deviations as a fraction of equity.

    ``sum(|exposure| * z * sigma) / equity`` over the positions: every position losing ``z``
    of its own sigmas at once (no diversification). 0 when flat; ``inf`` when ``equity <= 0``
    and any exposure is non-zero. Every exposed symbol needs a sigma.

    Example:
        >>> portfolio_heat({"A": 1000.0, "B": -500.0}, {"A": 0.01, "B": 0.02}, 10_000.0, 2.0)
        0.004
    """
    x = _exposures(exposures)
    eq, zz = _finite("equity", equity), _finite("z", z)
    loss = 0.0
    for s, v in x.items():
        if v == 0.0:
            continue
        if s not in sigmas:
            raise ValidationError(f"sigmas[{s!r}]", "given for every exposed symbol", None)
        sd = _finite(f"sigmas[{s!r}]", sigmas[s])
        if sd < 0:
            raise ValidationError(f"sigmas[{s!r}]", ">= 0", sd)
        loss += abs(v) * zz * sd
    if not any(v != 0.0 for v in x.values()):
        return 0.0
    return math.inf if eq <= 0 else loss / eq


def correlation_alerts(
    symbols: Sequence[str], corr: np.ndarray, threshold: float
) -> list[dict[str, Any]]:
    """Pairs with ``|rho| >= threshold``: ``[{"a", "b", "rho"}]``, largest ``|rho|`` first.

    ``a`` comes before ``b`` in ``symbols``; NaN correlations are skipped.
    """
    syms = tuple(symbols)
    c = np.asarray(corr, dtype=np.float64)
    if c.shape != (len(syms), len(syms)):
        raise ValidationError("corr", f"of shape {(len(syms), len(syms))}", c.shape)
    th = _finite("threshold", threshold)
    if not 0.0 <= th <= 1.0:
        raise ValidationError("threshold", "in [0, 1]", threshold)
    ii, jj = np.triu_indices(len(syms), k=1)
    rho = c[ii, jj]
    keep = np.flatnonzero(np.abs(rho) >= th)  # NaN compares False
    keep = keep[np.argsort(-np.abs(rho[keep]), kind="stable")]
    return [{"a": syms[ii[p]], "b": syms[jj[p]], "rho": float(rho[p])} for p in keep]


def normal_var_es_factors(alpha: float) -> tuple[float, float]:
    """``(z, phi(z) / (1 - alpha))``: normal VaR and ES per unit of standard deviation.

    Example:
        >>> [round(f, 4) for f in normal_var_es_factors(0.99)]
        [2.3263, 2.6652]
    """
    a = _alpha(alpha)
    z = float(stats.norm.ppf(a))
    return z, float(stats.norm.pdf(z)) / (1.0 - a)


def risk_report(
    exposures: Mapping[str, float],
    history: ReturnHistory,
    *,
    equity: float,
    alphas: Sequence[float],
    horizons: Sequence[int],
    scenarios: Sequence[StressScenario],
    mc_paths: int = 10_000,
    mc_dof: float | None = 5.0,
    seed: int = 0,
    correlation_threshold: float = 0.8,
    min_returns: int = 30,
) -> dict[str, Any]:
    """JSON-safe risk report of the current exposures against the return history.

    Args:
        exposures: Signed quote value per symbol; every symbol must be in ``history.symbols``.
        history: Sampled returns; horizons are counted in its samples.
        equity: Account equity (quote currency) for the heat.
        alphas: Confidence levels, each in (0.5, 1).
        horizons: Horizons in samples, each >= 1.
        scenarios: Given stress scenarios; the history's own largest moves (top 3 per
            horizon, :func:`historical_stress_scenarios`) are added.
        mc_paths: Monte Carlo scenarios.
        mc_dof: Monte Carlo Student-t degrees of freedom (None: normal).
        seed: Monte Carlo seed (the report is deterministic).
        correlation_threshold: ``|rho|`` at or above which a pair is alerted.
        min_returns: Complete return rows needed for VaR / ES (at least 4 and ``max(horizons)
            + 1`` are needed anyway).

    Returns:
        ``{"n_returns", "last_sample_ns", "symbols", "exposures", "gross_exposure",
        "net_exposure", "equity", "var", "stress", "heat", "sigmas", "correlation",
        "correlation_alerts"}``. ``var`` is ``{"status": "ok", "n_returns", "mc_paths",
        "mc_dof", "estimates": [{"method", "alpha", "horizon", "var", "es"}]}`` with methods
        ``historical`` (the P&L series ``returns @ exposures``), ``normal``,
        ``cornish_fisher`` (on that series) and ``monte_carlo`` (the exposures vector against
        the returns), or ``{"status": "insufficient_history", "n_returns", "required"}``.
        ``heat`` is ``{"alpha", "z", "value"}`` at the largest alpha on one-sample sigmas
        (value None with fewer than 2 returns, or when not finite: equity <= 0).

    Example:
        >>> h = ReturnHistory(["A"], sample_ns=1, window=100)
        >>> for t in range(50):
        ...     _ = h.on_marks(t, {"A": 100.0 + (t % 3)})
        >>> rep = risk_report({"A": 1_000.0}, h, equity=10_000.0, alphas=[0.99],
        ...                   horizons=[1], scenarios=[])
        >>> rep["var"]["status"], len(rep["var"]["estimates"])
        ('ok', 4)
    """
    syms = history.symbols
    x_map = _exposures(exposures)
    unknown = sorted(set(x_map) - set(syms))
    if unknown:
        raise ValidationError("exposures", f"on symbols of the history {list(syms)}", unknown)
    x = np.array([x_map.get(s, 0.0) for s in syms])
    eq = _finite("equity", equity)
    a_list = [_alpha(a) for a in alphas]
    h_list = [_horizon(h) for h in horizons]
    if not a_list or not h_list:
        raise ValidationError("alphas, horizons", "non-empty", (list(alphas), list(horizons)))
    min_n = _int("min_returns", min_returns, 0)
    th = _finite("correlation_threshold", correlation_threshold)

    r, n = history.returns(), history.n_returns
    cov = history.covariance()
    sig = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    sigmas = dict(zip(syms, (float(s) for s in sig), strict=True))
    corr = _correlation(cov)

    required = max(min_n, 4, max(h_list) + 1)
    var: dict[str, Any]
    if n < required:
        var = {"status": "insufficient_history", "n_returns": n, "required": required}
    else:
        pnl = r @ x
        estimates = []
        for a in a_list:
            for h in h_list:
                mc = monte_carlo_var_es(x, r, a, h, paths=mc_paths, dof=mc_dof, seed=seed)
                for method, est in (
                    ("historical", historical_var_es(pnl, a, h)),
                    ("normal", parametric_var_es(pnl, a, h, "normal")),
                    ("cornish_fisher", parametric_var_es(pnl, a, h, "cornish_fisher")),
                    ("monte_carlo", mc),
                ):
                    estimates.append(
                        {
                            "method": method,
                            "alpha": a,
                            "horizon": h,
                            "var": _json_float(est.var),
                            "es": _json_float(est.es),
                        }
                    )
        var = {
            "status": "ok",
            "n_returns": n,
            "mc_paths": mc_paths,
            "mc_dof": mc_dof,
            "estimates": estimates,
        }

    hist_scenarios = [sc for h in h_list for sc in historical_stress_scenarios(history, h)]
    a_max = max(a_list)
    z = normal_var_es_factors(a_max)[0]
    heat = portfolio_heat(x_map, sigmas, eq, z) if n >= 2 else math.nan
    ts = history.timestamps()
    return {
        "n_returns": n,
        "last_sample_ns": int(ts[-1]) if ts.size else None,
        "symbols": list(syms),
        "exposures": {s: _json_float(v) for s, v in x_map.items()},
        "gross_exposure": _json_float(np.abs(x).sum()),
        "net_exposure": _json_float(x.sum()),
        "equity": eq,
        "var": var,
        "stress": stress_test(x_map, [*scenarios, *hist_scenarios]),
        "heat": {"alpha": a_max, "z": z, "value": _json_float(heat)},
        "sigmas": sigmas,
        "correlation": _json_floats(corr),
        "correlation_alerts": correlation_alerts(syms, corr, th),
    }


class DeltaNormalVar:
    """Delta-normal portfolio VaR / ES kept incrementally for pre-trade checks.

    Holds ``C`` (the per-sample covariance times the horizon in samples), the exposures ``x``,
    ``C @ x`` and ``x' C x``, so the VaR and ES of ``x + dx * e_i`` cost O(1):
    ``sigma = sqrt(x'Cx + 2 dx (Cx)_i + dx^2 C_ii)``, ``VaR = z * sigma``, ``ES = es_factor *
    sigma`` (zero mean). Get ``z`` and ``es_factor`` once from :func:`normal_var_es_factors`.

    Example:
        >>> d = DeltaNormalVar(2)
        >>> d.set_covariance(np.array([[1e-4, 0.0], [0.0, 4e-4]]), horizon_scale=1.0)
        >>> d.set_exposures(np.array([1_000.0, 0.0]))
        >>> z, f = normal_var_es_factors(0.99)
        >>> round(d.var_es_after(1, 500.0, z, f)[0], 4) == round(z * (100 + 100) ** 0.5, 4)
        True
    """

    __slots__ = ("size", "_cov", "_cols", "_x", "_cx", "_diag", "_q")

    def __init__(self, size: int) -> None:
        self.size = _int("size", size, 1)
        self._cov = np.zeros((self.size, self.size))
        self._cols: list[list[float]] = self._cov.T.tolist()  # columns as floats (fast path)
        self._x: list[float] = [0.0] * self.size
        self._cx: list[float] = [0.0] * self.size
        self._diag: list[float] = [0.0] * self.size
        self._q = 0.0

    def _vector(self, name: str, x: Any) -> np.ndarray:
        a = np.array(x, dtype=np.float64)
        if a.shape != (self.size,) or not np.all(np.isfinite(a)):
            raise ValidationError(name, f"finite, of shape ({self.size},)", a.shape)
        return a

    def _refresh(self) -> None:
        x = np.array(self._x)
        cx = self._cov @ x
        self._cx = cx.tolist()
        self._q = max(float(x @ cx), 0.0)

    def set_covariance(self, cov: Any, horizon_scale: float) -> None:
        """Set ``C = cov * horizon_scale`` (``cov`` per sample, symmetrised; scale in samples)."""
        c = np.array(cov, dtype=np.float64)
        k = self.size
        if c.shape != (k, k) or not np.all(np.isfinite(c)):
            raise ValidationError("cov", f"finite, of shape ({k}, {k})", c.shape)
        s = _finite("horizon_scale", horizon_scale)
        if s <= 0:
            raise ValidationError("horizon_scale", "> 0", horizon_scale)
        self._cov = (c + c.T) * (0.5 * s)
        self._cols = self._cov.T.tolist()
        self._diag = [float(v) for v in np.diag(self._cov)]
        self._refresh()

    def set_exposures(self, x: Any) -> None:
        """Set the exposures (signed quote values, ``(k,)``); recompute ``C @ x``, ``x'Cx``."""
        self._x = self._vector("x", x).tolist()
        self._refresh()

    def add_exposure(self, i: int, dx: float) -> None:
        """Move exposure ``i`` by ``dx`` (a fill) in O(k), without a full recomputation."""
        if type(i) is not int or not 0 <= i < self.size:
            i = self._check_index(i)
        d = float(dx)
        if d - d != 0.0:  # inf or nan
            raise ValidationError("dx", "finite", dx)
        cx = self._cx
        q = self._q + 2.0 * d * cx[i] + d * d * self._diag[i]
        self._q = q if q > 0.0 else 0.0
        self._x[i] += d
        self._cx = [c + d * v for c, v in zip(cx, self._cols[i])]  # noqa: B905 - both size k

    @property
    def exposures(self) -> np.ndarray:
        """Current exposures (a copy)."""
        return np.array(self._x)

    def _check_index(self, i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= i < self.size:
            raise ValidationError("i", f"an index in [0, {self.size})", i)
        return int(i)

    def var_es_after(
        self, i: int, dx: float, z_var: float, es_factor: float
    ) -> tuple[float, float]:
        """VaR and ES of the exposures with ``dx`` added to symbol ``i``, in O(1).

        Args:
            i: Symbol index.
            dx: Change of exposure (signed quote value) the order would bring.
            z_var: VaR multiplier of sigma (the normal quantile).
            es_factor: ES multiplier of sigma (``phi(z) / (1 - alpha)`` for the normal).
        """
        if not 0 <= i < self.size or not math.isfinite(dx):
            raise ValidationError("i, dx", f"an index in [0, {self.size}) and finite", (i, dx))
        q = self._q + 2.0 * dx * self._cx[i] + dx * dx * self._diag[i]
        sigma = math.sqrt(q) if q > 0.0 else 0.0
        return z_var * sigma, es_factor * sigma

    def current(self, z_var: float, es_factor: float) -> tuple[float, float]:
        """VaR and ES of the current exposures (``dx = 0``)."""
        sigma = math.sqrt(self._q)
        return z_var * sigma, es_factor * sigma
