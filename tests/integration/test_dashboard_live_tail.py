"""The dashboard's live tail against a real Delta table on the running MinIO (delta-rs, as the dashboard reads it):
the snapshot from the cutoff, then Silver's change data feed, a delete that forces a fresh read, a new cutoff; and
the app itself (Streamlit's AppTest) showing a trade Silver has and Gold does not."""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from streamlit.testing.v1 import AppTest

from conf.lake import delta_rs_uri
from dashboard import live_tail
from spark_jobs.lib.delta import credentialed_storage_options
from tests.unit.dashboard.test_queries import GOLD, MODELS, write_gold

pytestmark = pytest.mark.integration

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
DAY = "2026-11-20"
SCHEMA = pa.schema([("symbol", pa.string()), ("price", pa.float64()), ("volume", pa.float64()),
                    ("trade_ts", pa.int64()), ("event_id", pa.string()), ("date", pa.string()), ("hour", pa.string())])


def silver_rows(*trades: tuple[str, float, float, str, str]) -> pa.Table:
    """(symbol, price, volume, UTC time, event id) as Silver's columns the tail reads, with its partitions."""
    stamps = [pd.Timestamp(at) for _, _, _, at, _ in trades]
    return pa.Table.from_pylist([
        {"symbol": s, "price": p, "volume": v, "trade_ts": int(t.value // 1_000_000), "event_id": e,
         "date": f"{t:%Y-%m-%d}", "hour": f"{t:%H}"} for (s, p, v, _, e), t in zip(trades, stamps)], schema=SCHEMA)


@pytest.fixture
def silver(isolated):
    settings, _ = isolated
    uri, options = delta_rs_uri(settings, "silver/trades"), credentialed_storage_options(settings)
    write_deltalake(uri, silver_rows(("AAPL", 190.0, 10, f"{DAY} 20:57:30", "a"),
                                     ("AAPL", 190.5, 20, f"{DAY} 20:58:10", "b"),
                                     ("AAPL", 191.0, 30, f"{DAY} 20:58:50", "c")),
                    partition_by=["date", "hour"], storage_options=options,
                    configuration={"delta.enableChangeDataFeed": "true"})
    return uri, options


def minute_rows(minutes: pd.DataFrame) -> list[tuple]:
    return [(row.symbol, f"{row.minute_start:%H:%M}", row.open, row.close, row.volume, row.trade_count)
            for row in minutes.itertuples()]


def test_the_tail_reads_from_the_cutoff_then_follows_the_change_feed(silver):
    uri, options = silver
    tail = live_tail.LiveTail(uri, options)
    cutoff = pd.Timestamp(f"{DAY} 20:58")
    assert minute_rows(tail.minutes(cutoff)) == [("AAPL", "20:58", 190.5, 191.0, 50.0, 2)]
    assert tail.version == 0

    # A new version: one trade for the open minute, one late trade for a minute before the cutoff (Gold's).
    write_deltalake(uri, silver_rows(("AAPL", 192.0, 5, f"{DAY} 20:59:05", "d"),
                                     ("AAPL", 180.0, 1, f"{DAY} 20:40:00", "late")),
                    mode="append", partition_by=["date", "hour"], storage_options=options)
    followed = tail.minutes(cutoff)
    assert minute_rows(followed) == [("AAPL", "20:58", 190.5, 191.0, 50.0, 2), ("AAPL", "20:59", 192.0, 192.0, 5.0, 1)]
    assert tail.version == 1
    pd.testing.assert_frame_equal(followed, live_tail.LiveTail(uri, options).minutes(cutoff))  # = a fresh read

    # Rows deleted (reprocess replaces Silver rows): the feed cannot be added up, so the tail reads afresh.
    DeltaTable(uri, storage_options=options).delete("event_id = 'c'")
    assert minute_rows(tail.minutes(cutoff)) == [("AAPL", "20:58", 190.5, 190.5, 20.0, 1),
                                                 ("AAPL", "20:59", 192.0, 192.0, 5.0, 1)]
    # Gold rebuilt through 20:59: the tail starts there.
    assert minute_rows(tail.minutes(pd.Timestamp(f"{DAY} 20:59"))) == [("AAPL", "20:59", 192.0, 192.0, 5.0, 1)]


def test_the_dashboard_shows_a_trade_silver_has_and_gold_does_not(silver, tmp_path, monkeypatch):
    # Gold (the dashboard tests' rows) was built through AAPL's 20:59 minute; Silver then took a trade at 20:59:59
    # and the first trade of 21:00's after-hours: the regular session's bar ends with the first.
    uri, options = silver
    write_deltalake(uri, silver_rows(("AAPL", 190.75, 0, f"{DAY} 20:59:10", "g"),
                                     ("AAPL", 195.5, 100, f"{DAY} 20:59:59", "live"),
                                     ("AAPL", 196.0, 10, f"{DAY} 21:00:00", "after-hours")),
                    mode="append", partition_by=["date", "hour"], storage_options=options)
    days = [{"date_key": 20261120, "date_day": date(2026, 11, 20), "is_trading_day": True, "is_half_day": False,
             "session_open_utc": datetime(2026, 11, 20, 14, 30), "session_close_utc": datetime(2026, 11, 20, 21),
             "previous_trading_date": date(2026, 11, 19)}]
    monkeypatch.setenv("DBT_DUCKDB_PATH", str(write_gold(tmp_path / "gold.duckdb", {**GOLD, "dim_date": days},
                                                         (*MODELS, "dim_date"))))
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    cards = {m.label: m.value for m in app.metric if m.label in ("Last price", "Volume")}
    # Gold's day bar before 20:59 (its 20:57 and 20:58 candles: 300 shares) + the tail's 20:59 (0 + 100 shares).
    assert cards == {"Last price": "195.50", "Volume": "400"}
    assert any("the minutes from then on live from Silver (version 1)" in c.value for c in app.caption)
    # Freshness: the regular session's last trade (20:59:59), not the after-hours one, as Gold measures it.
    assert any(m.value.endswith(" old (2026-11-20 20:59:59 UTC)]") for m in app.markdown)
