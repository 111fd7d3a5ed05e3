"""The compiled feature library against a plain-Python reference, on real Binance recordings.

Frames come from ``reference_frames`` (plain-Python book) over whole recorded sessions. The
reference below walks the same messages and trades one by one with lists, dicts and the
standard library, straight from the definitions in ``actors.book.features``; every feature of
every decision point must match. A second test feeds the same stream cut into different
batches and requires bit-identical vectors at the same decision points.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

import numpy as np
import pytest

from actors.book.book import L2Book
from actors.book.features import FeatureEngine
from actors.book.frames import DEPTH, reference_frames
from actors.feed.binance import read_session
from cluster.config import FeaturesConfig
from jobs.bench import BINANCE_DATA, BINANCE_SESSIONS

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not BINANCE_DATA.exists(), reason=f"real data {BINANCE_DATA} is absent"),
]

SESSIONS = ("usdm-btc-0808", "spot-eth-0808")
# small rings and frequent refits so that every ring wraps within a session
CFG = FeaturesConfig(
    window=8, rv_window=8, stoikov_history=1_500, stoikov_refit_every=250,
    stoikov_iterations=8, mlofi_levels=5, mlofi_weights=(0.4, 0.25, 0.15, 0.12, 0.08),
    vpin_bar_ms=500.0, vpin_buckets=20, vpin_sigma_bars=20, vpin_auto_trades=100,
    profile_trades=600, profile_bin_bps=0.5, wall_k=8.0, refill_ms=300.0, absorption_k=0.5,
    exhaustion_intervals=3, exhaustion_stall_bps=0.5,
)
INF = float("inf")


# ------------------------------------------------------------------------------------------
# plain reference
# ------------------------------------------------------------------------------------------
def levels(px, sz) -> list[tuple[int, float]]:
    return [(int(p), float(s)) for p, s in zip(px, sz, strict=True) if s > 0]


def visible(side: int, lv: list[tuple[int, float]], p: int) -> bool:
    if len(lv) < DEPTH:
        return True
    return p >= lv[-1][0] if side == 0 else p <= lv[-1][0]


def stoikov_fit(trans, n_imb: int, n_spread: int, iterations: int) -> np.ndarray:
    ns = n_imb * n_spread
    moves = {-2: 0, -1: 1, 1: 2, 2: 3}
    qc = [[0.0] * ns for _ in range(ns)]
    tc = [[0.0] * ns for _ in range(ns)]
    rc = [[0.0] * 4 for _ in range(ns)]

    def mirror(s: int) -> int:
        spread, bucket = divmod(s, n_imb)
        return spread * n_imb + n_imb - 1 - bucket

    for x, y, dm in trans:
        for a, b, d in ((x, y, dm), (mirror(x), mirror(y), -dm)):
            if d == 0:
                qc[a][b] += 1
            else:
                tc[a][b] += 1
                rc[a][moves[d]] += 1
    q, t, r = np.zeros((ns, ns)), np.zeros((ns, ns)), np.zeros((ns, 4))
    for a in range(ns):
        tot = sum(qc[a]) + sum(rc[a])
        if tot:
            q[a] = [c / tot for c in qc[a]]
            t[a] = [c / tot for c in tc[a]]
            r[a] = [c / tot for c in rc[a]]
    inv = np.linalg.pinv(np.eye(ns) - q, rcond=1e-10)
    g1 = inv @ (r @ np.array([-1.0, -0.5, 0.5, 1.0]))
    b = inv @ t
    g = g1
    for _ in range(iterations):
        g = g1 + b @ g
    return g


class Reference:
    """One event at a time, straight from the definitions."""

    def __init__(self, cfg: FeaturesConfig) -> None:
        self.c = cfg
        self.prev: tuple[list, list] | None = None  # (bids, asks) after the last message
        self.prev_walls: list[set[int]] = [set(), set()]
        self.trade_px: list[list[int]] = [[], []]  # passive side -> trade prices since msg
        self.run: tuple[int, int] | None = None
        self.run_cum = 0.0
        self.pending: list[dict | None] = [None, None]
        self.trans: deque = deque(maxlen=cfg.stoikov_history)
        self.prev_state: tuple[int, int] | None = None
        self.g = [0.0] * (cfg.stoikov_imbalance_buckets * cfg.stoikov_spread_states)
        self.msgs_seen = 0
        self.bar: dict | None = None
        self.prev_close: int | None = None
        self.dps: deque = deque(maxlen=cfg.vpin_sigma_bars)
        self.bucket_size = cfg.vpin_bucket_volume
        self.auto: list[float] = []
        self.fill = self.buy_in_bucket = 0.0
        self.buckets: deque = deque(maxlen=cfg.vpin_buckets)
        self.profile: deque = deque(maxlen=cfg.profile_trades)
        self.bin_w: int | None = None
        self.mids: list[float] = []
        self.rets: list[float] = []
        self.vols: list[tuple[float, float]] = []
        self.start_interval()

    def start_interval(self) -> None:
        self.n_msgs = 0
        self.buy = self.sell = self.hidden = 0.0
        self.refills = self.arrivals = self.withdrawals = 0
        self.ofi = [0.0] * DEPTH
        self.depth1: list[float] = []
        self.depth_m: list[float] = []
        self.ref = None
        self.touches: list[tuple[float, float]] = []
        if self.prev and self.prev[0] and self.prev[1]:
            self.ref = (self.prev[0][0], self.prev[1][0])

    # events ------------------------------------------------------------------------------
    def on_trade(self, tr) -> None:
        ts, px, size, side, shown = int(tr[0]), int(tr[1]), float(tr[2]), int(tr[3]), float(tr[4])
        passive = 1 - side
        if side == 0:
            self.buy += size
        else:
            self.sell += size
        if self.run == (px, side):
            self.run_cum += size
        else:
            self.run, self.run_cum = (px, side), size
        self.hidden += max(0.0, min(size, self.run_cum - shown))
        self.trade_px[passive].append(px)
        pend = self.pending[passive]
        if pend is not None and pend["px"] == px:
            pend["x"] += size
            pend["ts"] = ts
        else:
            self.pending[passive] = (
                {"px": px, "target": shown, "x": size, "ts": ts} if shown > 0 else None
            )
        self.vpin_trade(ts, px, size)
        if self.bin_w is None:
            self.bin_w = max(1, math.floor(px * self.c.profile_bin_bps * 1e-4 + 0.5))
        self.profile.append((px // self.bin_w, size))

    def vpin_trade(self, ts: int, px: int, size: float) -> None:
        slot = ts // round(self.c.vpin_bar_ms * 1e6)
        if self.bar is not None and slot > self.bar["slot"]:
            self.close_bar()
        if self.bar is None:
            self.bar = {"slot": slot, "vol": 0.0}
        self.bar["vol"] += size
        self.bar["last"] = px
        if self.prev_close is None:
            self.prev_close = px
        if self.bucket_size == 0:
            self.auto.append(size)
            if len(self.auto) == self.c.vpin_auto_trades:
                self.bucket_size = sum(self.auto)

    def close_bar(self) -> None:
        dp = self.bar["last"] - self.prev_close
        self.prev_close = self.bar["last"]
        self.dps.append(dp)
        sd = statistics.pstdev(self.dps)
        frac = 0.5 if sd == 0 else statistics.NormalDist().cdf(dp / sd)
        vol = self.bar["vol"]
        self.bar = None
        if self.bucket_size == 0:
            return
        while vol > 0:
            space = self.bucket_size - self.fill
            take = min(vol, space)
            self.fill += take
            self.buy_in_bucket += take * frac
            vol -= take
            if take == space:
                sell = self.bucket_size - self.buy_in_bucket
                self.buckets.append(abs(sell - self.buy_in_bucket))
                self.fill = self.buy_in_bucket = 0.0

    def on_msg(self, m) -> None:
        c = self.c
        ts = int(m["ts_event"])
        bids, asks = levels(m["bid_px"], m["bid_sz"]), levels(m["ask_px"], m["ask_sz"])
        self.n_msgs += 1
        self.msgs_seen += 1
        mlv = c.mlofi_levels
        if self.prev is not None:
            pb_lv, pa_lv = self.prev
            for k in range(mlv):
                b, qb = bids[k] if k < len(bids) else (-INF, 0.0)
                pb, pqb = pb_lv[k] if k < len(pb_lv) else (-INF, 0.0)
                a, qa = asks[k] if k < len(asks) else (INF, 0.0)
                pa, pqa = pa_lv[k] if k < len(pa_lv) else (INF, 0.0)
                self.ofi[k] += (
                    (qb if b >= pb else 0.0) - (pqb if b <= pb else 0.0)
                    - (qa if a <= pa else 0.0) + (pqa if a >= pa else 0.0)
                )
        size = lambda lv, k: lv[k][1] if k < len(lv) else 0.0  # noqa: E731
        self.depth1.append((size(bids, 0) + size(asks, 0)) / 2)
        self.depth_m.append(sum(size(bids, k) + size(asks, k) for k in range(mlv)) / (2 * mlv))
        if self.ref is None and bids and asks:
            self.ref = (bids[0], asks[0])
        elif self.ref is not None:
            self.touches.append((bids[0][0] if bids else -INF, asks[0][0] if asks else INF))
        self.walls(bids, asks)
        for side, lv in ((0, bids), (1, asks)):
            pend = self.pending[side]
            if pend is None or ts < pend["ts"]:
                continue
            if ts - pend["ts"] > round(c.refill_ms * 1e6):
                self.pending[side] = None
                continue
            target = c.refill_frac * pend["target"]
            if pend["x"] >= target and dict(lv).get(pend["px"], 0.0) >= target:
                self.refills += 1
                self.pending[side] = None
        self.run = None
        self.trade_px = [[], []]
        state = self.stoikov_state(bids, asks)
        if state is not None and self.prev_state is not None:
            dm = state[1] - self.prev_state[1]
            if abs(dm) <= 2:
                self.trans.append((self.prev_state[0], state[0], dm))
        self.prev_state = state
        if self.msgs_seen % c.stoikov_refit_every == 0 and self.trans:
            self.g = list(
                stoikov_fit(self.trans, c.stoikov_imbalance_buckets, c.stoikov_spread_states,
                            c.stoikov_iterations)
            )
        self.prev = (bids, asks)

    def stoikov_state(self, bids, asks) -> tuple[int, int] | None:
        if not bids or not asks:
            return None
        s = asks[0][0] - bids[0][0]
        if not 1 <= s <= self.c.stoikov_spread_states:
            return None
        n = self.c.stoikov_imbalance_buckets
        bucket = min(int(bids[0][1] / (bids[0][1] + asks[0][1]) * n), n - 1)
        return (s - 1) * n + bucket, bids[0][0] + asks[0][0]

    def wall_prices(self, bids, asks) -> list[dict[int, float]]:
        sizes = [s for _p, s in bids] + [s for _p, s in asks]
        thr = self.c.wall_k * statistics.median(sizes) if sizes else INF
        return [{p: s for p, s in lv if s >= thr} for lv in (bids, asks)]

    def walls(self, bids, asks) -> None:
        now = self.wall_prices(bids, asks)
        if self.prev is not None:
            for side, (lv, plv) in enumerate(zip((bids, asks), self.prev, strict=True)):
                cur, prev = dict(lv), dict(plv)
                for p in now[side]:
                    if p in self.prev_walls[side]:
                        continue
                    if (p in prev and cur[p] > prev[p]) or (
                        p not in prev and visible(side, plv, p)
                    ):
                        self.arrivals += 1
                for p in self.prev_walls[side]:
                    if p in now[side] or (p not in cur and not visible(side, lv, p)):
                        continue
                    if cur.get(p, 0.0) >= prev[p]:
                        continue
                    traded = self.trade_px[side]
                    if traded and min(traded) <= p <= max(traded):
                        continue
                    self.withdrawals += 1
        self.prev_walls = [set(now[0]), set(now[1])]

    # decision ----------------------------------------------------------------------------
    def decide(self) -> dict[str, float] | None:
        c = self.c
        bids, asks = self.prev if self.prev else ([], [])
        if not bids or not asks:
            self.start_interval()
            return None
        (pb, qb), (pa, qa) = bids[0], asks[0]
        mid = (pb + pa) / 2
        bps = lambda x: x / mid * 1e4  # noqa: E731
        f: dict[str, float] = {"spread_bps": bps(pa - pb)}
        f["microprice_dev_bps"] = bps((pb * qa + pa * qb) / (qa + qb) - mid)
        n = min(c.vamp_levels, len(bids), len(asks))
        num = sum(bids[k][0] * asks[k][1] + asks[k][0] * bids[k][1] for k in range(n))
        den = sum(bids[k][1] + asks[k][1] for k in range(n))
        f["vamp_dev_bps"] = bps(num / den - mid)
        for depth in (1, c.imbalance_levels, DEPTH):
            sb, sa = sum(s for _p, s in bids[:depth]), sum(s for _p, s in asks[:depth])
            f[f"imbalance_l{depth}"] = (sb - sa) / (sb + sa)
        d1 = statistics.fmean(self.depth1) if self.depth1 else (qb + qa) / 2
        f["ofi_norm"] = self.ofi[0] / d1
        weights = c.mlofi_weights or [1 / c.mlofi_levels] * c.mlofi_levels
        dm = statistics.fmean(self.depth_m) if self.depth_m else sum(
            (bids[k][1] if k < len(bids) else 0) + (asks[k][1] if k < len(asks) else 0)
            for k in range(c.mlofi_levels)
        ) / (2 * c.mlofi_levels)
        f["mlofi_norm"] = sum(w * o for w, o in zip(weights, self.ofi, strict=False)) / dm
        vol = self.buy + self.sell
        f["trade_imbalance"] = (self.buy - self.sell) / vol if vol else 0.0
        f["hidden_vol_frac"] = self.hidden / vol if vol else 0.0
        f["refill_count"] = self.refills
        f["l3_iceberg_refills"] = 0.0
        f["wall_arrivals"], f["wall_withdrawals"] = self.arrivals, self.withdrawals
        f["log_events"] = math.log1p(self.n_msgs)
        state = self.stoikov_state(bids, asks)
        f["stoikov_micro_bps"] = bps(self.g[state[0]]) if state else 0.0
        f["vpin"] = sum(self.buckets) / (len(self.buckets) * self.bucket_size) if (
            self.buckets) else 0.0
        f.update(self.profile_features(mid))
        walls = self.wall_prices(bids, asks)
        f["wall_bid_dist_bps"] = bps(mid - max(walls[0])) if walls[0] else 0.0
        f["wall_ask_dist_bps"] = bps(min(walls[1]) - mid) if walls[1] else 0.0
        absorb = 0
        if self.ref is not None:
            (rb, rbq), (ra, raq) = self.ref
            if self.sell > 0 and self.sell >= c.absorption_k * rbq and all(
                b >= rb for b, _a in self.touches
            ):
                absorb += 1
            if self.buy > 0 and self.buy >= c.absorption_k * raq and all(
                a <= ra for _b, a in self.touches
            ):
                absorb -= 1
        f["absorption"] = absorb
        self.mids.append(mid)
        m = self.mids
        f["ret_1_bps"] = math.log(m[-1] / m[-2]) * 1e4 if len(m) > 1 else 0.0
        f["ret_5_bps"] = math.log(m[-1] / m[-6]) * 1e4 if len(m) > 5 else 0.0
        self.rets.append(f["ret_1_bps"])
        last = self.rets[-c.rv_window :]
        f["rv_bps"] = math.sqrt(sum(r * r for r in last) / len(last))
        self.vols.append((self.buy, self.sell))
        n = c.exhaustion_intervals
        exh = 0
        if len(self.vols) >= n and abs(math.log(m[-1] / m[-n]) * 1e4) <= c.exhaustion_stall_bps:
            for side, sign in ((0, -1), (1, 1)):
                v = [x[side] for x in self.vols[-n:]]
                if v[0] > 0 and all(v[k + 1] < v[k] for k in range(n - 1)):
                    exh += sign
        f["exhaustion"] = exh
        self.start_interval()
        return f

    def profile_features(self, mid: float) -> dict[str, float]:
        names = ("poc_dist_bps", "vah_dist_bps", "val_dist_bps")
        if not self.profile:
            return dict.fromkeys(names, 0.0)
        vol: dict[int, float] = {}
        for b, s in self.profile:
            vol[b] = vol.get(b, 0.0) + s
        lo_b, hi_b = min(vol), max(vol)
        total = sum(vol.get(b, 0.0) for b in range(lo_b, hi_b + 1))
        poc = min(b for b in vol if vol[b] == max(vol.values()))
        lo = hi = poc
        acc = vol[poc]
        while acc < self.c.profile_value_area * total and (lo > lo_b or hi < hi_b):
            up = vol.get(hi + 1, 0.0) if hi < hi_b else -1.0
            dn = vol.get(lo - 1, 0.0) if lo > lo_b else -1.0
            if up >= dn:
                hi, acc = hi + 1, acc + up
            else:
                lo, acc = lo - 1, acc + dn
        w = self.bin_w
        dist = lambda b: (b * w + (w - 1) / 2 - mid) / mid * 1e4  # noqa: E731
        return dict(zip(names, (dist(poc), dist(hi), dist(lo)), strict=True))

    def run_stream(self, msgs: np.ndarray, trades: np.ndarray, cuts: list[int]) -> list:
        """Vectors (dicts or None) at each cut k: after message k-1, before the next trades."""
        cut_set = set(cuts)
        out = []
        j = 0
        tr = trades[["ts_event", "price", "size", "side", "shown"]].tolist()
        for k in range(len(msgs)):
            while j < len(trades) and trades["msg"][j] <= k:
                self.on_trade(tr[j])
                j += 1
            self.on_msg(msgs[k])
            if k + 1 in cut_set:
                out.append(self.decide())
        return out


# ------------------------------------------------------------------------------------------
# fixtures and helpers
# ------------------------------------------------------------------------------------------
def session_frames(name: str) -> tuple[np.ndarray, np.ndarray]:
    files = [BINANCE_DATA / f for f in BINANCE_SESSIONS[name]]
    items = [r for _s, r, _sync in read_session(files, tickers=False)]
    rows = np.concatenate([r for r in items if isinstance(r, np.ndarray)])
    return reference_frames(L2Book(), rows)


def batch(msgs, trades, a: int, k: int, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray]:
    """Messages ``a..k-1`` and trades ``t0..t1-1`` as one batch (local ``msg``)."""
    t = trades[t0:t1].copy()
    t["msg"] -= a
    return msgs[a:k], t


def decision_cuts(n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return sorted(set(np.cumsum(rng.integers(1, 12, size=n)).tolist()) & set(range(1, n + 1)))


def run_engine(cfg, msgs, trades, cuts, rng=None) -> tuple[list, FeatureEngine]:
    """Feed the stream with a decision at each cut; with ``rng``, split batches further.

    A batch holds messages ``[pos_m, m_next)`` and trades ``[pos_t, t_lim)``: every trade that
    precedes message ``m_next - 1`` and possibly some that follow it (but none that follow a
    later message). Sub-cuts may fall between the trades of one message gap, or be empty.
    """
    eng = FeatureEngine(cfg)
    g = trades["msg"]

    def left(m: int) -> int:  # first trade at or after the gap before message m
        return int(np.searchsorted(g, m, side="left"))

    def right(m: int) -> int:  # first trade after the gap before message m
        return int(np.searchsorted(g, m, side="right"))

    out, a = [], 0
    for k in cuts:
        t_end = left(k)
        if rng is None:
            eng.update(*batch(msgs, trades, a, k, left(a), t_end))
        else:
            pos_m, pos_t = a, left(a)
            while pos_m < k or pos_t < t_end:
                m_next = min(k, pos_m + int(rng.integers(0, 4)))
                lo_t = max(pos_t, left(m_next))
                hi_t = min(right(m_next), t_end)
                t_lim = hi_t if rng.random() >= 0.3 else int(rng.integers(lo_t, hi_t + 1))
                eng.update(*batch(msgs, trades, pos_m, m_next, pos_t, t_lim))
                pos_m, pos_t = m_next, t_lim
        out.append(eng.vector())
        a = k
    return out, eng


@pytest.fixture(scope="module", params=SESSIONS)
def session(request) -> dict:
    msgs, trades = session_frames(request.param)
    cuts = decision_cuts(len(msgs), seed=7)
    ref = Reference(CFG).run_stream(msgs, trades, cuts)
    vecs, eng = run_engine(CFG, msgs, trades, cuts)
    return {"name": request.param, "msgs": msgs, "trades": trades, "cuts": cuts, "ref": ref,
            "vecs": vecs, "engine": eng, "reference": Reference}


# ------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------
NAMES = FeatureEngine(CFG).names
NEVER_NONZERO = {"l3_iceberg_refills"}  # fed by the L3 book only


@pytest.mark.parametrize("feature", NAMES)
def test_feature_matches_the_plain_reference_at_every_decision(session, feature) -> None:
    eng = session["engine"]
    col = eng.names.index(feature)
    got, want = [], []
    for v, r in zip(session["vecs"], session["ref"], strict=True):
        assert (v is None) == (r is None)
        if v is not None:
            got.append(float(v[col]))
            want.append(r[feature])
    got_a, want_a = np.array(got), np.array(want, dtype=np.float32).astype(np.float64)
    bad = ~np.isclose(got_a, want_a, rtol=2e-5, atol=2e-6)
    first = int(np.argmax(bad)) if bad.any() else -1
    assert not bad.any(), (
        f"{session['name']} {feature}: {int(bad.sum())} of {len(got)} decisions differ, first "
        f"#{first}: engine {got[first]!r}, reference {want[first]!r}"
    )
    assert len(got) > 300
    if feature not in NEVER_NONZERO:  # the comparison is not vacuous
        assert np.count_nonzero(want_a) >= 5, f"{feature} is almost always 0 in the reference"


def test_stoikov_fit_refits_on_schedule_and_leans_with_imbalance(session) -> None:
    eng = session["engine"]
    assert eng.refits == len(session["msgs"]) // CFG.stoikov_refit_every
    g = eng._g[: CFG.stoikov_imbalance_buckets]  # spread = 1 tick
    assert g[-1] > 0 > g[0], f"g(I, 1 tick) should rise with bid imbalance, was {g}"
    assert np.allclose(g, -g[::-1], atol=1e-9), "symmetrised estimator must be antisymmetric"


@pytest.mark.parametrize("seed", [1, 2])
def test_vectors_are_identical_however_the_stream_is_batched(session, seed) -> None:
    cfg = FeaturesConfig(stoikov_refit_every=200, stoikov_history=1_000, vpin_auto_trades=50)
    msgs, trades, cuts = session["msgs"], session["trades"], session["cuts"]
    whole, e1 = run_engine(cfg, msgs, trades, cuts)
    split, e2 = run_engine(cfg, msgs, trades, cuts, rng=np.random.default_rng(seed))
    assert len(whole) == len(split) == len(cuts)
    for k, (a, b) in enumerate(zip(whole, split, strict=True)):
        assert (a is None) == (b is None)
        assert a is None or np.array_equal(a, b), f"decision {k} differs"
    assert np.array_equal(e1.window_array(), e2.window_array())
    assert e1.refits == e2.refits > 0
