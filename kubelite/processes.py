"""Child processes that are components: started in their own session with a log file,
stopped with SIGTERM then SIGKILL, killed or paused on purpose for fault tests."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@contextmanager
def interrupts_held() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive inside are handled on the way out. A KeyboardInterrupt
    raised inside Popen, after the fork, would leave a child running that nobody knows
    of. (Blocking them with the signal mask instead would leave them blocked in the child.)
    Off the main thread, where handlers cannot be set, nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {signum: signal.signal(signum, lambda n, _: arrived.append(n))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for number in arrived:
            signal.raise_signal(number)


def suspend(pid: int, timeout: float = 10.0) -> None:
    """SIGSTOP ``pid`` and return once every thread of it has stopped. kill() returns before
    that: a thread running on another CPU may still answer a request sent at once (seen
    about once in a few hundred tries with etcd)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while not all(state in "Tt" for state in thread_states(pid)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} not stopped {timeout}s after SIGSTOP")
        time.sleep(0.001)


def thread_states(pid: int) -> list[str]:
    """The state letter of each of ``pid``'s threads (/proc/PID/task/TID/stat)."""
    states = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except FileNotFoundError:
            continue  # the thread has ended
        states.append(stat.rsplit(")", 1)[1].split()[0])
    return states


@dataclass
class ManagedProcess:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log, interrupts_held():
            self.process = subprocess.Popen(
                list(self.argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=dict(self.env) if self.env is not None else None,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL to the whole process group after ``timeout`` seconds."""
        p = self.process
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                p.wait()
        return p.returncode

    def kill(self) -> None:
        """SIGKILL the process alone, as a crash (its children are left as a crash leaves them)."""
        p = self.process
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()

    def pause(self) -> None:
        if self.process is not None and self.process.poll() is None:
            suspend(self.process.pid)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def _kill_group(self) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Watched(Protocol):
    """What :func:`supervise_until_signalled` needs of a process."""

    name: str
    log_path: Path

    @property
    def returncode(self) -> int | None: ...
    def running(self) -> bool: ...


INTERRUPTED_EXIT_CODE = 130
"""What a command stopped by Ctrl-C or SIGTERM before it finished exits with: 128 + SIGINT, as
shells report an interrupted command."""


def interrupt_on_sigterm() -> None:
    """Until ``supervise_until_signalled`` takes over: SIGTERM interrupts like Ctrl-C
    (KeyboardInterrupt), so a supervisor stopped while it is still starting its processes
    runs its cleanup and stops those it started, instead of dying and leaving them behind."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def ignore_interrupts() -> None:
    """From now on SIGINT and SIGTERM are ignored: for a supervisor stopping its processes,
    so that a second Ctrl-C does not cut the cleanup short and leave the rest running (each
    process's stop ends in SIGKILL after its timeout, so the cleanup cannot hang). Children
    started after this would inherit it; none are."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def supervise_until_signalled(processes: Sequence[Watched], say: Callable[[str], None],
                              poll_interval: float = 0.2) -> int:
    """Blocks until SIGINT or SIGTERM (0) or until one of ``processes`` dies (1, said)."""
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stopping:
        for process in processes:
            if not process.running():
                say(f"{process.name} exited with code {process.returncode};"
                    f" see {process.log_path}")
                return 1
        time.sleep(poll_interval)
    return 0
