"""Each scheduler plugin's filter and score on hand-built NodeInfo, with upstream's reasons."""

from __future__ import annotations

import pytest

from protos.v1 import objects_pb2 as v1
from scheduler.framework import (
    Code,
    FitError,
    Framework,
    NodeInfo,
    PodInfo,
    Profile,
    Status,
    default_normalize_score,
)
from scheduler.plugins import (
    IN_TREE,
    NodeAffinity,
    NodeName,
    NodePorts,
    NodeReady,
    NodeResourcesBalancedAllocation,
    NodeResourcesFit,
    NodeResourcesLeastAllocated,
    NodeUnschedulable,
    TaintToleration,
)
from tests.unit.objects import make_node, make_pod, port, taint

GI = 1024**3


def node_info(node: v1.Node, *pods: v1.Pod) -> NodeInfo:
    info = NodeInfo(node)
    for pod in pods:
        info.add_pod(PodInfo.of(pod))
    return info


def pi(pod: v1.Pod) -> PodInfo:
    return PodInfo.of(pod)


# ------------------------------------------------------------------ NodeInfo


def test_node_info_sums_requests_and_ports() -> None:
    a = make_pod("a", cpu="500m", memory="1Gi",
                 ports=[v1.ContainerPort(container_port=80, protocol="TCP")])
    b = make_pod("b", cpu="1", extra={"example.com/gpu": "1"})
    info = node_info(make_node(extra={"example.com/gpu": "2"}), a, b)
    assert info.requested.milli_cpu == 1500
    assert info.requested.memory == GI
    assert info.requested.scalar == {"example.com/gpu": 1}
    # b has no memory request: scoring counts 200Mi for it.
    assert info.non_zero_requested.memory == GI + 200 * 1024 * 1024
    assert len(info.used_ports) == 1
    info.remove_pod("uid-a")
    assert info.requested.milli_cpu == 1000 and info.requested.memory == 0
    assert len(info.used_ports) == 0
    assert info.allocatable.allowed_pod_number == 110


# ------------------------------------------------------------------ NodeResourcesFit


def test_resources_fit_and_insufficient_reasons() -> None:
    fit = NodeResourcesFit()
    node = make_node(cpu="2", memory="4Gi")
    running = make_pod("running", cpu="1500m", memory="1Gi")
    assert fit.filter(pi(make_pod(cpu="500m", memory="3Gi")), node_info(node, running)).is_success()

    status = fit.filter(pi(make_pod(cpu="600m")), node_info(node, running))
    assert status.code == Code.UNSCHEDULABLE
    assert status.reasons == ("Insufficient cpu",)

    status = fit.filter(pi(make_pod(cpu="1", memory="5Gi")), node_info(node, running))
    assert status.reasons == ("Insufficient cpu", "Insufficient memory")

    status = fit.filter(pi(make_pod(extra={"ephemeral-storage": "1Gi"})), node_info(node))
    assert status.reasons == ("Insufficient ephemeral-storage",)

    status = fit.filter(pi(make_pod(extra={"example.com/gpu": "1"})), node_info(node))
    assert status.reasons == ("Insufficient example.com/gpu",)
    gpu_node = make_node(extra={"example.com/gpu": "1"})
    gpu_pod = pi(make_pod(extra={"example.com/gpu": "1"}))
    assert fit.filter(gpu_pod, node_info(gpu_node)).is_success()


def test_resources_fit_pod_count_and_limits_as_requests() -> None:
    fit = NodeResourcesFit()
    node = make_node(pods="1")
    status = fit.filter(pi(make_pod("b")), node_info(node, make_pod("a")))
    assert status.reasons == ("Too many pods",)
    # A limit without a request counts as the request (effective requests).
    pod = make_pod()
    pod.spec.containers[0].resources.limits["cpu"] = "5"
    assert fit.filter(pi(pod), node_info(make_node(cpu="4"))).reasons == ("Insufficient cpu",)
    # A pod asking for nothing fits a full node (but not beyond its pod count).
    full = make_pod("full", cpu="4", memory="8Gi")
    assert fit.filter(pi(make_pod()), node_info(make_node(), full)).is_success()


