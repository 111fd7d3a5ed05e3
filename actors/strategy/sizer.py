"""Position sizing for the strategy: how many lots a signal should hold (pure, no Ray).

``strategy.sizing`` picks the rule; every rule except ``fixed`` reads the covariance of the
symbols' mid returns, sampled on ``sizing_sample_ms`` over the last ``sizing_window`` samples
(:class:`actors.risk.monitor.ReturnHistory`), and sizes against ``risk.capital``:

* ``fixed``: ``target_position_lots`` (no estimate needed);
* ``vol_target``: the exposure whose daily volatility is ``target_vol_daily × capital``
  (:func:`~actors.risk.sizing.vol_target_exposure`), reduced for the risk it shares with the
  positions already held (:func:`~actors.risk.sizing.correlation_scale`);
* ``kelly``: the Gaussian Kelly leverage of the signal's edge over ``sizing_horizon_s``,
  ``(p_up - p_down) / sigma_h`` (an expected move of ``±sigma_h`` with those probabilities),
  times ``kelly_fraction``, capped at ``kelly_cap``
  (:func:`~actors.risk.sizing.capped_fractional_kelly`), reduced for correlated exposure
  like ``vol_target``;
* ``risk_parity``: equal risk contributions across the symbols
  (:func:`~actors.risk.sizing.risk_parity_weights`), scaled so that the whole book's daily
  volatility is ``target_vol_daily × capital``.

Every rule is capped at ``target_position_lots``. Until ``sizing_min_returns`` returns are
sampled there is no estimate, and a sized strategy does not trade (counted in
:attr:`Sizer.cold`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from actors.core.instruments import Instrument
from actors.core.views import BookView
from actors.risk.monitor import ReturnHistory
from actors.risk.sizing import (
    capped_fractional_kelly,
    correlation_scale,
    risk_parity_weights,
    vol_target_exposure,
)

DAY_S = 86_400.0


class Sizer:
    """Target position sizes from the sampled covariance of the symbols' returns.

    Args:
        config: ``StrategyConfig`` (``sizing`` and the ``sizing_*``, ``target_vol_daily``,
            ``kelly_*`` fields).
        instruments: Instruments by symbol (lot and tick sizes value a lot).
        capital: The equity the rules size against, quote currency.

    Example:
        >>> sizer = Sizer(cfg.strategy, cfg.instrument_map(), cfg.risk.capital)  # doctest: +SKIP
        >>> sizer.on_marks(now_ns, views)                                          # doctest: +SKIP
        >>> sizer.target_lots("BTCUSDT", 1, (0.2, 0.3, 0.5), positions)            # doctest: +SKIP
    """

    def __init__(
        self, config: Any, instruments: Mapping[str, Instrument], capital: float
    ) -> None:
        self.cfg = config
        self.method: str = config.sizing
        self.symbols = list(instruments)
        self._idx = {s: i for i, s in enumerate(self.symbols)}
        self._unit = {
            s: float(i.lot_size) * float(i.tick_size) for s, i in instruments.items()
        }
        self.capital = float(capital)
        self._sample_s = config.sizing_sample_ms / 1e3
        self.history = ReturnHistory(
            self.symbols, int(config.sizing_sample_ms * 1e6), config.sizing_window
        )
        self._mids: dict[str, float] = {}
        self._cov: np.ndarray | None = None
        self.cold = 0  # sized decisions skipped for lack of an estimate

    def on_marks(self, now_ns: int, views: Mapping[str, BookView]) -> None:
        """Sample the mids of ``views`` (call every step, before the decisions)."""
        for s, v in views.items():
            mid = v.mid_ticks
            if mid is not None and not v.quarantined and s in self._idx:
                self._mids[s] = mid
        if self.method == "fixed":
            return
        sampled = self.history.on_marks(now_ns, self._mids)
        if sampled and self.history.n_returns >= self.cfg.sizing_min_returns:
            self._cov = self.history.covariance()

    def _exposures(self, positions: Mapping[str, int]) -> np.ndarray:
        x = np.zeros(len(self.symbols))
        for s, q in positions.items():
            if s in self._idx and q:
                x[self._idx[s]] = q * self._unit[s] * self._mids.get(s, 0.0)
        return x

    def target_lots(
        self, symbol: str, signal: int, probs: Sequence[float], positions: Mapping[str, int]
    ) -> int | None:
        """Lots (>= 0) the strategy should hold in the signal's direction, or ``None`` while
        there is no estimate yet.

        Args:
            symbol: The symbol.
            signal: +1 or -1.
            probs: ``[p_down, p_flat, p_up]``.
            positions: Signed positions in lots by symbol (the strategy's own).
        """
        cap = int(self.cfg.target_position_lots)
        if self.method == "fixed":
            return cap
        mid = self._mids.get(symbol)
        cov = self._cov
        if cov is None or mid is None or mid <= 0:
            self.cold += 1
            return None
        i = self._idx[symbol]
        per_day = DAY_S / self._sample_s
        target = float(self.cfg.target_vol_daily)
        if self.method == "risk_parity":
            w = risk_parity_weights(cov)
            book_sd = math.sqrt(float(w @ cov @ w) * per_day)
            exposure = float(w[i]) * target * self.capital / book_sd
        else:
            sigma = math.sqrt(float(cov[i, i]))
            if sigma <= 0.0:
                return 0
            if self.method == "vol_target":
                exposure = vol_target_exposure(target, sigma * math.sqrt(per_day), self.capital)
            else:  # kelly
                sigma_h = sigma * math.sqrt(self.cfg.sizing_horizon_s / self._sample_s)
                edge = float(probs[2]) - float(probs[0])
                lev = capped_fractional_kelly(
                    edge / sigma_h, self.cfg.kelly_fraction, self.cfg.kelly_cap
                )
                exposure = abs(lev) * self.capital
            # shrink for the risk shared with the book held in the trade's direction
            exposure *= correlation_scale(i, signal * self._exposures(positions), cov)
        lots = int(exposure / (self._unit[symbol] * mid))
        return max(0, min(cap, lots))
