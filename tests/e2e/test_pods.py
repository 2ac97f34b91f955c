"""Pods on real nodes: API server, scheduler and two kubelets as processes, driven by klctl
with manifests written as Kubernetes users write them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelite.testing.cluster import NodeSpec, TestCluster
from kubelite.testing.etcd import EtcdProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="pod volumes need mount namespaces (root)"),
]


@pytest.fixture(scope="module")
def cluster(etcd: EtcdProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    c = TestCluster(
        tmp_path_factory.mktemp("cluster"), etcd.endpoint,
        [NodeSpec("node-1", "127.0.0.2", cpu="2"),
         NodeSpec("node-2", "127.0.0.3", cpu="4", labels={"disktype": "ssd"})],
    )
    try:
        c.start()
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()


def pod(cluster: TestCluster, name: str) -> dict[str, Any]:
    return json.loads(cluster.klctl("get", "pod", name, "-o", "json").stdout)  # type: ignore[no-any-return]


def container(p: dict[str, Any], name: str) -> dict[str, Any]:
    statuses = p["status"].get("containerStatuses", []) + p["status"].get(
        "initContainerStatuses", [])
    return next(s for s in statuses if s["name"] == name)


def condition(p: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in p["status"].get("conditions", []) if c["type"] == type_), {})


def phase_is(cluster: TestCluster, name: str, phase: str) -> bool:
    return bool(pod(cluster, name)["status"].get("phase") == phase)


def test_two_containers_share_a_host_path_volume(cluster: TestCluster, tmp_path: Path) -> None:
    data = tmp_path / "counter-data"
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata:
  name: counter
spec:
  volumes:
    - name: data
      hostPath:
        path: {data}
        type: DirectoryOrCreate
    - name: logs
      emptyDir: {{}}
  containers:
    - name: writer
      image: busybox
      command: ["sh", "-c", "i=0; while true; do echo $i >> /data/count.log; echo $i > /var/log/e2e-marker; i=$((i+1)); sleep 0.2; done"]
      volumeMounts:
        - {{name: data, mountPath: /data}}
        - {{name: logs, mountPath: /var/log}}
    - name: reader
      image: busybox
      command: ["sh", "-c", "tail -F /data/count.log"]
      volumeMounts:
        - {{name: data, mountPath: /data}}
""")
    cluster.wait_for(lambda: phase_is(cluster, "counter", "Running"), "counter Running")
    cluster.wait_for(lambda: (data / "count.log").exists()
                     and len((data / "count.log").read_text().split()) >= 5, "the counter file")
    cluster.wait_for(
        lambda: "3\n" in cluster.klctl("logs", "counter", "-c", "reader").stdout,
        "the reader to tail the writer's file",
    )
    # The container's /var/log is its volume: the node's /var/log is untouched.
    assert not Path("/var/log/e2e-marker").exists()
    # Nothing was written to a /data on the node either.
    assert not Path("/data/count.log").exists()
    p = pod(cluster, "counter")
    assert p["status"]["podIP"] == p["status"]["hostIP"]
    assert condition(p, "Ready")["status"] == "True"
    result = cluster.klctl("exec", "counter", "-c", "writer", "--", "sh", "-c",
                           "ls /data && exit 3", check=False)
    assert result.returncode == 3
    assert "count.log" in result.stdout


def test_liveness_probe_failure_restarts_the_container(cluster: TestCluster) -> None:
    cluster.apply("""
apiVersion: v1
kind: Pod
metadata:
  name: liveness-exec
spec:
  containers:
    - name: liveness
      image: busybox
      args: ["/bin/sh", "-c", "touch /tmp/healthy; sleep 2; rm -f /tmp/healthy; sleep 600"]
      livenessProbe:
        exec:
          command: ["cat", "/tmp/healthy"]
        periodSeconds: 1
        failureThreshold: 1
""")
    cluster.wait_for(
        lambda: container(pod(cluster, "liveness-exec"), "liveness")["restartCount"] >= 2,
        "two restarts after liveness failures", timeout=45,
    )
    events = cluster.klctl("get", "events", "--field-selector",
                           "involvedObject.name=liveness-exec").stdout
    assert "Unhealthy" in events and "Liveness probe failed" in events


