-- Silver quote snapshots (Finnhub REST /quote), typed for Gold. Optional: enabled by the var lake_quotes_enabled
-- (stg_lake__quotes.yml).
with

source as (

    select * from {{ source('lake', 'quotes') }}

),

renamed as (

    select
        {{ lake_column('event_id', dbt.type_string()) }} as event_id,
        {{ lake_column('source', dbt.type_string()) }} as source_system,
        {{ lake_column('symbol', dbt.type_string()) }} as symbol,
        {{ lake_column('current', 'double') }} as current_price,
        {{ lake_column('change', 'double') }} as price_change,
        {{ lake_column('percent_change', 'double') }} as percent_change,
        {{ lake_column('high', 'double') }} as day_high,
        {{ lake_column('low', 'double') }} as day_low,
        {{ lake_column('open', 'double') }} as day_open,
        {{ lake_column('previous_close', 'double') }} as previous_close,
        {{ lake_column('quote_ts', dbt.type_bigint()) }} as quote_ts,
        {{ epoch_ms_to_timestamp(lake_column('quote_ts', dbt.type_bigint())) }} as quote_time_utc,
        {{ lake_timestamp_column('ingest_time') }} as ingested_at_utc

    from source

)

select * from renamed
