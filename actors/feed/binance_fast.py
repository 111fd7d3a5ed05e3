"""Compiled parser of Binance recordings: raw ``<ns> <json>`` bytes to columnar messages.

The reference loader (:func:`actors.feed.binance.read_session` with ``fast=False``) decodes
every line with ``json.loads`` and converts every price with ``Decimal``: exact, and about
0.5 M rows/s. This module does the same work in numba over the decompressed file bytes:

1. :func:`scan_lines` finds the lines, parses the receive time ``<ns>`` and classifies each
   line by its ``"e"`` value (``depthUpdate``, ``trade``, ``bookTicker``), a ``lastUpdateId``
   key (a REST snapshot) or ``"A"``/``"B"`` keys (a spot ``bookTicker``), wherever the keys
   sit in the line.
2. :func:`parse_lines` walks each depthUpdate / trade / bookTicker line as JSON (any key
   order, any whitespace, unknown keys skipped but validated) into preallocated columns.
   Prices become integer ticks exactly, given the tick as ``(mantissa, exponent)``
   (``0.1 = (1, -1)``); sizes become ``m / 10.0**k`` for the decimal digits ``m`` and ``k``
   fractional digits, which is exactly Python's ``float(s)`` for ``m < 2**53`` and
   ``k <= 22`` (one correctly rounded division of two exact doubles).
3. :func:`sync_run` applies Binance's sync rules to the parsed messages and writes
   :data:`~actors.core.batch.MD_DTYPE` rows, recording where batches are cut and tickers fall.

The compiled parser only takes what it can take exactly. A line it cannot (a price off the
tick, a size beyond the exact range, escapes, duplicated keys, a missing field, another
symbol, malformed JSON, a snapshot) is marked :data:`K_SLOW` / :data:`K_OTHER` /
:data:`K_SNAPSHOT`, and the loader hands that line to the reference ``json`` code, which
counts and reports what is wrong with it. Fast and reference paths therefore yield identical
rows, tickers and statistics.

Example:
    >>> buf = np.frombuffer(b'1 {"data":{"e":"depthUpdate","E":2,"s":"X","U":3,"u":4,'
    ...                     b'"b":[["10.5","1.25"]],"a":[]}}\\n', dtype=np.uint8)
    >>> d = parse_depth(buf, 1, -1)
    >>> d.u.tolist(), d.price.tolist(), d.size.tolist()
    ([4], [105], [1.25])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from actors.core.batch import ASK, BID, DELTA, F_LAST, TRADE

# --- line kinds (scan_lines / parse_lines) ---------------------------------------------------
K_OTHER = 0  # not a stream message the kernel handles: the reference path reads it
K_DEPTH = 1
K_TRADE = 2
K_TICKER = 3
K_SNAPSHOT = 4
K_SLOW = 5  # looked like a stream message, but the compiled parser declined it

WANT_DEPTH, WANT_TRADE, WANT_TICKER = 1, 2, 4
WANT_ALL = WANT_DEPTH | WANT_TRADE | WANT_TICKER

# depth message columns (int64 matrix)
D_LINE, D_E, D_T, D_U, D_LU, D_PU, D_HASPU, D_FIRST, D_NB, D_NA = range(10)
N_D = 10
# trade columns (int64 matrix; sizes in a float64 array)
T_LINE, T_E, T_T, T_ID, T_PRICE, T_M = range(6)
N_T = 6
# bookTicker columns (int64 matrix; sizes are byte spans of the raw strings)
B_LINE, B_U, B_BID, B_ASK, B_BSZ0, B_BSZ1, B_ASZ0, B_ASZ1 = range(8)
N_B = 8

# --- sync kernel ---------------------------------------------------------------------------
# state slots (int64 array)
S_SYNCED, S_HAS_LAST, S_LAST_U, S_SNAP_ID, S_FUTURES, S_LO, S_N, S_NEED = range(8)
N_STATE = 8
# counter slots (int64 array) = SyncStats fields the kernel changes
C_DIFFS, C_APPLIED, C_STALE, C_BUFFERED, C_TRADES = range(5)
N_COUNT = 5
# stop reasons
R_END, R_PY, R_FULL = 0, 1, 2
MAX_MS = (2**63 - 1) // 1_000_000  # the latest exchange time (ms) an int64 ns can hold
# event records: (type, value, counters...)
EV_CUT, EV_TICKER = 0, 1
N_EV = 2 + N_COUNT

_I64_MAX = np.iinfo(np.int64).max
_M_MAX = 10**17  # a mantissa at or above this would overflow the next digit's 10**18 bound
_F_EXACT = 2**53
_POW10_I = np.array([10**i for i in range(19)], dtype=np.int64)
_POW10_F = np.array([float(10**i) for i in range(23)], dtype=np.float64)  # exact doubles


def _lit(s: bytes) -> np.ndarray:
    return np.array(list(s), dtype=np.uint8)


_LIT_DEPTH = _lit(b"depthUpdate")
_LIT_TRADE = _lit(b"trade")
_LIT_TICKER = _lit(b"bookTicker")
_LIT_LUID = _lit(b"lastUpdateId")
_LIT_DATA = _lit(b"data")

# data-object keys (bit per key, to catch duplicates)
_KE, _KEE, _KT, _KUU, _KU, _KPU, _KID = 1, 2, 4, 8, 16, 32, 64
_KS, _KB, _KA, _KBQ, _KAQ, _KP, _KQ, _KM = 128, 256, 512, 1024, 2048, 4096, 8192, 16384
_K_INTS = _KEE | _KT | _KUU | _KU | _KPU | _KID

# scratch slots of one parsed message; a side ("b"/"a") holds first level, count, whether it
# was a list, and its price when it was a string (bookTicker); "B"/"A" hold a byte span
F_ETYPE, F_E, F_T, F_UU, F_U, F_PU, F_ID, F_SEEN, F_SYMOK, F_P, F_M = range(11)
F_B, F_A, F_BQ, F_AQ, F_S = 11, 15, 19, 21, 23
N_F = 25
FIRST, COUNT, IS_LIST, PRICE = 0, 1, 2, 3


def _key_tables() -> tuple[np.ndarray, np.ndarray]:
    """Bit and scratch slot of each one-letter data key, by character."""
    bits, slots = np.zeros(128, np.int64), np.zeros(128, np.int64)
    for c, bit, slot in (("e", _KE, F_ETYPE), ("E", _KEE, F_E), ("T", _KT, F_T),
                         ("U", _KUU, F_UU), ("u", _KU, F_U), ("t", _KID, F_ID), ("s", _KS, F_S),
                         ("b", _KB, F_B), ("a", _KA, F_A), ("B", _KBQ, F_BQ), ("A", _KAQ, F_AQ),
                         ("p", _KP, F_P), ("q", _KQ, 0), ("m", _KM, F_M)):
        bits[ord(c)], slots[ord(c)] = bit, slot
    return bits, slots


_KEY_BIT, _KEY_SLOT = _key_tables()


@dataclass(frozen=True, slots=True)
class DepthArrays:
    """The depthUpdate messages of a buffer, columnar (see :func:`parse_depth`).

    Per message ``j``: ``line`` (index of the line in the buffer), ``ts_init`` (receive ns),
    ``E``, ``T`` (0 when absent, as on spot), ``U``, ``u``, ``pu`` (-1 when absent, as on
    spot), ``first`` (index of its first level), ``n_bid`` and ``n_ask``; its levels are
    ``first .. first + n_bid + n_ask``, bids first, each in message order. Per level:
    ``side`` (BID/ASK), ``price`` (integer ticks), ``size`` (float), and ``seq`` (its
    message's ``u``, expanded on access). ``declined`` lists the lines that looked like
    depthUpdates but that the compiled parser did not take (a price off the tick, a size
    beyond the exact range, malformed JSON, escapes, ...): a caller must read them another
    way (the loader hands them to the ``json`` reference, which reports the bad ones);
    nothing is rounded or guessed. Columns are also reachable by name: ``d["price"]``.
    """

    line: np.ndarray
    ts_init: np.ndarray
    E: np.ndarray
    T: np.ndarray
    U: np.ndarray
    u: np.ndarray
    pu: np.ndarray
    first: np.ndarray
    n_bid: np.ndarray
    n_ask: np.ndarray
    side: np.ndarray
    price: np.ndarray
    size: np.ndarray
    declined: np.ndarray

    @property
    def seq(self) -> np.ndarray:
        """Per level: the final update id ``u`` of its message."""
        return np.repeat(self.u, self.n_bid + self.n_ask)

    def __getitem__(self, name: str) -> np.ndarray:
        return getattr(self, name)


# --- bytes -------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _digit(c: int) -> bool:
    return 48 <= c <= 57


@njit(cache=True, inline="always")
def _ws(buf: np.ndarray, p: int, q: int) -> int:
    """Skip JSON whitespace (a line holds no newlines; a file with ``\\r`` is not fast)."""
    while p < q and (buf[p] == 32 or buf[p] == 9):
        p += 1
    return p


@njit(cache=True)
def _eq(buf: np.ndarray, a: int, b: int, lit: np.ndarray) -> bool:
    """Whether ``buf[a:b]`` equals ``lit``."""
    if b - a != lit.size:
        return False
    j = 0
    while j < lit.size and buf[a + j] == lit[j]:
        j += 1
    return j == lit.size


@njit(cache=True)
def _str_end(buf: np.ndarray, p: int, q: int) -> tuple[int, bool]:
    """At an opening quote: (index after the closing quote or -1, whether it has escapes)."""
    p += 1
    esc = False
    while p < q:
        c = buf[p]
        if c == 34:
            return p + 1, esc
        if c < 32:
            return -1, esc
        if c == 92:
            esc = True
            if p + 1 >= q:
                return -1, esc
            c2 = buf[p + 1]
            if c2 == 117:  # \uXXXX
                if p + 5 >= q:
                    return -1, esc
                for h in range(p + 2, p + 6):
                    x = buf[h]
                    if not (_digit(x) or 65 <= x <= 70 or 97 <= x <= 102):
                        return -1, esc
                p += 6
                continue
            if not (c2 == 34 or c2 == 92 or c2 == 47 or c2 == 98 or c2 == 102 or c2 == 110
                    or c2 == 114 or c2 == 116):
                return -1, esc
            p += 2
            continue
        p += 1
    return -1, esc


@njit(cache=True)
def _skip_number(buf: np.ndarray, p: int, q: int) -> int:
    """Skip a JSON number (strict grammar); -1 if there is none."""
    if p < q and buf[p] == 45:
        p += 1
    if p >= q:
        return -1
    if buf[p] == 48:
        p += 1
    elif _digit(buf[p]):
        while p < q and _digit(buf[p]):
            p += 1
    else:
        return -1
    if p < q and buf[p] == 46:
        p += 1
        s = p
        while p < q and _digit(buf[p]):
            p += 1
        if p == s:
            return -1
    if p < q and (buf[p] == 101 or buf[p] == 69):
        p += 1
        if p < q and (buf[p] == 43 or buf[p] == 45):
            p += 1
        s = p
        while p < q and _digit(buf[p]):
            p += 1
        if p == s:
            return -1
    return p


@njit(cache=True)
def _skip_literal(buf: np.ndarray, p: int, q: int) -> int:
    """Skip ``true``, ``false`` or ``null``; -1 otherwise."""
    c = buf[p]
    if c == 116 and p + 4 <= q and buf[p + 1] == 114 and buf[p + 2] == 117 and buf[p + 3] == 101:
        return p + 4
    if (c == 102 and p + 5 <= q and buf[p + 1] == 97 and buf[p + 2] == 108
            and buf[p + 3] == 115 and buf[p + 4] == 101):
        return p + 5
    if c == 110 and p + 4 <= q and buf[p + 1] == 117 and buf[p + 2] == 108 and buf[p + 3] == 108:
        return p + 4
    return -1


@njit(cache=True)
def _skip_value(buf: np.ndarray, p: int, q: int, stack: np.ndarray) -> int:
    """Skip (and validate) one JSON value of any shape; index after it, or -1."""
    depth = 0
    while True:
        p = _ws(buf, p, q)
        if p >= q:
            return -1
        c = buf[p]
        if c == 123 or c == 91:
            if depth >= stack.size:
                return -1
            stack[depth] = c
            depth += 1
            p = _ws(buf, p + 1, q)
            if p >= q:
                return -1
            if (c == 123 and buf[p] == 125) or (c == 91 and buf[p] == 93):
                depth -= 1
                p += 1
            elif c == 123:
                if buf[p] != 34:
                    return -1
                p, _e = _str_end(buf, p, q)
                if p < 0:
                    return -1
                p = _ws(buf, p, q)
                if p >= q or buf[p] != 58:
                    return -1
                p += 1
                continue
            else:
                continue
        elif c == 34:
            p, _e = _str_end(buf, p, q)
        elif c == 45 or _digit(c):
            p = _skip_number(buf, p, q)
        else:
            p = _skip_literal(buf, p, q)
        if p < 0:
            return -1
        # after a value: close containers or move to the next member
        while True:
            if depth == 0:
                return p
            p = _ws(buf, p, q)
            if p >= q:
                return -1
            c = buf[p]
            top = stack[depth - 1]
            if c == 44:
                p = _ws(buf, p + 1, q)
                if top == 123:
                    if p >= q or buf[p] != 34:
                        return -1
                    p, _e = _str_end(buf, p, q)
                    if p < 0:
                        return -1
                    p = _ws(buf, p, q)
                    if p >= q or buf[p] != 58:
                        return -1
                    p += 1
                break
            if (c == 125 and top == 123) or (c == 93 and top == 91):
                depth -= 1
                p += 1
                continue
            return -1


@njit(cache=True)
def _parse_uint(buf: np.ndarray, p: int, q: int) -> tuple[int, int]:
    """A JSON non-negative integer below 10**18: (value, index after) or (0, -1)."""
    v = 0
    s = p
    if p < q and buf[p] == 48:
        p += 1
    else:
        while p < q and _digit(buf[p]):
            if v >= _M_MAX:
                return 0, -1
            v = v * 10 + (buf[p] - 48)
            p += 1
    if p == s:
        return 0, -1
    if p < q and (_digit(buf[p]) or buf[p] == 46 or buf[p] == 101 or buf[p] == 69):
        return 0, -1  # leading zero, fraction or exponent: not ours
    return v, p


@njit(cache=True)
def _parse_dec(buf: np.ndarray, p: int, q: int) -> tuple[int, int, int]:
    """Inside a string: ``digits[.digits]"`` as (mantissa m, fractional digits k, index after
    the closing quote), value ``m * 10**-k``; trailing fractional zeros are dropped. -1 index
    when the string is anything else or ``m`` would reach 10**18."""
    m = 0
    k = 0
    zeros = 0
    s = p
    while p < q and _digit(buf[p]):
        if m >= _M_MAX:
            return 0, 0, -1
        m = m * 10 + (buf[p] - 48)
        p += 1
    if p == s:
        return 0, 0, -1
    if p < q and buf[p] == 46:
        p += 1
        f = p
        while p < q and _digit(buf[p]):
            d = buf[p] - 48
            if d == 0:
                zeros += 1
            else:
                for _ in range(zeros + 1):
                    if m >= _M_MAX:
                        return 0, 0, -1
                    m *= 10
                m += d
                k += zeros + 1
                zeros = 0
            p += 1
        if p == f:
            return 0, 0, -1
    if p >= q or buf[p] != 34:
        return 0, 0, -1
    return m, k, p + 1


@njit(cache=True)
def to_ticks(m: int, k: int, tick_m: int, tick_e: int) -> tuple[int, bool]:
    """Exact ticks of the decimal ``m * 10**-k`` for a tick ``tick_m * 10**tick_e``:
    ``(ticks, True)``, or ``(0, False)`` when it is not a whole number of ticks (or would
    overflow int64)."""
    if m == 0:
        return 0, True
    s = -k - tick_e  # ticks = m * 10**s / tick_m
    if s >= 0:
        if s > 18:
            return 0, False
        p10 = _POW10_I[s]
        if m > _I64_MAX // p10:
            return 0, False
        num = m * p10
        if num % tick_m != 0:
            return 0, False
        return num // tick_m, True
    s = -s
    if s > 18:
        return 0, False
    p10 = _POW10_I[s]
    if p10 > _I64_MAX // tick_m:
        return 0, False  # the divisor exceeds any mantissa: m != 0 is not a multiple
    den = tick_m * p10
    if m % den != 0:
        return 0, False
    return m // den, True


@njit(cache=True)
def to_size(m: int, k: int) -> tuple[float, bool]:
    """``float`` of the decimal ``m * 10**-k``, exactly as Python's ``float(str)``; False
    when outside the exact range (``m >= 2**53`` or ``k > 22``)."""
    if m >= _F_EXACT or k > 22:
        return 0.0, False
    return m / _POW10_F[k], True


# --- lines ---------------------------------------------------------------------------------
@njit(cache=True)
def _ts_body(buf: np.ndarray, p: int, q: int) -> tuple[int, int]:
    """The leading ``<ns> `` of a line: (ns, index of the JSON) or (0, -1)."""
    v = 0
    s = p
    while p < q and _digit(buf[p]):
        d = buf[p] - 48
        if v > (_I64_MAX - d) // 10:
            return 0, -1
        v = v * 10 + d
        p += 1
    if p == s or p >= q or buf[p] != 32:
        return 0, -1
    return v, p + 1


@njit(cache=True)
def _classify(buf: np.ndarray, p: int, q: int) -> int:
    """Kind of the JSON at ``[p, q)``, by its keys (in any order): a hint, which
    :func:`parse_lines` confirms."""
    has_luid = False
    has_a = False
    has_b = False
    while p < q:
        if buf[p] != 34:
            p += 1
            continue
        s = p + 1
        e = s
        while e < q and buf[e] != 34:
            if buf[e] == 92:
                e += 1
            e += 1
        if e >= q:
            return K_OTHER
        c = _ws(buf, e + 1, q)
        if c < q and buf[c] == 58:  # a key
            if e - s == 1:
                ch = buf[s]
                if ch == 101:  # "e": the event type decides
                    v = _ws(buf, c + 1, q)
                    if v >= q or buf[v] != 34:
                        return K_OTHER
                    ve = v + 1
                    while ve < q and buf[ve] != 34:
                        ve += 1
                    if _eq(buf, v + 1, ve, _LIT_DEPTH):
                        return K_DEPTH
                    if _eq(buf, v + 1, ve, _LIT_TRADE):
                        return K_TRADE
                    if _eq(buf, v + 1, ve, _LIT_TICKER):
                        return K_TICKER
                    return K_OTHER
                if ch == 65:
                    has_a = True
                elif ch == 66:
                    has_b = True
            elif _eq(buf, s, e, _LIT_LUID):
                has_luid = True
            p = c + 1
        else:
            p = e + 1
    if has_luid:
        return K_SNAPSHOT
    if has_a and has_b:
        return K_TICKER
    return K_OTHER


@njit(cache=True)
def scan_lines(buf: np.ndarray) -> tuple:
    """Find and classify the lines of a recording.

    Args:
        buf: The decompressed file, ``uint8``.

    Returns:
        ``(starts, ends, body, kinds, ts_init, clean)``: per line its first byte, the index of
        its newline (or the buffer end), the first byte of its JSON, its kind (``K_*``; a line
        without a valid ``<ns> `` prefix is ``K_SLOW``) and its receive time; ``clean`` is
        False when the buffer holds a ``\\r`` or a non-ASCII byte (text-mode line splitting or
        decoding could then differ from byte splitting: the loader reads such a file with the
        reference path).
    """
    n = buf.size
    nl = 0
    for i in range(n):
        if buf[i] == 10:
            nl += 1
    if n > 0 and buf[n - 1] != 10:
        nl += 1
    starts = np.empty(nl, np.int64)
    ends = np.empty(nl, np.int64)
    body = np.empty(nl, np.int64)
    kinds = np.empty(nl, np.uint8)
    ts = np.zeros(nl, np.int64)
    clean = True
    p = 0
    for j in range(nl):
        q = p
        while q < n:
            c = buf[q]
            if c == 10:
                break
            if c == 13 or c >= 128:
                clean = False
            q += 1
        starts[j] = p
        ends[j] = q
        t, b = _ts_body(buf, p, q)
        if b < 0:
            kinds[j] = K_SLOW
            body[j] = p
        else:
            ts[j] = t
            body[j] = b
            kinds[j] = _classify(buf, b, q)
        p = q + 1
    return starts, ends, body, kinds, ts, clean


@njit(cache=True)
def _parse_levels(buf: np.ndarray, p: int, q: int, side: int, tick_m: int, tick_e: int,
                  lside: np.ndarray, lpx: np.ndarray, lsz: np.ndarray,
                  nlv: int) -> tuple[int, int]:
    """At ``[``: a list of ``["price", "size"]`` pairs into the level columns."""
    p = _ws(buf, p + 1, q)
    if p < q and buf[p] == 93:
        return p + 1, nlv
    while True:
        if p >= q or buf[p] != 91:
            return -1, nlv
        p = _ws(buf, p + 1, q)
        if p >= q or buf[p] != 34:
            return -1, nlv
        m, k, p = _parse_dec(buf, p + 1, q)
        if p < 0:
            return -1, nlv
        ticks, ok = to_ticks(m, k, tick_m, tick_e)
        if not ok:
            return -1, nlv
        p = _ws(buf, p, q)
        if p >= q or buf[p] != 44:
            return -1, nlv
        p = _ws(buf, p + 1, q)
        if p >= q or buf[p] != 34:
            return -1, nlv
        m, k, p = _parse_dec(buf, p + 1, q)
        if p < 0:
            return -1, nlv
        size, ok = to_size(m, k)
        if not ok:
            return -1, nlv
        p = _ws(buf, p, q)
        if p >= q or buf[p] != 93:
            return -1, nlv
        lside[nlv] = side
        lpx[nlv] = ticks
        lsz[nlv] = size
        nlv += 1
        p = _ws(buf, p + 1, q)
        if p >= q:
            return -1, nlv
        if buf[p] == 44:
            p = _ws(buf, p + 1, q)
            continue
        if buf[p] == 93:
            return p + 1, nlv
        return -1, nlv


@njit(cache=True)
def _plain_str(buf: np.ndarray, p: int, q: int) -> tuple[int, int, int]:
    """At a string without escapes: (index after it, first byte, end byte), or -1 first."""
    if buf[p] != 34:
        return -1, 0, 0
    ve, esc = _str_end(buf, p, q)
    if ve < 0 or esc:
        return -1, 0, 0
    return ve, p + 1, ve - 1


@njit(cache=True)
def _price_str(buf: np.ndarray, p: int, q: int, tick_m: int, tick_e: int) -> tuple[int, int]:
    """At a decimal string: (index after it, exact ticks), or -1 (not ours, or off tick)."""
    if buf[p] != 34:
        return -1, 0
    m, k, p = _parse_dec(buf, p + 1, q)
    if p < 0:
        return -1, 0
    ticks, ok = to_ticks(m, k, tick_m, tick_e)
    return (p if ok else -1), ticks


@njit(cache=True)
def _size_str(buf: np.ndarray, p: int, q: int) -> tuple[int, float]:
    """At a decimal string: (index after it, ``float(s)`` exactly), or -1."""
    if buf[p] != 34:
        return -1, 0.0
    m, k, p = _parse_dec(buf, p + 1, q)
    if p < 0:
        return -1, 0.0
    size, ok = to_size(m, k)
    return (p if ok else -1), size


@njit(cache=True)
def _event_type(buf: np.ndarray, a: int, b: int) -> int:
    """K_DEPTH / K_TRADE / K_TICKER for the ``"e"`` value ``buf[a:b]``, 0 for another."""
    if _eq(buf, a, b, _LIT_DEPTH):
        return K_DEPTH
    if _eq(buf, a, b, _LIT_TRADE):
        return K_TRADE
    if _eq(buf, a, b, _LIT_TICKER):
        return K_TICKER
    return 0


@njit(cache=True)
def _parse_data(buf: np.ndarray, p: int, q: int, sym: np.ndarray, tick_m: int, tick_e: int,
                lside: np.ndarray, lpx: np.ndarray, lsz: np.ndarray, nlv: int,
                stack: np.ndarray, f: np.ndarray, fsz: np.ndarray) -> tuple[int, int]:
    """At ``{``: the ``data`` object into the scratch ``f`` (and levels); (index after, nlv).

    Per key, only helpers that take ``buf`` alone are called: passing many arrays to a
    non-inlined numba function costs reference-count operations on each of them.
    """
    if p >= q or buf[p] != 123:
        return -1, nlv
    p = _ws(buf, p + 1, q)
    seen = 0
    if p < q and buf[p] == 125:
        return p + 1, nlv
    while True:
        if p >= q or buf[p] != 34:
            return -1, nlv
        ke, esc = _str_end(buf, p, q)
        if ke < 0 or esc:
            return -1, nlv
        ks = p + 1
        kl = ke - 1 - ks
        p = _ws(buf, ke, q)
        if p >= q or buf[p] != 58:
            return -1, nlv
        p = _ws(buf, p + 1, q)
        if p >= q:
            return -1, nlv
        bit = 0
        slot = 0
        if kl == 1 and buf[ks] < 128:
            bit = _KEY_BIT[buf[ks]]
            slot = _KEY_SLOT[buf[ks]]
        elif kl == 2 and buf[ks] == 112 and buf[ks + 1] == 117:
            bit = _KPU
            slot = F_PU
        if seen & bit:
            return -1, nlv  # a duplicated key: json keeps the last one; not ours
        seen |= bit
        if bit & _K_INTS:
            f[slot], p = _parse_uint(buf, p, q)
        elif bit & (_KE | _KS | _KBQ | _KAQ):
            p, a, b = _plain_str(buf, p, q)
            if bit == _KE:
                f[F_ETYPE] = _event_type(buf, a, b)
            elif bit == _KS:
                f[F_SYMOK] = 1 if sym.size == 0 or _eq(buf, a, b, sym) else 0
            else:
                f[slot] = a
                f[slot + 1] = b
        elif bit & (_KB | _KA) and buf[p] == 91:
            first = nlv
            p, nlv = _parse_levels(buf, p, q, BID if bit == _KB else ASK, tick_m, tick_e,
                                   lside, lpx, lsz, nlv)
            f[slot + FIRST] = first
            f[slot + COUNT] = nlv - first
            f[slot + IS_LIST] = 1
        elif bit & (_KB | _KA):
            p, f[slot + PRICE] = _price_str(buf, p, q, tick_m, tick_e)
        elif bit == _KP:
            p, f[F_P] = _price_str(buf, p, q, tick_m, tick_e)
        elif bit == _KQ:
            p, fsz[0] = _size_str(buf, p, q)
        elif bit == _KM:
            f[F_M] = 1 if buf[p] == 116 else 0
            p = _skip_literal(buf, p, q) if buf[p] == 116 or buf[p] == 102 else -1
        else:
            p = _skip_value(buf, p, q, stack)
        if p < 0:
            return -1, nlv
        p = _ws(buf, p, q)
        if p >= q:
            return -1, nlv
        if buf[p] == 44:
            p = _ws(buf, p + 1, q)
            continue
        if buf[p] == 125:
            f[F_SEEN] = seen
            return p + 1, nlv
        return -1, nlv


@njit(cache=True)
def _rotate_asks_first(lside: np.ndarray, lpx: np.ndarray, lsz: np.ndarray, a0: int, na: int,
                       nb: int) -> None:
    """Levels ``a0 ..`` hold ``na`` asks then ``nb`` bids: put the bids first."""
    ts = lside[a0:a0 + na].copy()
    tp = lpx[a0:a0 + na].copy()
    tz = lsz[a0:a0 + na].copy()
    for j in range(nb):
        lside[a0 + j] = lside[a0 + na + j]
        lpx[a0 + j] = lpx[a0 + na + j]
        lsz[a0 + j] = lsz[a0 + na + j]
    for j in range(na):
        lside[a0 + nb + j] = ts[j]
        lpx[a0 + nb + j] = tp[j]
        lsz[a0 + nb + j] = tz[j]


@njit(cache=True)
def _parse_message(buf: np.ndarray, p: int, q: int, sym: np.ndarray, tick_m: int, tick_e: int,
                   lside: np.ndarray, lpx: np.ndarray, lsz: np.ndarray, nlv: int,
                   stack: np.ndarray, f: np.ndarray, fsz: np.ndarray) -> tuple[int, int]:
    """One ``{"stream": .., "data": {..}}`` line body: (kind or -1, level count after)."""
    f[:] = 0
    f[F_PU] = -1
    nlv0 = nlv
    p = _ws(buf, p, q)
    if p >= q or buf[p] != 123:
        return -1, nlv0
    p = _ws(buf, p + 1, q)
    have_data = False
    while True:
        if p >= q or buf[p] != 34:
            return -1, nlv0
        ke, esc = _str_end(buf, p, q)
        if ke < 0 or esc:
            return -1, nlv0
        ks = p + 1
        p = _ws(buf, ke, q)
        if p >= q or buf[p] != 58:
            return -1, nlv0
        p = _ws(buf, p + 1, q)
        if _eq(buf, ks, ke - 1, _LIT_DATA):
            if have_data:
                return -1, nlv0
            have_data = True
            p, nlv = _parse_data(buf, p, q, sym, tick_m, tick_e, lside, lpx, lsz, nlv, stack,
                                 f, fsz)
        else:
            p = _skip_value(buf, p, q, stack)
        if p < 0:
            return -1, nlv0
        p = _ws(buf, p, q)
        if p >= q:
            return -1, nlv0
        if buf[p] == 44:
            p = _ws(buf, p + 1, q)
            continue
        if buf[p] == 125:
            p += 1
            break
        return -1, nlv0
    if not have_data or _ws(buf, p, q) != q:
        return -1, nlv0
    seen = f[F_SEEN]
    if not (seen & _KS) or f[F_SYMOK] == 0:
        return -1, nlv0
    et = f[F_ETYPE] if seen & _KE else 0
    if et == K_DEPTH:
        if ((seen & (_KEE | _KUU | _KU)) != (_KEE | _KUU | _KU)
                or not (f[F_B + IS_LIST] and f[F_A + IS_LIST])):
            return -1, nlv0
        if f[F_A + FIRST] < f[F_B + FIRST]:
            _rotate_asks_first(lside, lpx, lsz, f[F_A + FIRST], f[F_A + COUNT], f[F_B + COUNT])
        return K_DEPTH, nlv
    if et == K_TRADE:
        if (seen & (_KT | _KP | _KQ | _KM)) != (_KT | _KP | _KQ | _KM):
            return -1, nlv0
        return K_TRADE, nlv0
    if (seen & (_KBQ | _KAQ)) == (_KBQ | _KAQ):
        if (seen & (_KU | _KB | _KA)) != (_KU | _KB | _KA) or f[F_B + IS_LIST] or f[F_A + IS_LIST]:
            return -1, nlv0
        return K_TICKER, nlv0
    return -1, nlv0


@njit(cache=True, inline="always")
def _wanted(kind: int, want: int) -> bool:
    if kind == K_DEPTH:
        return (want & WANT_DEPTH) != 0
    if kind == K_TRADE:
        return (want & WANT_TRADE) != 0
    return kind == K_TICKER and (want & WANT_TICKER) != 0


@njit(cache=True)
def _grown(a: np.ndarray, n: int, cap: int) -> np.ndarray:
    """A copy of ``a[:n]`` with room for ``cap`` items."""
    out = np.empty(cap, a.dtype)
    out[:n] = a[:n]
    return out


@njit(cache=True)
def _store(kind: int, i: int, nlv: int, f: np.ndarray, fsz: np.ndarray, r: np.ndarray,
           tsz: np.ndarray, ti: int) -> None:
    """Write the message of line ``i`` (scratch ``f``) into its row ``r`` of its matrix."""
    if kind == K_DEPTH:
        r[D_LINE] = i
        r[D_E] = f[F_E]
        r[D_T] = f[F_T]
        r[D_U] = f[F_UU]
        r[D_LU] = f[F_U]
        r[D_PU] = f[F_PU]
        r[D_HASPU] = 1 if f[F_SEEN] & _KPU else 0
        r[D_FIRST] = nlv
        r[D_NB] = f[F_B + COUNT]
        r[D_NA] = f[F_A + COUNT]
    elif kind == K_TRADE:
        r[T_LINE] = i
        r[T_E] = f[F_E]
        r[T_T] = f[F_T]
        r[T_ID] = f[F_ID]
        r[T_PRICE] = f[F_P]
        r[T_M] = f[F_M]
        tsz[ti] = fsz[0]
    else:
        r[B_LINE] = i
        r[B_U] = f[F_U]
        r[B_BID] = f[F_B + PRICE]
        r[B_ASK] = f[F_A + PRICE]
        r[B_BSZ0] = f[F_BQ]
        r[B_BSZ1] = f[F_BQ + 1]
        r[B_ASZ0] = f[F_AQ]
        r[B_ASZ1] = f[F_AQ + 1]


@njit(cache=True)
def parse_lines(buf: np.ndarray, ends: np.ndarray, body: np.ndarray, kinds: np.ndarray,
                first: int, tick_m: int, tick_e: int, sym: np.ndarray, want: int) -> tuple:
    """Parse the depthUpdate / trade / bookTicker lines (from ``first``) into columns.

    A line whose full parse disagrees with its scanned kind, or that the parser declines, is
    set to ``K_SLOW`` in ``kinds`` (in place). ``sym``: the file's symbol as bytes (lines of
    another symbol are declined); empty to accept any. ``want``: ``WANT_*`` bits.

    Returns:
        ``(refs, depth, side, price, size, trades, trade_size, tickers)``: ``refs[i]`` is the
        row of line ``i`` in its kind's matrix (-1 if none); ``depth`` is ``int64[n, N_D]``
        (``D_*`` columns), the level columns follow; ``trades`` ``int64[n, N_T]`` (``T_*``)
        with ``trade_size``; ``tickers`` ``int64[n, N_B]`` (``B_*``; sizes as byte spans).
    """
    nl = kinds.size
    count = np.zeros(K_TICKER + 1, np.int64)
    dbytes = 0
    for i in range(first, nl):
        if _wanted(kinds[i], want):
            count[kinds[i]] += 1
            if kinds[i] == K_DEPTH:
                dbytes += ends[i] - body[i]
    refs = np.full(nl, -1, np.int64)
    dm = np.zeros((count[K_DEPTH], N_D), np.int64)
    tr = np.zeros((count[K_TRADE], N_T), np.int64)
    tsz = np.zeros(count[K_TRADE], np.float64)
    tk = np.zeros((count[K_TICKER], N_B), np.int64)
    cap = dbytes // 16 + 16
    lside = np.empty(cap, np.uint8)
    lpx = np.empty(cap, np.int64)
    lsz = np.empty(cap, np.float64)
    nlv = 0
    stack = np.empty(64, np.uint8)
    f = np.zeros(N_F, np.int64)
    fsz = np.zeros(1, np.float64)
    used = np.zeros(K_TICKER + 1, np.int64)
    for i in range(first, nl):
        kind = kinds[i]
        if not _wanted(kind, want):
            continue
        need = nlv + (ends[i] - body[i]) // 9 + 1  # a level takes at least 9 bytes: ["0","0"]
        if need > lside.size:
            cap = max(2 * lside.size, need)
            lside, lpx, lsz = _grown(lside, nlv, cap), _grown(lpx, nlv, cap), _grown(lsz, nlv, cap)
        typ, nlv2 = _parse_message(buf, body[i], ends[i], sym, tick_m, tick_e, lside, lpx, lsz,
                                   nlv, stack, f, fsz)
        if typ != kind:
            kinds[i] = K_SLOW
            continue
        j = used[kind]
        row = dm[j] if kind == K_DEPTH else (tr[j] if kind == K_TRADE else tk[j])
        _store(kind, i, nlv, f, fsz, row, tsz, j)
        refs[i] = j
        used[kind] += 1
        nlv = nlv2
    return (refs, dm[:used[K_DEPTH]], lside[:nlv], lpx[:nlv], lsz[:nlv], tr[:used[K_TRADE]],
            tsz[:used[K_TRADE]], tk[:used[K_TICKER]])


def tick_parts(tick: object) -> tuple[int, int]:
    """``(mantissa, exponent)`` of a tick size: ``Decimal("0.1")`` gives ``(1, -1)``."""
    from decimal import Decimal

    t = Decimal(str(tick)).normalize().as_tuple()
    if t.sign or not isinstance(t.exponent, int) or not any(t.digits):
        raise ValueError(f"tick must be a finite decimal > 0, was {tick!r}")
    return int("".join(map(str, t.digits))), t.exponent


def parse_depth(buf: np.ndarray, tick_m: int, tick_e: int) -> DepthArrays:
    """Parse every depthUpdate line of an in-memory recording into columns.

    Args:
        buf: Decompressed recording bytes, ``uint8`` (lines ``<ns> <json>``).
        tick_m: Mantissa of the tick size (``0.01`` is ``(1, -2)``; see :func:`tick_parts`).
        tick_e: Exponent of the tick size.

    Example:
        >>> raw = gzip.decompress(path.read_bytes())  # doctest: +SKIP
        >>> d = parse_depth(np.frombuffer(raw, np.uint8), *tick_parts("0.1"))  # doctest: +SKIP
    """
    starts, ends, body, kinds, ts, _clean = scan_lines(buf)
    was_depth = kinds == K_DEPTH
    refs, dm, side, price, size, _t, _ts, _k = parse_lines(
        buf, ends, body, kinds, 0, tick_m, tick_e, np.zeros(0, np.uint8), WANT_DEPTH)
    declined = np.flatnonzero(was_depth & (kinds == K_SLOW))
    line = dm[:, D_LINE]
    return DepthArrays(line, ts[line], dm[:, D_E], dm[:, D_T], dm[:, D_U], dm[:, D_LU],
                       dm[:, D_PU], dm[:, D_FIRST], dm[:, D_NB], dm[:, D_NA], side, price, size,
                       declined)


# --- sync ----------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _event(ev: np.ndarray, ne: int, typ: int, value: int, cnt: np.ndarray) -> int:
    ev[ne, 0] = typ
    ev[ne, 1] = value
    for c in range(N_COUNT):
        ev[ne, 2 + c] = cnt[c]
    return ne + 1


# verdicts of the update-id chain on one diff
V_APPLY, V_STALE, V_REFERENCE = 0, 1, 2


@njit(cache=True, inline="always")
def _chain(dm: np.ndarray, r: int, has_last: bool, last_u: int, snap: int, fut: bool) -> int:
    """Binance's rule for diff ``r`` (V_REFERENCE: a gap, or no ``pu`` to check)."""
    big_u = dm[r, D_U]
    u = dm[r, D_LU]
    if not has_last:  # first diff after the snapshot
        if u < snap or (not fut and u <= snap):
            return V_STALE
        ok = big_u <= snap <= u if fut else big_u <= snap + 1 <= u
    elif fut:
        ok = dm[r, D_HASPU] != 0 and dm[r, D_PU] == last_u
    else:
        ok = big_u == last_u + 1
    return V_APPLY if ok else V_REFERENCE


@njit(cache=True, inline="always")
def _row(rows: np.ndarray, n: int, te: int, ti: int, seq: int, kind: int, side: int,
         price: int, size: float, flags: int) -> None:
    row = rows[n]
    row.ts_event = te
    row.ts_init = ti
    row.seq = seq
    row.kind = kind
    row.side = side
    row.price = price
    row.size = size
    row.flags = flags
    row.order_id = 0


@njit(cache=True)
def sync_run(order: np.ndarray, j0: int, kinds: np.ndarray, refs: np.ndarray, ts: np.ndarray,
             dm: np.ndarray, lside: np.ndarray, lpx: np.ndarray, lsz: np.ndarray,
             tr: np.ndarray, tsz: np.ndarray, rows: np.ndarray, st: np.ndarray,
             cnt: np.ndarray, batch_rows: int, tickers: bool, ev: np.ndarray,
             pend: np.ndarray) -> tuple[int, int, int, int]:
    """Apply the lines ``order[j0:]`` of one symbol by Binance's sync rules.

    Same rules, rows and counters as ``BinanceSymbolSync`` (the reference): diffs before the
    snapshot are buffered (their line indices go to ``pend``), stale ones dropped, the first
    applied straddles the snapshot id, then the ``pu`` (futures) / ``U`` (spot) chain must
    continue. Rows go to the ``MD_DTYPE`` array ``rows`` from ``st[S_N]``. A batch cut
    (the rows since ``st[S_LO]`` reached ``batch_rows`` after a message) and a bookTicker line
    (``tickers``: a cut of the rows before it, then the ticker) are recorded in ``ev``
    with the counters at that point, so the caller can yield exactly what the reference yields.

    Stops at the first line the reference must take (a chain break, a line not parsed here),
    or when ``rows`` is full (``st[S_NEED]`` rows needed), before touching that line.

    Returns:
        ``(reason R_*, index j of the stopping line in order, events, pending)``.
    """
    synced = st[S_SYNCED] != 0
    has_last = st[S_HAS_LAST] != 0
    last_u = st[S_LAST_U]
    lo = st[S_LO]
    n = st[S_N]
    ne = 0
    npd = 0
    reason = R_END
    j = j0
    while j < order.size:
        i = order[j]
        k = kinds[i]
        r = refs[i]
        if k == K_DEPTH and not synced:
            pend[npd] = i
            npd += 1
            cnt[C_BUFFERED] += 1
        elif k == K_DEPTH:
            verdict = _chain(dm, r, has_last, last_u, st[S_SNAP_ID], st[S_FUTURES] != 0)
            if not 0 < dm[r, D_E] <= MAX_MS:
                verdict = V_REFERENCE  # a time ns cannot hold: the reference rejects it
            if verdict == V_REFERENCE:
                reason = R_PY  # the reference counts and reports the gap
                break
            m = dm[r, D_NB] + dm[r, D_NA]
            if verdict == V_APPLY and n + m > rows.size:
                st[S_NEED] = m
                reason = R_FULL
                break
            cnt[C_DIFFS] += 1
            if verdict == V_STALE:
                cnt[C_STALE] += 1
            else:
                first = dm[r, D_FIRST]
                last_u = dm[r, D_LU]
                for x in range(first, first + m):
                    _row(rows, n, dm[r, D_E] * 1_000_000, ts[i], last_u, DELTA, lside[x],
                         lpx[x], lsz[x], 0)
                    n += 1
                if n > lo:
                    rows[n - 1].flags |= F_LAST
                cnt[C_APPLIED] += 1
                has_last = True
        elif k == K_TRADE:
            if synced and has_last and not 0 < tr[r, T_T] <= MAX_MS:
                reason = R_PY  # a time ns cannot hold: the reference rejects it
                break
            if synced and has_last:
                if n + 1 > rows.size:
                    st[S_NEED] = 1
                    reason = R_FULL
                    break
                _row(rows, n, tr[r, T_T] * 1_000_000, ts[i], last_u, TRADE,
                     ASK if tr[r, T_M] != 0 else BID, tr[r, T_PRICE], tsz[r], F_LAST)
                n += 1
                cnt[C_TRADES] += 1
        elif k == K_TICKER:
            if tickers:
                if n > lo:
                    ne = _event(ev, ne, EV_CUT, n, cnt)
                    lo = n
                ne = _event(ev, ne, EV_TICKER, i, cnt)
            j += 1
            continue  # the reference checks no batch size after a ticker
        else:
            reason = R_PY
            break
        if n - lo >= batch_rows:
            ne = _event(ev, ne, EV_CUT, n, cnt)
            lo = n
        j += 1
    st[S_SYNCED] = 1 if synced else 0
    st[S_HAS_LAST] = 1 if has_last else 0
    st[S_LAST_U] = last_u
    st[S_LO] = lo
    st[S_N] = n
    return reason, j, ne, npd


@njit(cache=True)
def _fill_depth_rows(E, ts_init, u, first, n_bid, n_ask, side, price, size,
                     r_te, r_ti, r_seq, r_side, r_px, r_sz, r_flags):
    for j in range(len(u)):
        a = first[j]
        b = a + n_bid[j] + n_ask[j]
        te = E[j] * 1_000_000
        for k in range(a, b):
            r_te[k] = te
            r_ti[k] = ts_init[j]
            r_seq[k] = u[j]
            r_side[k] = side[k]
            r_px[k] = price[k]
            r_sz[k] = size[k]
        if b > a:
            r_flags[b - 1] = 1  # F_LAST: the book is consistent after the message


def depth_rows(d: DepthArrays) -> np.ndarray:
    """Every parsed level as an ``MD_DTYPE`` DELTA row (one compiled pass; ``F_LAST`` on each
    message's last level; ``ts_event`` = ``E``). No sync rules: the caller (the loader, or a
    live client) decides which messages apply; this is the raw JSON → rows step."""
    from actors.core.batch import MD_DTYPE

    rows = np.zeros(len(d.price), dtype=MD_DTYPE)
    _fill_depth_rows(d.E, d.ts_init, d.u, d.first, d.n_bid, d.n_ask, d.side, d.price, d.size,
                     rows["ts_event"], rows["ts_init"], rows["seq"], rows["side"],
                     rows["price"], rows["size"], rows["flags"])
    return rows
