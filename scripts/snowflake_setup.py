#!/usr/bin/env python3
"""Snowflake objects over the lake: Silver Delta tables as external tables, and a least-privilege role for dbt.

  python scripts/snowflake_setup.py render [--part P] [--only NAME] [--json]   print the SQL, in order; no connection
  python scripts/snowflake_setup.py apply  [--part P] [--only NAME]            run it, statement by statement
  python scripts/snowflake_setup.py refresh                   ALTER EXTERNAL TABLE ... REFRESH for each Silver table

Parts (--part): setup (the default: objects, reader role, first refresh), refresh (the external tables re-read
their Delta logs), bi_grants (SELECT on every Gold mart dbt builds with the settings' vars for SNOWFLAKE_BI_ROLE;
none when it is unset). `render --json` prints one line, [{"name": ..., "sql": ...}, ...]: what the Airflow tasks
run through the Snowflake provider (airflow/plugins/stocklake_airflow/warehouse.py).

Why: Snowflake is the production warehouse. It reads Silver where Spark writes it (Delta on S3) instead of a
copy, through a storage integration (no keys in Snowflake), a stage on the lake bucket and one external table
per Silver table; Delta external tables never refresh by themselves, so `refresh` (the Airflow DAG's task)
re-reads their Delta logs. dbt builds Gold in its own schema with a role that can only read Silver.

The SQL lives in conf/snowflake/*.sql as string.Template files. Only fragments made here by quote_ident() and
sql_string() are substituted into them: each value is first checked against a strict pattern (identifiers as
unquoted Snowflake identifiers, the role ARN, s3:// locations), so environment input never reaches SQL raw.

Configuration is environment-only (see ENV below and docs/snowflake.md); the bucket is lake.bucket from
conf/settings.py. Secrets (password, private key and its passphrase) are read from the environment and are
never printed, logged or put into error messages. Exit codes: 0 ok, 1 Snowflake error, 2 bad configuration.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

REPO = Path(__file__).resolve().parents[1]

import yaml

from conf.dbt_vars import dbt_vars
from conf.identifiers import IdentifierError, sql_identifier
from conf.settings import ConfigError as SettingsError
from conf.settings import load_settings

TEMPLATE_DIR = REPO / "conf" / "snowflake"
# One Gold table per model file here: dbt names a mart's table after its model (no aliases in this project).
MARTS_DIR = REPO / "dbt_project" / "models" / "marts"
# A mart dbt builds only where a var says so: `enabled: "{{ var('NAME') | as_bool }}"` in its .yml's config.
ENABLED_BY_VAR = re.compile(r"\{\{\s*var\(\s*'(\w+)'\s*\)\s*(?:\|\s*as_bool\s*)?\}\}")
log = logging.getLogger("stocklake.snowflake_setup")

# Environment variables, in one place so errors and docs use the same names. (Names, not values: ruff's S105 and
# detect-secrets take *_PASSWORD / *_PASSPHRASE / *_KEY names for secrets, hence the comments on those lines.)
ENV_ACCOUNT = "SNOWFLAKE_ACCOUNT"
ENV_USER = "SNOWFLAKE_USER"
ENV_PASSWORD = "SNOWFLAKE_PASSWORD"  # noqa: S105  # pragma: allowlist secret
ENV_PRIVATE_KEY_PATH = "SNOWFLAKE_PRIVATE_KEY_PATH"  # pragma: allowlist secret
ENV_PRIVATE_KEY_PASSPHRASE = "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"  # noqa: S105  # pragma: allowlist secret
ENV_ROLE = "SNOWFLAKE_ROLE"
ENV_WAREHOUSE = "SNOWFLAKE_WAREHOUSE"
ENV_DATABASE = "SNOWFLAKE_DATABASE"
ENV_SILVER_SCHEMA = "SNOWFLAKE_SILVER_SCHEMA"
ENV_GOLD_SCHEMA = "SNOWFLAKE_GOLD_SCHEMA"
ENV_READER_ROLE = "SNOWFLAKE_READER_ROLE"
ENV_STORAGE_INTEGRATION = "SNOWFLAKE_STORAGE_INTEGRATION"
ENV_STAGE = "SNOWFLAKE_STAGE"
ENV_AWS_ROLE_ARN = "SNOWFLAKE_STORAGE_AWS_ROLE_ARN"
ENV_ALLOWED_LOCATIONS = "SNOWFLAKE_STORAGE_ALLOWED_LOCATIONS"
ENV_BI_ROLE = "SNOWFLAKE_BI_ROLE"
# dbt's profile (dbt_project/profiles.yml) builds Gold in SNOWFLAKE_SCHEMA when set, else SNOWFLAKE_GOLD_SCHEMA.
ENV_DBT_SCHEMA = "SNOWFLAKE_SCHEMA"
SECRET_ENV = (ENV_PASSWORD, ENV_PRIVATE_KEY_PASSPHRASE)

DEFAULTS = {
    ENV_DATABASE: "STOCKLAKE",
    ENV_SILVER_SCHEMA: "SILVER",
    ENV_GOLD_SCHEMA: "GOLD",
    ENV_READER_ROLE: "STOCKLAKE_READER",
    ENV_STORAGE_INTEGRATION: "STOCKLAKE_S3",
    ENV_STAGE: "STOCKLAKE_LAKE",
}

# Identifiers: unquoted Snowflake identifiers, checked by conf.identifiers.sql_identifier (letters, digits, _ and $,
# at most 255 characters).
# IAM role ARN (any AWS partition); role names and paths use only these characters, never a quote.
ROLE_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}")
# S3 bucket names (lower case, digits, dots, hyphens; 3-63) as AWS and MinIO accept them.
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# s3://bucket/ or s3://bucket/some/prefix/ : a directory, so it must end with '/'.
LOCATION = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?:[A-Za-z0-9_.=-]+/)*")
# Account identifiers: orgname-account, or a locator with region and cloud (xy12345.eu-west-1.aws).
ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")


@dataclass(frozen=True)
class SilverTable:
    name: str  # external table name in the Silver schema
    path: str  # Delta table directory below the stage (the bucket root)

    @property
    def key(self) -> str:
        """Used in statement names: silver/trades/ -> silver_trades."""
        return self.path.strip("/").replace("/", "_")


# The Silver tables Spark writes (ARCHITECTURE.md, lake layout), and Silver's change index
# (spark_jobs/silver_changes.py) that Gold's incremental candles read. The index refreshes first: TRADES, refreshed
# after it, then shows at least every Silver version the index names, so Gold never stamps a version whose rows
# Snowflake does not see yet.
SILVER_TABLES = (SilverTable("TRADES_CHANGES", "silver/trades_changes/"), SilverTable("TRADES", "silver/trades/"),
                 SilverTable("QUOTES", "silver/quotes/"))


class ConfigError(ValueError):
    """A missing or invalid setting; the message starts with the variable's name and is one line."""


