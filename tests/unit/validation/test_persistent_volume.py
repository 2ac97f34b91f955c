"""PersistentVolumes: upstream's defaults, validation wording and update rules."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kubelite.api import meta as m
from kubelite.api.defaults import apply_defaults
from kubelite.api.field_errors import ErrorType
from kubelite.api.fields import object_fields, supported_fields
from kubelite.api.validation import validate
from protos.v1 import objects_pb2 as v1
from tests.unit.validation.support import VALID, At, Expect, exactly, only_at

INVALID, REQUIRED, FORBIDDEN, NOT_SUPPORTED = (
    ErrorType.INVALID, ErrorType.REQUIRED, ErrorType.FORBIDDEN, ErrorType.NOT_SUPPORTED
)


def make_pv(mutate: Callable[[v1.PersistentVolumeSpec], object] | None = None
            ) -> v1.PersistentVolume:
    pv = v1.PersistentVolume()
    pv.metadata.name = "pv1"
    pv.spec.capacity["storage"] = "10Gi"
    pv.spec.access_modes.append("ReadWriteOnce")
    pv.spec.host_path.path = "/srv/pv1"
    if mutate is not None:
        mutate(pv.spec)
    apply_defaults(pv)
    return pv


def test_defaults() -> None:
    pv = make_pv()
    assert pv.status.phase == "Pending"
    assert pv.spec.persistent_volume_reclaim_policy == "Retain"
    assert pv.spec.volume_mode == "Filesystem"
    assert pv.spec.host_path.HasField("type") and pv.spec.host_path.type == ""


def _no_access_modes(spec: v1.PersistentVolumeSpec) -> None:
    spec.ClearField("access_modes")


def _pod_only_with_others(spec: v1.PersistentVolumeSpec) -> None:
    spec.access_modes.extend(["ReadWriteOncePod", "Sometimes"])


def _capacity(**capacity: str) -> Callable[[v1.PersistentVolumeSpec], None]:
    def mutate(spec: v1.PersistentVolumeSpec) -> None:
        spec.ClearField("capacity")
        spec.capacity.update(capacity)
    return mutate


def _no_source(spec: v1.PersistentVolumeSpec) -> None:
    spec.ClearField("host_path")


def _recycle_root(spec: v1.PersistentVolumeSpec) -> None:
    spec.persistent_volume_reclaim_policy = "Recycle"
    spec.host_path.path = "//"


def _set(**fields: str) -> Callable[[v1.PersistentVolumeSpec], None]:
    def mutate(spec: v1.PersistentVolumeSpec) -> None:
        for name, value in fields.items():
            setattr(spec, name, value)
    return mutate


@pytest.mark.parametrize(("mutate", "expect"), [
    pytest.param(None, VALID, id="valid"),
    pytest.param(_no_access_modes, exactly((REQUIRED, "spec.accessModes")), id="access-modes"),
    pytest.param(_pod_only_with_others, exactly(
        (NOT_SUPPORTED, "spec.accessModes"), (FORBIDDEN, "spec.accessModes"),
        at=(At("spec.accessModes", text='spec.accessModes: Unsupported value: "Sometimes":'
               ' supported values: "ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce",'
               ' "ReadWriteOncePod"'),),
    ), id="read-write-once-pod-alone"),
    pytest.param(_capacity(), exactly(
        (REQUIRED, "spec.capacity"), (NOT_SUPPORTED, "spec.capacity")), id="no-capacity"),
    pytest.param(_capacity(storage="1Gi", cpu="1"), exactly((NOT_SUPPORTED, "spec.capacity"), at=(
        At("spec.capacity", text='spec.capacity: Unsupported value: {"cpu": "1", "storage":'
                                 ' "1Gi"}: supported values: "storage"'),
    )), id="capacity-other-than-storage"),
    pytest.param(_capacity(storage="-1Gi"), only_at(
        At("spec.capacity[storage]", detail="must be a valid resource quantity"), count=2,
    ), id="negative-capacity"),
    pytest.param(_capacity(storage="0"), only_at(At(
        "spec.capacity[storage]", text='spec.capacity[storage]: Invalid value: "0": must be'
                                       " greater than zero",
    ), count=1), id="zero-capacity"),
    pytest.param(_capacity(storage="ten"), only_at(At(
        "spec.capacity[storage]", detail_start="quantities must match the regular expression",
    )), id="capacity-not-a-quantity"),
    pytest.param(_no_source, exactly((REQUIRED, "spec"), at=(
        At("spec", detail="must specify a volume type"),)), id="no-source"),
    pytest.param(_recycle_root, exactly((FORBIDDEN, "spec.persistentVolumeReclaimPolicy"), at=(
        At("spec.persistentVolumeReclaimPolicy",
           detail="may not be 'recycle' for a hostPath mount of '/'"),)), id="recycle-root"),
    pytest.param(_set(persistent_volume_reclaim_policy="Keep"),
                 exactly((NOT_SUPPORTED, "spec.persistentVolumeReclaimPolicy")), id="policy"),
    pytest.param(_set(volume_mode="Raw"), exactly((NOT_SUPPORTED, "spec.volumeMode")),
                 id="volume-mode"),
    pytest.param(_set(storage_class_name="Slow_Disks"),
                 exactly((INVALID, "spec.storageClassName")), id="storage-class"),
])
def test_rules(mutate: Callable[[v1.PersistentVolumeSpec], None] | None, expect: Expect) -> None:
    expect.check(validate(make_pv(mutate)))


def test_cluster_scoped() -> None:
    pv = make_pv()
    pv.metadata.namespace = "default"
    only_at(At("metadata.namespace", type=FORBIDDEN)).check(validate(pv))


def _grow(pv: v1.PersistentVolume) -> None:
    pv.spec.capacity["storage"] = "20Gi"
    pv.spec.claim_ref.name = "claim"


def _move(pv: v1.PersistentVolume) -> None:
    pv.spec.host_path.path = "/srv/elsewhere"


def _block(pv: v1.PersistentVolume) -> None:
    pv.spec.volume_mode = "Block"


@pytest.mark.parametrize(("change", "expect"), [
    pytest.param(_grow, VALID, id="capacity-and-claim-may-change"),
    pytest.param(_move, exactly((FORBIDDEN, "spec.persistentvolumesource"), at=(At(
        "spec.persistentvolumesource",
        detail_start="spec.persistentvolumesource is immutable after creation"),)),
        id="source-immutable"),
    pytest.param(_block, exactly((INVALID, "volumeMode"), at=(
        At("volumeMode", detail="field is immutable"),)), id="volume-mode-immutable"),
])
def test_update_rules(change: Callable[[v1.PersistentVolume], None], expect: Expect) -> None:
    old = make_pv()
    new = m.copy(old)
    change(new)
    expect.check(validate(new, old))


def test_selectable_fields() -> None:
    assert supported_fields("PersistentVolume") == {"metadata.name", "metadata.namespace", "name"}
    assert object_fields(make_pv())["name"] == "pv1"
