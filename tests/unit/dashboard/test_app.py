"""dashboard/app.py run by Streamlit's AppTest against real DuckDB Gold files (tables from the Gold contracts)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import queries, views
from tests.unit.dashboard.test_queries import GOLD, write_gold, write_lock_held_by_another_process

APP = str(Path(__file__).resolve().parents[3] / "dashboard" / "app.py")
KPI_LABELS = ["Last price", "Change", "% change", "Volume"]


@pytest.fixture
def app_env(monkeypatch):
    """The app reads its settings and DBT_DUCKDB_PATH from the environment, as under `make dashboard`."""
    def point_at(path: Path) -> None:
        monkeypatch.setenv("DBT_DUCKDB_PATH", str(path))
    for name in ("STOCKLAKE_CONFIG", "STOCKLAKE_WAREHOUSE_TARGET"):
        monkeypatch.delenv(name, raising=False)
    # Gold alone: the live tail reads the lake (tests/integration/test_dashboard_live_tail.py).
    monkeypatch.setenv("STOCKLAKE_DASHBOARD_LIVE_TAIL", "false")
    return point_at


def run_app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60).run()


def kpi_cards(app: AppTest) -> dict[str, tuple[str, str]]:
    """The selected symbol's cards: {label: (value, delta)}."""
    return {m.label: (m.value, m.delta) for m in app.metric if m.label in KPI_LABELS}


def test_empty_warehouse_shows_how_to_build_gold_not_a_stack_trace(app_env, tmp_path):
    missing = tmp_path / "warehouse" / "gold.duckdb"
    app_env(missing)
    app = run_app()
    assert not app.exception
    (info,) = app.info
    assert info.value.startswith("No Gold data yet: run `make demo` (or `make gold` after the stream has written "
                                 "Silver).")
    assert f"no Gold warehouse at {missing}" in info.value
    assert not app.metric and not missing.exists()


def test_gold_without_rows_shows_the_same_message(app_env, tmp_path):
    app_env(write_gold(tmp_path / "gold.duckdb", {}))
    app = run_app()
    assert not app.exception
    assert [i.value.split("  \n")[0] for i in app.info] == [
        "No Gold data yet: run `make demo` (or `make gold` after the stream has written Silver). "
        "The dashboard picks it up by itself."]


def test_kpi_cards_show_fct_symbol_kpi_and_follow_the_symbol(app_env, tmp_path):
    app_env(write_gold(tmp_path / "gold.duckdb"))
    app = run_app()
    assert not app.exception
    symbol = app.selectbox(key="symbol")
    assert symbol.options == ["AAPL · Apple Inc.", "BRK.B · BRK.B", "TSLA · Tesla, Inc."]
    assert symbol.value == "AAPL"
    aapl = GOLD["fct_symbol_kpi"][0]
    assert (aapl["last_price"], aapl["price_change"], aapl["day_volume"]) == (190.25, 2.25, 1234567.0)
    assert kpi_cards(app) == {"Last price": ("190.25", "+1.20%"), "Change": ("+2.25", ""),
                              "% change": ("+1.20%", ""), "Volume": ("1,234,567", "")}
    # Every symbol's card in the overview: last price, and the move vs the previous close (else vs the open).
    overview = {m.label: (m.value, m.delta) for m in app.metric if m.label not in KPI_LABELS}
    assert overview == {"AAPL": ("190.25", "+1.20%"), "BRK.B": ("410.50", "-0.36%"),
                        "TSLA": ("171.50", "-0.29% vs open")}

    symbol.select("TSLA").run()
    assert not app.exception
    # TSLA has no previous close in Gold: change and % change are not available, not zero.
    assert kpi_cards(app) == {"Last price": ("171.50", "-0.29% vs open"), "Change": ("n/a", ""),
                              "% change": ("n/a", ""), "Volume": ("50,000", "")}
    assert app.caption[0].value.startswith("TSLA · trading date 2026-11-20 · open 172.00 · high 173.00 · "
                                           "low 171.00 · VWAP 172.00 · previous close n/a · 500 trades")

    app.selectbox(key="interval").select("1d").run()
    assert not app.exception
    assert "Moving averages are over 1-minute closes: choose 1 minute to overlay them." in [
        c.value for c in app.caption]


