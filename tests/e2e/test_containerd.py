"""Worker hosts running pods in containerd (the multi-host harness with
``runtime="containerd"``): upstream nginx manifests, pod addresses from node IPAM's podCIDRs,
rolling updates, securityContext users, memory limits, PID namespaces, container logs, and
pod-to-pod and pod-to-ClusterIP traffic across hosts.

One cluster of three workers serves the module; every test removes what it made. ``nginx``
and ``kubelite/testserver`` are the project's test server (busybox httpd on port 80, whose
/cgi-bin/hostname answers with the pod's name), ``busybox`` the node's busybox, all pulled
from the registry on the control-plane host as docker.io's images.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelite.testing.netns import (
    MultiHostCluster,
    MultiHostSettings,
    containerd_unavailable_reason,
    has_script,
)
from tests.e2e.conftest import E2EReport

REASON = containerd_unavailable_reason()
if REASON is None:
    missing = [s for s in ("kubelite-controller-manager", "kubelite-proxy") if not has_script(s)]
    if missing:
        REASON = f"{', '.join(missing)} not installed"
WORKERS = 3
CLUSTER_CIDR = "10.244.0.0/16"
WAIT = 90.0
"""Seconds any one condition may take (pulls and sandboxes on a loaded 2-core machine)."""

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(REASON is not None, reason=REASON or ""),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, shared_images_dir: Path,
            e2e_report: E2EReport) -> Iterator[MultiHostCluster]:
    settings = MultiHostSettings(
        workers=WORKERS, runtime="containerd", cluster_cidr=CLUSTER_CIDR,
        images_dir=shared_images_dir)
    c = MultiHostCluster(Path(tmp_path_factory.mktemp("containerd")), settings=settings)
    started = time.monotonic()
    c.start()
    e2e_report.add(f"containerd cluster ({WORKERS} workers) started in "
                   f"{time.monotonic() - started:.1f}s")
    try:
        yield c
    finally:
        stopping = time.monotonic()
        c.stop()
        e2e_report.add(f"containerd cluster stopped in {time.monotonic() - stopping:.1f}s")
    assert not c.leaked, f"processes outlived the orderly stop: {c.leaked}"


# -- helpers -----------------------------------------------------------------------------------


def pods(cluster: MultiHostCluster, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json("pods", "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def running_and_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions", []))
    return status.get("phase") == "Running" and ready and bool(status.get("podIP"))


def wait_ready(cluster: MultiHostCluster, selector: str, count: int,
               namespace: str = "default") -> list[dict[str, Any]]:
    """The ``count`` pods matching ``selector``, once all are Running and ready."""
    found: list[dict[str, Any]] = []

    def ready() -> bool:
        nonlocal found
        items = cluster.get_json("pods", "-n", namespace, "-l", selector)["items"]
        found = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        return len(found) == count and all(running_and_ready(p) for p in found)

    cluster.wait_for(ready, f"{count} ready pods {selector}", WAIT, interval=0.3,
                     watch=kubelets(cluster))
    return found


def wait_pod(cluster: MultiHostCluster, name: str, check: Callable[[dict[str, Any]], bool],
             what: str) -> dict[str, Any]:
    pod: dict[str, Any] = {}

    def done() -> bool:
        nonlocal pod
        pod = cluster.get_json("pod", name)
        return check(pod)

    try:
        cluster.wait_for(done, f"pod {name}: {what}", WAIT, interval=0.3,
                         watch=kubelets(cluster))
    except AssertionError as e:
        raise AssertionError(f"{e}\nlast status: {json.dumps(pod.get('status'))}") from None
    return pod


def delete(cluster: MultiHostCluster, *resources: str, namespace: str = "default") -> None:
    """Deletes the resources without waiting (wait_no_pods waits for their pods)."""
    cluster.klctl("delete", "-n", namespace, "--ignore-not-found", "--wait=false", *resources)


def wait_no_pods(cluster: MultiHostCluster, selector: str, namespace: str = "default") -> None:
    cluster.wait_for(
        lambda: not cluster.get_json("pods", "-n", namespace, "-l", selector)["items"],
        f"pods {selector} gone", WAIT, interval=0.3)


def kubelets(cluster: MultiHostCluster) -> list[str]:
    return [n for n in cluster.components if n.startswith("kubelet-")]


def exec_(cluster: MultiHostCluster, pod: str, *command: str,
          check: bool = True, timeout: float = 60) -> str:
    return cluster.klctl("exec", pod, "--", *command, check=check, timeout=timeout).stdout


def container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses: list[dict[str, Any]] = pod.get("status", {}).get("containerStatuses", [])
    return statuses[0] if statuses else {}


def in_pod_cidrs(cluster: MultiHostCluster, pods: list[dict[str, Any]]) -> None:
    """Each pod's IP is in the cluster's CIDR and in its node's podCIDR."""
    cidrs = cluster.pod_cidrs()
    for pod in pods:
        ip = ipaddress.ip_address(pod["status"]["podIP"])
        node = pod["spec"]["nodeName"]
        assert ip in ipaddress.ip_network(CLUSTER_CIDR), (pod["metadata"]["name"], ip)
        cidr = cidrs.get(node, "")
        assert cidr and ip in ipaddress.ip_network(cidr), (pod["metadata"]["name"], ip, node,
                                                           cidr)


