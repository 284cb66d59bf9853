-- The correlation of daily log returns between every two symbols (fct_daily_analytics), over the trading days of
-- the latest var correlation_days days that have a return for both: one row per pair (symbol < other_symbol), with
-- the days it rests on. Null when fewer than two such days.
with

returns as (

    select * from {{ ref('fct_daily_analytics') }}
    where log_return is not null

),

recent_days as (

    select distinct trading_date
    from returns
    order by trading_date desc
    limit {{ var('correlation_days') }}

),

paired as (

    select
        first_symbol.symbol,
        second_symbol.symbol as other_symbol,
        first_symbol.trading_date,
        first_symbol.log_return,
        second_symbol.log_return as other_log_return
    from returns as first_symbol
    inner join returns as second_symbol
        on first_symbol.trading_date = second_symbol.trading_date
        and first_symbol.symbol < second_symbol.symbol
    inner join recent_days
        on first_symbol.trading_date = recent_days.trading_date

),

final as (

    select
        symbol,
        other_symbol,
        count(*) as days,
        min(trading_date) as first_trading_date,
        max(trading_date) as last_trading_date,
        case when count(*) >= 2 then corr(log_return, other_log_return) end as correlation

    from paired
    group by symbol, other_symbol

)

select * from final
