"""scripts/snowflake_setup.py: rendered SQL, validation, secrets, the CLI, and a run against fakesnow.

No Snowflake is reachable from here, so the SQL is checked two ways:
- every statement's exact text is asserted for a known configuration (test_render_*), which is what Snowflake
  would receive;
- the statements fakesnow (a Snowflake stand-in on DuckDB) implements are executed through apply() and their
  effect is checked: CREATE DATABASE, CREATE SCHEMA (Silver, Gold) and CREATE STAGE.
fakesnow 0.12.1 does not implement CREATE STORAGE INTEGRATION, CREATE EXTERNAL TABLE, ALTER EXTERNAL TABLE ...
REFRESH, CREATE ROLE or GRANT: it fails to parse them. test_fakesnow_rejects_what_it_does_not_implement pins that
list (so the test notices when fakesnow learns one of them), and the apply run treats exactly those as no-ops
(fakesnow's nop_regexes); their text is covered by the exact assertions only.
"""
from __future__ import annotations

import logging
import json
import os
import re

import fakesnow
import pytest
import snowflake.connector
import snowflake.connector.errors
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scripts import snowflake_setup as sf

PASSWORD = "pw-Very$ecret'1\"x"
PASSPHRASE = "key-passphrase-s3cr3t"
ARN = "arn:aws:iam::123456789012:role/stocklake-snowflake"
BASE_ENV = {
    "SNOWFLAKE_WAREHOUSE": "transform_wh",
    "SNOWFLAKE_STORAGE_AWS_ROLE_ARN": ARN,
}
CONNECTION_ENV = {
    "SNOWFLAKE_ACCOUNT": "acme-prod",
    "SNOWFLAKE_USER": "stocklake_deployer",
    "SNOWFLAKE_PASSWORD": PASSWORD,
    "SNOWFLAKE_ROLE": "sysadmin",
}

# What fakesnow cannot parse; the fakesnow run treats these as no-ops (see the module docstring).
FAKESNOW_UNSUPPORTED = {
    "create_storage_integration": r"CREATE STORAGE INTEGRATION ",
    "create_external_table_silver_trades_changes": r"CREATE EXTERNAL TABLE ",
    "create_external_table_silver_trades": r"CREATE EXTERNAL TABLE ",
    "create_external_table_silver_quotes": r"CREATE EXTERNAL TABLE ",
    "create_reader_role": r"CREATE ROLE ",
    "grant_warehouse_usage": r"GRANT ",
    "grant_database_usage": r"GRANT ",
    "grant_silver_schema_usage": r"GRANT ",
    "grant_stage_usage": r"GRANT ",
    "grant_select_silver_trades_changes": r"GRANT ",
    "grant_select_silver_trades": r"GRANT ",
    "grant_select_silver_quotes": r"GRANT ",
    "grant_gold_schema": r"GRANT ",
    "refresh_silver_trades_changes": r"ALTER EXTERNAL TABLE ",
    "refresh_silver_trades": r"ALTER EXTERNAL TABLE ",
    "refresh_silver_quotes": r"ALTER EXTERNAL TABLE ",
}
FAKESNOW_EXECUTED = ["create_database", "create_silver_schema", "create_gold_schema", "create_stage"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No SNOWFLAKE_* or STOCKLAKE_* from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("SNOWFLAKE_", "STOCKLAKE_")):
            monkeypatch.delenv(name)


def setenv(monkeypatch, **values: str) -> None:
    for name, value in {**BASE_ENV, **values}.items():
        monkeypatch.setenv(name, value)


def config(**overrides: str) -> sf.SetupConfig:
    return sf.load_config({**BASE_ENV, **overrides})


def by_name(statements: list[sf.Statement]) -> dict[str, str]:
    return {statement.name: statement.sql for statement in statements}


# ---------------------------------------------------------------------------------------------- rendered SQL

