"""Admission plugins on their own: each given the objects it looks at by fakes of the stores
and storage it reads (apiserver.admission)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from google.protobuf.message import Message

from apiserver.admission.chain import Admission, AdmissionSettings
from apiserver.admission.limit_ranger import ANNOTATION, LimitRanger
from apiserver.admission.node_restriction import NodeRestriction
from apiserver.admission.objects import Sources
from apiserver.admission.plugin import CREATE, DELETE, UPDATE, Attributes
from apiserver.admission.pod_security import PodSecurity
from apiserver.admission.resource_quota import ResourceQuotaAdmission
from apiserver.admission.service_account import MOUNT_PATH, ServiceAccountAdmission
from apiserver.request_context import acting_as
from apiserver.storage import ListResult, conflict, not_found
from apiserver.watch_cache import ResourceWatchCache
from kubelite.api import meta as m
from kubelite.api.errors import Conflict, Forbidden, Invalid, NotFound
from kubelite.api.registry import RESOURCES, ResourceType, by_kind
from kubelite.auth.user import NODES, UserInfo
from protos.v1 import objects_pb2 as v1

NS = "team"
PODS = by_kind("Pod")
NODE_USER = UserInfo("system:node:n1", groups=(NODES,))


class FakeStorage:
    """etcd as the plugins use it: get, list, and update guarded by the resourceVersion."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Message] = {}
        self.revision = itertools.count(10)
        self.updates = 0
        self.conflicts_before_update = 0
        """Updates that fail as if another writer got in first (the object is changed by
        ``on_conflict`` then)."""
        self.on_conflict: Any = None

    def put(self, obj: Message) -> Message:
        meta = m.meta(obj)
        meta.resource_version = str(next(self.revision))
        self.objects[(type(obj).__name__, meta.namespace, meta.name)] = m.copy(obj)
        return obj

    async def get(self, rtype: ResourceType, namespace: str, name: str) -> Message:
        obj = self.objects.get((rtype.kind, namespace, name))
        if obj is None:
            raise not_found(rtype, name)
        return m.copy(obj)

    async def list(self, rtype: ResourceType, namespace: str = "") -> ListResult:
        items = [m.copy(o) for (kind, ns, _), o in self.objects.items()
                 if kind == rtype.kind and (not namespace or ns == namespace)]
        return ListResult(items, 1, None)

    async def update(self, rtype: ResourceType, obj: Message, expected_revision: int) -> Message:
        meta = m.meta(obj)
        current = await self.get(rtype, meta.namespace, meta.name)
        if self.conflicts_before_update:
            self.conflicts_before_update -= 1
            self.on_conflict(current)
            self.put(current)
            raise conflict(rtype, meta.name)
        if int(m.meta(current).resource_version) != expected_revision:
            raise conflict(rtype, meta.name)
        self.updates += 1
        return self.put(m.copy(obj))


class FakeStore:
    """An admission copy that always reads storage (what a copy with nothing yet does)."""

    def __init__(self, storage: FakeStorage, plural: str) -> None:
        self.storage = storage
        self.rtype = next(r for r in (by_kind(k) for k in (
            "ServiceAccount", "LimitRange", "ResourceQuota", "Namespace")) if r.plural == plural)
        self.written: list[Message] = []
        self.lookups = 0
        self.on_lookup: Callable[[int], object] = lambda n: None
        """Called before each lookup with its number (from 1)."""

    async def get(self, namespace: str, name: str) -> Message | None:
        self.lookups += 1
        self.on_lookup(self.lookups)
        try:
            return await self.storage.get(self.rtype, namespace, name)
        except NotFound:
            return None

    async def in_namespace(self, namespace: str) -> list[Message]:
        return (await self.storage.list(self.rtype, namespace)).items

    def wrote(self, obj: Message) -> None:
        self.written.append(obj)


class FakeSources:
    def __init__(self) -> None:
        self.storage = FakeStorage()
        self.stores: dict[str, FakeStore] = {}

    def store(self, plural: str) -> FakeStore:
        return self.stores.setdefault(plural, FakeStore(self.storage, plural))


@pytest.fixture
def sources() -> FakeSources:
    return FakeSources()


