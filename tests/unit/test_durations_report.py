"""tests/durations.py: the per-file and per-test durations every run writes under .lake/test-reports."""
from __future__ import annotations

from types import SimpleNamespace

from tests.durations import DurationsReport

A = "tests/unit/test_a.py"
B = "tests/integration/test_b.py"


def report(nodeid: str, when: str, seconds: float, outcome: str = "passed", **extra) -> SimpleNamespace:
    return SimpleNamespace(nodeid=nodeid, when=when, duration=seconds, outcome=outcome, **extra)


def test_phases_sum_per_test_and_files_and_tests_are_ranked_slowest_first(tmp_path, monkeypatch):
    durations = DurationsReport(workers=2)
    for phases in ([report(f"{A}::t1", "setup", 0.5), report(f"{A}::t1", "call", 1.0),
                    report(f"{A}::t1", "teardown", 0.25)],
                   [report(f"{A}::t2", "setup", 0.0), report(f"{A}::t2", "call", 2.0, "failed")],
                   [report(f"{B}::slow", "setup", 30.0), report(f"{B}::slow", "call", 4.0)],
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
        " min wall-clock on 2 worker(s); test time summed over the workers: 0.6 min")
    assert lines[2:5] == ["By file (setup + call + teardown of its tests, summed):",
                          f"      34.3 s  {B} (2 tests)", f"       3.8 s  {A} (2 tests)"]
    assert lines[6:] == ["The 40 slowest tests:", f"      34.0 s  {B}::slow [passed]",
                         f"       2.0 s  {A}::t2 [failed]", f"       1.8 s  {A}::t1 [passed]",
                         f"       0.3 s  {B}::known [xfailed]"]
