"""Streaming order-flow features over the book kernel's frames, identical in replay and live.

:class:`FeatureEngine` consumes, per batch, the two arrays of :mod:`actors.book.frames`:
``msgs`` (the top :data:`~actors.book.frames.DEPTH` levels per side after every book message)
and ``trades`` (with ``shown``, the passive size displayed at the trade price just before the
trade, and ``msg``, the number of message ends before the trade in its batch). Events are
replayed in stream order (trades with ``msg == i`` come just before message ``i``) by one
compiled function, so features do not depend on how the stream was cut into batches.
:meth:`FeatureEngine.vector` is a *decision point*: it returns the vector, pushes it into the
window and closes the *interval* (everything since the previous decision point), even when it
returns None because a side of the book is empty.

Notation: prices in integer ticks, ``Pb_m, Qb_m`` / ``Pa_m, Qa_m`` the m-th bid / ask level
(m = 1 is the touch), ``mid = (Pb_1 + Pa_1) / 2``, ``bps(x) = x / mid * 1e4``. An empty level
has size 0; in OFI an empty bid has price -inf and an empty ask +inf.

Definitions (name: definition. Source):

* ``spread_bps``: ``bps(Pa_1 - Pb_1)``. Practice.
* ``ret_1_bps`` / ``ret_5_bps``: ``1e4 * log(mid_t / mid_{t-k})`` over k = 1 and 5 decision
  points (0 until k earlier decision points exist). Practice (mid as returns, never a level).
* ``rv_bps``: ``sqrt(mean(ret_1^2))`` over the last ``rv_window`` decision points (fewer while
  cold; the first decision's return is 0). Realised volatility, Andersen & Bollerslev (1998).
* ``microprice_dev_bps``: ``bps(W - mid)``, ``W = (Pb_1 Qa_1 + Pa_1 Qb_1) / (Qb_1 + Qa_1)``,
  the size-weighted mid. Practice; discussed in Stoikov (2018), section 2.
* ``stoikov_micro_bps``: ``bps(g(I, S))``, the micro-price ``mid + g`` minus mid. Stoikov (2018),
  "The micro-price: a high-frequency estimator of future prices", Quant. Finance 18(12).
  State ``x = (S, I)``: spread ``S = Pa_1 - Pb_1`` in ``1..stoikov_spread_states`` ticks and
  imbalance ``Qb_1/(Qb_1+Qa_1)`` in ``stoikov_imbalance_buckets`` equal-width buckets (Stoikov
  uses quantiles; equal width keeps buckets fixed across refits and mirrors exactly). Every pair
  of consecutive messages with valid states and ``|dM| <= 1`` tick is a transition
  ``(x, y, dM)`` kept in a ring of the last ``stoikov_history``. Every ``stoikov_refit_every``
  messages the estimator is refitted on the ring plus its mirror image (``I -> 1 - I``,
  ``dM -> -dM``, Stoikov's symmetrisation): with row-normalised counts ``Q[x,y]`` (dM = 0),
  ``T[x,y]`` (dM != 0) and ``R[x,k]`` (dM = k in -1, -1/2, 1/2, 1 tick),
  ``G1 = (1 - Q)^+ R k``, ``B = (1 - Q)^+ T`` (``^+``: least-squares solution, rcond 1e-10, so
  a state that never moves gets 0) and ``g = sum_{i=0..n} B^i G1`` with
  ``n = stoikov_iterations``. 0 before the first fit or outside the modelled states.
* ``vamp_dev_bps``: ``bps(V - mid)``, ``V = sum_m (Pb_m Qa_m + Pa_m Qb_m) / sum_m (Qb_m +
  Qa_m)`` over the first ``min(vamp_levels, levels present on both sides)`` levels (the
  weighted mid extended in depth). Practice (volume-adjusted mid price).
* ``imbalance_l{n}``: ``(sum Qb - sum Qa) / (sum Qb + sum Qa)`` over the first n levels, for
  n = 1, ``imbalance_levels`` and 10. Cao, Hansch & Wang (2009), J. Futures Markets 29(1).
* ``ofi_norm``: ``sum e_1 / D_1``; per message ``e_m = 1[Pb_m >= Pb_m'] Qb_m - 1[Pb_m <= Pb_m']
  Qb_m' - 1[Pa_m <= Pa_m'] Qa_m + 1[Pa_m >= Pa_m'] Qa_m'`` (primes: the previous message; none
  at the very first message) summed over the interval's messages, ``D_1`` the interval's mean
  of ``(Qb_1 + Qa_1) / 2`` (the current one when the interval has no message). Cont, Kukanov &
  Stoikov (2014), "The price impact of order book events", J. Fin. Econometrics 12(1).
* ``mlofi_norm``: ``sum_{m<=M} w_m sum e_m / D_M``, ``M = mlofi_levels``, ``w = mlofi_weights``
  (default ``1/M``: the equal-weight sum close to the first principal component), ``D_M`` the
  interval's mean of ``sum_{m<=M} (Qb_m + Qa_m) / (2M)``. Xu, Huang & Wang (2019),
  "Multi-level order-flow imbalance in a limit order book", Market Microstructure and
  Liquidity 4; Cont, Cucuringu & Zhang (2023) for the principal-component integration.
* ``trade_imbalance``: ``(B - S) / (B + S)``, buyer- and seller-initiated volume in the
  interval (0 without trades). Practice; Silantyev (2019), Digital Finance 1.
* ``vpin``: Easley, Lopez de Prado & O'Hara (2012), "Flow toxicity and liquidity in a
  high-frequency world", RFS 25(5), with bulk volume classification (Easley, Lopez de Prado &
  O'Hara 2016, JFE 120). Trades fall in time bars ``floor(ts_event / vpin_bar_ms)`` (a trade
  stamped earlier than the open bar joins it); a bar closes at the first trade of a later bar.
  At close: ``dP = close - previous close`` (ticks; the first previous close is the first
  trade's price), ``sigma`` = population standard deviation of the last ``vpin_sigma_bars``
  bar ``dP`` including this one, buy volume ``V * Phi(dP / sigma)`` (``Phi(0) = 1/2`` when
  sigma is 0). Bar volume fills equal buckets of ``vpin_bucket_volume`` in order (a bar spilling
  over carries its buy fraction into the next bucket; with 0, the bucket volume is the total size
  of the first ``vpin_auto_trades`` trades and bars closed before that are not bucketed).
  ``vpin = sum |V_S - V_B| / (n * bucket volume)`` over the last ``n <= vpin_buckets`` full
  buckets (0 before the first). The open bar is not in vpin yet.
* ``poc_dist_bps`` / ``vah_dist_bps`` / ``val_dist_bps``: volume profile of the last
  ``profile_trades`` trades in bins of ``w = max(1, floor(p0 * profile_bin_bps * 1e-4 + 0.5))``
  ticks (``p0`` the first trade's price; bin ``b`` holds ``[b w, (b+1) w)``, centre
  ``b w + (w-1)/2``). Point of control: the bin of most volume (ties: the lowest). Value area:
  from the POC, add the larger of the two neighbouring bins (ties: the upper; empty bins count
  as 0; one side exhausted: the other) until it holds ``>= profile_value_area`` of the volume.
  Each is ``bps(centre - mid)``; 0 without trades. Market Profile practice (Steidlmayer, CBOT).
* ``wall_bid_dist_bps`` / ``wall_ask_dist_bps``: a wall is a level of size ``>= wall_k x`` the
  median size of the non-empty top-10 levels of both sides. ``bps(mid - Pb)`` / ``bps(Pa -
  mid)`` of the nearest wall (always > 0), 0 when the side has none. Practice.
* ``wall_arrivals`` / ``wall_withdrawals``: counted at each message against the previous one,
  per side. Arrival: a wall price that was no wall before and whose size grew (known 0 when it
  was inside the previous visible range: fewer than 10 levels, or not beyond the 10th level).
  Withdrawal: a previous wall price that is no wall now, whose size fell, that is still inside
  the visible range, and that no trade hit since the previous message (a trade hits a bid
  wall at ``p`` when sellers traded at prices spanning ``p``: min <= p <= max; the same for
  asks): a wall consumed by trades is not a withdrawal. Practice.
* ``hidden_vol_frac``: hidden executed volume / traded volume in the interval. A run is the
  consecutive trades at one price and aggressor side since the last message; a trade's hidden
  volume is ``max(0, min(size, run volume - shown))``: executed beyond what was displayed.
  Frey & Sandas (2017), "The impact of iceberg orders in limit order books", QJF 7(3).
* ``refill_count``: quick refills in the interval. Per passive side one pending level: a trade
  at a new price (with ``shown > 0``) starts one with target ``shown``; trades at the pending
  price add to its executed volume. At a message stamped no earlier than the last such trade
  and within ``refill_ms`` of it, a pending level with executed ``>= refill_frac x target``
  that shows ``>= refill_frac x target`` again is a refill (and is dropped; it also expires
  after ``refill_ms``). Practice (L2 iceberg heuristics; exact L3 detection is the L3 book's).
* ``l3_iceberg_refills``: sum of ``update(..., l3_iceberg_refills=n)`` over the interval.
* ``absorption``: ``1[bid absorbs] - 1[ask absorbs]``. The bid absorbs when seller-initiated
  volume in the interval is ``> 0`` and ``>= absorption_k x Qb_1`` at the interval start
  (the touch at the previous decision point, or the interval's first two-sided message) while
  the best bid never fell below its start price (an empty bid side is a fall); mirrored for the
  ask with buyer-initiated volume. Practice (order-flow trading); definition ours.
* ``exhaustion``: ``1[sellers exhaust] - 1[buyers exhaust]``. Buyers exhaust when the buyer-
  initiated volume of the last ``n = exhaustion_intervals`` decision intervals is strictly
  declining with the oldest > 0 while the price stalls: ``|1e4 log(mid_t / mid_{t-n+1})| <=
  exhaustion_stall_bps``; mirrored for sellers. Practice; definition ours.
* ``log_events``: ``log1p`` of book messages in the interval. Practice.

Example:
    >>> eng = FeatureEngine(FeaturesConfig())
    >>> eng.update(msgs, trades)
    >>> vec = eng.vector()  # float32 (len(eng.names),) or None
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
from numba import njit

from actors.book.book_window import BOOK_SPEC_VERSION
from actors.book.frames import DEPTH, MSG_DTYPE, TRADE_DTYPE
from actors.core.errors import ValidationError
from cluster.config import FeaturesConfig

FEATURE_SPEC_VERSION = 3

# slots of the full feature array the kernel fills, in vector order; (slot, name, switch)
(
    F_SPREAD, F_RET1, F_RET5, F_RV, F_WMID, F_STOIKOV, F_VAMP, F_IMB1, F_IMBN, F_IMB10, F_OFI,
    F_MLOFI, F_TFI, F_VPIN, F_POC, F_VAH, F_VAL, F_WALL_BID, F_WALL_ASK, F_WALL_ARR, F_WALL_WD,
    F_HIDDEN, F_REFILL, F_L3, F_ABSORB, F_EXHAUST, F_EVENTS, N_SLOTS,
) = range(28)
_SLOTS: tuple[tuple[int, str, str], ...] = (
    (F_SPREAD, "spread_bps", "spread"),
    (F_RET1, "ret_1_bps", "returns"),
    (F_RET5, "ret_5_bps", "returns"),
    (F_RV, "rv_bps", "realized_vol"),
    (F_WMID, "microprice_dev_bps", "weighted_mid"),
    (F_STOIKOV, "stoikov_micro_bps", "stoikov"),
    (F_VAMP, "vamp_dev_bps", "vamp"),
    (F_IMB1, "imbalance_l1", "depth_imbalance"),
    (F_IMBN, "imbalance_l{n}", "depth_imbalance"),
    (F_IMB10, f"imbalance_l{DEPTH}", "depth_imbalance"),
    (F_OFI, "ofi_norm", "ofi"),
    (F_MLOFI, "mlofi_norm", "mlofi"),
    (F_TFI, "trade_imbalance", "trade_flow"),
    (F_VPIN, "vpin", "vpin"),
    (F_POC, "poc_dist_bps", "volume_profile"),
    (F_VAH, "vah_dist_bps", "volume_profile"),
    (F_VAL, "val_dist_bps", "volume_profile"),
    (F_WALL_BID, "wall_bid_dist_bps", "walls"),
    (F_WALL_ASK, "wall_ask_dist_bps", "walls"),
    (F_WALL_ARR, "wall_arrivals", "walls"),
    (F_WALL_WD, "wall_withdrawals", "walls"),
    (F_HIDDEN, "hidden_vol_frac", "icebergs"),
    (F_REFILL, "refill_count", "icebergs"),
    (F_L3, "l3_iceberg_refills", "icebergs"),
    (F_ABSORB, "absorption", "absorption"),
    (F_EXHAUST, "exhaustion", "exhaustion"),
    (F_EVENTS, "log_events", "log_events"),
)

# float state
(
    S_BUY, S_SELL, S_D1, S_DM, S_HIDDEN, S_REFILLS, S_WALL_ARR, S_WALL_WD, S_L3, S_REF_BSZ,
    S_REF_ASZ, S_RUN_CUM, S_PEND_T, S_PEND_T1, S_PEND_X, S_PEND_X1, S_BAR_VOL, S_BKT_SIZE,
    S_BKT_FILL, S_BKT_BUY, S_AUTO_VOL, N_S,
) = range(22)
# int state
(
    I_NMSG, I_NMSG_ALL, I_HAVE_BOOK, I_REF_OK, I_REF_BID, I_REF_ASK, I_MIN_BID, I_MAX_ASK,
    I_RUN_ON, I_RUN_PX, I_RUN_SIDE, I_TR_LO, I_TR_LO1, I_TR_HI, I_TR_HI1, I_PEND_ON, I_PEND_ON1,
    I_PEND_PX, I_PEND_PX1, I_PEND_TS, I_PEND_TS1, I_BAR_ON, I_BAR_SLOT, I_BAR_LAST, I_PREV_CLOSE,
    I_HAVE_CLOSE, I_SIG_N, I_BKT_N, I_NTRADES, I_BIN_W, I_PROF_N, I_STK_PREV_X, I_STK_PREV_M2,
    I_STK_N, I_MID_N, I_RET_N, I_EXH_N, N_I,
) = range(38)
# float parameters
P_WALL_K, P_REFILL_FRAC, P_BKT_CFG, P_BIN_BPS, P_VA, P_ABS_K, P_STALL, N_P = range(8)
# int parameters
(
    Q_M, Q_WALLS, Q_STK, Q_VPIN, Q_PROF, Q_IMB_N, Q_VAMP_L, Q_NIMB, Q_NSPREAD, Q_REFIT,
    Q_AUTO, Q_BAR_NS, Q_REFILL_NS, N_Q,
) = range(14)

NEG = -(2**62)  # price of an empty bid level in OFI / "no trade" bounds
POS = 2**62  # price of an empty ask level
_K_MOVES = np.array([-1.0, -0.5, 0.5, 1.0])  # Stoikov mid moves, ticks (dM in half ticks +-1, +-2)


def feature_spec(cfg: FeaturesConfig) -> tuple[tuple[str, ...], str]:
    """Return ``(names, spec_hash)`` of the features ``cfg`` enables, in vector order.

    The hash covers the spec version, the raw-book representation's version
    (:data:`~actors.book.book_window.BOOK_SPEC_VERSION`), the names and every parameter except
    ``window`` and ``book_window`` (which shape the windows, not the features; a model checks
    its window shapes itself).
    """
    names = tuple(name for _slot, name in _enabled(cfg))
    params = cfg.model_dump(mode="json", exclude={"window", "book_window"})
    blob = json.dumps(
        {"version": FEATURE_SPEC_VERSION, "book_version": BOOK_SPEC_VERSION, "names": names,
         "params": params},
        sort_keys=True,
        separators=(",", ":"),
    )
    return names, hashlib.sha256(blob.encode()).hexdigest()[:12]


def _enabled(cfg: FeaturesConfig) -> list[tuple[int, str]]:
    n = cfg.imbalance_levels
    out = []
    for slot, name, switch in _SLOTS:
        if not getattr(cfg, switch) or (slot == F_IMBN and n in (1, DEPTH)):
            continue
        out.append((slot, name.format(n=n)))
    return out


FEATURE_NAMES, FEATURE_SPEC_HASH = feature_spec(FeaturesConfig())
N_FEATURES = len(FEATURE_NAMES)


# ------------------------------------------------------------------------------------------
# compiled kernel: one message, one trade, the event loop, one decision point
# ------------------------------------------------------------------------------------------
@njit(cache=True)
def _count(sz):
    n = 0
    for k in range(sz.shape[0]):
        if sz[k] > 0.0:
            n += 1
    return n


@njit(cache=True)
def _find(px, sz, p):
    for k in range(px.shape[0]):
        if sz[k] > 0.0 and px[k] == p:
            return k
    return -1


@njit(cache=True)
def _visible(side, px, sz, p):
    """Whether price ``p`` lies in the recorded part of a side (its size there is known)."""
    if _count(sz) < px.shape[0]:
        return True
    return p >= px[-1] if side == 0 else p <= px[-1]


@njit(cache=True)
def _wall_threshold(bsz, asz, k, scratch):
    c = 0
    for lv in range(bsz.shape[0]):
        if bsz[lv] > 0.0:
            scratch[c] = bsz[lv]
            c += 1
    for lv in range(asz.shape[0]):
        if asz[lv] > 0.0:
            scratch[c] = asz[lv]
            c += 1
    if c == 0:
        return np.inf
    for a in range(1, c):  # insertion sort of at most 2 * DEPTH sizes
        v = scratch[a]
        b = a - 1
        while b >= 0 and scratch[b] > v:
            scratch[b + 1] = scratch[b]
            b -= 1
        scratch[b + 1] = v
    h = c // 2
    med = scratch[h] if c % 2 == 1 else (scratch[h - 1] + scratch[h]) / 2.0
    return k * med


@njit(cache=True)
def _walls(bpx, bsz, apx, asz, sf, si, bk_px, bk_sz, wall_prev, wall_cur, pf, scratch):
    thr = _wall_threshold(bsz, asz, pf[P_WALL_K], scratch)
    for lv in range(DEPTH):
        wall_cur[0, lv] = 1 if bsz[lv] > 0.0 and bsz[lv] >= thr else 0
        wall_cur[1, lv] = 1 if asz[lv] > 0.0 and asz[lv] >= thr else 0
    if si[I_HAVE_BOOK] == 1:
        for side in range(2):
            px = bpx if side == 0 else apx
            sz = bsz if side == 0 else asz
            ppx = bk_px[side]
            psz = bk_sz[side]
            for lv in range(DEPTH):
                if wall_cur[side, lv] == 0:
                    continue
                k = _find(ppx, psz, px[lv])
                if k >= 0:
                    if wall_prev[side, k] == 0 and sz[lv] > psz[k]:
                        sf[S_WALL_ARR] += 1.0
                elif _visible(side, ppx, psz, px[lv]):
                    sf[S_WALL_ARR] += 1.0
            for k in range(DEPTH):
                if wall_prev[side, k] == 0:
                    continue
                p = ppx[k]
                lv = _find(px, sz, p)
                if lv >= 0 and wall_cur[side, lv] == 1:
                    continue
                if lv < 0 and not _visible(side, px, sz, p):
                    continue
                now = sz[lv] if lv >= 0 else 0.0
                if now >= psz[k]:
                    continue
                if si[I_TR_LO + side] <= p <= si[I_TR_HI + side]:
                    continue  # consumed by trades
                sf[S_WALL_WD] += 1.0
    wall_prev[:, :] = wall_cur


@njit(cache=True)
def _stoikov_state(bp, bq, ap, aq, n_imb, n_spread):
    if bq <= 0.0 or aq <= 0.0:
        return -1
    s = ap - bp
    if s < 1 or s > n_spread:
        return -1
    b = int(bq / (bq + aq) * n_imb)
    if b >= n_imb:
        b = n_imb - 1
    return (s - 1) * n_imb + b


@njit(cache=True, inline="always")
def _stoikov_count(stc, x, y, dm, v):
    """Add ``v`` to the counts of transition ``x -> y`` with mid move ``dm`` (half ticks):
    ``stc = [Q | T | R]``, columns ``0..ns-1`` stays, ``ns..2ns-1`` moves, ``2ns..2ns+3`` the
    move sizes -1, -1/2, +1/2, +1 tick."""
    ns = stc.shape[0]
    if dm == 0:
        stc[x, y] += v
    else:
        stc[x, ns + y] += v
        k = dm + 2 if dm < 0 else dm + 1
        stc[x, 2 * ns + k] += v


@njit(cache=True)
def _on_msg(ts, bpx, bsz, apx, asz, sf, si, bk_px, bk_sz, wall_prev, wall_cur, ofi, scratch,
            stk, stc, pf, pi):
    """Apply one message end; return True when the Stoikov estimator is due for a refit."""
    have = si[I_HAVE_BOOK] == 1
    si[I_NMSG] += 1
    si[I_NMSG_ALL] += 1
    m_lv = pi[Q_M]
    # A message that changed nothing in the recorded levels (an update deeper in the book)
    # has zero OFI increments, the same walls with no arrival or withdrawal, and the same
    # previous book: that work is skipped (exactly equivalent).
    same = have
    if have:
        for lv in range(DEPTH):
            if (bsz[lv] != bk_sz[0, lv] or asz[lv] != bk_sz[1, lv] or bpx[lv] != bk_px[0, lv]
                    or apx[lv] != bk_px[1, lv]):
                same = False
                break
    if have and not same:
        for m in range(m_lv):
            b = bpx[m] if bsz[m] > 0.0 else NEG
            pb = bk_px[0, m] if bk_sz[0, m] > 0.0 else NEG
            a = apx[m] if asz[m] > 0.0 else POS
            pa = bk_px[1, m] if bk_sz[1, m] > 0.0 else POS
            e = 0.0
            if b >= pb:
                e += bsz[m]
            if b <= pb:
                e -= bk_sz[0, m]
            if a <= pa:
                e -= asz[m]
            if a >= pa:
                e += bk_sz[1, m]
            ofi[m] += e
    sf[S_D1] += (bsz[0] + asz[0]) / 2.0
    d = 0.0
    for m in range(m_lv):
        d += bsz[m] + asz[m]
    sf[S_DM] += d / (2.0 * m_lv)
    two_sided = bsz[0] > 0.0 and asz[0] > 0.0
    # absorption: the interval's reference touch and how far the touch moved against it
    if si[I_REF_OK] == 0:
        if two_sided:
            si[I_REF_OK] = 1
            si[I_REF_BID] = bpx[0]
            si[I_REF_ASK] = apx[0]
            si[I_MIN_BID] = bpx[0]
            si[I_MAX_ASK] = apx[0]
            sf[S_REF_BSZ] = bsz[0]
            sf[S_REF_ASZ] = asz[0]
    else:
        si[I_MIN_BID] = min(si[I_MIN_BID], bpx[0] if bsz[0] > 0.0 else NEG)
        si[I_MAX_ASK] = max(si[I_MAX_ASK], apx[0] if asz[0] > 0.0 else POS)
    if pi[Q_WALLS] == 1 and not same:
        _walls(bpx, bsz, apx, asz, sf, si, bk_px, bk_sz, wall_prev, wall_cur, pf, scratch)
    # quick refills
    for side in range(2):
        if si[I_PEND_ON + side] == 0 or ts < si[I_PEND_TS + side]:
            continue
        if ts - si[I_PEND_TS + side] > pi[Q_REFILL_NS]:
            si[I_PEND_ON + side] = 0
            continue
        target = pf[P_REFILL_FRAC] * sf[S_PEND_T + side]
        if sf[S_PEND_X + side] >= target:
            px = bpx if side == 0 else apx
            sz = bsz if side == 0 else asz
            k = _find(px, sz, si[I_PEND_PX + side])
            if k >= 0 and sz[k] >= target:
                sf[S_REFILLS] += 1.0
                si[I_PEND_ON + side] = 0
    # a new message ends trade runs and trade ranges
    si[I_RUN_ON] = 0
    si[I_TR_LO] = POS
    si[I_TR_LO1] = POS
    si[I_TR_HI] = NEG
    si[I_TR_HI1] = NEG
    refit = False
    if pi[Q_STK] == 1:
        x = _stoikov_state(bpx[0], bsz[0], apx[0], asz[0], pi[Q_NIMB], pi[Q_NSPREAD])
        m2 = bpx[0] + apx[0]
        if x >= 0 and si[I_STK_PREV_X] >= 0:
            dm = m2 - si[I_STK_PREV_M2]
            if -2 <= dm <= 2:
                cap = stk.shape[1]
                h = si[I_STK_N] % cap
                if si[I_STK_N] >= cap:  # the ring is full: the oldest transition leaves
                    _stoikov_count(stc, stk[0, h], stk[1, h], stk[2, h], -1.0)
                stk[0, h] = si[I_STK_PREV_X]
                stk[1, h] = x
                stk[2, h] = dm
                _stoikov_count(stc, si[I_STK_PREV_X], x, dm, 1.0)
                si[I_STK_N] += 1
        si[I_STK_PREV_X] = x
        si[I_STK_PREV_M2] = m2
        refit = si[I_NMSG_ALL] % pi[Q_REFIT] == 0
    if not same:
        bk_px[0, :] = bpx
        bk_sz[0, :] = bsz
        bk_px[1, :] = apx
        bk_sz[1, :] = asz
    si[I_HAVE_BOOK] = 1
    return refit


@njit(cache=True)
def _close_bar(sf, si, sig, bkt):
    dp = float(si[I_BAR_LAST] - si[I_PREV_CLOSE])
    si[I_PREV_CLOSE] = si[I_BAR_LAST]
    sig[si[I_SIG_N] % sig.shape[0]] = dp
    si[I_SIG_N] += 1
    n = min(si[I_SIG_N], sig.shape[0])
    mean = 0.0
    for k in range(n):
        mean += sig[k]
    mean /= n
    var = 0.0
    for k in range(n):
        var += (sig[k] - mean) ** 2
    sd = math.sqrt(var / n)
    fb = 0.5 if sd == 0.0 else 0.5 * math.erfc(-dp / (sd * math.sqrt(2.0)))
    rem = sf[S_BAR_VOL]
    si[I_BAR_ON] = 0
    size = sf[S_BKT_SIZE]
    if size <= 0.0:
        return
    while rem > 0.0:
        space = size - sf[S_BKT_FILL]
        if rem >= space:
            buy = sf[S_BKT_BUY] + space * fb
            bkt[si[I_BKT_N] % bkt.shape[0]] = abs(size - 2.0 * buy)
            si[I_BKT_N] += 1
            sf[S_BKT_FILL] = 0.0
            sf[S_BKT_BUY] = 0.0
            rem -= space
        else:
            sf[S_BKT_FILL] += rem
            sf[S_BKT_BUY] += rem * fb
            rem = 0.0


@njit(cache=True)
def _on_trade(ts, px, size, side, shown, sf, si, sig, bkt, prof_bin, prof_sz, pf, pi):
    passive = 1 - side
    if side == 0:
        sf[S_BUY] += size
    else:
        sf[S_SELL] += size
    # hidden volume: executed beyond the displayed size within a run
    if si[I_RUN_ON] == 1 and si[I_RUN_PX] == px and si[I_RUN_SIDE] == side:
        sf[S_RUN_CUM] += size
    else:
        si[I_RUN_ON] = 1
        si[I_RUN_PX] = px
        si[I_RUN_SIDE] = side
        sf[S_RUN_CUM] = size
    hid = min(size, sf[S_RUN_CUM] - shown)
    if hid > 0.0:
        sf[S_HIDDEN] += hid
    si[I_TR_LO + passive] = min(si[I_TR_LO + passive], px)
    si[I_TR_HI + passive] = max(si[I_TR_HI + passive], px)
    # pending refill of the passive side
    if si[I_PEND_ON + passive] == 1 and si[I_PEND_PX + passive] == px:
        sf[S_PEND_X + passive] += size
        si[I_PEND_TS + passive] = ts
    elif shown > 0.0:
        si[I_PEND_ON + passive] = 1
        si[I_PEND_PX + passive] = px
        si[I_PEND_TS + passive] = ts
        sf[S_PEND_T + passive] = shown
        sf[S_PEND_X + passive] = size
    else:
        si[I_PEND_ON + passive] = 0
    if pi[Q_VPIN] == 1:
        slot = ts // pi[Q_BAR_NS]
        if si[I_BAR_ON] == 1 and slot > si[I_BAR_SLOT]:
            _close_bar(sf, si, sig, bkt)
        if si[I_BAR_ON] == 0:
            si[I_BAR_ON] = 1
            si[I_BAR_SLOT] = slot
            sf[S_BAR_VOL] = 0.0
        sf[S_BAR_VOL] += size
        si[I_BAR_LAST] = px
        if si[I_HAVE_CLOSE] == 0:
            si[I_HAVE_CLOSE] = 1
            si[I_PREV_CLOSE] = px
        if pf[P_BKT_CFG] <= 0.0 and sf[S_BKT_SIZE] <= 0.0:
            si[I_NTRADES] += 1
            sf[S_AUTO_VOL] += size
            if si[I_NTRADES] >= pi[Q_AUTO]:
                sf[S_BKT_SIZE] = sf[S_AUTO_VOL]
    if pi[Q_PROF] == 1:
        if si[I_BIN_W] == 0:
            si[I_BIN_W] = max(1, int(math.floor(px * pf[P_BIN_BPS] * 1e-4 + 0.5)))
        h = si[I_PROF_N] % prof_bin.shape[0]
        prof_bin[h] = px // si[I_BIN_W]
        prof_sz[h] = size
        si[I_PROF_N] += 1


@njit(cache=True)
def _run(m_ts, m_bpx, m_bsz, m_apx, m_asz, t_ts, t_px, t_sz, t_side, t_shown, t_msg, i, j,
         sf, si, bk_px, bk_sz, wall_prev, wall_cur, ofi, scratch, sig, bkt, prof_bin, prof_sz,
         stk, stc, pf, pi):
    """Replay messages from ``i`` and trades from ``j`` in stream order.

    Returns ``(i, j, refit)``: where it stopped and whether it stopped for a Stoikov refit.
    """
    n = m_ts.shape[0]
    nt = t_ts.shape[0]
    while True:
        while j < nt and t_msg[j] <= i:
            _on_trade(t_ts[j], t_px[j], t_sz[j], np.int64(t_side[j]), t_shown[j], sf, si, sig, bkt,
                      prof_bin, prof_sz, pf, pi)
            j += 1
        if i >= n:
            return i, j, False
        refit = _on_msg(m_ts[i], m_bpx[i], m_bsz[i], m_apx[i], m_asz[i], sf, si, bk_px, bk_sz,
                        wall_prev, wall_cur, ofi, scratch, stk, stc, pf, pi)
        i += 1
        if refit:
            return i, j, True


@njit(cache=True)
def _profile(prof_bin, prof_sz, n_all, w, va, mid, out):
    n = min(n_all, prof_bin.shape[0])
    if n == 0:
        out[0] = out[1] = out[2] = 0.0
        return
    cap = prof_bin.shape[0]
    start = n_all - n
    lo = prof_bin[start % cap]
    hi = lo
    for k in range(start, n_all):
        b = prof_bin[k % cap]
        lo = min(lo, b)
        hi = max(hi, b)
    h = np.zeros(hi - lo + 1)
    for k in range(start, n_all):  # oldest first
        h[prof_bin[k % cap] - lo] += prof_sz[k % cap]
    total = 0.0
    poc = 0
    for b in range(h.shape[0]):
        total += h[b]
        if h[b] > h[poc]:
            poc = b
    a, z, acc = poc, poc, h[poc]
    while acc < va * total:
        up = h[z + 1] if z + 1 < h.shape[0] else -1.0
        dn = h[a - 1] if a > 0 else -1.0
        if up < 0.0 and dn < 0.0:
            break
        if up >= dn:
            z += 1
            acc += up
        else:
            a -= 1
            acc += dn
    half = (w - 1) / 2.0
    out[0] = ((lo + poc) * w + half - mid) / mid * 1e4
    out[1] = ((lo + z) * w + half - mid) / mid * 1e4
    out[2] = ((lo + a) * w + half - mid) / mid * 1e4


@njit(cache=True)
def _reset_interval(sf, si, ofi, bk_px, bk_sz):
    for k in (S_BUY, S_SELL, S_D1, S_DM, S_HIDDEN, S_REFILLS, S_WALL_ARR, S_WALL_WD, S_L3):
        sf[k] = 0.0
    ofi[:] = 0.0
    si[I_NMSG] = 0
    if bk_sz[0, 0] > 0.0 and bk_sz[1, 0] > 0.0:
        si[I_REF_OK] = 1
        si[I_REF_BID] = bk_px[0, 0]
        si[I_REF_ASK] = bk_px[1, 0]
        si[I_MIN_BID] = bk_px[0, 0]
        si[I_MAX_ASK] = bk_px[1, 0]
        sf[S_REF_BSZ] = bk_sz[0, 0]
        sf[S_REF_ASZ] = bk_sz[1, 0]
    else:
        si[I_REF_OK] = 0


@njit(cache=True)
def _decide(sf, si, bk_px, bk_sz, ofi, scratch, bkt, prof_bin, prof_sz, g, mids, rets, vb, vs,
            pf, pi, w, out):
    """Fill ``out`` (every slot) at a decision point and close the interval; False if one-sided."""
    bpx, bsz, apx, asz = bk_px[0], bk_sz[0], bk_px[1], bk_sz[1]
    nb, na = _count(bsz), _count(asz)
    if nb == 0 or na == 0:
        _reset_interval(sf, si, ofi, bk_px, bk_sz)
        return False
    pb, pa, qb, qa = bpx[0], apx[0], bsz[0], asz[0]
    mid = (pb + pa) / 2.0
    out[F_SPREAD] = (pa - pb) / mid * 1e4
    out[F_WMID] = ((pb * qa + pa * qb) / (qa + qb) - mid) / mid * 1e4
    nl = min(pi[Q_VAMP_L], nb, na)
    num = 0.0
    den = 0.0
    for k in range(nl):
        num += bpx[k] * asz[k] + apx[k] * bsz[k]
        den += asz[k] + bsz[k]
    out[F_VAMP] = (num / den - mid) / mid * 1e4
    for r in range(3):
        depth = 1 if r == 0 else (pi[Q_IMB_N] if r == 1 else DEPTH)
        sb = 0.0
        sa = 0.0
        for k in range(depth):
            sb += bsz[k]
            sa += asz[k]
        out[F_IMB1 + r] = (sb - sa) / (sb + sa)
    # order flow
    nmsg = si[I_NMSG]
    d1 = sf[S_D1] / nmsg if nmsg > 0 else (qb + qa) / 2.0
    out[F_OFI] = ofi[0] / d1 if d1 > 0.0 else 0.0
    m_lv = pi[Q_M]
    if nmsg > 0:
        dm = sf[S_DM] / nmsg
    else:
        dm = 0.0
        for m in range(m_lv):
            dm += bsz[m] + asz[m]
        dm /= 2.0 * m_lv
    acc = 0.0
    for m in range(m_lv):
        acc += w[m] * ofi[m]
    out[F_MLOFI] = acc / dm if dm > 0.0 else 0.0
    buy, sell = sf[S_BUY], sf[S_SELL]
    vol = buy + sell
    out[F_TFI] = (buy - sell) / vol if vol > 0.0 else 0.0
    out[F_HIDDEN] = sf[S_HIDDEN] / vol if vol > 0.0 else 0.0
    out[F_REFILL] = sf[S_REFILLS]
    out[F_L3] = sf[S_L3]
    out[F_WALL_ARR] = sf[S_WALL_ARR]
    out[F_WALL_WD] = sf[S_WALL_WD]
    out[F_EVENTS] = math.log1p(nmsg)
    # Stoikov micro-price
    out[F_STOIKOV] = 0.0
    if pi[Q_STK] == 1:
        x = _stoikov_state(pb, qb, pa, qa, pi[Q_NIMB], pi[Q_NSPREAD])
        if x >= 0:
            out[F_STOIKOV] = g[x] / mid * 1e4
    # VPIN
    nbk = min(si[I_BKT_N], bkt.shape[0])
    out[F_VPIN] = 0.0
    if pi[Q_VPIN] == 1 and nbk > 0:
        tot = 0.0
        for k in range(nbk):
            tot += bkt[k]
        out[F_VPIN] = tot / (nbk * sf[S_BKT_SIZE])
    # volume profile
    if pi[Q_PROF] == 1:
        _profile(prof_bin, prof_sz, si[I_PROF_N], si[I_BIN_W], pf[P_VA], mid, scratch)
        out[F_POC], out[F_VAH], out[F_VAL] = scratch[0], scratch[1], scratch[2]
    # walls
    out[F_WALL_BID] = 0.0
    out[F_WALL_ASK] = 0.0
    if pi[Q_WALLS] == 1:
        thr = _wall_threshold(bsz, asz, pf[P_WALL_K], scratch)
        for k in range(nb):
            if bsz[k] >= thr:
                out[F_WALL_BID] = (mid - bpx[k]) / mid * 1e4
                break
        for k in range(na):
            if asz[k] >= thr:
                out[F_WALL_ASK] = (apx[k] - mid) / mid * 1e4
                break
    # absorption
    bid_abs = 0
    ask_abs = 0
    if si[I_REF_OK] == 1:
        if sell > 0.0 and sell >= pf[P_ABS_K] * sf[S_REF_BSZ] and si[I_MIN_BID] >= si[I_REF_BID]:
            bid_abs = 1
        if buy > 0.0 and buy >= pf[P_ABS_K] * sf[S_REF_ASZ] and si[I_MAX_ASK] <= si[I_REF_ASK]:
            ask_abs = 1
    out[F_ABSORB] = bid_abs - ask_abs
    # decision-level history: mids, returns, per-interval volumes
    cm = mids.shape[0]
    nm = si[I_MID_N]
    out[F_RET1] = math.log(mid / mids[(nm - 1) % cm]) * 1e4 if nm >= 1 else 0.0
    out[F_RET5] = math.log(mid / mids[(nm - 5) % cm]) * 1e4 if nm >= 5 else 0.0
    mids[nm % cm] = mid
    si[I_MID_N] += 1
    rets[si[I_RET_N] % rets.shape[0]] = out[F_RET1]
    si[I_RET_N] += 1
    nr = min(si[I_RET_N], rets.shape[0])
    ss = 0.0
    for k in range(nr):
        ss += rets[k] * rets[k]
    out[F_RV] = math.sqrt(ss / nr)
    ce = vb.shape[0]
    ne = si[I_EXH_N]
    vb[ne % ce] = buy
    vs[ne % ce] = sell
    si[I_EXH_N] += 1
    exh = 0
    if ne + 1 >= ce:
        stall = abs(math.log(mid / mids[(nm - ce + 1) % cm])) * 1e4 <= pf[P_STALL]
        if stall:
            for side in range(2):
                v = vb if side == 0 else vs
                ok = v[(ne + 1) % ce] > 0.0  # the oldest of the last ce intervals
                for k in range(1, ce):
                    ok = ok and v[(ne + 1 + k) % ce] < v[(ne + k) % ce]
                if ok:
                    exh += -1 if side == 0 else 1
    out[F_EXHAUST] = exh
    _reset_interval(sf, si, ofi, bk_px, bk_sz)
    return True


def _stoikov_counts(stk: np.ndarray, n: int, ns: int) -> np.ndarray:
    """Transition counts ``[Q | T | R]`` of the first ``n`` stored transitions (the plain
    recount; the engine keeps the same counts incrementally)."""
    x, y, dm = (stk[r, :n].astype(np.int64) for r in range(3))
    stay = dm == 0
    moved = ~stay
    qc = np.bincount(x[stay] * ns + y[stay], minlength=ns * ns).reshape(ns, ns)
    tc = np.bincount(x[moved] * ns + y[moved], minlength=ns * ns).reshape(ns, ns)
    kidx = np.searchsorted(np.array([-2, -1, 1, 2]), dm[moved])
    rc = np.bincount(x[moved] * 4 + kidx, minlength=ns * 4).reshape(ns, 4)
    return np.hstack([qc, tc, rc]).astype(float)


def _stoikov_solve(
    counts: np.ndarray, n_imb: int, n_spread: int, iterations: int
) -> np.ndarray:
    """Stoikov's adjustment ``g`` (ticks, per state) from transition counts, symmetrised."""
    ns = n_imb * n_spread
    s = np.arange(ns)
    mirror = (s // n_imb) * n_imb + (n_imb - 1 - s % n_imb)  # I -> 1 - I (an involution)
    qc, tc, rc = counts[:, :ns], counts[:, ns : 2 * ns], counts[:, 2 * ns :]
    # add the mirror image of every transition: x, y -> mirror; dM -> -dM
    qc = qc + qc[np.ix_(mirror, mirror)]
    tc = tc + tc[np.ix_(mirror, mirror)]
    rc = rc + rc[mirror][:, ::-1]
    tot = qc.sum(1) + rc.sum(1)
    norm = np.where(tot > 0, tot, 1.0)[:, None]
    q, t, r = qc / norm, tc / norm, rc / norm
    a = np.eye(ns) - q
    g1 = np.linalg.lstsq(a, r @ _K_MOVES, rcond=1e-10)[0]
    b = np.linalg.lstsq(a, t, rcond=1e-10)[0]
    g = g1.copy()
    term = g1
    for _ in range(iterations):
        term = b @ term
        g += term
    return g


def _stoikov_fit(
    stk: np.ndarray, n: int, n_imb: int, n_spread: int, iterations: int
) -> np.ndarray:
    """Fit Stoikov's adjustment ``g`` (ticks, per state) on ``n`` stored transitions."""
    return _stoikov_solve(_stoikov_counts(stk, n, n_imb * n_spread), n_imb, n_spread, iterations)


class FeatureEngine:
    """Streaming feature state of one symbol (definitions in the module docstring).

    Args:
        cfg: ``FeaturesConfig``: switches and parameters.
        tick_size: Price of one tick. Every feature is a ratio of prices or a count, so the
            tick size cancels out; it is kept (``self.tick_size``) for callers converting
            distances back to prices.

    Example:
        >>> eng = FeatureEngine(FeaturesConfig(window=8), tick_size=0.1)
        >>> msgs, trades = reference_frames(L2Book(), rows)
        >>> eng.update(msgs, trades)
        >>> vec = eng.vector()
        >>> eng.window_array().shape
        (8, 27)
    """

    def __init__(self, cfg: FeaturesConfig, tick_size: float = 1.0) -> None:
        try:
            tick = float(tick_size)
        except (TypeError, ValueError):
            tick = math.nan
        if not (math.isfinite(tick) and tick > 0):
            raise ValidationError("tick_size", "a finite number > 0", tick_size)
        self.cfg = cfg
        self.tick_size = tick
        self.names, self.spec_hash = feature_spec(cfg)
        self._slots = np.array([s for s, _n in _enabled(cfg)], dtype=np.int64)
        c = cfg
        m_lv = c.mlofi_levels if c.mlofi else 1
        self._p = np.zeros(N_P)
        self._p[[P_WALL_K, P_REFILL_FRAC, P_BKT_CFG, P_BIN_BPS, P_VA, P_ABS_K, P_STALL]] = (
            c.wall_k, c.refill_frac, c.vpin_bucket_volume, c.profile_bin_bps,
            c.profile_value_area, c.absorption_k, c.exhaustion_stall_bps,
        )
        self._q = np.zeros(N_Q, dtype=np.int64)
        self._q[[Q_M, Q_WALLS, Q_STK, Q_VPIN, Q_PROF, Q_IMB_N, Q_VAMP_L, Q_NIMB, Q_NSPREAD,
                 Q_REFIT, Q_AUTO, Q_BAR_NS, Q_REFILL_NS]] = (
            m_lv, c.walls, c.stoikov, c.vpin, c.volume_profile, c.imbalance_levels,
            c.vamp_levels, c.stoikov_imbalance_buckets, c.stoikov_spread_states,
            c.stoikov_refit_every, c.vpin_auto_trades, round(c.vpin_bar_ms * 1e6),
            round(c.refill_ms * 1e6),
        )
        w = np.full(DEPTH, 1.0 / m_lv)
        if c.mlofi_weights is not None:
            w[:m_lv] = c.mlofi_weights
        self._w = w
        # state: scalars, the last book, rings (preallocated; nothing grows while streaming)
        self._s = np.zeros(N_S)
        self._s[S_BKT_SIZE] = c.vpin_bucket_volume  # 0: fixed later from the first trades
        self._i = np.zeros(N_I, dtype=np.int64)
        self._i[[I_TR_LO, I_TR_LO1, I_TR_HI, I_TR_HI1, I_STK_PREV_X]] = (POS, POS, NEG, NEG, -1)
        self._bk_px = np.zeros((2, DEPTH), dtype=np.int64)
        self._bk_sz = np.zeros((2, DEPTH))
        self._wall_prev = np.zeros((2, DEPTH), dtype=np.int8)
        self._wall_cur = np.zeros((2, DEPTH), dtype=np.int8)
        self._ofi = np.zeros(DEPTH)
        self._scratch = np.zeros(2 * DEPTH)
        self._sig = np.zeros(c.vpin_sigma_bars if c.vpin else 1)
        self._bkt = np.zeros(c.vpin_buckets if c.vpin else 1)
        n_prof = c.profile_trades if c.volume_profile else 1
        self._prof_bin = np.zeros(n_prof, dtype=np.int64)
        self._prof_sz = np.zeros(n_prof)
        self._stk = np.zeros((3, c.stoikov_history if c.stoikov else 1), dtype=np.int32)
        ns = c.stoikov_imbalance_buckets * c.stoikov_spread_states
        self._stc = np.zeros((ns, 2 * ns + 4))  # transition counts of the ring, kept in step
        self._g = np.zeros(c.stoikov_imbalance_buckets * c.stoikov_spread_states)
        self._mids = np.zeros(max(6, c.exhaustion_intervals))
        self._rets = np.zeros(c.rv_window)
        self._vb = np.zeros(c.exhaustion_intervals)
        self._vs = np.zeros(c.exhaustion_intervals)
        self._full = np.zeros(N_SLOTS)
        self._win = np.zeros((c.window, len(self.names)), dtype=np.float32)
        self._win_n = 0
        self.refits = 0

    # streaming --------------------------------------------------------------------------------
    def update(self, msgs: np.ndarray, trades: np.ndarray, l3_iceberg_refills: int = 0) -> None:
        """Consume one batch of frames (``MSG_DTYPE`` and ``TRADE_DTYPE`` arrays).

        Args:
            msgs: Message ends of the batch, in order.
            trades: Trades of the batch, in order; ``msg`` non-decreasing in ``0..len(msgs)``.
            l3_iceberg_refills: Iceberg refills the L3 book detected exactly in this batch.

        Raises:
            ValidationError: A dtype, the ``msg`` column or the refill count is invalid.
        """
        if msgs.dtype != MSG_DTYPE:
            raise ValidationError("msgs.dtype", "MSG_DTYPE", str(msgs.dtype))
        if trades.dtype != TRADE_DTYPE:
            raise ValidationError("trades.dtype", "TRADE_DTYPE", str(trades.dtype))
        tm = trades["msg"]
        if len(tm) and (tm[0] < 0 or tm[-1] > len(msgs) or np.any(np.diff(tm) < 0)):
            raise ValidationError(
                "trades.msg", f"non-decreasing within 0..{len(msgs)}", tm[:8].tolist()
            )
        if l3_iceberg_refills < 0:
            raise ValidationError("l3_iceberg_refills", ">= 0", l3_iceberg_refills)
        i = j = 0
        while True:
            i, j, refit = _run(
                msgs["ts_event"], msgs["bid_px"], msgs["bid_sz"], msgs["ask_px"], msgs["ask_sz"],
                trades["ts_event"], trades["price"], trades["size"], trades["side"],
                trades["shown"], tm, i, j, self._s, self._i, self._bk_px, self._bk_sz,
                self._wall_prev, self._wall_cur, self._ofi, self._scratch, self._sig, self._bkt,
                self._prof_bin, self._prof_sz, self._stk, self._stc, self._p, self._q,
            )
            if not refit:
                break
            self._refit()
        self._s[S_L3] += l3_iceberg_refills

    def _refit(self) -> None:
        c = self.cfg
        n = int(min(self._i[I_STK_N], self._stk.shape[1]))
        if n:
            # the counts are kept in step with the ring by the kernel: a refit is two
            # states x states least-squares solves, whatever the history length
            self._g[:] = _stoikov_solve(
                self._stc, c.stoikov_imbalance_buckets, c.stoikov_spread_states,
                c.stoikov_iterations,
            )
            self.refits += 1

    def vector(self) -> np.ndarray | None:
        """Return the feature vector (float32, ``names`` order) and close the interval.

        The vector is also pushed into the window. None (nothing pushed; the interval is
        still closed) when either side of the book is empty.
        """
        ok = _decide(
            self._s, self._i, self._bk_px, self._bk_sz, self._ofi, self._scratch, self._bkt,
            self._prof_bin, self._prof_sz, self._g, self._mids, self._rets, self._vb, self._vs,
            self._p, self._q, self._w, self._full,
        )
        if not ok:
            return None
        vec = self._full[self._slots].astype(np.float32)
        self._win[self._win_n % len(self._win)] = vec
        self._win_n += 1
        return vec

    def book_levels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return the book at the last message: bid prices (ticks), bid sizes, ask prices, ask
        sizes, ``DEPTH`` each, best first (empty levels price 0, size 0). Views, not copies."""
        return self._bk_px[0], self._bk_sz[0], self._bk_px[1], self._bk_sz[1]

    def window_array(self) -> np.ndarray:
        """Return the last ``window`` vectors ``(window, n_features)`` float32, oldest first.

        Zero-padded at the front while cold.
        """
        t = len(self._win)
        n = min(self._win_n, t)
        out = np.zeros_like(self._win)
        if n:
            idx = np.arange(self._win_n - n, self._win_n) % t
            out[t - n :] = self._win[idx]
        return out

    def is_warm(self) -> bool:
        """Whether the window is full."""
        return self._win_n >= len(self._win)

    def state_bytes(self) -> int:
        """Return the bytes held by the feature state's arrays."""
        return int(sum(a.nbytes for a in vars(self).values() if isinstance(a, np.ndarray)))
