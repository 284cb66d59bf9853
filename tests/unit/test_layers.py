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


JOBS = sorted(path.stem for path in (REPO / "spark_jobs").glob("*.py") if path.stem != "__init__")


def imported_modules(tree: ast.AST) -> set[str]:
    """Every module an import statement names, at module level or inside a function."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_the_jobs_are_the_files_spark_submit_and_airflow_start():
    assert JOBS == ["backfill", "compact", "data_quality", "freshness", "reconcile", "report", "reprocess",
                    "retention", "silver_changes", "stream", "vacuum", "watchdog"]


def test_no_product_code_imports_a_job():
    """Jobs never import jobs; the library tier (spark_jobs/lib), bench, dashboard and scripts import no job either:
    what two of them need lives in spark_jobs/lib."""
    job_modules = {f"spark_jobs.{job}" for job in JOBS}
    offenders = {}
    for path in product_files():
        own = ".".join(path.relative_to(REPO).with_suffix("").parts)
        imported = (imported_modules(ast.parse(path.read_text())) & job_modules) - {own}
        if imported:
            offenders[str(path.relative_to(REPO))] = sorted(imported)
    assert offenders == {}


def test_conf_imports_nothing_above_it():
    """conf/ (settings, contracts) is the bottom layer: the producer, the jobs, the dashboard and the tests import it."""
    above = ("producer", "spark_jobs", "dashboard", "bench", "scripts", "airflow", "tests")
    offenders = {str(path.relative_to(REPO)): sorted(name for name in imported_modules(ast.parse(path.read_text()))
                                                     if name.split(".")[0] in above)
                 for path in sorted((REPO / "conf").rglob("*.py"))}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_airflow_plugin_has_no_import_circle():
    """stocklake_airflow's modules import each other one way (environment at the bottom), so none needs a
    function-level import to dodge a circle."""
    package = REPO / "airflow" / "plugins" / "stocklake_airflow"
    graph = {path.stem: {name.split(".")[1] for name in imported_modules(ast.parse(path.read_text()))
                         if name.startswith("stocklake_airflow.") and name.count(".") == 1}
             for path in package.glob("*.py") if path.stem != "__init__"}
    order = []
    while graph:
        ready = sorted(name for name, deps in graph.items() if not deps - set(order))
        assert ready, f"an import circle among {sorted(graph)}: {graph}"
        order += ready
        graph = {name: deps for name, deps in graph.items() if name not in ready}
    assert order[0] in ("assets", "environment") and order.index("environment") < order.index("alerts") \
        < order.index("jobs")


MAX_FUNCTION_LINES = 60


def function_lengths(path: Path) -> dict[str, int]:
    """{name: lines of its body after the docstring} of every function and method in the file."""
    lengths = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0]
            docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                and isinstance(first.value.value, str)
            start = first.end_lineno if docstring else node.lineno
            lengths[node.name] = max(lengths.get(node.name, 0), node.end_lineno - start)
    return lengths


def test_no_function_a_reader_cannot_hold_in_their_head():
    too_long = {f"{path.relative_to(REPO)}:{name}": lines for path in product_files()
                for name, lines in function_lengths(path).items() if lines > MAX_FUNCTION_LINES}
    assert too_long == {}


def test_the_project_is_installed_in_its_environment(tmp_path):
    assert metadata.distribution("stocklake").version == "0.1.0"
    # From elsewhere, without PYTHONPATH: the installed project, the checkout's files.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", "import conf, producer, spark_jobs, dashboard, bench, scripts; "
                             "print(spark_jobs.__file__)"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(REPO / "spark_jobs" / "__init__.py")
