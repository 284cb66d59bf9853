#!/usr/bin/env python3
"""The environment of every Airflow process (`make airflow`, the DAG tests): computed here and nowhere else.

  python3 scripts/airflow_env.py [--home DIR] [--port N] run -- COMMAND...   run COMMAND in that environment
  python3 scripts/airflow_env.py [--home DIR] [--port N] show                print it, secrets masked
  python3 scripts/airflow_env.py [--home DIR] admin-password-file            create the admin password file
                                                                             (once, mode 600); print its path
  python scripts/airflow_env.py container                                    start `airflow standalone` in the
                                                                             compose stack (docker/compose.yaml)

Airflow runs from its own environment (.venv-airflow) and launches the jobs in the job environment (.venv):
- PATH: .venv-airflow/bin first (airflow, python), then .venv/bin, so `spark-submit` (the Spark provider runs the
  bare name found on PATH) and `dbt` resolve to the job environment's, whose pyspark has the jars.
- PYTHONPATH is removed: neither the job environment's packages nor the checkout (whose top-level `airflow/`
  folder is not the airflow package) belong on Airflow's path. DAG files still import `stocklake_airflow`: Airflow
  puts the plugins folder on sys.path itself. Job code runs as commands of the job environment (STOCKLAKE_JOB_PYTHON,
  spark-submit), in the checkout (STOCKLAKE_REPO).
- What spark-submit needs, inherited by the task processes: SPARK_HOME (the job environment's pyspark),
  PYSPARK_PYTHON (the job environment's python, for the driver and the workers), SPARK_CONF_DIR (spark-defaults
  with the pinned jars, from `make setup`), SPARK_LOCAL_IP, and the local MinIO credentials from
  .lake/credentials.env unless AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are already set.
- Connections by environment variable: AIRFLOW_CONN_SPARK_DEFAULT defaults to the local master local[2] (a value
  already set wins, e.g. a spark:// cluster); AIRFLOW_CONN_SNOWFLAKE_DEFAULT (the Snowflake provider's connection,
  stocklake_airflow.warehouse) is built from the SNOWFLAKE_* variables docs/snowflake.md lists when SNOWFLAKE_ACCOUNT
  is set (a value already set wins); AIRFLOW_CONN_SLACK_ALERTS passes through only when set.
- In a container (`container`, the airflow service of docker/compose.yaml), what differs: the API server and UI
  listen on all interfaces (AIRFLOW__API__HOST=0.0.0.0), so the published port reaches them; SPARK_LOCAL_IP is not
  pinned to 127.0.0.1 unless compose sets it (the jobs run on the compose cluster, whose executors must reach the
  driver at the container's own address); the admin password is AIRFLOW_ADMIN_PASSWORD (docker/.env), written to the
  simple auth manager's password file (mode 600) on every start, never printed, and removed from the environment.
- Airflow itself: AIRFLOW_HOME (default .lake/airflow), a SQLite database in it, the DAGs and plugins of this
  checkout, no examples, the API server on 127.0.0.1:<port>, the task runners' Execution API on that port, and at
  most 4 tasks at once (AIRFLOW__CORE__PARALLELISM, unless already set).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Mapping

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PORT = 8080
# Removed from the inherited environment: they would put another environment's packages on Airflow's path.
DROPPED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
# Values never printed by `show` (and never by anything else here).
SECRET_MARKERS = ("SECRET", "PASSWORD", "PASSPHRASE", "TOKEN", "API_KEY", "PRIVATE_KEY", "AIRFLOW_CONN_", "JWT",
                  "FERNET")
LOCAL_SPARK_CONNECTION = {"conn_type": "spark", "host": "local[2]"}
LOCAL_PARALLELISM = 4
# The simple auth manager's default file and user (what `airflow standalone` would generate and print).
# (A file name, not a password: ruff's S105 and detect-secrets take the name for one, hence the two comments.)
ADMIN_PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"  # noqa: S105  # pragma: allowlist secret
ADMIN_USER = "admin"
# The container's admin password variable's name, not a password (ruff's S105 and detect-secrets take it for one).
CONTAINER_PASSWORD_ENV = "AIRFLOW_ADMIN_PASSWORD"  # noqa: S105  # pragma: allowlist secret


def runtime_dir(repo: Path = REPO) -> Path:
    """The clone's runtime folder (.lake), where `make setup` puts spark-conf and credentials.env."""
    return repo / ".lake"