EXPECTED = {
    "create_database": 'CREATE DATABASE IF NOT EXISTS "STOCKLAKE"',
    "create_silver_schema": 'CREATE SCHEMA IF NOT EXISTS "STOCKLAKE"."SILVER"',
    "create_gold_schema": 'CREATE SCHEMA IF NOT EXISTS "STOCKLAKE"."GOLD"',
    "create_storage_integration": (
        'CREATE STORAGE INTEGRATION IF NOT EXISTS "STOCKLAKE_S3"\n'
        "  TYPE = EXTERNAL_STAGE\n"
        "  STORAGE_PROVIDER = 'S3'\n"
        "  ENABLED = TRUE\n"
        "  STORAGE_AWS_ROLE_ARN = 'arn:aws:iam::123456789012:role/stocklake-snowflake'\n"
        "  STORAGE_ALLOWED_LOCATIONS = ('s3://lakehouse/')"),
    "create_stage": (
        'CREATE STAGE IF NOT EXISTS "STOCKLAKE"."SILVER"."STOCKLAKE_LAKE"\n'
        "  URL = 's3://lakehouse/'\n"
        '  STORAGE_INTEGRATION = "STOCKLAKE_S3"'),
    "create_external_table_silver_trades_changes": (
        'CREATE EXTERNAL TABLE IF NOT EXISTS "STOCKLAKE"."SILVER"."TRADES_CHANGES"\n'
        '  LOCATION = @"STOCKLAKE"."SILVER"."STOCKLAKE_LAKE"/silver/trades_changes/\n'
        "  REFRESH_ON_CREATE = FALSE\n"
        "  AUTO_REFRESH = FALSE\n"
        "  FILE_FORMAT = (TYPE = PARQUET)\n"
        "  TABLE_FORMAT = DELTA"),
    "create_external_table_silver_trades": (
        'CREATE EXTERNAL TABLE IF NOT EXISTS "STOCKLAKE"."SILVER"."TRADES"\n'
        '  LOCATION = @"STOCKLAKE"."SILVER"."STOCKLAKE_LAKE"/silver/trades/\n'
        "  REFRESH_ON_CREATE = FALSE\n"
        "  AUTO_REFRESH = FALSE\n"
        "  FILE_FORMAT = (TYPE = PARQUET)\n"
        "  TABLE_FORMAT = DELTA"),
    "create_external_table_silver_quotes": (
        'CREATE EXTERNAL TABLE IF NOT EXISTS "STOCKLAKE"."SILVER"."QUOTES"\n'
        '  LOCATION = @"STOCKLAKE"."SILVER"."STOCKLAKE_LAKE"/silver/quotes/\n'
        "  REFRESH_ON_CREATE = FALSE\n"
        "  AUTO_REFRESH = FALSE\n"
        "  FILE_FORMAT = (TYPE = PARQUET)\n"
        "  TABLE_FORMAT = DELTA"),
    "create_reader_role": 'CREATE ROLE IF NOT EXISTS "STOCKLAKE_READER"',
    "grant_warehouse_usage": 'GRANT USAGE ON WAREHOUSE "TRANSFORM_WH" TO ROLE "STOCKLAKE_READER"',
    "grant_database_usage": 'GRANT USAGE ON DATABASE "STOCKLAKE" TO ROLE "STOCKLAKE_READER"',
    "grant_silver_schema_usage": 'GRANT USAGE ON SCHEMA "STOCKLAKE"."SILVER" TO ROLE "STOCKLAKE_READER"',
    "grant_stage_usage": 'GRANT USAGE ON STAGE "STOCKLAKE"."SILVER"."STOCKLAKE_LAKE" TO ROLE "STOCKLAKE_READER"',
    "grant_select_silver_trades_changes":
        'GRANT SELECT ON EXTERNAL TABLE "STOCKLAKE"."SILVER"."TRADES_CHANGES" TO ROLE "STOCKLAKE_READER"',
    "grant_select_silver_trades":
        'GRANT SELECT ON EXTERNAL TABLE "STOCKLAKE"."SILVER"."TRADES" TO ROLE "STOCKLAKE_READER"',
    "grant_select_silver_quotes":
        'GRANT SELECT ON EXTERNAL TABLE "STOCKLAKE"."SILVER"."QUOTES" TO ROLE "STOCKLAKE_READER"',
    "grant_gold_schema":
        'GRANT USAGE, CREATE TABLE, CREATE VIEW ON SCHEMA "STOCKLAKE"."GOLD" TO ROLE "STOCKLAKE_READER"',
    "refresh_silver_trades_changes": 'ALTER EXTERNAL TABLE "STOCKLAKE"."SILVER"."TRADES_CHANGES" REFRESH',
    "refresh_silver_trades": 'ALTER EXTERNAL TABLE "STOCKLAKE"."SILVER"."TRADES" REFRESH',
    "refresh_silver_quotes": 'ALTER EXTERNAL TABLE "STOCKLAKE"."SILVER"."QUOTES" REFRESH',
}


def test_render_all_is_exactly_the_expected_statements_in_order():
    statements = sf.render_all(config())
    assert [statement.name for statement in statements] == list(EXPECTED)
    for statement in statements:
        assert statement.sql == EXPECTED[statement.name], statement.name


