"""FI-2010 limit-order-book benchmark (Ntakaris et al. 2018): loader, stocks and book windows.

The public Z-score "NoAuction" files are whitespace text of 149 rows × N columns, each column
one sample (the book after a block of 10 events):

* rows 1–40: the 10-level book, per level ``ask price, ask volume, bid price, bid volume``
  (the DeepLOB input);
* rows 41–144: 104 handcrafted features (spreads, mid-prices, differences, means, accumulated
  differences, derivatives, intensities);
* rows 145–149: labels for horizons of 10, 20, 30, 50 and 100 events, ``1=up, 2=flat,
  3=down``, stored here as raydesk's classes ``0=down, 1=flat, 2=up`` (``y = 3 - label``).

Windows follow the standard protocol: sample ``i``'s window is rows ``i-T+1 .. i`` of the book
and its label is the one of column ``i``.

Caveat: each file concatenates five stocks one after the other and carries no stock id, so a
window near a stock change mixes two stocks' books. :func:`stock_segments` finds the changes
from the jumps of the (z-scored) mid-price, and :func:`window_indices` can drop the windows that
cross them; published numbers on this public version usually keep them.

Example:
    >>> train = load_fi2010("train")
    >>> idx = window_indices(train.n, 100, stock_segments(train.book))
    >>> w = windows(train.book, 100, idx[:256])      # (256, 100, 40) float32
    >>> y = train.labels_for(10)[idx[:256]]
"""

from __future__ import annotations

import lzma
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from actors.core.errors import ValidationError

#: Label horizons, in events, of the five label rows.
HORIZONS: tuple[int, ...] = (10, 20, 30, 50, 100)
N_BOOK = 40
N_FEATURES = 104
N_ROWS = N_BOOK + N_FEATURES + len(HORIZONS)
FILES: dict[str, str] = {
    "train": "Train_Dst_NoAuction_ZScore_CF_1.txt.xz",
    "test": "Test_Dst_NoAuction_ZScore_CF_1.txt.xz",
}
#: Names of the 40 book rows, level 1 first.
BOOK_NAMES: tuple[str, ...] = tuple(
    f"{kind}_{lvl}"
    for lvl in range(1, 11)
    for kind in ("ask_price", "ask_vol", "bid_price", "bid_vol")
)
#: Names of the 104 handcrafted rows (FI-2010 publishes groups, not per-row names).
FEATURE_NAMES: tuple[str, ...] = tuple(f"hc_{i:03d}" for i in range(N_FEATURES))


def default_root() -> Path:
    """Return ``../shared/data/fi2010_zscore_fold1`` beside the project."""
    from jobs.bench import SHARED_DATA

    return SHARED_DATA / "fi2010_zscore_fold1"


@dataclass(frozen=True)
class Fi2010:
    """One FI-2010 file (one day of five stocks).

    Attributes:
        split: ``"train"`` (day 1) or ``"test"`` (day 2).
        book: ``(N, 40)`` float32, the 10-level book.
        features: ``(N, 104)`` float32, the handcrafted features.
        labels: ``(N, 5)`` int64 in ``{0=down, 1=flat, 2=up}``, one column per horizon.
        horizons: Horizon (events) of each label column.
    """

    split: str
    book: np.ndarray
    features: np.ndarray
    labels: np.ndarray
    horizons: tuple[int, ...] = HORIZONS

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.book.shape[0])

    def flat_features(self) -> np.ndarray:
        """Return the 144 non-label rows ``(N, 144)`` float32: book then handcrafted."""
        return np.concatenate([self.book, self.features], axis=1)

    @staticmethod
    def flat_feature_names() -> tuple[str, ...]:
        """Return the names of :meth:`flat_features`' columns."""
        return BOOK_NAMES + FEATURE_NAMES

    def labels_for(self, horizon: int) -> np.ndarray:
        """Return the ``(N,)`` labels for ``horizon`` events.

        Raises:
            ValidationError: ``horizon`` not one of :data:`HORIZONS`.
        """
        if horizon not in self.horizons:
            raise ValidationError("horizon", f"one of {list(self.horizons)}", horizon)
        return self.labels[:, self.horizons.index(horizon)]

    def class_counts(self, horizon: int) -> list[int]:
        """Return the counts of ``down, flat, up`` for ``horizon``."""
        return np.bincount(self.labels_for(horizon), minlength=3).tolist()


