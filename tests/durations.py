"""Every run's test durations, written where any run leaves them: .lake/test-reports/durations.txt (per file and
per test, slowest first; $STOCKLAKE_TEST_REPORTS overrides the folder), beside the JUnit XML that `make test`
writes there too. A test's time is its setup, call and teardown: a shared fixture's build counts once, in the
setup of the first test that needed it on its worker.

Beside each time, the CPU seconds the test's worker and every process below it spent meanwhile (the JVMs, dbt,
brokers the test started): `make test` keeps both cores busy, so CPU, not waiting, is what a test costs the run.

With pytest-xdist the workers' reports reach the controller, which alone writes the file.
"""
from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLOWEST_TESTS = 40


def reports_folder() -> Path:
    return Path(os.environ.get("STOCKLAKE_TEST_REPORTS") or REPO / ".lake" / "test-reports")


def outcome_of(report) -> str:
    """pytest's outcome word; an expected failure reaches the hooks as "skipped" (or "passed") with wasxfail set."""
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.outcome == "skipped" else "xpassed"
    return report.outcome


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PHASE_CPU = pytest.StashKey[float]()  # the CPU seconds at the end of the test's last phase


def process_tree_cpu(root: int) -> float:
    """CPU seconds of a process and its live descendants, each with its waited-for children (Linux /proc)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        ticks[pid] = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    children: dict[int, list[int]] = defaultdict(list)
    for pid, parent in parents.items():
        children[parent].append(pid)
    tree, frontier = {root}, [root]
    while frontier:
        frontier = [child for pid in frontier for child in children[pid] if child not in tree]
        tree.update(frontier)
    return sum(ticks.get(pid, 0) for pid in tree) / CLOCK_TICKS


class CpuMeter:
    """A pytest plugin on the process that runs the tests: each phase's CPU seconds into its report's
    user_properties (pytest-xdist carries them to the controller). One /proc scan per phase end (a few ms): the
    end of one phase is the start of the next."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item):
        item.stash[PHASE_CPU] = process_tree_cpu(os.getpid())
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        started = item.stash.get(PHASE_CPU, None)
        if started is not None:
            ended = process_tree_cpu(os.getpid())
            outcome.get_result().user_properties.append(("cpu_s", ended - started))
            item.stash[PHASE_CPU] = ended


class DurationsReport:
    """A pytest plugin: sums each test's phases and writes the report at the end of the session."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.started = time.monotonic()
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report) -> None:
        self.seconds[report.nodeid] += report.duration
        self.cpu[report.nodeid] += sum(value for key, value in report.user_properties if key == "cpu_s")
        if report.when == "call" or report.outcome != "passed":
            self.outcomes[report.nodeid] = outcome_of(report)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.seconds:
            return
        folder = reports_folder()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "durations.txt"
        path.write_text(self.render())
        terminalreporter.write_line(f"test durations per file and per test: {path}")

    def render(self) -> str:
        by_file: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])  # seconds, CPU seconds, tests
        for nodeid, seconds in self.seconds.items():
            totals = by_file[nodeid.split("::", 1)[0]]
            totals[0] += seconds
            totals[1] += self.cpu[nodeid]
            totals[2] += 1
        wall = time.monotonic() - self.started
        lines = [f"{len(self.seconds):,} tests in {wall / 60:.1f} min wall-clock on {self.workers} worker(s); "
                 f"test time summed over the workers: {sum(self.seconds.values()) / 60:.1f} min; "
                 f"CPU time of the tests' processes: {sum(self.cpu.values()) / 60:.1f} min",
                 "", "By file (setup + call + teardown of its tests, summed; time, then CPU):"]
        for path, (seconds, cpu, tests) in sorted(by_file.items(), key=lambda item: -item[1][0]):
            lines.append(f"  {seconds:8.1f} s {cpu:8.1f} CPU-s  {path} ({tests} tests)")
        lines += ["", f"The {SLOWEST_TESTS} slowest tests (time, then CPU):"]
        for nodeid, seconds in sorted(self.seconds.items(), key=lambda item: -item[1])[:SLOWEST_TESTS]:
            lines.append(f"  {seconds:8.1f} s {self.cpu[nodeid]:8.1f} CPU-s  {nodeid} "
                         f"[{self.outcomes.get(nodeid, '?')}]")
        return "\n".join(lines) + "\n"


def pytest_configure(config) -> None:
    config.pluginmanager.register(CpuMeter(), "stocklake-cpu")  # where the tests run: a worker, or the one process
    if hasattr(config, "workerinput"):
        return  # an xdist worker: its reports go to the controller
    workers = getattr(config.option, "numprocesses", None)
    config.pluginmanager.register(DurationsReport(workers if isinstance(workers, int) and workers else 1),
                                  "stocklake-durations")
