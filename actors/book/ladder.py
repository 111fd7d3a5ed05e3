"""The compiled L2 book: an integer-tick price ladder plus sorted overflow, applied by numba.

Layout (one symbol):

* a **dense window** of ``window`` ticks per side (``bid[i]``/``ask[i]`` = size at price
  ``base + i``; 0 = no level), which holds every level near the touch, so an update is one
  array write and the best level is tracked incrementally;
* a **sorted overflow** per side (parallel ``price``/``size`` arrays in ascending price) for
  levels outside the window: real books carry far-away orders (Binance futures snapshots hold
  bids at 1 % of the price), which a dense array over the whole span could not afford;
* the window re-centres on the mid when the mid leaves its middle half (checked at every
  message end, in O(window + overflow)), moving levels between the two parts.

:func:`apply_batch` applies ``MD_DTYPE`` columns in one compiled loop: no Python objects per row,
no allocation. At every book message end (``F_LAST``) it checks integrity (a crossed book) and,
when asked, records the best :data:`~actors.book.frames.DEPTH` levels per side
(:data:`~actors.book.frames.MSG_DTYPE`); every trade is recorded with the size displayed at
its price (:data:`~actors.book.frames.TRADE_DTYPE`). A sequence going backwards outside a
snapshot is an integrity error too, and so is a ``CLEAR`` flagged ``F_GAP`` (the feed saw a
sequence gap: the book is emptied, and stays void until a snapshot). Errors do not stop the
loop: the book keeps applying (so a later snapshot can resync it) and the first error of the
batch is reported to the owner, which quarantines the symbol.

:class:`LadderBook` is the Python face: it owns the arrays, grows the overflow, re-centres the
window, and offers the same reading API as the reference :class:`~actors.book.book.L2Book`
(``best_bid``, ``best_ask``, ``top``, ``snapshot``/``restore``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from numba import njit

from actors.book.frames import MSG_DTYPE, TRADE_DTYPE

# state slots (int64 array)
BASE, CAP, BB, BA, NB, NA, OBN, OAN = 0, 1, 2, 3, 4, 5, 6, 7
LAST_SEQ, TS_EVENT, TS_INIT, IN_SNAP = 8, 9, 10, 11
ERR_CODE, ERR_ROW, ERR_A, ERR_B = 12, 13, 14, 15
N_MSGS, N_TRADES, BASE_SET, RESYNC_ROW = 16, 17, 18, 19
BLO, BHI, ALO, AHI = 20, 21, 22, 23
OPEN_MSG = 24  # 1 while a book message has started and not yet ended (F_LAST)
N_STATE = 25

# kernel return status
DONE, GROW_BIDS, GROW_ASKS, RECENTER, FRAMES_FULL = 0, 1, 2, 3, 4

FRAME_ROWS = 4_096  # frames buffered per chunk: bounds a symbol's memory whatever the batch

# integrity error codes
ERR_NONE, ERR_SEQ, ERR_CROSSED, ERR_KIND, ERR_GAP = 0, 1, 2, 3, 4
ERROR_NAMES = {ERR_SEQ: "sequence", ERR_CROSSED: "crossed", ERR_KIND: "kind", ERR_GAP: "gap"}

NO_PRICE = np.iinfo(np.int64).min


@njit(cache=True, inline="always")
def _ov_find(p: np.ndarray, n: int, price: int) -> int:
    """Index of the first overflow entry with price >= ``price`` (binary search)."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if p[mid] < price:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _ov_set(p: np.ndarray, s: np.ndarray, n: int, price: int, size: float) -> int:
    """Set ``price`` to ``size`` in a sorted overflow of ``n`` entries; return the new count,
    or -1 when an insert needs more capacity."""
    k = _ov_find(p, n, price)
    if k < n and p[k] == price:
        if size > 0.0:
            s[k] = size
            return n
        for j in range(k, n - 1):
            p[j] = p[j + 1]
            s[j] = s[j + 1]
        return n - 1
    if size <= 0.0:
        return n
    if n == len(p):
        return -1
    for j in range(n, k, -1):
        p[j] = p[j - 1]
        s[j] = s[j - 1]
    p[k] = price
    s[k] = size
    return n + 1


