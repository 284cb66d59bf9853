"""A copy of the pipeline's code with its contract changed, to run as a user would run an older or an edited
checkout: spark-submit <copy>/spark_jobs/<job>.py reads <copy>/conf (the job puts its own checkout first on
sys.path), so only the copy's schemas differ from this checkout's."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

from tests.integration.stack import REPO

PACKAGES = ("conf", "spark_jobs")


def code_copy(dest: Path, edit: Callable[[Path], None]) -> Path:
    """Copy the job packages to dest, apply edit(dest / 'conf' / 'schemas'), return dest."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    edit(dest / "conf" / "schemas")
    return dest


def edit_schema(schemas: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = schemas / f"{name}.json"
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema, indent=2))


def job_command(command: list[str], copy: Path) -> list[str]:
    """A spark-submit command of this checkout (stack.stream_command, ...) with its job file taken from copy."""
    jobs = [i for i, arg in enumerate(command) if arg.startswith(str(REPO / "spark_jobs") + "/")]
    assert len(jobs) == 1, command
    job = Path(command[jobs[0]])
    return [*command[:jobs[0]], str(copy / "spark_jobs" / job.name), *command[jobs[0] + 1:]]
