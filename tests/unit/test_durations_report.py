"""tests/durations.py: the per-file and per-test durations every run writes under .lake/test-reports."""
from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

from tests.durations import DurationsReport, process_tree_cpu

A = "tests/unit/test_a.py"
B = "tests/integration/test_b.py"


def report(nodeid: str, when: str, seconds: float, outcome: str = "passed", cpu: float = 0.0,
           **extra) -> SimpleNamespace:
    return SimpleNamespace(nodeid=nodeid, when=when, duration=seconds, outcome=outcome,
                           user_properties=[("cpu_s", cpu)], **extra)


def test_phases_sum_per_test_and_files_and_tests_are_ranked_slowest_first(tmp_path, monkeypatch):
    durations = DurationsReport(workers=2)
    for phases in ([report(f"{A}::t1", "setup", 0.5), report(f"{A}::t1", "call", 1.0),
                    report(f"{A}::t1", "teardown", 0.25)],
                   [report(f"{A}::t2", "setup", 0.0), report(f"{A}::t2", "call", 2.0, "failed")],
                   [report(f"{B}::slow", "setup", 30.0, cpu=50.0), report(f"{B}::slow", "call", 4.0, cpu=1.5)],
                   [report(f"{B}::known", "setup", 0.1),
                    report(f"{B}::known", "call", 0.2, "skipped", wasxfail="a known limitation")]):
        for phase in phases:
            durations.pytest_runtest_logreport(phase)
    monkeypatch.setenv("STOCKLAKE_TEST_REPORTS", str(tmp_path / "reports"))
    written = []
    durations.pytest_terminal_summary(SimpleNamespace(write_line=written.append))

    text = (tmp_path / "reports" / "durations.txt").read_text()
    assert written == [f"test durations per file and per test: {tmp_path / 'reports' / 'durations.txt'}"]
    lines = text.splitlines()
    assert lines[0].startswith("4 tests in ") and lines[0].endswith(
        " min wall-clock on 2 worker(s); test time summed over the workers: 0.6 min; "
                                         "CPU time of the tests' processes: 0.9 min")
    assert lines[2:5] == ["By file (setup + call + teardown of its tests, summed; time, then CPU):",
                          f"      34.3 s     51.5 CPU-s  {B} (2 tests)", f"       3.8 s      0.0 CPU-s  {A} (2 tests)"]
    assert lines[6:] == ["The 40 slowest tests (time, then CPU):", f"      34.0 s     51.5 CPU-s  {B}::slow [passed]",
                         f"       2.0 s      0.0 CPU-s  {A}::t2 [failed]",
                         f"       1.8 s      0.0 CPU-s  {A}::t1 [passed]",
                         f"       0.3 s      0.0 CPU-s  {B}::known [xfailed]"]


def test_the_cpu_of_a_process_tree_counts_a_running_child_and_a_finished_one():
    spin = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass\n"
    before = process_tree_cpu(os.getpid())
    subprocess.run([sys.executable, "-c", spin], check=True)  # finished and waited for: this process's children's
    running = subprocess.Popen([sys.executable, "-c", spin + "print('spun', flush=True)\ninput()"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert running.stdout.readline() == "spun\n"  # blocks without spending this process's CPU
        assert process_tree_cpu(os.getpid()) - before >= 1.0
    finally:
        running.communicate("\n")
