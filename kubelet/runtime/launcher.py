"""The process runtime's launcher: the few steps between the shim and a container's program.

Run as a script (``python -I -S launcher.py ...``) so that it imports nothing but the standard
library and starts fast; it ends in ``execve`` of the container's program, so it costs no
memory once the container runs. Modes:

``launch DIR``
    Starts the container described by DIR/config.json: a new session (the container's process
    group), then, with isolation, a mount namespace whose root is an overlay of the node's ``/``
    (writes land in DIR/upper), the node's other mounts read-only, /dev /proc /sys, a private
    /tmp, the image's own files (busybox's applets as /bin; the built-in images' interpreter
    and package where the private /tmp would hide them) and the container's volumes at their
    mountPath; chroot, chdir, exec. DIR/started.json
    records the pid and its start time just before the exec; a failure is written to DIR/error
    (exit code 128, as runc's). fd 3, when open, is closed by the exec: its reader learns the
    container started (or failed) when it sees EOF.
``exec DIR PID TICKS [--tty] -- ARGV...``
    Runs ARGV in the running container PID's view: its mount namespace and root, its env and
    working dir.
``probe MODE DIR``
    Exits 0 when MODE (mount-namespace, user-namespace) works here, else prints why and exits 1.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import stat
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MNT_DETACH = 2

# statvfs f_flag bits -> mount flags; a remount in a user namespace must keep the locked ones.
_STATVFS_TO_MS = (
    (os.ST_RDONLY, MS_RDONLY), (os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC), (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)

# Bound whole (recursively, with their submounts) rather than one mount at a time.
_KERNEL_FS = ("/proc", "/dev", "/sys")

START_PIPE_FD = 3
START_FAILED = 128
"""Exit code of a container that could not be started (as runc reports it)."""

_libc = ctypes.CDLL(None, use_errno=True)


class LaunchError(Exception):
    """Setting up the container failed; the message is its StartError message."""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise LaunchError(f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(
        _libc.mount(
            None if source is None else source.encode(), target.encode(),
            None if fstype is None else fstype.encode(), ctypes.c_ulong(flags),
            None if data is None else data.encode(),
        ),
        f"mount {source or fstype} on {target}",
    )


def _remount_read_only(target: str) -> None:
    flags = os.statvfs(target).f_flag
    kept = 0
    for st_bit, ms_bit in _STATVFS_TO_MS:
        if flags & st_bit:
            kept |= ms_bit
    _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept)


def _unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def _setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and i + 4 <= len(field):
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points() -> list[str]:
    """Mount points of this mount namespace, in mount order (parents before children)."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4:
                points.append(_unescape(fields[4]))
    return points


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def proc_start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def _write_atomic(dir_fd: int, name: str, content: str) -> None:
    tmp = f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _find_executable(name: str, env: Mapping[str, str]) -> str:
    if "/" in name:
        return name
    for directory in env.get("PATH", "").split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise LaunchError(f'exec: "{name}": executable file not found in $PATH')


def _reset_signals() -> None:
    # Python ignores SIGPIPE and SIGXFSZ, and sh ignores SIGINT/SIGQUIT for background jobs;
    # a container starts with every signal at its default, none blocked.
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _enter_user_namespace() -> None:
    uid, gid = os.geteuid(), os.getegid()
    _unshare(CLONE_NEWUSER | CLONE_NEWNS)
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")


def _open_path(path: str) -> int:
    try:
        return os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as e:
        raise LaunchError(f"mount source {path}: {e.strerror}") from e


def _make_mount_point(target: str, is_dir: bool) -> None:
    """Creates ``target`` inside the container's root (we are chrooted: symlinks stay inside)."""
    if os.path.lexists(target):
        if os.path.isdir(target) != is_dir:
            kind = "directory" if is_dir else "file"
            raise LaunchError(f"cannot mount a {kind} on {target}: it exists as another kind")
        return
    for fs in _KERNEL_FS:
        if _under(target, fs):
            # /dev, /proc and /sys are the node's own: creating a mount point there would
            # write to the node.
            raise LaunchError(f"mount point {target} does not exist and lies in the node's {fs}")
    try:
        if is_dir:
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
    except PermissionError as e:
        # In a user namespace the node's root-owned directories stay read-only to us.
        raise LaunchError(
            f"cannot create mount point {target}: {e.strerror} (without root, a mount point "
            "must exist on the node or lie in a directory the kubelet's user may write)"
        ) from e


