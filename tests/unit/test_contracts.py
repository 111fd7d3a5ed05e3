"""Instruments, the market-data batch contract, clocks and messages."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.batch import ASK, BID, DELTA, F_LAST, MD_DTYPE, TRADE, empty_rows, validate_rows
from actors.core.clock import SimClock, WallClock
from actors.core.errors import BatchError, ValidationError
from actors.core.instruments import Instrument
from actors.core.messages import OrderSide, OrderType, SubmitOrder

BTC = Instrument("BTCUSDT", Decimal("0.1"), Decimal("0.001"))


def test_instrument_converts_prices_exactly() -> None:
    assert BTC.price_to_ticks("61830.5") == 618305
    assert BTC.ticks_to_str(618305) == "61830.5"
    assert BTC.ticks_to_str(618300) == "61830"
    assert BTC.size_to_lots("1.234") == 1234
    assert BTC.lots_to_str(1230) == "1.23"


def test_instrument_rejects_price_off_tick_naming_rule_and_value() -> None:
    with pytest.raises(ValidationError) as exc:
        BTC.price_to_ticks("61830.55")
    assert str(exc.value) == "price must be a multiple of tick_size 0.1, was '61830.55'"


def test_instrument_rejects_non_positive_tick() -> None:
    with pytest.raises(ValidationError, match="tick_size must be > 0"):
        Instrument("X", Decimal("0"), Decimal("1"))


@given(ticks=st.integers(min_value=1, max_value=10**12), lots=st.integers(0, 10**9))
@settings(max_examples=300)
def test_tick_and_lot_conversion_round_trips(ticks: int, lots: int) -> None:
    assert BTC.price_to_ticks(BTC.ticks_to_str(ticks)) == ticks
    assert BTC.size_to_lots(BTC.lots_to_str(lots)) == lots


def _rows(n: int = 3) -> np.ndarray:
    r = empty_rows(n)
    r["ts_event"] = np.arange(1, n + 1) * 1000
    r["ts_init"] = r["ts_event"] + 5
    r["seq"] = np.arange(1, n + 1)
    r["kind"] = DELTA
    r["side"] = BID
    r["price"] = 100
    r["size"] = 1.0
    r["flags"] = F_LAST
    return r


def test_valid_batch_passes() -> None:
    assert validate_rows(_rows()).dtype == MD_DTYPE


@pytest.mark.parametrize(
    ("col", "value", "message"),
    [
        ("size", -1.0, "batch[BTCUSDT].size[1] must be >= 0, was -1.0"),
        ("size", np.nan, "batch[BTCUSDT].size[1] must be finite, was nan"),
        ("price", 0, "batch[BTCUSDT].price[1] must be > 0 ticks, was 0"),
        ("side", 7, "batch[BTCUSDT].side[1] must be 0 (bid/buy) or 1 (ask/sell), was 7"),
        ("kind", 9, "batch[BTCUSDT].kind[1] must be one of 0=delta 1=trade 2=snapshot 3=clear"),
        ("ts_init", 0, "batch[BTCUSDT].ts_init[1] must be > 0 ns, was 0"),
    ],
)
def test_malformed_batch_error_names_field_rule_and_value(col, value, message) -> None:
    r = _rows()
    r[col][1] = value
    with pytest.raises(BatchError) as exc:
        validate_rows(r, "BTCUSDT")
    assert str(exc.value).startswith(message)


def test_batch_with_sequence_going_backwards_is_rejected() -> None:
    r = _rows()
    r["seq"][2] = 1
    with pytest.raises(BatchError, match=r"seq\[2\] must be non-decreasing"):
        validate_rows(r, "BTCUSDT")


def test_trade_of_zero_size_is_rejected() -> None:
    r = _rows()
    r["kind"][0] = TRADE
    r["side"][0] = ASK
    r["size"][0] = 0.0
    with pytest.raises(BatchError, match="> 0 for a trade"):
        validate_rows(r)


def test_batch_missing_columns_is_rejected() -> None:
    bad = np.zeros(2, dtype=[("ts_event", "i8"), ("price", "i8")])
    with pytest.raises(BatchError, match="have columns"):
        validate_rows(bad)


def test_sim_clock_never_goes_backwards() -> None:
    c = SimClock(10)
    c.advance_to(5)
    assert c.now_ns() == 10
    c.advance_to(20)
    assert c.now_ns() == 20 and c.is_simulated
    assert not WallClock().is_simulated and WallClock().now_ns() > 1_600_000_000 * 10**9


def test_messages_are_immutable_and_serialise_to_plain_records() -> None:
    cmd = SubmitOrder(
        ts_event=1, ts_init=2, client_order_id="A-1", symbol="BTCUSDT", side=OrderSide.BUY,
        order_type=OrderType.LIMIT, qty_lots=3, price_ticks=100,
    )
    rec = cmd.to_record()
    assert rec["type"] == "SubmitOrder" and rec["side"] == "BUY" and rec["tif"] == "GTC"
    with pytest.raises(AttributeError):
        cmd.qty_lots = 5  # type: ignore[misc]


def test_batch_columns_in_another_order_are_matched_by_name() -> None:
    fields = [(n, MD_DTYPE[n]) for n in ("ts_init", "ts_event", *MD_DTYPE.names[2:])]
    r = np.zeros(1, dtype=fields)
    r["ts_event"], r["ts_init"], r["seq"], r["price"], r["size"] = 111, 222, 1, 100, 1.0
    out = validate_rows(r)
    assert (out["ts_event"][0], out["ts_init"][0]) == (111, 222)


def test_seq_may_go_back_only_where_a_snapshot_starts() -> None:
    from actors.core.batch import CLEAR, F_GAP, F_SNAPSHOT, SNAPSHOT

    r = empty_rows(3)
    r[0] = (1, 1, 110, CLEAR, BID, 0, 0.0, F_LAST | F_GAP, 0)  # the feed lost the chain
    r[1] = (2, 2, 105, SNAPSHOT, BID, 100, 1.0, F_SNAPSHOT, 0)  # an older venue image
    r[2] = (2, 2, 105, SNAPSHOT, ASK, 101, 1.0, F_SNAPSHOT | F_LAST, 0)
    assert len(validate_rows(r)) == 3
    r[2]["seq"] = 104  # inside the snapshot: still must not go back
    with pytest.raises(BatchError, match=r"seq\[2\] must be non-decreasing"):
        validate_rows(r)
