"""The scheduling framework: plugin interfaces, Status, NodeInfo, registry and profile.

As kube-scheduler's framework/interface.go: a Filter plugin answers "can this pod run on this
node?" with a Status that carries a code and human-readable reasons (never an exception for
"doesn't fit"); a Score plugin ranks the feasible nodes 0..100, optionally normalising its
scores across nodes. Plugins are built by name from a registry and enabled by a profile.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from kubelite.api import meta as m
from kubelite.api.pods import effective_total
from kubelite.api.quantity import Quantity, parse_quantity
from protos.v1 import objects_pb2 as v1

MAX_NODE_SCORE = 100
MIN_NODE_SCORE = 0

CPU, MEMORY, EPHEMERAL_STORAGE, PODS = "cpu", "memory", "ephemeral-storage", "pods"
# What a container without requests counts as when scoring (upstream's non-zero defaults),
# so that many best-effort pods do not all land on one node.
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

DEFAULT_BIND_ALL_HOST_IP = "0.0.0.0"


# ------------------------------------------------------------------ status


class Code(enum.IntEnum):
    SUCCESS = 0
    ERROR = 1
    """Something went wrong inside a plugin: retried with backoff, not "doesn't fit"."""
    UNSCHEDULABLE = 2
    """Does not fit now; may fit after the cluster changes (or after preemption)."""
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3
    """Does not fit, and evicting pods from the node would not help."""
    SKIP = 5
    """From PreFilter or PreScore: this plugin has nothing to say about this pod, so its
    Filter or Score is not run for it (upstream's Skip)."""


@dataclass(frozen=True)
class Status:
    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""
    """The plugin that failed (set by the framework)."""

    @staticmethod
    def unschedulable(*reasons: str) -> Status:
        return Status(Code.UNSCHEDULABLE, reasons)

    @staticmethod
    def unresolvable(*reasons: str) -> Status:
        return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, reasons)

    @staticmethod
    def error(*reasons: str) -> Status:
        return Status(Code.ERROR, reasons)

    def is_success(self) -> bool:
        return self.code == Code.SUCCESS

    def is_skip(self) -> bool:
        return self.code == Code.SKIP

    def is_rejected(self) -> bool:
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)

    def message(self) -> str:
        return ", ".join(self.reasons)

    def with_plugin(self, plugin: str) -> Status:
        return Status(self.code, self.reasons, plugin)


SUCCESS = Status()
SKIP = Status(Code.SKIP)


# ------------------------------------------------------------------ resources


@dataclass
class Resources:
    """Amounts in the units the scheduler compares: milli-cpu, bytes, counts."""

    milli_cpu: int = 0
    memory: int = 0
    ephemeral_storage: int = 0
    allowed_pod_number: int = 0
    scalar: dict[str, int] = field(default_factory=dict)
    """Every other resource (extended resources, hugepages, ...) by name, in Value() units."""

    @staticmethod
    def from_quantities(quantities: Mapping[str, Quantity]) -> Resources:
        r = Resources()
        for name, q in quantities.items():
            if name == CPU:
                r.milli_cpu = q.milli_value()
            elif name == MEMORY:
                r.memory = q.value()
            elif name == EPHEMERAL_STORAGE:
                r.ephemeral_storage = q.value()
            elif name == PODS:
                r.allowed_pod_number = q.value()
            else:
                r.scalar[name] = q.value()
        return r

    def get(self, name: str) -> int:
        if name == CPU:
            return self.milli_cpu
        if name == MEMORY:
            return self.memory
        if name == EPHEMERAL_STORAGE:
            return self.ephemeral_storage
        if name == PODS:
            return self.allowed_pod_number
        return self.scalar.get(name, 0)

    def add(self, other: Resources, sign: int = 1) -> None:
        self.milli_cpu += sign * other.milli_cpu
        self.memory += sign * other.memory
        self.ephemeral_storage += sign * other.ephemeral_storage
        self.allowed_pod_number += sign * other.allowed_pod_number
        for name, value in other.scalar.items():
            total = self.scalar.get(name, 0) + sign * value
            if total:
                self.scalar[name] = total
            else:
                self.scalar.pop(name, None)

    def is_empty(self) -> bool:
        return not (self.milli_cpu or self.memory or self.ephemeral_storage or self.scalar)

    def copy(self) -> Resources:
        return Resources(self.milli_cpu, self.memory, self.ephemeral_storage,
                         self.allowed_pod_number, dict(self.scalar))


