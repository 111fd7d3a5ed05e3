"""Books rebuilt from the real Binance recordings in ../shared/data are exact.

Binance diff events aggregate several book updates (``U``..``u``); a ``bookTicker`` names the
single update ``u`` it reflects. Where that update id is a diff's final ``u``, the rebuilt book
at that point must equal the ticker exactly (price and size of both sides). Tickers whose ``u``
falls strictly inside a diff's range describe a state the diff stream never shows, so they are
counted, not compared.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from actors.book.book import L2Book, apply_rows
from actors.feed.binance import BookTicker, read_session
from jobs.bench import BINANCE_DATA as BINANCE
from jobs.bench import BINANCE_SESSIONS as SESSIONS

pytestmark = pytest.mark.realdata


def _top(book: L2Book) -> tuple[int, Decimal, int, Decimal]:
    bb, ba = book.best_bid, book.best_ask
    return bb, Decimal(repr(book.bids[bb])), ba, Decimal(repr(book.asks[ba]))


@pytest.mark.skipif(not BINANCE.exists(), reason=f"real data folder {BINANCE} is absent")
@pytest.mark.parametrize("session", sorted(SESSIONS))
def test_book_is_exact_at_every_ticker_on_a_diff_boundary(session: str) -> None:
    book = L2Book()
    at_update: dict[int, tuple[int, Decimal, int, Decimal]] = {}
    tickers: list[BookTicker] = []
    sync = None
    for _sym, item, sync in read_session([BINANCE / f for f in SESSIONS[session]]):  # noqa: B007
        if isinstance(item, BookTicker):
            tickers.append(item)
            continue
        for seq in apply_rows(book, item):
            assert not book.crossed, f"crossed at update {seq}"
            at_update[seq] = _top(book)

    assert sync is not None and sync.stats.gaps == 0 and sync.stats.snapshots == 1
    assert sync.stats.applied > 3_000
    compared = [t for t in tickers if t.update_id in at_update]
    wrong = [
        t for t in compared
        if at_update[t.update_id] != (t.bid_ticks, Decimal(t.bid_size), t.ask_ticks,
                                      Decimal(t.ask_size))
    ]
    assert len(compared) > 300, f"only {len(compared)} tickers land on a diff boundary"
    assert wrong == [], f"{len(wrong)} of {len(compared)} tickers differ, first {wrong[:1]}"


@pytest.mark.skipif(not BINANCE.exists(), reason=f"real data folder {BINANCE} is absent")
@pytest.mark.parametrize("session", sorted(SESSIONS))
def test_compiled_book_is_exact_at_every_ticker_on_a_diff_boundary(session: str) -> None:
    """The production kernel (LadderBook, with a small window so the sorted overflow and the
    re-centring are exercised too) against every bookTicker on a diff boundary."""
    from actors.book.ladder import LadderBook

    book = LadderBook(4_096)
    ref = L2Book()
    at_update: dict[int, tuple[int, float, int, float]] = {}
    tickers: list[BookTicker] = []
    for _sym, item, _sync in read_session([BINANCE / f for f in SESSIONS[session]]):
        if isinstance(item, BookTicker):
            tickers.append(item)
            continue
        msgs, _trades = book.apply(item, capture=True)
        assert book.error[0] == 0, book.error
        for m in msgs:
            at_update[int(m["seq"])] = (
                int(m["bid_px"][0]), float(m["bid_sz"][0]), int(m["ask_px"][0]),
                float(m["ask_sz"][0]),
            )
        for _ in apply_rows(ref, item):
            pass
    compared = [t for t in tickers if t.update_id in at_update]
    wrong = [
        t for t in compared
        if at_update[t.update_id] != (t.bid_ticks, float(t.bid_size), t.ask_ticks,
                                      float(t.ask_size))
    ]
    assert len(compared) > 300
    assert wrong == [], f"{len(wrong)} of {len(compared)} tickers differ, first {wrong[:1]}"
    # and the whole final book, every level
    assert book.snapshot()["bids"] == ref.snapshot()["bids"]
    assert book.snapshot()["asks"] == ref.snapshot()["asks"]


@pytest.mark.ray
@pytest.mark.skipif(not BINANCE.exists(), reason=f"real data folder {BINANCE} is absent")
def test_replay_through_symbol_actors_writes_the_exact_final_books(ray_cluster, tmp_path):
    import json

    from cluster.replay import book_json, replay
    from tests.conftest import small_config

    files = [BINANCE / f for f in (*SESSIONS["spot-btc-0808"], *SESSIONS["usdm-eth-0808"])]
    out = tmp_path / "books.json"
    summary = replay(small_config(tmp_path), "binance", files, out)

    # reference: the same rows applied to plain books in this process
    books: dict[str, L2Book] = {}
    instruments = {}
    for sym, item, sync in read_session(files, tickers=False):
        book = books.setdefault(sym, L2Book())
        instruments[sym] = sync.instrument
        for _seq in apply_rows(book, item):
            pass
    expected = {s: book_json(instruments[s], b.snapshot()) for s, b in sorted(books.items())}

    written = json.loads(out.read_text())
    assert written == expected
    assert summary["quarantined"] == [] and summary["rejected_batch_errors"] == 0
    btc = written["BTCUSDT"]
    assert btc["bids"][0][0] > btc["bids"][1][0]  # best first (string compare, same length)
    assert all(not p.endswith("0") or "." not in p for p, _ in btc["bids"][:50])
    assert btc["last_update_id"] == summary["last_update_id"]["BTCUSDT"] > 50_093_239_189
