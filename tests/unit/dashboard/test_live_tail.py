"""dashboard/live_tail.py's pure parts: Silver trades into minute buckets, sessions as dbt assigns them, and Gold's
candles and KPIs continued by the open minutes (tiny inline frames, exact values)."""
from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from dashboard import live_tail
from dashboard.live_tail import Calendar

UTC = "2026-11-20"


def ms(text: str) -> int:
    return int(pd.Timestamp(text).value // 1_000_000)


def trades(*rows: tuple[str, float, float, str, str]) -> pd.DataFrame:
    """(symbol, price, volume, exchange time UTC, event id) rows as Silver holds them."""
    return pd.DataFrame([{"symbol": s, "price": p, "volume": v, "trade_ts": ms(t), "event_id": e}
                         for s, p, v, t, e in rows])


# XNYS on 2026-11-20 (a Friday): regular session 14:30-21:00 UTC; 2026-11-23 the next trading date; 2026-11-26 is
# Thanksgiving (no session).
DAYS = pd.DataFrame({
    "date_day": [date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 23), date(2026, 11, 26)],
    "session_open_utc": pd.to_datetime(["2026-11-20 14:30", None, "2026-11-23 14:30", None]),
    "session_close_utc": pd.to_datetime(["2026-11-20 21:00", None, "2026-11-23 21:00", None]),
    "previous_trading_date": [date(2026, 11, 19), date(2026, 11, 20), date(2026, 11, 20), date(2026, 11, 25)],
})
CALENDAR = Calendar("XNYS", "America/New_York", {"AAPL": "XNYS", "BINANCE:BTCUSDT": "24/7"}, DAYS)


def buckets(frame: pd.DataFrame) -> pd.DataFrame:
    return live_tail.with_sessions(live_tail.merge_buckets(live_tail.trade_buckets(frame)), CALENDAR)


def test_a_minute_opens_and_closes_by_exchange_time_then_event_id_whatever_the_arrival_order():
    minute = buckets(trades(("AAPL", 191.0, 10, f"{UTC} 20:00:30", "b"), ("AAPL", 190.0, 5, f"{UTC} 20:00:10", "z"),
                            ("AAPL", 189.5, 5, f"{UTC} 20:00:10", "a"), ("AAPL", 192.0, 20, f"{UTC} 20:00:59", "c"),
                            ("AAPL", 193.0, 1, f"{UTC} 20:01:00", "d")))
    assert minute[["minute_start", "open", "high", "low", "close", "volume", "notional", "trade_count"]].to_dict(
        "records") == [
        {"minute_start": pd.Timestamp(f"{UTC} 20:00"), "open": 189.5, "high": 192.0, "low": 189.5, "close": 192.0,
         "volume": 40.0, "notional": 189.5 * 5 + 190.0 * 5 + 191.0 * 10 + 192.0 * 20, "trade_count": 4},
        {"minute_start": pd.Timestamp(f"{UTC} 20:01"), "open": 193.0, "high": 193.0, "low": 193.0, "close": 193.0,
         "volume": 1.0, "notional": 193.0, "trade_count": 1}]
    # Merging the same trades in two reads (the snapshot, then the change feed) gives the same minutes.
    first, second = trades(("AAPL", 191.0, 10, f"{UTC} 20:00:30", "b")), trades(
        ("AAPL", 190.0, 5, f"{UTC} 20:00:10", "z"), ("AAPL", 192.0, 20, f"{UTC} 20:00:59", "c"))
    twice = live_tail.merge_buckets(pd.concat([live_tail.merge_buckets(live_tail.trade_buckets(first)),
                                               live_tail.trade_buckets(second)]))
    once = live_tail.merge_buckets(live_tail.trade_buckets(pd.concat([first, second])))
    pd.testing.assert_frame_equal(twice, once)


@pytest.mark.parametrize("symbol, at, trading_date, session", [
    ("AAPL", "2026-11-20 14:29", date(2026, 11, 20), "pre"),
    ("AAPL", "2026-11-20 14:30", date(2026, 11, 20), "regular"),
    ("AAPL", "2026-11-20 20:59", date(2026, 11, 20), "regular"),
    ("AAPL", "2026-11-20 21:00", date(2026, 11, 20), "post"),
    # 03:00 UTC on the 21st is still the 20th in New York: after-hours of the 20th.
    ("AAPL", "2026-11-21 03:00", date(2026, 11, 20), "post"),
    ("AAPL", "2026-11-21 15:00", date(2026, 11, 21), "closed"),      # Saturday
    ("AAPL", "2026-11-26 15:00", date(2026, 11, 26), "closed"),      # Thanksgiving, not in the sessions at all
    ("MSFT", "2026-11-20 15:00", date(2026, 11, 20), "regular"),     # not in Gold yet: a ticker follows XNYS
    ("BINANCE:BTCUSDT", "2026-11-21 03:00", date(2026, 11, 21), "continuous"),  # 24/7: the UTC date
    ("COINBASE:ETHUSD", "2026-11-21 15:00", date(2026, 11, 21), "continuous"),  # EXCHANGE:PAIR form: 24/7
])
def test_sessions_and_trading_dates_are_gold_s(symbol, at, trading_date, session):
    (row,) = buckets(trades((symbol, 1.0, 1, at, "x"))).to_dict("records")
    assert (row["trading_date"], row["session"]) == (pd.Timestamp(trading_date), session)


