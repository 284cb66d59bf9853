-- fct_moving_averages computes the EMA in closed form (portable window SQL). Check it against the textbook
-- recursion EMA_t = alpha * close_t + (1 - alpha) * EMA_t-1 on each session's first 60 candles (Snowflake caps a
-- recursive CTE at 100 iterations by default), to a relative tolerance of 1e-9.
with recursive

averages as (

    select
        symbol,
        trading_date,
        window_minutes,
        candle_start,
        close,
        ema,
        row_number() over (
            partition by symbol, trading_date, window_minutes order by candle_start
        ) - 1 as session_index
    from {{ ref('fct_moving_averages') }}

),

recursive_ema (symbol, trading_date, window_minutes, session_index, expected_ema) as (

    select symbol, trading_date, window_minutes, session_index, close
    from averages
    where session_index = 0

    union all

    select
        averages.symbol,
        averages.trading_date,
        averages.window_minutes,
        averages.session_index,
        cast(2 as double) / (averages.window_minutes + 1) * averages.close
            + (1 - cast(2 as double) / (averages.window_minutes + 1)) * recursive_ema.expected_ema
    from recursive_ema
    inner join averages
        on averages.symbol = recursive_ema.symbol
        and averages.trading_date = recursive_ema.trading_date
        and averages.window_minutes = recursive_ema.window_minutes
        and averages.session_index = recursive_ema.session_index + 1
    where averages.session_index < 60

)

select
    averages.symbol,
    averages.candle_start,
    averages.window_minutes,
    averages.ema,
    recursive_ema.expected_ema
from averages
inner join recursive_ema
    on averages.symbol = recursive_ema.symbol
    and averages.trading_date = recursive_ema.trading_date
    and averages.window_minutes = recursive_ema.window_minutes
    and averages.session_index = recursive_ema.session_index
where abs(averages.ema - recursive_ema.expected_ema) > 1e-9 * averages.close
