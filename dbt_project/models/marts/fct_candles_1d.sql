-- Daily OHLCV candles per symbol and trading date in the exchange time zone (var exchange_timezone), not per
-- UTC day: a New York session never straddles two rows. Incremental by what changed in Silver, like
-- fct_candles_1m: a build rebuilds, whole, exactly the trading dates whose trades Silver added or removed since
-- the version the table was built through (a pre-hook deletes them first). candle_key is the surrogate key of
-- (symbol, trading_date); date_key relates the candle to dim_date.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['symbol', 'trading_date'],
        on_schema_change='fail',
        pre_hook="{{ delete_changed_candles('trading_date', 'trading_date') }}"
    )
}}

with

trades as (

    select * from {{ ref('int_trades__bucketed') }}

),

changes as (

    select * from {{ ref('int_trades__changed_buckets') }}

),

{{ changed_bucket_trades('trades', 'changes', 'trading_date') }},

{{ ohlcv_candles('rebuilt_trades', ['trading_date']) }},

final as (

    select
        {{ surrogate_key('candle_1d', ['symbol', key_text('trading_date', 'date')]) }} as candle_key,
        symbol,
        trading_date,
        {{ date_key('trading_date') }} as date_key,
        {{ candle_measures() }},
        {{ current_silver_version('changes') }} as silver_version

    from candles

)

select * from final
