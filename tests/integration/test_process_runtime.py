"""The process runtime with real processes, mount namespaces and overlays (needs root)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import pytest

from kubelet.runtime.interface import (
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    Mount,
    PodSandboxConfig,
    RuntimeError_,
)
from kubelet.runtime.process import ProcessRuntime, ProcessRuntimeSettings
from kubelite.testing.ports import free_port
from kubelite.testing.wait import eventually

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="the process runtime's mount-namespace isolation needs root (overlayfs, mounts)",
)

POD_UID = "0d8f4c1e-7a52-4b8e-9c3a-1f2e3d4c5b6a"
POD_NAME = "web-0"


def _settings(root: Path, **kw: object) -> ProcessRuntimeSettings:
    return ProcessRuntimeSettings(root_dir=str(root), stop_poll_interval=0.02,
                                  log_poll_interval=0.02, **kw)  # type: ignore[arg-type]


def _sessions_alive(sessions: set[int]) -> list[str]:
    """Processes in any of ``sessions``: live ones, and zombies we should have reaped (an
    orphan's zombie is init's to reap, which on some machines takes a while)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            data = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if int(fields[3]) in sessions and (fields[0] != b"Z" or int(fields[1]) == os.getpid()):
            found.append(f"{entry} {data[: data.rfind(b')') + 1].decode()} {fields[0].decode()}")
    return found


def _running(pid: int) -> bool:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return data[data.rfind(b")") + 2 :].split()[0] != b"Z"


def _mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == path or p.startswith(path.rstrip("/") + "/")]


async def _clean_up(rt: ProcessRuntime) -> None:
    """Removes everything the test left, then fails it if any of its processes or mounts
    remain (shims and containers each lead their own session)."""
    sessions: set[int] = set()
    containers = Path(rt.root_dir, "containers")
    for path in containers.iterdir():
        for name in ("shim.json", "started.json"):
            state = path / name
            if state.exists():
                sessions.add(int(json.loads(state.read_text())["pid"]))
        pid_file = path / "pid"
        if pid_file.exists() and pid_file.read_text().strip():
            sessions.add(int(pid_file.read_text()))
    for status in await rt.list_containers():
        await rt.remove_container(status.id)
    for uid in os.listdir(Path(rt.root_dir, "pods")):
        await rt.remove_pod_sandbox(uid)
    await eventually(lambda: not _sessions_alive(sessions), timeout=5,
                     message="the test's processes to be gone")
    assert not _mounts_under(rt.root_dir), "mounts left on the node"
    assert not list(containers.iterdir())


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[ProcessRuntime]:
    rt = ProcessRuntime(_settings(tmp_path / "kubelet"))
    if rt.isolation != "mount-namespace":
        pytest.skip(f"mount namespaces with overlayfs are unavailable here (got {rt.isolation})")
    await rt.run_pod_sandbox(PodSandboxConfig(uid=POD_UID, name=POD_NAME, namespace="default"))
    yield rt
    await _clean_up(rt)


async def _run(
    rt: ProcessRuntime, name: str, command: Sequence[str], *, image: str = "busybox:1.36",
    args: Sequence[str] = (), env: Mapping[str, str] | None = None,
    mounts: Sequence[Mount] = (), working_dir: str = "",
) -> str:
    config = ContainerConfig(
        name=name, image=image, command=list(command), args=list(args),
        env=dict(env or {}), mounts=list(mounts), working_dir=working_dir,
    )
    container_id = await rt.create_container(POD_UID, config)
    await rt.start_container(container_id)
    return container_id


async def _exited(rt: ProcessRuntime, container_id: str, timeout: float = 10) -> ContainerStatus:
    async def check() -> ContainerStatus | None:
        status = await rt.container_status(container_id)
        return status if status.state == ContainerState.EXITED else None

    status: ContainerStatus = await eventually(check, timeout=timeout,
                                               message=f"container {container_id} to exit")
    return status


async def _logs(rt: ProcessRuntime, container_id: str, tail: int = -1) -> bytes:
    return b"".join([chunk async for chunk in rt.read_logs(container_id, tail=tail)])


async def _logged(rt: ProcessRuntime, container_id: str, text: bytes) -> None:
    async def check() -> bool:
        return text in await _logs(rt, container_id)

    await eventually(check, timeout=10, message=f"{text!r} in the log")