def test_render_uses_the_configured_names_upper_cased_and_the_bucket_from_settings():
    rendered = by_name(sf.render_all(config(
        SNOWFLAKE_DATABASE="analytics", SNOWFLAKE_SILVER_SCHEMA="lake_silver", SNOWFLAKE_GOLD_SCHEMA="marts",
        SNOWFLAKE_READER_ROLE="dbt_role", SNOWFLAKE_STORAGE_INTEGRATION="s3_int", SNOWFLAKE_STAGE="lake_stage",
        SNOWFLAKE_STORAGE_ALLOWED_LOCATIONS="s3://prod-lake/, s3://archive.bucket/stocklake/",
        STOCKLAKE_LAKE_BUCKET="prod-lake")))
    assert rendered["create_storage_integration"] == (
        'CREATE STORAGE INTEGRATION IF NOT EXISTS "S3_INT"\n'
        "  TYPE = EXTERNAL_STAGE\n"
        "  STORAGE_PROVIDER = 'S3'\n"
        "  ENABLED = TRUE\n"
        "  STORAGE_AWS_ROLE_ARN = 'arn:aws:iam::123456789012:role/stocklake-snowflake'\n"
        "  STORAGE_ALLOWED_LOCATIONS = ('s3://prod-lake/', 's3://archive.bucket/stocklake/')")
    assert rendered["create_stage"] == (
        'CREATE STAGE IF NOT EXISTS "ANALYTICS"."LAKE_SILVER"."LAKE_STAGE"\n'
        "  URL = 's3://prod-lake/'\n"
        '  STORAGE_INTEGRATION = "S3_INT"')
    assert rendered["create_external_table_silver_quotes"].splitlines()[:2] == [
        'CREATE EXTERNAL TABLE IF NOT EXISTS "ANALYTICS"."LAKE_SILVER"."QUOTES"',
        '  LOCATION = @"ANALYTICS"."LAKE_SILVER"."LAKE_STAGE"/silver/quotes/']
    assert rendered["grant_gold_schema"] == \
        'GRANT USAGE, CREATE TABLE, CREATE VIEW ON SCHEMA "ANALYTICS"."MARTS" TO ROLE "DBT_ROLE"'


def test_the_role_gets_nothing_on_silver_beyond_usage_and_select():
    """Read-only Silver: the only grants naming Silver objects are USAGE (schema, stage) and SELECT (tables)."""
    grants = [statement.sql for statement in sf.render_grants(config())]
    on_silver = [sql for sql in grants if '"SILVER"' in sql]
    assert on_silver and all(re.match(r'GRANT (USAGE|SELECT) ON (SCHEMA|STAGE|EXTERNAL TABLE) "', sql)
                             for sql in on_silver)
    assert not any("OWNERSHIP" in sql or "ALL" in sql for sql in grants)


def test_refresh_statements_are_the_alter_external_table_refreshes():
    assert sf.refresh_statements(config()) == [EXPECTED["refresh_silver_trades_changes"],
                                               EXPECTED["refresh_silver_trades"], EXPECTED["refresh_silver_quotes"]]


GOLD_MARTS = ("DIM_DATE", "DIM_SYMBOL", "FCT_CANDLES_1D", "FCT_CANDLES_1H", "FCT_CANDLES_1M", "FCT_DAILY_ANALYTICS",
              "FCT_DAILY_BARS", "FCT_MOVING_AVERAGES", "FCT_RETURN_CORRELATIONS", "FCT_SESSION_CANDLES_1D",
              "FCT_SYMBOL_KPI", "FCT_TOP_MOVERS", "FCT_TREEMAP", "FCT_VOLATILITY")


# Built only where Gold reads quotes (the setting warehouse.quotes_enabled, the dbt var lake_quotes_enabled).
QUOTE_MARTS = ("FCT_LATEST_QUOTES",)


def test_the_bi_role_gets_select_on_each_gold_mart_and_nothing_else():
    grants = by_name(sf.render_bi_grants(config(SNOWFLAKE_BI_ROLE="stocklake_bi")))
    assert sf.gold_marts({"lake_quotes_enabled": False}) == GOLD_MARTS
    assert list(grants) == [f"grant_bi_select_{mart.lower()}" for mart in GOLD_MARTS]
    assert grants["grant_bi_select_fct_candles_1m"] == (
        'GRANT SELECT ON TABLE "STOCKLAKE"."GOLD"."FCT_CANDLES_1M" TO ROLE "STOCKLAKE_BI"')
    assert all(sql.startswith("GRANT SELECT ON TABLE ") for sql in grants.values())
    # Where dbt builds Gold: SNOWFLAKE_SCHEMA first, as dbt_project/profiles.yml reads it.
    elsewhere = sf.render_bi_grants(config(SNOWFLAKE_BI_ROLE="bi", SNOWFLAKE_SCHEMA="marts"), ["DIM_DATE"])
    assert [s.sql for s in elsewhere] == ['GRANT SELECT ON TABLE "STOCKLAKE"."MARTS"."DIM_DATE" TO ROLE "BI"']


