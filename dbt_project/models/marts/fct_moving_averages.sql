{#- EMA in closed form, portable to DuckDB and Snowflake (no recursive CTE: Snowflake caps recursion depth).
    With alpha = 2 / (n + 1), d = 1 - alpha and the session's closes x_0..x_t (EMA_0 = x_0):
        EMA_t = d^t * (x_0 + alpha * sum_{i=1..t} d^(-i) * x_i)
    d^(-i) grows with the session length, so windows below 5 could overflow a double within a 24-hour session;
    they are refused at compile time. -#}
{%- set windows = var('moving_average_windows') -%}
{%- for window in windows -%}
    {%- if window | int < 5 -%}
        {{ exceptions.raise_compiler_error('moving_average_windows: every window must be >= 5, got ' ~ window) }}
    {%- endif -%}
{%- endfor -%}

-- Simple and exponential moving averages of 1-minute closes, one row per symbol, minute and window
-- (var moving_average_windows, in 1-minute candles). Both restart each trading date.
with

candles as (

    select * from {{ ref('fct_candles_1m') }}

),

indexed as (

    select
        symbol,
        trading_date,
        candle_start,
        close,
        row_number() over (partition by symbol, trading_date order by candle_start) - 1 as session_index,
        first_value(close) over (
            partition by symbol, trading_date order by candle_start
            rows between unbounded preceding and current row
        ) as session_first_close
    from candles

),

averaged as (

    {% for window in windows %}
    {%- set decay = 'cast(' ~ ((window - 1) / (window + 1)) ~ ' as ' ~ 'double' ~ ')' -%}
    {%- set alpha = 'cast(' ~ (2 / (window + 1)) ~ ' as ' ~ 'double' ~ ')' -%}
    select
        symbol,
        trading_date,
        candle_start,
        cast({{ window }} as integer) as window_minutes,
        close,
        count(*) over (
            partition by symbol, trading_date order by candle_start
            rows between {{ window - 1 }} preceding and current row
        ) as candle_count,
        avg(close) over (
            partition by symbol, trading_date order by candle_start
            rows between {{ window - 1 }} preceding and current row
        ) as window_average,
        power({{ decay }}, session_index) * (
            session_first_close
            + {{ alpha }} * coalesce(sum(
                case when session_index > 0 then close * power({{ decay }}, -session_index) end
            ) over (
                partition by symbol, trading_date order by candle_start
                rows between unbounded preceding and current row
            ), 0)
        ) as ema
    from indexed
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

final as (

    select
        {{ surrogate_key('moving_average', ['symbol', key_text('candle_start', 'timestamp'), key_text('window_minutes')]) }}
            as moving_average_key,
        symbol,
        trading_date,
        {{ date_key('trading_date') }} as date_key,
        candle_start,
        window_minutes,
        close,
        -- The SMA needs a full window; the EMA is defined from the session's first close.
        case when candle_count = window_minutes then window_average end as sma,
        ema

    from averaged

)

select * from final