class Secret:
    """A secret string that never shows itself: repr() and str() are masked, .reveal() gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


class Sql(str):
    """A SQL fragment built by this module (quoted identifier or escaped literal), safe to substitute."""


@dataclass(frozen=True)
class Statement:
    name: str
    sql: str


@dataclass(frozen=True)
class SetupConfig:
    """Names of the Snowflake objects, validated and upper-cased (how Snowflake resolves unquoted names)."""

    database: str
    silver_schema: str
    gold_schema: str
    warehouse: str
    reader_role: str
    storage_integration: str
    stage: str
    bucket: str
    aws_role_arn: str | None
    allowed_locations: tuple[str, ...]
    bi_role: str | None = None
    # The Gold marts the BI role may read: those dbt builds with the settings' vars (none without a BI role).
    bi_marts: tuple[str, ...] = ()

    @property
    def stage_url(self) -> str:
        return f"s3://{self.bucket}/"


@dataclass(frozen=True)
class ConnectionConfig:
    account: str
    user: str
    role: str | None
    warehouse: str
    database: str
    password: Secret | None
    private_key_path: Path | None
    private_key_passphrase: Secret | None


# ---------------------------------------------------------------------------------------------------- validation

def _show(value: str) -> str:
    """A bad (non-secret) value for an error message: repr keeps it on one line, the cut keeps it short."""
    return repr(value if len(value) <= 60 else value[:57] + "...")


def identifier(value: str | None, env: str) -> str:
    """Validate an unquoted identifier and return it upper-cased, as Snowflake would resolve it."""
    try:
        return sql_identifier(value, env, "snowflake").upper()
    except IdentifierError as exc:
        raise ConfigError(str(exc)) from None


def role_arn(value: str, env: str) -> str:
    if not ROLE_ARN.fullmatch(value):
        raise ConfigError(f"{env}: {_show(value)} is not an IAM role ARN (arn:aws:iam::<12 digits>:role/<name>)")
    return value


def location(value: str, env: str) -> str:
    if not LOCATION.fullmatch(value):
        raise ConfigError(f"{env}: {_show(value)} is not an S3 location like s3://bucket/ or s3://bucket/prefix/")
    return value


def bucket_name(value: str) -> str:
    if not BUCKET.fullmatch(value):
        raise ConfigError(f"lake.bucket (STOCKLAKE_LAKE_BUCKET): {_show(value)} is not an S3 bucket name")
    return value


def quote_ident(*parts: str) -> Sql:
    """A (qualified) quoted identifier: "DB"."SCHEMA"."NAME". Parts are validated identifiers; the doubling of
    embedded quotes is Snowflake's escape and only a second line of defence."""
    for part in parts:
        sql_identifier(part, "identifier", "snowflake")  # IdentifierError (a ValueError) for anything else
    return Sql(".".join('"' + part.replace('"', '""') + '"' for part in parts))


