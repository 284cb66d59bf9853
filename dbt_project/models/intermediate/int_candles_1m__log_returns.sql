-- Log return of each 1-minute close vs the previous 1-minute close of the same symbol and trading date (the
-- overnight gap is not a minute, so a session's first candle has no return).
with

candles as (

    select * from {{ ref('fct_candles_1m') }}

),

returns as (

    select
        symbol,
        trading_date,
        candle_start,
        close,
        -- ln, not log: log() is base 10 on DuckDB and takes a base on Snowflake; ln is the same on both.
        ln(close / lag(close) over (
            partition by symbol, trading_date order by candle_start
        )) as log_return
    from candles

)

select * from returns
