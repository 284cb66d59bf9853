{#- OHLCV candles of `relation` (rows of int_trades__bucketed) per symbol and `bucket_columns`.
    open/close are the first/last trade by exchange timestamp, ties broken by event_id (deterministic, and
    independent of arrival order: Kafka offsets and ingest times play no part). -#}
{% macro ohlcv_candles(relation, bucket_columns, where=none) %}
    {%- set partition_by = (['symbol'] + bucket_columns) | join(', ') -%}
    ranked as (
        select
            *,
            row_number() over (partition by {{ partition_by }} order by trade_ts asc, event_id asc) as rank_first,
            row_number() over (partition by {{ partition_by }} order by trade_ts desc, event_id desc) as rank_last
        from {{ relation }}
        {%- if where %}
        where {{ where }}
        {%- endif %}
    ),

    candles as (
        select
            {{ partition_by }},
            max(case when rank_first = 1 then price end) as open,
            max(price) as high,
            min(price) as low,
            max(case when rank_last = 1 then price end) as close,
            sum(volume) as volume,
            -- VWAP is undefined (null) when the bucket's volume sums to 0, e.g. only zero-volume prints.
            sum(price * volume) / nullif(sum(volume), 0) as vwap,
            sum(price * volume) as notional,
            count(*) as trade_count,
            min(trade_time_utc) as first_trade_time_utc,
            max(trade_time_utc) as last_trade_time_utc
        from ranked
        group by {{ partition_by }}
    )
{% endmacro %}


{#- The measures of a candle, as ohlcv_candles computes them, in the order every candle table lists them. -#}
{% macro candle_measures() -%}
        open,
        high,
        low,
        close,
        volume,
        vwap,
        notional,
        trade_count,
        first_trade_time_utc,
        last_trade_time_utc
{%- endmacro %}


{#- Incremental candles are rebuilt by what changed in Silver (int_trades__changed_buckets, from the change index
    spark_jobs/silver_changes.py writes). Each candle row carries silver_version, the index version its table was
    built through; a build rebuilds the buckets of the index rows above the table's newest silver_version, whole.

    The version a table was built through: its newest row's silver_version; -1 on a full build (everything). -#}
{% macro built_through_version() -%}
    {%- if is_incremental() -%}
        select coalesce(max(silver_version), -1) as silver_version from {{ this }}
    {%- else -%}
        select cast(-1 as {{ dbt.type_bigint() }}) as silver_version
    {%- endif -%}
{%- endmacro %}


{#- Three CTEs of an incremental candle model: `built` (the version its table was built through), `changed` (the
    (symbol, bucket) keys of the index rows above it; a null symbol means everything) and `rebuilt_trades` (the
    trades of `trades_relation` in those buckets, whole; every trade on a full build). -#}
{% macro changed_bucket_trades(trades_relation, changes_relation, bucket_column) %}
    built as (

        {{ built_through_version() }}

    ),

    changed as (

        select distinct symbol, {{ bucket_column }} as bucket
        from {{ changes_relation }}
        where silver_version > (select silver_version from built)

    ),

    rebuilt_trades as (

        select {{ trades_relation }}.*
        from {{ trades_relation }}
        {% if is_incremental() -%}
        left join changed
            on changed.symbol = {{ trades_relation }}.symbol
            and changed.bucket = {{ trades_relation }}.{{ bucket_column }}
        where changed.symbol is not null
            or exists (select 1 from changed where changed.symbol is null)
        {%- endif %}

    )
{% endmacro %}


{#- The version a build is current with, stamped on every row it writes: the newest index row (-1 when the index is
    still empty; its first run then marks everything changed, so the next build rebuilds all). -#}
{% macro current_silver_version(changes_relation) -%}
    (select coalesce(max(silver_version), -1) from {{ changes_relation }})
{%- endmacro %}


{#- Pre-hook of an incremental candle model: delete the buckets that changed since the table's version before the
    build inserts them again, so a bucket whose every trade left Silver (reprocess) leaves Gold too. delete+insert
    alone would only replace the buckets that still have trades. -#}
{% macro delete_changed_candles(bucket_column, this_column) %}
    {%- if is_incremental() -%}
    delete from {{ this }} as built
    using (
        select distinct symbol, {{ bucket_column }} as bucket
        from {{ ref('int_trades__changed_buckets') }}
        where silver_version > (select coalesce(max(silver_version), -1) from {{ this }})
    ) as changed
    where changed.symbol is null
        or (changed.symbol = built.symbol and changed.bucket = built.{{ this_column }})
    {%- else -%}
    select 1
    {%- endif -%}
{% endmacro %}