def test_requests_that_fit_one_node_land_there(cluster: TestCluster) -> None:
    cluster.apply("""
apiVersion: v1
kind: Pod
metadata:
  name: big
spec:
  containers:
    - name: main
      image: busybox
      command: ["sleep", "600"]
      resources:
        requests:
          cpu: "3"
          memory: 64Mi
""")
    cluster.wait_for(lambda: pod(cluster, "big")["spec"].get("nodeName") == "node-2",
                     "big on node-2")
    cluster.wait_for(lambda: phase_is(cluster, "big", "Running"), "big Running")


def test_pod_that_fits_no_node_stays_pending_with_the_reason(cluster: TestCluster) -> None:
    cluster.apply("""
apiVersion: v1
kind: Pod
metadata:
  name: huge
spec:
  containers:
    - name: main
      image: busybox
      command: ["sleep", "600"]
      resources:
        requests:
          cpu: "10"
""")
    cluster.wait_for(lambda: condition(pod(cluster, "huge"), "PodScheduled").get("reason")
                     == "Unschedulable", "the Unschedulable condition")
    p = pod(cluster, "huge")
    assert p["status"]["phase"] == "Pending"
    assert "nodeName" not in p["spec"]
    assert condition(p, "PodScheduled")["message"].startswith(
        "0/2 nodes are available: 2 Insufficient cpu.")


def test_node_selector(cluster: TestCluster) -> None:
    cluster.apply("""
apiVersion: v1
kind: Pod
metadata:
  name: on-ssd
spec:
  nodeSelector:
    disktype: ssd
  containers:
    - name: main
      image: busybox
      command: ["sleep", "600"]
""")
    cluster.wait_for(lambda: pod(cluster, "on-ssd")["spec"].get("nodeName") == "node-2",
                     "on-ssd on node-2")


def test_init_containers_run_in_order_before_the_containers(cluster: TestCluster) -> None:
    cluster.apply("""
apiVersion: v1
kind: Pod
metadata:
  name: with-init
spec:
  volumes:
    - name: work
      emptyDir: {}
  initContainers:
    - name: first
      image: busybox
      command: ["sh", "-c", "echo first >> /work/order"]
      volumeMounts: [{name: work, mountPath: /work}]
    - name: second
      image: busybox
      command: ["sh", "-c", "sleep 0.5; echo second >> /work/order"]
      volumeMounts: [{name: work, mountPath: /work}]
  containers:
    - name: main
      image: busybox
      command: ["sh", "-c", "cat /work/order; sleep 600"]
      volumeMounts: [{name: work, mountPath: /work}]
""")
    cluster.wait_for(lambda: phase_is(cluster, "with-init", "Running"), "with-init Running")
    cluster.wait_for(lambda: cluster.klctl("logs", "with-init").stdout == "first\nsecond\n",
                     "main's log")
    p = pod(cluster, "with-init")
    assert condition(p, "Initialized")["status"] == "True"
    for name in ("first", "second"):
        terminated = container(p, name)["state"]["terminated"]
        assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"


def test_crash_loop_backs_off_longer_each_time(cluster: TestCluster) -> None:
    cluster.apply("""
apiVersion: v1
kind: Pod
metadata:
  name: crasher
spec:
  containers:
    - name: main
      image: busybox
      command: ["sh", "-c", "echo crashing; exit 1"]
""")
    # The back-off the kubelet waits after each restart, as its status says it (Kubernetes'
    # "back-off 2s restarting failed container=..."): times seen from here would move with
    # how long each look takes on a loaded machine.
    delays: dict[int, float] = {}

    def progressed() -> bool:
        status = container(pod(cluster, "crasher"), "main")
        waiting = status["state"].get("waiting", {})
        said = re.match(r"back-off ([0-9.]+)s ", waiting.get("message", ""))
        if waiting.get("reason") == "CrashLoopBackOff" and said:
            delays.setdefault(status["restartCount"], float(said.group(1)))
        return bool(status["restartCount"] >= 4 and len(delays) >= 2)

    cluster.wait_for(progressed, "four restarts and two back-offs seen", timeout=60,
                     interval=0.05)
    # Doubling from the cluster's first back-off to its cap.
    timers = cluster.kubelet_timers
    assert all(delay == min(timers.backoff_initial * 2 ** (restarts - 1), timers.backoff_max)
               for restarts, delay in delays.items()), f"back-off did not double: {delays}"
    last = container(pod(cluster, "crasher"), "main")["lastState"]["terminated"]
    assert last["exitCode"] == 1 and last["reason"] == "Error"
    assert "crashing" in cluster.klctl("logs", "crasher", "--previous").stdout


