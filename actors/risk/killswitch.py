"""The trading state and the kill switches: daily loss, drawdown, manual halt, authenticated re-arm.

:class:`KillSwitch` is told the portfolio's total PnL (realised - fees + unrealised) after every
fill and mark (:meth:`KillSwitch.update`). It trips to ``HALTED`` when

* PnL since 00:00 UTC on the clock (or since the last re-arm) is ``<= -daily_loss_limit``, or
* equity (``capital + PnL``) is ``>= max_drawdown`` below its high-water mark (since start or
  the last re-arm),

each exactly at its threshold, once, with a :class:`TradingStateChanged` naming the values.
Re-arming is never automatic: :meth:`KillSwitch.rearm` needs the secret (compared in constant
time); a refusal raises :class:`RearmRefused`, is counted and queued as a ``REARM_REFUSED``
:class:`RiskAlert`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from actors.core.errors import RaydeskError, ValidationError
from actors.core.messages import RiskAlert, TradingStateChanged
from actors.risk.limits import TradingState

if TYPE_CHECKING:
    from cluster.config import RiskConfig

REASON_DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
REASON_MAX_DRAWDOWN = "MAX_DRAWDOWN"
REASON_REARMED = "REARMED"
ALERT_REARM_REFUSED = "REARM_REFUSED"
DAY_NS = 86_400 * 1_000_000_000


class RearmRefused(RaydeskError, PermissionError):
    """A re-arm without the right token (or with none configured): refused, counted, recorded."""


class KillSwitch:
    """Trading state, loss baselines and the trip / re-arm rules.

    Args:
        config: ``RiskConfig`` (``capital``, ``daily_loss_limit``, ``max_drawdown``).
        secret: The re-arm secret; ``None`` refuses every re-arm.
        counters: The engine's counters (``trips``, ``trips_<REASON>``, ``rearms``,
            ``rearm_refusals`` are added to it).
        alerts: The engine's queue of alerts for the journal.
    """

    def __init__(
        self,
        config: RiskConfig,
        secret: str | None,
        counters: dict[str, int],
        alerts: list[RiskAlert],
    ) -> None:
        self._capital = float(config.capital)
        self._loss_limit = float(config.daily_loss_limit)
        self._dd_limit = None if config.max_drawdown is None else float(config.max_drawdown)
        self._secret = hashlib.sha256(secret.encode()).digest() if secret else None
        self.counters = counters
        self.alerts = alerts
        for k in ("trips", "rearms", "rearm_refusals"):
            counters.setdefault(k, 0)
        self.state = TradingState.ACTIVE
        self.reason = ""
        self.day: int | None = None
        self.day_baseline = 0.0
        self.hwm = self._capital

    def update(self, total_pnl: float, now_ns: int) -> list[TradingStateChanged]:
        """Roll the UTC day, raise the high-water mark, and trip if a limit is reached."""
        day = now_ns // DAY_NS
        if self.day is None:
            self.day = day
        elif day != self.day:  # a new UTC day: the daily loss counts from here
            self.day = day
            self.day_baseline = total_pnl
        equity = self._capital + total_pnl
        if equity > self.hwm:
            self.hwm = equity
        if self.state is TradingState.HALTED:
            return []
        day_pnl = total_pnl - self.day_baseline
        if day_pnl <= -self._loss_limit:
            return [self._trip(REASON_DAILY_LOSS_LIMIT,
                               f"pnl {day_pnl:.6f} <= -{self._loss_limit}", now_ns)]
        dd = self.hwm - equity
        if self._dd_limit is not None and dd >= self._dd_limit:
            return [self._trip(REASON_MAX_DRAWDOWN,
                               f"drawdown {dd:.6f} >= {self._dd_limit} (high-water "
                               f"{self.hwm:.6f}, equity {equity:.6f})", now_ns)]
        return []

    def _trip(self, reason: str, detail: str, now_ns: int) -> TradingStateChanged:
        self.counters["trips"] += 1
        key = f"trips_{reason}"
        self.counters[key] = self.counters.get(key, 0) + 1
        return self.set(TradingState.HALTED, reason, detail, now_ns)

    def rearm(
        self, operator: str, token: str, total_pnl: float, now_ns: int
    ) -> TradingStateChanged:
        """Back to ``ACTIVE`` with the right token; the baselines restart at ``total_pnl``.

        Raises:
            RearmRefused: Wrong or missing token, or no secret configured.
            ValidationError: Empty operator, or trading already ``ACTIVE``.
        """
        if not operator or not operator.strip():
            raise ValidationError("operator", "non-empty", operator)
        given = hashlib.sha256((token or "").encode()).digest()
        if self._secret is None or not hmac.compare_digest(given, self._secret):
            self.counters["rearm_refusals"] += 1
            why = "no re-arm secret configured" if self._secret is None else "wrong token"
            self.alerts.append(RiskAlert(ts_event=now_ns, ts_init=now_ns,
                                         code=ALERT_REARM_REFUSED,
                                         detail=f"operator {operator!r}: {why}"))
            raise RearmRefused(f"re-arm by {operator!r} refused: {why}")
        if self.state is TradingState.ACTIVE:
            raise ValidationError("state", "HALTED or REDUCING to re-arm", self.state.value)
        self.day_baseline = total_pnl
        self.hwm = self._capital + total_pnl
        self.counters["rearms"] += 1
        return self.set(TradingState.ACTIVE, f"{REASON_REARMED}:{operator.strip()}",
                        f"pnl baseline {total_pnl:.6f}", now_ns)

    def set(
        self, state: TradingState, reason: str, detail: str, now_ns: int
    ) -> TradingStateChanged:
        """Move to ``state`` and return the event recording it."""
        self.state = state
        self.reason = reason
        return TradingStateChanged(
            ts_event=now_ns, ts_init=now_ns, state=state.value, reason=reason, detail=detail
        )

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe image of the state and the baselines."""
        return {"state": self.state.value, "state_reason": self.reason, "day": self.day,
                "day_baseline": self.day_baseline, "hwm": self.hwm}

    def restore(self, snap: Mapping[str, Any]) -> None:
        """Replace the state and baselines by :meth:`snapshot` output."""
        self.state = TradingState(snap.get("state", TradingState.ACTIVE.value))
        self.reason = str(snap.get("state_reason", ""))
        day = snap.get("day")
        self.day = None if day is None else int(day)
        self.day_baseline = float(snap.get("day_baseline", 0.0))
        self.hwm = float(snap.get("hwm", self._capital))