# ------------------------------------------------------------------ scores


def test_least_allocated_formula() -> None:
    # cpu: (4000 - (1000+1000)) * 100 / 4000 = 50; memory: (8Gi - (2Gi+2Gi)) * 100 / 8Gi = 50
    plugin = NodeResourcesLeastAllocated()
    node = node_info(make_node(cpu="4", memory="8Gi"), make_pod("a", cpu="1", memory="2Gi"))
    assert plugin.score(pi(make_pod(cpu="1", memory="2Gi")), node) == 50
    # cpu (4000-3000)*100/4000 = 25, memory (8-1)*100/8 = 87 (integer) -> (25 + 87) // 2 = 56
    node = node_info(make_node(cpu="4", memory="8Gi"), make_pod("a", cpu="2", memory="512Mi"))
    assert plugin.score(pi(make_pod(cpu="1", memory="512Mi")), node) == 56
    # Over capacity scores 0 for that resource; no requests count 100m / 200Mi.
    node = node_info(make_node(cpu="1", memory="1000Mi"))
    assert plugin.score(pi(make_pod(cpu="2", memory="800Mi")), node) == (0 + 20) // 2
    assert plugin.score(pi(make_pod()), node) == (90 + 80) // 2


def test_balanced_allocation_formula() -> None:
    plugin = NodeResourcesBalancedAllocation()
    # cpu 2/4 = 0.5, memory 2Gi/8Gi = 0.25 -> std = 0.125 -> (1 - 0.125) * 100 = 87
    node = node_info(make_node(cpu="4", memory="8Gi"), make_pod("a", cpu="1", memory="1Gi"))
    assert plugin.score(pi(make_pod(cpu="1", memory="1Gi")), node) == 87
    # Equal fractions: perfectly balanced.
    node = node_info(make_node(cpu="4", memory="8Gi"))
    assert plugin.score(pi(make_pod(cpu="2", memory="4Gi")), node) == 100
    # Fractions are capped at 1: cpu 8/4 -> 1, memory 0 -> std 0.5 -> 50
    assert plugin.score(pi(make_pod(cpu="8")), node) == 50
    # Best-effort pods are not scored (all nodes equal).
    assert plugin.score(pi(make_pod()), node) == 0


def test_balanced_allocation_three_resources() -> None:
    plugin = NodeResourcesBalancedAllocation(("cpu", "memory", "ephemeral-storage"))
    node = node_info(make_node(cpu="4", memory="4Gi", extra={"ephemeral-storage": "4Gi"}))
    pod = make_pod(cpu="1", memory="2Gi", extra={"ephemeral-storage": "3Gi"})
    # fractions .25 .5 .75: mean .5, std sqrt((.0625+0+.0625)/3) = 0.2041 -> 79
    assert plugin.score(pi(pod), node) == 79


def test_default_normalize_score() -> None:
    scores = [2, 4, 0]
    default_normalize_score(scores, reverse=False)
    assert scores == [50, 100, 0]
    scores = [1, 2, 0]
    default_normalize_score(scores, reverse=True)
    assert scores == [50, 0, 100]
    scores = [0, 0]
    default_normalize_score(scores, reverse=True)
    assert scores == [100, 100]


# ------------------------------------------------------------------ node state


def test_node_unschedulable_unless_tolerated() -> None:
    plugin = NodeUnschedulable()
    cordoned = node_info(make_node(unschedulable=True))
    status = plugin.filter(pi(make_pod()), cordoned)
    assert status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert status.reasons == ("node(s) were unschedulable",)
    tolerant = make_pod(tolerations=[v1.Toleration(
        key="node.kubernetes.io/unschedulable", operator="Exists", effect="NoSchedule")])
    assert plugin.filter(pi(tolerant), cordoned).is_success()
    assert plugin.filter(pi(make_pod()), node_info(make_node())).is_success()