def test_graceful_delete_runs_the_pre_stop_hook(cluster: TestCluster, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata:
  name: graceful
spec:
  terminationGracePeriodSeconds: 300
  volumes:
    - name: marks
      hostPath:
        path: {marks}
        type: DirectoryOrCreate
  containers:
    - name: main
      image: busybox
      command: ["sh", "-c", "trap 'echo term > /marks/sigterm; exit 0' TERM; while true; do sleep 0.1; done"]
      volumeMounts: [{{name: marks, mountPath: /marks}}]
      lifecycle:
        preStop:
          exec:
            command: ["sh", "-c", "echo prestop > /marks/prestop"]
""")
    cluster.wait_for(lambda: phase_is(cluster, "graceful", "Running"), "graceful Running")
    # The delete waits for the pod to go, up to its 30 s: well inside the 300 s grace, so
    # the kubelet ended it on the container's exit at SIGTERM, not by waiting out the grace.
    cluster.klctl("delete", "pod", "graceful", "--timeout", "30s")
    assert (marks / "prestop").read_text() == "prestop\n"
    assert (marks / "sigterm").read_text() == "term\n"
    missing = cluster.klctl("get", "pod", "graceful", check=False)
    assert missing.returncode == 1 and "NotFound" in missing.stderr


def test_image_the_runtime_cannot_run_waits_with_a_reason(cluster: TestCluster) -> None:
    cluster.apply("""
apiVersion: v1
kind: Pod
metadata:
  name: nginx
spec:
  containers:
    - name: nginx
      image: nginx:1.25
""")
    cluster.wait_for(
        lambda: container(pod(cluster, "nginx"), "nginx")["state"].get("waiting", {}).get(
            "reason") in ("ErrImagePull", "ImagePullBackOff"), "the image error")
    waiting = container(pod(cluster, "nginx"), "nginx")["state"]["waiting"]
    assert "nginx:1.25" in waiting["message"]


def test_agnhost_serves_its_pod_name(cluster: TestCluster) -> None:
    cluster.apply("""
apiVersion: v1
kind: Pod
metadata:
  name: hostname-server
spec:
  nodeSelector:
    kubernetes.io/hostname: node-1
  containers:
    - name: server
      image: kubelite/agnhost
      args: ["serve-hostname", "--port", "19376"]
      ports:
        - {name: http, containerPort: 19376}
      readinessProbe:
        httpGet: {path: /, port: http}
        periodSeconds: 1
""")
    cluster.wait_for(lambda: condition(pod(cluster, "hostname-server"), "Ready").get("status")
                     == "True", "hostname-server Ready")
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.2:19376/", timeout=5) as response:
        assert response.read().decode().strip() == "hostname-server"


def test_restarted_kubelet_adopts_its_pods(cluster: TestCluster) -> None:
    cluster.apply("""
apiVersion: v1
kind: Pod
metadata:
  name: adoptee
spec:
  nodeSelector:
    kubernetes.io/hostname: node-1
  containers:
    - name: main
      image: busybox
      command: ["sleep", "3607"]
""")
    cluster.wait_for(lambda: phase_is(cluster, "adoptee", "Running"), "adoptee Running")
    before = _pids("sleep 3607")
    assert len(before) == 1
    kubelet = cluster.processes["kubelet-node-1"]
    kubelet.kill()
    cluster.start_kubelet(next(n for n in cluster.nodes if n.name == "node-1"))
    cluster.wait_for(lambda: _kubelet_started_twice(cluster), "the restarted kubelet")
    # Several sync periods (0.2 s housekeeping, 2 s resync) with the same single process.
    steady_since = time.monotonic()

    def steady() -> bool:
        nonlocal steady_since
        assert _pids("sleep 3607") == before, "the pod's process must be adopted, not replaced"
        return time.monotonic() - steady_since > 3

    cluster.wait_for(steady, "three steady seconds")
    status = container(pod(cluster, "adoptee"), "main")
    assert status["restartCount"] == 0 and "running" in status["state"]


def _kubelet_started_twice(cluster: TestCluster) -> bool:
    return cluster.processes["kubelet-node-1"].tail(10_000).count("kubelet running") >= 2


def _pids(pattern: str) -> list[str]:
    result = subprocess.run(["pgrep", "-f", f"^{pattern}$"], capture_output=True, text=True,
                            check=False)
    return sorted(result.stdout.split())


@pytest.mark.parametrize(("manifest_fragment", "path"), [
    ("restartPolicy: Sometimes", "spec.restartPolicy"),
    ("containers: [{name: c, image: busybox, livenessProbe: {exec: {command: [\"true\"]}, periodSeconds: -1}}]",
     "spec.containers[0].livenessProbe.periodSeconds"),
    ("containers: [{name: c, image: busybox, readinessProbe: {httpGet: {port: web}}}]",
     "spec.containers[0].readinessProbe.httpGet.port"),
    ("containers: [{name: c, image: busybox, resources: {requests: {cpu: abc}}}]",
     "spec.containers[0].resources.requests[cpu]"),
])
def test_bad_pods_are_rejected_at_the_api(cluster: TestCluster, manifest_fragment: str,
                                         path: str) -> None:
    spec = manifest_fragment if manifest_fragment.startswith("containers") else (
        f"{manifest_fragment}\n  containers: [{{name: c, image: busybox}}]")
    result = cluster.klctl("apply", "-f", "-", check=False, input=f"""
apiVersion: v1
kind: Pod
metadata:
  name: bad
spec:
  {spec}
""")
    assert result.returncode == 1
    assert path in result.stderr, result.stderr
    assert cluster.klctl("get", "pod", "bad", check=False).returncode == 1


def _watch_pod(cluster: TestCluster, name: str, until: float) -> list[dict[str, Any]]:
    """Every version of pod ``name`` written before ``until`` (time.monotonic()), from a real
    watch: each one is a write to etcd."""
    import asyncio

    from kubelite.api import convert
    from kubelite.client.client import ApiClient
    from protos.v1 import objects_pb2 as v1

    seen: list[dict[str, Any]] = []

    async def watch() -> None:
        async with ApiClient(cluster.server) as client:
            async for event in client.watch(v1.Pod, "default",
                                            field_selector=f"metadata.name={name}"):
                if event.type in ("ADDED", "MODIFIED") and event.object is not None:
                    seen.append(convert.message_to_dict(event.object))

    async def run() -> None:
        task = asyncio.create_task(watch())
        await asyncio.sleep(max(0.0, until - time.monotonic()))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())
    return seen


def test_a_container_that_cannot_start_backs_off_like_a_crash(cluster: TestCluster) -> None:
    # The cluster's kubelets back off 1 s, doubling to 8 s.
    cluster.apply("""
apiVersion: v1
kind: Pod
metadata:
  name: unstartable
spec:
  nodeSelector:
    kubernetes.io/hostname: node-2
  containers:
    - name: main
      image: busybox
      command: ["/nonexistent-binary"]
""")
    versions = _watch_pod(cluster, "unstartable", time.monotonic() + 9)
    statuses = [container(p, "main") for p in versions if p["status"].get("containerStatuses")]
    first_seen: dict[int, int] = {}
    for i, s in enumerate(statuses):
        first_seen.setdefault(s["restartCount"], i)
    restarts = statuses[-1]["restartCount"]
    # Tries at 0 s, at once, then after 1 s, 2 s and 4 s: at most 5 restarts in 9 s (without
    # back-off it restarted several times a second).
    assert 2 <= restarts <= 5, f"{restarts} restarts in 9 s"
    # Bounded writes: a few per restart, none while nothing changes.
    assert len(versions) <= 4 * (restarts + 1), f"{len(versions)} writes for {restarts} restarts"
    reasons = {r.get("reason") for s in statuses for r in s["state"].values()}
    assert "CrashLoopBackOff" in reasons, reasons
    last = statuses[-1]["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (128, "StartError")
    assert "/nonexistent-binary" in last["message"]
    waiting = [s["state"]["waiting"] for s in statuses if "waiting" in s["state"]]
    assert any(w["reason"] == "CrashLoopBackOff" and "back-off" in w["message"]
               for w in waiting)
    assert any(w["reason"] == "RunContainerError" and "/nonexistent-binary" in w["message"]
               for w in waiting)
    cluster.klctl("delete", "pod", "unstartable", "--grace-period", "0")


def test_args_too_long_to_exec_back_off_without_flooding_the_api(cluster: TestCluster) -> None:
    # One argument over the kernel's 128 KiB per-string limit: execve fails with E2BIG.
    long_arg = "x" * 200_000
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata:
  name: too-long
spec:
  nodeSelector:
    kubernetes.io/hostname: node-2
  containers:
    - name: main
      image: busybox
      command: ["echo", "{long_arg}"]
""")
    versions = _watch_pod(cluster, "too-long", time.monotonic() + 6)
    statuses = [container(p, "main") for p in versions if p["status"].get("containerStatuses")]
    assert statuses[-1]["restartCount"] <= 4, statuses[-1]["restartCount"]
    assert len(versions) <= 16, f"{len(versions)} writes of a {len(long_arg)}-byte pod in 6 s"
    last = statuses[-1]["lastState"]["terminated"]
    assert last["reason"] == "StartError" and "Argument list too long" in last["message"]
    cluster.klctl("delete", "pod", "too-long", "--grace-period", "0")