@dataclass(frozen=True)
class HostPort:
    protocol: str
    host_ip: str
    port: int


def _sidecar(container: v1.Container) -> bool:
    return container.HasField("restart_policy") and container.restart_policy == "Always"


def _host_ports(
    spec: v1.PodSpec, container_ports_are_host_ports: bool
) -> tuple[tuple[HostPort, ...], tuple[HostPort, ...]]:
    """(every port the pod holds on a node sharing its network, its hostPorts alone)."""
    held: list[HostPort] = []
    declared: list[HostPort] = []
    # Sidecars (restartable init containers) run beside the containers and hold their ports.
    for containers, sidecars_only in ((spec.containers, False), (spec.init_containers, True)):
        for container in containers:
            if not container.ports or (sidecars_only and not _sidecar(container)):
                continue
            for p in container.ports:
                port = p.host_port or (p.container_port if container_ports_are_host_ports else 0)
                if port <= 0:
                    continue
                host_port = HostPort(p.protocol or "TCP", p.host_ip or DEFAULT_BIND_ALL_HOST_IP,
                                     port)
                held.append(host_port)
                if p.host_port > 0:
                    declared.append(host_port)
    return tuple(held), tuple(declared)


# Pods of one workload carry the same few quantity strings: parse each once.
_quantity = functools.lru_cache(maxsize=4096)(parse_quantity)
_DEFAULT_NON_ZERO = {CPU: Quantity.from_milli(DEFAULT_MILLI_CPU_REQUEST),
                     MEMORY: Quantity.from_int(DEFAULT_MEMORY_REQUEST)}


def _container_requests(container: v1.Container) -> dict[str, Quantity]:
    # As Kubernetes: a limit without a request counts as the request.
    resources = container.resources
    amounts = {name: _quantity(value) for name, value in resources.limits.items()}
    amounts.update((name, _quantity(value)) for name, value in resources.requests.items())
    return amounts


_ResourceStrings = tuple[tuple[str, str], ...]
_RequestsKey = tuple[
    tuple[tuple[_ResourceStrings, _ResourceStrings], ...],
    tuple[tuple[bool, _ResourceStrings, _ResourceStrings], ...],
]
_requests_memo: dict[_RequestsKey, tuple[Resources, int, int]] = {}
_REQUESTS_MEMO_SIZE = 1024


def _requests(spec: v1.PodSpec) -> tuple[Resources, int, int]:
    """(the effective requests, non-zero milli-cpu, non-zero memory), remembered by what they
    depend on: the pods of one workload share them."""
    key: _RequestsKey = (
        tuple((tuple(c.resources.requests.items()), tuple(c.resources.limits.items()))
              for c in spec.containers),
        tuple((_sidecar(c), tuple(c.resources.requests.items()),
               tuple(c.resources.limits.items())) for c in spec.init_containers),
    )
    found = _requests_memo.get(key)
    if found is None:
        if len(_requests_memo) >= _REQUESTS_MEMO_SIZE:
            _requests_memo.clear()
        found = _requests_memo[key] = _compute_requests(spec)
    requests, cpu, memory = found
    return requests.copy(), cpu, memory


