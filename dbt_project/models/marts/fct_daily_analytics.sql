-- What trading desks compute on daily closes, per symbol and trading day of fct_daily_bars (the stream's bars and
-- the backfilled history before them): the day's return, simple moving averages of the closes over 7, 30 and 90
-- bars, 30-bar momentum, the year-to-date return, and the volatility of the last 30 daily log returns, annualised
-- by sqrt(252). A window is null until the series holds enough bars; bars are trading days (a holiday is no bar).
{%- set moving_average_bars = [7, 30, 90] %}
{%- set momentum_bars = 30 %}
{%- set volatility_returns = 30 %}
with

bars as (

    select * from {{ ref('fct_daily_bars') }}

),

ordered as (

    select
        symbol,
        trading_date,
        date_key,
        open,
        close,
        lag(close) over (partition by symbol order by trading_date) as previous_close,
        row_number() over (partition by symbol order by trading_date) as bar_number,
        cast(extract(year from trading_date) as integer) as year_number
    from bars

),

with_returns as (

    select
        *,
        close / previous_close - 1 as daily_return,
        ln(close / previous_close) as log_return,
        -- The YTD base: the last close before the year; the year's first open when the series starts within it.
        first_value(coalesce(previous_close, open)) over (
            partition by symbol, year_number order by trading_date
            rows between unbounded preceding and unbounded following
        ) as ytd_base
    from ordered

),

windows as (

    select
        *,
        {%- for bars in moving_average_bars %}
        case when bar_number >= {{ bars }} then avg(close) over (
            partition by symbol order by trading_date rows between {{ bars - 1 }} preceding and current row
        ) end as sma_{{ bars }},
        {%- endfor %}
        close / lag(close, {{ momentum_bars }}) over (partition by symbol order by trading_date) - 1
            as momentum_{{ momentum_bars }}d,
        -- The first bar has no return: {{ volatility_returns }} returns need {{ volatility_returns + 1 }} bars.
        case when bar_number > {{ volatility_returns }} then stddev_samp(log_return) over (
            partition by symbol order by trading_date rows between {{ volatility_returns - 1 }} preceding and current row
        ) * sqrt(252) end as volatility_{{ volatility_returns }}d
    from with_returns

),

final as (

    select
        {{ surrogate_key('daily_analytics', ['symbol', key_text('trading_date', 'date')]) }} as daily_analytics_key,
        symbol,
        trading_date,
        date_key,
        close,
        daily_return,
        log_return,
        {%- for bars in moving_average_bars %}
        sma_{{ bars }},
        {%- endfor %}
        momentum_{{ momentum_bars }}d,
        close / ytd_base - 1 as ytd_return,
        volatility_{{ volatility_returns }}d

    from windows

)

select * from final
