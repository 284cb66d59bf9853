-- Calendar of days from var date_spine_start to date_spine_end (a test checks it covers every trading date in
-- the candles). Trading days are the weekdays that are not exchange holidays (seed exchange_holidays, generated
-- from the exchange_calendars library by scripts/make_exchange_calendar.py), so "previous trading day" skips them;
-- each trading day carries its regular session in UTC and the half-day flag (seed exchange_sessions, same source).
with

holidays as (

    select * from {{ ref('exchange_holidays') }}

),

sessions as (

    select * from {{ ref('exchange_sessions') }}
    where exchange = '{{ var("exchange_calendar") }}'

),

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
        -- Integer YYYYMMDD: the key facts relate to (their date_key, from the trading date).
        {{ date_key('days.date_day') }} as date_key,
        days.date_day,
        cast(extract(year from days.date_day) as integer) as year_number,
        cast(extract(month from days.date_day) as integer) as month_number,
        cast(extract(day from days.date_day) as integer) as day_of_month,
        days.iso_day_of_week,
        holidays.holiday_name,
        days.iso_day_of_week <= 5 and holidays.holiday_date is null as is_trading_day,
        coalesce(sessions.is_half_day, false) as is_half_day,
        sessions.open_utc as session_open_utc,
        sessions.close_utc as session_close_utc
    from days
    left join holidays
        on days.date_day = holidays.holiday_date
        and holidays.exchange = '{{ var("exchange_calendar") }}'
    left join sessions
        on days.date_day = sessions.session_date

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
