{#- dbt-duckdb's delta plugin exposes a Silver table as a view over a pyarrow dataset registered in the running
    process, (re)created whenever a node's SQL references the source. A later run that selects only downstream
    nodes (`dbt test --select test_type:unit`, `dbt run --select fct_candles_1m`) never references it, and the
    staging views would point at a dataset from a previous process. Referencing every lake source at the start of
    each run re-registers them (reading only the Delta log). Seeds alone never need the lake, and `docs generate`
    compiles the staging models itself: re-registering there too races with that compile ("Catalog write-write
    conflict" on the view). -#}
{% macro load_lake_sources() %}
    {%- if execute and target.type == 'duckdb' and flags.WHICH not in ['seed', 'generate'] -%}
        {%- for node in graph.sources.values() if node.package_name == project_name -%}
            {%- do source(node.source_name, node.name) -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{% endmacro %}
