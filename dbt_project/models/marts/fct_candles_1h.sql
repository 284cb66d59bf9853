-- 1 hour OHLCV candles per symbol, UTC hour and session: an hour the session opens or closes in (14:00 UTC in
-- winter holds pre-market and the 09:30 open) has a row per session, so extended hours never mix into regular
-- bars. Incremental by what changed in Silver: a build rebuilds, whole, exactly the hours whose trades Silver added
-- or removed since the version the table was built through (int_trades__changed_buckets), whatever wrote them (the
-- stream, reconcile, reprocess) and however old; a pre-hook deletes those hours first, so one whose trades all left
-- Silver leaves Gold too.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['symbol', 'candle_start', 'session'],
        on_schema_change='fail',
        pre_hook="{{ delete_changed_candles('hour_start_utc', 'candle_start') }}"
    )
}}

with

trades as (

    select * from {{ ref('int_trades__bucketed') }}

),

changes as (

    select * from {{ ref('int_trades__changed_buckets') }}

),

{{ changed_bucket_trades('trades', 'changes', 'hour_start_utc') }},

{{ ohlcv_candles('rebuilt_trades', ['hour_start_utc', 'trading_date', 'session']) }},

final as (

    select
        {{ surrogate_key('candle_1h', ['symbol', key_text('hour_start_utc', 'timestamp'), 'session']) }} as candle_key,
        symbol,
        hour_start_utc as candle_start,
        {{ dbt.dateadd('hour', 1, 'hour_start_utc') }} as candle_end,
        trading_date,
        {{ date_key('trading_date') }} as date_key,
        session,
        {{ candle_measures() }},
        {{ current_silver_version('changes') }} as silver_version

    from candles

)

select * from final