def spread_deployment(name: str, image: str, *, replicas: int = WORKERS,
                      env: str = "1") -> str:
    """A Deployment with one pod per worker: each asks for 3 of a node's 4 cpus (the scheduler
    has no pod anti-affinity), and a rolling update replaces a pod before starting its
    successor (maxSurge 0)."""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 0, maxUnavailable: 1}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: {image}
        env:
        - {{name: GENERATION, value: "{env}"}}
        ports:
        - containerPort: 80
        resources:
          requests: {{cpu: "3"}}
"""


def busybox_pod(name: str, command: str, *, node: str | None = None, extra: str = "",
                container_extra: str = "") -> str:
    node_line = f"\n  nodeName: {node}" if node else ""
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{test: {name}}}
spec:{node_line}
  terminationGracePeriodSeconds: 1{extra}
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", {json.dumps(command)}]{container_extra}
"""


# -- upstream manifests ------------------------------------------------------------------------

# As in the Kubernetes documentation (pods/simple-pod.yaml, controllers/nginx-deployment.yaml,
# controllers/frontend.yaml and fluentd-daemonset.yaml), with nginx as the image.
NGINX_POD = """
apiVersion: v1
kind: Pod
metadata:
  name: nginx
  labels:
    run: nginx
spec:
  containers:
  - name: nginx
    image: nginx
    ports:
    - containerPort: 80
"""

NGINX_REPLICASET = """
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: frontend
  labels:
    app: guestbook
    tier: frontend
spec:
  replicas: 3
  selector:
    matchLabels:
      tier: frontend
  template:
    metadata:
      labels:
        tier: frontend
    spec:
      containers:
      - name: nginx
        image: nginx
"""

NGINX_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  labels:
    app: nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx
        ports:
        - containerPort: 80
"""

NGINX_DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: nginx-ds
  labels:
    k8s-app: nginx-ds
spec:
  selector:
    matchLabels:
      name: nginx-ds
  template:
    metadata:
      labels:
        name: nginx-ds
    spec:
      tolerations:
      - key: node-role.kubernetes.io/control-plane
        operator: Exists
        effect: NoSchedule
      containers:
      - name: nginx
        image: nginx
        resources:
          limits:
            memory: 200Mi
          requests:
            cpu: 100m
            memory: 200Mi
      terminationGracePeriodSeconds: 30
"""


def test_upstream_nginx_manifests_run_with_pod_ips_from_their_nodes_cidr(
        cluster: MultiHostCluster, e2e_report: E2EReport) -> None:
    manifests = {"run=nginx": (NGINX_POD, 1), "tier=frontend": (NGINX_REPLICASET, 3),
                 "app=nginx": (NGINX_DEPLOYMENT, 3), "name=nginx-ds": (NGINX_DAEMONSET, WORKERS)}
    applied = time.monotonic()
    for manifest, _ in manifests.values():
        cluster.apply(manifest)
    try:
        everything: list[dict[str, Any]] = []
        for selector, (_, count) in manifests.items():
            everything += wait_ready(cluster, selector, count)
        e2e_report.add(f"containerd: {len(everything)} nginx pods (Pod, ReplicaSet, Deployment, "
                       f"DaemonSet) ready {time.monotonic() - applied:.1f}s after apply")
        in_pod_cidrs(cluster, everything)
        ips = [p["status"]["podIP"] for p in everything]
        assert len(set(ips)) == len(ips), ips
        daemons = pods(cluster, "name=nginx-ds")
        assert sorted(p["spec"]["nodeName"] for p in daemons) == sorted(
            h.name for h in cluster.workers)
        by_node = cluster.pod_cidrs()
        cidrs = [by_node[h.name] for h in cluster.workers]
        assert len(set(cidrs)) == WORKERS, cidrs
    finally:
        delete(cluster, "pod/nginx", "replicaset/frontend", "deployment/nginx-deployment",
               "daemonset/nginx-ds")
        for selector in manifests:
            wait_no_pods(cluster, selector)


