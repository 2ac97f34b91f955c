"""DefaultTolerationSeconds admission: pods created through the API tolerate the not-ready
and unreachable NoExecute taints for a while, unless they already say how long."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from kubelite.client.client import ApiClient
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from protos.v1 import objects_pb2 as v1

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"


def new_pod(name: str, *tolerations: v1.Toleration) -> v1.Pod:
    pod = v1.Pod(metadata=v1.ObjectMeta(name=name, namespace="default"))
    pod.spec.containers.add(name="app", image="busybox")
    pod.spec.tolerations.extend(tolerations)
    return pod


def summary(pod: v1.Pod) -> list[tuple[str, str, str, int | None]]:
    return [(t.key, t.operator, t.effect,
             t.toleration_seconds if t.HasField("toleration_seconds") else None)
            for t in pod.spec.tolerations]


async def test_pods_get_default_tolerations(client: ApiClient) -> None:
    pod = await client.create(new_pod("plain"))
    assert summary(pod) == [(NOT_READY, "Exists", "NoExecute", 300),
                            (UNREACHABLE, "Exists", "NoExecute", 300)]
    # Stored, not only returned.
    assert summary(await client.get(v1.Pod, "plain", "default")) == summary(pod)


async def test_user_tolerations_are_kept_and_only_the_missing_one_is_added(
    client: ApiClient
) -> None:
    own = v1.Toleration(key=UNREACHABLE, operator="Exists", effect="NoExecute",
                        toleration_seconds=5)
    other = v1.Toleration(key="dedicated", operator="Equal", value="db", effect="NoSchedule")
    pod = await client.create(new_pod("custom", own, other))
    assert summary(pod) == [(UNREACHABLE, "Exists", "NoExecute", 5),
                            ("dedicated", "Equal", "NoSchedule", None),
                            (NOT_READY, "Exists", "NoExecute", 300)]


async def test_tolerating_everything_or_for_ever_adds_nothing(client: ApiClient) -> None:
    everything = await client.create(new_pod("everything", v1.Toleration(operator="Exists")))
    assert summary(everything) == [("", "Exists", "", None)]
    # Any effect (empty) and no tolerationSeconds: tolerated for ever, as a DaemonSet's pods.
    forever = await client.create(new_pod(
        "forever",
        v1.Toleration(key=NOT_READY, operator="Exists"),
        v1.Toleration(key=UNREACHABLE, operator="Exists", effect="NoExecute"),
    ))
    assert summary(forever) == [(NOT_READY, "Exists", "", None),
                                (UNREACHABLE, "Exists", "NoExecute", None)]


async def test_a_toleration_for_another_effect_does_not_count(client: ApiClient) -> None:
    pod = await client.create(new_pod(
        "noschedule-only", v1.Toleration(key=NOT_READY, operator="Exists", effect="NoSchedule")))
    assert summary(pod) == [(NOT_READY, "Exists", "NoSchedule", None),
                            (NOT_READY, "Exists", "NoExecute", 300),
                            (UNREACHABLE, "Exists", "NoExecute", 300)]


@pytest.fixture
async def short_client(etcd: EtcdProcess) -> AsyncIterator[ApiClient]:
    settings = server_settings(etcd.endpoint)
    settings = replace(settings, api=replace(settings.api, default_toleration_seconds=7))
    server = await start_api_server(settings)
    try:
        async with ApiClient(server.address, timeout=10) as c:
            yield c
    finally:
        await server.stop()


async def test_the_default_comes_from_the_api_settings(short_client: ApiClient) -> None:
    pod = await short_client.create(new_pod("short"))
    assert {t.toleration_seconds for t in pod.spec.tolerations} == {7}


def test_the_apiserver_option_sets_it() -> None:
    from apiserver.__main__ import parse_args

    settings, _ = parse_args(["--insecure", "--default-toleration-seconds", "42"])
    assert settings.api.default_toleration_seconds == 42
    assert parse_args(["--insecure"])[0].api.default_toleration_seconds == 300
