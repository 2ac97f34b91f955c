"""The process runtime's helpers over the node's files, mounts and processes: safe path
names, state files, ``/proc`` lookups, unmounting and deleting a directory tree, and finding
the tail of a log."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import stat
import sys
from collections.abc import Callable
from typing import IO, Any

import structlog

from kubelet.runtime.interface import RuntimeError_

log = structlog.get_logger(__name__)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_MNT_DETACH = 2


def _safe(kind: str, value: str) -> str:
    if not _SAFE_NAME.match(value):
        raise RuntimeError_("CreateContainerError",
                            f"invalid {kind} {value!r} for a path on the node")
    return value


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def _read_json(path: str) -> dict[str, Any] | None:
    text = _read_text(path)
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        log.error("unreadable runtime state file", path=path)
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: str, value: dict[str, Any]) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start ticks) of a process, None when there is none with that pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[19])


def _alive(pid: int, ticks: int | None) -> bool:
    """Whether ``pid`` is still the process that started at ``ticks`` and not a zombie."""
    if pid <= 0:
        return False
    st = _proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X") and (ticks is None or st[2] == ticks)


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone: nothing left to signal
        os.killpg(pgid, sig)


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4:
                points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)),
                                     fields[4]))
    return points


def _unmount_under(path: str) -> None:
    """Unmounts whatever is mounted under ``path`` on the node, deepest first, before it is
    deleted (a bind mount left there would otherwise have its source deleted with it)."""
    prefix = path.rstrip("/") + "/"
    found = [p for p in _mount_points() if p == path or p.startswith(prefix)]
    if not found:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for point in sorted(found, key=len, reverse=True):
        if libc.umount2(point.encode(), _MNT_DETACH) != 0:
            err = ctypes.get_errno()
            raise RuntimeError_(
                "RemoveError", f"cannot delete {path}: {point} is mounted and unmounting it "
                f"failed: {os.strerror(err)}"
            )
        log.warning("unmounted a leftover mount", mount_point=point)


def _rmtree(path: str) -> None:
    def retry_writable(func: Callable[..., Any], target: str, exc: BaseException) -> None:
        if isinstance(exc, FileNotFoundError):
            return
        if not isinstance(exc, PermissionError):
            raise exc
        # An overlay's work dir is mode 000; its owner may still make it writable.
        os.chmod(os.path.dirname(target), stat.S_IRWXU)
        if os.path.isdir(target) and not os.path.islink(target):
            os.chmod(target, stat.S_IRWXU)
            shutil.rmtree(target)
        else:
            func(target)

    if not os.path.lexists(path):
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry_writable)
    else:
        shutil.rmtree(path, onerror=lambda func, target, info: retry_writable(func, target,
                                                                              info[1]))


def _is_under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _tail_offset(f: IO[bytes], lines: int) -> int:
    """Offset of the start of the last ``lines`` lines of the open binary file ``f``."""
    end = f.seek(0, os.SEEK_END)
    if lines == 0 or end == 0:
        return end
    f.seek(end - 1)
    # A final newline ends the last line; it does not start another.
    pos = end - 1 if f.read(1) == b"\n" else end
    needed = lines
    while pos > 0:
        size = min(8192, pos)
        pos -= size
        f.seek(pos)
        block = f.read(size)
        idx = len(block)
        while True:
            idx = block.rfind(b"\n", 0, idx)
            if idx < 0:
                break
            needed -= 1
            if needed == 0:
                return pos + idx + 1
    return 0
