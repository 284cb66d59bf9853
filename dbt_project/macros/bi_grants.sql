{#- Power BI reads Gold on Snowflake with its own role, SNOWFLAKE_BI_ROLE (docs/powerbi.md): SELECT on the marts
    only, granted by dbt's `grants` config on models/marts (dbt_project.yml) after every build, because a rebuilt
    table loses its grants. This on-run-start check stops a run before any grant when the name is not a plain
    Snowflake identifier (the same rule as scripts/snowflake_setup.py), since it is emitted into GRANT unquoted. -#}
{% macro check_bi_role() %}
    {%- set role = env_var('SNOWFLAKE_BI_ROLE', '') -%}
    {%- if execute and target.type == 'snowflake' and role
            and not modules.re.fullmatch('[A-Za-z_][A-Za-z0-9_$]{0,254}', role) -%}
        {{ exceptions.raise_compiler_error(
            "SNOWFLAKE_BI_ROLE: '" ~ role ~ "' is not an unquoted Snowflake identifier") }}
    {%- endif -%}
    select 1
{% endmacro %}