def test_two_pods_on_one_node_have_their_own_ips_and_both_serve_http(
        cluster: MultiHostCluster) -> None:
    node = cluster.workers[0].name
    cluster.apply(f"""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: pair
spec:
  replicas: 2
  selector:
    matchLabels: {{app: pair}}
  template:
    metadata:
      labels: {{app: pair}}
    spec:
      nodeSelector:
        kubernetes.io/hostname: {node}
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: nginx
        ports:
        - containerPort: 80
""")
    try:
        pair = wait_ready(cluster, "app=pair", 2)
        assert {p["spec"]["nodeName"] for p in pair} == {node}
        ips = {p["status"]["podIP"]: p["metadata"]["name"] for p in pair}
        assert len(ips) == 2, ips
        in_pod_cidrs(cluster, pair)
        for ip, name in ips.items():
            page = cluster.run(node, ["wget", "-qO-", "-T", "5", f"http://{ip}/"], check=True)
            assert "Welcome to nginx!" in page.stdout
            answer = cluster.run(node, ["wget", "-qO-", "-T", "5",
                                        f"http://{ip}/cgi-bin/hostname"], check=True)
            assert answer.stdout.strip() == name
    finally:
        delete(cluster, "deployment/pair")
        wait_no_pods(cluster, "app=pair")


def test_rolling_update_across_three_nodes_completes(cluster: MultiHostCluster) -> None:
    cluster.apply(spread_deployment("rolling", "kubelite/testserver:latest"))
    try:
        before = wait_ready(cluster, "app=rolling", WORKERS)
        assert len({p["spec"]["nodeName"] for p in before}) == WORKERS
        cluster.klctl("rollout", "status", "deployment/rolling", "--timeout=90s", timeout=100)
        cluster.apply(spread_deployment("rolling", "nginx", env="2"))
        result = cluster.klctl("rollout", "status", "deployment/rolling", "--timeout=120s",
                               timeout=130)
        assert "successfully rolled out" in result.stdout
        after = wait_ready(cluster, "app=rolling", WORKERS)
        assert {p["metadata"]["name"] for p in after}.isdisjoint(
            p["metadata"]["name"] for p in before)
        assert {p["spec"]["containers"][0]["image"] for p in after} == {"nginx"}
        assert len({p["spec"]["nodeName"] for p in after}) == WORKERS
        in_pod_cidrs(cluster, after)
    finally:
        delete(cluster, "deployment/rolling")
        wait_no_pods(cluster, "app=rolling")


def test_run_as_user_and_run_as_non_root(cluster: MultiHostCluster) -> None:
    cluster.apply(busybox_pod("as-user", "sleep 3600", container_extra="""
    securityContext:
      runAsUser: 1000
      runAsGroup: 1000"""))
    cluster.apply(busybox_pod("non-root", "sleep 3600", container_extra="""
    securityContext:
      runAsNonRoot: true"""))
    try:
        wait_pod(cluster, "as-user", running_and_ready, "running")
        assert exec_(cluster, "as-user", "id", "-u").strip() == "1000"
        assert exec_(cluster, "as-user", "id", "-g").strip() == "1000"
        pod = wait_pod(
            cluster, "non-root",
            lambda p: container_status(p).get("state", {}).get("waiting", {}).get("reason")
            == "CreateContainerConfigError", "CreateContainerConfigError")
        message = container_status(pod)["state"]["waiting"].get("message", "")
        assert "non-root" in message, message
    finally:
        delete(cluster, "pod/as-user", "pod/non-root")
        wait_no_pods(cluster, "test=as-user")
        wait_no_pods(cluster, "test=non-root")


def test_memory_limit_ends_in_oom_killed(cluster: MultiHostCluster) -> None:
    cluster.apply(busybox_pod("hog", "tail /dev/zero", extra="\n  restartPolicy: Never",
                              container_extra="""
    resources:
      limits: {memory: 32Mi}"""))
    try:
        def terminated(pod: dict[str, Any]) -> dict[str, Any]:
            status = container_status(pod)
            return dict(status.get("state", {}).get("terminated")
                        or status.get("lastState", {}).get("terminated") or {})

        pod = wait_pod(cluster, "hog", lambda p: bool(terminated(p)), "terminated")
        assert terminated(pod).get("reason") == "OOMKilled", terminated(pod)
        assert terminated(pod).get("exitCode") == 137, terminated(pod)
        wait_pod(cluster, "hog", lambda p: p.get("status", {}).get("phase") == "Failed",
                 "Failed")
    finally:
        delete(cluster, "pod/hog")
        wait_no_pods(cluster, "test=hog")


