"""tests/conftest.py's load groups reach pytest-xdist: every test that uses a shared session fixture (the lake, the
Airflow home, the secured stream, the fault stack) runs on one worker, and so do the tests of a module that share a
module-scoped fixture, so each fixture is built once per run.

Checked by running pytest on 2 workers over scratch test files, one whose tests share a fixture named like the
lake, one whose tests share a module fixture: each test records the worker it ran on."""
from __future__ import annotations

import os
import subprocess
import sys

SHARED_TESTS = 6

CONFTEST = """
import os
from pathlib import Path

import pytest

from tests.conftest import LOAD_GROUPS, pytest_collection_modifyitems  # noqa: F401 (the hook under test)

assert "lake" in LOAD_GROUPS


@pytest.fixture(scope="session")
def lake():
    return Path(os.environ["WORKERS_SEEN"]) / "lake"
"""


def scratch_tests(fixture: str, preamble: str = "") -> str:
    """SHARED_TESTS tests using `fixture` (a folder) to record their worker, between as many using none."""
    return "import os\n" + preamble + "\n".join(f"""
def test_shares_{fixture}_{index}({fixture}):
    with ({fixture} / "{index}").open("w") as seen:
        seen.write(os.environ["PYTEST_XDIST_WORKER"])


def test_needs_no_fixture_{index}():
    pass
""" for index in range(SHARED_TESTS))


MODULE_FIXTURE = """
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def table():
    return Path(os.environ["WORKERS_SEEN"]) / "table"
"""


def test_tests_sharing_a_session_or_module_fixture_run_on_one_worker(tmp_path):
    scratch = tmp_path / "suite"
    scratch.mkdir()
    (scratch / "conftest.py").write_text(CONFTEST)
    (scratch / "test_shared.py").write_text(scratch_tests("lake"))
    (scratch / "test_module.py").write_text(scratch_tests("table", MODULE_FIXTURE))
    seen = tmp_path / "seen"
    for fixture in ("lake", "table"):
        (seen / fixture).mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(scratch), str(scratch)],
        env={**os.environ, "WORKERS_SEEN": str(seen)}, cwd=tmp_path,
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for fixture in ("lake", "table"):
        workers = {path.name: path.read_text() for path in (seen / fixture).iterdir()}
        assert len(workers) == SHARED_TESTS, fixture
        assert len(set(workers.values())) == 1, (fixture, workers)
