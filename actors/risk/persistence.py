"""Checkpoint images of the :class:`~actors.risk.engine.RiskEngine` (a mixin of the engine).

:meth:`RiskPersistence.snapshot` is JSON-safe and complete: state and kill-switch baselines,
the portfolio, every working order (with its price, type and trigger), the token buckets, the
marks, the counters and the sampled return history. :meth:`RiskPersistence.restore` rebuilds
the derived state (exposure totals, the VaR vector) from it, so a restored engine answers every
later check exactly as the original would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actors.execution.portfolio import Portfolio
from actors.risk.limits import Bucket, PriceSet
from actors.risk.monitor import ReturnHistory


class RiskPersistence:
    """``snapshot`` / ``restore`` for :class:`~actors.risk.engine.RiskEngine`."""

    # attributes of the engine this mixin reads and writes
    _order: Any
    _syms: Any
    _kill: Any
    _portfolio: Any
    _working: Any
    _global: Any
    _messages: Any
    _history: Any
    _last_report_ns: Any
    _equity: float
    _cfg: Any
    _var_on: bool
    counters: dict[str, int]
    _add_working: Any
    _refit: Any
    _recompute_all: Any

    # --- persistence --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-safe image of the state, positions, working orders, buckets, marks,
        kill-switch baselines, counters and the return history."""

        def bucket(b: Bucket) -> dict[str, Any]:
            return {"tokens": b.tokens, "last_ns": b.last_ns}

        return {
            **self._kill.snapshot(),
            "portfolio": self._portfolio.snapshot(),
            "working": {
                k: {"symbol": w.sym.symbol, "sign": w.sign, "leaves_lots": w.leaves_lots,
                    "price": w.price, "rests": w.rests, "filled_lots": w.filled_lots,
                    "otype": w.otype, "trigger": w.trigger}
                for k, w in self._working.items()
            },
            "buckets": {s.symbol: bucket(s.bucket) for s in self._order},
            "global_bucket": bucket(self._global),
            "message_bucket": bucket(self._messages),
            "marks": {s.symbol: s.mark for s in self._order if s.mark is not None},
            "counters": dict(self.counters),
            "history": self._history.snapshot(),
            "last_report_ns": self._last_report_ns,
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Replace this engine's state by :meth:`snapshot` output (config and clock stay)."""

        def bucket(b: Bucket, d: Mapping[str, Any] | None) -> None:
            if d:
                b.tokens = float(d["tokens"])
                b.last_ns = None if d["last_ns"] is None else int(d["last_ns"])

        self._kill.restore(snapshot)
        self._portfolio = Portfolio.restore(snapshot.get("portfolio", {}))
        self._working = {}
        for s in self._order:
            s.pos = self._portfolio.qty_lots(s.symbol)
            s.buy_lots = s.sell_lots = 0
            s.buys, s.sells = {}, {}
            s.buy_px, s.sell_px = PriceSet(1), PriceSet(-1)
            s.mark = None
            bucket(s.bucket, snapshot.get("buckets", {}).get(s.symbol))
        for k, w in snapshot.get("working", {}).items():
            s = self._syms[w["symbol"]]
            price = None if w["price"] is None else int(w["price"])
            trig = w.get("trigger")
            self._add_working(k, s, int(w["sign"]), int(w["leaves_lots"]), price, None,
                              bool(w.get("rests", True)), str(w.get("otype", "LIMIT")),
                              None if trig is None else int(trig))
            self._working[k].filled_lots = int(w.get("filled_lots", 0))
        bucket(self._global, snapshot.get("global_bucket"))
        bucket(self._messages, snapshot.get("message_bucket"))
        for sym, m in snapshot.get("marks", {}).items():
            self._syms[sym].mark = float(m)
        self.counters.update({k: int(v) for k, v in snapshot.get("counters", {}).items()})
        if "history" in snapshot:
            self._history = ReturnHistory.restore(snapshot["history"])
        last = snapshot.get("last_report_ns")
        self._last_report_ns = None if last is None else int(last)
        self._equity = self._cfg.capital + self._portfolio.total_pnl()
        if self._var_on:
            self._refit()
        self._recompute_all()
