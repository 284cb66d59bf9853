-- Each trade with the buckets Gold aggregates on: the UTC minute and hour it falls in (1m/1h candles bucket by
-- UTC instant, so they never shift with daylight saving), and its trading date in the exchange time zone
-- (1d candles, KPIs). New York's UTC offset is a whole number of hours, so a UTC minute or hour bucket lies in
-- exactly one trading date.
with

trades as (

    select * from {{ ref('stg_lake__trades') }}

),

bucketed as (

    select
        event_id,
        symbol,
        price,
        volume,
        trade_ts,
        trade_time_utc,
        {{ dbt.date_trunc('minute', 'trade_time_utc') }} as minute_start_utc,
        {{ dbt.date_trunc('hour', 'trade_time_utc') }} as hour_start_utc,
        cast({{ utc_to_local('trade_time_utc', var('exchange_timezone')) }} as date) as trading_date

    from trades

)

select * from bucketed
