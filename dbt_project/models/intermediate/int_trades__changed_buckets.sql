-- Each changed (symbol, minute) of the Silver change index with the buckets it lies in at every grain, computed the
-- way int_trades__bucketed computes a trade's: the UTC minute and hour, and the trading date of the symbol's
-- market calendar. A changed minute changes its hour and its trading date (every session of them); a full-rebuild
-- row (null symbol) changes everything.
with

changes as (

    select * from {{ ref('stg_lake__trades_changes') }}

),

symbols as (

    select * from {{ ref('symbols') }}

),

bucketed as (

    select
        changes.silver_version,
        changes.symbol,
        changes.minute_start_utc,
        {{ dbt.date_trunc('hour', 'changes.minute_start_utc') }} as hour_start_utc,
        {{ trading_date(market_calendar('changes.symbol', 'symbols.calendar'), 'changes.minute_start_utc') }}
            as trading_date

    from changes
    left join symbols
        on changes.symbol = symbols.symbol

)

select * from bucketed