def test_the_grants_follow_the_marts_dbt_builds_with_the_settings():
    """A mart a var turns off has no table: no GRANT for it (Snowflake would refuse one on a missing table)."""
    with_quotes = tuple(sorted(GOLD_MARTS + QUOTE_MARTS))
    assert sf.gold_marts({"lake_quotes_enabled": True}) == with_quotes
    grants = sf.render_bi_grants(config(SNOWFLAKE_BI_ROLE="stocklake_bi", STOCKLAKE_WAREHOUSE_QUOTES_ENABLED="true"))
    assert [s.name for s in grants] == [f"grant_bi_select_{mart.lower()}" for mart in with_quotes]
    assert config(SNOWFLAKE_BI_ROLE="bi").bi_marts == GOLD_MARTS and config().bi_marts == ()


def test_a_mart_is_enabled_by_its_yml_config_or_the_var_it_names(tmp_path):
    for name, enabled in (("plain", None), ("disabled", "false"), ("by_var", "\"{{ var('flag') | as_bool }}\""),
                          ("odd", "\"{{ target.name == 'x' }}\"")):
        (tmp_path / f"{name}.sql").write_text("select 1")
        spec = f"models:\n- name: {name}\n" + (f"  config:\n    enabled: {enabled}\n" if enabled else "")
        (tmp_path / f"{name}.yml").write_text(spec)
    (tmp_path / "no_yml.sql").write_text("select 1")
    with pytest.raises(ValueError, match="odd.yml: enabled is"):
        sf.gold_marts({"flag": True}, tmp_path)
    (tmp_path / "odd.sql").unlink()
    assert sf.gold_marts({"flag": True}, tmp_path) == ("BY_VAR", "NO_YML", "PLAIN")
    assert sf.gold_marts({"flag": False}, tmp_path) == ("NO_YML", "PLAIN")


def test_no_bi_role_no_grants_and_a_bad_one_names_the_variable():
    assert sf.render_bi_grants(config()) == []
    with pytest.raises(sf.ConfigError, match="^SNOWFLAKE_BI_ROLE: 'bi; drop table x' is not an unquoted Snowflake"):
        config(SNOWFLAKE_BI_ROLE="bi; drop table x")


def test_cli_render_json_is_one_line_of_names_and_sql(monkeypatch, capsys):
    setenv(monkeypatch, SNOWFLAKE_BI_ROLE="stocklake_bi")
    code, out, err = run_main(capsys, "render", "--part", "refresh", "--json")
    assert (code, err, out.count("\n")) == (0, "", 1)
    assert json.loads(out) == [{"name": s.name, "sql": s.sql} for s in sf.render_refresh(sf.load_config())]
    code, out, _ = run_main(capsys, "render", "--part", "bi_grants", "--json")
    assert [item["name"] for item in json.loads(out)] == [f"grant_bi_select_{m.lower()}" for m in GOLD_MARTS]


def test_script_is_runnable_text_with_names_as_comments():
    text = sf.script(sf.render_all(config()))
    assert text.startswith('-- create_database\nCREATE DATABASE IF NOT EXISTS "STOCKLAKE";\n\n'
                           '-- create_silver_schema\n')
    assert text.endswith('-- refresh_silver_quotes\nALTER EXTERNAL TABLE "STOCKLAKE"."SILVER"."QUOTES" REFRESH;\n')
    assert text.count(";\n") == len(EXPECTED)


def test_every_template_is_used_and_has_no_raw_placeholder_left():
    used = {path.stem for path in sf.TEMPLATE_DIR.glob("*.sql")}
    rendered = "\n".join(statement.sql for statement in sf.render_all(config()))
    assert "$" not in rendered and "--" not in rendered
    assert used == {"create_database", "create_schema", "create_storage_integration", "create_stage",
                    "create_external_table", "refresh_external_table", "create_role", "grant_warehouse_usage",
                    "grant_database_usage", "grant_schema_usage", "grant_stage_usage",
                    "grant_select_external_table", "grant_gold_schema", "grant_select_table"}