def src(sources: FakeSources) -> Sources:
    return cast(Sources, sources)


def new_pod(name: str = "web", *containers: str, namespace: str = NS) -> v1.Pod:
    pod = v1.Pod(metadata=v1.ObjectMeta(name=name, namespace=namespace))
    for c in containers or ("app",):
        pod.spec.containers.add(name=c, image="busybox")
    return pod


def create(obj: Message, *, dry_run: bool = False) -> Attributes:
    meta = m.meta(obj)
    rtype = by_kind(type(obj).__name__)
    return Attributes(CREATE, rtype, meta.namespace, meta.name, obj, dry_run=dry_run)


# ---------------------------------------------------------------- ServiceAccount


async def test_pods_run_as_the_default_service_account_with_its_token_volume(
    sources: FakeSources,
) -> None:
    sources.storage.put(v1.ServiceAccount(
        metadata=v1.ObjectMeta(name="default", namespace=NS),
        image_pull_secrets=[v1.LocalObjectReference(name="regcred")],
    ))
    pod = new_pod("web", "app", "sidecar")
    pod.spec.init_containers.add(name="init", image="busybox")
    await ServiceAccountAdmission(src(sources)).admit(create(pod))

    assert pod.spec.service_account_name == pod.spec.service_account == "default"
    [volume] = pod.spec.volumes
    assert volume.name.startswith("kube-api-access-") and len(volume.name) == 21
    assert volume.projected.default_mode == 0o644
    token, ca, namespace = volume.projected.sources
    assert (token.service_account_token.path, token.service_account_token.expiration_seconds
            ) == ("token", 3607)
    assert ca.config_map.name == "kube-root-ca.crt"
    assert [(i.key, i.path) for i in ca.config_map.items] == [("ca.crt", "ca.crt")]
    [item] = namespace.downward_api.items
    assert (item.path, item.field_ref.api_version, item.field_ref.field_path) == (
        "namespace", "v1", "metadata.namespace")
    for container in (*pod.spec.init_containers, *pod.spec.containers):
        assert [(v.name, v.mount_path, v.read_only) for v in container.volume_mounts] == [
            (volume.name, MOUNT_PATH, True)]
    # A pod without pull secrets takes its ServiceAccount's.
    assert [s.name for s in pod.spec.image_pull_secrets] == ["regcred"]


async def test_a_mount_at_the_token_path_keeps_the_token_out_of_that_container(
    sources: FakeSources,
) -> None:
    sources.storage.put(v1.ServiceAccount(metadata=v1.ObjectMeta(name="builder", namespace=NS)))
    pod = new_pod("web", "own", "other")
    pod.spec.service_account = "builder"  # the deprecated name says the same
    pod.spec.volumes.add(name="mine", empty_dir=v1.EmptyDirVolumeSource())
    pod.spec.containers[0].volume_mounts.add(name="mine", mount_path=MOUNT_PATH)
    await ServiceAccountAdmission(src(sources)).admit(create(pod))

    assert pod.spec.service_account_name == "builder"
    assert [v.name for v in pod.spec.containers[0].volume_mounts] == ["mine"]
    assert pod.spec.containers[1].volume_mounts[0].name.startswith("kube-api-access-")
    assert len(pod.spec.volumes) == 2


@pytest.mark.parametrize(("pod_says", "sa_says", "mounted"), [
    (None, False, False), (True, False, True), (False, None, False), (None, None, True),
])
async def test_automount_is_the_pods_word_then_the_service_accounts(
    sources: FakeSources, pod_says: bool | None, sa_says: bool | None, mounted: bool,
) -> None:
    sa = v1.ServiceAccount(metadata=v1.ObjectMeta(name="default", namespace=NS))
    if sa_says is not None:
        sa.automount_service_account_token = sa_says
    sources.storage.put(sa)
    pod = new_pod()
    if pod_says is not None:
        pod.spec.automount_service_account_token = pod_says
    await ServiceAccountAdmission(src(sources)).admit(create(pod))
    assert bool(pod.spec.volumes) == mounted