def sql_string(value: str) -> Sql:
    """A single-quoted SQL string literal with backslashes and quotes escaped."""
    if any(ord(ch) < 32 for ch in value):
        raise ValueError("control characters in a SQL string literal")
    return Sql("'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'")


def stage_path(value: str) -> Sql:
    """A path after @stage: relative, directory-shaped, only characters that need no quoting."""
    if not re.fullmatch(r"(?:[A-Za-z0-9_.=-]+/)+", value):
        raise ValueError(f"not a stage path: {value!r}")
    return Sql(value)


# ------------------------------------------------------------------------------------------------ configuration

def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value.strip() if value is not None and value.strip() else None


def load_config(environ: Mapping[str, str] | None = None) -> SetupConfig:
    """Object names from the environment (with defaults), the bucket from the pipeline settings, and with a BI role
    the marts it may read: those dbt builds with the settings' vars."""
    env = os.environ if environ is None else environ
    bi_role = _get(env, ENV_BI_ROLE)
    try:
        settings = load_settings(env)
        marts = gold_marts(dbt_vars(settings)) if bi_role else ()
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None
    bucket = bucket_name(settings.lake.bucket)

    def ident(name: str) -> str:
        return identifier(_get(env, name) or DEFAULTS.get(name), name)

    arn = _get(env, ENV_AWS_ROLE_ARN)
    raw_locations = _get(env, ENV_ALLOWED_LOCATIONS)
    locations = tuple(location(item.strip(), ENV_ALLOWED_LOCATIONS)
                      for item in (raw_locations or f"s3://{bucket}/").split(",") if item.strip())
    config = SetupConfig(
        database=ident(ENV_DATABASE), silver_schema=ident(ENV_SILVER_SCHEMA),
        gold_schema=ident(ENV_DBT_SCHEMA if _get(env, ENV_DBT_SCHEMA) else ENV_GOLD_SCHEMA),
        warehouse=ident(ENV_WAREHOUSE), reader_role=ident(ENV_READER_ROLE),
        storage_integration=ident(ENV_STORAGE_INTEGRATION), stage=ident(ENV_STAGE), bucket=bucket,
        aws_role_arn=role_arn(arn, ENV_AWS_ROLE_ARN) if arn else None, allowed_locations=locations,
        bi_role=identifier(bi_role, ENV_BI_ROLE) if bi_role else None, bi_marts=marts)
    if config.silver_schema == config.gold_schema:
        # dbt's CREATE privileges on Gold would then also be CREATE privileges on Silver.
        raise ConfigError(f"{ENV_GOLD_SCHEMA}: must differ from {ENV_SILVER_SCHEMA} (Silver stays read-only)")
    if not locations:
        raise ConfigError(f"{ENV_ALLOWED_LOCATIONS}: no location given")
    if not any(config.stage_url.startswith(loc) for loc in locations):
        # Snowflake refuses a stage whose URL is outside the integration's allowed locations.
        raise ConfigError(f"{ENV_ALLOWED_LOCATIONS}: must include the stage URL {config.stage_url}")
    return config


