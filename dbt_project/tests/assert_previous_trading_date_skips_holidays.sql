-- Thanksgiving week 2026 on the NYSE: Thursday 26 is a holiday, so Friday's previous trading day is Wednesday,
-- and the Monday after a weekend points back to Friday. Rows returned are failures.
with expected (date_day, is_trading_day, previous_trading_date) as (
    values
        (cast('2026-11-25' as date), true, cast('2026-11-24' as date)),
        (cast('2026-11-26' as date), false, cast('2026-11-25' as date)),
        (cast('2026-11-27' as date), true, cast('2026-11-25' as date)),
        (cast('2026-11-30' as date), true, cast('2026-11-27' as date))
)

select expected.*
from expected
left join {{ ref('dim_date') }} as dim_date
    on dim_date.date_day = expected.date_day
where dim_date.date_day is null
    or dim_date.is_trading_day != expected.is_trading_day
    or dim_date.previous_trading_date != expected.previous_trading_date
