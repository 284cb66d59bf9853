-- Rolling volatility of 1-minute log returns, one row per symbol, minute and window (var volatility_windows, in
-- 1-minute returns). Returns are taken within a trading date only, so the overnight gap is not a "minute".
-- Annualised by sqrt(var annualization_periods_per_year), default 252 days * 390 regular-session minutes.
with

returns as (

    select * from {{ ref('int_candles_1m__log_returns') }}

),

windowed as (

    {% for window in var('volatility_windows') %}
    select
        symbol,
        trading_date,
        candle_start,
        cast({{ window }} as integer) as window_minutes,
        close,
        log_return,
        count(log_return) over (
            partition by symbol, trading_date order by candle_start
            rows between {{ window - 1 }} preceding and current row
        ) as return_count,
        stddev_samp(log_return) over (
            partition by symbol, trading_date order by candle_start
            rows between {{ window - 1 }} preceding and current row
        ) as window_stddev
    from returns
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

final as (

    select
        {{ surrogate_key('volatility', ['symbol', key_text('candle_start', 'timestamp'), key_text('window_minutes')]) }}
            as volatility_key,
        symbol,
        trading_date,
        {{ date_key('trading_date') }} as date_key,
        candle_start,
        window_minutes,
        close,
        log_return,
        return_count,
        -- Null until the window holds its full number of returns: a 2-return "30-minute" volatility misleads.
        case when return_count = window_minutes then window_stddev end as rolling_stddev,
        case when return_count = window_minutes
            then window_stddev * sqrt({{ var('annualization_periods_per_year') }})
        end as annualized_volatility

    from windowed

)

select * from final