def test_container_sees_only_its_own_processes(cluster: MultiHostCluster) -> None:
    node = cluster.workers[1].name
    cluster.apply(busybox_pod("pids", "exec sleep 3600", node=node))
    try:
        wait_pod(cluster, "pids", running_and_ready, "running")
        listing = exec_(cluster, "pids", "ps", "-o", "pid,args")
        rows = [line.split(None, 1) for line in listing.strip().splitlines()[1:]]
        commands = {int(pid): args.strip() for pid, args in rows}
        assert commands.get(1) == "sleep 3600", listing
        assert set(commands.values()) <= {"sleep 3600", "ps -o pid,args"}, listing
        kubelet = cluster.components[f"kubelet-{node}"].process.pid
        assert kubelet is not None and kubelet != 1
        assert kubelet not in commands
        probe = cluster.klctl("exec", "pids", "--", "kill", "-0", str(kubelet), check=False)
        assert probe.returncode != 0, probe
        assert not exec_(cluster, "pids", "sh", "-c",
                         f"ls -d /proc/{kubelet} 2>/dev/null || true").strip()
    finally:
        delete(cluster, "pod/pids")
        wait_no_pods(cluster, "test=pids")


def test_logs_show_the_containers_output(cluster: MultiHostCluster) -> None:
    cluster.apply(busybox_pod(
        "talker", "echo hello from the container; echo and from stderr >&2; exec sleep 3600"))
    try:
        wait_pod(cluster, "talker", running_and_ready, "running")
        cluster.wait_for(
            lambda: "and from stderr" in cluster.klctl("logs", "talker").stdout,
            "both lines logged", WAIT)
        lines = cluster.klctl("logs", "talker").stdout.splitlines()
        # containerd copies stdout and stderr by separate readers: between the two streams
        # the log keeps no order (as in Kubernetes), within each it does.
        assert sorted(lines) == ["and from stderr", "hello from the container"], lines
    finally:
        delete(cluster, "pod/talker")
        wait_no_pods(cluster, "test=talker")


def test_pods_reach_pods_and_cluster_ips_across_hosts(cluster: MultiHostCluster,
                                                     e2e_report: E2EReport) -> None:
    client_node, server_node = cluster.workers[0].name, cluster.workers[1].name
    cluster.apply(spread_deployment("across", "kubelite/testserver"))
    cluster.apply("""
apiVersion: v1
kind: Service
metadata:
  name: across
spec:
  selector: {app: across}
  ports:
  - port: 80
    targetPort: 80
""")
    cluster.apply(busybox_pod("client", "exec sleep 3600", node=client_node))
    try:
        servers = wait_ready(cluster, "app=across", WORKERS)
        wait_pod(cluster, "client", running_and_ready, "running")
        by_node = {p["spec"]["nodeName"]: p for p in servers}
        assert sorted(by_node) == sorted(h.name for h in cluster.workers)

        # Pod to pod on another host: the route agents' host-gw routes, no NAT.
        remote = by_node[server_node]
        # (busybox 1.35's wget crashes on -T: klctl's timeout bounds the requests instead.)
        answer = exec_(cluster, "client", "wget", "-qO-",
                       f"http://{remote['status']['podIP']}/cgi-bin/hostname")
        assert answer.strip() == remote["metadata"]["name"]

        cluster_ip = cluster.get_json("service", "across")["spec"]["clusterIP"]
        names = {p["metadata"]["name"] for p in servers}

        def fetch(count: int) -> list[str]:
            out = exec_(cluster, "client", "sh", "-c",
                        f"for i in $(seq {count}); do "
                        f"wget -qO- http://{cluster_ip}/cgi-bin/hostname || echo FAILED; "
                        "done")
            return out.split()

        # The client's proxy knows all three endpoints once three answers in a row differ.
        cluster.wait_for(lambda: set(fetch(WORKERS)) == names,
                         "the ClusterIP to answer from every pod", WAIT)
        counts = collections.Counter(fetch(30))
        assert counts == {name: 10 for name in names}, counts
        e2e_report.add("containerd: 30 requests from a pod to a ClusterIP over 3 hosts: "
                       + "/".join(str(n) for n in counts.values()))
    finally:
        delete(cluster, "deployment/across", "service/across", "pod/client")
        wait_no_pods(cluster, "app=across")
        wait_no_pods(cluster, "test=client")