def _compute_requests(spec: v1.PodSpec) -> tuple[Resources, int, int]:
    """(the effective requests, non-zero milli-cpu, non-zero memory): the latter two with
    upstream's per-container defaults for a regular container's missing cpu or memory."""
    requests = effective_total(spec, _container_requests)
    # Container names are unique across containers and init containers (validation).
    regular = {c.name for c in spec.containers}

    def non_zero(container: v1.Container) -> dict[str, Quantity]:
        found = _container_requests(container)
        return {**_DEFAULT_NON_ZERO, **found} if container.name in regular else found

    defaulted = effective_total(spec, non_zero)
    cpu, memory = defaulted.get(CPU), defaulted.get(MEMORY)
    requests.pop(PODS, None)
    return (Resources.from_quantities(requests), cpu.milli_value() if cpu else 0,
            memory.value() if memory else 0)


@dataclass(frozen=True)
class PodInfo:
    """A pod with what every plugin needs computed once (upstream's PreFilter state)."""

    pod: v1.Pod
    requests: Resources
    """The effective requests (kubelite.api.pods.pod_requests)."""
    non_zero_milli_cpu: int
    non_zero_memory: int
    host_ports: tuple[HostPort, ...]
    """Ports this pod holds on its node: hostPorts, and containerPorts when pods share the
    node's network (kubelite's process runtime)."""
    declared_host_ports: tuple[HostPort, ...] = ()
    """The pod's hostPorts alone (sidecars' included): what it holds on a node whose pods
    have IPs of their own."""

    @staticmethod
    def of(pod: v1.Pod, *, container_ports_are_host_ports: bool = True) -> PodInfo:
        spec = pod.spec
        requests, cpu, memory = _requests(spec)
        held, declared = _host_ports(spec, container_ports_are_host_ports)
        return PodInfo(
            pod=pod,
            requests=requests,
            non_zero_milli_cpu=cpu,
            non_zero_memory=memory,
            host_ports=held,
            declared_host_ports=declared,
        )

    def with_pod(self, pod: v1.Pod) -> PodInfo:
        """The same computed facts for a newer copy of the pod whose spec is unchanged."""
        return dataclasses.replace(self, pod=pod)

    @property
    def uid(self) -> str:
        return self.pod.metadata.uid

    @property
    def key(self) -> str:
        return m.key_of(self.pod)


class HostPortInfo:
    """Ports in use on a node by host IP; 0.0.0.0 conflicts with every IP (as upstream)."""

    def __init__(self) -> None:
        self._by_ip: dict[str, Counter[tuple[str, int]]] = {}

    def add(self, port: HostPort) -> None:
        self._by_ip.setdefault(port.host_ip, Counter())[(port.protocol, port.port)] += 1

    def remove(self, port: HostPort) -> None:
        used = self._by_ip.get(port.host_ip)
        if used is None:
            return
        key = (port.protocol, port.port)
        used[key] -= 1
        if used[key] <= 0:
            del used[key]
        if not used:
            del self._by_ip[port.host_ip]

    def conflicts(self, port: HostPort) -> bool:
        key = (port.protocol, port.port)
        if port.host_ip == DEFAULT_BIND_ALL_HOST_IP:
            return any(key in used for used in self._by_ip.values())
        return any(
            key in self._by_ip.get(ip, ()) for ip in (DEFAULT_BIND_ALL_HOST_IP, port.host_ip)
        )

    def __len__(self) -> int:
        return sum(len(used) for used in self._by_ip.values())


NO_SCHEDULE_EFFECTS = ("NoSchedule", "NoExecute")
PREFER_NO_SCHEDULE = "PreferNoSchedule"


