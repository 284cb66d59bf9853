-- The latest quote snapshot per symbol (Finnhub REST /quote, silver/quotes): the current price, the change vs the
-- previous close and the day's open, high and low as the source reported them, and the day's range. Finnhub's
-- /quote carries no bid or ask, so there is no bid-ask spread to give: the day range (high - low, and as a percent
-- of the current price) is the spread this source has. Enabled, with stg_lake__quotes, by the var
-- lake_quotes_enabled (fct_latest_quotes.yml).
with

quotes as (

    select * from {{ ref('stg_lake__quotes') }}

),

symbols as (

    select * from {{ ref('symbols') }}

),

ranked as (

    -- The newest snapshot by quote time; of two with the same quote time (the source corrected a price), the one
    -- Silver got last, then the greater event id: a total order, so every engine and every build picks the same.
    select
        quotes.*,
        row_number() over (
            partition by quotes.symbol
            order by quotes.quote_ts desc, quotes.ingested_at_utc desc, quotes.event_id desc
        ) as recency
    from quotes

),

latest as (

    select
        ranked.*,
        {{ market_calendar('ranked.symbol', 'symbols.calendar') }} as market_calendar
    from ranked
    left join symbols
        on ranked.symbol = symbols.symbol
    where ranked.recency = 1

),

dated as (

    select
        latest.*,
        {{ trading_date('latest.market_calendar', 'latest.quote_time_utc') }} as trading_date
    from latest

),

final as (

    select
        symbol,
        trading_date,
        {{ date_key('trading_date') }} as date_key,
        market_calendar,
        current_price,
        previous_close,
        price_change,
        percent_change as pct_change,
        day_open,
        day_high,
        day_low,
        day_high - day_low as day_range,
        100 * (day_high - day_low) / nullif(current_price, 0) as day_range_pct,
        quote_time_utc,
        ingested_at_utc,
        source_system,
        event_id as quote_event_id

    from dated

)

select * from final
