"""bench/memory.py: peak resident memory of real processes."""
from __future__ import annotations

import subprocess
import sys

from bench.memory import PeakMemory

# Bytes multiplication writes every page, so all of it is resident (a bare bytearray(n) may not be).
ALLOCATE = "import sys; data = b'x' * (210 * 1024 * 1024); print('ready', flush=True); sys.stdin.read()"


def test_peak_memory_of_a_big_and_an_idle_process():
    big = subprocess.Popen([sys.executable, "-c", ALLOCATE], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    idle = subprocess.Popen(["sleep", "600"])
    try:
        assert big.stdout.readline() == b"ready\n"
        with PeakMemory() as memory:
            memory.watch("big", big.pid)
            memory.watch("idle", idle.pid, include_children=False)
        peaks = memory.peaks_mib
        assert set(peaks) == {"big", "idle"}
        assert peaks["big"] >= 200
        assert 0 < peaks["idle"] < 200
    finally:
        big.kill()
        idle.kill()
        big.wait()
        idle.wait()


def test_processes_that_exited_are_skipped():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    memory = PeakMemory()
    memory.watch("gone", gone.pid)
    memory.start()
    assert memory.stop() == {"gone": 0.0}