@pytest.mark.parametrize("ready", ["False", "Unknown", ""])
def test_node_not_ready(ready: str) -> None:
    status = NodeReady().filter(pi(make_pod()), node_info(make_node(ready=ready)))
    assert status.reasons == ("node(s) were not ready",)
    assert NodeReady().filter(pi(make_pod()), node_info(make_node())).is_success()


def test_node_name() -> None:
    pod = make_pod()
    pod.spec.node_name = "node-2"
    assert NodeName().filter(pi(pod), node_info(make_node("node-2"))).is_success()
    status = NodeName().filter(pi(pod), node_info(make_node("node-1")))
    assert status.reasons == ("node(s) didn't match the requested node name",)
    assert NodeName().filter(pi(make_pod()), node_info(make_node("node-1"))).is_success()


# ------------------------------------------------------------------ taints


def test_taints_filter_with_reason() -> None:
    plugin = TaintToleration()
    node = node_info(make_node(taints=[taint("node-role.kubernetes.io/control-plane")]))
    status = plugin.filter(pi(make_pod()), node)
    assert status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert status.reasons == (
        "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",)
    node = node_info(make_node(taints=[taint("dedicated", "gpu", "NoExecute")]))
    assert plugin.filter(pi(make_pod()), node).reasons == (
        "node(s) had untolerated taint {dedicated: gpu}",)
    # PreferNoSchedule never filters.
    node = node_info(make_node(taints=[taint("soft", "x", "PreferNoSchedule")]))
    assert plugin.filter(pi(make_pod()), node).is_success()


@pytest.mark.parametrize(
    ("toleration", "tolerated"),
    [
        (v1.Toleration(key="dedicated", operator="Equal", value="gpu", effect="NoSchedule"), True),
        (v1.Toleration(key="dedicated", value="gpu"), True),  # "" means Equal; any effect
        (v1.Toleration(key="dedicated", operator="Equal", value="cpu"), False),
        (v1.Toleration(key="dedicated", operator="Exists"), True),
        (v1.Toleration(key="dedicated", operator="Exists", effect="NoExecute"), False),
        (v1.Toleration(operator="Exists"), True),  # empty key + Exists tolerates everything
        (v1.Toleration(key="other", operator="Exists"), False),
    ],
)
def test_toleration_matching(toleration: v1.Toleration, tolerated: bool) -> None:
    node = node_info(make_node(taints=[taint("dedicated", "gpu", "NoSchedule")]))
    pod = make_pod(tolerations=[toleration])
    assert TaintToleration().filter(pi(pod), node).is_success() is tolerated


def test_taint_score_prefers_fewer_intolerable_prefer_no_schedule() -> None:
    plugin = TaintToleration()
    nodes = [
        node_info(make_node("a")),
        node_info(make_node("b", taints=[taint("x", "1", "PreferNoSchedule")])),
        node_info(make_node("c", taints=[taint("x", "1", "PreferNoSchedule"),
                                         taint("y", "1", "PreferNoSchedule"),
                                         taint("z", "1", "NoSchedule")])),
    ]
    pod = pi(make_pod())
    scores = [plugin.score(pod, n) for n in nodes]
    assert scores == [0, 1, 2]
    plugin.normalize_scores(pod, scores)
    assert scores == [100, 50, 0]
    tolerant = pi(make_pod(tolerations=[v1.Toleration(key="x", operator="Exists",
                                                      effect="PreferNoSchedule")]))
    assert [plugin.score(tolerant, n) for n in nodes] == [0, 0, 1]


# ------------------------------------------------------------------ node affinity


def expr(key: str, op: str, *values: str) -> v1.NodeSelectorRequirement:
    return v1.NodeSelectorRequirement(key=key, operator=op, values=values)


def with_required(pod: v1.Pod, *terms: v1.NodeSelectorTerm) -> v1.Pod:
    pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.\
        node_selector_terms.extend(terms)
    return pod


