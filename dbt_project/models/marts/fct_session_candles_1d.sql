-- Daily OHLCV per symbol, trading date and session: pre-market, the regular session, after-hours (and 'closed' for
-- trades on a day the exchange has no session; 'continuous' for a 24/7 symbol's UTC day). Its regular and
-- continuous rows are the daily bars (fct_candles_1d); the others are the extended-hours figures. Incremental by
-- what changed in Silver, like fct_candles_1m: a build rebuilds, whole, exactly the trading dates whose trades Silver
-- added or removed since the version the table was built through, every session of them (a pre-hook deletes them
-- first, so a day whose trades all left Silver leaves Gold too).
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['symbol', 'trading_date', 'session'],
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

-- The version the table was built through (-1 on a full build: everything).
built as (

    {{ built_through_version() }}

),

-- The buckets whose trades Silver added or removed since then; a null symbol means everything.
changed as (

    select distinct symbol, trading_date as bucket
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
        and changed.bucket = trades.trading_date
    where changed.symbol is not null
        or exists (select 1 from changed where changed.symbol is null)
    {%- endif %}

),

ranked as (

    select
        *,
        {{ trade_rank_in_candle(['trading_date', 'market_calendar', 'session'], 'asc') }} as rank_first,
        {{ trade_rank_in_candle(['trading_date', 'market_calendar', 'session'], 'desc') }} as rank_last
    from rebuilt_trades

),

candles as (

    select
        symbol, trading_date, market_calendar, session,
        {{ ohlcv_aggregates() }}
    from ranked
    group by symbol, trading_date, market_calendar, session

),

final as (

    select
        {{ surrogate_key('session_candle_1d', ['symbol', key_text('trading_date', 'date'), 'session']) }} as candle_key,
        symbol,
        trading_date,
        {{ date_key('trading_date') }} as date_key,
        market_calendar,
        session,
        {{ candle_measures() }},
        {{ current_silver_version('changes') }} as silver_version

    from candles

)

select * from final
