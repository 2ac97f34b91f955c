"""Components' child processes (kubelite/processes.py): pausing one on purpose, as the fault
tests do, stops every thread before it returns; a signal that comes while one is being
started is handled once it is recorded."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from kubelite.processes import ManagedProcess, interrupts_held, thread_states
from kubelite.testing.wait import eventually

SPINNING_THREADS = """
import sys, threading
def spin():
    while True:
        pass
for _ in range(3):
    threading.Thread(target=spin, daemon=True).start()
print("spinning", flush=True)
threading.Event().wait()
"""


def test_pause_returns_once_every_thread_has_stopped_and_resume_runs_them(
    tmp_path: Path,
) -> None:
    process = ManagedProcess("spinner", [sys.executable, "-c", SPINNING_THREADS],
                             tmp_path / "spinner.log")
    process.start()
    try:
        assert process.process is not None and process.process.pid is not None
        pid = process.process.pid
        asyncio.run(eventually(lambda: "spinning" in process.tail(), message="threads spinning"))
        for _ in range(20):
            process.pause()
            states = thread_states(pid)
            assert len(states) == 4 and set(states) <= {"T", "t"}, states
            process.resume()
        assert process.running()
    finally:
        process.stop()


def test_a_sigterm_while_interrupts_are_held_is_handled_on_the_way_out() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _: seen.append(signum))
    try:
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGTERM)
            inside = list(seen)
        after = list(seen)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert (inside, after) == ([], [signal.SIGTERM])