def load_connection_config(environ: Mapping[str, str] | None = None) -> ConnectionConfig:
    """Connection settings; exactly one of password or key-pair authentication."""
    env = os.environ if environ is None else environ
    account = _get(env, ENV_ACCOUNT)
    if not account:
        raise ConfigError(f"{ENV_ACCOUNT}: required (e.g. myorg-myaccount)")
    if not ACCOUNT.fullmatch(account):
        raise ConfigError(f"{ENV_ACCOUNT}: {_show(account)} is not a Snowflake account identifier")
    user = _get(env, ENV_USER)
    if not user:
        raise ConfigError(f"{ENV_USER}: required")
    if len(user) > 255 or any(ord(ch) < 32 for ch in user):
        raise ConfigError(f"{ENV_USER}: not a valid user name")
    role = _get(env, ENV_ROLE)
    password = env.get(ENV_PASSWORD) or None
    key_path = _get(env, ENV_PRIVATE_KEY_PATH)
    passphrase = env.get(ENV_PRIVATE_KEY_PASSPHRASE) or None
    if password and key_path:
        raise ConfigError(f"{ENV_PASSWORD}: set either it or {ENV_PRIVATE_KEY_PATH} (key-pair), not both")
    if not password and not key_path:
        raise ConfigError(f"{ENV_PASSWORD}: required, or {ENV_PRIVATE_KEY_PATH} for key-pair authentication")
    if passphrase and not key_path:
        raise ConfigError(f"{ENV_PRIVATE_KEY_PASSPHRASE}: set without {ENV_PRIVATE_KEY_PATH}")
    if key_path and not Path(key_path).expanduser().is_file():
        raise ConfigError(f"{ENV_PRIVATE_KEY_PATH}: no such file: {key_path}")
    return ConnectionConfig(
        account=account, user=user, role=identifier(role, ENV_ROLE) if role else None,
        warehouse=identifier(_get(env, ENV_WAREHOUSE), ENV_WAREHOUSE),
        database=identifier(_get(env, ENV_DATABASE) or DEFAULTS[ENV_DATABASE], ENV_DATABASE),
        password=Secret(password) if password else None,
        private_key_path=Path(key_path).expanduser() if key_path else None,
        private_key_passphrase=Secret(passphrase) if passphrase else None)


def _private_key_der(config: ConnectionConfig) -> bytes:
    """The PEM private key as PKCS#8 DER bytes, the form the connector takes; errors never show key material."""
    from cryptography.hazmat.primitives import serialization

    if config.private_key_path is None:
        raise ConfigError(f"{ENV_PRIVATE_KEY_PATH}: required for key-pair authentication")
    try:
        pem = config.private_key_path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{ENV_PRIVATE_KEY_PATH}: cannot read {config.private_key_path}: {exc.strerror}") from None
    passphrase = config.private_key_passphrase.reveal().encode() if config.private_key_passphrase else None
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase)
    except TypeError:
        # cryptography's way of saying the key is encrypted and no passphrase was given, or the reverse.
        raise ConfigError(f"{ENV_PRIVATE_KEY_PASSPHRASE}: "
                          + ("required: the private key is encrypted" if passphrase is None
                             else "given, but the private key is not encrypted")) from None
    except ValueError:
        raise ConfigError(f"{ENV_PRIVATE_KEY_PATH}: not a PEM private key, or "
                          f"{ENV_PRIVATE_KEY_PASSPHRASE} is wrong") from None
    return key.private_bytes(encoding=serialization.Encoding.DER, format=serialization.PrivateFormat.PKCS8,
                             encryption_algorithm=serialization.NoEncryption())


