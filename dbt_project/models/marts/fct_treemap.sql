-- Treemap-ready rows: sector > industry > symbol, sized by the day's traded value (notional) and coloured by
-- % change (vs previous close where known, else vs open, as in fct_top_movers).
with

kpi as (

    select * from {{ ref('fct_symbol_kpi') }}

),

symbols as (

    select * from {{ ref('dim_symbol') }}

),

final as (

    select
        kpi.symbol,
        symbols.company,
        symbols.sector,
        symbols.industry,
        kpi.trading_date,
        kpi.date_key,
        kpi.last_price,
        case when kpi.pct_change is not null then 'previous_close' else 'open' end as change_basis,
        coalesce(kpi.pct_change, kpi.pct_change_from_open) as move_pct,
        kpi.day_volume,
        kpi.day_notional

    from kpi
    inner join symbols
        on kpi.symbol = symbols.symbol

)

select * from final
