"""conf.identifiers, and each place where a name or a symbol from settings or input meets SQL, a path or a key:
good values pass, hostile ones are refused with the setting named, on one line, before anything runs."""
from __future__ import annotations

import json
from contextlib import contextmanager

import pytest

from conf import identifiers
from conf.identifiers import IdentifierError, is_symbol, lake_uri, qualified_identifier, sql_identifier, symbol

HOSTILE_NAMES = [
    "gold; drop table x",
    'a"b',
    "a'b",
    "a`b",
    "x" * 300,
    "../etc",
    "gold--",
    "gold\n",
    "go ld",
    "a.b",
    "1gold",
    "$gold",
    "ѕilver",          # Cyrillic dze, looks like s
    "silvеr",          # Cyrillic ie, looks like e
    "ｇold",           # fullwidth g
    "gold\u200b",      # zero-width space
    "café",
    "gold٣",           # Arabic-Indic digit three
]


def refused(call, setting: str) -> str:
    """The IdentifierError message of call(): one line, starting with the setting's name."""
    with pytest.raises(IdentifierError) as caught:
        call()
    message = str(caught.value)
    assert message.startswith(f"{setting}: ") and "\n" not in message and len(message) < 300, message
    return message


# ---------------------------------------------------------------------------------------------------- the module

@pytest.mark.parametrize("name", ["silver", "_x1", "Gold$2", "STOCKLAKE_READER", "A" * 255, "a"])
def test_plain_snowflake_identifiers_pass_unchanged(name):
    assert sql_identifier(name, "SNOWFLAKE_SILVER_SCHEMA") == name


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_identifiers_are_refused_naming_the_setting_and_the_value(name):
    message = refused(lambda: sql_identifier(name, "SNOWFLAKE_GOLD_SCHEMA"), "SNOWFLAKE_GOLD_SCHEMA")
    if len(name) > 255:
        assert message == "SNOWFLAKE_GOLD_SCHEMA: longer than 255 characters"
    else:
        assert repr(name) in message and "is not an unquoted Snowflake identifier" in message


@pytest.mark.parametrize("name", [None, ""])
def test_a_missing_identifier_is_required(name):
    assert "required" in refused(lambda: sql_identifier(name, "SNOWFLAKE_WAREHOUSE"), "SNOWFLAKE_WAREHOUSE")


def test_a_non_string_identifier_is_refused():
    refused(lambda: sql_identifier(42, "SNOWFLAKE_ROLE"), "SNOWFLAKE_ROLE")


def test_duckdb_identifiers_take_no_dollar():
    assert sql_identifier("fct_candles_1m", "table", "duckdb") == "fct_candles_1m"
    assert "plain DuckDB identifier" in refused(lambda: sql_identifier("gold$1", "table", "duckdb"), "table")


def test_qualified_identifiers_check_every_part():
    assert qualified_identifier("STOCKLAKE.SILVER.TRADES", "table") == "STOCKLAKE.SILVER.TRADES"
    assert qualified_identifier("GOLD", "table") == "GOLD"
    for bad in ["a.b.c.d", "a..b", ".a", "a.", 'a."b"', "a.b; drop table c", "a.ѕ"]:
        refused(lambda: qualified_identifier(bad, "table"), "table")
    assert "required" in refused(lambda: qualified_identifier("", "table"), "table")


@pytest.mark.parametrize("value", ["AAPL", "BRK.B", "BINANCE:BTCUSDT", "A", "X" * 20, "BF-B"])
def test_tickers_pass(value):
    assert symbol(value) == value and is_symbol(value)


@pytest.mark.parametrize("value", [
    "aapl", "AAPL\n", "AAPL ", "AAPL' or '1'='1", "AAPL;DROP", "../etc", "A/B", "ＡAPL", "АAPL", "X" * 21, "",
    None, 7, "1AAPL", "AAPL\u200b"])
def test_hostile_symbols_are_refused(value):
    message = refused(lambda: symbol(value, "--symbols"), "--symbols")
    assert repr(value)[:40] in message and "is not a ticker" in message
    assert not is_symbol(value)


def test_the_symbol_pattern_is_the_trade_contracts():
    schema = json.loads(identifiers.SCHEMA_FILE.read_text())
    assert f"^{identifiers.SYMBOL.pattern}$" == schema["properties"]["symbol"]["pattern"]


def test_lake_uris():
    assert lake_uri("s3a://lakehouse/bronze/trades") == "s3a://lakehouse/bronze/trades"
    assert lake_uri("s3a://test-1a2b-x/quarantine/quotes") == "s3a://test-1a2b-x/quarantine/quotes"
    for bad in ["s3a://lakehouse/bronze/trades` WHERE true --", "s3a://lakehouse/bronze/trades'", "s3a://Bad_Bucket/x",
                "s3a://lakehouse/../etc", "s3a://lakehouse/./x", "s3a://lakehouse", "file:///etc/passwd",
                "s3a://lakehouse/bronze trades", "s3a://lakehouse/bronze/trades\n", None]:
        refused(lambda: lake_uri(bad, "lake.bucket"), "lake.bucket")