def test_busybox_pods_run_busybox_sh_and_applets(cluster: TestCluster) -> None:
    cluster.apply("""
apiVersion: v1
kind: Pod
metadata:
  name: real-busybox
spec:
  containers:
    - name: main
      image: registry.k8s.io/busybox:1.28
      # "$$$$" is the shell's "$$" ("$$" is an escaped "$" in Kubernetes commands).
      command: ["sh", "-c", "[[ 1 == 1 ]] && readlink /proc/$$$$/exe && which wget nslookup && echo ready && exec sleep 3600"]
""")
    cluster.wait_for(lambda: "ready" in cluster.klctl("logs", "real-busybox").stdout,
                     "real-busybox ready")
    assert cluster.klctl("logs", "real-busybox").stdout.split() == [
        "/bin/busybox", "/bin/wget", "/bin/nslookup", "ready"]
    shell = cluster.klctl("exec", "real-busybox", "--", "sh", "-c",
                          "[[ a == a ]] && readlink /proc/$$/exe")
    assert shell.stdout.strip() == "/bin/busybox"
    cluster.klctl("delete", "pod", "real-busybox", "--grace-period", "0")


def test_command_and_args_expand_env_references(cluster: TestCluster) -> None:
    """$(VAR) in command and args comes from the container's env (the downward API too),
    "$$(VAR)" stays literal and an undefined reference stays as written."""
    cluster.apply("""
apiVersion: v1
kind: Pod
metadata:
  name: expands
spec:
  restartPolicy: Never
  containers:
    - name: main
      image: busybox
      command: ["echo", "$(WHO)"]
      args: ["$(POD_NAME)", "$$(WHO)", "$(NOPE)"]
      env:
        - {name: WHO, value: world}
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
""")
    cluster.wait_for(lambda: phase_is(cluster, "expands", "Succeeded"), "expands done")
    assert cluster.klctl("logs", "expands").stdout == "world expands $(WHO) $(NOPE)\n"
    cluster.klctl("delete", "pod", "expands", "--grace-period", "0")