async def _answer(port: int) -> str:
    """What the server on 127.0.0.1:``port`` answers to GET /, once it answers."""

    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return str(response.read().decode())

    answer: str = await eventually(lambda: asyncio.to_thread(get), timeout=10,
                                   message=f"an answer on port {port}")
    return answer


def _unused_host_path(wanted: str) -> str:
    return wanted if not os.path.lexists(wanted) else f"{wanted}-{secrets.token_hex(4)}"


async def test_volume_mounted_over_a_node_path_and_writes_stay_in_the_container(
    runtime: ProcessRuntime,
) -> None:
    volume = runtime.volume_dir(POD_UID, "logs")
    mount_path = _unused_host_path("/var/log/app")
    etc_file = _unused_host_path("/etc/kubelite-test-whatever")
    cid = await _run(runtime, "writer", ["sh", "-c", f"echo hello > {mount_path}/out.txt && "
                                         f"echo mine > {etc_file} && cat {etc_file}"],
                     mounts=[Mount(volume, mount_path)])
    status = await _exited(runtime, cid)
    assert (status.exit_code, status.reason) == (0, "Completed")
    assert Path(volume, "out.txt").read_text() == "hello\n"
    assert not os.path.lexists(mount_path)
    assert not os.path.lexists(etc_file)
    assert await _logs(runtime, cid) == b"mine\n"


async def test_read_only_and_file_mounts(runtime: ProcessRuntime) -> None:
    config_dir = runtime.volume_dir(POD_UID, "config")
    Path(config_dir, "app.conf").write_text("key=value\n")
    data = runtime.volume_dir(POD_UID, "data")
    cid = await _run(runtime, "reader", ["sh", "-c", "cat /etc/app/app.conf; cat /srv/one.conf; "
                                         "echo x > /etc/app/new || echo refused"],
                     mounts=[Mount(config_dir, "/etc/app", read_only=True),
                             Mount(os.path.join(config_dir, "app.conf"), "/srv/one.conf"),
                             Mount(data, "/srv/data")])
    assert (await _exited(runtime, cid)).exit_code == 0
    out = await _logs(runtime, cid)
    assert out.startswith(b"key=value\nkey=value\n") and out.endswith(b"refused\n")
    assert not Path(config_dir, "new").exists()


async def test_tmp_is_private_per_container(runtime: ProcessRuntime) -> None:
    marker = f"kubelite-{secrets.token_hex(4)}"
    first = await _run(runtime, "first",
                       ["sh", "-c", f"echo one > /tmp/{marker}; cat /tmp/{marker}"])
    assert (await _exited(runtime, first)).exit_code == 0
    second = await _run(runtime, "second", ["sh", "-c", f"test ! -e /tmp/{marker} && ls -A /tmp"])
    assert (await _exited(runtime, second)).exit_code == 0
    assert await _logs(runtime, first) == b"one\n"
    assert await _logs(runtime, second) == b""
    assert not os.path.exists(f"/tmp/{marker}")


async def test_working_dir_defaults_to_root_and_env_is_given(runtime: ProcessRuntime) -> None:
    relative = await _run(runtime, "rel", ["bin/sh", "-c", "pwd; echo $GREETING"],
                          env={"GREETING": "hello there"})
    workdir = _unused_host_path("/srv/kubelite-workdir")
    elsewhere = await _run(runtime, "wd", ["sh", "-c", "pwd"], working_dir=workdir)
    for cid in (relative, elsewhere):
        assert (await _exited(runtime, cid)).exit_code == 0
    assert await _logs(runtime, relative) == b"/\nhello there\n"
    assert await _logs(runtime, elsewhere) == f"{workdir}\n".encode()
    assert not os.path.lexists(workdir)


async def test_command_and_args_run_as_given(runtime: ProcessRuntime) -> None:
    # The kubelet expands $(VAR) references before any runtime sees them.
    cid = await _run(runtime, "verbatim", ["echo", "$(WHO)"], args=["$$(WHO)"],
                     env={"WHO": "world"})
    await _exited(runtime, cid)
    assert await _logs(runtime, cid) == b"$(WHO) $$(WHO)\n"