def test_templates_take_only_fragments_built_by_the_module():
    with pytest.raises(TypeError, match=r"\$database must be built by quote_ident"):
        sf.render_template("create_database", database='"X"; DROP DATABASE Y')  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="placeholders"):
        sf.render_template("create_database", database=sf.quote_ident("X"), extra=sf.quote_ident("Y"))


def test_quoting_and_literal_escaping():
    assert sf.quote_ident("DB", "SCHEMA", "T") == '"DB"."SCHEMA"."T"'
    assert sf.sql_string("it's a \\ test") == "'it\\'s a \\\\ test'"
    with pytest.raises(ValueError):
        sf.quote_ident('A"B')
    with pytest.raises(ValueError):
        sf.sql_string("line\nbreak")


# ------------------------------------------------------------------------------------------------ validation

@pytest.mark.parametrize("value, expected", [
    ("silver", "SILVER"), ("_x1", "_X1"), ("Gold$2", "GOLD$2"), ("A" * 255, "A" * 255)])
def test_good_identifiers_are_upper_cased(value, expected):
    assert sf.identifier(value, "SNOWFLAKE_SILVER_SCHEMA") == expected


@pytest.mark.parametrize("value", [
    'silver"; drop table x; --', "silver;", "1silver", "sil ver", "silver.gold", "$x", "sílver", "a-b", "'x'"])
def test_bad_identifiers_name_the_variable(value):
    with pytest.raises(sf.ConfigError, match=r"^SNOWFLAKE_SILVER_SCHEMA: .* is not an unquoted Snowflake identifier"):
        config(SNOWFLAKE_SILVER_SCHEMA=value)


def test_too_long_identifier():
    with pytest.raises(sf.ConfigError, match="^SNOWFLAKE_READER_ROLE: longer than 255 characters$"):
        config(SNOWFLAKE_READER_ROLE="R" * 256)


def test_empty_identifier_falls_back_to_the_default_but_a_required_one_is_an_error():
    assert config(SNOWFLAKE_DATABASE="").database == "STOCKLAKE"
    with pytest.raises(sf.ConfigError, match="^SNOWFLAKE_WAREHOUSE: required"):
        sf.load_config({"SNOWFLAKE_STORAGE_AWS_ROLE_ARN": ARN})
    with pytest.raises(sf.ConfigError, match="^SNOWFLAKE_WAREHOUSE: required"):
        config(SNOWFLAKE_WAREHOUSE="  ")


@pytest.mark.parametrize("value", [
    "arn:aws:iam::12345:role/x", "arn:aws:iam::123456789012:user/x", "arn:aws:iam::123456789012:role/x'; --",
    "arn:aws:iam::123456789012:role/", "role/x"])
def test_bad_role_arn(value):
    with pytest.raises(sf.ConfigError, match=r"^SNOWFLAKE_STORAGE_AWS_ROLE_ARN: .* is not an IAM role ARN"):
        config(SNOWFLAKE_STORAGE_AWS_ROLE_ARN=value)


def test_gov_cloud_arn_and_role_path_are_accepted():
    arn = "arn:aws-us-gov:iam::123456789012:role/service/snowflake-reader"
    assert config(SNOWFLAKE_STORAGE_AWS_ROLE_ARN=arn).aws_role_arn == arn


def test_role_arn_is_required_to_render_the_setup_but_not_the_refresh():
    cfg = sf.load_config({"SNOWFLAKE_WAREHOUSE": "wh"})
    with pytest.raises(sf.ConfigError, match="^SNOWFLAKE_STORAGE_AWS_ROLE_ARN: required"):
        sf.render_all(cfg)
    assert len(sf.refresh_statements(cfg)) == len(sf.SILVER_TABLES) == 3


@pytest.mark.parametrize("value", [
    "s3://lakehouse", "s3a://lakehouse/", "s3://lakehouse/silver", "s3://Lake/", "s3://lakehouse/a b/",
    "s3://lakehouse/x'/", "https://lakehouse/"])
def test_bad_allowed_locations(value):
    with pytest.raises(sf.ConfigError, match=r"^SNOWFLAKE_STORAGE_ALLOWED_LOCATIONS: .* is not an S3 location"):
        config(SNOWFLAKE_STORAGE_ALLOWED_LOCATIONS=value)


def test_allowed_locations_must_cover_the_stage():
    with pytest.raises(sf.ConfigError, match=r"^SNOWFLAKE_STORAGE_ALLOWED_LOCATIONS: must include the stage URL "
                                             r"s3://lakehouse/$"):
        config(SNOWFLAKE_STORAGE_ALLOWED_LOCATIONS="s3://lakehouse/silver/")


