{#- Bars as markets define them. An exchange-listed symbol trades in sessions of the exchange calendar (var
    exchange_calendar, seed exchange_sessions): pre-market before the open, the regular session, after-hours from
    the close (13:00 New York on a half day); on a day without a session (weekend, holiday) its trades are 'closed'.
    Its trading date is the date in the exchange time zone. A symbol that trades around the clock (crypto) has one
    'continuous' session per UTC day, and no holidays. -#}

{#- The calendar a symbol's bars follow: the symbols seed's `calendar`, else by the symbol's form: Finnhub's
    EXCHANGE:PAIR symbols (crypto, e.g. BINANCE:BTCUSDT) are 24/7, a plain ticker follows var exchange_calendar. -#}
{% macro market_calendar(symbol, seeded_calendar) -%}
    coalesce({{ seeded_calendar }}, case when {{ symbol }} like '%:%' then '24/7' else '{{ var("exchange_calendar") }}' end)
{%- endmacro %}


{#- The date a naive UTC time trades on: its UTC date on a 24/7 calendar, its date in the exchange time zone
    otherwise. -#}
{% macro trading_date(calendar, time_utc) -%}
    case
        when {{ calendar }} = '24/7' then cast({{ time_utc }} as date)
        else cast({{ utc_to_local(time_utc, var('exchange_timezone')) }} as date)
    end
{%- endmacro %}


{#- The session of a trade at `time_utc` on its trading date, whose regular session is [open_utc, close_utc) (null
    on a day without one). -#}
{% macro trading_session(calendar, time_utc, open_utc, close_utc) -%}
    case
        when {{ calendar }} = '24/7' then 'continuous'
        when {{ open_utc }} is null then 'closed'
        when {{ time_utc }} < {{ open_utc }} then 'pre'
        when {{ time_utc }} < {{ close_utc }} then 'regular'
        else 'post'
    end
{%- endmacro %}
