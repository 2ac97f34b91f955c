"""A pod's volumes (core/v1 ValidateVolumes): one source each, hostPath, emptyDir, configMap,
secret, downwardAPI, projected and persistentVolumeClaim sources, item paths and file modes,
and the field references downwardAPI items and env vars share."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from google.protobuf.message import Message

from kubelite.api.field_errors import ErrorType, FieldError, FieldPath
from kubelite.api.labels import (
    is_qualified_name,
)
from kubelite.api.quantity import parse_quantity
from kubelite.api.validation.meta import Errors, dns_label, dns_subdomain
from protos.v1 import objects_pb2 as v1

FILE_MODE_ERROR = "must be a number between 0 and 0777 (octal), both inclusive"


_HOST_PATH_TYPES = (
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
)


_VOLUME_FIELD_PATHS = (
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
)


_RESOURCE_FIELD_REFS = (
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
)


_SUBSCRIPT_RE = re.compile(r"(metadata\.(?:labels|annotations))\['([^']*)'\]")


def validate_local_descending_path(target: str, path: FieldPath) -> Errors:
    errs: Errors = []
    if target.startswith("/"):
        errs.append(path.invalid(target, "must be a relative path"))
    if ".." in target.replace("\\", "/").split("/"):
        errs.append(path.invalid(target, "must not contain '..'"))
    return errs


def _validate_local_non_reserved_path(target: str, path: FieldPath) -> Errors:
    errs = validate_local_descending_path(target, path)
    if target.startswith("..") and not target.startswith("../"):
        errs.append(path.invalid(target, "must not start with '..'"))
    return errs


def _validate_key_to_paths(items: Iterable[v1.KeyToPath], path: FieldPath) -> Errors:
    errs: Errors = []
    for i, item in enumerate(items):
        p = path.index(i)
        if not item.key:
            errs.append(p.child("key").required())
        if not item.path:
            errs.append(p.child("path").required())
        errs.extend(_validate_local_non_reserved_path(item.path, p.child("path")))
        if item.HasField("mode") and not 0 <= item.mode <= 0o777:
            errs.append(p.child("mode").invalid(item.mode, FILE_MODE_ERROR))
    return errs


def _validate_mode(msg: Message, field: str, path: FieldPath) -> Errors:
    if msg.HasField(field):
        mode = int(getattr(msg, field))
        if not 0 <= mode <= 0o777:
            return [path.invalid(mode, FILE_MODE_ERROR)]
    return []


def validate_field_ref(
    ref: v1.ObjectFieldSelector, allowed: Sequence[str], path: FieldPath
) -> Errors:
    errs: Errors = []
    if not ref.api_version:
        errs.append(path.child("apiVersion").required())
    if not ref.field_path:
        errs.append(path.child("fieldPath").required())
        return errs
    m = _SUBSCRIPT_RE.fullmatch(ref.field_path)
    if m is not None:
        base, key = m.group(1), m.group(2)
        if base in allowed or base in _VOLUME_FIELD_PATHS:
            errs.extend(
                path.child("fieldPath").invalid(ref.field_path, msg)
                for msg in is_qualified_name(key.lower())
            )
            return errs
    if ref.field_path not in allowed:
        errs.append(path.child("fieldPath").not_supported(ref.field_path, list(allowed)))
    return errs


def validate_resource_field_ref(
    ref: v1.ResourceFieldSelector, path: FieldPath, require_container: bool
) -> Errors:
    errs: Errors = []
    if require_container and not ref.container_name:
        errs.append(path.child("containerName").required())
    if not ref.resource:
        errs.append(path.child("resource").required())
    elif ref.resource not in _RESOURCE_FIELD_REFS and not ref.resource.startswith(
        ("limits.hugepages-", "requests.hugepages-")
    ):
        errs.append(path.child("resource").not_supported(ref.resource, list(_RESOURCE_FIELD_REFS)))
    if ref.divisor:
        try:
            parse_quantity(ref.divisor)
        except ValueError as e:
            errs.append(path.child("divisor").invalid(ref.divisor, str(e)))
    return errs


def validate_volumes(volumes: Sequence[v1.Volume], path: FieldPath) -> tuple[set[str], Errors]:
    errs: Errors = []
    names: set[str] = set()
    for i, vol in enumerate(volumes):
        p = path.index(i)
        name_path = p.child("name")
        errs.extend(_validate_volume_source(vol, p))
        if not vol.name:
            errs.append(name_path.required())
        else:
            errs.extend(dns_label(vol.name, name_path))
        if vol.name in names:
            errs.append(name_path.duplicate(vol.name))
        names.add(vol.name)
    return names, errs


def validate_host_path(source: v1.HostPathVolumeSource, path: FieldPath) -> Errors:
    """A hostPath source, a pod's volume or a PersistentVolume's (validateHostPathVolumeSource)."""
    errs: Errors = []
    if not source.path:
        errs.append(path.child("path").required())
    elif ".." in source.path.split("/"):
        errs.append(path.child("path").invalid(source.path, "must not contain '..'"))
    if source.type not in _HOST_PATH_TYPES:
        errs.append(path.child("type").not_supported(source.type, list(_HOST_PATH_TYPES)))
    return errs


def _validate_downward_api_file(item: v1.DownwardAPIVolumeFile, path: FieldPath) -> Errors:
    errs: Errors = []
    if not item.path:
        errs.append(path.child("path").required())
    errs.extend(_validate_local_non_reserved_path(item.path, path.child("path")))
    errs.extend(_validate_mode(item, "mode", path.child("mode")))
    has_field = item.HasField("field_ref")
    has_res = item.HasField("resource_field_ref")
    if has_field and has_res:
        errs.append(path.invalid(
            "resource", "fieldRef and resourceFieldRef can not be specified simultaneously"))
    elif has_field:
        errs.extend(validate_field_ref(item.field_ref, _VOLUME_FIELD_PATHS, path.child("fieldRef")))
    elif has_res:
        errs.extend(validate_resource_field_ref(
            item.resource_field_ref, path.child("resourceFieldRef"), True))
    else:
        errs.append(path.required("one of fieldRef and resourceFieldRef is required"))
    return errs


MIN_TOKEN_EXPIRATION_SECONDS = 10 * 60
MAX_TOKEN_EXPIRATION_SECONDS = 1 << 32

_PROJECTION_SOURCES = (
    ("secret", "secret"),
    ("config_map", "configMap"),
    ("downward_api", "downwardAPI"),
    ("service_account_token", "serviceAccountToken"),
)


def validate_projected(source: v1.ProjectedVolumeSource, path: FieldPath) -> Errors:
    """A projected volume (validateProjectedVolumeSource): each source one of secret,
    configMap, downwardAPI and serviceAccountToken, every file it projects at a relative path
    of its own, tokens valid for 10 minutes to 2^32 seconds."""
    errs = _validate_mode(source, "default_mode", path.child("defaultMode"))
    paths: set[str] = set()

    def unique(file_path: str, at: FieldPath) -> None:
        if file_path in paths:
            errs.append(at.invalid(file_path, "conflicting duplicate paths"))
        paths.add(file_path)

    for i, projection in enumerate(source.sources):
        p = path.child("sources").index(i)
        present = [(attr, name) for attr, name in _PROJECTION_SOURCES
                   if projection.HasField(attr)]
        if not present:
            errs.append(p.required(
                "must specify one of: " + ", ".join(name for _, name in _PROJECTION_SOURCES)))
        elif len(present) > 1:
            errs.append(p.forbidden("may not specify more than 1 volume type per source"))
        for attr, name in present:
            sp = p.child(name)
            if attr in ("secret", "config_map"):
                ref: v1.SecretProjection | v1.ConfigMapProjection = getattr(projection, attr)
                if not ref.name:
                    errs.append(sp.child("name").required())
                errs.extend(_validate_key_to_paths(ref.items, sp.child("items")))
                for j, item in enumerate(ref.items):
                    if item.path:
                        unique(item.path, sp.child("items").index(j).child("path"))
            elif attr == "downward_api":
                for j, file in enumerate(projection.downward_api.items):
                    fp = sp.child("items").index(j)
                    errs.extend(_validate_downward_api_file(file, fp))
                    if file.path:
                        unique(file.path, fp.child("path"))
            else:
                errs.extend(_validate_token_projection(projection.service_account_token, sp))
                token_path = projection.service_account_token.path
                if token_path:
                    unique(token_path, sp.child("path"))
    return errs


def _validate_token_projection(token: v1.ServiceAccountTokenProjection, path: FieldPath
                               ) -> Errors:
    errs: Errors = []
    # Unset is upstream's default, an hour.
    if token.HasField("expiration_seconds"):
        seconds = token.expiration_seconds
        if seconds < MIN_TOKEN_EXPIRATION_SECONDS:
            errs.append(path.child("expirationSeconds").invalid(
                seconds, "may not specify a duration less than 10 minutes"))
        if seconds > MAX_TOKEN_EXPIRATION_SECONDS:
            errs.append(path.child("expirationSeconds").invalid(
                seconds, "may not specify a duration larger than 2^32 seconds"))
    if not token.path:
        errs.append(path.child("path").required())
    else:
        errs.extend(_validate_local_non_reserved_path(token.path, path.child("path")))
    return errs


_VOLUME_SOURCES = (
    ("host_path", "hostPath"),
    ("empty_dir", "emptyDir"),
    ("config_map", "configMap"),
    ("secret", "secret"),
    ("downward_api", "downwardAPI"),
    ("persistent_volume_claim", "persistentVolumeClaim"),
    ("projected", "projected"),
)


def _validate_volume_source(vol: v1.Volume, path: FieldPath) -> Errors:
    errs: Errors = []
    count = 0
    for attr, json_name in _VOLUME_SOURCES:
        if not vol.HasField(attr):
            continue
        p = path.child(json_name)
        if count > 0:
            errs.append(p.forbidden("may not specify more than 1 volume type"))
            continue
        count += 1
        if attr == "host_path":
            errs.extend(validate_host_path(vol.host_path, p))
        elif attr == "empty_dir":
            if vol.empty_dir.HasField("size_limit"):
                try:
                    limit = parse_quantity(vol.empty_dir.size_limit)
                except ValueError as e:
                    errs.append(p.child("sizeLimit").invalid(vol.empty_dir.size_limit, str(e)))
                else:
                    if limit.sign() < 0:
                        errs.append(
                            p.child("sizeLimit").forbidden(
                                "SizeLimit field must be a valid resource quantity"
                            )
                        )
        elif attr == "config_map":
            if not vol.config_map.name:
                errs.append(p.child("name").required())
            else:
                errs.extend(dns_subdomain(vol.config_map.name, p.child("name")))
            errs.extend(_validate_key_to_paths(vol.config_map.items, p.child("items")))
            errs.extend(_validate_mode(vol.config_map, "default_mode", p.child("defaultMode")))
        elif attr == "secret":
            if not vol.secret.secret_name:
                errs.append(p.child("secretName").required())
            else:
                errs.extend(dns_subdomain(vol.secret.secret_name, p.child("secretName")))
            errs.extend(_validate_key_to_paths(vol.secret.items, p.child("items")))
            errs.extend(_validate_mode(vol.secret, "default_mode", p.child("defaultMode")))
        elif attr == "downward_api":
            errs.extend(_validate_mode(vol.downward_api, "default_mode", p.child("defaultMode")))
            for j, item in enumerate(vol.downward_api.items):
                errs.extend(_validate_downward_api_file(item, p.child("items").index(j)))
        elif attr == "projected":
            errs.extend(validate_projected(vol.projected, p))
        elif attr == "persistent_volume_claim" and not vol.persistent_volume_claim.claim_name:
            errs.append(p.child("claimName").required())
    if count == 0:
        errs.append(path.required("must specify a volume type"))
    return errs


PVC_VOLUMES_UNSUPPORTED = (
    "persistentVolumeClaim volumes are not supported: this cluster serves no"
    " PersistentVolumeClaims (a StatefulSet's volumeClaimTemplates give each of its pods an"
    " emptyDir volume of the template's name)"
)


def validate_unsupported_volumes(
    spec: v1.PodSpec, path: FieldPath, before: v1.PodSpec | None
) -> Errors:
    """persistentVolumeClaim volumes are refused until PersistentVolumeClaims are served; an
    object stored with one (``before``: the pod spec it is stored with) keeps it through
    updates."""
    kept = {v.name for v in before.volumes
            if v.HasField("persistent_volume_claim")} if before is not None else set()
    return [
        FieldError(ErrorType.NOT_SUPPORTED,
                   str(path.child("volumes").index(i).child("persistentVolumeClaim")),
                   PVC_VOLUMES_UNSUPPORTED)
        for i, vol in enumerate(spec.volumes)
        if vol.HasField("persistent_volume_claim") and vol.name not in kept
    ]
