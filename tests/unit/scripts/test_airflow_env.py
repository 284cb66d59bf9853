"""scripts/airflow_env.py: the environment every Airflow process of the checkout gets."""
from __future__ import annotations

import json
import stat

from scripts.airflow_env import airflow_environment, ensure_admin_password_file, is_secret


def make_checkout(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".venv" / "lib" / "python3.11" / "site-packages" / "pyspark").mkdir(parents=True)
    (repo / ".venv-airflow" / "bin").mkdir(parents=True)
    (repo / ".lake").mkdir()
    (repo / ".lake" / "credentials.env").write_text("AWS_ACCESS_KEY_ID=lake-abc\nAWS_SECRET_ACCESS_KEY=s3cr3t\n")
    return repo


def test_the_airflow_environment_of_a_checkout(tmp_path):
    repo = make_checkout(tmp_path)
    base = {"PATH": f"{repo}/.venv/bin:/usr/bin:{repo}/.venv-airflow/bin:/bin", "PYTHONPATH": str(repo),
            "VIRTUAL_ENV": f"{repo}/.venv", "HOME": "/home/me", "STOCKLAKE_LAKE_BUCKET": "mine"}
    env = airflow_environment(repo, port=18080, base=base)
    # The Airflow environment first, then the job environment (spark-submit, dbt), then the rest, once each.
    assert env["PATH"] == f"{repo}/.venv-airflow/bin:{repo}/.venv/bin:/usr/bin:/bin"
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env
    assert {key: env[key] for key in env if key not in ("PATH",)} == {
        "HOME": "/home/me",
        "STOCKLAKE_LAKE_BUCKET": "mine",
        "AIRFLOW_HOME": f"{repo}/.lake/airflow",
        "AIRFLOW__CORE__DAGS_FOLDER": f"{repo}/airflow/dags",
        "AIRFLOW__CORE__PLUGINS_FOLDER": f"{repo}/airflow/plugins",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{repo}/.lake/airflow/airflow.db",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": "18080",
        "AIRFLOW__API__BASE_URL": "http://127.0.0.1:18080",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.0.1:18080/execution/",
        "AIRFLOW_CONN_SPARK_DEFAULT": '{"conn_type": "spark", "host": "local[2]"}',
        "STOCKLAKE_REPO": str(repo),
        "STOCKLAKE_JOB_PYTHON": f"{repo}/.venv/bin/python",
        "SPARK_HOME": f"{repo}/.venv/lib/python3.11/site-packages/pyspark",
        "PYSPARK_PYTHON": f"{repo}/.venv/bin/python",
        "SPARK_CONF_DIR": f"{repo}/.lake/spark-conf",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "AWS_ACCESS_KEY_ID": "lake-abc",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",  # pragma: allowlist secret
    }


def test_connections_and_credentials_the_user_set_win(tmp_path):
    repo = make_checkout(tmp_path)
    spark = json.dumps({"conn_type": "spark", "host": "spark://spark-master:7077"})
    slack = json.dumps({"conn_type": "slackwebhook", "password": "https://hooks.slack.com/services/T/B/X"})
    env = airflow_environment(repo, airflow_home=tmp_path / "home", base={
        "PATH": "/bin", "AIRFLOW_CONN_SPARK_DEFAULT": spark, "AIRFLOW_CONN_SLACK_ALERTS": slack,
        "AWS_ACCESS_KEY_ID": "prod-key", "AWS_SECRET_ACCESS_KEY": "prod-secret"})
    assert (env["AIRFLOW_CONN_SPARK_DEFAULT"], env["AIRFLOW_CONN_SLACK_ALERTS"]) == (spark, slack)
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("prod-key", "prod-secret")
    assert env["AIRFLOW_HOME"] == str(tmp_path / "home")
    assert env["AIRFLOW__API__PORT"] == "8080"
    # Slack only when the user configured it.
    assert "AIRFLOW_CONN_SLACK_ALERTS" not in airflow_environment(repo, base={"PATH": "/bin"})


def test_the_admin_password_file_is_created_once_and_private(tmp_path):
    path = ensure_admin_password_file(tmp_path / "home")
    first = path.read_text()
    assert path.name == "simple_auth_manager_passwords.json.generated"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(json.loads(first)) == ["admin"] and len(json.loads(first)["admin"]) >= 16
    assert ensure_admin_password_file(tmp_path / "home").read_text() == first


def test_secret_names_are_masked_by_show():
    names = ["AWS_SECRET_ACCESS_KEY", "AIRFLOW_CONN_SLACK_ALERTS", "AWS_ACCESS_KEY_ID", "PATH", "SNOWFLAKE_PASSWORD",
             "FINNHUB_API_KEY", "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", "SNOWFLAKE_USER"]
    assert [name for name in names if is_secret(name)] == [
        "AWS_SECRET_ACCESS_KEY", "AIRFLOW_CONN_SLACK_ALERTS", "SNOWFLAKE_PASSWORD", "FINNHUB_API_KEY",
        "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"]


def test_the_snowflake_connection_is_built_from_the_snowflake_environment(tmp_path):
    repo = make_checkout(tmp_path)
    snowflake = {"SNOWFLAKE_ACCOUNT": "myorg-acct", "SNOWFLAKE_USER": "airflow", "SNOWFLAKE_WAREHOUSE": "etl_wh",
                 "SNOWFLAKE_ROLE": "stocklake_reader", "SNOWFLAKE_PASSWORD": "pw-1"}  # pragma: allowlist secret
    env = airflow_environment(repo, base={"PATH": "/bin", **snowflake})
    assert json.loads(env["AIRFLOW_CONN_SNOWFLAKE_DEFAULT"]) == {
        "conn_type": "snowflake", "login": "airflow", "password": "pw-1",  # pragma: allowlist secret
        "extra": {"account": "myorg-acct", "warehouse": "etl_wh", "database": "STOCKLAKE",
                  "role": "stocklake_reader", "session_parameters": {"QUERY_TAG": "stocklake:airflow"}}}
    # Key pair: the key file in the extras, its passphrase where the provider reads it (the password field).
    key_pair = {**snowflake, "SNOWFLAKE_PASSWORD": "", "SNOWFLAKE_PRIVATE_KEY_PATH": "/keys/rsa.p8",
                "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "phrase", "SNOWFLAKE_DATABASE": "LAKE"}  # pragma: allowlist secret
    connection = json.loads(airflow_environment(repo, base={"PATH": "/bin", **key_pair})
                            ["AIRFLOW_CONN_SNOWFLAKE_DEFAULT"])
    assert (connection["password"], connection["extra"]["private_key_file"], connection["extra"]["database"]) == (
        "phrase", "/keys/rsa.p8", "LAKE")
    # No account: no connection; one the user set wins.
    assert "AIRFLOW_CONN_SNOWFLAKE_DEFAULT" not in airflow_environment(repo, base={"PATH": "/bin"})
    mine = json.dumps({"conn_type": "snowflake", "login": "someone-else"})
    assert airflow_environment(repo, base={"PATH": "/bin", **snowflake, "AIRFLOW_CONN_SNOWFLAKE_DEFAULT": mine}
                               )["AIRFLOW_CONN_SNOWFLAKE_DEFAULT"] == mine
