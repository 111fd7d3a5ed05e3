"""Streaming order-flow features, computed identically in replay and live.

Two parts:

* :class:`FlowAccumulator` sees every message boundary and every trade, and accumulates order
  flow imbalance (Cont, Kukanov and Stoikov 2014, best level) and trade flow between decision
  points.
* :func:`compute_features` turns the book's top levels plus the accumulators into one vector,
  in the order of :data:`FEATURE_NAMES`, at a decision point.

Definitions (prices in ticks; ``mid = (bid + ask) / 2``):

* ``spread_bps``: ``(ask - bid) / mid`` in basis points.
* ``microprice_dev_bps``: size-weighted mid ``(bid*Qa + ask*Qb)/(Qa+Qb)`` minus mid, in bps.
* ``imbalance_l1`` / ``imbalance_lN``: ``(Qb - Qa) / (Qb + Qa)`` over 1 and N levels.
* ``ofi_norm``: sum of CKS OFI increments since the last decision, divided by the mean touch
  depth; ``e = 1[Pb>=Pb']Qb - 1[Pb<=Pb']Qb' - 1[Pa<=Pa']Qa + 1[Pa>=Pa']Qa'``.
* ``trade_imbalance``: ``(buy volume - sell volume) / total`` since the last decision.
* ``ret_1_bps`` / ``ret_5_bps``: log mid return over 1 and 5 decision points, bps.
* ``rv_bps``: realised volatility, root mean square of the last ``window`` 1-step returns.
* ``log_events``: ``log1p`` of messages since the last decision (activity).
"""

from __future__ import annotations

import hashlib
import math
from collections import deque

import numpy as np

FEATURE_NAMES: tuple[str, ...] = (
    "spread_bps",
    "microprice_dev_bps",
    "imbalance_l1",
    "imbalance_lN",
    "ofi_norm",
    "trade_imbalance",
    "ret_1_bps",
    "ret_5_bps",
    "rv_bps",
    "log_events",
)
FEATURE_SPEC_VERSION = 2
FEATURE_SPEC_HASH: str = hashlib.sha256(
    f"v{FEATURE_SPEC_VERSION}:{','.join(FEATURE_NAMES)}".encode()
).hexdigest()[:12]
N_FEATURES = len(FEATURE_NAMES)


class FlowAccumulator:
    """Order-flow and trade-flow accumulators between two decision points."""

    __slots__ = (
        "ofi",
        "depth_sum",
        "depth_n",
        "buy_vol",
        "sell_vol",
        "messages",
        "_pb",
        "_qb",
        "_pa",
        "_qa",
    )

    def __init__(self) -> None:
        self._pb: int | None = None
        self._qb = 0.0
        self._pa: int | None = None
        self._qa = 0.0
        self.reset()

    def reset(self) -> None:
        """Start a new interval (keeps the last touch so OFI continues across intervals)."""
        self.ofi = 0.0
        self.depth_sum = 0.0
        self.depth_n = 0
        self.buy_vol = 0.0
        self.sell_vol = 0.0
        self.messages = 0

    def on_touch(self, pb: int | None, qb: float, pa: int | None, qa: float) -> None:
        """Record the touch after one message; accumulate the OFI increment."""
        self.messages += 1
        if pb is None or pa is None:
            self._pb = None
            self._pa = None
            return
        if self._pb is not None and self._pa is not None:
            ppb, pqb, ppa, pqa = self._pb, self._qb, self._pa, self._qa
            e = 0.0
            if pb >= ppb:
                e += qb
            if pb <= ppb:
                e -= pqb
            if pa <= ppa:
                e -= qa
            if pa >= ppa:
                e += pqa
            self.ofi += e
        self._pb, self._qb, self._pa, self._qa = pb, qb, pa, qa
        self.depth_sum += qb + qa
        self.depth_n += 1

    def on_trade(self, aggressor_is_buy: bool, size: float) -> None:
        """Record one trade."""
        if aggressor_is_buy:
            self.buy_vol += size
        else:
            self.sell_vol += size


class FeatureState:
    """Per-symbol history needed by the features (mid returns and the feature window)."""

    def __init__(self, window: int, imbalance_levels: int) -> None:
        self.window = window
        self.imbalance_levels = imbalance_levels
        self.mids: deque[float] = deque(maxlen=5)  # the 5 previous decision points' mids
        self.returns: deque[float] = deque(maxlen=window)
        self.vectors: deque[np.ndarray] = deque(maxlen=window)

    def is_warm(self) -> bool:
        return len(self.vectors) == self.window

    def window_array(self) -> np.ndarray:
        """Return the window, oldest first, as float32 ``(T, F)`` (zero-padded when cold)."""
        out = np.zeros((self.window, N_FEATURES), dtype=np.float32)
        if self.vectors:
            out[self.window - len(self.vectors) :] = np.stack(self.vectors)
        return out


def _imbalance(qb: float, qa: float) -> float:
    tot = qb + qa
    return (qb - qa) / tot if tot > 0 else 0.0


def compute_features(
    state: FeatureState,
    flow: FlowAccumulator,
    bid_ticks: list[int],
    bid_sizes: list[float],
    ask_ticks: list[int],
    ask_sizes: list[float],
) -> np.ndarray | None:
    """Compute the feature vector at a decision point and push it into ``state``'s window.

    Returns None (and records nothing) when either side of the book is empty.
    """
    if not bid_ticks or not ask_ticks:
        return None
    pb, pa = bid_ticks[0], ask_ticks[0]
    qb, qa = bid_sizes[0], ask_sizes[0]
    mid = (pb + pa) / 2.0
    micro = (pb * qa + pa * qb) / (qa + qb) if qa + qb > 0 else mid
    n = state.imbalance_levels
    prev = state.mids[-1] if state.mids else mid
    ret1 = math.log(mid / prev) * 1e4
    ret5 = math.log(mid / state.mids[0]) * 1e4 if len(state.mids) == 5 else 0.0
    state.mids.append(mid)
    state.returns.append(ret1)
    rv = math.sqrt(sum(r * r for r in state.returns) / len(state.returns))
    mean_depth = flow.depth_sum / flow.depth_n if flow.depth_n else (qb + qa)
    vol = flow.buy_vol + flow.sell_vol
    vec = np.array(
        [
            (pa - pb) / mid * 1e4,
            (micro - mid) / mid * 1e4,
            _imbalance(qb, qa),
            _imbalance(sum(bid_sizes[:n]), sum(ask_sizes[:n])),
            flow.ofi / mean_depth if mean_depth > 0 else 0.0,
            (flow.buy_vol - flow.sell_vol) / vol if vol > 0 else 0.0,
            ret1,
            ret5,
            rv,
            math.log1p(flow.messages),
        ],
        dtype=np.float32,
    )
    state.vectors.append(vec)
    return vec