def default_airflow_home(repo: Path = REPO) -> Path:
    return runtime_dir(repo) / "airflow"


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines (as `make setup` writes .lake/credentials.env); missing file -> {}."""
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip().strip("'\"")
    return values


def job_spark_home(job_venv: Path) -> Path:
    """The pyspark package of the job environment (a full Spark distribution, as pip installs it)."""
    found = sorted(job_venv.glob("lib/python3*/site-packages/pyspark"))
    return found[0] if found else job_venv / "lib" / "python3.11" / "site-packages" / "pyspark"


def airflow_environment(repo: Path = REPO, airflow_home: Path | None = None, port: int = DEFAULT_PORT,
                        base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The full environment (base = os.environ by default) for an Airflow process of this checkout."""
    repo = Path(repo).resolve()
    home = Path(airflow_home or default_airflow_home(repo)).resolve()
    airflow_bin = repo / ".venv-airflow" / "bin"
    job_venv = repo / ".venv"
    job_bin = job_venv / "bin"
    env = {key: value for key, value in (os.environ if base is None else base).items() if key not in DROPPED}

    inherited_path = [p for p in env.get("PATH", os.defpath).split(os.pathsep)
                      if p and Path(p).resolve() not in (airflow_bin.resolve(), job_bin.resolve())]
    api_url = f"http://127.0.0.1:{port}"
    env.update({
        "PATH": os.pathsep.join([str(airflow_bin), str(job_bin), *inherited_path]),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "airflow" / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(repo / "airflow" / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # Local only: the UI/API listens on loopback; task runners reach the Execution API on the same port.
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": api_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "STOCKLAKE_REPO": str(repo),
        "STOCKLAKE_JOB_PYTHON": str(job_bin / "python"),
        "SPARK_HOME": str(job_spark_home(job_venv)),
        "PYSPARK_PYTHON": str(job_bin / "python"),
    })
    env.setdefault("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps(LOCAL_SPARK_CONNECTION))
    snowflake = snowflake_connection(env)
    if snowflake is not None:
        env.setdefault("AIRFLOW_CONN_SNOWFLAKE_DEFAULT", json.dumps(snowflake))
    # Each Spark task is a JVM with a 2 GB driver: a laptop runs a few at once, not Airflow's default 32.
    env.setdefault("AIRFLOW__CORE__PARALLELISM", str(LOCAL_PARALLELISM))
    env.setdefault("SPARK_CONF_DIR", str(runtime_dir(repo) / "spark-conf"))
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    credentials = read_env_file(runtime_dir(repo) / "credentials.env")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        if key in credentials:
            env.setdefault(key, credentials[key])
    return env


def snowflake_connection(env: Mapping[str, str]) -> dict | None:
    """The Snowflake provider's connection from the SNOWFLAKE_* variables (password, or key pair: the key file's
    path in the extras, its passphrase in the password field, as the provider reads them); None without an account.
    The values are checked where they are used: names by scripts/snowflake_setup.py, credentials by Snowflake."""
    def value(name: str) -> str:
        return env.get(name, "").strip()

    if not value("SNOWFLAKE_ACCOUNT"):
        return None
    key_file = value("SNOWFLAKE_PRIVATE_KEY_PATH")
    extra = {"account": value("SNOWFLAKE_ACCOUNT"), "warehouse": value("SNOWFLAKE_WAREHOUSE"),
             "database": value("SNOWFLAKE_DATABASE") or "STOCKLAKE", "role": value("SNOWFLAKE_ROLE"),
             "private_key_file": str(Path(key_file).expanduser()) if key_file else "",
             # The tag finds Airflow's statements in Snowflake's query history.
             "session_parameters": {"QUERY_TAG": "stocklake:airflow"}}
    connection = {"conn_type": "snowflake", "login": value("SNOWFLAKE_USER"),
                  "extra": {key: item for key, item in extra.items() if item}}
    password = env.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE" if key_file else "SNOWFLAKE_PASSWORD", "")
    if password:
        connection["password"] = password
    return connection


def is_secret(name: str) -> bool:
    return any(marker in name.upper() for marker in SECRET_MARKERS)


def ensure_admin_password_file(airflow_home: Path) -> Path:
    """Create the simple auth manager's password file for `admin` (mode 600) unless it exists.

    Generating it here, silently, means `airflow standalone` finds a password already there and never prints it
    to the terminal (or to whatever captures the terminal).
    """
    path = Path(airflow_home) / ADMIN_PASSWORD_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps({ADMIN_USER: secrets.token_urlsafe(12)}) + "\n")
    return path


def container_environment(base: Mapping[str, str], airflow_home: Path, port: int = DEFAULT_PORT) -> dict[str, str]:
    """This checkout's Airflow environment, adjusted for a container (see the module docstring)."""
    env = airflow_environment(airflow_home=airflow_home, port=port, base=base)
    # All interfaces of the container, so its published port reaches the API server; compose.yaml publishes it on
    # the host's 127.0.0.1 only.
    env["AIRFLOW__API__HOST"] = "0.0.0.0"  # noqa: S104 - the container's interfaces, not the host's
    if "SPARK_LOCAL_IP" not in base:
        env.pop("SPARK_LOCAL_IP", None)
    env.pop(CONTAINER_PASSWORD_ENV, None)
    return env


def write_password_file(airflow_home: Path, password: str) -> Path:
    """The simple auth manager's password file for admin, replaced atomically, readable by this user only."""
    path = Path(airflow_home) / ADMIN_PASSWORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps({ADMIN_USER: password}) + "\n")
    tmp.replace(path)
    return path


