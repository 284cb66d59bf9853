"""The code's layering rules, checked on the source: what docs/CONTRIBUTING.md asks of new code."""
from __future__ import annotations

import ast
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ["conf", "producer", "spark_jobs", "dashboard", "bench", "scripts", "docker", "airflow", "jars"]


def product_files() -> list[Path]:
    return sorted(path for top in PRODUCT for path in (REPO / top).rglob("*.py"))


def edits_sys_path(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
                and node.value.id == "sys":
            return True
    return False


def test_no_product_file_touches_sys_path():
    """The project is installed in its environment: no entry point puts the checkout on sys.path itself."""
    offenders = [str(path.relative_to(REPO)) for path in product_files() if edits_sys_path(ast.parse(path.read_text()))]
    assert offenders == []


def test_the_project_is_installed_in_its_environment(tmp_path):
    assert metadata.distribution("stocklake").version == "0.1.0"
    # From elsewhere, without PYTHONPATH: the installed project, the checkout's files.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", "import conf, producer, spark_jobs, dashboard, bench, scripts; "
                             "print(spark_jobs.__file__)"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(REPO / "spark_jobs" / "__init__.py")
