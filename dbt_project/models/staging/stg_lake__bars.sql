-- Silver daily bars (spark_jobs/backfill.py: Finnhub candles or a file, validated against bar.v1), typed for Gold.
-- One row per (source, symbol, trading date): a bar re-loaded or corrected by its source replaces itself (same
-- event id); Finnhub's and a file's bar of the same day are two rows, told apart by source_system.
with

source as (

    select * from {{ source('lake', 'bars') }}

),

renamed as (

    select
        {{ lake_column('event_id', dbt.type_string()) }} as event_id,
        {{ lake_column('source', dbt.type_string()) }} as source_system,
        {{ lake_column('symbol', dbt.type_string()) }} as symbol,
        cast({{ lake_column('trading_date', dbt.type_string()) }} as date) as trading_date,
        {{ lake_column('open', 'double') }} as open,
        {{ lake_column('high', 'double') }} as high,
        {{ lake_column('low', 'double') }} as low,
        {{ lake_column('close', 'double') }} as close,
        {{ lake_column('volume', 'double') }} as volume,
        {{ lake_timestamp_column('ingest_time') }} as ingested_at_utc

    from source

)

select * from renamed
