-- Symbols of the latest trading date ranked by % change. The change is vs the previous close where it is known,
-- else vs the day's open (first day of data, or a symbol new today); change_basis says which.
with

kpi as (

    select * from {{ ref('fct_symbol_kpi') }}

),

latest_day as (

    select * from kpi
    where trading_date = (select max(trading_date) from kpi)

),

moves as (

    select
        symbol,
        trading_date,
        date_key,
        last_price,
        case when pct_change is not null then 'previous_close' else 'open' end as change_basis,
        coalesce(pct_change, pct_change_from_open) as move_pct,
        day_volume
    from latest_day

),

final as (

    select
        symbol,
        trading_date,
        date_key,
        last_price,
        change_basis,
        move_pct,
        case when move_pct > 0 then 'up' when move_pct < 0 then 'down' else 'flat' end as direction,
        -- symbol breaks ties so ranks are stable between runs.
        cast(row_number() over (order by abs(move_pct) desc, symbol) as integer) as mover_rank,
        cast(row_number() over (order by move_pct desc, symbol) as integer) as gainer_rank,
        cast(row_number() over (order by move_pct asc, symbol) as integer) as loser_rank,
        day_volume
    from moves

)

select * from final
