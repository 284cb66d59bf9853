-- Silver trades, typed and renamed for Gold. Event time is derived from the exchange timestamp in ms (trade_ts),
-- the same instant on every engine; all timestamps here are naive UTC. Prices are 'double' (DuckDB DOUBLE,
-- Snowflake FLOAT: both 64-bit), not dbt.type_float(), which is a 32-bit FLOAT on DuckDB.
with

source as (

    select * from {{ source('lake', 'trades') }}

),

renamed as (

    select
        {{ lake_column('event_id', dbt.type_string()) }} as event_id,
        {{ lake_column('source', dbt.type_string()) }} as source_system,
        {{ lake_column('symbol', dbt.type_string()) }} as symbol,
        {{ lake_column('price', 'double') }} as price,
        {{ lake_column('volume', 'double') }} as volume,
        {{ lake_column('trade_ts', dbt.type_bigint()) }} as trade_ts,
        {{ epoch_ms_to_timestamp(lake_column('trade_ts', dbt.type_bigint())) }} as trade_time_utc,
        {{ lake_column('sequence', dbt.type_bigint()) }} as exchange_sequence,
        -- Trade schema v2's venue (a MIC such as XNAS); null for v1 events, which do not carry it.
        {{ lake_column('exchange', dbt.type_string()) }} as exchange_mic,
        {{ lake_timestamp_column('ingest_time') }} as ingested_at_utc,
        -- Silver's partition column (UTC date of the trade): filters on it prune files.
        {{ lake_column('date', dbt.type_string()) }} as partition_date

    from source

)

select * from renamed
