"""Admission with a real etcd and API server (as a secured server runs it: ServiceAccount and
NodeRestriction on), and the controllers behind it: ServiceAccounts, the root CA ConfigMap and
quota usage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from apiserver.admission import AdmissionSettings
from apiserver.request_context import acting_as
from apiserver.server import ApiServer, ApiServerSettings
from controller_manager.settings import ControllerManagerSettings
from kubelite import pki
from kubelite.api.errors import Forbidden
from kubelite.api.registry import by_kind
from kubelite.auth.user import NODES, UserInfo
from kubelite.client.client import ApiClient
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import running_manager

MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def secured(settings: ApiServerSettings) -> ApiServerSettings:
    # What a secured server runs; named, since an in-process server is not secured.
    admission = AdmissionSettings(enable_plugins=("ServiceAccount", "NodeRestriction"))
    return replace(settings, api=replace(settings.api, admission=admission))


@pytest.fixture
async def server(etcd: EtcdProcess) -> AsyncIterator[ApiServer]:
    api_server = await start_api_server(secured(server_settings(etcd.endpoint)))
    yield api_server
    await api_server.stop()


@pytest.fixture
async def client(server: ApiServer) -> AsyncIterator[ApiClient]:
    async with ApiClient(server.address, timeout=10) as c:
        yield c


@pytest.fixture
def root_ca(tmp_path: Path) -> str:
    cert, _ = pki.new_ca("kubelite-test-ca")
    (tmp_path / "ca.crt").write_bytes(cert)
    return cert.decode()


@pytest.fixture
async def controllers(server: ApiServer, client: ApiClient, root_ca: str, tmp_path: Path
                      ) -> AsyncIterator[None]:
    settings = ControllerManagerSettings(
        server=server.address, leader_elect=False, workers=2,
        controllers=("serviceaccount", "root-ca-cert-publisher", "resourcequota"),
        root_ca_file=str(tmp_path / "ca.crt"),
    )
    async with running_manager(client, settings):
        yield


async def new_namespace(client: ApiClient, name: str, **labels: str) -> None:
    """A namespace with its default ServiceAccount (pods need it)."""
    await client.create(v1.Namespace(metadata=v1.ObjectMeta(name=name, labels=labels)))

    async def default_service_account() -> v1.ServiceAccount:
        return await client.get(v1.ServiceAccount, "default", name)

    await eventually(default_service_account, message=f"default ServiceAccount in {name}")


def new_pod(name: str, namespace: str, **resources: str) -> v1.Pod:
    pod = v1.Pod(metadata=v1.ObjectMeta(name=name, namespace=namespace))
    container = pod.spec.containers.add(name="app", image="busybox")
    for key, value in resources.items():
        which, _, resource = key.partition("_")
        getattr(container.resources, which)[resource] = value
    return pod


async def quota_counted(client: ApiClient, namespace: str, pods: str) -> v1.ResourceQuota:
    async def counted() -> v1.ResourceQuota | None:
        q = await client.get(v1.ResourceQuota, "pods", namespace)
        return q if q.status.used.get("pods") == pods else None

    result: v1.ResourceQuota = await eventually(counted, message=f"quota used pods={pods}")
    return result


async def create_all(clients: list[ApiClient], namespace: str, count: int
                     ) -> tuple[list[v1.Pod], list[BaseException]]:
    results = await asyncio.gather(
        *(clients[i % len(clients)].create(new_pod(f"p{i}", namespace)) for i in range(count)),
        return_exceptions=True,
    )
    created = [r for r in results if isinstance(r, v1.Pod)]
    failed = [r for r in results if isinstance(r, BaseException)]
    return created, failed


# ---------------------------------------------------------------- ResourceQuota


@pytest.mark.usefixtures("controllers")
async def test_a_quota_of_five_pods_takes_exactly_five_of_twenty_concurrent_creates(
    client: ApiClient,
) -> None:
    await new_namespace(client, "quota")
    q = v1.ResourceQuota(metadata=v1.ObjectMeta(name="pods", namespace="quota"))
    q.spec.hard["pods"] = "5"
    await client.create(q)
    await quota_counted(client, "quota", "0")

    created, failed = await create_all([client], "quota", 20)
    assert len(created) == 5
    assert len(failed) == 15 and all(isinstance(e, Forbidden) for e in failed)
    assert {str(e).partition(": ")[2] for e in failed} == {
        "exceeded quota: pods, requested: pods=1, used: pods=5, limited: pods=5"}
    assert len((await client.list(v1.Pod, "quota")).items) == 5
    assert (await client.get(v1.ResourceQuota, "pods", "quota")).status.used["pods"] == "5"

    # A deleted pod gives its place back once the controller has counted again.
    await client.delete(v1.Pod, created[0].metadata.name, "quota")
    await quota_counted(client, "quota", "4")
    await client.create(new_pod("again", "quota"))
    with pytest.raises(Forbidden, match="exceeded quota"):
        await client.create(new_pod("one-too-many", "quota"))


@pytest.mark.usefixtures("controllers")
async def test_two_api_servers_never_overshoot_a_quota(
    server: ApiServer, client: ApiClient, etcd: EtcdProcess,
) -> None:
    second = await start_api_server(secured(server_settings(
        etcd.endpoint, prefix=server.settings.api.storage_prefix)))
    try:
        async with ApiClient(second.address, timeout=10) as other:
            await new_namespace(client, "shared")
            q = v1.ResourceQuota(metadata=v1.ObjectMeta(name="pods", namespace="shared"))
            q.spec.hard["pods"] = "5"
            await client.create(q)
            await quota_counted(client, "shared", "0")
            # Both servers' copies have the quota before the race starts.
            await eventually(lambda: other.get(v1.ResourceQuota, "pods", "shared"))

            created, failed = await create_all([client, other], "shared", 20)
            assert len(created) == 5, failed
            assert all(isinstance(e, Forbidden) for e in failed), failed
            assert len((await other.list(v1.Pod, "shared")).items) == 5
            assert (await other.get(v1.ResourceQuota, "pods", "shared")).status.used[
                "pods"] == "5"
    finally:
        await second.stop()


@pytest.mark.usefixtures("controllers")
async def test_compute_quotas_need_requests_and_count_them(client: ApiClient) -> None:
    await new_namespace(client, "compute")
    q = v1.ResourceQuota(metadata=v1.ObjectMeta(name="pods", namespace="compute"))
    q.spec.hard.update({"pods": "10", "requests.cpu": "1"})
    await client.create(q)
    await quota_counted(client, "compute", "0")
    with pytest.raises(Forbidden) as e:
        await client.create(new_pod("bare", "compute"))
    assert str(e.value) == ('pods "bare" is forbidden: failed quota: pods: must specify'
                            " requests.cpu for: app")
    await client.create(new_pod("small", "compute", requests_cpu="600m"))
    with pytest.raises(Forbidden, match="requested: requests.cpu=600m, used:"
                                        " requests.cpu=600m, limited: requests.cpu=1"):
        await client.create(new_pod("big", "compute", requests_cpu="600m"))


# ---------------------------------------------------------------- LimitRange, PodSecurity


@pytest.mark.usefixtures("controllers")
async def test_limit_range_defaults_appear_in_created_pods_and_max_is_enforced(
    client: ApiClient,
) -> None:
    await new_namespace(client, "limits")
    lr = v1.LimitRange(metadata=v1.ObjectMeta(name="limits", namespace="limits"))
    item = lr.spec.limits.add(type="Container")
    item.default.update({"cpu": "500m", "memory": "128Mi"})
    item.default_request.update({"cpu": "100m"})
    item.max["cpu"] = "1"
    await client.create(lr)

    pod = await client.create(new_pod("defaulted", "limits"))
    stored = await client.get(v1.Pod, "defaulted", "limits")
    for p in (pod, stored):
        resources = p.spec.containers[0].resources
        assert dict(resources.limits) == {"cpu": "500m", "memory": "128Mi"}
        assert dict(resources.requests) == {"cpu": "100m", "memory": "128Mi"}
        assert p.metadata.annotations["kubernetes.io/limit-ranger"] == (
            "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit"
            " for container app")
    assert stored.status.qos_class == "Burstable"  # from the defaulted resources

    with pytest.raises(Forbidden) as e:
        await client.create(new_pod("greedy", "limits", limits_cpu="2"))
    assert str(e.value) == (
        'pods "greedy" is forbidden: maximum cpu usage per Container is 1, but limit is 2')


@pytest.mark.usefixtures("controllers")
async def test_a_limit_range_made_after_pods_applies_to_the_next_ones_at_once(
    client: ApiClient,
) -> None:
    await new_namespace(client, "later")
    # The admission copy has no LimitRange here and remembers so for live_lookup_ttl...
    before = await client.create(new_pod("before", "later"))
    assert not before.spec.containers[0].resources.limits
    lr = v1.LimitRange(metadata=v1.ObjectMeta(name="limits", namespace="later"))
    lr.spec.limits.add(type="Container").default["cpu"] = "300m"
    await client.create(lr)

    async def defaulted() -> bool:
        pod = await client.create(new_pod("probe", "later"), dry_run=True)
        return dict(pod.spec.containers[0].resources.limits) == {"cpu": "300m"}

    # ...until its watch brings one.
    await eventually(defaulted, timeout=5, message="the LimitRange applied")


@pytest.mark.usefixtures("controllers")
async def test_pod_security_baseline_refuses_host_network(client: ApiClient) -> None:
    await new_namespace(client, "baseline", **{"pod-security.kubernetes.io/enforce": "baseline"})
    pod = new_pod("host", "baseline")
    pod.spec.host_network = True
    with pytest.raises(Forbidden) as e:
        await client.create(pod)
    assert str(e.value) == ('pods "host" is forbidden: violates PodSecurity "baseline:latest":'
                            " host namespaces (hostNetwork=true)")
    await client.create(new_pod("plain", "baseline"))
    with pytest.raises(Exception, match="must be one of privileged, baseline, restricted"):
        await client.create(v1.Namespace(metadata=v1.ObjectMeta(
            name="typo", labels={"pod-security.kubernetes.io/enforce": "strict"})))


# ---------------------------------------------------------------- ServiceAccounts


@pytest.mark.usefixtures("controllers")
async def test_new_namespaces_get_a_default_service_account_and_the_root_ca(
    client: ApiClient, root_ca: str,
) -> None:
    await client.create(v1.Namespace(metadata=v1.ObjectMeta(name="fresh")))
    sa: v1.ServiceAccount = await eventually(
        lambda: client.get(v1.ServiceAccount, "default", "fresh"))
    cm: v1.ConfigMap = await eventually(
        lambda: client.get(v1.ConfigMap, "kube-root-ca.crt", "fresh"))
    assert dict(cm.data) == {"ca.crt": root_ca}
    # Both come back when deleted, the ConfigMap's content too when changed.
    await client.delete(v1.ServiceAccount, "default", "fresh")

    async def recreated() -> bool:
        again = await client.get(v1.ServiceAccount, "default", "fresh")
        return again.metadata.uid != sa.metadata.uid

    await eventually(recreated, message="default ServiceAccount made again")
    cm.data["ca.crt"] = "forged"
    await client.update(cm)

    async def restored() -> bool:
        current = await client.get(v1.ConfigMap, "kube-root-ca.crt", "fresh")
        return dict(current.data) == {"ca.crt": root_ca}

    await eventually(restored, message="kube-root-ca.crt put back")


@pytest.mark.usefixtures("controllers")
async def test_pods_get_the_service_account_token_volume(client: ApiClient) -> None:
    await new_namespace(client, "apps")
    pod = await client.create(new_pod("web", "apps"))
    assert pod.spec.service_account_name == "default"
    [volume] = pod.spec.volumes
    assert volume.name.startswith("kube-api-access-")
    kinds = [s.ListFields()[0][0].name for s in volume.projected.sources]
    assert kinds == ["service_account_token", "config_map", "downward_api"]
    [mount] = pod.spec.containers[0].volume_mounts
    assert (mount.name, mount.mount_path, mount.read_only) == (volume.name, MOUNT_PATH, True)

    opted_out = new_pod("quiet", "apps")
    opted_out.spec.automount_service_account_token = False
    assert not (await client.create(opted_out)).spec.volumes

    missing = new_pod("robot", "apps")
    missing.spec.service_account_name = "robot"
    with pytest.raises(Forbidden) as e:
        await client.create(missing)
    assert str(e.value) == ('pods "robot" is forbidden: error looking up service account'
                            ' apps/robot: serviceaccount "robot" not found')


# ---------------------------------------------------------------- NodeRestriction


async def test_a_node_writes_only_its_own_objects(server: ApiServer, client: ApiClient) -> None:
    api, pods = server.api, by_kind("Pod")
    node = UserInfo("system:node:n1", groups=(NODES, "system:authenticated"))
    ns = "kube-node-lease"
    await api.create(by_kind("ServiceAccount"), "default",
                     v1.ServiceAccount(metadata=v1.ObjectMeta(name="default")))
    for name, bound_to in (("mine", "n1"), ("theirs", "n2")):
        await api.create(pods, "default", new_pod(name, "default"))
        await api.bind("default", name, bound_to)

    with acting_as(node):
        with pytest.raises(Forbidden, match='node "n1" can not create pods'):
            await api.create(pods, "default", new_pod("sneaky", "default"))
        theirs = await api.get(pods, "default", "theirs")
        assert isinstance(theirs, v1.Pod)
        theirs.status.phase = "Failed"
        with pytest.raises(Forbidden, match="can only update pod status for pods with"):
            await api.update_status(pods, "default", theirs)
        mine = await api.get(pods, "default", "mine")
        assert isinstance(mine, v1.Pod)
        mine.status.phase = "Running"
        await api.update_status(pods, "default", mine)
        with pytest.raises(Forbidden, match="can only delete pods with spec.nodeName set"):
            await api.delete(pods, "default", "theirs")
        await api.delete(pods, "default", "mine", grace_period_seconds=0)

        leases = by_kind("Lease")
        await api.create(leases, ns, v1.Lease(metadata=v1.ObjectMeta(name="n1")))
        with pytest.raises(Forbidden, match="same name as the requesting node"):
            await api.create(leases, ns, v1.Lease(metadata=v1.ObjectMeta(name="n2")))
        nodes = by_kind("Node")
        await api.create(nodes, "", v1.Node(metadata=v1.ObjectMeta(
            name="n1", labels={"kubernetes.io/hostname": "n1"})))
        with pytest.raises(Forbidden, match='not allowed to modify node "n2"'):
            await api.create(nodes, "", v1.Node(metadata=v1.ObjectMeta(name="n2")))

    # Without a user (in-process, insecure), nothing is restricted.
    await api.create(by_kind("Lease"), ns, v1.Lease(metadata=v1.ObjectMeta(name="n2")))
