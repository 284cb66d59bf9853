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


{#- Incremental filter for a candle model: rebuild every bucket that starts within the look-back of the newest
    bucket already built, so late rows that reached Silver are merged into their (whole) buckets. Filtering on
    the bucket column itself keeps every rebuilt bucket complete. `this_column` is the bucket's name in the built
    table ({{ this }}), which may differ from the trade-level column. -#}
{% macro candles_lookback_filter(bucket_column, this_column, datepart, lookback, data_type='timestamp') -%}
    {%- if is_incremental() -%}
        {#- An empty existing table (max is null) rebuilds everything. -#}
        {{ bucket_column }} >= coalesce(
            (select {{ dbt.dateadd(datepart, -1 * (lookback | int), 'max(' ~ this_column ~ ')') }} from {{ this }}),
            cast('1900-01-01' as {{ data_type }})
        )
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}


{#- The body of an intraday candle model (fct_candles_1m, fct_candles_1h): candles of int_trades__bucketed per
    symbol and UTC `datepart` bucket (`bucket_column`), rebuilt within the look-back when incremental. candle_key
    is the surrogate key of (symbol, candle_start) under `key_label`; date_key relates the candle to dim_date by its
    trading date in the exchange time zone (a UTC bucket lies in exactly one, see int_trades__bucketed). -#}
{% macro utc_candles(bucket_column, datepart, key_label) %}
with

trades as (

    select * from {{ ref('int_trades__bucketed') }}

),

{{ ohlcv_candles(
    'trades',
    [bucket_column, 'trading_date'],
    where=candles_lookback_filter(bucket_column, 'candle_start', 'minute', var('candles_lookback_minutes'))
) }},

final as (

    select
        {{ surrogate_key(key_label, ['symbol', key_text(bucket_column, 'timestamp')]) }} as candle_key,
        symbol,
        {{ bucket_column }} as candle_start,
        {{ dbt.dateadd(datepart, 1, bucket_column) }} as candle_end,
        trading_date,
        {{ date_key('trading_date') }} as date_key,
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

    from candles

)

select * from final
{% endmacro %}