async def test_a_pod_whose_service_account_does_not_exist_is_forbidden(
    sources: FakeSources,
) -> None:
    pod = new_pod()
    pod.spec.service_account_name = "robot"
    with pytest.raises(Forbidden) as e:
        await ServiceAccountAdmission(src(sources)).admit(create(pod))
    assert str(e.value) == ('pods "web" is forbidden: error looking up service account'
                            ' team/robot: serviceaccount "robot" not found')
    assert sources.store("serviceaccounts").lookups == 1  # only default is waited for


async def test_a_pod_waits_for_its_namespaces_default_service_account(
    sources: FakeSources,
) -> None:
    # The controller manager makes it once the namespace exists: here, on the third lookup.
    store = sources.store("serviceaccounts")
    store.on_lookup = lambda n: n == 3 and sources.storage.put(
        v1.ServiceAccount(metadata=v1.ObjectMeta(name="default", namespace=NS)))
    pod = new_pod()
    plugin = ServiceAccountAdmission(src(sources), retry_interval=(0.001, 0.002))
    await plugin.admit(create(pod))
    assert pod.spec.service_account_name == "default" and pod.spec.volumes
    assert store.lookups == 3


async def test_a_default_service_account_that_never_comes_refuses_the_pod(
    sources: FakeSources,
) -> None:
    plugin = ServiceAccountAdmission(src(sources), default_lookups=4,
                                     retry_interval=(0.001, 0.002))
    with pytest.raises(Forbidden) as e:
        await plugin.admit(create(new_pod()))
    assert 'serviceaccount "default" not found' in str(e.value)
    assert sources.store("serviceaccounts").lookups == 4


# ---------------------------------------------------------------- LimitRanger


def limit_range(name: str = "limits", **items: dict[str, dict[str, str]]) -> v1.LimitRange:
    lr = v1.LimitRange(metadata=v1.ObjectMeta(name=name, namespace=NS))
    for type_, fields in items.items():
        item = lr.spec.limits.add(type=type_)
        for field, values in fields.items():
            getattr(item, field).update(values)
    return lr


async def test_limit_range_defaults_fill_what_containers_leave_out(sources: FakeSources) -> None:
    sources.storage.put(limit_range(Container={
        "default": {"cpu": "500m", "memory": "256Mi"}, "default_request": {"cpu": "100m"},
    }))
    pod = new_pod("web", "app", "tuned")
    pod.spec.containers[1].resources.limits["cpu"] = "1"
    pod.spec.containers[1].resources.requests["cpu"] = "1"
    pod.spec.init_containers.add(name="init", image="busybox")
    plugin = LimitRanger(src(sources))
    await plugin.admit(create(pod))
    await plugin.validate(create(pod))

    app, tuned = pod.spec.containers
    assert dict(app.resources.limits) == {"cpu": "500m", "memory": "256Mi"}
    # The default request of memory is its default limit (SetDefaults_LimitRangeItem).
    assert dict(app.resources.requests) == {"cpu": "100m", "memory": "256Mi"}
    assert dict(tuned.resources.limits) == {"cpu": "1", "memory": "256Mi"}
    assert dict(pod.spec.init_containers[0].resources.limits) == {
        "cpu": "500m", "memory": "256Mi"}
    assert pod.metadata.annotations[ANNOTATION] == (
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for"
        " container app; memory request for container tuned; memory limit for container tuned;"
        " cpu, memory request for init container init; cpu, memory limit for init container"
        " init"
    )


async def test_limit_range_bounds_are_forbidden_in_kubernetes_words(
    sources: FakeSources,
) -> None:
    sources.storage.put(limit_range(Container={"max": {"cpu": "1"}, "min": {"memory": "64Mi"}}))
    pod = new_pod()
    pod.spec.containers[0].resources.limits.update({"cpu": "2", "memory": "128Mi"})
    pod.spec.containers[0].resources.requests.update({"cpu": "2", "memory": "128Mi"})
    with pytest.raises(Forbidden) as e:
        await LimitRanger(src(sources)).validate(create(pod))
    assert str(e.value) == (
        'pods "web" is forbidden: maximum cpu usage per Container is 1, but limit is 2')

    pod.spec.containers[0].resources.limits.update({"cpu": "1", "memory": "32Mi"})
    pod.spec.containers[0].resources.requests.update({"cpu": "1", "memory": "32Mi"})
    with pytest.raises(Forbidden) as e:
        await LimitRanger(src(sources)).validate(create(pod))
    assert str(e.value) == ('pods "web" is forbidden: minimum memory usage per Container is'
                            " 64Mi, but request is 32Mi")


