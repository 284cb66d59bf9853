-- Daily bars per symbol and trading date as traders read them: for an exchange-listed symbol the regular session
-- only (09:30-16:00 New York, 13:00 on a half day; exchange_sessions), so the open is the first regular-session
-- trade and the close the last one; a 24/7 symbol's bar is its UTC day. These are the regular and continuous rows of
-- fct_session_candles_1d (incremental by what changed in Silver), which keeps pre-market and after-hours beside
-- them; silver_version is theirs. candle_key is the surrogate key of (symbol, trading_date); date_key relates the
-- candle to dim_date.
with

sessions as (

    select * from {{ ref('fct_session_candles_1d') }}

),

final as (

    select
        {{ surrogate_key('candle_1d', ['symbol', key_text('trading_date', 'date')]) }} as candle_key,
        symbol,
        trading_date,
        date_key,
        market_calendar,
        {{ candle_measures() }},
        silver_version

    from sessions
    where session in ('regular', 'continuous')

)

select * from final
