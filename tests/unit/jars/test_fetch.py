"""jars/fetch.py's spark-defaults.conf: the JVM settings from conf/spark/spark-defaults.conf plus the verified jars."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def load_fetch():
    spec = importlib.util.spec_from_file_location("jars_fetch", REPO / "jars" / "fetch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def settings_of(text: str) -> dict[str, str]:
    """spark-defaults.conf's key -> value (Spark splits each non-comment line at its first whitespace)."""
    pairs = [line.split(None, 1) for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return {key: value for key, value in pairs}


def test_spark_defaults_hold_the_jvm_settings_and_the_jars(tmp_path, monkeypatch):
    fetch = load_fetch()
    jars = [Path("/cache/maven/a/a-1.jar"), Path("/cache/maven/b/b-2.jar")]
    monkeypatch.setattr(fetch, "fetch", lambda name: jars if name == "spark" else [])
    target = tmp_path / "spark-conf" / "spark-defaults.conf"

    assert fetch.main(["spark", "--spark-defaults", str(target)]) == 0

    written = settings_of(target.read_text())
    assert written == {
        # Huge generated methods (the contract check) JIT-compiled, the throughput GC: driver and executors alike.
        "spark.driver.defaultJavaOptions": "-XX:-DontCompileHugeMethods -XX:+UseParallelGC",
        "spark.executor.defaultJavaOptions": "-XX:-DontCompileHugeMethods -XX:+UseParallelGC",
        # Room for every generated class a micro-batch uses: none compiled again each batch.
        "spark.sql.codegen.cache.maxEntries": "500",
        # Read in place: spark.jars would copy every jar (686 MB) into each executor's scratch folder.
        "spark.driver.extraClassPath": "/cache/maven/a/a-1.jar:/cache/maven/b/b-2.jar",
        "spark.executor.extraClassPath": "/cache/maven/a/a-1.jar:/cache/maven/b/b-2.jar",
    }
    assert "spark.jars" not in written