async def test_limit_to_request_ratio_and_pod_totals(sources: FakeSources) -> None:
    sources.storage.put(limit_range(
        Container={"max_limit_request_ratio": {"cpu": "2"}},
        Pod={"max": {"memory": "100Mi"}},
    ))
    pod = new_pod("web", "a", "b")
    for c in pod.spec.containers:
        c.resources.requests.update({"cpu": "100m", "memory": "60Mi"})
        c.resources.limits.update({"cpu": "300m", "memory": "60Mi"})
    with pytest.raises(Forbidden) as e:
        await LimitRanger(src(sources)).validate(create(pod))
    assert str(e.value) == (
        'pods "web" is forbidden: [cpu max limit to request ratio per Container is 2, but'
        " provided ratio is 3.000000, cpu max limit to request ratio per Container is 2, but"
        " provided ratio is 3.000000, maximum memory usage per Pod is 100Mi, but limit is"
        " 120Mi]"
    )


async def test_limit_ranges_leave_updates_and_other_kinds_alone(sources: FakeSources) -> None:
    sources.storage.put(limit_range(Container={"max": {"cpu": "1"}}))
    plugin = LimitRanger(src(sources))
    pod = new_pod()
    pod.spec.containers[0].resources.limits["cpu"] = "4"
    await plugin.validate(Attributes(UPDATE, PODS, NS, "web", pod, new_pod()))
    await plugin.validate(create(v1.ConfigMap(metadata=v1.ObjectMeta(name="c", namespace=NS))))


# ---------------------------------------------------------------- ResourceQuota


def resource_quota(name: str = "q", hard: dict[str, str] | None = None,
                   used: dict[str, str] | None = None, scopes: tuple[str, ...] = ()
                   ) -> v1.ResourceQuota:
    q = v1.ResourceQuota(metadata=v1.ObjectMeta(name=name, namespace=NS))
    q.spec.hard.update(hard or {"pods": "5"})
    q.spec.scopes.extend(scopes)
    q.status.hard.update(q.spec.hard)
    if used is not None:
        q.status.used.update(used)
    return q


async def stored_quota(sources: FakeSources, name: str = "q") -> v1.ResourceQuota:
    q = await sources.storage.get(by_kind("ResourceQuota"), NS, name)
    assert isinstance(q, v1.ResourceQuota)
    return q


def resourced_pod(name: str = "web", **resources: str) -> v1.Pod:
    pod = new_pod(name)
    for key, value in resources.items():
        which, _, resource = key.partition("_")
        getattr(pod.spec.containers[0].resources, which)[resource] = value
    return pod


async def test_a_create_is_charged_to_the_quota_before_it_is_stored(
    sources: FakeSources,
) -> None:
    sources.storage.put(resource_quota(
        hard={"pods": "5", "requests.cpu": "1", "count/configmaps": "9"},
        used={"pods": "1", "requests.cpu": "250m", "count/configmaps": "0"},
    ))
    plugin = ResourceQuotaAdmission(src(sources))
    await plugin.validate(create(resourced_pod(requests_cpu="500m", limits_cpu="1")))
    q = await stored_quota(sources)
    assert dict(q.status.used) == {"pods": "2", "requests.cpu": "750m", "count/configmaps": "0"}
    assert sources.stores["resourcequotas"].written  # the copy takes the charge at once

    with pytest.raises(Forbidden) as e:
        await plugin.validate(create(resourced_pod("big", requests_cpu="500m")))
    assert str(e.value) == ('pods "big" is forbidden: exceeded quota: q, requested:'
                            " requests.cpu=500m, used: requests.cpu=750m, limited:"
                            " requests.cpu=1")
    assert dict((await stored_quota(sources)).status.used)["pods"] == "2"


