"""The dashboard in a real browser: `streamlit run` over a Gold warehouse built from simulator data (the session
fixture gold_warehouse: simulator -> Kafka -> stream -> Silver -> dbt build), driven by headless Chromium.

It checks what a user sees against Gold itself, read here with duckdb: the selected symbol's KPI cards, the
candlestick's closes, the treemap's symbols and the freshness badge; then it switches the symbol and checks again,
and saves a screenshot (dashboard-<symbol>.png) to $STOCKLAKE_TEST_ARTIFACTS (default .lake/test-artifacts).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import duckdb
import pytest
from selenium.webdriver.support.ui import WebDriverWait

from scripts.dashboard_screenshot import (chromium, kpi_cards, plotly_traces, select_symbol, serve,
                                          wait_for_dashboard)
from tests.integration.stack import REPO

pytestmark = pytest.mark.integration

ARTIFACTS = Path(os.environ.get("STOCKLAKE_TEST_ARTIFACTS") or REPO / ".lake" / "test-artifacts")
WIDTH, HEIGHT = 1600, 2200


def gold_rows(path: Path, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Rows straight from the Gold file (read-only, closed at once: the dashboard reads the same file)."""
    connection = duckdb.connect(str(path), read_only=True)
    try:
        cursor = connection.execute(sql, params or [])
        columns = [column[0] for column in cursor.description]
        return [dict(zip(columns, row)) for row in cursor.fetchall()]
    finally:
        connection.close()


def expected_cards(kpi: dict[str, Any]) -> dict[str, str]:
    """The KPI cards' values as the dashboard formats fct_symbol_kpi (n/a for a null)."""
    def shown(value, spec):
        return "n/a" if value is None else format(value, spec)
    return {"Last price": shown(kpi["last_price"], ",.2f"), "Change": shown(kpi["price_change"], "+,.2f"),
            "% change": "n/a" if kpi["pct_change"] is None else f"{kpi['pct_change']:+.2f}%",
            "Volume": shown(kpi["day_volume"], ",.0f")}


def candle_closes(path: Path, symbol: str, limit: int) -> list[float]:
    """The closes of the symbol's latest `limit` 1-minute candles, oldest first (what the candlestick shows)."""
    rows = gold_rows(path, "select close from fct_candles_1m where symbol = ? order by candle_start desc limit ?",
                     [symbol, limit])
    return [row["close"] for row in reversed(rows)]


def candlestick(driver) -> tuple[str, list[float]] | None:
    traces = plotly_traces(driver, "candles-chart") or []
    shown = [(trace["name"], trace["close"]) for trace in traces if trace["type"] == "candlestick"]
    return shown[0] if shown else None


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_dashboard_in_chromium_shows_gold_and_follows_the_symbol(gold_warehouse):
    path, settings = gold_warehouse.path, gold_warehouse.settings
    limit = settings.dashboard.candles_limit
    kpis = {row["symbol"]: row for row in gold_rows(path, "select * from fct_symbol_kpi")}
    # The simulator traded every configured symbol on both days, so each has a KPI row and a previous close.
    assert sorted(kpis) == sorted(settings.simulator.symbols)
    assert all(row["previous_close"] is not None for row in kpis.values())
    first, other = sorted(kpis)[0], sorted(kpis)[-1]  # the selectbox starts on the first symbol
    latest = max(row["last_trade_time_utc"] for row in kpis.values())

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with serve(gold_warehouse.env, ARTIFACTS / "dashboard-browser-test.log") as url, \
            chromium(WIDTH, HEIGHT) as driver:
        driver.get(url)
        wait_for_dashboard(driver)

        assert kpi_cards(driver) == expected_cards(kpis[first])
        assert candlestick(driver) == (first, candle_closes(path, first, limit))
        treemap = plotly_traces(driver, "treemap-chart")[0]
        assert sorted(set(treemap["labels"]) & set(kpis)) == sorted(kpis)
        freshness = driver.find_element("css selector", ".st-key-freshness").text
        # Simulated trading days lie in the past: older than the red threshold.
        assert f"({latest:%Y-%m-%d %H:%M:%S} UTC)" in freshness and "Newest Gold row" in freshness

        select_symbol(driver, other)
        want = (expected_cards(kpis[other]), (other, candle_closes(path, other, limit)))
        assert want[0] != expected_cards(kpis[first])
        screenshot = ARTIFACTS / f"dashboard-{other}.png"
        try:
            WebDriverWait(driver, 60, poll_frequency=0.25).until(
                lambda d: (kpi_cards(d), candlestick(d)) == want, f"the KPI cards and candlestick of {other}")
            wait_for_dashboard(driver)  # every chart drawn again, no exception on the page
        finally:
            driver.save_screenshot(str(screenshot))  # on failure too: it shows what the page showed
        viewport = tuple(driver.execute_script("return [window.innerWidth, window.innerHeight]"))

    # The screenshot is the viewport: the window less the browser's own frame.
    assert png_size(screenshot) == viewport and viewport[0] == WIDTH and viewport[1] > HEIGHT - 300
    assert screenshot.stat().st_size > 50_000  # a drawn page, not a blank one
