-- Daily OHLCV candles per symbol and trading date in the exchange time zone (var exchange_timezone), not per
-- UTC day: a New York session never straddles two rows. Incremental: each run rebuilds the trading dates within
-- var candles_lookback_days of the newest one built (delete+insert on symbol, trading_date). candle_key is the
-- surrogate key of (symbol, trading_date); date_key relates the candle to dim_date.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['symbol', 'trading_date'],
        on_schema_change='fail'
    )
}}

with

trades as (

    select * from {{ ref('int_trades__bucketed') }}

),

{{ ohlcv_candles(
    'trades',
    ['trading_date'],
    where=candles_lookback_filter('trading_date', 'trading_date', 'day', var('candles_lookback_days'), data_type='date')
) }},

final as (

    select
        {{ surrogate_key('candle_1d', ['symbol', key_text('trading_date', 'date')]) }} as candle_key,
        symbol,
        trading_date,
        {{ date_key('trading_date') }} as date_key,
        open,
        high,
        low,
        close,
        volume,
        vwap,
        notional,
        trade_count,
        first_trade_time_utc,
        last_trade_time_utc

    from candles

)

select * from final