async def test_a_full_quota_refuses_and_a_dry_run_charges_nothing(sources: FakeSources) -> None:
    sources.storage.put(resource_quota(used={"pods": "4"}))
    plugin = ResourceQuotaAdmission(src(sources))
    await plugin.validate(create(new_pod("a"), dry_run=True))
    assert sources.storage.updates == 0
    await plugin.validate(create(new_pod("a")))
    with pytest.raises(Forbidden) as e:
        await plugin.validate(create(new_pod("b")))
    assert str(e.value) == ('pods "b" is forbidden: exceeded quota: q, requested: pods=1,'
                            " used: pods=5, limited: pods=5")


async def test_status_not_yet_counted_and_missing_requests_are_refused(
    sources: FakeSources,
) -> None:
    sources.storage.put(resource_quota(hard={"pods": "5"}))
    plugin = ResourceQuotaAdmission(src(sources))
    with pytest.raises(Forbidden) as e:
        await plugin.validate(create(new_pod()))
    assert str(e.value) == 'pods "web" is forbidden: status unknown for quota: q, resources: pods'

    sources.storage.put(resource_quota(
        "compute", hard={"limits.cpu": "2", "memory": "1Gi"},
        used={"limits.cpu": "0", "memory": "0"},
    ))
    sources.storage.objects.pop(("ResourceQuota", NS, "q"))
    with pytest.raises(Forbidden) as e:
        await plugin.validate(create(resourced_pod(requests_cpu="1")))
    assert str(e.value) == ('pods "web" is forbidden: failed quota: compute: must specify'
                            " limits.cpu for: app; memory for: app")


async def test_a_quota_changed_meanwhile_is_read_again_and_the_object_evaluated_anew(
    sources: FakeSources,
) -> None:
    sources.storage.put(resource_quota(used={"pods": "3"}))
    plugin = ResourceQuotaAdmission(src(sources))

    def another_server_charges(q: Message) -> None:
        assert isinstance(q, v1.ResourceQuota)
        q.status.used["pods"] = str(int(q.status.used["pods"]) + 1)

    sources.storage.conflicts_before_update = 1
    sources.storage.on_conflict = another_server_charges
    await plugin.validate(create(new_pod("a")))
    assert dict((await stored_quota(sources)).status.used) == {"pods": "5"}

    # Full now: a conflict that fills the quota turns the create down.
    sources.storage.put(resource_quota(used={"pods": "4"}))
    sources.storage.conflicts_before_update = 1
    with pytest.raises(Forbidden, match="exceeded quota: q"):
        await plugin.validate(create(new_pod("b")))


async def test_a_quota_that_keeps_changing_fails_the_create_with_a_conflict(
    sources: FakeSources,
) -> None:
    sources.storage.put(resource_quota(hard={"pods": "1000"}, used={"pods": "0"}))
    sources.storage.conflicts_before_update = 10_000
    sources.storage.on_conflict = lambda q: None
    with pytest.raises(Conflict):
        await ResourceQuotaAdmission(src(sources)).validate(create(new_pod()))


async def test_scoped_quotas_cover_only_their_pods(sources: FakeSources) -> None:
    sources.storage.put(resource_quota("best-effort", hard={"pods": "0"}, used={"pods": "0"},
                                       scopes=("BestEffort",)))
    plugin = ResourceQuotaAdmission(src(sources))
    await plugin.validate(create(resourced_pod(requests_cpu="1", limits_cpu="1")))
    await plugin.validate(create(v1.ConfigMap(metadata=v1.ObjectMeta(name="c", namespace=NS))))
    with pytest.raises(Forbidden, match="exceeded quota: best-effort"):
        await plugin.validate(create(new_pod()))


async def test_object_counts_of_other_kinds(sources: FakeSources) -> None:
    sources.storage.put(resource_quota(hard={"configmaps": "1", "count/deployments.apps": "1"},
                                       used={"configmaps": "0", "count/deployments.apps": "1"}))
    plugin = ResourceQuotaAdmission(src(sources))
    await plugin.validate(create(v1.ConfigMap(metadata=v1.ObjectMeta(name="c", namespace=NS))))
    with pytest.raises(Forbidden) as e:
        await plugin.validate(create(v1.Deployment(metadata=v1.ObjectMeta(name="d",
                                                                          namespace=NS))))
    assert str(e.value) == ('deployments.apps "d" is forbidden: exceeded quota: q, requested:'
                            " count/deployments.apps=1, used: count/deployments.apps=1,"
                            " limited: count/deployments.apps=1")


