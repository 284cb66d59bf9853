-- Silver's change index (spark_jobs/silver_changes.py, Delta's change data feed of silver/trades): one row per
-- (symbol, UTC minute) whose trades an index run saw added or removed, stamped with the Silver version that run
-- indexed through. A row with a null symbol means "everything changed" (no usable feed): a full rebuild.
with

source as (

    select * from {{ source('lake', 'trades_changes') }}

),

renamed as (

    select
        {{ lake_column('silver_version', dbt.type_bigint()) }} as silver_version,
        {{ lake_column('symbol', dbt.type_string()) }} as symbol,
        {{ epoch_ms_to_timestamp(lake_column('minute_ts', dbt.type_bigint())) }} as minute_start_utc,
        {{ lake_column('inserted_rows', dbt.type_bigint()) }} as inserted_rows,
        {{ lake_column('deleted_rows', dbt.type_bigint()) }} as deleted_rows

    from source

)

select * from renamed