def test_freshness_turns_red_past_the_threshold(app_env, tmp_path, monkeypatch):
    app_env(write_gold(tmp_path / "gold.duckdb"))
    # The newest Gold row is 2026-11-20 20:59:58.5 UTC: older than 900 s (the default threshold) by now.
    (badge,) = run_app().markdown
    assert badge.value.startswith(":red-badge[:material/schedule: Newest Gold row ")
    assert badge.value.endswith(" old (2026-11-20 20:59:58 UTC)]")
    monkeypatch.setenv("STOCKLAKE_DASHBOARD_FRESHNESS_RED_AFTER_SECONDS", str(10 ** 10))
    (badge,) = run_app().markdown
    assert badge.value.startswith(":green-badge[")


def test_while_dbt_holds_the_lock_the_last_good_data_stays_with_a_notice(app_env, tmp_path):
    path = write_gold(tmp_path / "gold.duckdb")
    app_env(path)
    app = run_app()
    before = kpi_cards(app)
    assert before["Last price"] == ("190.25", "+1.20%")
    assert not app.warning
    with write_lock_held_by_another_process(path):
        app.run()
        assert not app.exception
        (notice,) = app.warning
        assert notice.value.startswith("Gold is being rebuilt, showing data from ")
        assert notice.value.endswith(" UTC")
        assert kpi_cards(app) == before
        assert len(app.get("plotly_chart")) == 3
    app.run()
    assert not app.warning and kpi_cards(app) == before


def test_while_dbt_holds_the_lock_before_any_good_read_the_app_says_so(app_env, tmp_path):
    path = write_gold(tmp_path / "gold.duckdb")
    app_env(path)
    with write_lock_held_by_another_process(path):
        app = run_app()
        assert not app.exception
        assert [i.value for i in app.info] == [
            "Gold is being rebuilt; the dashboard shows it as soon as the build finishes."]
        assert not app.metric


def test_a_bad_setting_is_one_line_naming_it(app_env, tmp_path, monkeypatch):
    app_env(write_gold(tmp_path / "gold.duckdb"))
    monkeypatch.setenv("STOCKLAKE_DASHBOARD_REFRESH_SECONDS", "soon")
    app = run_app()
    assert not app.exception
    assert [e.value for e in app.error] == [
        "Configuration error: dashboard.refresh_seconds: expected a whole number, got 'soon' "
        "(from environment STOCKLAKE_DASHBOARD_REFRESH_SECONDS)"]


# ------------------------------------------------------------------------------------ views: formats and figures

def test_formats_are_deterministic_and_say_n_a_for_nulls():
    assert [views.price(v) for v in (189.5, 1234.5, 0.004, None, float("nan"))] == [
        "189.50", "1,234.50", "0.00", "n/a", "n/a"]
    assert [views.change(v) for v in (1.5, -0.25, 0.0, None)] == ["+1.50", "-0.25", "+0.00", "n/a"]
    assert [views.percent(v) for v in (0.6543, -12.0, None)] == ["+0.65%", "-12.00%", "n/a"]
    assert [views.volume(v) for v in (294315.0, 0.0, None)] == ["294,315", "0", "n/a"]
    assert [views.age(s) for s in (0, 42.9, 303, 18_180, 187_200, -5)] == [
        "0 s", "42 s", "5 min 3 s", "5 h 3 min", "2 d 4 h", "0 s"]


def test_freshness_is_green_up_to_the_threshold_then_red():
    latest = pd.Timestamp("2026-11-20 20:59:58")
    now = datetime(2026, 11, 20, 21, 14, 58, tzinfo=timezone.utc)  # 900 s later
    assert views.freshness(latest, now, 900) == ("Newest Gold row 15 min 0 s old (2026-11-20 20:59:58 UTC)",
                                                 "green")
    assert views.freshness(latest, now, 899)[1] == "red"
    assert views.freshness(None, now, 900) == ("Gold has no rows", "red")