def connect_kwargs(config: ConnectionConfig) -> dict[str, Any]:
    """Keyword arguments for snowflake.connector.connect (they hold secrets: never log them)."""
    kwargs: dict[str, Any] = {
        "account": config.account, "user": config.user, "warehouse": config.warehouse,
        "database": config.database, "application": "stocklake",
        # The tag makes these statements easy to find in Snowflake's query history.
        "session_parameters": {"QUERY_TAG": "stocklake:snowflake_setup"},
    }
    if config.role:
        kwargs["role"] = config.role
    if config.private_key_path:
        kwargs["authenticator"] = "SNOWFLAKE_JWT"
        kwargs["private_key"] = _private_key_der(config)
    elif config.password is not None:
        kwargs["password"] = config.password.reveal()
    else:
        raise ConfigError(f"{ENV_PASSWORD}: required, or {ENV_PRIVATE_KEY_PATH} for key-pair authentication")
    return kwargs


def connect(config: ConnectionConfig) -> Any:
    import snowflake.connector

    return snowflake.connector.connect(**connect_kwargs(config))


# ---------------------------------------------------------------------------------------------------- rendering

def _template(name: str) -> string.Template:
    """A template file without its leading '--' comment lines (they explain the SQL; Snowflake needs none)."""
    lines = (TEMPLATE_DIR / f"{name}.sql").read_text().splitlines()
    body = [line for line in lines if not line.lstrip().startswith("--")]
    return string.Template("\n".join(body).strip())


def render_template(name: str, **values: Sql) -> str:
    """Fill a template with SQL fragments only; a raw str, a missing or an unused value is a programming error."""
    template = _template(name)
    for key, value in values.items():
        if not isinstance(value, Sql):
            raise TypeError(f"{name}.sql: ${key} must be built by quote_ident() or sql_string(), got raw text")
    expected = set(template.get_identifiers())
    if expected != set(values):
        raise KeyError(f"{name}.sql: placeholders {sorted(expected)}, values {sorted(values)}")
    return template.substitute(values)


def _silver_table(config: SetupConfig, table: SilverTable) -> Sql:
    return quote_ident(config.database, config.silver_schema, table.name)


def _stage(config: SetupConfig) -> Sql:
    return quote_ident(config.database, config.silver_schema, config.stage)


def render_objects(config: SetupConfig) -> list[Statement]:
    """Database, schemas, storage integration, stage and the Silver external tables."""
    if config.aws_role_arn is None:
        raise ConfigError(f"{ENV_AWS_ROLE_ARN}: required to render the storage integration "
                          f"(the IAM role Snowflake assumes to read s3://{config.bucket}/)")
    database = quote_ident(config.database)
    statements = [
        Statement("create_database", render_template("create_database", database=database)),
        Statement("create_silver_schema", render_template(
            "create_schema", schema=quote_ident(config.database, config.silver_schema))),
        Statement("create_gold_schema", render_template(
            "create_schema", schema=quote_ident(config.database, config.gold_schema))),
        Statement("create_storage_integration", render_template(
            "create_storage_integration", integration=quote_ident(config.storage_integration),
            role_arn=sql_string(config.aws_role_arn),
            allowed_locations=Sql(", ".join(sql_string(loc) for loc in config.allowed_locations)))),
        Statement("create_stage", render_template(
            "create_stage", stage=_stage(config), url=sql_string(config.stage_url),
            integration=quote_ident(config.storage_integration))),
    ]
    for table in SILVER_TABLES:
        statements.append(Statement(f"create_external_table_{table.key}", render_template(
            "create_external_table", table=_silver_table(config, table), stage=_stage(config),
            path=stage_path(table.path))))
    return statements


