-- dim_date is a fixed spine (vars date_spine_start/end): fail loudly when trades fall outside it, rather than
-- silently losing previous-close lookups.
select candles.trading_date
from {{ ref('fct_candles_1d') }} as candles
left join {{ ref('dim_date') }} as calendar
    on candles.trading_date = calendar.date_day
where calendar.date_day is null