# ------------------------------------------------------------------------------------------------- the call sites

def test_snowflake_setup_refuses_a_bad_schema_before_connecting(monkeypatch, capsys):
    import snowflake.connector

    from scripts import snowflake_setup as sf

    monkeypatch.setattr(snowflake.connector, "connect", lambda **_: pytest.fail("connected with a bad schema name"))
    env = {"SNOWFLAKE_WAREHOUSE": "transform_wh", "SNOWFLAKE_STORAGE_AWS_ROLE_ARN":
           "arn:aws:iam::123456789012:role/stocklake-snowflake", "SNOWFLAKE_ACCOUNT": "acme-prod",
           "SNOWFLAKE_USER": "deployer", "SNOWFLAKE_PASSWORD": "not-a-real-one",  # pragma: allowlist secret
           "SNOWFLAKE_GOLD_SCHEMA": "gold; drop table x"}
    for command in ("apply", "refresh", "render"):
        assert sf.main([command], env) == 2
        out, err = capsys.readouterr()
        assert out == "" and err == ("snowflake_setup: SNOWFLAKE_GOLD_SCHEMA: 'gold; drop table x' is not an "
                                     "unquoted Snowflake identifier (a letter or _, then letters, digits, _ or $)\n")
    for name in ("SNOWFLAKE_DATABASE", "SNOWFLAKE_READER_ROLE", "SNOWFLAKE_STAGE", "SNOWFLAKE_STORAGE_INTEGRATION",
                 "SNOWFLAKE_WAREHOUSE", "SNOWFLAKE_SILVER_SCHEMA"):
        assert sf.main(["apply"], {**env, "SNOWFLAKE_GOLD_SCHEMA": "GOLD", name: 'x"; grant all'}) == 2
        assert capsys.readouterr().err.startswith(f"snowflake_setup: {name}: ")
    with pytest.raises(ValueError):
        sf.quote_ident("STOCKLAKE", 'SILVER"; drop database x; --')


def test_the_dashboards_snowflake_warehouse_refuses_a_bad_schema_before_connecting(monkeypatch):
    import snowflake.connector

    from conf.settings import load_settings
    from dashboard import queries
    from scripts.snowflake_setup import ConfigError

    monkeypatch.setattr(snowflake.connector, "connect", lambda **_: pytest.fail("connected with a bad schema name"))
    env = {"SNOWFLAKE_ACCOUNT": "acme-prod", "SNOWFLAKE_USER": "reader", "SNOWFLAKE_WAREHOUSE": "reporting_wh",
           "SNOWFLAKE_PASSWORD": "not-a-real-one", "SNOWFLAKE_SCHEMA": "gold.x"}  # pragma: allowlist secret
    with pytest.raises(ConfigError, match=r"^SNOWFLAKE_SCHEMA: 'gold\.x' is not an unquoted Snowflake identifier"):
        queries.open_warehouse(load_settings({"STOCKLAKE_WAREHOUSE_TARGET": "snowflake"}), env)


class RecordingReader:
    def __init__(self):
        self.sql: list[str] = []

    def frame(self, sql, params=()):
        self.sql.append(sql)
        raise AssertionError("no SQL may run for a refused value")


class RecordingWarehouse:
    description = "recording"

    def __init__(self):
        self.reader = RecordingReader()
        self.opened = 0

    @contextmanager
    def read(self):
        self.opened += 1
        yield self.reader


@pytest.mark.parametrize("bad", ["AAPL' or '1'='1", "aapl", "AAPL\n", "../etc", "ＡAPL", ""])
def test_the_dashboard_refuses_a_bad_symbol_before_any_sql(bad):
    from dashboard import queries

    reader = RecordingReader()
    for call in (lambda: queries.candles(reader, bad, "1m", 10), lambda: queries.moving_averages(reader, bad, 10),
                 lambda: queries.volatility(reader, bad, 10)):
        with pytest.raises(ValueError, match=r"^symbol: .* is not a ticker"):
            call()
    assert reader.sql == []
    warehouse = RecordingWarehouse()
    with pytest.raises(ValueError, match=r"^symbol: "):
        queries.load_symbol(warehouse, bad, "1m", 10)
    assert (warehouse.opened, warehouse.reader.sql) == (0, [])


def test_the_dashboard_formats_only_checked_table_names():
    from dashboard import queries

    assert set(queries.FORMATTED_TABLES) == {table for table, _ in queries.CANDLE_TABLES.values()} | set(
        queries.MINUTE_TABLES)
    with pytest.raises(ValueError, match="^table: "):
        queries._latest_minutes("fct_volatility; drop table x", 10)