def render_grants(config: SetupConfig) -> list[Statement]:
    """The reader role: USAGE down to the Silver tables, SELECT on them, and building rights on Gold only."""
    role = quote_ident(config.reader_role)
    statements = [
        Statement("create_reader_role", render_template("create_role", role=role)),
        Statement("grant_warehouse_usage", render_template(
            "grant_warehouse_usage", warehouse=quote_ident(config.warehouse), role=role)),
        Statement("grant_database_usage", render_template(
            "grant_database_usage", database=quote_ident(config.database), role=role)),
        Statement("grant_silver_schema_usage", render_template(
            "grant_schema_usage", schema=quote_ident(config.database, config.silver_schema), role=role)),
        Statement("grant_stage_usage", render_template("grant_stage_usage", stage=_stage(config), role=role)),
    ]
    for table in SILVER_TABLES:
        statements.append(Statement(f"grant_select_{table.key}", render_template(
            "grant_select_external_table", table=_silver_table(config, table), role=role)))
    statements.append(Statement("grant_gold_schema", render_template(
        "grant_gold_schema", schema=quote_ident(config.database, config.gold_schema), role=role)))
    return statements


def render_refresh(config: SetupConfig) -> list[Statement]:
    return [Statement(f"refresh_{table.key}", render_template(
        "refresh_external_table", table=_silver_table(config, table))) for table in SILVER_TABLES]


def gold_marts(variables: Mapping[str, Any], models_dir: Path = MARTS_DIR) -> tuple[str, ...]:
    """The table names of the Gold marts dbt builds with these vars (conf.dbt_vars), as Snowflake resolves dbt's
    unquoted names (upper case): every model of the marts folder but those a var turns off (a table dbt does not
    build does not exist, and a GRANT on it would fail)."""
    return tuple(sorted(path.stem.upper() for path in Path(models_dir).glob("*.sql")
                        if mart_enabled(path.with_suffix(".yml"), variables)))


def mart_enabled(spec: Path, variables: Mapping[str, Any]) -> bool:
    """Whether dbt builds the mart its .yml describes: its config's `enabled`, true by default, or the var it names."""
    if not spec.is_file():
        return True
    models = {model["name"]: model for model in yaml.safe_load(spec.read_text()).get("models") or []}
    enabled = (models.get(spec.stem, {}).get("config") or {}).get("enabled", True)
    if isinstance(enabled, bool):
        return enabled
    switch = ENABLED_BY_VAR.fullmatch(str(enabled).strip())
    if switch is None:
        raise ValueError(f"{spec.name}: enabled is {enabled!r}, neither true/false nor {{{{ var('NAME') }}}}")
    return bool(variables[switch.group(1)])


def render_bi_grants(config: SetupConfig, marts: Sequence[str] | None = None) -> list[Statement]:
    """SELECT on each Gold mart dbt builds (config.bi_marts, unless `marts` names them) for the BI role
    (docs/powerbi.md), and nothing else: not the staging or intermediate views, not the seeds, not Silver. None
    without a BI role. Idempotent: a table dbt replaced with COPY GRANTS keeps its grant; a new mart gets one here."""
    if config.bi_role is None:
        return []
    role = quote_ident(config.bi_role)
    return [Statement(f"grant_bi_select_{mart.lower()}", render_template(
        "grant_select_table", table=quote_ident(config.database, config.gold_schema, mart), role=role))
        for mart in (config.bi_marts if marts is None else marts)]


def render_all(config: SetupConfig) -> list[Statement]:
    """The whole setup in execution order. It ends with a first refresh because the external tables are created
    with REFRESH_ON_CREATE = FALSE and are empty until then."""
    return render_objects(config) + render_grants(config) + render_refresh(config)


def refresh_statements(config: SetupConfig) -> list[str]:
    """The SQL the refresh task runs, one ALTER EXTERNAL TABLE ... REFRESH per Silver table."""
    return [statement.sql for statement in render_refresh(config)]


PARTS = {"setup": render_all, "refresh": render_refresh, "bi_grants": render_bi_grants}


def render_part(config: SetupConfig, part: str) -> list[Statement]:
    if part not in PARTS:
        raise ConfigError(f"--part: {_show(part)} is not one of {', '.join(PARTS)}")
    return PARTS[part](config)


