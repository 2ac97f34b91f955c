"""PersistentVolumes (pkg/registry/core/persistentvolume): cluster-scoped volumes with a hostPath
source, Pending on create (no controller here binds them or makes them Available); their source
and volumeMode stay as created. Defaults as SetDefaults_PersistentVolume, validation as
ValidatePersistentVolume and ValidatePersistentVolumeUpdate."""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, ClassVar

from kubelite.api.field_errors import FieldPath
from kubelite.api.quantity import parse_quantity
from kubelite.api.strategies.base import Strategy
from protos.v1 import objects_pb2 as v1

if TYPE_CHECKING:
    from kubelite.api.validation.meta import Errors

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")
VOLUME_MODES = ("Block", "Filesystem")
UNSUPPORTED_SOURCES = (
    "local", "nfs", "csi", "iscsi", "fc", "rbd", "cephfs", "glusterfs", "cinder", "flexVolume",
    "flocker", "gcePersistentDisk", "awsElasticBlockStore", "azureDisk", "azureFile",
    "vsphereVolume", "quobyte", "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos",
)


def _clean(path: str) -> str:
    """Go's path.Clean: one leading slash, however many were given."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("/") else cleaned


class PersistentVolumeStrategy(Strategy[v1.PersistentVolume]):
    quantity_fields = frozenset({"kubelite.v1.PersistentVolumeSpec.capacity"})
    unsupported_fields: ClassVar[dict[str, dict[str, str]]] = {
        "kubelite.v1.PersistentVolumeSpec": {
            **{name: f"{name} volumes are not supported (supported volume types: hostPath)"
               for name in UNSUPPORTED_SOURCES},
            **{name: f"{name} is not supported"
               for name in ("mountOptions", "nodeAffinity", "volumeAttributesClassName")},
        },
    }

    def default(self, obj: v1.PersistentVolume) -> None:
        spec = obj.spec
        if not obj.status.phase:
            obj.status.phase = "Pending"
        if not spec.persistent_volume_reclaim_policy:
            spec.persistent_volume_reclaim_policy = "Retain"
        if not spec.HasField("volume_mode"):
            spec.volume_mode = "Filesystem"
        if spec.HasField("host_path") and not spec.host_path.HasField("type"):
            spec.host_path.type = ""

    def prepare_for_create(self, obj: v1.PersistentVolume) -> None:
        super().prepare_for_create(obj)
        obj.status.phase = "Pending"

    def validate(self, obj: v1.PersistentVolume) -> Errors:
        from kubelite.api.validation.core_volumes import validate_host_path
        from kubelite.api.validation.meta import dns_subdomain
        spec = obj.spec
        path = FieldPath("spec")
        errs: Errors = []
        modes_path = path.child("accessModes")
        if not spec.access_modes:
            errs.append(modes_path.required())
        for mode in spec.access_modes:
            if mode not in ACCESS_MODES:
                errs.append(modes_path.not_supported(mode, list(ACCESS_MODES)))
        known = set(spec.access_modes) & set(ACCESS_MODES)
        if "ReadWriteOncePod" in known and len(known) > 1:
            errs.append(
                modes_path.forbidden("may not use ReadWriteOncePod with other access modes"))
        errs.extend(self._validate_capacity(spec, path.child("capacity")))
        policy = spec.persistent_volume_reclaim_policy
        if policy and policy not in RECLAIM_POLICIES:
            errs.append(path.child("persistentVolumeReclaimPolicy").not_supported(
                policy, list(RECLAIM_POLICIES)))
        if spec.HasField("host_path"):
            errs.extend(validate_host_path(spec.host_path, path.child("hostPath")))
        else:
            errs.append(path.required("must specify a volume type"))
        if spec.HasField("host_path") and _clean(spec.host_path.path) == "/" and (
            policy == "Recycle"
        ):
            errs.append(path.child("persistentVolumeReclaimPolicy").forbidden(
                "may not be 'recycle' for a hostPath mount of '/'"))
        if spec.storage_class_name:
            errs.extend(dns_subdomain(spec.storage_class_name, path.child("storageClassName")))
        if spec.HasField("volume_mode") and spec.volume_mode not in VOLUME_MODES:
            errs.append(path.child("volumeMode").not_supported(spec.volume_mode,
                                                               list(VOLUME_MODES)))
        return errs

    @staticmethod
    def _validate_capacity(spec: v1.PersistentVolumeSpec, path: FieldPath) -> Errors:
        from kubelite.api.validation.meta import plain
        capacity = dict(spec.capacity)
        errs: Errors = []
        if not capacity:
            errs.append(path.required())
        if "storage" not in capacity or len(capacity) > 1:
            errs.append(path.not_supported(plain(capacity), ["storage"]))
        for name in sorted(capacity):
            try:
                quantity = parse_quantity(capacity[name])
            except ValueError as e:
                errs.append(path.key(name).invalid(capacity[name], str(e)))
                continue
            if quantity.sign() < 0:
                errs.append(path.key(name).invalid(str(quantity),
                                                   "must be a valid resource quantity"))
            if quantity.sign() <= 0:
                errs.append(path.key(name).invalid(str(quantity), "must be greater than zero"))
        return errs

    def validate_update(self, new: v1.PersistentVolume, old: v1.PersistentVolume) -> Errors:
        from kubelite.api.validation.meta import immutable, plain
        errs = self.validate(new)
        before = old.spec.host_path if old.spec.HasField("host_path") else None
        after = new.spec.host_path if new.spec.HasField("host_path") else None
        if before != after:
            errs.append(FieldPath("spec").child("persistentvolumesource").forbidden(
                "spec.persistentvolumesource is immutable after creation\n"
                f"  hostPath: {plain(before) if before else 'none'} ->"
                f" {plain(after) if after else 'none'}"))
        # Upstream names this field "volumeMode", not "spec.volumeMode".
        errs.extend(immutable(
            new.spec.volume_mode if new.spec.HasField("volume_mode") else None,
            old.spec.volume_mode if old.spec.HasField("volume_mode") else None,
            FieldPath("volumeMode"),
        ))
        return errs

    def fields(self, obj: v1.PersistentVolume) -> dict[str, str]:
        # "name" besides metadata.name: upstream keeps it for PersistentVolumes.
        return {"name": obj.metadata.name}
