{#- Event time comes from the exchange timestamp in epoch milliseconds (trade_ts, quote_ts): exact, and the same
    number on every engine, unlike a timestamp type whose zone handling differs. -#}
{% macro epoch_ms_to_timestamp(expr) -%}
    {{ return(adapter.dispatch('epoch_ms_to_timestamp', 'stocklake')(expr)) }}
{%- endmacro %}

{% macro default__epoch_ms_to_timestamp(expr) -%}
    epoch_ms(cast({{ expr }} as bigint))
{%- endmacro %}

{% macro snowflake__epoch_ms_to_timestamp(expr) -%}
    to_timestamp_ntz(cast({{ expr }} as bigint), 3)
{%- endmacro %}


{#- Naive UTC timestamp -> naive wall-clock time in the given IANA zone (for trading dates). -#}
{% macro utc_to_local(expr, tz) -%}
    {{ return(adapter.dispatch('utc_to_local', 'stocklake')(expr, tz)) }}
{%- endmacro %}

{% macro default__utc_to_local(expr, tz) -%}
    {#- inner timezone(): naive UTC -> instant; outer: instant -> wall time in tz (DuckDB's built-in icu). -#}
    timezone('{{ tz }}', timezone('UTC', {{ expr }}))
{%- endmacro %}

{% macro snowflake__utc_to_local(expr, tz) -%}
    convert_timezone('UTC', '{{ tz }}', {{ expr }})
{%- endmacro %}


{#- ISO day of week of a date: 1 = Monday ... 7 = Sunday. -#}
{% macro iso_day_of_week(expr) -%}
    {{ return(adapter.dispatch('iso_day_of_week', 'stocklake')(expr)) }}
{%- endmacro %}

{% macro default__iso_day_of_week(expr) -%}
    extract(isodow from {{ expr }})
{%- endmacro %}

{% macro snowflake__iso_day_of_week(expr) -%}
    extract(dayofweekiso from {{ expr }})
{%- endmacro %}
