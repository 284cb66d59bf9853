-- Each changed (symbol, minute) of the Silver change index with the buckets it lies in at every grain, computed the
-- way int_trades__bucketed computes a trade's: the UTC minute and hour, and the trading date in the exchange time
-- zone. A changed minute changes its hour and its trading date; a full-rebuild row (null symbol) changes everything.
with

changes as (

    select * from {{ ref('stg_lake__trades_changes') }}

),

bucketed as (

    select
        silver_version,
        symbol,
        minute_start_utc,
        {{ dbt.date_trunc('hour', 'minute_start_utc') }} as hour_start_utc,
        cast({{ utc_to_local('minute_start_utc', var('exchange_timezone')) }} as date) as trading_date

    from changes

)

select * from bucketed