def gold_candles() -> pd.DataFrame:
    """queries.candles rows for AAPL at 1m: 20:57 and 20:58, the session's running sums before them 1,000 @ 190."""
    return pd.DataFrame({
        "period_start": pd.to_datetime([f"{UTC} 20:57", f"{UTC} 20:58"]),
        "trading_date": [date(2026, 11, 20)] * 2, "session": ["regular"] * 2,
        "open": [190.0, 190.5], "high": [190.5, 191.0], "low": [189.5, 190.0], "close": [190.5, 190.75],
        "volume": [100.0, 100.0], "vwap": [190.0, 190.5], "trade_count": [3, 4],
        "session_vwap": [190000.0 / 1000, 209050.0 / 1100], "notional": [19000.0, 19050.0],
        "session_notional": [190000.0, 209050.0], "session_volume": [1000.0, 1100.0]})


def test_candles_are_gold_s_before_the_cutoff_and_the_tail_s_from_it_with_the_session_vwap_continued():
    # Gold was built during 20:58: its 20:58 candle is partial; the tail has every trade of 20:58 and 20:59.
    tail = buckets(trades(("AAPL", 190.5, 50, f"{UTC} 20:58:05", "a"), ("AAPL", 191.0, 150, f"{UTC} 20:58:40", "b"),
                          ("AAPL", 192.0, 100, f"{UTC} 20:59:01", "c"), ("TSLA", 170.0, 1, f"{UTC} 20:59:02", "d")))
    candles = live_tail.live_candles(gold_candles(), tail, "AAPL", pd.Timestamp(f"{UTC} 20:58"), limit=390)
    assert candles[["period_start", "open", "close", "volume", "trade_count"]].to_dict("records") == [
        {"period_start": pd.Timestamp(f"{UTC} 20:57"), "open": 190.0, "close": 190.5, "volume": 100.0,
         "trade_count": 3},
        {"period_start": pd.Timestamp(f"{UTC} 20:58"), "open": 190.5, "close": 191.0, "volume": 200.0,
         "trade_count": 2},
        {"period_start": pd.Timestamp(f"{UTC} 20:59"), "open": 192.0, "close": 192.0, "volume": 100.0,
         "trade_count": 1}]
    # Running on from Gold's 20:57 sums: 190,000 / 1,000, then + the tail's minutes.
    expected_notional = 190000.0 + 190.5 * 50 + 191.0 * 150
    assert candles["session_vwap"].tolist() == [
        190.0, expected_notional / 1200, (expected_notional + 19200.0) / 1300]
    assert candles["vwap"].tolist()[1:] == [(190.5 * 50 + 191.0 * 150) / 200, 192.0]
    assert live_tail.live_candles(gold_candles(), tail, "AAPL", pd.Timestamp(f"{UTC} 20:58"), limit=2)[
        "period_start"].tolist() == [pd.Timestamp(f"{UTC} 20:58"), pd.Timestamp(f"{UTC} 20:59")]
    # A symbol without tail trades keeps Gold's candles, untouched.
    pd.testing.assert_frame_equal(live_tail.live_candles(gold_candles(), tail, "MSFT", pd.Timestamp(f"{UTC} 20:58"),
                                                         limit=390), gold_candles())


def kpis() -> pd.DataFrame:
    return pd.DataFrame([
        {"symbol": "AAPL", "trading_date": date(2026, 11, 20), "last_price": 190.75, "previous_close": 188.0,
         "price_change": 2.75, "pct_change": 2.75 / 188 * 100, "day_open": 189.0, "day_high": 191.0,
         "day_low": 188.5, "pct_change_from_open": 1.75 / 189 * 100, "day_volume": 1100.0, "day_vwap": 190.05,
         "day_notional": 209055.0, "day_trade_count": 40, "last_trade_time_utc": pd.Timestamp(f"{UTC} 20:58:20")},
        {"symbol": "TSLA", "trading_date": date(2026, 11, 20), "last_price": 171.5, "previous_close": None,
         "price_change": None, "pct_change": None, "day_open": 172.0, "day_high": 173.0, "day_low": 171.0,
         "pct_change_from_open": -0.5 / 172 * 100, "day_volume": 50.0, "day_vwap": 172.0, "day_notional": 8600.0,
         "day_trade_count": 5, "last_trade_time_utc": pd.Timestamp(f"{UTC} 20:57:00")},
    ])


