"""The ServiceAccount controller and the root CA publisher, driven with filled informer stores
and a fake client (no server)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from controller_manager.serviceaccounts import (
    DESCRIPTION,
    DESCRIPTION_ANNOTATION,
    ROOT_CA_CONFIG_MAP,
    RootCACertPublisher,
    ServiceAccountsController,
    read_root_ca,
)
from kubelite.api import meta as m
from kubelite.api.errors import Forbidden
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient, deliver, fill_cache, make_context

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def namespace(name: str, terminating: bool = False) -> v1.Namespace:
    ns = v1.Namespace(metadata=v1.ObjectMeta(name=name, resource_version="1"))
    if terminating:
        ns.metadata.deletion_timestamp = m.now_rfc3339()
        ns.status.phase = "Terminating"
    return ns


async def test_every_active_namespace_gets_a_default_service_account() -> None:
    client = FakeClient()
    ctx = make_context(client)
    controller = ServiceAccountsController(ctx)
    fill_cache(ctx, namespace("team"), namespace("going", terminating=True), namespace("done"))
    fill_cache(ctx, v1.ServiceAccount(metadata=v1.ObjectMeta(name="default", namespace="done")))
    for key in ("team", "going", "done", "gone"):
        await controller.reconcile(key)
    [sa] = client.created_of(v1.ServiceAccount)
    assert (sa.metadata.namespace, sa.metadata.name) == ("team", "default")
    # One the informer has not seen yet: AlreadyExists is no failure.
    client.created.clear()
    await controller.reconcile("team")
    assert client.calls[-1] == ("create", "ServiceAccount", "default")


async def test_a_deleted_default_service_account_is_made_again() -> None:
    client = FakeClient()
    ctx = make_context(client)
    controller = ServiceAccountsController(ctx)
    sa = v1.ServiceAccount(metadata=v1.ObjectMeta(name="default", namespace="team",
                                                  resource_version="1"))
    deliver(ctx, sa)
    deliver(ctx, sa, "DELETED")
    assert list(controller.queue._queue) == ["team"]
    deliver(ctx, namespace("other"))
    assert list(controller.queue._queue) == ["team", "other"]


async def test_a_namespace_being_deleted_meanwhile_is_no_failure() -> None:
    class Terminating(FakeClient):
        async def create(self, obj: object, namespace: str = "") -> object:  # type: ignore[override]
            raise Forbidden('serviceaccounts "default" is forbidden: unable to create new'
                            " content in namespace team because it is being terminated")

    ctx = make_context(Terminating())
    fill_cache(ctx, namespace("team"))
    await ServiceAccountsController(ctx).reconcile("team")


async def test_the_root_ca_is_published_in_every_namespace_and_kept(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(CA)
    client = FakeClient()
    ctx = make_context(client, root_ca_file=str(ca_file))
    controller = RootCACertPublisher(ctx)
    fill_cache(ctx, namespace("team"), namespace("going", terminating=True))
    await controller.reconcile("team")
    await controller.reconcile("going")
    [cm] = client.created_of(v1.ConfigMap)
    assert (cm.metadata.namespace, cm.metadata.name) == ("team", ROOT_CA_CONFIG_MAP)
    assert dict(cm.data) == {"ca.crt": CA}
    assert cm.metadata.annotations[DESCRIPTION_ANNOTATION] == DESCRIPTION

    # Changed by someone: put back (other keys go, other annotations stay).
    changed = client.put(m.copy(cm))
    changed.data["ca.crt"] = "forged"
    changed.data["extra"] = "x"
    changed.metadata.annotations["mine"] = "kept"
    client.put(changed)
    controller.config_maps.store.put(changed)
    await controller.reconcile("team")
    [update] = cast(list[v1.ConfigMap], client.updates)
    assert dict(update.data) == {"ca.crt": CA}
    assert update.metadata.annotations["mine"] == "kept"

    # As it should be: nothing to do.
    controller.config_maps.store.put(update)
    await controller.reconcile("team")
    assert len(client.updates) == 1


async def test_config_map_changes_and_deletions_requeue_their_namespace(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(CA)
    ctx = make_context(FakeClient(), root_ca_file=str(ca_file))
    controller = RootCACertPublisher(ctx)
    cm = v1.ConfigMap(metadata=v1.ObjectMeta(name=ROOT_CA_CONFIG_MAP, namespace="team",
                                             resource_version="1"))
    controller.config_maps._apply("ADDED", cm, "1")
    assert list(controller.queue._queue) == []  # made by the publisher itself
    controller.config_maps._apply("DELETED", cm, "2")
    assert list(controller.queue._queue) == ["team"]


async def test_without_a_ca_nothing_is_published() -> None:
    client = FakeClient()
    ctx = make_context(client)
    controller = RootCACertPublisher(ctx)
    fill_cache(ctx, namespace("team"))
    await controller.reconcile("team")
    assert client.created == []


def test_a_root_ca_file_must_hold_a_certificate(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        read_root_ca(str(tmp_path / "missing"))
    (tmp_path / "bad").write_text("hello")
    with pytest.raises(ValueError, match="holds no PEM certificate"):
        read_root_ca(str(tmp_path / "bad"))
