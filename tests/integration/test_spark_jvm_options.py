"""conf/spark/spark-defaults.conf reaches the JVM of every spark-submit, and a job's own JVM options add to it."""
from __future__ import annotations

import json
import os
import subprocess

from tests.integration.stack import REPO, SPARK_SUBMIT

PROBE = """
import json
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("jvm-options-probe").getOrCreate()
runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
print("JVM_ARGS " + json.dumps(list(runtime.getInputArguments())))
spark.stop()
"""


def test_spark_submit_jvm_gets_the_project_options_and_the_jobs_own(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    result = subprocess.run(
        [SPARK_SUBMIT, "--master", "local[1]", "--conf", "spark.ui.enabled=false",
         "--conf", "spark.driver.extraJavaOptions=-Dstocklake.probe=yes", str(probe)],
        cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("JVM_ARGS "))
    jvm_args = json.loads(line.removeprefix("JVM_ARGS "))
    # The project's (conf/spark/spark-defaults.conf, via SPARK_CONF_DIR) and the job's, neither replacing the other.
    assert {"-XX:-DontCompileHugeMethods", "-XX:+UseParallelGC", "-Dstocklake.probe=yes"} <= set(jvm_args)