def test_node_selector() -> None:
    plugin = NodeAffinity()
    node = node_info(make_node(labels={"disk": "ssd", "zone": "a"}))
    assert plugin.filter(pi(make_pod(node_selector={"disk": "ssd"})), node).is_success()
    status = plugin.filter(pi(make_pod(node_selector={"disk": "hdd"})), node)
    assert status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert status.reasons == ("node(s) didn't match Pod's node affinity/selector",)


@pytest.mark.parametrize(
    ("requirement", "matches"),
    [
        (expr("zone", "In", "a", "b"), True),
        (expr("zone", "In", "c"), False),
        (expr("zone", "NotIn", "c"), True),
        (expr("zone", "NotIn", "a"), False),
        (expr("missing", "NotIn", "a"), True),
        (expr("zone", "Exists"), True),
        (expr("missing", "Exists"), False),
        (expr("missing", "DoesNotExist"), True),
        (expr("zone", "DoesNotExist"), False),
        (expr("cores", "Gt", "8"), True),
        (expr("cores", "Gt", "16"), False),
        (expr("cores", "Lt", "32"), True),
        (expr("cores", "Lt", "16"), False),
        (expr("zone", "Gt", "1"), False),  # not an integer
        (expr("missing", "Lt", "1"), False),
    ],
)
def test_node_affinity_operators(requirement: v1.NodeSelectorRequirement, matches: bool) -> None:
    node = node_info(make_node(labels={"zone": "a", "cores": "16"}))
    pod = with_required(make_pod(), v1.NodeSelectorTerm(match_expressions=[requirement]))
    assert NodeAffinity().filter(pi(pod), node).is_success() is matches


def test_node_affinity_terms_are_ored_expressions_anded_and_match_fields() -> None:
    plugin = NodeAffinity()
    node = node_info(make_node("node-7", labels={"zone": "a", "disk": "ssd"}))
    both = v1.NodeSelectorTerm(
        match_expressions=[expr("zone", "In", "a"), expr("disk", "In", "hdd")])
    assert not plugin.filter(pi(with_required(make_pod(), both)), node).is_success()
    either = [both, v1.NodeSelectorTerm(match_expressions=[expr("disk", "Exists")])]
    assert plugin.filter(pi(with_required(make_pod(), *either)), node).is_success()
    by_name = v1.NodeSelectorTerm(match_fields=[expr("metadata.name", "In", "node-7")])
    assert plugin.filter(pi(with_required(make_pod(), by_name)), node).is_success()
    not_name = v1.NodeSelectorTerm(match_fields=[expr("metadata.name", "NotIn", "node-7")])
    assert not plugin.filter(pi(with_required(make_pod(), not_name)), node).is_success()
    # nodeSelector and affinity must both hold.
    pod = with_required(make_pod(node_selector={"zone": "b"}), by_name)
    assert not plugin.filter(pi(pod), node).is_success()


def test_node_affinity_preferred_score() -> None:
    plugin = NodeAffinity()
    pod = make_pod()
    preferred = pod.spec.affinity.node_affinity.preferred_during_scheduling_ignored_during_execution
    for weight, requirement in ((80, expr("zone", "In", "a")), (20, expr("disk", "In", "ssd"))):
        preferred.add(weight=weight,
                      preference=v1.NodeSelectorTerm(match_expressions=[requirement]))
    nodes = [
        node_info(make_node("a", labels={"zone": "a", "disk": "ssd"})),
        node_info(make_node("b", labels={"zone": "a"})),
        node_info(make_node("c", labels={"disk": "ssd"})),
        node_info(make_node("d")),
    ]
    scores = [plugin.score(pi(pod), n) for n in nodes]
    assert scores == [100, 80, 20, 0]
    plugin.normalize_scores(pi(pod), scores)
    assert scores == [100, 80, 20, 0]


# ------------------------------------------------------------------ ports