def select(statements: Sequence[Statement], only: str | None) -> list[Statement]:
    """All statements, or the one named by --only."""
    if only is None:
        return list(statements)
    chosen = [statement for statement in statements if statement.name == only]
    if not chosen:
        raise ConfigError(f"--only: no statement named {_show(only)}; "
                          f"known: {', '.join(statement.name for statement in statements)}")
    return chosen


def script(statements: Iterable[Statement]) -> str:
    """A runnable SQL script: each statement under a comment with its name, ending with ';'."""
    return "\n\n".join(f"-- {statement.name}\n{statement.sql};" for statement in statements) + "\n"


# ---------------------------------------------------------------------------------------------------- execution

@dataclass(frozen=True)
class Executed:
    name: str
    sql: str
    query_id: str | None  # Snowflake's query id, to find the statement in the query history


class StatementFailed(RuntimeError):
    """A statement Snowflake refused; the message names the statement, the cause is the connector's error."""

    def __init__(self, statement: Statement, error: Exception):
        super().__init__(f"{statement.name} failed: {error}")
        self.statement = statement


def execute(connection: Any, statements: Iterable[Statement]) -> list[Executed]:
    """Run statements in order on one cursor, stopping at the first one that fails.

    Every statement is idempotent (IF NOT EXISTS, GRANT, REFRESH), so after a fix the whole list can be re-run.
    """
    done: list[Executed] = []
    with connection.cursor() as cursor:
        for statement in statements:
            log.info("snowflake: running %s", statement.name)
            try:
                cursor.execute(statement.sql)
            except Exception as exc:
                raise StatementFailed(statement, exc) from exc
            done.append(Executed(statement.name, statement.sql, getattr(cursor, "sfqid", None)))
    return done


def apply(connection: Any, config: SetupConfig, only: str | None = None) -> list[Executed]:
    return execute(connection, select(render_all(config), only))


def refresh(connection: Any, config: SetupConfig) -> list[Executed]:
    """Refresh every Silver external table; what the Airflow DAG calls after Silver commits."""
    return execute(connection, render_refresh(config))


# ---------------------------------------------------------------------------------------------------------- CLI

def _redact(text: str, environ: Mapping[str, str]) -> str:
    """Belt and braces: strip any secret value from text that is about to be printed, and keep it one line."""
    for name in SECRET_ENV:
        secret = environ.get(name)
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snowflake_setup.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["render", "apply", "refresh"],
                        help="render: print the SQL; apply: run it; refresh: refresh the Silver external tables")
    parser.add_argument("--part", choices=list(PARTS), default="setup",
                        help="which statements: setup (default), refresh, bi_grants")
    parser.add_argument("--only", metavar="NAME", help="only the statement with this name (see render's output)")
    parser.add_argument("--json", action="store_true",
                        help="render: one JSON line, [{name, sql}, ...], for the Airflow tasks")
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        config = load_config(env)
        part = "refresh" if args.command == "refresh" else args.part
        statements = select(render_part(config, part), args.only)
        if args.command == "render":
            sys.stdout.write(json.dumps([{"name": s.name, "sql": s.sql} for s in statements]) + "\n" if args.json
                             else script(statements))
            return 0
        connection_config = load_connection_config(env)
        return _run(connection_config, statements, env)
    except ConfigError as exc:
        return _fail(str(exc), env, 2)


def _run(connection_config: ConnectionConfig, statements: list[Statement], env: Mapping[str, str]) -> int:
    import snowflake.connector.errors

    try:
        connection = connect(connection_config)
    except snowflake.connector.errors.Error as exc:
        return _fail(f"cannot connect to {connection_config.account}: {exc}", env, 1)
    try:
        done = execute(connection, statements)
    except StatementFailed as exc:
        return _fail(str(exc), env, 1)
    finally:
        connection.close()
    log.info("snowflake: %d statement(s) done", len(done))
    return 0


def _fail(message: str, env: Mapping[str, str], code: int) -> int:
    print(f"snowflake_setup: {_redact(message, env)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    # Statement names go to stderr as they run; the SQL of `render` alone goes to stdout.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    sys.exit(main())