# ---------------------------------------------------------------- NodeRestriction


def bound_pod(node: str) -> v1.Pod:
    pod = new_pod()
    pod.spec.node_name = node
    return pod


def node_restriction_only(sources: FakeSources) -> Admission:
    return Admission(
        AdmissionSettings(enable_plugins=("NodeRestriction",),
                          disable_plugins=("LimitRanger", "PodSecurity", "ResourceQuota")),
        cast(Any, sources.storage), {},
    )


@pytest.mark.parametrize(("attributes", "message"), [
    (Attributes(CREATE, PODS, NS, "web", new_pod()),
     'node "n1" can not create pods: nodes create only mirror pods, which this cluster does'
     " not have"),
    (Attributes(UPDATE, PODS, NS, "web", bound_pod("n2"), bound_pod("n2"), "status"),
     'node "n1" can only update pod status for pods with spec.nodeName set to itself'),
    (Attributes(DELETE, PODS, NS, "web", None, bound_pod("n2")),
     'node "n1" can only delete pods with spec.nodeName set to itself'),
    (Attributes(UPDATE, PODS, NS, "web", bound_pod("n1"), bound_pod("n1")),
     'unexpected operation "UPDATE", node "n1" can only delete pods bound to it and update'
     " their status"),
    (Attributes(UPDATE, by_kind("Node"), "", "n2", v1.Node(), v1.Node(), "status"),
     'node "n1" is not allowed to modify node "n2"'),
    (Attributes(UPDATE, by_kind("Lease"), "kube-node-lease", "n2", v1.Lease(), v1.Lease()),
     "can only access node lease with the same name as the requesting node"),
    (Attributes(CREATE, by_kind("Lease"), "default", "n1", v1.Lease()),
     'can only access leases in the "kube-node-lease" system namespace'),
])
async def test_a_node_writes_only_what_is_its_own(
    sources: FakeSources, attributes: Attributes, message: str,
) -> None:
    with acting_as(NODE_USER), pytest.raises(Forbidden) as e:
        await node_restriction_only(sources).mutate(attributes)
    assert str(e.value).endswith(f"is forbidden: {message}")


async def test_a_node_may_write_its_own_objects(sources: FakeSources) -> None:
    plugin = NodeRestriction(src(sources))
    node = v1.Node(metadata=v1.ObjectMeta(name="n1", labels={"kubernetes.io/hostname": "n1"}))
    lease = v1.Lease(metadata=v1.ObjectMeta(name="n1", namespace="kube-node-lease"))
    allowed = [
        Attributes(UPDATE, PODS, NS, "web", bound_pod("n1"), bound_pod("n1"), "status"),
        Attributes(DELETE, PODS, NS, "web", None, bound_pod("n1")),
        Attributes(CREATE, by_kind("Node"), "", "n1", node),
        Attributes(UPDATE, by_kind("Node"), "", "n1", node, node),
        Attributes(UPDATE, by_kind("Lease"), "kube-node-lease", "n1", lease, lease),
        Attributes(CREATE, by_kind("Event"), NS, "e", v1.Event()),
    ]
    for a in allowed:
        a.user = NODE_USER
        await plugin.admit(a)


async def test_a_node_may_not_set_restricted_labels(sources: FakeSources) -> None:
    plugin = NodeRestriction(src(sources))
    node = v1.Node(metadata=v1.ObjectMeta(name="n1", labels={
        "node-restriction.kubernetes.io/trusted": "yes", "kubernetes.io/hostname": "n1",
        "node-role.kubernetes.io/control-plane": "", "example.com/mine": "ok",
        "node.kubernetes.io/instance-type": "big",
    }))
    a = Attributes(CREATE, by_kind("Node"), "", "n1", node, user=NODE_USER)
    with pytest.raises(Forbidden) as e:
        await plugin.admit(a)
    assert str(e.value).endswith(
        'node "n1" is not allowed to set the following labels: node-restriction.kubernetes.io/'
        "trusted, node-role.kubernetes.io/control-plane")
    old = v1.Node(metadata=v1.ObjectMeta(name="n1", labels={"kubernetes.io/hostname": "n1"}))
    new = v1.Node(metadata=v1.ObjectMeta(name="n1", labels={
        "sub.node-restriction.kubernetes.io/x": "1"}))
    with pytest.raises(Forbidden, match="is not allowed to modify labels: sub.node-restriction"):
        await plugin.admit(Attributes(UPDATE, by_kind("Node"), "", "n1", new, old,
                                      user=NODE_USER))


