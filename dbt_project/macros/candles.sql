{#- A trade's rank within its candle (symbol and `bucket_columns`), from the first (`order` asc) or the last (desc)
    trade by exchange timestamp, ties broken by event_id: deterministic, and independent of arrival order (Kafka
    offsets and ingest times play no part). -#}
{% macro trade_rank_in_candle(bucket_columns, order) -%}
    row_number() over (
        partition by {{ (['symbol'] + bucket_columns) | join(', ') }}
        order by trade_ts {{ order }}, event_id {{ order }}
    )
{%- endmacro %}


{#- A candle's measures, aggregated over its trades ranked by trade_rank_in_candle (rank_first, rank_last), in the
    order every candle table lists them (candle_measures). -#}
{% macro ohlcv_aggregates() -%}
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
{%- endmacro %}


{#- The measures of a candle, as ohlcv_aggregates computes them, in the order every candle table lists them. -#}
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
