"""PersistentVolumes through a real API server and klctl: cluster-scoped, defaulted and Pending on
create, refused with their fields when invalid, their source fixed once created. No controller
binds them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubelite.api import errors
from kubelite.api.convert import from_dict
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import Klctl, write

# https://kubernetes.io/docs/concepts/storage/persistent-volumes/, with a hostPath source.
PV = """
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv0003
spec:
  capacity:
    storage: 5Gi
  volumeMode: Filesystem
  accessModes:
    - ReadWriteOnce
  persistentVolumeReclaimPolicy: Recycle
  storageClassName: slow
  hostPath:
    path: /tmp/pv0003
"""

CLAIMED = """
apiVersion: v1
kind: PersistentVolume
metadata:
  name: claimed
spec:
  capacity:
    storage: 1
  accessModes: [ReadOnlyMany, ReadWriteOnce]
  claimRef:
    namespace: default
    name: myclaim
  hostPath:
    path: /srv/claimed
"""


def persistent_volume(name: str = "pv1", **spec: Any) -> v1.PersistentVolume:
    body: dict[str, Any] = {
        "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
        "hostPath": {"path": f"/srv/{name}"},
    }
    body.update(spec)
    _, obj = from_dict({"apiVersion": "v1", "kind": "PersistentVolume",
                        "metadata": {"name": name}, "spec": body})
    assert isinstance(obj, v1.PersistentVolume)
    return obj


def causes(error: errors.ApiError) -> set[tuple[str, str]]:
    return {(c["field"], c["reason"]) for c in error.causes}


async def test_create_get_and_list(client: ApiClient) -> None:
    pv = persistent_volume()
    pv.metadata.namespace = "team-a"  # cluster-scoped: a request's namespace does not stick
    created = await client.create(pv)
    assert created.metadata.namespace == ""
    assert created.status.phase == "Pending"
    assert created.spec.persistent_volume_reclaim_policy == "Retain"
    assert created.spec.volume_mode == "Filesystem"
    assert created.spec.host_path.HasField("type") and created.spec.host_path.type == ""
    assert created.metadata.generation == 1
    assert await client.get(v1.PersistentVolume, "pv1") == created
    await client.create(persistent_volume("pv2"))
    listed = await client.list(v1.PersistentVolume)
    assert [p.metadata.name for p in listed.items] == ["pv1", "pv2"]
    for selector in ("metadata.name=pv2", "name=pv2"):  # "name": upstream keeps it for PVs
        selected = await client.list(v1.PersistentVolume, field_selector=selector)
        assert [p.metadata.name for p in selected.items] == ["pv2"], selector


async def test_status_given_on_create_is_not_taken(client: ApiClient) -> None:
    pv = persistent_volume()
    pv.status.phase = "Bound"
    assert (await client.create(pv)).status.phase == "Pending"


@pytest.mark.parametrize(("spec", "expected"), [
    pytest.param({"capacity": {}, "accessModes": [], "hostPath": None}, {
        ("spec.accessModes", "FieldValueRequired"),
        ("spec.capacity", "FieldValueRequired"),
        ("spec.capacity", "FieldValueNotSupported"),
        ("spec", "FieldValueRequired"),
    }, id="nothing"),
    pytest.param({"capacity": {"storage": "0", "cpu": "1"}}, {
        ("spec.capacity", "FieldValueNotSupported"),
        ("spec.capacity[storage]", "FieldValueInvalid"),
    }, id="capacity"),
    pytest.param({"capacity": {"storage": "lots"}}, {
        ("spec.capacity[storage]", "FieldValueInvalid"),
    }, id="capacity-not-a-quantity"),
    pytest.param({"accessModes": ["ReadWriteOncePod", "ReadWriteOnce", "WriteSometimes"]}, {
        ("spec.accessModes", "FieldValueNotSupported"),
        ("spec.accessModes", "FieldValueForbidden"),
    }, id="access-modes"),
    pytest.param({"persistentVolumeReclaimPolicy": "Keep", "volumeMode": "Raw",
                  "storageClassName": "Bad_Class"}, {
        ("spec.persistentVolumeReclaimPolicy", "FieldValueNotSupported"),
        ("spec.volumeMode", "FieldValueNotSupported"),
        ("spec.storageClassName", "FieldValueInvalid"),
    }, id="policy-mode-class"),
    pytest.param({"persistentVolumeReclaimPolicy": "Recycle", "hostPath": {"path": "/"}}, {
        ("spec.persistentVolumeReclaimPolicy", "FieldValueForbidden"),
    }, id="recycle-of-root"),
    pytest.param({"hostPath": {"path": "/srv/../etc", "type": "Pipe"}}, {
        ("spec.hostPath.path", "FieldValueInvalid"),
        ("spec.hostPath.type", "FieldValueNotSupported"),
    }, id="host-path"),
])
async def test_invalid_volumes_are_refused_with_their_fields(
    client: ApiClient, spec: dict[str, Any], expected: set[tuple[str, str]]
) -> None:
    with pytest.raises(errors.Invalid) as refused:
        await client.create(persistent_volume("bad", **spec))
    assert refused.value.message.startswith('PersistentVolume "bad" is invalid: ')
    assert causes(refused.value) == expected, refused.value.message
    assert (await client.list(v1.PersistentVolume)).items == []


async def test_capacity_message_is_upstreams(client: ApiClient) -> None:
    with pytest.raises(errors.Invalid) as refused:
        await client.create(persistent_volume("bad", capacity={"storage": "0"}))
    assert refused.value.message == (
        'PersistentVolume "bad" is invalid: spec.capacity[storage]: Invalid value: "0": must be'
        " greater than zero")


async def test_source_and_volume_mode_are_fixed_once_created(client: ApiClient) -> None:
    created = await client.create(persistent_volume())
    moved = persistent_volume(hostPath={"path": "/srv/elsewhere"}, volumeMode="Block")
    moved.metadata.resource_version = created.metadata.resource_version
    with pytest.raises(errors.Invalid) as refused:
        await client.update(moved)
    assert causes(refused.value) == {
        ("spec.persistentvolumesource", "FieldValueForbidden"),
        ("volumeMode", "FieldValueInvalid"),
    }, refused.value.message
    grown = persistent_volume(capacity={"storage": "20Gi"})
    grown.metadata.resource_version = created.metadata.resource_version
    updated = await client.update(grown)
    assert updated.spec.capacity["storage"] == "20Gi"
    assert updated.metadata.generation == 2
    assert updated.status.phase == "Pending"  # the status stays as stored


async def test_klctl_create_get_and_delete(
    klctl: Klctl, client: ApiClient, tmp_path: Path
) -> None:
    for name, text in (("pv.yaml", PV), ("claimed.yaml", CLAIMED)):
        created = await klctl("create", "-f", write(tmp_path, name, text))
        assert created.code == 0, created.err
    assert created.lines == ["persistentvolume/claimed created"]

    table = await klctl("get", "pv")
    assert table.code == 0, table.err
    header, *rows = table.lines
    titles = ["NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM",
              "STORAGECLASS", "REASON", "AGE"]
    assert [c.strip() for c in header.split("  ") if c.strip()] == titles
    starts: list[int] = []
    for title in titles:  # left to right: "CLAIM" is in "RECLAIM POLICY" too
        starts.append(header.index(title, starts[-1] + 1 if starts else 0))

    def cells(row: str) -> list[str]:
        return [row[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]

    claimed, pv0003 = (cells(r) for r in rows)
    assert claimed[:7] == ["claimed", "1", "RWO,ROX", "Retain", "Pending", "default/myclaim",
                           ""]
    assert pv0003[:7] == ["pv0003", "5Gi", "RWO", "Recycle", "Pending", "", "slow"]
    assert pv0003[7] == "" and pv0003[8].endswith("s")

    wide = await klctl("get", "persistentvolume", "pv0003", "-o", "wide")
    assert wide.lines[0].split()[-1] == "VOLUMEMODE"
    assert wide.lines[1].split()[-1] == "Filesystem"

    as_yaml = await klctl("get", "pv", "pv0003", "-o", "yaml")
    assert as_yaml.code == 0, as_yaml.err
    assert "kind: PersistentVolume\n" in as_yaml.out
    assert "persistentVolumeReclaimPolicy: Recycle" in as_yaml.out
    assert "phase: Pending" in as_yaml.out
    described = await klctl("describe", "pv", "pv0003")
    assert described.code == 0, described.err
    assert "pv0003" in described.out

    deleted = await klctl("delete", "pv", "pv0003")
    assert deleted.code == 0, deleted.err
    assert [p.metadata.name for p in (await client.list(v1.PersistentVolume)).items] == [
        "claimed"]


async def test_unsupported_sources_say_so(klctl: Klctl, tmp_path: Path) -> None:
    nfs = PV.replace("hostPath:\n    path: /tmp/pv0003", "nfs:\n    path: /tmp\n    server: x")
    result = await klctl("create", "-f", write(tmp_path, "nfs.yaml", nfs))
    assert result.code != 0
    assert "spec.nfs: Unsupported value: nfs volumes are not supported" in result.err, result.err
    assert "Unknown field" not in result.err