class NodeInfo:
    """A node and the pods on it (assumed ones included), with their summed requests.

    What filters ask of every node for every pod is read from the Node object once, when it
    is set, into plain attributes: the node's name, labels, readiness, taints, and its
    allocatable resources (parsed again only when they change). The sums over its pods move
    with each pod added or removed.
    """

    def __init__(self, node: v1.Node | None = None) -> None:
        self.pods: dict[str, PodInfo] = {}
        self.requested = Resources()
        self.non_zero_requested = Resources()
        self.used_ports = HostPortInfo()
        self.used_declared_ports = HostPortInfo()
        """hostPorts alone: what is taken on a node whose pods have IPs of their own."""
        self.clear_node()
        if node is not None:
            self.set_node(node)

    def clear_node(self) -> None:
        """Forgets the Node object (deleted); its pods stay until they are removed."""
        self.node: v1.Node | None = None
        self.name = ""
        self.labels: dict[str, str] = {}
        self.ready = False
        """The node's Ready condition is True."""
        self.unschedulable = False
        """spec.unschedulable (cordoned)."""
        self.has_pod_cidr = False
        """The node gives its pods IPs of their own (spec.podCIDR or podCIDRs)."""
        self.no_schedule_taints: tuple[v1.Taint, ...] = ()
        """Taints with the NoSchedule or NoExecute effect, which the filter checks."""
        self.prefer_no_schedule_taints: tuple[v1.Taint, ...] = ()
        self.allocatable = Resources()
        self._allocatable_source: dict[str, str] | None = None

    def set_node(self, node: v1.Node) -> None:
        self.node = node
        self.name = node.metadata.name
        self.labels = dict(node.metadata.labels)
        self.ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
        self.unschedulable = node.spec.unschedulable
        self.has_pod_cidr = bool(node.spec.pod_cidr or node.spec.pod_cidrs)
        taints = tuple(node.spec.taints)
        self.no_schedule_taints = tuple(t for t in taints if t.effect in NO_SCHEDULE_EFFECTS)
        self.prefer_no_schedule_taints = tuple(
            t for t in taints if t.effect == PREFER_NO_SCHEDULE)
        allocatable = dict(node.status.allocatable)
        if allocatable != self._allocatable_source:
            # Heartbeats rewrite the node without touching this: keep the parsed amounts.
            self.allocatable = Resources.from_quantities(
                {k: _quantity(v) for k, v in allocatable.items()}
            )
            self._allocatable_source = allocatable

    def add_pod(self, info: PodInfo) -> None:
        if info.uid in self.pods:
            self.remove_pod(info.uid)
        self.pods[info.uid] = info
        self.requested.add(info.requests)
        self.non_zero_requested.milli_cpu += info.non_zero_milli_cpu
        self.non_zero_requested.memory += info.non_zero_memory
        for port in info.host_ports:
            self.used_ports.add(port)
        for port in info.declared_host_ports:
            self.used_declared_ports.add(port)

    def remove_pod(self, uid: str) -> PodInfo | None:
        info = self.pods.pop(uid, None)
        if info is None:
            return None
        self.requested.add(info.requests, -1)
        self.non_zero_requested.milli_cpu -= info.non_zero_milli_cpu
        self.non_zero_requested.memory -= info.non_zero_memory
        for port in info.host_ports:
            self.used_ports.remove(port)
        for port in info.declared_host_ports:
            self.used_declared_ports.remove(port)
        return info

    def __repr__(self) -> str:
        return f"NodeInfo({self.name!r}, pods={len(self.pods)}, requested={self.requested})"


# ------------------------------------------------------------------ plugins


class ClusterEvent(enum.Enum):
    """Changes that may make a pod rejected by some plugin schedulable."""

    NODE_ADD = "NodeAdd"
    NODE_UPDATE = "NodeUpdate"
    ASSIGNED_POD_DELETE = "AssignedPodDelete"
    """An assigned pod was deleted or finished, freeing its resources and ports."""


ALL_EVENTS = frozenset(ClusterEvent)


class Plugin(Protocol):
    name: ClassVar[str]
    events: ClassVar[frozenset[ClusterEvent]]
    """The cluster events after which a pod this plugin rejected is worth retrying."""