def parse_matrix(a: np.ndarray, split: str = "train") -> Fi2010:
    """Build :class:`Fi2010` from the raw ``(149, N)`` matrix.

    Raises:
        ValidationError: wrong row count or labels outside ``{1, 2, 3}``.
    """
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[0] != N_ROWS:
        raise ValidationError("fi2010 matrix", f"of shape ({N_ROWS}, N)", a.shape)
    raw = a[N_BOOK + N_FEATURES :]
    if raw.size and not np.all(np.isin(raw, (1.0, 2.0, 3.0))):
        bad = sorted({float(v) for v in np.unique(raw)} - {1.0, 2.0, 3.0})[:5]
        raise ValidationError("fi2010 labels", "in {1, 2, 3}", bad)
    return Fi2010(
        split=split,
        book=np.ascontiguousarray(a[:N_BOOK].T, dtype=np.float32),
        features=np.ascontiguousarray(a[N_BOOK : N_BOOK + N_FEATURES].T, dtype=np.float32),
        labels=np.ascontiguousarray((3 - raw.T).astype(np.int64)),
    )


def load_fi2010(split: str, root: str | Path | None = None) -> Fi2010:
    """Load the train (day 1) or test (day 2) file of FI-2010 fold 1 (about 3 s each).

    Args:
        split: ``"train"`` or ``"test"``.
        root: Folder holding the ``.txt.xz`` files (default :func:`default_root`).

    Returns:
        The parsed file.

    Raises:
        ValidationError: unknown ``split`` or malformed file.
        FileNotFoundError: the file is missing.
    """
    if split not in FILES:
        raise ValidationError("split", f"one of {list(FILES)}", split)
    path = Path(root if root is not None else default_root()) / FILES[split]
    if not path.is_file():
        raise FileNotFoundError(f"FI-2010 file must exist, was missing: {path}")
    import pandas as pd

    with lzma.open(path, "rt") as fh:
        a = pd.read_csv(fh, sep=r"\s+", header=None, dtype=np.float64).to_numpy()
    return parse_matrix(a, split)


def stock_segments(book: np.ndarray, min_jump: float = 0.1) -> np.ndarray:
    """Return the start row of each stock in a file that concatenates stocks.

    A stock change shows as a jump of the level-1 mid-price far larger than any move within a
    stock (z-scored prices: about 0.4–2.3 at a change, at most about 0.015 inside a stock in
    fold 1). A row starts a new segment when ``|Δmid|`` exceeds ``max(min_jump, 20 × the
    99.9th percentile of |Δmid|)``, so changes must be rarer than one row in a thousand.

    Args:
        book: ``(N, 40)`` book rows.
        min_jump: Floor of the jump threshold (z-score units).

    Returns:
        Sorted int64 start rows, the first being 0 (empty for an empty book).
    """
    b = np.asarray(book)
    if b.ndim != 2 or b.shape[1] != N_BOOK:
        raise ValidationError("book", f"of shape (N, {N_BOOK})", b.shape)
    if b.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    mid = (b[:, 0].astype(np.float64) + b[:, 2]) / 2.0
    d = np.abs(np.diff(mid))
    if d.size == 0:
        return np.zeros(1, dtype=np.int64)
    thr = max(min_jump, 20.0 * float(np.percentile(d, 99.9)))
    return np.concatenate([[0], np.nonzero(d > thr)[0] + 1]).astype(np.int64)


def window_indices(
    n: int, window: int, segments: np.ndarray | None = None
) -> np.ndarray:
    """Return the samples that have a full window: ``i >= window - 1``.

    Args:
        n: Number of rows.
        window: Window length ``T``.
        segments: Stock start rows (:func:`stock_segments`); when given, windows crossing a
            stock change are dropped too.

    Returns:
        Sorted int64 sample indices.
    """
    if window < 1:
        raise ValidationError("window", ">= 1", window)
    idx = np.arange(window - 1, n, dtype=np.int64)
    if segments is None or len(segments) == 0:
        return idx
    seg = np.asarray(segments, dtype=np.int64)
    start = seg[np.searchsorted(seg, idx, side="right") - 1]
    return idx[idx - window + 1 >= start]


