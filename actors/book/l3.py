"""The compiled L3 (market-by-order) book: resting orders in FIFO queues, aggregated into L2 rows.

:class:`L3Book` keeps every resting order of one instrument and turns market-by-order rows
(:data:`~actors.core.batch.ADD`, ``CANCEL``, ``MODIFY``, ``CLEAR``) into L2 rows: each L3 row
becomes one ``DELTA`` row that carries the **new aggregated size** of the level it changed
(absolute, ``0`` = the level is gone), with the input's clocks, ``seq`` and ``flags``; a
``MODIFY`` that moves an order to another price emits two rows (the old level, then the new
one; ``F_LAST`` only on the second). Rows flagged ``F_SNAPSHOT`` (a venue's book image) come
out as ``SNAPSHOT`` rows instead of ``DELTA``, so an L2 consumer treats the image as a resync.
``CLEAR`` clears the L3 book and passes through; L2 kinds (``DELTA``, ``SNAPSHOT``) and trade
prints pass through unchanged. The output is at most twice as long as the input.

Definitions (the rows' contract is :mod:`actors.core.batch`):

* **Queue priority.** Orders at a level are kept in FIFO order. An order joins the back of its
  level when it is added, when a ``MODIFY`` moves its price, when a ``MODIFY`` increases its
  size, and when its iceberg tranche is refilled (below). A ``MODIFY`` that keeps the price and
  does not increase the size keeps the order's place. This is CME Globex's rule for order
  modifications (a price change or a quantity increase is re-prioritised, a decrease keeps
  priority); that a refreshed iceberg tranche gets new time priority is CME's iceberg
  behaviour as we know it, not checkable on the data (Databento MBO carries no priority).
* **Fills.** A ``TRADE`` row with ``order_id == 0`` is a trade print and passes through. A
  ``TRADE`` row with ``order_id != 0`` is a *fill* of that resting order (Databento action
  ``F``): it never changes the book, because the venue follows every fill with the ``CANCEL``
  or ``MODIFY`` that does (Databento: "Trade and Fill actions do not affect the book because
  all fills will be accompanied by cancel actions that do update the book"); the book consumes
  it for iceberg detection and does not pass it on (the trade itself is the ``order_id == 0``
  print, so volume is never counted twice). A consumed fill that carries ``F_LAST`` is replaced
  by a ``DELTA`` restating its level's current size, so the message boundary survives.
* **Iceberg refill (exact, needs fills).** A ``MODIFY`` of an order at its unchanged price,
  after fills of that order since its previous book update, whose new size is larger than the
  displayed size minus the filled quantity (``new > shown - filled``). An ordinary partial fill
  gives exactly ``new == shown - filled``; a larger displayed size after a fill is the venue
  showing the next tranche of hidden quantity. Counted in :attr:`L3Book.iceberg_refills`; the
  last :data:`ICE_RING` refills (time, side, price, order, shown, filled, new size) are kept for
  :meth:`L3Book.recent_icebergs` and :meth:`L3Book.iceberg_refills_by_price`.
  :attr:`L3Book.hidden_fills` separately counts fills that take an order past its displayed
  size (a fill larger than the visible order).

Integrity errors (counted by reason in :attr:`L3Book.error_counts`, described in
:attr:`L3Book.last_errors` for the last :meth:`L3Book.apply` call, never raised): an ``ADD`` of
an order id that is resting, a ``CANCEL`` or ``MODIFY`` of an unknown order id, a ``CANCEL``
larger than the order's remaining size, a ``CANCEL`` or ``MODIFY`` whose side (or, for a
cancel, price) differs from the order's. How the book continues: **the venue's latest statement
about an order wins** — a duplicate ``ADD`` re-places the order like a ``MODIFY`` (back of the
queue), a ``MODIFY`` of an unknown order inserts it, a ``CANCEL`` larger than the order removes
it, a ``CANCEL`` of an unknown order changes nothing (its row restates the level's current
size). Any error sets :attr:`L3Book.needs_resync` (quarantine the symbol) until the next
``CLEAR`` (a venue snapshot starts with one).

Sizes are summed in float64: integer sizes (contracts, shares, lots) are exact; a level's size
is reset to exactly 0 when its last order leaves.

Layout: orders live in preallocated slots (side, price, priority number and time, FIFO links,
level, size, filled since last update) found through an open-addressing hash table keyed by
order id (linear probing, backward-shift deletion); levels live in slots (side, price, FIFO
head/tail, order count, aggregated size) found through a second table keyed by (price, side).
Everything grows by doubling; the compiled loop stops before a row that might not fit, the
wrapper grows the arrays and resumes, so no row is ever applied half-way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from actors.core.batch import (
    ADD,
    CANCEL,
    CLEAR,
    DELTA,
    F_LAST,
    F_SNAPSHOT,
    KIND_NAMES,
    MD_DTYPE,
    MODIFY,
    SNAPSHOT,
    TRADE,
    validate_rows,
)
from actors.core.errors import ValidationError

# order slot columns (int64 matrix)
O_SIDE, O_PRICE, O_PRIO, O_TS, O_PREV, O_NEXT, O_LEVEL = 0, 1, 2, 3, 4, 5, 6
O_NI = 7
# order slot columns (float64 matrix)
O_SIZE, O_FILL = 0, 1
# level slot columns (int64 matrix)
L_SIDE, L_PRICE, L_HEAD, L_TAIL, L_COUNT = 0, 1, 2, 3, 4
L_NI = 5

# state slots (int64 array)
N_ORDERS, O_FREE, O_HW, N_LEVELS, L_FREE, L_HW, PRIO = 0, 1, 2, 3, 4, 5, 6
ICE_TOTAL, FILLS, FILLS_UNKNOWN, HIDDEN_FILLS, RESYNC, CLEARS, ERR_LOGGED = 7, 8, 9, 10, 11, 12, 13
N_STATE = 16

# integrity error reasons
E_ADD_EXISTS, E_CANCEL_UNKNOWN, E_CANCEL_EXCEEDS, E_MODIFY_UNKNOWN = 0, 1, 2, 3
E_SIDE_MISMATCH, E_PRICE_MISMATCH, E_NO_ORDER_ID = 4, 5, 6
ERROR_REASONS = (
    "add_existing",
    "cancel_unknown",
    "cancel_exceeds",
    "modify_unknown",
    "side_mismatch",
    "price_mismatch",
    "order_id_zero",
)
ERR_LOG = 64  # errors described per apply() call (all are counted)
ICE_RING = 1024  # recent iceberg refills kept
SIZE_EPS = 1e-9  # relative tolerance of "cancel larger than the remaining size"

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_TOP = np.uint64(0x8000000000000000)


# Every compiled function here runs without numba's reference counting (``_nrt=False``): none
# allocates, and counting the array arguments of each helper call cost ~10x the work itself
# (measured on the ESH4 file: 230 ns a row with it, 21 ns without).

# --- hash tables (key 0 = empty) ---------------------------------------------------------------
@njit(cache=True, inline="always", _nrt=False)
def _slot0(key: np.uint64, mask: np.uint64) -> int:
    h = key * _GOLDEN
    h ^= h >> np.uint64(31)
    return np.int64(h & mask)


@njit(cache=True, inline="always", _nrt=False)
def _find(keys: np.ndarray, vals: np.ndarray, key: np.uint64) -> int:
    """Value stored under ``key``, or -1."""
    mask = np.uint64(len(keys) - 1)
    i = _slot0(key, mask)
    while True:
        k = keys[i]
        if k == key:
            return vals[i]
        if k == 0:
            return -1
        i = (i + 1) & (len(keys) - 1)


@njit(cache=True, inline="always", _nrt=False)
def _insert(keys: np.ndarray, vals: np.ndarray, key: np.uint64, val: int) -> None:
    """Store ``val`` under ``key`` (absent; the table is at most half full)."""
    mask = np.uint64(len(keys) - 1)
    i = _slot0(key, mask)
    while keys[i] != 0:
        i = (i + 1) & (len(keys) - 1)
    keys[i] = key
    vals[i] = val


@njit(cache=True, inline="always", _nrt=False)
def _delete(keys: np.ndarray, vals: np.ndarray, key: np.uint64) -> None:
    """Remove ``key`` (present) with backward-shift deletion (no tombstones)."""
    n = len(keys)
    mask = np.uint64(n - 1)
    i = _slot0(key, mask)
    while keys[i] != key:
        i = (i + 1) & (n - 1)
    while True:
        keys[i] = 0
        j = i
        while True:
            j = (j + 1) & (n - 1)
            if keys[j] == 0:
                return
            home = _slot0(keys[j], mask)
            # the entry at j may stay where it is when its home lies cyclically in (i, j]
            if i <= j:
                if i < home <= j:
                    continue
            elif home > i or home <= j:
                continue
            break
        keys[i] = keys[j]
        vals[i] = vals[j]
        i = j


@njit(cache=True, _nrt=False)
def _rehash(old_keys: np.ndarray, old_vals: np.ndarray, keys: np.ndarray,
            vals: np.ndarray) -> None:
    for i in range(len(old_keys)):
        if old_keys[i] != 0:
            _insert(keys, vals, old_keys[i], old_vals[i])


@njit(cache=True, inline="always", _nrt=False)
def _level_key(side: int, price: int) -> np.uint64:
    return ((np.uint64(price) << np.uint64(1)) | np.uint64(side)) ^ _TOP


# --- levels and FIFO queues --------------------------------------------------------------------
@njit(cache=True, inline="always", _nrt=False)
def _level_of(st, li, lf, lk, lv, side, price):
    """Slot of the level ``(side, price)``, created empty when absent."""
    key = _level_key(side, price)
    lvl = _find(lk, lv, key)
    if lvl >= 0:
        return lvl
    lvl = st[L_FREE]
    if lvl >= 0:
        st[L_FREE] = li[lvl, L_HEAD]
    else:
        lvl = st[L_HW]
        st[L_HW] = lvl + 1
    li[lvl, L_SIDE] = side
    li[lvl, L_PRICE] = price
    li[lvl, L_HEAD] = -1
    li[lvl, L_TAIL] = -1
    li[lvl, L_COUNT] = 0
    lf[lvl] = 0.0
    _insert(lk, lv, key, lvl)
    st[N_LEVELS] += 1
    return lvl


@njit(cache=True, inline="always", _nrt=False)
def _link(st, oi, of, li, lf, lk, lv, s, side, price, size, ts):
    """Put order slot ``s`` at the back of level ``(side, price)``; return the level size."""
    lvl = _level_of(st, li, lf, lk, lv, side, price)
    tail = li[lvl, L_TAIL]
    oi[s, O_SIDE] = side
    oi[s, O_PRICE] = price
    oi[s, O_PRIO] = st[PRIO]
    st[PRIO] += 1
    oi[s, O_TS] = ts
    oi[s, O_PREV] = tail
    oi[s, O_NEXT] = -1
    oi[s, O_LEVEL] = lvl
    of[s, O_SIZE] = size
    if tail >= 0:
        oi[tail, O_NEXT] = s
    else:
        li[lvl, L_HEAD] = s
    li[lvl, L_TAIL] = s
    li[lvl, L_COUNT] += 1
    lf[lvl] += size
    return lf[lvl]


@njit(cache=True, inline="always", _nrt=False)
def _unlink(st, oi, of, li, lf, lk, lv, s):
    """Take order slot ``s`` out of its level's queue; return the level's size after."""
    lvl = oi[s, O_LEVEL]
    prev = oi[s, O_PREV]
    nxt = oi[s, O_NEXT]
    if prev >= 0:
        oi[prev, O_NEXT] = nxt
    else:
        li[lvl, L_HEAD] = nxt
    if nxt >= 0:
        oi[nxt, O_PREV] = prev
    else:
        li[lvl, L_TAIL] = prev
    li[lvl, L_COUNT] -= 1
    if li[lvl, L_COUNT] == 0:
        # the level is gone: exactly 0, slot back on the free list
        _delete(lk, lv, _level_key(li[lvl, L_SIDE], li[lvl, L_PRICE]))
        li[lvl, L_SIDE] = -1
        li[lvl, L_HEAD] = st[L_FREE]
        st[L_FREE] = lvl
        lf[lvl] = 0.0
        st[N_LEVELS] -= 1
        return 0.0
    lf[lvl] -= of[s, O_SIZE]
    return lf[lvl]


@njit(cache=True, inline="always", _nrt=False)
def _new_order(st, oi, oid, of, ok, ov, key):
    s = st[O_FREE]
    if s >= 0:
        st[O_FREE] = oi[s, O_NEXT]
    else:
        s = st[O_HW]
        st[O_HW] = s + 1
    oid[s] = key
    of[s, O_FILL] = 0.0
    _insert(ok, ov, key, s)
    st[N_ORDERS] += 1
    return s


@njit(cache=True, inline="always", _nrt=False)
def _free_order(st, oi, oid, ok, ov, s):
    _delete(ok, ov, oid[s])
    oid[s] = 0
    oi[s, O_NEXT] = st[O_FREE]
    st[O_FREE] = s
    st[N_ORDERS] -= 1


@njit(cache=True, inline="always", _nrt=False)
def _level_size(lk, lv, lf, side, price):
    lvl = _find(lk, lv, _level_key(side, price))
    return lf[lvl] if lvl >= 0 else 0.0


@njit(cache=True, inline="always", _nrt=False)
def _error(st, err_c, err_log, err_v, i, reason, value):
    err_c[reason] += 1
    st[RESYNC] = 1
    n = st[ERR_LOGGED]
    if n < err_log.shape[0]:
        err_log[n, 0] = i
        err_log[n, 1] = reason
        err_v[n] = value
    st[ERR_LOGGED] = n + 1


@njit(cache=True, _nrt=False)
def _reset(st, oid, ok, lk, li):
    ok[:] = 0
    lk[:] = 0
    oid[:] = 0
    li[:, L_SIDE] = -1
    st[N_ORDERS] = 0
    st[O_FREE] = -1
    st[O_HW] = 0
    st[N_LEVELS] = 0
    st[L_FREE] = -1
    st[L_HW] = 0


# --- the kernel --------------------------------------------------------------------------------
@njit(cache=True, inline="always", _nrt=False)
def _emit(out, k, r, kind, side, price, size, flags):
    """Write one L2 row at ``out[k]`` with the clocks and ``seq`` of input row ``r``."""
    o = out[k]
    o.ts_event = r.ts_event
    o.ts_init = r.ts_init
    o.seq = r.seq
    o.kind = kind
    o.side = side
    o.price = price
    o.size = size
    o.flags = flags
    o.order_id = 0


@njit(cache=True, inline="always", _nrt=False)
def _fill(st, oi, of, ok, ov, lk, lv, lf, r):
    """Record a fill of a resting order; return the (side, price) of its level."""
    st[FILLS] += 1
    s = _find(ok, ov, r.order_id)
    if s < 0:
        st[FILLS_UNKNOWN] += 1
        return np.int64(1 - r.side), r.price
    before = of[s, O_FILL]
    of[s, O_FILL] = before + r.size
    if before <= of[s, O_SIZE] < before + r.size:
        st[HIDDEN_FILLS] += 1
    return oi[s, O_SIDE], oi[s, O_PRICE]


@njit(cache=True, inline="always", _nrt=False)
def _cancel(st, oi, oid, of, ok, ov, li, lf, lk, lv, err_c, err_log, err_v, i, r, s):
    """Take ``r.size`` off order slot ``s``; return (side, price, new level size)."""
    sd = oi[s, O_SIDE]
    px = oi[s, O_PRICE]
    if sd != r.side:
        _error(st, err_c, err_log, err_v, i, E_SIDE_MISMATCH, sd)
    if px != r.price:
        _error(st, err_c, err_log, err_v, i, E_PRICE_MISMATCH, px)
    rem = of[s, O_SIZE]
    of[s, O_FILL] = 0.0
    if r.size > rem * (1.0 + SIZE_EPS):
        _error(st, err_c, err_log, err_v, i, E_CANCEL_EXCEEDS, rem)
    left = rem - r.size
    if left <= rem * SIZE_EPS:
        new_size = _unlink(st, oi, of, li, lf, lk, lv, s)
        _free_order(st, oi, oid, ok, ov, s)
        return sd, px, new_size
    of[s, O_SIZE] = left
    lvl = oi[s, O_LEVEL]
    lf[lvl] -= r.size
    return sd, px, lf[lvl]


@njit(cache=True, inline="always", _nrt=False)
def _replace(st, oi, oid, of, ok, ov, li, lf, lk, lv, ice_i, ice_id, ice_f, r, s, is_add):
    """Re-state order slot ``s`` as ``(r.side, r.price, r.size)`` (a modify, or a repeated add).

    Returns ``(moved, old side, old price, old level size, side, price, new level size)``.
    """
    sd = np.int64(r.side)
    px = r.price
    sz = r.size
    old_sd = oi[s, O_SIDE]
    old_px = oi[s, O_PRICE]
    old_sz = of[s, O_SIZE]
    filled = of[s, O_FILL]
    of[s, O_FILL] = 0.0
    moved = old_px != px or old_sd != sd
    refill = (not is_add and not moved and filled > 0.0
              and sz > (old_sz - filled) + SIZE_EPS * old_sz)
    if refill:
        t = st[ICE_TOTAL] % ice_i.shape[0]
        ice_i[t, 0] = r.ts_event
        ice_i[t, 1] = sd
        ice_i[t, 2] = px
        ice_id[t] = r.order_id
        ice_f[t, 0] = old_sz
        ice_f[t, 1] = filled
        ice_f[t, 2] = sz
        st[ICE_TOTAL] += 1
    old_level = 0.0
    if sz <= 0.0:
        # a modify to nothing: the order is gone
        new_size = _unlink(st, oi, of, li, lf, lk, lv, s)
        _free_order(st, oi, oid, ok, ov, s)
        return False, old_sd, old_px, 0.0, old_sd, old_px, new_size
    if moved or is_add or sz > old_sz or refill:
        # to the back of the (new) level: loses priority
        old_level = _unlink(st, oi, of, li, lf, lk, lv, s)
        new_size = _link(st, oi, of, li, lf, lk, lv, s, sd, px, sz, r.ts_event)
    else:
        lvl = oi[s, O_LEVEL]
        of[s, O_SIZE] = sz
        lf[lvl] += sz - old_sz
        new_size = lf[lvl]
    return moved, old_sd, old_px, old_level, sd, px, new_size


@njit(cache=True, _nrt=False)
def _apply(i0, k0, rows, out, st, oi, oid, of, ok, ov, li, lf, lk, lv, err_c, err_log, err_v,
           ice_i, ice_id, ice_f):
    """Apply ``rows[i0:]`` writing L2 rows from ``out[k0]``; stop before a row that may not fit.

    Returns ``(next row, rows written)``; ``next row < len(rows)`` asks the caller to grow.
    """
    n = len(rows)
    k = k0
    o_cap = oi.shape[0]
    l_cap = li.shape[0]
    for i in range(i0, n):
        r = rows[i]
        kd = r.kind
        # an add or modify needs room for one new order and one new level
        full = (st[O_FREE] < 0 and st[O_HW] >= o_cap) or (st[L_FREE] < 0 and st[L_HW] >= l_cap)
        if full and ((kd == ADD) | (kd == MODIFY)):
            return i, k
        if kd == CLEAR:
            _reset(st, oid, ok, lk, li)
            st[RESYNC] = 0
            st[CLEARS] += 1
            out[k] = r
            k += 1
            continue
        if kd == TRADE and r.order_id != 0:
            # a fill of a resting order: no book change (the venue's cancel/modify follows)
            sd, px = _fill(st, oi, of, ok, ov, lk, lv, lf, r)
            if r.flags & F_LAST:
                # keep the message boundary: restate the level's current size
                _emit(out, k, r, DELTA, sd, px, _level_size(lk, lv, lf, sd, px), r.flags)
                k += 1
            continue
        if kd != ADD and kd != CANCEL and kd != MODIFY:
            out[k] = r  # L2 rows and trade prints pass through unchanged
            k += 1
            continue
        out_kind = SNAPSHOT if r.flags & F_SNAPSHOT else DELTA
        sd = np.int64(r.side)
        px = r.price
        s = _find(ok, ov, r.order_id) if r.order_id != 0 else -1
        moved = False
        if r.order_id == 0:
            # not an order: nothing to apply (validate_rows rejects these upstream)
            _error(st, err_c, err_log, err_v, i, E_NO_ORDER_ID, 0.0)
            new_size = _level_size(lk, lv, lf, sd, px)
        elif kd == CANCEL:
            if s < 0:
                _error(st, err_c, err_log, err_v, i, E_CANCEL_UNKNOWN, 0.0)
                new_size = _level_size(lk, lv, lf, sd, px)
            else:
                sd, px, new_size = _cancel(st, oi, oid, of, ok, ov, li, lf, lk, lv, err_c,
                                           err_log, err_v, i, r, s)
        elif s < 0:
            if kd == MODIFY:
                _error(st, err_c, err_log, err_v, i, E_MODIFY_UNKNOWN, 0.0)
            if r.size > 0.0:
                s = _new_order(st, oi, oid, of, ok, ov, r.order_id)
                new_size = _link(st, oi, of, li, lf, lk, lv, s, sd, px, r.size, r.ts_event)
            else:
                new_size = _level_size(lk, lv, lf, sd, px)
        else:
            if kd == ADD:
                _error(st, err_c, err_log, err_v, i, E_ADD_EXISTS, of[s, O_SIZE])
            elif oi[s, O_SIDE] != sd:
                _error(st, err_c, err_log, err_v, i, E_SIDE_MISMATCH, oi[s, O_SIDE])
            moved, o_sd, o_px, o_size, sd, px, new_size = _replace(
                st, oi, oid, of, ok, ov, li, lf, lk, lv, ice_i, ice_id, ice_f, r, s, kd == ADD)
            if moved:
                _emit(out, k, r, out_kind, o_sd, o_px, o_size, r.flags & (0xFF ^ F_LAST))
                k += 1
        _emit(out, k, r, out_kind, sd, px, new_size, r.flags)
        k += 1
    return n, k


@njit(cache=True, _nrt=False)
def _queue_ahead(oi, of, li, s):
    lvl = oi[s, O_LEVEL]
    j = li[lvl, L_HEAD]
    ahead = 0.0
    while j != s:
        ahead += of[j, O_SIZE]
        j = oi[j, O_NEXT]
    return ahead


@njit(cache=True, _nrt=False)
def _level_walk(oi, oid, of, li, lvl, ids, sizes):
    j = li[lvl, L_HEAD]
    n = 0
    while j >= 0:
        ids[n] = oid[j]
        sizes[n] = of[j, O_SIZE]
        n += 1
        j = oi[j, O_NEXT]
    return n


def _pow2(n: int) -> int:
    return 1 << max(4, int(n - 1).bit_length())


class L3Book:
    """One instrument's order-by-order book (see the module docstring for the rules).

    Args:
        capacity: Initial order slots (levels start at a quarter of it); both grow by doubling.

    Example:
        >>> from actors.core.batch import ADD, BID, F_LAST, empty_rows
        >>> rows = empty_rows(2)
        >>> rows["kind"], rows["side"], rows["price"], rows["flags"] = ADD, BID, 100, F_LAST
        >>> rows["size"], rows["order_id"], rows["seq"] = [2.0, 3.0], [7, 8], [1, 2]
        >>> book = L3Book()
        >>> book.apply(rows)["size"].tolist()  # the level's aggregated size after each add
        [2.0, 5.0]
        >>> book.queue_ahead(8), book.level_orders(BID, 100)
        (2.0, [(7, 2.0), (8, 3.0)])
    """

    def __init__(self, capacity: int = 1024) -> None:
        n = _pow2(capacity)
        m = _pow2(max(16, n // 4))
        self._st = np.zeros(N_STATE, dtype=np.int64)
        self._st[[O_FREE, L_FREE]] = -1
        self._alloc_orders(n)
        self._alloc_levels(m)
        self._err_c = np.zeros(len(ERROR_REASONS), dtype=np.int64)
        self._err_log = np.zeros((ERR_LOG, 2), dtype=np.int64)
        self._err_v = np.zeros(ERR_LOG, dtype=np.float64)
        self._ice_i = np.zeros((ICE_RING, 3), dtype=np.int64)
        self._ice_id = np.zeros(ICE_RING, dtype=np.uint64)
        self._ice_f = np.zeros((ICE_RING, 3), dtype=np.float64)
        self.last_errors: list[str] = []

    # --- storage -----------------------------------------------------------------------------
    def _alloc_orders(self, n: int) -> None:
        self._oi = np.zeros((n, O_NI), dtype=np.int64)
        self._oid = np.zeros(n, dtype=np.uint64)
        self._of = np.zeros((n, 2), dtype=np.float64)
        self._ok = np.zeros(2 * n, dtype=np.uint64)
        self._ov = np.zeros(2 * n, dtype=np.int64)

    def _alloc_levels(self, m: int) -> None:
        self._li = np.zeros((m, L_NI), dtype=np.int64)
        self._li[:, L_SIDE] = -1
        self._lf = np.zeros(m, dtype=np.float64)
        self._lk = np.zeros(2 * m, dtype=np.uint64)
        self._lv = np.zeros(2 * m, dtype=np.int64)

    def _grow(self) -> None:
        st = self._st
        if st[O_FREE] < 0 and st[O_HW] >= len(self._oid):
            oi, oid, of, ok, ov = self._oi, self._oid, self._of, self._ok, self._ov
            self._alloc_orders(2 * len(oid))
            n = len(oid)
            self._oi[:n] = oi
            self._oid[:n] = oid
            self._of[:n] = of
            _rehash(ok, ov, self._ok, self._ov)
        if st[L_FREE] < 0 and st[L_HW] >= len(self._lf):
            li, lf, lk, lv = self._li, self._lf, self._lk, self._lv
            self._alloc_levels(2 * len(lf))
            m = len(lf)
            self._li[:m] = li
            self._lf[:m] = lf
            _rehash(lk, lv, self._lk, self._lv)

    # --- applying rows -----------------------------------------------------------------------
    def apply(self, rows: np.ndarray) -> np.ndarray:
        """Apply ``MD_DTYPE`` rows; return the L2 rows they produce (see the module docstring).

        Integrity errors never raise: they are counted in :attr:`error_counts`, described in
        :attr:`last_errors` (this call only) and set :attr:`needs_resync`.
        """
        if rows.dtype != MD_DTYPE:
            rows = validate_rows(rows)
        n = len(rows)
        out = np.empty(2 * n, dtype=MD_DTYPE)
        st = self._st
        st[ERR_LOGGED] = 0
        i, k = 0, 0
        while True:
            i, k = _apply(i, k, rows, out, st, self._oi, self._oid, self._of, self._ok,
                          self._ov, self._li, self._lf, self._lk, self._lv, self._err_c,
                          self._err_log, self._err_v, self._ice_i, self._ice_id, self._ice_f)
            if i >= n:
                break
            self._grow()
        self.last_errors = self._describe_errors(rows)
        return out[:k]

    def _describe_errors(self, rows: np.ndarray) -> list[str]:
        logged = int(self._st[ERR_LOGGED])
        msgs: list[str] = []
        for j in range(min(logged, ERR_LOG)):
            i, reason = (int(x) for x in self._err_log[j])
            value = float(self._err_v[j])
            r = rows[i]
            oid = int(r["order_id"])
            where = f"{KIND_NAMES.get(int(r['kind']), '?')}[row {i}, seq {int(r['seq'])}]"
            if reason == E_ADD_EXISTS:
                err = ValidationError(f"{where}.order_id",
                                      f"a new order id (it rests with size {value:g})", oid)
            elif reason in (E_CANCEL_UNKNOWN, E_MODIFY_UNKNOWN):
                err = ValidationError(f"{where}.order_id", "a resting order", oid)
            elif reason == E_CANCEL_EXCEEDS:
                err = ValidationError(
                    f"{where}.size", f"<= the remaining size {value:g} of order {oid}",
                    float(r["size"]),
                )
            elif reason == E_SIDE_MISMATCH:
                err = ValidationError(f"{where}.side", f"the side {int(value)} of order {oid}",
                                      int(r["side"]))
            elif reason == E_PRICE_MISMATCH:
                err = ValidationError(f"{where}.price", f"the price {int(value)} of order {oid}",
                                      int(r["price"]))
            else:
                err = ValidationError(f"{where}.order_id", "> 0 on an add/cancel/modify row", oid)
            msgs.append(str(err))
        if logged > ERR_LOG:
            msgs.append(f"... and {logged - ERR_LOG} more integrity errors in this batch")
        return msgs

    # --- counters ----------------------------------------------------------------------------
    @property
    def error_counts(self) -> dict[str, int]:
        """Integrity errors since creation, by reason (see :data:`ERROR_REASONS`)."""
        return {name: int(c) for name, c in zip(ERROR_REASONS, self._err_c, strict=True)}

    @property
    def needs_resync(self) -> bool:
        """True after an integrity error, until the next ``CLEAR``: quarantine the symbol."""
        return bool(self._st[RESYNC])

    @property
    def n_orders(self) -> int:
        """Resting orders."""
        return int(self._st[N_ORDERS])

    @property
    def n_levels(self) -> int:
        """Non-empty levels, both sides."""
        return int(self._st[N_LEVELS])

    @property
    def fills(self) -> int:
        """Fill rows seen (``TRADE`` with an ``order_id``)."""
        return int(self._st[FILLS])

    @property
    def fills_unknown(self) -> int:
        """Fill rows naming an order that is not resting (not an error: fills change nothing)."""
        return int(self._st[FILLS_UNKNOWN])

    @property
    def hidden_fills(self) -> int:
        """Fills that took an order past its displayed size (more executed than shown)."""
        return int(self._st[HIDDEN_FILLS])

    @property
    def iceberg_refills(self) -> int:
        """Iceberg refills detected since creation (see the module docstring)."""
        return int(self._st[ICE_TOTAL])

    def recent_icebergs(self) -> list[dict[str, Any]]:
        """The last :data:`ICE_RING` refills, oldest first: time, side, price, order, sizes."""
        total = int(self._st[ICE_TOTAL])
        ring = len(self._ice_id)
        idx = [j % ring for j in range(max(0, total - ring), total)]
        return [
            {
                "ts_event": int(self._ice_i[j, 0]),
                "side": int(self._ice_i[j, 1]),
                "price": int(self._ice_i[j, 2]),
                "order_id": int(self._ice_id[j]),
                "shown": float(self._ice_f[j, 0]),
                "filled": float(self._ice_f[j, 1]),
                "new_size": float(self._ice_f[j, 2]),
            }
            for j in idx
        ]

    def iceberg_refills_by_price(self) -> dict[tuple[int, int], int]:
        """Refills among the recent ones (:meth:`recent_icebergs`), by ``(side, price)``."""
        counts: dict[tuple[int, int], int] = {}
        for e in self.recent_icebergs():
            key = (e["side"], e["price"])
            counts[key] = counts.get(key, 0) + 1
        return counts

    # --- reading -----------------------------------------------------------------------------
    def _slot(self, order_id: int) -> int:
        s = _find(self._ok, self._ov, np.uint64(order_id)) if order_id > 0 else -1
        if s < 0:
            raise ValidationError("order_id", "a resting order", order_id)
        return int(s)

    def order(self, order_id: int) -> tuple[int, int, float, int] | None:
        """Return ``(side, price, size, priority time ns)`` of a resting order, or None."""
        try:
            s = self._slot(order_id)
        except ValidationError:
            return None
        oi = self._oi[s]
        return int(oi[O_SIDE]), int(oi[O_PRICE]), float(self._of[s, O_SIZE]), int(oi[O_TS])

    def queue_ahead(self, order_id: int) -> float:
        """Size resting ahead of ``order_id`` at its level (its exact queue position).

        Raises:
            ValidationError: when the order is not resting.
        """
        return float(_queue_ahead(self._oi, self._of, self._li, self._slot(order_id)))

    def level_orders(self, side: int, price: int) -> list[tuple[int, float]]:
        """Return the orders at ``(side, price)`` in priority order as ``(order_id, size)``."""
        lvl = _find(self._lk, self._lv, _level_key(int(side), int(price)))
        if lvl < 0:
            return []
        cnt = int(self._li[lvl, L_COUNT])
        ids = np.zeros(cnt, dtype=np.uint64)
        sizes = np.zeros(cnt, dtype=np.float64)
        _level_walk(self._oi, self._oid, self._of, self._li, lvl, ids, sizes)
        return list(zip(ids.tolist(), sizes.tolist(), strict=True))

    def level_queue(self, side: int, price: int) -> tuple[tuple[int, float], ...]:
        """Return the orders at ``(side, price)`` in FIFO order as ``(priority, size)``.

        Priorities only grow: an order that loses its place (added, moved, enlarged, refilled)
        gets a new, larger number, so "ahead of an order that joined when the largest number
        at the level was ``p``" is exactly "priority ``<= p``" (the paper venue's exact queue
        position on market-by-order data).
        """
        lvl = _find(self._lk, self._lv, _level_key(int(side), int(price)))
        if lvl < 0:
            return ()
        out = []
        j = int(self._li[lvl, L_HEAD])
        while j >= 0:
            out.append((int(self._oi[j, O_PRIO]), float(self._of[j, O_SIZE])))
            j = int(self._oi[j, O_NEXT])
        return tuple(out)

    def l2_levels(self, side: int, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the best ``depth`` levels of ``side``: prices (ticks) and aggregated sizes."""
        hw = int(self._st[L_HW])
        li = self._li[:hw]
        live = np.flatnonzero(li[:, L_SIDE] == int(side))
        prices = li[live, L_PRICE]
        order = np.argsort(-prices if side == 0 else prices, kind="stable")[: max(0, depth)]
        return prices[order].copy(), self._lf[live][order].copy()

    # --- checkpoint --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Return a JSON-safe image: every resting order in priority order, and the counters."""
        hw = int(self._st[O_HW])
        live = np.flatnonzero(self._oid[:hw] != 0)
        live = live[np.argsort(self._oi[live, O_PRIO], kind="stable")]
        orders = [
            [int(self._oid[s]), int(self._oi[s, O_SIDE]), int(self._oi[s, O_PRICE]),
             float(self._of[s, O_SIZE]), int(self._oi[s, O_TS]), float(self._of[s, O_FILL])]
            for s in live.tolist()
        ]
        st = self._st
        return {
            "orders": orders,
            "errors": self.error_counts,
            "needs_resync": self.needs_resync,
            "fills": self.fills,
            "fills_unknown": self.fills_unknown,
            "hidden_fills": self.hidden_fills,
            "clears": int(st[CLEARS]),
            "iceberg_refills": self.iceberg_refills,
            "recent_icebergs": self.recent_icebergs(),
        }

    @classmethod
    def restore(cls, image: dict[str, Any]) -> L3Book:
        """Rebuild a book from :meth:`snapshot` output (queues in the same priority order)."""
        orders = image["orders"]
        book = cls(capacity=max(1024, 2 * len(orders)))
        rows = np.zeros(len(orders), dtype=MD_DTYPE)
        if orders:
            oid, side, price, size, ts, _fill = zip(*orders, strict=True)
            rows["order_id"] = oid
            rows["side"] = side
            rows["price"] = price
            rows["size"] = size
            rows["ts_event"] = ts
            rows["kind"] = ADD
            book.apply(rows)
            for o in orders:
                if o[5]:
                    book._of[book._slot(int(o[0])), O_FILL] = float(o[5])
        book._err_c[:] = [int(image["errors"].get(name, 0)) for name in ERROR_REASONS]
        st = book._st
        st[RESYNC] = int(bool(image["needs_resync"]))
        st[FILLS] = int(image["fills"])
        st[FILLS_UNKNOWN] = int(image["fills_unknown"])
        st[HIDDEN_FILLS] = int(image["hidden_fills"])
        st[CLEARS] = int(image["clears"])
        recent = image["recent_icebergs"]
        total = int(image["iceberg_refills"])
        st[ICE_TOTAL] = total
        ring = len(book._ice_id)
        for j, e in zip(range(total - len(recent), total), recent, strict=True):
            t = j % ring
            book._ice_i[t] = (e["ts_event"], e["side"], e["price"])
            book._ice_id[t] = e["order_id"]
            book._ice_f[t] = (e["shown"], e["filled"], e["new_size"])
        book.last_errors = []
        return book