@runtime_checkable
class FilterPlugin(Plugin, Protocol):
    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status: ...


@runtime_checkable
class PreFilterPlugin(Protocol):
    def pre_filter(self, pod: PodInfo) -> Status:
        """Once per scheduling cycle, before any node is filtered: SKIP when this plugin's
        filter would pass every node for this pod (it is then not run), a rejection when it
        would pass none."""
        ...


@runtime_checkable
class ScorePlugin(Plugin, Protocol):
    def score(self, pod: PodInfo, node_info: NodeInfo) -> int:
        """0..MAX_NODE_SCORE, or any integer when the plugin normalises."""
        ...


@runtime_checkable
class PreScorePlugin(Protocol):
    def pre_score(self, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        """Once per scheduling cycle, before the feasible ``nodes`` are scored: SKIP when
        this plugin would score them all alike (its Score is then not run)."""
        ...


@runtime_checkable
class ScoreNormalizer(Protocol):
    def normalize_scores(self, pod: PodInfo, scores: list[int]) -> None:
        """Rescales ``scores`` (one per feasible node) in place to 0..MAX_NODE_SCORE."""
        ...


def default_normalize_score(scores: list[int], reverse: bool) -> None:
    """Upstream's DefaultNormalizeScore: scale to 0..100 by the highest; reverse flips."""
    highest = max(scores, default=0)
    if highest == 0:
        if reverse:
            scores[:] = [MAX_NODE_SCORE] * len(scores)
        return
    for i, score in enumerate(scores):
        score = MAX_NODE_SCORE * score // highest
        scores[i] = MAX_NODE_SCORE - score if reverse else score


PluginFactory = Callable[[], Plugin]
Registry = Mapping[str, PluginFactory]


@dataclass(frozen=True)
class Profile:
    """Which plugins run, in which order, and how much each score counts."""

    filters: tuple[str, ...] = (
        "NodeUnschedulable",
        "NodeReady",
        "NodeName",
        "TaintToleration",
        "NodeAffinity",
        "NodePorts",
        "NodeResourcesFit",
    )
    """Filter plugins by name, run in this order; the first failure decides for a node."""
    scores: tuple[tuple[str, int], ...] = (
        ("TaintToleration", 3),
        ("NodeAffinity", 2),
        ("NodeResourcesLeastAllocated", 1),
        ("NodeResourcesBalancedAllocation", 1),
    )
    """Score plugins by name with their weights (kube-scheduler's default weights)."""


class Framework:
    """The plugins of one profile, built from a registry, and how to run them."""

    def __init__(self, profile: Profile, registry: Registry) -> None:
        self.profile = profile
        built: dict[str, Plugin] = {}

        def build(name: str) -> Plugin:
            if name not in built:
                factory = registry.get(name)
                if factory is None:
                    raise ValueError(f"plugin {name!r} is not in the registry")
                built[name] = factory()
            return built[name]

        self.filters: list[FilterPlugin] = []
        for name in profile.filters:
            plugin = build(name)
            if not isinstance(plugin, FilterPlugin):
                raise ValueError(f"plugin {name!r} is not a filter plugin")
            self.filters.append(plugin)
        self.scores: list[tuple[ScorePlugin, int]] = []
        for name, weight in profile.scores:
            plugin = build(name)
            if not isinstance(plugin, ScorePlugin):
                raise ValueError(f"plugin {name!r} is not a score plugin")
            self.scores.append((plugin, weight))
        self.plugins = built

        # Which optional extension points each plugin has, looked up once (isinstance on a
        # protocol is slow): the filter plugin beside its PreFilter, by score plugin.
        self._pre_filters: list[tuple[FilterPlugin, PreFilterPlugin]] = [
            (p, p) for p in self.filters if isinstance(p, PreFilterPlugin)
        ]
        self._pre_scores: dict[int, PreScorePlugin] = {
            id(p): p for p, _ in self.scores if isinstance(p, PreScorePlugin)
        }
        self._normalizers: dict[int, ScoreNormalizer] = {
            id(p): p for p, _ in self.scores if isinstance(p, ScoreNormalizer)
        }

    def plugins_for_event(self, event: ClusterEvent) -> frozenset[str]:
        return frozenset(p.name for p in self.plugins.values() if event in p.events)

    def run_pre_filters(self, pod: PodInfo) -> tuple[list[FilterPlugin], Status]:
        """The filter plugins to run for this pod (those whose PreFilter said SKIP left
        out), and SUCCESS, or the first PreFilter rejection or error (the pod then fits no
        node)."""
        skipped: set[int] = set()
        for filter_plugin, pre in self._pre_filters:
            status = pre.pre_filter(pod)
            if status is SUCCESS or status.code == Code.SUCCESS:
                continue
            if status.code == Code.SKIP:
                skipped.add(id(filter_plugin))
                continue
            return [], status.with_plugin(filter_plugin.name)
        if not skipped:
            return self.filters, SUCCESS
        return [p for p in self.filters if id(p) not in skipped], SUCCESS

    def run_filters(
        self, pod: PodInfo, node_info: NodeInfo, filters: Sequence[FilterPlugin] | None = None
    ) -> Status:
        """The first failing filter's Status for this node, or SUCCESS; ``filters`` are the
        ones run_pre_filters kept (all of them when None)."""
        for plugin in self.filters if filters is None else filters:
            status = plugin.filter(pod, node_info)
            if status is not SUCCESS and status.code != Code.SUCCESS:
                return status.with_plugin(plugin.name)
        return SUCCESS

    def run_scores(self, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        """The weighted sum of every score plugin for each node, in ``nodes``' order; a
        plugin whose PreScore says SKIP adds nothing."""
        totals = [0] * len(nodes)
        for plugin, weight in self.scores:
            pre = self._pre_scores.get(id(plugin))
            if pre is not None:
                status = pre.pre_score(pod, nodes)
                if status.code == Code.SKIP:
                    continue
                if status.code != Code.SUCCESS:
                    raise ScoreError(status.with_plugin(plugin.name))
            score = plugin.score
            scores = [score(pod, n) for n in nodes]
            normalizer = self._normalizers.get(id(plugin))
            if normalizer is not None:
                normalizer.normalize_scores(pod, scores)
            if weight == 1:
                totals = [t + s for t, s in zip(totals, scores, strict=True)]
            else:
                totals = [t + s * weight for t, s in zip(totals, scores, strict=True)]
        return totals


class ScoreError(Exception):
    """A PreScore plugin failed: the pod's scheduling attempt fails with its Status."""

    def __init__(self, status: Status) -> None:
        super().__init__(f'running PreScore plugin "{status.plugin}": {status.message()}')
        self.status = status


# ------------------------------------------------------------------ fit errors

NO_NODE_AVAILABLE_MSG = "0/{} nodes are available"
NO_NODES_AVAILABLE = "no nodes available to schedule pods"


@dataclass(frozen=True)
class FitError:
    """Why a pod fits no node: each rejecting node's Status (upstream's FitError)."""

    num_all_nodes: int
    node_to_status: Mapping[str, Status]

    def unschedulable_plugins(self) -> frozenset[str]:
        return frozenset(s.plugin for s in self.node_to_status.values() if s.is_rejected())

    def message(self) -> str:
        """``0/3 nodes are available: 1 node(s) ..., 2 Insufficient cpu.`` as upstream."""
        histogram: Counter[str] = Counter()
        for status in self.node_to_status.values():
            histogram.update(status.reasons)
        text = NO_NODE_AVAILABLE_MSG.format(self.num_all_nodes) + ":"
        reasons = sorted(f"{count} {reason}" for reason, count in histogram.items())
        if reasons:
            text += f" {', '.join(reasons)}."
        return text