def split_by_time(
    idx: np.ndarray, segments: np.ndarray | None, fraction: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into the first ``fraction`` of each stock and the rest.

    With ``segments`` None the split is over the whole file (which, the stocks being
    concatenated, would put mostly the last stock in the second part).

    Returns:
        ``(first, rest)`` int64 index arrays.
    """
    if not 0.0 < fraction < 1.0:
        raise ValidationError("fraction", "in (0, 1)", fraction)
    idx = np.asarray(idx, dtype=np.int64)
    seg = np.zeros(1, dtype=np.int64) if segments is None or len(segments) == 0 else segments
    which = np.searchsorted(np.asarray(seg), idx, side="right") - 1
    first, rest = [], []
    for s in np.unique(which):
        part = idx[which == s]
        cut = int(round(len(part) * fraction))
        first.append(part[:cut])
        rest.append(part[cut:])
    if not first:
        return idx[:0], idx[:0]
    return np.concatenate(first), np.concatenate(rest)


def windows(book: np.ndarray, window: int, idx: np.ndarray | slice | range) -> np.ndarray:
    """Return the windows ``(len(idx), T, 40)`` of rows ``i-T+1 .. i`` for each ``i`` in idx.

    Built on :func:`numpy.lib.stride_tricks.sliding_window_view`: a contiguous ``range`` or
    ``slice`` (step 1) gives a read-only view (no copy, whatever the size); an index array
    copies only the selected windows (``len(idx) × T × 40 × 4`` bytes).

    Args:
        book: ``(N, 40)`` book rows.
        window: Window length ``T``.
        idx: Sample indices, each in ``T-1 .. N-1``.

    Raises:
        ValidationError: bad ``book`` shape, ``window`` or an index without a full window.
    """
    b = np.asarray(book)
    if b.ndim != 2:
        raise ValidationError("book", "of shape (N, F)", b.shape)
    if window < 1 or window > b.shape[0]:
        raise ValidationError("window", f"in 1..{b.shape[0]}", window)
    view = np.lib.stride_tricks.sliding_window_view(b, window, axis=0)  # (N-T+1, F, T)
    if isinstance(idx, range | slice):
        start, stop, step = (idx.start, idx.stop, idx.step)
        start = window - 1 if start is None else start
        stop = b.shape[0] if stop is None else stop
        if (step or 1) != 1:
            return windows(b, window, np.arange(start, stop, step))
        if start < window - 1 or stop > b.shape[0] or stop < start:
            raise ValidationError("idx", f"within {window - 1}..{b.shape[0]}", (start, stop))
        return view[start - window + 1 : stop - window + 1].transpose(0, 2, 1)
    i = np.asarray(idx, dtype=np.int64)
    if i.size and (i.min() < window - 1 or i.max() >= b.shape[0]):
        raise ValidationError(
            "idx", f"in {window - 1}..{b.shape[0] - 1}", (int(i.min()), int(i.max()))
        )
    return np.ascontiguousarray(view[i - window + 1].transpose(0, 2, 1))


class BookWindows:
    """Lazy windows ``(len(idx), T, 40)``: a batch is built only when indexed.

    Satisfies what the window models need of ``windows`` (``shape``, ``len`` and indexing by
    an int array, a slice or an int), so a whole day never sits in memory as windows.

    Example:
        >>> w = BookWindows(train.book, 100, idx)
        >>> w.shape, w[np.arange(4)].shape
        ((len(idx), 100, 40), (4, 100, 40))
    """

    def __init__(self, book: np.ndarray, window: int, idx: np.ndarray) -> None:
        self.book = np.asarray(book, dtype=np.float32)
        self.window = int(window)
        self.idx = np.asarray(idx, dtype=np.int64)
        windows(self.book, self.window, self.idx[:0])  # validates book and window
        if self.idx.size and (self.idx.min() < window - 1 or self.idx.max() >= len(self.book)):
            raise ValidationError("idx", f"in {window - 1}..{len(self.book) - 1}", "out of range")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(len(idx), T, F)``."""
        return (int(self.idx.size), self.window, int(self.book.shape[1]))

    def __len__(self) -> int:
        return int(self.idx.size)

    def __getitem__(self, sel: np.ndarray | slice | int) -> np.ndarray:
        if isinstance(sel, int | np.integer):
            return windows(self.book, self.window, self.idx[[int(sel)]])[0]
        return windows(self.book, self.window, self.idx[sel])

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        out = windows(self.book, self.window, self.idx)
        return out if dtype is None else out.astype(dtype)