def test_host_port_conflicts() -> None:
    plugin = NodePorts()
    node = node_info(make_node(), make_pod("a", ports=[port(80, 8080)]))
    status = plugin.filter(pi(make_pod("b", ports=[port(81, 8080)])), node)
    assert status.code == Code.UNSCHEDULABLE
    assert status.reasons == ("node(s) didn't have free ports for the requested pod ports",)
    assert plugin.filter(pi(make_pod("b", ports=[port(81, 8081)])), node).is_success()
    # Another protocol on the same number is free.
    assert plugin.filter(pi(make_pod("b", ports=[port(81, 8080, "UDP")])), node).is_success()


def test_host_ip_specific_ports() -> None:
    plugin = NodePorts()
    node = node_info(make_node(), make_pod("a", ports=[port(80, 9000, ip="127.0.0.1")]))
    other_ip = pi(make_pod("b", ports=[port(80, 9000, ip="127.0.0.2")]))
    assert plugin.filter(other_ip, node).is_success()
    # 0.0.0.0 conflicts with any address on the same port, both ways.
    assert not plugin.filter(pi(make_pod("b", ports=[port(80, 9000)])), node).is_success()
    wildcard = node_info(make_node(), make_pod("a", ports=[port(80, 9000)]))
    assert not plugin.filter(pi(make_pod("b", ports=[port(80, 9000, ip="127.0.0.2")])),
                             wildcard).is_success()


def test_container_ports_count_as_host_ports() -> None:
    """Pods share the node's network in the process runtime: containerPorts collide."""
    plugin = NodePorts()
    node = node_info(make_node(), make_pod("a", ports=[port(8080)]))
    assert not plugin.filter(pi(make_pod("b", ports=[port(8080)])), node).is_success()
    assert plugin.filter(pi(make_pod("b", ports=[port(8081)])), node).is_success()
    # A hostPort maps onto the node's port, not the containerPort.
    assert not plugin.filter(pi(make_pod("b", ports=[port(9999, 8080)])), node).is_success()
    # With pod networking (not the process runtime) containerPorts do not collide.
    isolated = NodeInfo(make_node())
    isolated.add_pod(PodInfo.of(make_pod("a", ports=[port(8080)]),
                                container_ports_are_host_ports=False))
    b = PodInfo.of(make_pod("b", ports=[port(8080)]), container_ports_are_host_ports=False)
    assert plugin.filter(b, isolated).is_success()


def test_on_a_node_with_a_pod_cidr_only_host_ports_are_host_ports() -> None:
    """Pods there get their own IPs (one loopback address each), as with a pod network:
    containerPorts do not collide, hostPorts still do (as in Kubernetes)."""
    plugin = NodePorts()
    with_cidr = make_node()
    with_cidr.spec.pod_cidr = "127.244.1.0/24"
    with_cidr.spec.pod_cidrs.append("127.244.1.0/24")
    node = node_info(with_cidr, make_pod("a", ports=[port(8080)]),
                     make_pod("h", ports=[port(80, 9090)]))
    assert plugin.filter(pi(make_pod("b", ports=[port(8080)])), node).is_success()
    assert plugin.filter(pi(make_pod("b", ports=[port(9090)])), node).is_success()
    clash = plugin.filter(pi(make_pod("b", ports=[port(81, 9090)])), node)
    assert clash.code == Code.UNSCHEDULABLE
    assert clash.reasons == ("node(s) didn't have free ports for the requested pod ports",)
    assert plugin.filter(pi(make_pod("b", ports=[port(81, 9091)])), node).is_success()
    # Without a podCIDR pods share the node's IP: containerPorts still collide there.
    shared = node_info(make_node(), make_pod("a", ports=[port(8080)]))
    assert not plugin.filter(pi(make_pod("b", ports=[port(8080)])), shared).is_success()


# ------------------------------------------------------------------ framework