def test_gold_must_not_be_silver():
    with pytest.raises(sf.ConfigError, match="^SNOWFLAKE_GOLD_SCHEMA: must differ"):
        config(SNOWFLAKE_GOLD_SCHEMA="silver")


def test_bad_bucket_from_settings_names_the_setting():
    with pytest.raises(sf.ConfigError, match=r"^lake\.bucket \(STOCKLAKE_LAKE_BUCKET\): 'Bad_Bucket'"):
        config(STOCKLAKE_LAKE_BUCKET="Bad_Bucket")


# --------------------------------------------------------------------------------------- connection settings

def connection_env(**overrides: str | None) -> dict[str, str]:
    """The full environment for a connection; an override of None removes the variable."""
    env = {**BASE_ENV, **CONNECTION_ENV, **overrides}
    return {name: value for name, value in env.items() if value is not None}


def write_key(tmp_path, passphrase: str | None) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                  else serialization.NoEncryption())
    path = tmp_path / "rsa_key.p8"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return str(path)


def key_env(tmp_path, passphrase: str | None, given: str | None) -> dict[str, str]:
    env = connection_env(SNOWFLAKE_PASSWORD=None, SNOWFLAKE_PRIVATE_KEY_PATH=write_key(tmp_path, passphrase))
    if given is not None:
        env["SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"] = given
    return env


def test_password_authentication():
    cfg = sf.load_connection_config(connection_env())
    kwargs = sf.connect_kwargs(cfg)
    assert kwargs["password"] == PASSWORD
    assert "private_key" not in kwargs and "authenticator" not in kwargs
    assert kwargs["account"] == "acme-prod" and kwargs["user"] == "stocklake_deployer"
    assert kwargs["role"] == "SYSADMIN" and kwargs["warehouse"] == "TRANSFORM_WH" and kwargs["database"] == "STOCKLAKE"
    assert PASSWORD not in repr(cfg) and "***" in repr(cfg)


@pytest.mark.parametrize("passphrase", [None, PASSPHRASE])
def test_key_pair_authentication(tmp_path, passphrase):
    cfg = sf.load_connection_config(key_env(tmp_path, passphrase, passphrase))
    kwargs = sf.connect_kwargs(cfg)
    assert kwargs["authenticator"] == "SNOWFLAKE_JWT" and "password" not in kwargs
    key = serialization.load_der_private_key(kwargs["private_key"], password=None)  # unencrypted DER for the connector
    assert key.key_size == 2048
    assert PASSPHRASE not in repr(cfg)


@pytest.mark.parametrize("passphrase, given, message", [
    (PASSPHRASE, None, "^SNOWFLAKE_PRIVATE_KEY_PASSPHRASE: required: the private key is encrypted$"),
    (PASSPHRASE, "wrong-" + PASSPHRASE, "^SNOWFLAKE_PRIVATE_KEY_PATH: not a PEM private key, or "
                                        "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE is wrong$"),
    (None, PASSPHRASE, "^SNOWFLAKE_PRIVATE_KEY_PASSPHRASE: given, but the private key is not encrypted$"),
])
def test_key_pair_errors_name_the_variable_and_hide_the_secret(tmp_path, passphrase, given, message):
    cfg = sf.load_connection_config(key_env(tmp_path, passphrase, given))
    with pytest.raises(sf.ConfigError, match=message) as caught:
        sf.connect_kwargs(cfg)
    assert PASSPHRASE not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("overrides, message", [
    ({"SNOWFLAKE_ACCOUNT": None}, "^SNOWFLAKE_ACCOUNT: required"),
    ({"SNOWFLAKE_ACCOUNT": "acme prod"}, "^SNOWFLAKE_ACCOUNT: 'acme prod' is not a Snowflake account identifier"),
    ({"SNOWFLAKE_USER": None}, "^SNOWFLAKE_USER: required"),
    ({"SNOWFLAKE_PASSWORD": None}, "^SNOWFLAKE_PASSWORD: required, or SNOWFLAKE_PRIVATE_KEY_PATH"),
    ({"SNOWFLAKE_PRIVATE_KEY_PATH": "/nonexistent/key.p8"}, "^SNOWFLAKE_PASSWORD: set either it or"),
    ({"SNOWFLAKE_PASSWORD": None, "SNOWFLAKE_PRIVATE_KEY_PATH": "/nonexistent/key.p8"},
     "^SNOWFLAKE_PRIVATE_KEY_PATH: no such file: /nonexistent/key.p8$"),
    ({"SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": PASSPHRASE}, "^SNOWFLAKE_PRIVATE_KEY_PASSPHRASE: set without"),
    ({"SNOWFLAKE_ROLE": "sysadmin; drop"}, "^SNOWFLAKE_ROLE: 'sysadmin; drop' is not an unquoted"),
])
def test_connection_config_errors(overrides, message):
    env = connection_env(**overrides)
    with pytest.raises(sf.ConfigError, match=message) as caught:
        sf.load_connection_config(env)
    assert PASSWORD not in str(caught.value) and PASSPHRASE not in str(caught.value)