@njit(cache=True)
def _ov_get(p: np.ndarray, s: np.ndarray, n: int, price: int) -> float:
    k = _ov_find(p, n, price)
    if k < n and p[k] == price:
        return s[k]
    return 0.0


@njit(cache=True)
def best_prices(st: np.ndarray, obp: np.ndarray, oap: np.ndarray) -> tuple[int, int]:
    """Return ``(best bid, best ask)`` in ticks; ``NO_PRICE`` for an empty side."""
    bb = NO_PRICE
    if st[BB] >= 0:
        bb = st[BASE] + st[BB]
    if st[OBN] > 0 and obp[st[OBN] - 1] > bb:
        bb = obp[st[OBN] - 1]
    ba = NO_PRICE
    if st[BA] >= 0:
        ba = st[BASE] + st[BA]
    if st[OAN] > 0 and (ba == NO_PRICE or oap[0] < ba):
        ba = oap[0]
    return bb, ba


@njit(cache=True)
def top_levels(
    st: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
    obp: np.ndarray,
    obs: np.ndarray,
    oap: np.ndarray,
    oas: np.ndarray,
    depth: int,
    bpx: np.ndarray,
    bsz: np.ndarray,
    apx: np.ndarray,
    asz: np.ndarray,
) -> tuple[int, int]:
    """Write the best ``depth`` levels per side (merging window and overflow) into the output
    arrays (zero-padded); return the number of bid and ask levels written."""
    base = st[BASE]
    # bids: descending; window from its best down, overflow from its top down
    j = st[BB]
    left = st[NB]
    k = st[OBN] - 1
    nb = 0
    for d in range(depth):
        dp = NO_PRICE
        if left > 0:
            while bid[j] == 0.0:
                j -= 1
            dp = base + j
        op = obp[k] if k >= 0 else NO_PRICE
        if dp == NO_PRICE and op == NO_PRICE:
            bpx[d] = 0
            bsz[d] = 0.0
            continue
        if dp >= op:
            bpx[d] = dp
            bsz[d] = bid[j]
            j -= 1
            left -= 1
        else:
            bpx[d] = op
            bsz[d] = obs[k]
            k -= 1
        nb += 1
    # asks: ascending
    j = st[BA]
    left = st[NA]
    k = 0
    n_ov = st[OAN]
    na = 0
    for d in range(depth):
        dp = NO_PRICE
        if left > 0:
            while ask[j] == 0.0:
                j += 1
            dp = base + j
        op = oap[k] if k < n_ov else NO_PRICE
        if dp == NO_PRICE and op == NO_PRICE:
            apx[d] = 0
            asz[d] = 0.0
            continue
        if op == NO_PRICE or (dp != NO_PRICE and dp <= op):
            apx[d] = dp
            asz[d] = ask[j]
            j += 1
            left -= 1
        else:
            apx[d] = op
            asz[d] = oas[k]
            k += 1
        na += 1
    return nb, na


@njit(cache=True, inline="always")
def _error(st: np.ndarray, code: int, row: int, a: int, b: int) -> None:
    """Record an integrity error unless the batch already has one (the first one counts)."""
    if st[ERR_CODE] == 0:
        st[ERR_CODE] = code
        st[ERR_ROW] = row
        st[ERR_A] = a
        st[ERR_B] = b