async def test_node_tokens_only_for_pods_bound_to_the_node(sources: FakeSources) -> None:
    plugin = NodeRestriction(src(sources))
    pod = bound_pod("n1")
    pod.metadata.uid = "uid-web"
    sources.storage.put(pod)
    other = bound_pod("n2")
    other.metadata.name, other.metadata.uid = "other", "uid-other"
    sources.storage.put(other)

    def token(name: str, uid: str) -> Attributes:
        request = v1.TokenRequest()
        ref = request.spec.bound_object_ref
        ref.api_version, ref.kind, ref.name, ref.uid = "v1", "Pod", name, uid
        return Attributes(CREATE, by_kind("ServiceAccount"), NS, "default", request,
                          subresource="token", user=NODE_USER)

    await plugin.admit(token("web", "uid-web"))
    with pytest.raises(Forbidden, match="bound to a pod scheduled on a different node"):
        await plugin.admit(token("other", "uid-other"))
    with pytest.raises(Forbidden, match="does not match the UID in record"):
        await plugin.admit(token("web", "uid-old"))
    with pytest.raises(Forbidden, match="node requested token not bound to a pod"):
        await plugin.admit(Attributes(CREATE, by_kind("ServiceAccount"), NS, "default",
                                      v1.TokenRequest(), subresource="token", user=NODE_USER))


async def test_without_a_user_node_restriction_is_skipped(sources: FakeSources) -> None:
    chain = node_restriction_only(sources)
    await chain.mutate(Attributes(CREATE, PODS, NS, "web", new_pod()))
    with acting_as(UserInfo("alice")):  # not a node: nothing to restrict
        await chain.mutate(Attributes(CREATE, PODS, NS, "web", new_pod()))


# ---------------------------------------------------------------- PodSecurity


def namespace(**labels: str) -> v1.Namespace:
    return v1.Namespace(metadata=v1.ObjectMeta(name=NS, labels={
        f"pod-security.kubernetes.io/{k.replace('_', '-')}": v for k, v in labels.items()}))


async def test_baseline_refuses_host_namespaces_and_privileges(sources: FakeSources) -> None:
    sources.storage.put(namespace(enforce="baseline"))
    pod = new_pod("web", "app", "helper")
    pod.spec.host_network = True
    pod.spec.host_pid = True
    pod.spec.containers[0].security_context.privileged = True
    pod.spec.containers[1].security_context.capabilities.add.extend(["NET_ADMIN", "CHOWN"])
    pod.spec.containers[1].ports.add(container_port=80, host_port=8080)
    pod.spec.volumes.add(name="root", host_path=v1.HostPathVolumeSource(path="/"))
    with pytest.raises(Forbidden) as e:
        await PodSecurity(src(sources)).validate(create(pod))
    assert str(e.value) == (
        'pods "web" is forbidden: violates PodSecurity "baseline:latest": non-default'
        ' capabilities (container "helper" must not include "NET_ADMIN" in'
        " securityContext.capabilities.add), host namespaces (hostNetwork=true, hostPID=true),"
        ' hostPath volumes (volume "root"), hostPort (container "helper" uses hostPort 8080),'
        ' privileged (container "app" must not set securityContext.privileged=true)'
    )