async def test_exit_codes_are_recorded(runtime: ProcessRuntime) -> None:
    ok = await _run(runtime, "ok", ["true"])
    three = await _run(runtime, "three", ["sh", "-c", "exit 3"])
    # The runtime runs the command as given (the kubelet expands $(VAR) before it).
    killed = await _run(runtime, "killed", ["sh", "-c", "kill -9 $$"])
    statuses = [await _exited(runtime, cid) for cid in (ok, three, killed)]
    assert [(s.exit_code, s.reason) for s in statuses] == [
        (0, "Completed"), (3, "Error"), (137, "Error")]
    assert statuses[2].signal == 9
    for s in statuses:
        assert 0 < s.started_at <= s.finished_at <= time.time()
        assert s.labels["io.kubernetes.pod.uid"] == POD_UID
        assert s.labels["io.kubernetes.pod.name"] == POD_NAME
        assert s.labels["io.kubernetes.container.restartCount"] == "0"
    assert statuses[0].log_path.endswith(f"/logs/default_{POD_NAME}_{POD_UID}/ok/0.log")


async def test_stop_kills_a_container_that_ignores_sigterm(runtime: ProcessRuntime) -> None:
    cid = await _run(runtime, "stubborn",
                     ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"])
    await _logged(runtime, cid, b"ready")
    began = time.monotonic()
    await runtime.stop_container(cid, timeout=0.3)
    took = time.monotonic() - began
    status = await runtime.container_status(cid)
    assert status.state == ContainerState.EXITED and status.exit_code == 137  # SIGKILL
    assert took >= 0.3  # the grace period was given first


async def test_a_new_runtime_adopts_running_containers(tmp_path: Path,
                                                       runtime: ProcessRuntime) -> None:
    cid = await _run(runtime, "long", ["sleep", "1000"])
    running = await runtime.container_status(cid)
    assert running.state == ContainerState.RUNNING and running.pid > 0

    restarted = ProcessRuntime(_settings(tmp_path / "kubelet"))
    [adopted] = await restarted.list_containers(POD_UID)
    assert (adopted.id, adopted.state, adopted.pid) == (cid, ContainerState.RUNNING, running.pid)
    assert adopted.started_at == running.started_at

    await restarted.stop_container(cid, timeout=5)
    stopped = await restarted.container_status(cid)
    assert (stopped.state, stopped.exit_code) == (ContainerState.EXITED, 143)  # 128 + SIGTERM
    assert (await runtime.container_status(cid)).exit_code == 143


async def test_exec_sync_runs_in_the_container_view(runtime: ProcessRuntime) -> None:
    data = runtime.volume_dir(POD_UID, "data")
    Path(data, "file").write_text("in the volume\n")
    cid = await _run(runtime, "target",
                     ["sh", "-c", "echo private > /tmp/mine; echo ready; exec sleep 1000"],
                     env={"FOO": "bar"}, mounts=[Mount(data, "/mnt/data")])
    await _logged(runtime, cid, b"ready")
    result = await runtime.exec_sync(
        cid, ["sh", "-c", "cat /tmp/mine /mnt/data/file; pwd; echo $FOO; echo oops >&2; exit 4"],
        timeout=10)
    assert result == type(result)(4, b"private\nin the volume\n/\nbar\n", b"oops\n", False)

    # A command past its timeout is ended, not waited for: the deadline here only turns a
    # hang into a failure.
    slow = await asyncio.wait_for(runtime.exec_sync(cid, ["sleep", "1000"], timeout=0.3), 60)
    assert slow.timed_out

    items = [item async for item in runtime.exec_stream(cid, ["sh", "-c", "echo out"], None)]
    assert items == [(1, b"out\n"), (-1, b"0")]

    missing = await runtime.exec_sync(cid, ["no-such-command-here"], timeout=10)
    assert missing.exit_code == 127 and b"not found" in missing.stderr


async def test_read_logs_tail_and_follow(runtime: ProcessRuntime) -> None:
    gate = runtime.volume_dir(POD_UID, "gate")
    cid = await _run(runtime, "talker", [
        "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; "
        "while [ ! -e /gate/go ]; do sleep 0.02; done; echo line6 >&2",
    ], mounts=[Mount(gate, "/gate")])
    await _logged(runtime, cid, b"line5\n")
    assert await _logs(runtime, cid, tail=2) == b"line4\nline5\n"
    assert await _logs(runtime, cid, tail=0) == b""
    assert await _logs(runtime, cid, tail=10) == b"line1\nline2\nline3\nline4\nline5\n"

    async def follow() -> bytes:
        got = b""
        async for chunk in runtime.read_logs(cid, follow=True, tail=1):
            got += chunk
            if b"line5" in got:
                Path(gate, "go").touch()
        return got

    assert await asyncio.wait_for(follow(), timeout=10) == b"line5\nline6\n"
    assert (await runtime.container_status(cid)).state == ContainerState.EXITED


async def test_agnhost_serve_hostname_answers_the_pod_name(runtime: ProcessRuntime) -> None:
    port = free_port()
    cid = await _run(runtime, "agnhost", [], image="kubelite/agnhost:2.52",
                     args=["serve-hostname", "--port", str(port), "--host", "127.0.0.1"],
                     env={"HOSTNAME": POD_NAME})

    assert await _answer(port) == POD_NAME
    await runtime.stop_container(cid, timeout=5)
    assert (await runtime.container_status(cid)).exit_code == 0  # SIGTERM: a clean exit


def _checkout_under_tmp(tmp_path: Path) -> tuple[Path, Path]:
    """A venv and a copy of the agnhost package under /tmp (pytest's tmp_path is there), as
    after a `git clone` into /tmp: (the venv's python, the copy's source root)."""
    assert str(tmp_path).startswith("/tmp/"), "the test needs its files under /tmp"
    venv = tmp_path / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv",
                    "--without-pip", str(venv)], check=True, capture_output=True, timeout=60)
    source = tmp_path / "checkout"
    package = Path(__file__).resolve().parents[2] / "kubelet"
    for name in ("__init__.py", "images/__init__.py", "images/agnhost.py"):
        (source / "kubelet" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(package / name, source / "kubelet" / name)
    return venv / "bin" / "python", source


async def test_built_in_images_run_from_an_interpreter_and_package_under_tmp(
    tmp_path: Path,
) -> None:
    python, source = _checkout_under_tmp(tmp_path)
    rt = ProcessRuntime(_settings(tmp_path / "kubelet", image_python=str(python),
                                  image_source_root=str(source)))
    if rt.isolation != "mount-namespace":
        pytest.skip(f"mount namespaces with overlayfs are unavailable here (got {rt.isolation})")
    await rt.run_pod_sandbox(PodSandboxConfig(uid=POD_UID, name=POD_NAME, namespace="default"))
    try:
        port = free_port()
        cid = await _run(rt, "agnhost", [], image="kubelite/agnhost",
                         args=["serve-hostname", "--port", str(port), "--host", "127.0.0.1"],
                         env={"HOSTNAME": POD_NAME})

        assert await _answer(port) == POD_NAME
        # /tmp is still the container's own; the interpreter and package show read-only.
        view = await rt.exec_sync(cid, [
            "sh", "-c", f"test -x {python} && test -f {source}/kubelet/images/agnhost.py && "
            f"! touch {source}/new 2>/dev/null && touch /tmp/mine && ls -A {tmp_path}"],
            timeout=10)
        assert view.exit_code == 0, view
        # Only what the image needs: not the runtime's directory (tmp_path/kubelet).
        assert view.stdout.decode().split() == ["checkout", "venv"]
        assert not (source / "new").exists() and not Path("/tmp/mine").exists()

        pause = await _run(rt, "pause", [], image="kubelite/pause:3.9")
        await _logged(rt, pause, b"paused")
        await rt.stop_container(pause, timeout=5)
        assert (await rt.container_status(pause)).exit_code == 0  # ran, and ended on SIGTERM
    finally:
        await _clean_up(rt)


async def test_unrunnable_image_and_missing_binary(runtime: ProcessRuntime) -> None:
    config = ContainerConfig(name="web", image="nginx:1.25", command=[], args=[], env={})
    with pytest.raises(RuntimeError_) as pull:
        await runtime.create_container(POD_UID, config)
    assert pull.value.reason == "ErrImagePull" and '"nginx:1.25"' in pull.value.message

    with pytest.raises(RuntimeError_) as start:
        await _run(runtime, "missing", ["no-such-binary-kubelite"])
    assert start.value.reason == "RunContainerError"
    assert "executable file not found" in start.value.message
    [status] = [s for s in await runtime.list_containers(POD_UID) if s.name == "missing"]
    assert (status.state, status.exit_code, status.reason) == (ContainerState.EXITED, 128,
                                                              "StartError")


async def test_busybox_is_a_real_busybox_with_its_applets(runtime: ProcessRuntime) -> None:
    script = ("[[ 1 == 1 ]] && /bin/sh -c '[[ a == a ]]' && busybox | head -n 1 && "
              "which sh wget nslookup sleep && "
              "echo ready && exec sleep 1000")
    for image in ("busybox", "registry.k8s.io/busybox:1.28", "docker.io/library/busybox:1.36"):
        cid = await _run(runtime, f"bb-{secrets.token_hex(3)}", ["sh", "-c", script],
                         image=image)
        await _logged(runtime, cid, b"ready")
        out = (await _logs(runtime, cid)).decode()
        assert out.startswith("BusyBox v"), out
        assert out.split("\n")[1:5] == ["/bin/sh", "/bin/wget", "/bin/nslookup", "/bin/sleep"]
        result = await runtime.exec_sync(cid, ["sh", "-c", "[[ x == x ]] && echo yes"],
                                         timeout=10)
        assert (result.exit_code, result.stdout) == (0, b"yes\n"), result
        await runtime.stop_container(cid, timeout=5)


async def test_busybox_missing_from_the_node_is_err_image_pull(tmp_path: Path) -> None:
    rt = ProcessRuntime(_settings(tmp_path / "no-busybox",
                                  busybox=str(tmp_path / "not-there" / "busybox")))
    await rt.run_pod_sandbox(PodSandboxConfig(uid=POD_UID, name=POD_NAME, namespace="default"))
    try:
        config = ContainerConfig(name="c", image="busybox:1.36", command=["sh"], args=[],
                                 env={})
        with pytest.raises(RuntimeError_) as missing:
            await rt.create_container(POD_UID, config)
        assert missing.value.reason == "ErrImagePull"
        assert '"busybox:1.36"' in missing.value.message
        assert "busybox-static" in missing.value.message
        assert await rt.list_containers(POD_UID) == []
    finally:
        await _clean_up(rt)


async def test_without_a_mount_namespace_volumes_are_refused(tmp_path: Path) -> None:
    rt = ProcessRuntime(_settings(tmp_path / "plain", isolation="none"))
    await rt.run_pod_sandbox(PodSandboxConfig(uid=POD_UID, name=POD_NAME, namespace="default"))
    try:
        config = ContainerConfig(name="c", image="busybox", command=["true"], args=[], env={},
                                 mounts=[Mount(rt.volume_dir(POD_UID, "v"), "/var/log/app")])
        with pytest.raises(RuntimeError_) as refused:
            await rt.create_container(POD_UID, config)
        assert refused.value.reason == "CreateContainerError"
        assert "no mount namespace" in refused.value.message
        assert "refusing to mount volumes onto host paths" in refused.value.message

        cid = await _run(rt, "plain", ["sh", "-c", "echo $TMPDIR; pwd; exec sleep 1000"],
                         env={"FOO": "bar"})
        await _logged(rt, cid, b"/\n")
        tmpdir, cwd = (await _logs(rt, cid)).decode().split()
        assert tmpdir.startswith(rt.root_dir) and os.path.isdir(tmpdir) and cwd == "/"
        result = await rt.exec_sync(cid, ["sh", "-c", "echo $FOO $TMPDIR; pwd"], timeout=10)
        assert result.stdout == f"bar {tmpdir}\n/\n".encode()
        await rt.stop_container(cid, timeout=5)
        assert (await rt.container_status(cid)).exit_code == 143
    finally:
        await _clean_up(rt)


async def test_processes_left_behind_end_with_the_container(runtime: ProcessRuntime) -> None:
    cid = await _run(runtime, "forker", ["sh", "-c", "sleep 1000 & echo $!"])
    assert (await _exited(runtime, cid)).exit_code == 0
    orphan = int(await _logs(runtime, cid))
    await eventually(lambda: not _running(orphan), timeout=5,
                     message="the container's background process to be killed")


async def test_exec_stream_feeds_stdin(runtime: ProcessRuntime) -> None:
    cid = await _run(runtime, "cat", ["sleep", "1000"])

    async def stdin() -> AsyncIterator[bytes]:
        yield b"one\n"
        yield b"two\n"

    items = [item async for item in runtime.exec_stream(cid, ["sh", "-c", "cat; exit 2"],
                                                         stdin())]
    assert b"".join(data for fd, data in items if fd == 1) == b"one\ntwo\n"
    assert items[-1] == (-1, b"2")
