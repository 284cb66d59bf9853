"""What the dashboard shows, without Streamlit or SQL: deterministic number formats and the Plotly figures."""
from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.queries import SymbolDetail

NOT_AVAILABLE = "n/a"
UP, DOWN = "#26a69a", "#ef5350"
# Background of pre-market and after-hours candles.
EXTENDED_SHADE = "#7e57c2"
INTERVAL_LABELS = {"1m": "1 minute", "1h": "1 hour", "1d": "1 day"}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def price(value: Any) -> str:
    """189.5 -> '189.50', 1234.5 -> '1,234.50'."""
    return NOT_AVAILABLE if _missing(value) else f"{value:,.2f}"


def change(value: Any) -> str:
    """Signed: 1.5 -> '+1.50', -0.25 -> '-0.25'."""
    return NOT_AVAILABLE if _missing(value) else f"{value:+,.2f}"


def percent(value: Any) -> str:
    """Signed percent with two decimals: 0.6543 -> '+0.65%'."""
    return NOT_AVAILABLE if _missing(value) else f"{value:+.2f}%"


def volume(value: Any) -> str:
    """Whole shares with thousands separators: 294315.0 -> '294,315'."""
    return NOT_AVAILABLE if _missing(value) else f"{value:,.0f}"


def age(seconds: float) -> str:
    """A short age: '42 s', '5 min 3 s', '5 h 3 min', '2 d 4 h'."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def freshness(latest_row_time: pd.Timestamp | None, now: datetime, red_after_seconds: float) -> tuple[str, str]:
    """(label, colour) of the freshness indicator: green while the newest Gold row is younger than the threshold,
    red past it. latest_row_time is naive UTC (as in Gold); now is timezone-aware."""
    if latest_row_time is None:
        return "Gold has no rows", "red"
    seconds = (pd.Timestamp(now) - pd.Timestamp(latest_row_time).tz_localize("UTC")).total_seconds()
    label = f"Newest Gold row {age(seconds)} old ({latest_row_time:%Y-%m-%d %H:%M:%S} UTC)"
    return label, "red" if seconds > red_after_seconds else "green"


def kpi_delta(row: pd.Series) -> str | None:
    """The move under a symbol's card: % change vs the previous close, else vs the day's open (labelled)."""
    if not _missing(row["pct_change"]):
        return percent(row["pct_change"])
    if not _missing(row["pct_change_from_open"]):
        return f"{percent(row['pct_change_from_open'])} vs open"
    return None


# --------------------------------------------------------------------------------------------------------- figures

# Gaps longer than this between candles (nights, weekends, holidays, a halted feed) are cut out of the time axis.
CANDLE_STEP = {"1m": pd.Timedelta(minutes=1), "1h": pd.Timedelta(hours=1), "1d": pd.Timedelta(days=1)}
GAP_CUT_AFTER = {"1m": pd.Timedelta(minutes=30), "1h": pd.Timedelta(hours=3), "1d": pd.Timedelta(days=1)}


def session_gaps(starts: pd.Series, interval: str) -> list[dict[str, Any]]:
    """Plotly rangebreaks for the empty stretches between candles longer than GAP_CUT_AFTER[interval]."""
    starts = pd.to_datetime(starts).sort_values()
    step = CANDLE_STEP[interval]
    return [{"bounds": [(previous + step).isoformat(), current.isoformat()]}
            for previous, current in zip(starts.iloc[:-1], starts.iloc[1:])
            if current - previous > GAP_CUT_AFTER[interval]]


EXTENDED_SESSIONS = ("pre", "post")


def extended_hours(candles: pd.DataFrame, interval: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """(start, end) of each run of consecutive pre-market or after-hours candles: the spans the chart shades."""
    spans: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    step = CANDLE_STEP[interval]
    for start, session in zip(pd.to_datetime(candles["period_start"]), candles["session"]):
        if session not in EXTENDED_SESSIONS:
            continue
        if spans and spans[-1][1] >= start:  # continues the previous run (or an hour's other session row)
            spans[-1] = (spans[-1][0], max(spans[-1][1], start + step))
        else:
            spans.append((start, start + step))
    return spans


def candles_figure(detail: SymbolDetail, show_moving_averages: bool) -> go.Figure:
    """Candlestick with VWAP (and, for 1-minute candles, the moving averages) over volume bars."""
    candles = detail.candles
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.03)
    x = candles["period_start"]
    figure.add_trace(go.Candlestick(x=x, open=candles["open"], high=candles["high"], low=candles["low"],
                                    close=candles["close"], name=detail.symbol, increasing_line_color=UP,
                                    decreasing_line_color=DOWN), row=1, col=1)
    # Intraday: the session's running VWAP (what traders read against price); daily: each day's VWAP.
    vwap, vwap_name = (candles["vwap"], "VWAP") if detail.interval == "1d" else (candles["session_vwap"],
                                                                                  "VWAP (session)")
    figure.add_trace(go.Scatter(x=x, y=vwap, name=vwap_name, mode="lines",
                                line={"color": "#ff9800", "width": 2}), row=1, col=1)
    if show_moving_averages:
        averages = detail.moving_averages
        for window, rows in averages.groupby("window_minutes", sort=True):
            figure.add_trace(go.Scatter(x=rows["candle_start"], y=rows["sma"], name=f"SMA {window}", mode="lines",
                                        line={"width": 1.2}), row=1, col=1)
            # EMAs start hidden (one legend click away): four averages at once hide the candles.
            figure.add_trace(go.Scatter(x=rows["candle_start"], y=rows["ema"], name=f"EMA {window}", mode="lines",
                                        line={"width": 1.2}, visible="legendonly"), row=1, col=1)
    bar_colours = [UP if close >= open_ else DOWN for open_, close in zip(candles["open"], candles["close"])]
    figure.add_trace(go.Bar(x=x, y=candles["volume"], name="Volume", marker_color=bar_colours, showlegend=False),
                     row=2, col=1)
    figure.update_layout(
        title=f"{detail.symbol} · {INTERVAL_LABELS[detail.interval]} candles (latest {len(candles)}, UTC)",
        height=560, margin={"l": 10, "r": 10, "t": 50, "b": 10}, xaxis_rangeslider_visible=False,
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
        # Keeps the user's zoom across auto-refreshes of the same chart.
        uirevision=f"{detail.symbol}-{detail.interval}")
    # Pre-market and after-hours shaded, so extended-hours prints never pass for the regular session.
    for start, end in extended_hours(candles, detail.interval):
        figure.add_vrect(x0=start, x1=end, fillcolor=EXTENDED_SHADE, opacity=0.12, line_width=0, layer="below",
                         row="all", col=1)
    figure.update_xaxes(rangebreaks=session_gaps(x, detail.interval))
    figure.update_yaxes(title_text="price", row=1, col=1)
    figure.update_yaxes(title_text="volume", row=2, col=1)
    return figure


def _weighted_move(rows: pd.DataFrame) -> float:
    """A group's % change: its symbols' moves weighted by traded value (plain mean when nothing traded)."""
    known = rows[rows["move_pct"].notna()]
    if known.empty:
        return math.nan
    weights = known["day_notional"]
    return float((known["move_pct"] * weights).sum() / weights.sum()) if weights.sum() > 0 \
        else float(known["move_pct"].mean())


def treemap_figure(treemap: pd.DataFrame) -> go.Figure:
    """Sectors > symbols, sized by the day's traded value, coloured by % change (red down, green up); a sector's
    colour is its symbols' value-weighted move."""
    leaves = treemap.assign(size=treemap["day_notional"] if treemap["day_notional"].sum() > 0 else 1.0)
    # (id, label, parent, size, move, hover text) per node: the root, the sectors, the symbols.
    nodes = [("all", "All sectors", "", float(leaves["size"].sum()), _weighted_move(leaves), "all symbols")]
    for sector, rows in leaves.groupby("sector", sort=True):
        nodes.append((f"sector:{sector}", sector, "all", float(rows["size"].sum()), _weighted_move(rows), sector))
        nodes.extend((f"symbol:{row.symbol}", row.symbol, f"sector:{sector}", float(row.size), row.move_pct,
                      f"{row.company} · {row.industry}<br>last {price(row.last_price)} · vs {row.change_basis}")
                     for row in rows.itertuples(index=False))
    ids, labels, parents, sizes, moves, hover = (list(column) for column in zip(*nodes))
    known = [abs(move) for move in moves if not _missing(move)]
    bound = max(max(known, default=1.0), 0.01)
    figure = go.Figure(go.Treemap(
        ids=ids, labels=labels, parents=parents, values=sizes, branchvalues="total",
        customdata=[[percent(move), text] for move, text in zip(moves, hover)],
        marker={"colors": [0.0 if _missing(move) else move for move in moves], "cmin": -bound, "cmax": bound,
                "colorscale": [[0.0, DOWN], [0.5, "#f5f5f5"], [1.0, UP]], "showscale": True,
                "colorbar": {"title": {"text": "%"}}},
        texttemplate="<b>%{label}</b><br>%{customdata[0]}",
        hovertemplate="<b>%{label}</b> %{customdata[0]}<br>%{customdata[1]}<br>traded value %{value:,.0f}"
                      "<extra></extra>"))
    figure.update_layout(title="Sectors by traded value, coloured by % change", height=460,
                         margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return figure


def volatility_figure(volatility: pd.DataFrame, symbol: str) -> go.Figure:
    """Annualised rolling volatility of 1-minute log returns, one line per window."""
    figure = go.Figure()
    for window, rows in volatility.groupby("window_minutes", sort=True):
        figure.add_trace(go.Scatter(x=rows["candle_start"], y=rows["annualized_volatility"] * 100,
                                    name=f"{window}-minute window", mode="lines"))
    figure.update_xaxes(rangebreaks=session_gaps(volatility["candle_start"].drop_duplicates(), "1m"))
    if volatility["annualized_volatility"].isna().all():
        figure.add_annotation(text="No full window of 1-minute returns yet", showarrow=False, x=0.5, y=0.5,
                              xref="paper", yref="paper")
    figure.update_layout(title=f"{symbol} · annualised volatility of 1-minute log returns", height=360,
                         margin={"l": 10, "r": 10, "t": 50, "b": 10}, yaxis_title="%", yaxis_ticksuffix="%",
                         legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"})
    return figure


def health_figure(points: pd.DataFrame, title: str, unit: str, window: str) -> go.Figure:
    """One line per series of a health panel (dashboard/health.py's long form: time, series, value)."""
    figure = go.Figure()
    for series, rows in points.groupby("series", sort=True):
        figure.add_trace(go.Scatter(x=rows["time"], y=rows["value"], name=series, mode="lines"))
    if points.empty:
        figure.add_annotation(text=f"No data in the last {window}", showarrow=False, x=0.5, y=0.5,
                              xref="paper", yref="paper")
    figure.update_layout(title=f"{title} ({unit})", height=300, margin={"l": 10, "r": 10, "t": 50, "b": 10},
                         yaxis_title=unit, showlegend=True,
                         legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"})
    return figure
