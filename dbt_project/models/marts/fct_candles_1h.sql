-- 1 hour OHLCV candles per symbol, bucketed by UTC instant. Incremental: each run rebuilds the buckets that start
-- within var candles_lookback_minutes of the newest one built, and delete+insert replaces them on
-- (symbol, candle_start), so late rows that reached Silver are merged into their candle.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['symbol', 'candle_start'],
        on_schema_change='fail'
    )
}}

{{ utc_candles('hour_start_utc', 'hour', 'candle_1h') }}