@njit(cache=True)
def _clear(st: np.ndarray, bid: np.ndarray, ask: np.ndarray) -> None:
    if st[BHI] >= st[BLO]:
        bid[st[BLO] : st[BHI] + 1] = 0.0
    if st[AHI] >= st[ALO]:
        ask[st[ALO] : st[AHI] + 1] = 0.0
    st[BB] = -1
    st[BA] = -1
    st[NB] = 0
    st[NA] = 0
    st[OBN] = 0
    st[OAN] = 0
    st[BLO] = st[CAP]
    st[BHI] = -1
    st[ALO] = st[CAP]
    st[AHI] = -1


@njit(cache=True)
def apply_batch(
    st: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
    obp: np.ndarray,
    obs: np.ndarray,
    oap: np.ndarray,
    oas: np.ndarray,
    ts_event: np.ndarray,
    ts_init: np.ndarray,
    seq: np.ndarray,
    kind: np.ndarray,
    side: np.ndarray,
    price: np.ndarray,
    size: np.ndarray,
    flags: np.ndarray,
    start: int,
    capture: bool,
    m_ts: np.ndarray,
    m_seq: np.ndarray,
    m_bpx: np.ndarray,
    m_bsz: np.ndarray,
    m_apx: np.ndarray,
    m_asz: np.ndarray,
    t_ts: np.ndarray,
    t_px: np.ndarray,
    t_sz: np.ndarray,
    t_side: np.ndarray,
    t_shown: np.ndarray,
    t_msg: np.ndarray,
) -> tuple[int, int]:
    """Apply rows ``start..`` of a batch; return ``(status, row)``.

    ``status`` is :data:`DONE`, or :data:`GROW_BIDS`/:data:`GROW_ASKS` (an overflow is full:
    grow it and call again from ``row``, which was not applied), or :data:`RECENTER` (the mid
    left the window's middle half at a message end: re-centre and call again from ``row``),
    or :data:`FRAMES_FULL` (the frame buffers are full: consume them, reset the counts and
    call again from ``row``, which was not applied).
    """
    n = len(kind)
    cap = st[CAP]
    half = cap >> 1
    quarter = cap >> 2
    m_cap = len(m_ts)
    t_cap = len(t_ts)
    for i in range(start, n):
        if capture and (st[N_MSGS] == m_cap or st[N_TRADES] == t_cap):
            return FRAMES_FULL, i  # a row writes at most one frame: room is checked first
        k = kind[i]
        if k == 1:  # TRADE
            if capture:
                t = st[N_TRADES]
                px = price[i]
                t_ts[t] = ts_event[i]
                t_px[t] = px
                t_sz[t] = size[i]
                t_side[t] = side[i]
                idx = px - st[BASE]
                shown = 0.0
                if side[i] == 0:  # buyer lifts the asks
                    if st[BASE_SET] == 1 and 0 <= idx < cap:
                        shown = ask[idx]
                    else:
                        shown = _ov_get(oap, oas, st[OAN], px)
                else:
                    if st[BASE_SET] == 1 and 0 <= idx < cap:
                        shown = bid[idx]
                    else:
                        shown = _ov_get(obp, obs, st[OBN], px)
                t_shown[t] = shown
                t_msg[t] = st[N_MSGS]
                st[N_TRADES] = t + 1
            if seq[i] < st[LAST_SEQ]:
                _error(st, ERR_SEQ, i, seq[i], st[LAST_SEQ])
            st[LAST_SEQ] = seq[i]
            st[TS_EVENT] = ts_event[i]
            st[TS_INIT] = ts_init[i]
            continue
        if k == 3:  # CLEAR
            _clear(st, bid, ask)
            if flags[i] & 4:  # F_GAP: the feed lost data
                _error(st, ERR_GAP, i, seq[i], st[LAST_SEQ])
        elif k == 0 or k == 2:  # DELTA / SNAPSHOT
            if k == 2 and st[IN_SNAP] == 0:
                # a resync: the snapshot replaces the book and whatever broke it before
                _clear(st, bid, ask)
                st[IN_SNAP] = 1
                st[ERR_CODE] = 0
                st[RESYNC_ROW] = i
            elif k == 0 and seq[i] < st[LAST_SEQ]:
                _error(st, ERR_SEQ, i, seq[i], st[LAST_SEQ])
            px = price[i]
            sz = size[i]
            if st[BASE_SET] == 0:
                st[BASE] = px - half
                st[BASE_SET] = 1
            idx = px - st[BASE]
            if side[i] == 0:
                if 0 <= idx < cap:
                    old = bid[idx]
                    if sz > 0.0:
                        if old == 0.0:
                            st[NB] += 1
                            if idx > st[BB]:
                                st[BB] = idx
                            if idx < st[BLO]:
                                st[BLO] = idx
                            if idx > st[BHI]:
                                st[BHI] = idx
                        bid[idx] = sz
                    elif old != 0.0:
                        bid[idx] = 0.0
                        st[NB] -= 1
                        if idx == st[BB]:
                            if st[NB] == 0:
                                st[BB] = -1
                            else:
                                j = idx - 1
                                while bid[j] == 0.0:
                                    j -= 1
                                st[BB] = j
                else:
                    r = _ov_set(obp, obs, st[OBN], px, sz)
                    if r < 0:
                        return GROW_BIDS, i
                    st[OBN] = r
            else:
                if 0 <= idx < cap:
                    old = ask[idx]
                    if sz > 0.0:
                        if old == 0.0:
                            st[NA] += 1
                            if st[BA] < 0 or idx < st[BA]:
                                st[BA] = idx
                            if idx < st[ALO]:
                                st[ALO] = idx
                            if idx > st[AHI]:
                                st[AHI] = idx
                        ask[idx] = sz
                    elif old != 0.0:
                        ask[idx] = 0.0
                        st[NA] -= 1
                        if idx == st[BA]:
                            if st[NA] == 0:
                                st[BA] = -1
                            else:
                                j = idx + 1
                                while ask[j] == 0.0:
                                    j += 1
                                st[BA] = j
                else:
                    r = _ov_set(oap, oas, st[OAN], px, sz)
                    if r < 0:
                        return GROW_ASKS, i
                    st[OAN] = r
        else:
            _error(st, ERR_KIND, i, k, 0)  # add/cancel/modify must go through an L3 book first
        st[LAST_SEQ] = seq[i]
        st[TS_EVENT] = ts_event[i]
        st[TS_INIT] = ts_init[i]
        st[OPEN_MSG] = 1
        if flags[i] & 1:
            st[OPEN_MSG] = 0
            st[IN_SNAP] = 0
            bb, ba = best_prices(st, obp, oap)
            if bb != NO_PRICE and ba != NO_PRICE and bb >= ba:
                _error(st, ERR_CROSSED, i, bb, ba)
            if capture:
                m = st[N_MSGS]
                m_ts[m] = ts_event[i]
                m_seq[m] = seq[i]
                top_levels(
                    st, bid, ask, obp, obs, oap, oas, m_bpx.shape[1],
                    m_bpx[m], m_bsz[m], m_apx[m], m_asz[m],
                )
                st[N_MSGS] = m + 1
            # keep the window on the market: re-centre when the mid (or the only side's
            # best) leaves the window's middle half
            ref2 = NO_PRICE
            if bb != NO_PRICE and ba != NO_PRICE:
                ref2 = bb + ba - 2 * st[BASE]
            elif bb != NO_PRICE:
                ref2 = 2 * (bb - st[BASE])
            elif ba != NO_PRICE:
                ref2 = 2 * (ba - st[BASE])
            if ref2 != NO_PRICE and (ref2 < 2 * quarter or ref2 > 2 * (cap - quarter)):
                return RECENTER, i + 1
    return DONE, n


