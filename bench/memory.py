"""Peak resident memory per role (producer, Spark driver, ...), sampled from /proc while a benchmark runs.

A daemon thread samples every 0.25 s. A role's memory at one sample is the sum of VmRSS over its process and,
optionally, all its descendants (found by walking the ppid field of /proc/*/stat). Samples can miss a short peak,
so each process's own VmHWM (the kernel's record of its peak RSS) is kept too; a role's peak is the larger of its
highest sampled sum and the highest VmHWM of any one of its processes. Processes that exit are skipped.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from types import TracebackType

INTERVAL_SECONDS = 0.25


def parent_pids() -> dict[int, int]:
    """pid -> ppid of every live process."""
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                # The command name is in parentheses and may hold spaces or ')': fields resume after the last ')'.
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(name)] = int(fields[1])
    return parents


def descendants(pid: int, parents: dict[int, int]) -> set[int]:
    """The pid and every process below it."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, pending = {pid}, [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def rss_and_hwm_kib(pid: int) -> tuple[int, int] | None:
    """VmRSS and VmHWM of a process in KiB; None when it is gone (or a kernel thread without them)."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, amount = line.split(":", 1)
                    values[key] = int(amount.split()[0])
    except (OSError, ValueError):
        return None
    if "VmRSS" not in values:
        return None
    return values["VmRSS"], values.get("VmHWM", 0)


@dataclass
class Role:
    pid: int
    include_children: bool
    peak_sum_kib: int = 0
    peak_hwm_kib: int = 0


@dataclass
class PeakMemory:
    """Samples the watched roles until stop(); stop() returns role -> peak MiB. Usable as a context manager."""
    interval_seconds: float = INTERVAL_SECONDS
    roles: dict[str, Role] = field(default_factory=dict)
    peaks_mib: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, role: str, pid: int, include_children: bool = True) -> None:
        with self._lock:
            self.roles[role] = Role(pid, include_children)

    def sample(self) -> None:
        """One sample of every role (also taken at start and stop, so a short run is never unsampled)."""
        with self._lock:
            roles = list(self.roles.values())
        parents = parent_pids() if any(role.include_children for role in roles) else {}
        for role in roles:
            pids = descendants(role.pid, parents) if role.include_children else {role.pid}
            total = 0
            for pid in pids:
                memory = rss_and_hwm_kib(pid)
                if memory is not None:
                    total += memory[0]
                    role.peak_hwm_kib = max(role.peak_hwm_kib, memory[1])
            role.peak_sum_kib = max(role.peak_sum_kib, total)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_seconds):
            self.sample()

    def start(self) -> PeakMemory:
        self.sample()
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sample()
        with self._lock:
            self.peaks_mib = {name: round(max(role.peak_sum_kib, role.peak_hwm_kib) / 1024, 1)
                              for name, role in self.roles.items()}
        return self.peaks_mib

    def __enter__(self) -> PeakMemory:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