def test_candles_figure_draws_candles_vwap_averages_and_volume_and_cuts_the_night(tmp_path):
    warehouse = queries.DuckDBWarehouse(write_gold(tmp_path / "gold.duckdb"))
    detail = queries.load_symbol(warehouse, "AAPL", "1m", 390)
    figure = views.candles_figure(detail, show_moving_averages=True)
    assert [(trace.type, trace.name) for trace in figure.data] == [
        ("candlestick", "AAPL"), ("scatter", "VWAP (session)"), ("scatter", "SMA 5"), ("scatter", "EMA 5"),
        ("scatter", "SMA 20"), ("scatter", "EMA 20"), ("bar", "Volume")]
    assert list(figure.data[0].close) == [190.25, 190.75, 190.25]
    assert list(figure.data[6].marker.color) == [views.UP, views.UP, views.DOWN]
    assert list(figure.data[1].y) == [190.125, 190.375, 190.375]
    daily = queries.load_symbol(warehouse, "AAPL", "1d", 390)
    without_averages = views.candles_figure(daily, show_moving_averages=False)
    assert [trace.name for trace in without_averages.data] == ["AAPL", "VWAP", "Volume"]
    assert list(without_averages.data[1].y) == [187.5, 190.125]
    starts = pd.Series(pd.to_datetime(["2026-11-19 20:59", "2026-11-20 14:30", "2026-11-20 14:31"]))
    assert views.session_gaps(starts, "1m") == [{"bounds": ["2026-11-19T21:00:00", "2026-11-20T14:30:00"]}]
    assert views.session_gaps(pd.Series(pd.to_datetime(["2026-11-20", "2026-11-23"])), "1d") == [
        {"bounds": ["2026-11-21T00:00:00", "2026-11-23T00:00:00"]}]


def test_extended_hours_are_shaded_and_the_regular_session_is_not(tmp_path):
    detail = queries.load_symbol(queries.DuckDBWarehouse(write_gold(tmp_path / "gold.duckdb")), "AAPL", "1m", 390)
    assert set(detail.candles["session"]) == {"regular"} and views.candles_figure(detail, False).layout.shapes == ()
    # Half day 27 November: pre-market to 14:30 UTC, regular to 18:00, after-hours; the 14:00 hour has two rows.
    minutes = pd.DataFrame({"period_start": pd.to_datetime(["2026-11-27 14:28", "2026-11-27 14:29", "2026-11-27 14:30",
                                                            "2026-11-27 17:59", "2026-11-27 18:00"]),
                            "session": ["pre", "pre", "regular", "regular", "post"]})
    assert views.extended_hours(minutes, "1m") == [
        (pd.Timestamp("2026-11-27 14:28"), pd.Timestamp("2026-11-27 14:30")),
        (pd.Timestamp("2026-11-27 18:00"), pd.Timestamp("2026-11-27 18:01"))]
    hours = pd.DataFrame({"period_start": pd.to_datetime(["2026-11-27 13:00", "2026-11-27 14:00", "2026-11-27 14:00",
                                                          "2026-11-27 18:00"]),
                          "session": ["pre", "pre", "regular", "post"]})
    assert views.extended_hours(hours, "1h") == [
        (pd.Timestamp("2026-11-27 13:00"), pd.Timestamp("2026-11-27 15:00")),
        (pd.Timestamp("2026-11-27 18:00"), pd.Timestamp("2026-11-27 19:00"))]
    shaded = views.candles_figure(queries.SymbolDetail(
        "AAPL", "1m", minutes.assign(open=1.0, high=1.0, low=1.0, close=1.0, volume=1.0, vwap=1.0, session_vwap=1.0),
        detail.moving_averages, detail.volatility, detail.read_at), show_moving_averages=False)
    assert [(pd.Timestamp(shape.x0), pd.Timestamp(shape.x1)) for shape in shaded.layout.shapes
            if shape.yref == "y domain"] == views.extended_hours(minutes, "1m")


def test_treemap_nests_symbols_in_sectors_coloured_by_value_weighted_move(tmp_path):
    with queries.DuckDBWarehouse(write_gold(tmp_path / "gold.duckdb")).read() as reader:
        (trace,) = views.treemap_figure(queries.treemap(reader)).data
    nodes = dict(zip(trace.ids, zip(trace.parents, trace.values, trace.marker.colors)))
    assert nodes["symbol:TSLA"] == ("sector:Consumer Discretionary", 8600000.0, -0.29069767441860467)
    assert nodes["sector:Unknown"] == ("all", 410000.0, -0.3640776699029126)
    total = 234722050.875 + 410000.0 + 8600000.0
    weighted = (1.1968085106382979 * 234722050.875 - 0.3640776699029126 * 410000.0
                - 0.29069767441860467 * 8600000.0) / total
    assert nodes["all"][:2] == ("", total)
    assert nodes["all"][2] == pytest.approx(weighted, rel=1e-12)