@pytest.mark.parametrize("bad", ["msft", "AAPL;rm -rf", "../etc", "ＡAPL"])
@pytest.mark.parametrize("source", ["simulator", "finnhub-ws", "finnhub-rest"])
def test_the_producer_cli_refuses_bad_symbols_before_they_become_keys(bad, source, capsys):
    from conf.settings import load_settings
    from producer.arguments import parse_args

    extra = ["--rate", "10", "--count", "5"] if source == "simulator" else []
    with pytest.raises(SystemExit) as exited:
        parse_args(["--source", source, *extra, "--symbols", f"AAPL,{bad}"], load_settings({}))
    assert exited.value.code == 2
    assert f"--symbols: invalid symbol {bad!r}" in capsys.readouterr().err


def test_the_simulator_refuses_a_symbol_with_a_trailing_newline():
    from producer.simulator import validate_symbols

    # The contract's pattern ends in $, which re.search lets a trailing newline through; fullmatch does not.
    with pytest.raises(ValueError, match="invalid symbol 'AAPL\\\\n'"):
        validate_symbols(["AAPL\n"])
    assert list(validate_symbols(["AAPL", "BRK.B"])) == ["AAPL", "BRK.B"]


def test_backfill_refuses_bad_symbols_from_the_command_line_and_the_settings(capsys):
    from conf.settings import load_settings
    from spark_jobs import backfill

    with pytest.raises(SystemExit) as exited:
        backfill.parse_args(["--from", "2026-01-05", "--to", "2026-01-09", "--finnhub", "--symbols", "AAPL,a&b=c"])
    assert exited.value.code == 2
    assert "argument --symbols: invalid symbol 'a&b=c'" in capsys.readouterr().err
    args = backfill.parse_args(["--from", "2026-01-05", "--to", "2026-01-09", "--finnhub"])
    assert backfill.symbols_of(load_settings({}), args)  # the defaults are tickers
    settings = load_settings({"STOCKLAKE_FINNHUB_SYMBOLS": "AAPL,x/../y"})
    with pytest.raises(backfill.UsageError, match=r"^finnhub\.symbols: 'x/\.\./y' is not a ticker"):
        backfill.symbols_of(settings, args)


class RecordingSpark:
    def __init__(self):
        self.statements: list[str] = []

    def sql(self, statement, *args, **kwargs):
        self.statements.append(statement)
        raise AssertionError("no SQL may run for a refused value")


@pytest.mark.parametrize("uri, cutoff", [
    ("s3a://lakehouse/bronze/trades` WHERE true --", "2026-01-01"),
    ("s3a://lake`house/bronze/trades", "2026-01-01"),
    ("s3a://lakehouse/bronze/trades", "2026-01-01' OR '1'='1"),
    ("s3a://lakehouse/bronze/trades", "yesterday"),
])
def test_retention_refuses_a_bad_location_or_date_before_any_sql(uri, cutoff):
    from spark_jobs import retention

    spark = RecordingSpark()
    with pytest.raises(ValueError):
        retention.delete_before(spark, uri, cutoff)
    assert spark.statements == []


def test_retention_spells_only_a_parsed_date_and_a_checked_location():
    from spark_jobs import retention

    class Spark:
        def sql(self, statement):
            self.seen = statement
            return self

        def collect(self):
            return []

    spark = Spark()
    assert retention.delete_before(spark, "s3a://lakehouse/bronze/trades", "2024-01-06") == []
    assert spark.seen == "DELETE FROM delta.`s3a://lakehouse/bronze/trades` WHERE date < '2024-01-06'"
    for hostile in ("2024-01-06' OR '1'='1", "2024-1-6", "yesterday"):
        with pytest.raises(ValueError):
            retention.delete_before(spark, "s3a://lakehouse/bronze/trades", hostile)


def test_retention_exits_2_on_a_hostile_bucket_before_starting_spark(monkeypatch, capsys):
    from spark_jobs import retention

    monkeypatch.setenv("STOCKLAKE_LAKE_BUCKET", "lake`; DROP TABLE x; --")
    monkeypatch.setattr("spark_jobs.lib.session.build_spark", lambda *a, **k: pytest.fail("Spark started"))
    assert retention.main(["--days", "800"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "retention: configuration error: lake.bucket (STOCKLAKE_LAKE_BUCKET): 's3a://lake`; DROP TABLE x; --/")


@pytest.mark.parametrize("day, hour", [("2026-01-05\n", "14"), ("٢٠٢٦-٠١-٠٥", "14"), ("2026-01-05", "1٤"),
                                       ("2026-01-05", "14'")])
def test_reconcile_and_maintenance_refuse_partition_values_that_are_not_plain_digits(day, hour):
    from spark_jobs.lib.hours import PartitionStats, hour_start, partition_predicate
    from spark_jobs.reconcile import merge_condition

    with pytest.raises(ValueError, match="unexpected .* partition value"):
        merge_condition([(day, hour)])
    assert hour_start(day, hour) is None
    with pytest.raises(ValueError, match="not an hour partition"):
        partition_predicate(PartitionStats(date=day, hour=hour, files=1, bytes=1, rows=1))
