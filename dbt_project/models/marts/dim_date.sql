-- Calendar of days from var date_spine_start to date_spine_end (a test checks it covers every trading date in
-- the candles). Trading days are weekdays: exchange holidays are not modelled yet, so a holiday counts as a
-- trading day without trades.
with

spine as (

    {{ dbt.date_spine(
        'day',
        "cast('" ~ var('date_spine_start') ~ "' as date)",
        "cast('" ~ var('date_spine_end') ~ "' as date)"
    ) }}

),

days as (

    select
        cast(date_day as date) as date_day,
        cast({{ iso_day_of_week('cast(date_day as date)') }} as integer) as iso_day_of_week
    from spine

),

flagged as (

    select
        date_day,
        cast(extract(year from date_day) as integer) as year_number,
        cast(extract(month from date_day) as integer) as month_number,
        cast(extract(day from date_day) as integer) as day_of_month,
        iso_day_of_week,
        iso_day_of_week <= 5 as is_trading_day
    from days

),

final as (

    select
        *,
        -- The most recent trading day strictly before this one: what "previous close" refers to.
        max(case when is_trading_day then date_day end) over (
            order by date_day rows between unbounded preceding and 1 preceding
        ) as previous_trading_date
    from flagged

)

select * from final