def start_in_container() -> int:
    """`airflow standalone` as the container's main process, with the password from the environment."""
    password = os.environ.get(CONTAINER_PASSWORD_ENV, "")
    if not password:
        print(f"airflow_env: {CONTAINER_PASSWORD_ENV} must be set (docker/.env)", file=sys.stderr)
        return 2
    home = Path(os.environ.get("AIRFLOW_HOME") or default_airflow_home())
    write_password_file(home, password)
    command = ["airflow", "standalone"]
    # S606: exec without a shell is the point (airflow becomes the container's main process and gets its signals).
    os.execvpe(command[0], command, container_environment(os.environ, home))  # noqa: S606 - .venv-airflow's airflow


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="AIRFLOW_HOME (default .lake/airflow)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="API server / UI port (default 8080)")
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="run a command in the Airflow environment")
    run.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("show", help="print the environment, secrets masked")
    sub.add_parser("admin-password-file", help="create the admin password file if missing; print its path")
    sub.add_parser("container", help="start airflow standalone in the compose stack (AIRFLOW_ADMIN_PASSWORD)")
    args = parser.parse_args(argv)
    if args.action == "container":
        return start_in_container()
    if not 0 < args.port < 65536:
        print(f"airflow_env: --port must be 1-65535, got {args.port}", file=sys.stderr)
        return 2
    env = airflow_environment(airflow_home=args.home, port=args.port)
    home = Path(env["AIRFLOW_HOME"])
    if args.action == "admin-password-file":
        print(ensure_admin_password_file(home))
        return 0
    if args.action == "show":
        for key in sorted(env):
            print(f"{key}={'<set>' if is_secret(key) else env[key]}")
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("airflow_env: run needs a command, e.g. run -- airflow standalone", file=sys.stderr)
        return 2
    home.mkdir(parents=True, exist_ok=True)
    # S606: exec without a shell is the point (the command replaces this process, signals reach it directly).
    os.execvpe(command[0], command, env)  # noqa: S606 - resolved on the computed PATH: .venv-airflow's airflow


if __name__ == "__main__":
    sys.exit(main())
