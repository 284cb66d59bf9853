-- Headline numbers per symbol for its latest trading date, from its daily bar (the regular session; a 24/7
-- symbol's UTC day): last price (the regular close), change vs the previous trading date's regular close (null
-- when that close is unknown), day range, volume, last trade time.
with

daily as (

    select * from {{ ref('fct_candles_1d') }}

),

history as (

    -- The daily series with the backfilled bars: the first streamed day has a previous close too.
    select * from {{ ref('fct_daily_bars') }}

),

calendar as (

    select * from {{ ref('dim_date') }}

),

latest as (

    select
        daily.*,
        row_number() over (partition by symbol order by trading_date desc) as recency
    from daily

),

previous_close as (

    -- Only the previous *trading date* counts (the exchange's previous session, so a holiday is skipped; the day
    -- before for a 24/7 symbol): a candle from an older date (data gap) is not a previous close.
    select
        latest.symbol,
        prior_day.close as previous_close
    from latest
    inner join calendar
        on latest.trading_date = calendar.date_day
    inner join history as prior_day
        on prior_day.symbol = latest.symbol
        and prior_day.trading_date = case
            when latest.market_calendar = '24/7' then cast({{ dbt.dateadd('day', -1, 'latest.trading_date') }} as date)
            else calendar.previous_trading_date
        end
    where latest.recency = 1

),

final as (

    select
        latest.symbol,
        latest.trading_date,
        {{ date_key('latest.trading_date') }} as date_key,
        latest.market_calendar,
        latest.close as last_price,
        previous_close.previous_close,
        latest.close - previous_close.previous_close as price_change,
        100 * (latest.close - previous_close.previous_close)
            / nullif(previous_close.previous_close, 0) as pct_change,
        latest.open as day_open,
        latest.high as day_high,
        latest.low as day_low,
        100 * (latest.close - latest.open) / nullif(latest.open, 0) as pct_change_from_open,
        latest.volume as day_volume,
        latest.vwap as day_vwap,
        latest.notional as day_notional,
        latest.trade_count as day_trade_count,
        latest.last_trade_time_utc

    from latest
    left join previous_close
        on latest.symbol = previous_close.symbol
    where latest.recency = 1

)

select * from final
