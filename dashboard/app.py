"""stocklake live dashboard: Gold from the configured warehouse, re-read every dashboard.refresh_seconds; and, at
/health, the pipeline's health from Prometheus (dashboard/health_page.py).

Run: `make dashboard`, or `streamlit run dashboard/app.py` in the project's environment. Reading is
dashboard/queries.py, drawing dashboard/views.py; this file only lays the market page out and keeps the last good
data for when Gold is being rebuilt.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Hashable

import streamlit as st

from conf.calendars import exchange_calendar
from conf.errors import first_line
from conf.lake import delta_rs_uri
from conf.settings import Settings, load_settings
from dashboard import live_tail, queries, views
from dashboard.live_tail import LiveMinutes
from spark_jobs.lib.delta import credentialed_storage_options
from spark_jobs.lib.transforms import TRADES

# Stable keys: tests and users find the page's parts by them (CSS class st-key-<key> in the browser).
SYMBOL_KEY, INTERVAL_KEY = "symbol", "interval"
LAST_GOOD = "last_good_reads"


@st.cache_resource(show_spinner=False)
def _shared_snowflake() -> queries.Warehouse:
    """One Snowflake connection for every session of this server (a DuckDB warehouse is just a path: not cached)."""
    return queries.SnowflakeWarehouse(os.environ)


def _warehouse(settings: Settings) -> queries.Warehouse:
    if settings.warehouse.target == "snowflake":
        return _shared_snowflake()
    return queries.open_warehouse(settings)


@st.cache_resource(show_spinner=False)
def _shared_tail(uri: str) -> live_tail.LiveTail:
    """One live tail per Silver table for every session of this server (it keeps Silver's minutes current)."""
    return live_tail.LiveTail(uri, credentialed_storage_options(load_settings()))


def _live_minutes(warehouse: queries.Warehouse, settings: Settings) -> tuple[LiveMinutes | None, str]:
    """(the open minutes read from Silver, None when off or unreadable; a caption saying which)."""
    if not settings.dashboard.live_tail:
        return None, ""
    try:
        basis = queries.load_tail_basis(warehouse)
        if basis is None:
            return None, ""
        tail = _shared_tail(delta_rs_uri(settings, TRADES.table("silver")))
        exchange, zone = exchange_calendar(settings.market_hours.calendar)  # as Gold's dbt vars
        calendar = live_tail.Calendar(exchange, zone, basis.calendars, basis.trading_days)
        minutes = live_tail.with_sessions(tail.minutes(basis.cutoff), calendar)
    except (queries.WarehouseBusy, queries.WarehouseEmpty):
        return None, ""
    except Exception as error:  # noqa: BLE001 - the lake unreachable, no credentials: Gold alone, and say why
        return None, f"Live minutes unavailable ({first_line(error)}): showing Gold only."
    caption = (f"Gold through {basis.cutoff:%Y-%m-%d %H:%M} UTC; the minutes from then on live from Silver "
               f"(version {tail.version}).")
    return LiveMinutes(basis, calendar, minutes), caption


def _fresh_or_last_good(key: Hashable, load: Callable[[], Any]) -> tuple[Any, bool]:
    """(data, stale): a fresh read, kept as this session's last good one; or, while dbt holds the warehouse, the
    last good read under the same key (None if there is none yet)."""
    last_good = st.session_state.setdefault(LAST_GOOD, {})
    try:
        last_good[key] = load()
    except queries.WarehouseBusy:
        return last_good.get(key), True
    return last_good[key], False


def _show_empty(reason: queries.WarehouseEmpty) -> None:
    st.info(f"No Gold data yet: {queries.EMPTY_HINT}. The dashboard picks it up by itself.  \n_({reason})_",
            icon=":material/hourglass_empty:")


def _show_rebuilding(read_at: datetime | None) -> None:
    if read_at is None:
        st.info("Gold is being rebuilt; the dashboard shows it as soon as the build finishes.",
                icon=":material/sync:")
    else:
        st.warning(f"Gold is being rebuilt, showing data from {read_at:%Y-%m-%d %H:%M:%S} UTC",
                   icon=":material/sync:")


def _kpi_cards(market: queries.Market, symbol: str) -> None:
    row = market.kpis.set_index("symbol").loc[symbol]
    with st.container(key="kpi-cards"):
        last, change, pct, volume = st.columns(4)
        last.metric("Last price", views.price(row["last_price"]), delta=views.kpi_delta(row), border=True)
        change.metric("Change", views.change(row["price_change"]), border=True,
                      help="vs the previous trading date's close (n/a until Gold has that close)")
        pct.metric("% change", views.percent(row["pct_change"]), border=True)
        volume.metric("Volume", views.volume(row["day_volume"]), border=True, help="shares traded today")
        st.caption(f"{symbol} · trading date {row['trading_date']:%Y-%m-%d} · open {views.price(row['day_open'])}"
                   f" · high {views.price(row['day_high'])} · low {views.price(row['day_low'])}"
                   f" · VWAP {views.price(row['day_vwap'])} · previous close {views.price(row['previous_close'])}"
                   f" · {int(row['day_trade_count']):,} trades · last trade "
                   f"{row['last_trade_time_utc']:%H:%M:%S} UTC")


def _overview(market: queries.Market, per_row: int = 8) -> None:
    """Every symbol's last price and move, in rows of per_row cards."""
    kpis = market.kpis
    with st.container(key="kpi-overview"):
        for start in range(0, len(kpis), per_row):
            for column, (_, row) in zip(st.columns(per_row), kpis.iloc[start:start + per_row].iterrows()):
                column.metric(row["symbol"], views.price(row["last_price"]), delta=views.kpi_delta(row))


def _market_or_notice(warehouse: queries.Warehouse, settings: Settings) \
        -> tuple[queries.Market | None, bool, LiveMinutes | None, str]:
    """(market with its live minutes, stale, the live minutes, their caption); market None when there is nothing to
    show yet (a notice says why)."""
    try:
        market, stale = _fresh_or_last_good("market", lambda: queries.load_market(warehouse))
    except queries.WarehouseEmpty as reason:
        _show_empty(reason)
        return None, False, None, ""
    if market is None:
        _show_rebuilding(None)
        return None, False, None, ""
    live, live_caption = _live_minutes(warehouse, settings) if not stale else (None, "")
    return (market if live is None else live.market(market)), stale, live, live_caption


def _pick_symbol_and_interval(market: queries.Market) -> tuple[str, str]:
    symbols = market.symbols["symbol"].tolist()
    companies = dict(zip(market.symbols["symbol"], market.symbols["company"]))
    pick_symbol, pick_interval = st.columns([3, 1])
    symbol = pick_symbol.selectbox("Symbol", symbols, key=SYMBOL_KEY,
                                   format_func=lambda s: f"{s} · {companies.get(s, s)}")
    interval = pick_interval.selectbox("Interval", queries.INTERVALS, key=INTERVAL_KEY,
                                       format_func=views.INTERVAL_LABELS.get)
    return symbol, interval


def _candles(warehouse: queries.Warehouse, limit: int, live: LiveMinutes | None, symbol: str, interval: str,
             stale: bool) -> tuple[bool, Any]:
    """(shown, the symbol's detail or None while Gold is rebuilt); shown False when Gold turned out empty."""
    try:
        detail, detail_stale = _fresh_or_last_good(
            (symbol, interval), lambda: queries.load_symbol(warehouse, symbol, interval, limit))
        if live is not None and detail is not None:
            detail = live.detail(detail, limit)
    except queries.WarehouseEmpty as reason:
        _show_empty(reason)
        return False, None
    if detail is None:
        _show_rebuilding(None)
        return True, None
    if detail_stale and not stale:
        _show_rebuilding(detail.read_at)
    with st.container(key="candles-chart"):
        st.plotly_chart(views.candles_figure(detail, show_moving_averages=interval == "1m"),
                        config={"displaylogo": False})
    if interval != "1m":
        st.caption("Moving averages are over 1-minute closes: choose 1 minute to overlay them.")
    return True, detail


def _treemap_and_movers(market: queries.Market) -> None:
    treemap_column, movers_column = st.columns([3, 2])
    with treemap_column, st.container(key="treemap-chart"):
        st.plotly_chart(views.treemap_figure(market.treemap), config={"displaylogo": False})
    with movers_column, st.container(key="top-movers"):
        st.subheader("Top movers")
        st.dataframe(market.top_movers, hide_index=True, column_order=[
            "mover_rank", "symbol", "last_price", "move_pct", "change_basis", "day_volume"], column_config={
            "mover_rank": st.column_config.NumberColumn("#", format="%d"),
            "last_price": st.column_config.NumberColumn("last", format="%.2f"),
            "move_pct": st.column_config.NumberColumn("move %", format="%+.2f%%"),
            "change_basis": st.column_config.TextColumn("vs"),
            "day_volume": st.column_config.NumberColumn("volume", format="localized"),
        })


def _live(warehouse: queries.Warehouse, settings: Settings) -> None:
    dashboard = settings.dashboard
    market, stale, live, live_caption = _market_or_notice(warehouse, settings)
    if market is None:
        return
    label, colour = views.freshness(market.latest_row_time, datetime.now(timezone.utc),
                                    dashboard.freshness_red_after_seconds)
    with st.container(key="freshness"):
        st.badge(label, color=colour, icon=":material/schedule:")
    if stale:
        _show_rebuilding(market.read_at)
    _overview(market)
    symbol, interval = _pick_symbol_and_interval(market)
    _kpi_cards(market, symbol)
    shown, detail = _candles(warehouse, dashboard.candles_limit, live, symbol, interval, stale)
    if not shown:
        return
    _treemap_and_movers(market)
    if detail is not None:
        with st.container(key="volatility-chart"):
            st.plotly_chart(views.volatility_figure(detail.volatility, symbol), config={"displaylogo": False})
    st.caption(f"Read from {warehouse.description} at {market.read_at:%H:%M:%S} UTC; "
               f"refreshes every {dashboard.refresh_seconds} s. {live_caption}".rstrip())


def market() -> None:
    st.title("stocklake · live market")
    try:
        settings = load_settings()
        warehouse = _warehouse(settings)
    except ValueError as error:  # a bad setting or Snowflake connection setting: one line naming it
        st.error(f"Configuration error: {error}")
        st.stop()
    st.fragment(run_every=settings.dashboard.refresh_seconds)(_live)(warehouse, settings)


def main() -> None:
    st.set_page_config(page_title="stocklake", page_icon=":material/candlestick_chart:", layout="wide")
    st.navigation([
        st.Page(market, title="Live market", icon=":material/candlestick_chart:", default=True),
        st.Page(Path(__file__).with_name("health_page.py"), title="Pipeline health", icon=":material/monitor_heart:",
                url_path="health"),
    ]).run()


main()