def _overlay_whole_root(rootfs: str, upper: str, work: str, host_mounts: list[str]) -> None:
    """Root: one overlay of the node's ``/``; the node's other mounts bound read-only."""
    _mount("overlay", rootfs, "overlay", 0, f"lowerdir=/,upperdir={upper},workdir={work}")
    for fs in _KERNEL_FS:
        _mount(fs, rootfs + fs, None, MS_BIND | MS_REC)
    _remount_read_only(rootfs + "/sys")
    # The overlay shows only the root filesystem: other mounts (a Python on its own mount, say)
    # are bound at the same path, read-only, with their submounts.
    bound: list[str] = []
    for point in host_mounts:
        if any(_under(point, fs) for fs in _KERNEL_FS):
            continue
        target = rootfs + point
        if not any(_under(point, b) for b in bound):
            if not os.path.lexists(target):
                continue  # its mount point is gone from the root filesystem
            _mount(point, target, None, MS_BIND | MS_REC)
            bound.append(point)
        _remount_read_only(target)


def _overlay_per_directory(rootfs: str, upper: str, work: str, host_mounts: list[str]) -> None:
    """Root for a user namespace, where ``/`` (whose submounts are locked) cannot be an
    overlay's lower layer: a tmpfs with one overlay per top-level directory, and directories
    that hold other mounts bound whole, read-only."""
    _mount("tmpfs", rootfs, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    for entry in os.scandir("/"):
        source = "/" + entry.name
        target = os.path.join(rootfs, entry.name)
        if entry.is_symlink():
            os.symlink(os.readlink(source), target)
            continue
        if not entry.is_dir():
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
            _mount(source, target, None, MS_BIND)
            _remount_read_only(target)
            continue
        os.mkdir(target, 0o755)
        if source == "/tmp":
            continue  # the container's private /tmp goes there
        if source in _KERNEL_FS:
            _mount(source, target, None, MS_BIND | MS_REC)
            if source == "/sys":
                _remount_read_only(target)
            continue
        inner = [p for p in host_mounts if _under(p, source)]
        if inner:
            _mount(source, target, None, MS_BIND | MS_REC)
            for point in [source, *inner]:
                if os.path.lexists(rootfs + point):
                    _remount_read_only(rootfs + point)
            continue
        layer_upper, layer_work = os.path.join(upper, entry.name), os.path.join(work, entry.name)
        os.makedirs(layer_upper, exist_ok=True)
        os.makedirs(layer_work, exist_ok=True)
        _mount("overlay", target, "overlay", 0,
               f"lowerdir={source},upperdir={layer_upper},workdir={layer_work},userxattr")


def _bind_image_path(target: str, fd: int) -> None:
    """Binds an image's directory (fd) read-only at ``target`` in the container's root; a
    symlink there (``/bin`` -> ``usr/bin``) is replaced by a directory in the container only."""
    if os.path.islink(target):
        try:
            os.unlink(target)
            os.mkdir(target, 0o755)
        except OSError as e:
            raise LaunchError(f"cannot replace the link {target} with the image's directory: "
                              f"{e.strerror}") from e
    else:
        _make_mount_point(target, stat.S_ISDIR(os.fstat(fd).st_mode))
    _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND)
    _remount_read_only(target)