class LadderBook:
    """One symbol's compiled L2 book (see the module docstring).

    Args:
        window_ticks: Width of the dense window in ticks (a power of two is not required).
        overflow: Initial capacity of each side's overflow (grows by doubling).
        frame_rows: Messages (and trades) buffered per frame chunk.

    Example:
        >>> b = LadderBook(1024)
        >>> rows = ...  # MD_DTYPE rows
        >>> b.apply(rows)
        >>> b.best_bid, b.best_ask
    """

    def __init__(
        self, window_ticks: int = 1 << 16, overflow: int = 256, frame_rows: int = FRAME_ROWS
    ) -> None:
        cap = int(window_ticks)
        if cap < 64:
            raise ValueError(f"window_ticks must be >= 64, was {cap}")
        if overflow < 1:
            raise ValueError(f"overflow must be >= 1, was {overflow}")
        if frame_rows < 1:
            raise ValueError(f"frame_rows must be >= 1, was {frame_rows}")
        self.st = np.zeros(N_STATE, dtype=np.int64)
        self.st[CAP] = cap
        self.bid = np.zeros(cap, dtype=np.float64)
        self.ask = np.zeros(cap, dtype=np.float64)
        self.obp = np.zeros(overflow, dtype=np.int64)
        self.obs = np.zeros(overflow, dtype=np.float64)
        self.oap = np.zeros(overflow, dtype=np.int64)
        self.oas = np.zeros(overflow, dtype=np.float64)
        _clear(self.st, self.bid, self.ask)
        self._msgs = np.zeros(frame_rows, dtype=MSG_DTYPE)
        self._trades = np.zeros(frame_rows, dtype=TRADE_DTYPE)

    # applying --------------------------------------------------------------------------------
    def apply(
        self, rows: np.ndarray, capture: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Apply ``MD_DTYPE`` rows. Returns ``(msgs, trades)`` frames (empty unless ``capture``),
        concatenated over the whole batch (see :meth:`apply_chunks` for bounded memory).

        Integrity errors of the batch are in :attr:`error` afterwards.
        """
        if not capture:
            for _ in self.apply_chunks(rows, capture=False):
                pass
            return self._msgs[:0], self._trades[:0]
        parts = [(m.copy(), t.copy()) for m, t in self.apply_chunks(rows, capture=True)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return self._msgs[:0].copy(), self._trades[:0].copy()
        offset = 0
        for m, t in parts:  # a trade's ``msg`` counts the messages before it in its chunk
            t["msg"] += offset
            offset += len(m)
        return (np.concatenate([m for m, _ in parts]), np.concatenate([t for _, t in parts]))

    def apply_chunks(
        self, rows: np.ndarray, capture: bool = True
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Apply ``MD_DTYPE`` rows, yielding the frames in chunks of at most
        :data:`FRAME_ROWS` messages and trades (views of reused buffers: consume each chunk
        before asking for the next). Frames are in stream order across chunks; the feature
        library gives the same result however they are cut. Integrity errors of the whole
        batch are in :attr:`error` once the iteration ends.
        """
        st = self.st
        st[ERR_CODE] = ERR_NONE
        st[RESYNC_ROW] = -1
        st[N_MSGS] = 0
        st[N_TRADES] = 0
        m, t = self._msgs, self._trades
        cols = (
            rows["ts_event"], rows["ts_init"], rows["seq"], rows["kind"], rows["side"],
            rows["price"], rows["size"], rows["flags"],
        )
        start = 0
        while True:
            status, start = apply_batch(
                st, self.bid, self.ask, self.obp, self.obs, self.oap, self.oas,
                *cols, start, capture,
                m["ts_event"], m["seq"], m["bid_px"], m["bid_sz"], m["ask_px"], m["ask_sz"],
                t["ts_event"], t["price"], t["size"], t["side"], t["shown"], t["msg"],
            )
            if status == DONE:
                break
            if status == GROW_BIDS:
                self.obp, self.obs = _grow(self.obp, self.obs)
            elif status == GROW_ASKS:
                self.oap, self.oas = _grow(self.oap, self.oas)
            elif status == RECENTER:
                self.recenter()
            elif status == FRAMES_FULL:
                yield m[: st[N_MSGS]], t[: st[N_TRADES]]
                st[N_MSGS] = 0
                st[N_TRADES] = 0
        if capture:
            yield m[: st[N_MSGS]], t[: st[N_TRADES]]

    @property
    def error(self) -> tuple[int, int, int, int]:
        """The first integrity error of the last batch: ``(code, row, a, b)`` (code 0 = none)."""
        st = self.st
        return int(st[ERR_CODE]), int(st[ERR_ROW]), int(st[ERR_A]), int(st[ERR_B])

    @property
    def resynced(self) -> bool:
        """True when the last batch started a snapshot (the book was rebuilt)."""
        return bool(self.st[RESYNC_ROW] >= 0)

    def recenter(self, center: int | None = None) -> None:
        """Move the dense window so that it is centred on the mid (or ``center``)."""
        bids, asks = self.levels()
        bb, ba = self.best_bid, self.best_ask
        if center is None:
            if bb is not None and ba is not None:
                center = (bb + ba) // 2
            else:
                center = bb if bb is not None else ba
        if center is None:
            return
        st = self.st
        cap = int(st[CAP])
        st[BASE] = int(center) - cap // 2
        st[BASE_SET] = 1
        _clear(st, self.bid, self.ask)
        self._load(bids, asks)

    def _load(self, bids: tuple[np.ndarray, np.ndarray], asks: tuple[np.ndarray, np.ndarray]
              ) -> None:
        """Place levels (ascending prices, positive sizes) into a cleared book."""
        st = self.st
        base, cap = int(st[BASE]), int(st[CAP])
        for (px, sz), dense, side in ((bids, self.bid, 0), (asks, self.ask, 1)):
            idx = px - base
            inside = (idx >= 0) & (idx < cap)
            din = idx[inside]
            dense[din] = sz[inside]
            op, os_ = px[~inside], sz[~inside]
            need = max(len(op), 1)
            if side == 0:
                if len(self.obp) < need:
                    self.obp = np.zeros(2 * need, np.int64)
                    self.obs = np.zeros(2 * need, np.float64)
                self.obp[: len(op)], self.obs[: len(op)] = op, os_
                st[OBN] = len(op)
                st[NB] = len(din)
                st[BB] = din.max() if len(din) else -1
                st[BLO] = din.min() if len(din) else cap
                st[BHI] = din.max() if len(din) else -1
            else:
                if len(self.oap) < need:
                    self.oap = np.zeros(2 * need, np.int64)
                    self.oas = np.zeros(2 * need, np.float64)
                self.oap[: len(op)], self.oas[: len(op)] = op, os_
                st[OAN] = len(op)
                st[NA] = len(din)
                st[BA] = din.min() if len(din) else -1
                st[ALO] = din.min() if len(din) else cap
                st[AHI] = din.max() if len(din) else -1

    # reading ---------------------------------------------------------------------------------
    @property
    def best_bid(self) -> int | None:
        bb, _ = best_prices(self.st, self.obp, self.oap)
        return None if bb == NO_PRICE else int(bb)

    @property
    def best_ask(self) -> int | None:
        _, ba = best_prices(self.st, self.obp, self.oap)
        return None if ba == NO_PRICE else int(ba)

    @property
    def last_seq(self) -> int:
        return int(self.st[LAST_SEQ])

    @property
    def ts_event(self) -> int:
        return int(self.st[TS_EVENT])

    @property
    def ts_init(self) -> int:
        return int(self.st[TS_INIT])

    @property
    def in_snapshot(self) -> bool:
        """True while a snapshot has started and not yet ended (it may span batches)."""
        return bool(self.st[IN_SNAP])

    @property
    def open_message(self) -> bool:
        """True while a book message has started and not yet ended (no ``F_LAST`` yet): the
        book is not consistent there."""
        return bool(self.st[OPEN_MSG])

    @property
    def crossed(self) -> bool:
        bb, ba = self.best_bid, self.best_ask
        return bb is not None and ba is not None and bb >= ba

    def levels(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """Every level: ``((bid prices, sizes), (ask prices, sizes))``, ascending prices."""
        st = self.st
        base = int(st[BASE])
        out = []
        for dense, op, os_, n in ((self.bid, self.obp, self.obs, st[OBN]),
                                  (self.ask, self.oap, self.oas, st[OAN])):
            idx = np.flatnonzero(dense)
            px = np.concatenate((idx.astype(np.int64) + base, op[:n]))
            sz = np.concatenate((dense[idx], os_[:n]))
            order = np.argsort(px, kind="stable")
            out.append((px[order], sz[order]))
        return out[0], out[1]

    def n_levels(self) -> tuple[int, int]:
        st = self.st
        return int(st[NB] + st[OBN]), int(st[NA] + st[OAN])

    def top(self, n: int) -> tuple[list[int], list[float], list[int], list[float]]:
        """The best ``n`` levels per side: bid prices, bid sizes, ask prices, ask sizes."""
        bpx = np.zeros(n, np.int64)
        bsz = np.zeros(n, np.float64)
        apx = np.zeros(n, np.int64)
        asz = np.zeros(n, np.float64)
        nb, na = top_levels(self.st, self.bid, self.ask, self.obp, self.obs, self.oap,
                            self.oas, n, bpx, bsz, apx, asz)
        return bpx[:nb].tolist(), bsz[:nb].tolist(), apx[:na].tolist(), asz[:na].tolist()

    # checkpoint ------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A JSON-safe image (the same shape as :meth:`L2Book.snapshot`), best level first."""
        (bp, bs), (ap, asz) = self.levels()
        return {
            "bids": [[int(p), float(s)] for p, s in zip(bp[::-1], bs[::-1], strict=True)],
            "asks": [[int(p), float(s)] for p, s in zip(ap, asz, strict=True)],
            "last_seq": self.last_seq,
            "ts_event": self.ts_event,
            "ts_init": self.ts_init,
            "window_ticks": int(self.st[CAP]),
            "base": int(self.st[BASE]),
            "in_snapshot": self.in_snapshot,
            "open_message": self.open_message,
        }

    @classmethod
    def restore(cls, image: dict[str, Any], window_ticks: int | None = None) -> LadderBook:
        """Rebuild a book from :meth:`snapshot` (or ``L2Book.snapshot``) output."""
        book = cls(int(window_ticks or image.get("window_ticks", 1 << 16)))
        # a level of size <= 0 is no level; a repeated price keeps its last size
        bids = sorted({int(p): float(s) for p, s in image["bids"] if float(s) > 0}.items())
        asks = sorted({int(p): float(s) for p, s in image["asks"] if float(s) > 0}.items())
        b = (np.array([p for p, _ in bids], np.int64), np.array([s for _, s in bids]))
        a = (np.array([p for p, _ in asks], np.int64), np.array([s for _, s in asks]))
        st = book.st
        if "base" in image:
            st[BASE] = int(image["base"])
            st[BASE_SET] = 1
            book._load(b, a)
        elif bids or asks:
            st[BASE_SET] = 1
            book._load(b, a)
            book.recenter()
        st[LAST_SEQ] = int(image["last_seq"])
        st[TS_EVENT] = int(image["ts_event"])
        st[TS_INIT] = int(image["ts_init"])
        st[IN_SNAP] = int(bool(image.get("in_snapshot", False)))
        st[OPEN_MSG] = int(bool(image.get("open_message", False)))
        return book


def _grow(p: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(p)
    p2 = np.zeros(2 * n, dtype=p.dtype)
    s2 = np.zeros(2 * n, dtype=s.dtype)
    p2[:n] = p
    s2[:n] = s
    return p2, s2