def test_framework_runs_filters_in_order_and_fit_error_message() -> None:
    fw = Framework(Profile(), IN_TREE)
    pod = pi(make_pod(cpu="3"))
    nodes = [
        node_info(make_node("cp", taints=[taint("node-role.kubernetes.io/control-plane")])),
        node_info(make_node("n1", cpu="2")),
        node_info(make_node("n2", cpu="2")),
    ]
    statuses = {n.name: fw.run_filters(pod, n) for n in nodes}
    assert statuses["cp"].plugin == "TaintToleration"
    assert statuses["n1"].plugin == "NodeResourcesFit"
    fit = FitError(3, statuses)
    assert fit.message() == (
        "0/3 nodes are available: 1 node(s) had untolerated taint"
        " {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu."
    )
    assert fit.unschedulable_plugins() == {"TaintToleration", "NodeResourcesFit"}


def test_fit_error_counts_every_reason_and_sorts_as_strings() -> None:
    statuses = {f"n{i}": Status.unschedulable("Insufficient cpu", "Insufficient memory")
                for i in range(10)}
    statuses["x"] = Status.unresolvable("node(s) were unschedulable")
    assert FitError(11, statuses).message() == (
        "0/11 nodes are available: 1 node(s) were unschedulable, 10 Insufficient cpu,"
        " 10 Insufficient memory."
    )


def test_framework_scores_weighted() -> None:
    fw = Framework(Profile(), IN_TREE)
    pod = pi(make_pod(cpu="1", memory="2Gi"))
    empty = node_info(make_node("empty", cpu="4", memory="8Gi"))
    busy = node_info(make_node("busy", cpu="4", memory="8Gi"), make_pod("a", cpu="2", memory="4Gi"))
    tainted = node_info(make_node("soft", cpu="4", memory="8Gi",
                                  taints=[taint("x", "", "PreferNoSchedule")]))
    scores = fw.run_scores(pod, [empty, busy, tainted])
    # taint 3 * (100, 100, 0) + affinity 2 * 0 + least (75+75)/2, (25+25)/2 + balanced 100
    assert scores == [300 + 75 + 100, 300 + 25 + 100, 0 + 75 + 100]


def test_unknown_plugin_is_rejected() -> None:
    with pytest.raises(ValueError, match="not in the registry"):
        Framework(Profile(filters=("Nope",)), IN_TREE)


# ------------------------------------------------------------------ cache (assumed pods)


def test_cache_assumed_pods_hold_room_until_forgotten_expired_or_confirmed() -> None:
    from scheduler.cache import SchedulerCache

    now = [0.0]
    cache = SchedulerCache(assumed_pod_ttl=30.0, clock=lambda: now[0])
    cache.add_node(make_node("n", cpu="2"))
    fit = NodeResourcesFit()
    a, b, c = (pi(make_pod(x, cpu="1")) for x in "abc")
    cache.assume_pod(a, "n")
    cache.assume_pod(b, "n")
    # The node is full before any bind is observed.
    assert fit.filter(c, cache.nodes["n"]).reasons == ("Insufficient cpu",)
    # A failed bind frees the room at once.
    cache.forget_pod(b.uid)
    assert fit.filter(c, cache.nodes["n"]).is_success()
    cache.assume_pod(c, "n")
    # The informer confirms a: it stays, no longer assumed, and never expires.
    bound = make_pod("a", cpu="1")
    bound.spec.node_name = "n"
    cache.add_pod(bound)
    assert not cache.is_assumed(a.uid) and cache.is_assumed(c.uid)
    # c's bind returned but the pod never showed up bound: it expires after the TTL.
    cache.finish_binding(c.uid)
    now[0] += 29
    assert cache.cleanup_expired_assumed_pods() == []
    now[0] += 2
    assert cache.cleanup_expired_assumed_pods() == [c.uid]
    assert set(cache.nodes["n"].pods) == {a.uid}
    assert cache.nodes["n"].requested.milli_cpu == 1000
    # A removed node with pods left is kept for accounting but not offered for scheduling.
    cache.remove_node("n")
    assert cache.node_infos() == [] and "n" in cache.nodes
    cache.remove_pod(bound)
    assert "n" not in cache.nodes