# ------------------------------------------------------------------------------------------------------- CLI

def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = sf.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_render_prints_the_script_without_connecting(monkeypatch, capsys):
    setenv(monkeypatch, **CONNECTION_ENV)
    monkeypatch.setattr(snowflake.connector, "connect", lambda **_: pytest.fail("render must not connect"))
    code, out, err = run_main(capsys, "render")
    assert code == 0 and err == ""
    assert out == sf.script(sf.render_all(sf.load_config()))
    assert PASSWORD not in out


def test_cli_render_only_one_statement(monkeypatch, capsys):
    setenv(monkeypatch)
    code, out, _ = run_main(capsys, "render", "--only", "grant_gold_schema")
    assert code == 0
    assert out == f"-- grant_gold_schema\n{EXPECTED['grant_gold_schema']};\n"


@pytest.mark.parametrize("argv, env, message", [
    (["render"], {"SNOWFLAKE_SILVER_SCHEMA": 'silver"; drop table x; --'},
     "SNOWFLAKE_SILVER_SCHEMA: 'silver\"; drop table x; --' is not an unquoted Snowflake identifier"),
    (["render"], {"SNOWFLAKE_STORAGE_AWS_ROLE_ARN": ""}, "SNOWFLAKE_STORAGE_AWS_ROLE_ARN: required"),
    (["render", "--only", "nope"], {}, "--only: no statement named 'nope'; known: create_database, "),
    (["apply"], {"SNOWFLAKE_ACCOUNT": ""}, "SNOWFLAKE_ACCOUNT: required"),
    (["refresh"], {"SNOWFLAKE_PASSWORD": ""}, "SNOWFLAKE_PASSWORD: required, or SNOWFLAKE_PRIVATE_KEY_PATH"),
    (["apply"], {"SNOWFLAKE_DATABASE": "x" * 300}, "SNOWFLAKE_DATABASE: longer than 255 characters"),
])
def test_cli_config_errors_are_one_line_exit_2(monkeypatch, capsys, argv, env, message):
    setenv(monkeypatch, **{**CONNECTION_ENV, **env})
    code, out, err = run_main(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith(f"snowflake_setup: {message}")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert PASSWORD not in err


def test_cli_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        sf.main(["drop-everything"])
    assert caught.value.code == 2


class RecordingConnection:
    """Stands in for a Snowflake connection: records what is executed, can fail on a statement."""

    def __init__(self, fail_on: str | None = None, error: Exception | None = None):
        self.executed: list[str] = []
        self.closed = False
        self.fail_on, self.error = fail_on, error

    def cursor(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql: str):
        if self.fail_on and sql.startswith(self.fail_on):
            raise self.error
        self.executed.append(sql)
        self.sfqid = f"q{len(self.executed)}"
        return self

    def close(self):
        self.closed = True


def test_refresh_sends_exactly_the_refresh_statements():
    connection = RecordingConnection()
    done = sf.refresh(connection, config())
    assert connection.executed == [EXPECTED["refresh_silver_trades_changes"], EXPECTED["refresh_silver_trades"],
                                   EXPECTED["refresh_silver_quotes"]]
    assert [(item.name, item.query_id) for item in done] == [("refresh_silver_trades_changes", "q1"),
                                                            ("refresh_silver_trades", "q2"),
                                                            ("refresh_silver_quotes", "q3")]


def test_apply_runs_everything_in_order_and_logs_names_not_secrets(caplog):
    connection = RecordingConnection()
    with caplog.at_level(logging.INFO, logger="stocklake.snowflake_setup"):
        sf.apply(connection, config())
    assert connection.executed == list(EXPECTED.values())
    assert [record.getMessage() for record in caplog.records] == [f"snowflake: running {name}" for name in EXPECTED]


def test_cli_apply_stops_at_the_failing_statement_exit_1_and_redacts(monkeypatch, capsys):
    setenv(monkeypatch, **CONNECTION_ENV)
    # An error text that (however unlikely) carries the password must not print it.
    error = snowflake.connector.errors.ProgrammingError(
        msg=f"SQL access control error:\nInsufficient privileges (password {PASSWORD})", errno=3001)
    connection = RecordingConnection(fail_on="CREATE STORAGE INTEGRATION", error=error)
    monkeypatch.setattr(sf, "connect", lambda _config: connection)
    code, out, err = run_main(capsys, "apply")
    assert code == 1
    assert connection.closed and len(connection.executed) == 3  # database and both schemas, then the failure
    last = err.strip().splitlines()[-1]
    assert last.startswith("snowflake_setup: create_storage_integration failed: 003001: SQL access control error: "
                           "Insufficient privileges")
    assert PASSWORD not in err and "***" in last and "Traceback" not in err


def test_cli_connection_failure_exit_1(monkeypatch, capsys):
    setenv(monkeypatch, **CONNECTION_ENV)

    def refuse(**_kwargs):
        raise snowflake.connector.errors.DatabaseError(msg="Incorrect username or password was specified.",
                                                       errno=250001)

    monkeypatch.setattr(snowflake.connector, "connect", refuse)
    code, _, err = run_main(capsys, "refresh")
    assert code == 1
    assert err.strip().splitlines()[-1] == ("snowflake_setup: cannot connect to acme-prod: 250001: "
                                            "Incorrect username or password was specified.")
    assert PASSWORD not in err


# -------------------------------------------------------------------------------------------------- fakesnow

def test_fakesnow_rejects_what_it_does_not_implement():
    """Pins the unsupported list: if a fakesnow upgrade implements one, move it to the executed side."""
    rendered = by_name(sf.render_all(config()))
    assert set(FAKESNOW_UNSUPPORTED) | set(FAKESNOW_EXECUTED) == set(rendered)
    with fakesnow.patch():
        connection = snowflake.connector.connect(database="STOCKLAKE", schema="SILVER")
        for name in FAKESNOW_UNSUPPORTED:
            with pytest.raises(sf.StatementFailed, match=f"^{name} failed: "):
                sf.execute(connection, [sf.Statement(name, rendered[name])])


@pytest.mark.filterwarnings("ignore:Arrow output:UserWarning")
def test_cli_apply_against_fakesnow_creates_database_schemas_and_stage(monkeypatch, capsys):
    setenv(monkeypatch, **CONNECTION_ENV)
    nops = sorted(set(FAKESNOW_UNSUPPORTED.values()))
    with fakesnow.patch(create_database_on_connect=False, nop_regexes=nops):
        code, out, err = run_main(capsys, "apply")
        assert code == 0, err
        cursor = snowflake.connector.connect(database="STOCKLAKE").cursor()
        schemas = cursor.execute("SELECT schema_name FROM information_schema.schemata "
                                 "WHERE catalog_name = 'STOCKLAKE' ORDER BY 1").fetchall()
        stages = cursor.execute('SHOW STAGES IN SCHEMA "STOCKLAKE"."SILVER"').fetchall()
        columns = [column[0] for column in cursor.description]
    assert ("SILVER",) in schemas and ("GOLD",) in schemas
    stage = dict(zip(columns, stages[0]))
    assert len(stages) == 1
    assert (stage["name"], stage["database_name"], stage["schema_name"], stage["url"], stage["type"]) == \
        ("STOCKLAKE_LAKE", "STOCKLAKE", "SILVER", "s3://lakehouse/", "EXTERNAL")
    assert PASSWORD not in out + err


@pytest.mark.filterwarnings("ignore:Arrow output:UserWarning")
def test_apply_is_idempotent_on_fakesnow():
    nops = sorted(set(FAKESNOW_UNSUPPORTED.values()))
    with fakesnow.patch(nop_regexes=nops):
        connection = snowflake.connector.connect()
        first = sf.apply(connection, config())
        second = sf.apply(connection, config())
        stages = connection.cursor().execute('SHOW STAGES IN SCHEMA "STOCKLAKE"."SILVER"').fetchall()
    assert [item.name for item in first] == [item.name for item in second] == list(EXPECTED)
    assert len(stages) == 1


def test_cli_refresh_against_fakesnow_reports_the_unsupported_statement(monkeypatch, capsys):
    """A real connector error path: fakesnow cannot parse ALTER EXTERNAL TABLE, the CLI says which one failed."""
    setenv(monkeypatch, **CONNECTION_ENV)
    with fakesnow.patch():
        code, _, err = run_main(capsys, "refresh")
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("snowflake_setup: refresh_silver_trades_changes failed: 001003 (42000):")