def setup_root(
    rootfs: str, upper: str, work: str, tmp: str, root_dir: str,
    mounts: Sequence[Mapping[str, Any]], user_namespace: bool,
    image_binds: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Gives this process its own mount namespace and root (see the module docstring).

    ``image_binds`` ({host_path, container_path}) are the image's own files, bound read-only
    after the private /tmp, so that they show even where /tmp or the runtime's directory would
    hide them."""
    if user_namespace:
        _enter_user_namespace()
    else:
        _unshare(CLONE_NEWNS)
    # Nothing mounted from here on may propagate back to the node.
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Opened in the new namespace (a bind source must be one of its mounts) and before the
    # chroot hides them.
    sources = [(m, _open_path(m["host_path"])) for m in mounts]
    image_sources = [(b, _open_path(b["host_path"])) for b in image_binds]
    tmp_fd = _open_path(tmp)
    host_mounts = [p for p in mount_points()
                   if p != "/" and not _under(p, root_dir) and not p.endswith("(deleted)")]
    if user_namespace:
        _overlay_per_directory(rootfs, upper, work, host_mounts)
    else:
        _overlay_whole_root(rootfs, upper, work, host_mounts)
    os.chroot(rootfs)
    os.chdir("/")
    _mount(f"/proc/self/fd/{tmp_fd}", "/tmp", None, MS_BIND)
    os.close(tmp_fd)
    for bind, fd in sorted(image_sources,
                           key=lambda s: os.path.normpath(s[0]["container_path"]).count("/")):
        _bind_image_path(os.path.normpath(bind["container_path"]), fd)
        os.close(fd)
    # The runtime's own directory (containers' layers, other pods' volumes) stays hidden.
    if os.path.isdir(root_dir):
        _mount("tmpfs", root_dir, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
               "size=4k,mode=755")
    # Parents before children, so a volume at /a/b is not hidden by one at /a.
    for mount, fd in sorted(sources, key=lambda s: os.path.normpath(s[0]["container_path"])
                            .count("/")):
        target = os.path.normpath(mount["container_path"])
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        _make_mount_point(target, is_dir)
        _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        if mount.get("read_only"):
            _remount_read_only(target)
        os.close(fd)


def _chdir(working_dir: str, create: bool) -> None:
    path = working_dir or "/"
    if create:
        os.makedirs(path, exist_ok=True)
    try:
        os.chdir(path)
    except OSError as e:
        raise LaunchError(f"chdir to working directory {path}: {e.strerror}") from e


def launch(directory: str) -> int:
    os.setsid()
    try:
        os.set_inheritable(START_PIPE_FD, False)
    except OSError:
        pass  # started without a start pipe (by hand): nobody waits for EOF
    dir_fd = os.open(directory, os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with open(os.path.join(directory, "config.json")) as f:
            config = json.load(f)
        env: dict[str, str] = dict(config["env"])
        isolation = config["isolation"]
        if isolation in ("mount-namespace", "user-namespace"):
            setup_root(
                config["rootfs"], config["upper"], config["work"], config["tmp"],
                config["root_dir"], config["mounts"], isolation == "user-namespace",
                config.get("image_binds", ()),
            )
            _chdir(config["working_dir"], create=True)
        else:
            if config["mounts"]:
                raise LaunchError("no mount namespace available; refusing to mount volumes")
            _chdir(config["working_dir"], create=False)
        argv: list[str] = config["argv"]
        path = _find_executable(argv[0], env)
        ticks = proc_start_ticks(os.getpid())
        started = {"pid": os.getpid(), "ticks": ticks, "started_at": time.time()}
        _write_atomic(dir_fd, "started.json", json.dumps(started))
        _reset_signals()
        try:
            os.execve(path, argv, env)
        except OSError as e:
            os.unlink("started.json", dir_fd=dir_fd)
            raise LaunchError(f'exec: "{argv[0]}": {e.strerror}') from e
    except Exception as e:  # noqa: BLE001 - reported as the container's StartError message
        message = str(e) if isinstance(e, LaunchError) else f"{type(e).__name__}: {e}"
        _write_atomic(dir_fd, "error", message)
        return START_FAILED
    return 0  # not reached: execve replaced us


def exec_in(directory: str, pid: int, ticks: int, tty: bool, argv: list[str]) -> int:
    with open(os.path.join(directory, "config.json")) as f:
        config = json.load(f)
    env: dict[str, str] = dict(config["env"])
    isolation = config["isolation"]
    try:
        if isolation in ("mount-namespace", "user-namespace"):
            user_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            mnt_fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            # The namespaces are the container's only if pid is still the container.
            if proc_start_ticks(pid) != ticks:
                raise LaunchError(f"container process {pid} is gone")
            if isolation == "user-namespace":
                _setns(user_fd, CLONE_NEWUSER)
            _setns(mnt_fd, CLONE_NEWNS)
            os.chroot(config["rootfs"])
        elif proc_start_ticks(pid) != ticks:
            raise LaunchError(f"container process {pid} is gone")
        _chdir(config["working_dir"], create=False)
        if tty:
            import fcntl
            import termios

            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        path = _find_executable(argv[0], env)
    except (LaunchError, OSError) as e:
        print(str(e), file=sys.stderr)
        return 127 if "not found" in str(e) else 126
    _reset_signals()
    try:
        os.execve(path, argv, env)
    except OSError as e:
        print(f'exec: "{argv[0]}": {e.strerror}', file=sys.stderr)
        return 127 if e.errno == errno.ENOENT else 126
    return 0  # not reached


def probe(mode: str, directory: str) -> int:
    dirs = {name: os.path.join(directory, name) for name in ("rootfs", "upper", "work", "tmp")}
    for path in dirs.values():
        os.makedirs(path, exist_ok=True)
    try:
        setup_root(dirs["rootfs"], dirs["upper"], dirs["work"], dirs["tmp"], directory, (),
                   mode == "user-namespace")
        with open("/tmp/probe", "w") as f:  # lands in the private /tmp
            f.write("ok")
        if not os.path.isdir("/proc/self"):
            raise LaunchError("/proc is not visible in the container root")
    except (LaunchError, OSError) as e:
        print(f"{mode}: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "launch":
        return launch(argv[1])
    if len(argv) >= 6 and argv[0] == "exec":
        rest = argv[4:]
        tty = rest[0] == "--tty"
        if tty:
            rest = rest[1:]
        if rest[:1] != ["--"] or len(rest) < 2:
            print("usage: exec DIR PID TICKS [--tty] -- ARGV...", file=sys.stderr)
            return 2
        return exec_in(argv[1], int(argv[2]), int(argv[3]), tty, rest[1:])
    if len(argv) == 3 and argv[0] == "probe":
        return probe(argv[1], argv[2])
    print(f"usage: {sys.argv[0]} launch DIR | exec DIR PID TICKS [--tty] -- ARGV... | "
          "probe MODE DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
