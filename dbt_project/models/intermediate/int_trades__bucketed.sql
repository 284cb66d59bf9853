-- Each trade with the buckets Gold aggregates on: the UTC minute and hour it falls in (1m/1h candles bucket by
-- UTC instant, so they never shift with daylight saving), its market calendar, its trading date (the date in the
-- exchange time zone; the UTC date for a 24/7 symbol) and its session on that date (pre, regular, post, closed, or
-- continuous; macros/sessions.sql). New York's UTC offset is a whole number of hours, so a UTC minute or hour lies
-- in exactly one trading date, and sessions start and end on whole minutes.
with

trades as (

    select * from {{ ref('stg_lake__trades') }}

),

symbols as (

    select * from {{ ref('symbols') }}

),

sessions as (

    select * from {{ ref('exchange_sessions') }}
    where exchange = '{{ var("exchange_calendar") }}'

),

dated as (

    select
        trades.event_id,
        trades.symbol,
        trades.price,
        trades.volume,
        trades.trade_ts,
        trades.trade_time_utc,
        {{ market_calendar('trades.symbol', 'symbols.calendar') }} as market_calendar
    from trades
    left join symbols
        on trades.symbol = symbols.symbol

),

bucketed as (

    select
        dated.event_id,
        dated.symbol,
        dated.price,
        dated.volume,
        dated.trade_ts,
        dated.trade_time_utc,
        {{ dbt.date_trunc('minute', 'dated.trade_time_utc') }} as minute_start_utc,
        {{ dbt.date_trunc('hour', 'dated.trade_time_utc') }} as hour_start_utc,
        dated.market_calendar,
        {{ trading_date('dated.market_calendar', 'dated.trade_time_utc') }} as trading_date,
        {{ trading_session('dated.market_calendar', 'dated.trade_time_utc', 'sessions.open_utc',
                           'sessions.close_utc') }} as session

    from dated
    left join sessions
        on dated.market_calendar = sessions.exchange
        and sessions.session_date = {{ trading_date('dated.market_calendar', 'dated.trade_time_utc') }}

)

select * from bucketed
