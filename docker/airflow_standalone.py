"""Start Airflow 3 standalone in the compose stack (the airflow service of docker/compose.yaml).

    python docker/airflow_standalone.py

The environment is scripts/airflow_env.py's, the one `make airflow` uses, with what differs in a container:
- the API server and UI listen on all interfaces (AIRFLOW__API__HOST=0.0.0.0), so the published port reaches them;
- SPARK_LOCAL_IP is not pinned to 127.0.0.1 (unless compose sets it): the Spark jobs run on the compose cluster
  (AIRFLOW_CONN_SPARK_DEFAULT), whose executors must reach the driver in this container at its own address;
- the admin password is AIRFLOW_ADMIN_PASSWORD (docker/.env), written to the simple auth manager's password file
  (mode 600) on every start, so changing it in .env and restarting takes effect; it is never printed, and it is
  removed from the environment Airflow and its tasks get.
AIRFLOW_HOME is the one compose sets (a named volume), or .lake/airflow in the checkout without it.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Mapping

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import airflow_env  # noqa: E402

# The variable's name, not a password (ruff's S105 and detect-secrets take the name for one).
PASSWORD_ENV = "AIRFLOW_ADMIN_PASSWORD"  # noqa: S105  # pragma: allowlist secret
PORT = 8080


def container_environment(base: Mapping[str, str], airflow_home: Path, port: int = PORT) -> dict[str, str]:
    """airflow_env's environment for this checkout, adjusted for a container (see the module docstring)."""
    env = airflow_env.airflow_environment(repo=REPO, airflow_home=airflow_home, port=port, base=base)
    # All interfaces of the container, so its published port reaches the API server; compose.yaml publishes it on
    # the host's 127.0.0.1 only.
    env["AIRFLOW__API__HOST"] = "0.0.0.0"  # noqa: S104 - the container's interfaces, not the host's
    if "SPARK_LOCAL_IP" not in base:
        env.pop("SPARK_LOCAL_IP", None)
    env.pop(PASSWORD_ENV, None)
    return env


def write_password_file(airflow_home: Path, password: str) -> Path:
    """The simple auth manager's password file for admin, replaced atomically, readable by this user only."""
    path = Path(airflow_home) / airflow_env.ADMIN_PASSWORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps({airflow_env.ADMIN_USER: password}) + "\n")
    tmp.replace(path)
    return path


def main() -> int:
    password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        print(f"airflow_standalone: {PASSWORD_ENV} must be set (docker/.env)", file=sys.stderr)
        return 2
    home = Path(os.environ.get("AIRFLOW_HOME") or airflow_env.default_airflow_home(REPO))
    write_password_file(home, password)
    env = container_environment(os.environ, home)
    command = ["airflow", "standalone"]
    # S606: exec without a shell is the point (airflow becomes the container's main process and gets its signals).
    os.execvpe(command[0], command, env)  # noqa: S606 - resolved on the computed PATH: .venv-airflow's airflow


if __name__ == "__main__":
    sys.exit(main())
