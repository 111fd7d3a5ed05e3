"""The raw-book input of the sequence models: the last ``T`` book states, 10 levels a side.

At every decision point the book's best :data:`~actors.book.frames.DEPTH` levels per side are
pushed into a ring of ``T`` states. :meth:`BookWindow.array` returns them oldest first as
``(T, 40)`` float32 in FI-2010 / DeepLOB column order, level 1 first::

    ask price 1, ask size 1, bid price 1, bid size 1, ask price 2, ... , bid size 10

Prices and sizes are made comparable across symbols and over time (the models z-score them
again with their training statistics):

* a price is its distance from the *newest* state's mid, in basis points of that mid, so the
  window carries the mid's own moves (a rising mid gives older rows prices below zero);
* a size is ``log1p(size)`` (sizes are heavy tailed);
* an empty level (a book thinner than 10 levels) gets size 0 and the price one tick beyond the
  level before it on its side (bids lower, asks higher), so the price ladder stays monotone.

The window is *warm* once ``T`` states were pushed; before that the front rows are zeros.
:data:`BOOK_SPEC_VERSION` names this representation; it is part of the feature spec hash, so a
model trained on another representation is refused at load.
"""

from __future__ import annotations

import numpy as np

from actors.book.frames import DEPTH
from actors.core.errors import ValidationError

#: Version of the representation above (bump on any change of columns or scaling).
BOOK_SPEC_VERSION = 1
#: Columns per book state: price and size of both sides at each level.
BOOK_COLUMNS = 4 * DEPTH


def book_state(
    bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray
) -> np.ndarray:
    """Return one raw state ``(2, 2 * DEPTH)`` float64: row 0 prices (ticks), row 1 sizes.

    Columns are in FI-2010 order (ask, bid per level). Empty levels (size 0) get the price
    one tick beyond the previous level of their side.

    Raises:
        ValidationError: an input not of length ``DEPTH``, or an empty best level.
    """
    for name, a in (("bid_px", bid_px), ("bid_sz", bid_sz), ("ask_px", ask_px),
                    ("ask_sz", ask_sz)):
        if np.shape(a) != (DEPTH,):
            raise ValidationError(name, f"of shape ({DEPTH},)", np.shape(a))
    out = np.empty((2, 2 * DEPTH), dtype=np.float64)
    bp = np.asarray(bid_px, dtype=np.float64).copy()
    ap = np.asarray(ask_px, dtype=np.float64).copy()
    bs = np.asarray(bid_sz, dtype=np.float64)
    as_ = np.asarray(ask_sz, dtype=np.float64)
    if not (bs[0] > 0 and as_[0] > 0):
        raise ValidationError("book", "non-empty best bid and ask", (bs[0], as_[0]))
    for lv in range(1, DEPTH):
        if not bs[lv] > 0:
            bp[lv] = bp[lv - 1] - 1.0
        if not as_[lv] > 0:
            ap[lv] = ap[lv - 1] + 1.0
    out[0, 0::2], out[0, 1::2] = ap, bp
    out[1, 0::2], out[1, 1::2] = np.where(as_ > 0, as_, 0.0), np.where(bs > 0, bs, 0.0)
    return out


class BookWindow:
    """A ring of the last ``length`` book states of one symbol.

    Args:
        length: ``T``, states per window (>= 1).

    Example:
        >>> bw = BookWindow(4)
        >>> bw.push(bid_px, bid_sz, ask_px, ask_sz)
        >>> bw.array().shape
        (4, 40)
    """

    def __init__(self, length: int) -> None:
        if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 1:
            raise ValidationError("book_window", "an int >= 1", length)
        self.length = int(length)
        self._px = np.zeros((self.length, 2 * DEPTH), dtype=np.float64)
        self._sz = np.zeros((self.length, 2 * DEPTH), dtype=np.float64)
        self._n = 0

    def push(
        self, bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray
    ) -> None:
        """Append the book state of one decision point (prices in ticks)."""
        state = book_state(bid_px, bid_sz, ask_px, ask_sz)
        k = self._n % self.length
        self._px[k] = state[0]
        self._sz[k] = state[1]
        self._n += 1

    def is_warm(self) -> bool:
        """Whether ``length`` states were pushed."""
        return self._n >= self.length

    def clear(self) -> None:
        """Forget every state (after a resync the old book no longer continues)."""
        self._n = 0

    def array(self) -> np.ndarray:
        """Return ``(length, 40)`` float32, oldest first (see the module docstring).

        Zero rows at the front while cold; all zeros when nothing was pushed.
        """
        out = np.zeros((self.length, BOOK_COLUMNS), dtype=np.float32)
        n = min(self._n, self.length)
        if n == 0:
            return out
        idx = np.arange(self._n - n, self._n) % self.length
        px, sz = self._px[idx], self._sz[idx]
        newest = px[-1]
        mid = (newest[0] + newest[1]) / 2.0  # level-1 ask and bid
        rows = np.empty((n, BOOK_COLUMNS), dtype=np.float64)
        rows[:, 0::2] = (px - mid) / mid * 1e4
        rows[:, 1::2] = np.log1p(sz)
        out[self.length - n :] = rows
        return out
