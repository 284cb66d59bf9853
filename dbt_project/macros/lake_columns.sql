{#- Reading a Silver column. On DuckDB the delta plugin exposes the Delta table's columns as they are; a Snowflake
    external table over Delta exposes one VARIANT column, VALUE, keyed by the Parquet column names (lower case,
    so the key is quoted to match exactly). -#}
{% macro lake_column(name, data_type) -%}
    {{ return(adapter.dispatch('lake_column', 'stocklake')(name, data_type)) }}
{%- endmacro %}

{% macro default__lake_column(name, data_type) -%}
    cast({{ adapter.quote(name) }} as {{ data_type }})
{%- endmacro %}

{% macro snowflake__lake_column(name, data_type) -%}
    cast(value:"{{ name }}" as {{ data_type }})
{%- endmacro %}


{#- A Silver timestamp column (stored as UTC instants) as a naive UTC timestamp. -#}
{% macro lake_timestamp_column(name) -%}
    {{ return(adapter.dispatch('lake_timestamp_column', 'stocklake')(name)) }}
{%- endmacro %}

{% macro default__lake_timestamp_column(name) -%}
    {#- DuckDB reads Delta timestamps as TIMESTAMPTZ; timezone('UTC', tstz) gives the naive UTC wall time. -#}
    timezone('UTC', {{ adapter.quote(name) }})
{%- endmacro %}

{% macro snowflake__lake_timestamp_column(name) -%}
    convert_timezone('UTC', cast(value:"{{ name }}" as timestamp_tz))::timestamp_ntz
{%- endmacro %}
