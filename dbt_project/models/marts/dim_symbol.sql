-- One row per symbol: the reference seed, plus any symbol that traded (or was quoted) but is missing from the seed
-- (so the treemap never drops a symbol; its sector shows as Unknown until the seed is updated).
with

reference as (

    select * from {{ ref('symbols') }}

),

traded as (

    -- Every symbol with a trade in any session, a backfilled daily bar, or, where Gold reads quotes, a quote.
    select symbol from {{ ref('fct_session_candles_1d') }}
    union
    select symbol from {{ ref('fct_daily_bars') }}
    {%- if var('lake_quotes_enabled') %}
    union
    select symbol from {{ ref('fct_latest_quotes') }}
    {%- endif %}

),

final as (

    select
        coalesce(reference.symbol, traded.symbol) as symbol,
        coalesce(reference.company, traded.symbol) as company,
        coalesce(reference.sector, 'Unknown') as sector,
        coalesce(reference.industry, 'Unknown') as industry,
        reference.symbol is not null as is_in_reference

    from reference
    full outer join traded
        on reference.symbol = traded.symbol

)

select * from final
