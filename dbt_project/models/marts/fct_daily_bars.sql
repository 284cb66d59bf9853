-- Every symbol's daily history as one series: the daily bars built from the stream's trades (fct_candles_1d, the
-- regular session) and, for the days the stream did not see, the bars the backfill landed in silver/bars. Where
-- both exist the stream's own trades win; of two backfilled bars of one day (Finnhub and a file) the one loaded last
-- wins. bar_source says which: trades or backfill.
with

candles as (

    select * from {{ ref('fct_candles_1d') }}

),

bars as (

    select * from {{ ref('stg_lake__bars') }}

),

latest_bars as (

    select
        *,
        row_number() over (
            partition by symbol, trading_date order by ingested_at_utc desc, source_system desc
        ) as recency
    from bars

),

backfilled as (

    select latest_bars.*
    from latest_bars
    left join candles
        on latest_bars.symbol = candles.symbol
        and latest_bars.trading_date = candles.trading_date
    where latest_bars.recency = 1
        and candles.symbol is null

),

combined as (

    select symbol, trading_date, open, high, low, close, volume, vwap, trade_count, 'trades' as bar_source
    from candles
    union all
    select symbol, trading_date, open, high, low, close, volume, null, null, 'backfill'
    from backfilled

),

final as (

    select
        {{ surrogate_key('daily_bar', ['symbol', key_text('trading_date', 'date')]) }} as daily_bar_key,
        symbol,
        trading_date,
        {{ date_key('trading_date') }} as date_key,
        open,
        high,
        low,
        close,
        volume,
        cast(vwap as double) as vwap,
        cast(trade_count as {{ dbt.type_bigint() }}) as trade_count,
        bar_source

    from combined

)

select * from final