async def test_restricted_needs_non_root_no_escalation_and_dropped_capabilities(
    sources: FakeSources,
) -> None:
    sources.storage.put(namespace(enforce="restricted", enforce_version="v1.30"))
    pod = new_pod("web", "a", "b")
    pod.spec.volumes.add(name="data", host_path=v1.HostPathVolumeSource(path="/data"))
    pod.spec.containers[1].security_context.run_as_user = 0
    with pytest.raises(Forbidden) as e:
        await PodSecurity(src(sources)).validate(create(pod))
    assert str(e.value) == (
        'pods "web" is forbidden: violates PodSecurity "restricted:v1.30":'
        ' allowPrivilegeEscalation != false (containers "a", "b" must set'
        " securityContext.allowPrivilegeEscalation=false), unrestricted capabilities"
        ' (containers "a", "b" must set securityContext.capabilities.drop=["ALL"]),'
        ' restricted volume types (volume "data" uses restricted volume type "hostPath"),'
        ' runAsNonRoot != true (pod or containers "a", "b" must set'
        ' securityContext.runAsNonRoot=true), runAsUser=0 (container "b" must not set'
        " runAsUser=0)"
    )
    good = new_pod("good")
    good.spec.security_context.run_as_non_root = True
    sc = good.spec.containers[0].security_context
    sc.allow_privilege_escalation = False
    sc.capabilities.drop.append("ALL")
    sc.capabilities.add.append("NET_BIND_SERVICE")
    good.spec.volumes.add(name="token", projected=v1.ProjectedVolumeSource())
    await PodSecurity(src(sources)).validate(create(good))


async def test_unlabelled_namespaces_and_updates_without_new_images_are_not_checked(
    sources: FakeSources,
) -> None:
    sources.storage.put(namespace())
    pod = new_pod()
    pod.spec.host_network = True
    await PodSecurity(src(sources)).validate(create(pod))
    sources.storage.put(namespace(enforce="baseline"))
    await PodSecurity(src(sources)).validate(Attributes(UPDATE, PODS, NS, "web", pod, pod))
    changed = m.copy(pod)
    changed.spec.containers[0].image = "busybox:2"
    with pytest.raises(Forbidden, match="host namespaces"):
        await PodSecurity(src(sources)).validate(Attributes(UPDATE, PODS, NS, "web", changed,
                                                            pod))


async def test_pod_security_labels_must_say_a_level(sources: FakeSources) -> None:
    with pytest.raises(Invalid) as e:
        await PodSecurity(src(sources)).validate(create(namespace(enforce="strict",
                                                                  warn_version="1.2")))
    assert str(e.value) == (
        'Namespace "team" is invalid: [metadata.labels[pod-security.kubernetes.io/enforce]:'
        ' Invalid value: "strict": must be one of privileged, baseline, restricted,'
        " metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: \"1.2\":"
        ' must be "latest" or "v1.x"]'
    )
    # A broken label stored before is taken as the strictest level.
    sources.storage.put(namespace(enforce="strict"))
    with pytest.raises(Forbidden, match='violates PodSecurity "restricted:latest"'):
        await PodSecurity(src(sources)).validate(create(new_pod()))


# ---------------------------------------------------------------- the chain


def test_the_default_set_and_the_flags() -> None:
    assert AdmissionSettings().enabled() == [
        "NamespaceLifecycle", "LimitRanger", "PodSecurity", "DefaultTolerationSeconds",
        "ResourceQuota"]
    assert AdmissionSettings(secured=True, enable_plugins=("NodeRestriction",)).enabled() == [
        "NamespaceLifecycle", "LimitRanger", "ServiceAccount", "NodeRestriction", "PodSecurity",
        "DefaultTolerationSeconds", "ResourceQuota"]
    assert "ServiceAccount" in AdmissionSettings(enable_plugins=("ServiceAccount",)).enabled()
    assert "ResourceQuota" not in AdmissionSettings(disable_plugins=("ResourceQuota",)).enabled()
    with pytest.raises(ValueError, match="unknown admission plugin.*AlwaysPullImages"):
        AdmissionSettings(enable_plugins=("AlwaysPullImages",))
    with pytest.raises(ValueError, match="NamespaceLifecycle cannot be turned off"):
        AdmissionSettings(disable_plugins=("NamespaceLifecycle",))


def test_the_chain_makes_the_enabled_plugins_in_order() -> None:
    caches = {r.plural: cast(ResourceWatchCache, SimpleNamespace(rtype=r))
              for r in RESOURCES if r.stored}
    chain = Admission(AdmissionSettings(secured=True, enable_plugins=("NodeRestriction",)),
                      cast(Any, FakeStorage()), caches)
    assert [p.name for p in chain.plugins] == [
        "LimitRanger", "ServiceAccount", "NodeRestriction", "PodSecurity", "ResourceQuota"]
