"""Every run's test durations, written where any run leaves them: .lake/test-reports/durations.txt (per file and
per test, slowest first; $STOCKLAKE_TEST_REPORTS overrides the folder), beside the JUnit XML that `make test`
writes there too. A test's time is its setup, call and teardown: a shared fixture's build counts once, in the
setup of the first test that needed it on its worker.

With pytest-xdist the workers' reports reach the controller, which alone writes the file.
"""
from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SLOWEST_TESTS = 40


def reports_folder() -> Path:
    return Path(os.environ.get("STOCKLAKE_TEST_REPORTS") or REPO / ".lake" / "test-reports")


def outcome_of(report) -> str:
    """pytest's outcome word; an expected failure reaches the hooks as "skipped" (or "passed") with wasxfail set."""
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.outcome == "skipped" else "xpassed"
    return report.outcome


class DurationsReport:
    """A pytest plugin: sums each test's phases and writes the report at the end of the session."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.started = time.monotonic()
        self.seconds: dict[str, float] = defaultdict(float)
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report) -> None:
        self.seconds[report.nodeid] += report.duration
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
        by_file: dict[str, list[float]] = defaultdict(list)
        for nodeid, seconds in self.seconds.items():
            by_file[nodeid.split("::", 1)[0]].append(seconds)
        wall = time.monotonic() - self.started
        lines = [f"{len(self.seconds):,} tests in {wall / 60:.1f} min wall-clock on {self.workers} worker(s); "
                 f"test time summed over the workers: {sum(self.seconds.values()) / 60:.1f} min",
                 "", "By file (setup + call + teardown of its tests, summed):"]
        for path, times in sorted(by_file.items(), key=lambda item: -sum(item[1])):
            lines.append(f"  {sum(times):8.1f} s  {path} ({len(times)} tests)")
        lines += ["", f"The {SLOWEST_TESTS} slowest tests:"]
        for nodeid, seconds in sorted(self.seconds.items(), key=lambda item: -item[1])[:SLOWEST_TESTS]:
            lines.append(f"  {seconds:8.1f} s  {nodeid} [{self.outcomes.get(nodeid, '?')}]")
        return "\n".join(lines) + "\n"


def pytest_configure(config) -> None:
    if hasattr(config, "workerinput"):
        return  # an xdist worker: its reports go to the controller
    workers = getattr(config.option, "numprocesses", None)
    config.pluginmanager.register(DurationsReport(workers if isinstance(workers, int) and workers else 1),
                                  "stocklake-durations")