def test_the_kpi_day_bar_is_gold_s_minutes_before_the_cutoff_plus_the_tail_s():
    # Gold's day bar before the 20:58 cutoff (queries.day_parts): 1,000 shares, 38 trades, open 189, high 190.5.
    parts = pd.DataFrame([{"symbol": "AAPL", "trading_date": date(2026, 11, 20), "open": 189.0, "high": 190.5,
                           "low": 188.5, "close": 190.5, "volume": 1000.0, "notional": 190000.0,
                           "trade_count": 38}])
    tail = buckets(trades(("AAPL", 190.5, 50, f"{UTC} 20:58:05", "a"), ("AAPL", 192.0, 100, f"{UTC} 20:59:01", "c"),
                          ("AAPL", 195.0, 10, f"{UTC} 21:05:00", "post")))  # after-hours: not in the day bar
    live = live_tail.live_kpis(kpis(), live_tail.day_bars(tail, parts), CALENDAR)
    aapl, tsla = live.to_dict("records")
    notional = 190000.0 + 190.5 * 50 + 192.0 * 100
    assert aapl == {
        "symbol": "AAPL", "trading_date": pd.Timestamp(UTC), "last_price": 192.0, "previous_close": 188.0,
        "price_change": 4.0, "pct_change": 400 / 188, "day_open": 189.0, "day_high": 192.0, "day_low": 188.5,
        "pct_change_from_open": 300 / 189, "day_volume": 1150.0, "day_vwap": notional / 1150, "day_notional": notional,
        "day_trade_count": 40, "last_trade_time_utc": pd.Timestamp(f"{UTC} 20:59:01")}
    pd.testing.assert_frame_equal(live.iloc[[1]], kpis().iloc[[1]])  # no tail trade: Gold's row as it was


def test_a_new_trading_date_starts_a_bar_whose_previous_close_is_gold_s_last_price_only_if_it_was_the_day_before():
    monday = buckets(trades(("AAPL", 200.0, 10, "2026-11-23 14:31:00", "m1"), ("AAPL", 202.0, 10,
                                                                              "2026-11-23 14:35:00", "m2")))
    empty_parts = pd.DataFrame(columns=["symbol", "trading_date", "open", "high", "low", "close", "volume",
                                        "notional", "trade_count"])
    (aapl, _) = live_tail.live_kpis(kpis(), live_tail.day_bars(monday, empty_parts), CALENDAR).to_dict("records")
    # Friday the 20th is Monday's previous trading date: its last price is the previous close.
    assert (aapl["trading_date"], aapl["previous_close"], aapl["day_open"], aapl["last_price"]) == (
        pd.Timestamp("2026-11-23"), 190.75, 200.0, 202.0)
    assert aapl["price_change"] == pytest.approx(11.25) and aapl["day_trade_count"] == 2
    # Gold's last date two trading dates back: no previous close, as fct_symbol_kpi says.
    older = kpis().assign(trading_date=date(2026, 11, 19))
    (aapl, _) = live_tail.live_kpis(older, live_tail.day_bars(monday, empty_parts), CALENDAR).to_dict("records")
    assert pd.isna(aapl["previous_close"]) and pd.isna(aapl["price_change"]) and pd.isna(aapl["pct_change"])


def test_a_24_7_symbol_s_previous_close_is_the_previous_utc_day_s():
    btc_kpis = pd.DataFrame([{**kpis().to_dict("records")[0], "symbol": "BINANCE:BTCUSDT",
                              "trading_date": date(2026, 11, 21)}])
    sunday = buckets(trades(("BINANCE:BTCUSDT", 91000.0, 0.5, "2026-11-22 00:00:01", "s")))
    empty_parts = pd.DataFrame(columns=["symbol", "trading_date", "open", "high", "low", "close", "volume",
                                        "notional", "trade_count"])
    (row,) = live_tail.live_kpis(btc_kpis, live_tail.day_bars(sunday, empty_parts), CALENDAR).to_dict("records")
    assert (row["trading_date"], row["previous_close"], row["last_price"]) == (pd.Timestamp("2026-11-22"), 190.75, 91000.0)
