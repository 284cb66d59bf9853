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

-- The version the table was built through (-1 on a full build: everything).
built as (

    {{ built_through_version() }}

),

-- The buckets whose trades Silver added or removed since then; a null symbol means everything.
changed as (

    select distinct symbol, hour_start_utc as bucket
    from changes
    where silver_version > (select silver_version from built)

),

-- Their trades, whole (every trade on a full build).
rebuilt_trades as (

    select trades.*
    from trades
    {% if is_incremental() -%}
    left join changed
        on changed.symbol = trades.symbol
        and changed.bucket = trades.hour_start_utc
    where changed.symbol is not null
        or exists (select 1 from changed where changed.symbol is null)
    {%- endif %}

),

ranked as (

    select
        *,
        {{ trade_rank_in_candle(['hour_start_utc', 'trading_date', 'session'], 'asc') }} as rank_first,
        {{ trade_rank_in_candle(['hour_start_utc', 'trading_date', 'session'], 'desc') }} as rank_last
    from rebuilt_trades

),

candles as (

    select
        symbol, hour_start_utc, trading_date, session,
        {{ ohlcv_aggregates() }}
    from ranked
    group by symbol, hour_start_utc, trading_date, session

),

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
