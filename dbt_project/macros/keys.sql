{#- Keys for BI tools (Power BI relates facts to dimensions on them; see docs/powerbi.md).

    A surrogate key is md5 over a canonical text of the row's natural key: `label|part|part...`. md5 is the
    same function on DuckDB and Snowflake (lower-case hex, 32 characters), so a key depends only on the natural
    key, never on the engine or on when the row was built: an incremental rebuild or a full refresh gives the same
    key. Only turning values into text differs between the engines (the default text of a timestamp depends on
    Snowflake session parameters), so key_text() is dispatched. -#}
{% macro surrogate_key(label, parts) -%}
    md5('{{ label }}'{% for part in parts %} || '|' || {{ part }}{% endfor %})
{%- endmacro %}


{#- The canonical text of a natural-key value: timestamps 'YYYY-MM-DD HH:MM:SS' (second precision: keys are on
    minute, hour or day buckets), dates 'YYYY-MM-DD', anything else its plain cast (text, integers). -#}
{% macro key_text(expr, data_type='varchar') -%}
    {{ return(adapter.dispatch('key_text', 'stocklake')(expr, data_type)) }}
{%- endmacro %}

{% macro default__key_text(expr, data_type) -%}
    {%- if data_type == 'timestamp' -%}
        strftime({{ expr }}, '%Y-%m-%d %H:%M:%S')
    {%- elif data_type == 'date' -%}
        strftime({{ expr }}, '%Y-%m-%d')
    {%- else -%}
        cast({{ expr }} as varchar)
    {%- endif -%}
{%- endmacro %}

{% macro snowflake__key_text(expr, data_type) -%}
    {%- if data_type == 'timestamp' -%}
        to_char({{ expr }}, 'YYYY-MM-DD HH24:MI:SS')
    {%- elif data_type == 'date' -%}
        to_char({{ expr }}, 'YYYY-MM-DD')
    {%- else -%}
        cast({{ expr }} as varchar)
    {%- endif -%}
{%- endmacro %}


{#- The date dimension's key, an integer YYYYMMDD, of a date (a fact's trading date in the exchange time zone).
    Plain arithmetic on extract(): the same SQL and the same number on both engines. -#}
{% macro date_key(expr) -%}
    cast(extract(year from {{ expr }}) * 10000 + extract(month from {{ expr }}) * 100 + extract(day from {{ expr }}) as integer)
{%- endmacro %}
