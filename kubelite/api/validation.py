"""Object validation with Kubernetes' rules, field paths and wording.

``validate(obj, old=None)`` runs after ``apply_defaults`` and returns every broken rule as a
FieldError (an empty list means valid). With ``old`` it also applies the update rules:
immutable metadata, pod spec immutability, workload selector immutability and so on.
The references are pkg/apis/core/validation, pkg/apis/apps/validation,
pkg/apis/batch/validation and apimachinery's ObjectMeta validation.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import Message

from kubelite.api import cron
from kubelite.api.field_errors import ErrorType, FieldError, FieldPath
from kubelite.api.labels import (
    Selector,
    is_qualified_name,
    is_valid_label_value,
    selector_from_label_selector,
    validate_label_name,
    validate_label_selector,
    validate_labels,
)
from kubelite.api.names import (
    NameValidator,
    inclusive_range_error,
    is_config_map_key,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_valid_cidr,
    is_valid_ip,
    is_valid_percent,
    is_valid_port_name,
    is_valid_port_num,
    name_is_dns1035_label,
    name_is_dns_label,
    name_is_dns_subdomain,
)
from kubelite.api.quantity import Quantity, parse_quantity
from kubelite.api.registry import RESOURCES, ResourceType
from protos.v1 import objects_pb2 as v1

IS_NEGATIVE_ERROR = "must be greater than or equal to 0"
FIELD_IMMUTABLE = "field is immutable"
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
MAX_SECRET_SIZE = 1024 * 1024
MAX_UINT32 = 2**32 - 1
MAX_CLIENT_IP_AFFINITY_SECONDS = 86400
CRONJOB_NAME_MAX_LENGTH = 52
FILE_MODE_ERROR = "must be a number between 0 and 0777 (octal), both inclusive"

Errors = list[FieldError]


# ---------------------------------------------------------------- small helpers


def _nonnegative(value: int, path: FieldPath) -> Errors:
    return [path.invalid(value, IS_NEGATIVE_ERROR)] if value < 0 else []


def _immutable(new: object, old: object, path: FieldPath) -> Errors:
    return [path.invalid(_plain(new), FIELD_IMMUTABLE)] if new != old else []


@dataclass(frozen=True)
class _Rendered:
    """A structured value shown as JSON in an error message (not re-quoted as a string)."""

    text: str

    def __str__(self) -> str:
        return self.text


def _plain(value: object) -> object:
    """A printable form of a proto value for error messages."""
    if isinstance(value, Message):
        return _Rendered(json.dumps(json_format.MessageToDict(value), sort_keys=True))
    if isinstance(value, Mapping):
        return _Rendered(json.dumps(dict(value), sort_keys=True))
    return value


def _ios(value: v1.IntOrString) -> int | str | None:
    which = value.WhichOneof("value")
    if which == "int_val":
        return int(value.int_val)
    if which == "str_val":
        return str(value.str_val)
    return None


def _dns_label(value: str, path: FieldPath) -> Errors:
    return [path.invalid(value, m) for m in is_dns1123_label(value)]


def _dns_subdomain(value: str, path: FieldPath) -> Errors:
    return [path.invalid(value, m) for m in is_dns1123_subdomain(value)]


def _not_supported(value: str, allowed: Sequence[str], path: FieldPath) -> Errors:
    if not value:
        return [path.required()]
    if value not in allowed:
        return [path.not_supported(value, list(allowed))]
    return []


# ---------------------------------------------------------------- object meta


def validate_annotations(annotations: Mapping[str, str], path: FieldPath) -> Errors:
    errs: Errors = []
    total = 0
    for key in sorted(annotations):
        # Annotation keys are qualified names, but case does not matter.
        errs.extend(path.invalid(key, m) for m in is_qualified_name(key.lower()))
        total += len(key) + len(annotations[key])
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(path.too_long("", TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def _validate_owner_references(refs: Iterable[v1.OwnerReference], path: FieldPath) -> Errors:
    errs: Errors = []
    controllers: list[str] = []
    for i, ref in enumerate(refs):
        p = path.index(i)
        version = ref.api_version.rpartition("/")[2]
        if not version:
            errs.append(p.child("apiVersion").invalid(ref.api_version, "version must not be empty"))
        if not ref.kind:
            errs.append(p.child("kind").invalid(ref.kind, "kind must not be empty"))
        if not ref.name:
            errs.append(p.child("name").invalid(ref.name, "name must not be empty"))
        if not ref.uid:
            errs.append(p.child("uid").invalid(ref.uid, "uid must not be empty"))
        if ref.controller:
            controllers.append(f"{ref.kind}/{ref.name}")
    if len(controllers) > 1:
        errs.append(
            path.invalid(
                ", ".join(controllers),
                'Only one reference can have Controller set to true. Found "true" in'
                f" references for {' and '.join(controllers)}",
            )
        )
    return errs


def _validate_finalizers(finalizers: Sequence[str], path: FieldPath) -> Errors:
    errs: Errors = []
    for i, name in enumerate(finalizers):
        errs.extend(path.index(i).invalid(name, m) for m in is_qualified_name(name))
    if "orphan" in finalizers and "foregroundDeletion" in finalizers:
        errs.append(
            path.invalid(
                list(finalizers), "finalizer orphan and foregroundDeletion cannot be both set"
            )
        )
    return errs


def validate_object_meta(
    meta: v1.ObjectMeta, namespaced: bool, name_fn: NameValidator, path: FieldPath
) -> Errors:
    """apimachinery ValidateObjectMeta. A name is required unless generateName is set (the API
    server fills the name from it)."""
    errs: Errors = []
    if meta.generate_name:
        errs.extend(
            path.child("generateName").invalid(meta.generate_name, m)
            for m in name_fn(meta.generate_name, True)
        )
    if meta.name:
        errs.extend(path.child("name").invalid(meta.name, m) for m in name_fn(meta.name, False))
    elif not meta.generate_name:
        errs.append(path.child("name").required("name or generateName is required"))
    if namespaced:
        if not meta.namespace:
            errs.append(path.child("namespace").required())
        else:
            errs.extend(
                path.child("namespace").invalid(meta.namespace, m)
                for m in name_is_dns_label(meta.namespace, False)
            )
    elif meta.namespace:
        errs.append(path.child("namespace").forbidden("not allowed on this type"))
    errs.extend(_nonnegative(meta.generation, path.child("generation")))
    errs.extend(validate_labels(dict(meta.labels), path.child("labels")))
    errs.extend(validate_annotations(dict(meta.annotations), path.child("annotations")))
    errs.extend(_validate_owner_references(meta.owner_references, path.child("ownerReferences")))
    errs.extend(_validate_finalizers(list(meta.finalizers), path.child("finalizers")))
    return errs


def validate_object_meta_update(new: v1.ObjectMeta, old: v1.ObjectMeta, path: FieldPath) -> Errors:
    errs: Errors = []
    errs.extend(_immutable(new.name, old.name, path.child("name")))
    errs.extend(_immutable(new.namespace, old.namespace, path.child("namespace")))
    errs.extend(_immutable(new.uid, old.uid, path.child("uid")))
    errs.extend(
        _immutable(new.creation_timestamp, old.creation_timestamp, path.child("creationTimestamp"))
    )
    if old.deletion_timestamp:
        added = sorted(set(new.finalizers) - set(old.finalizers))
        if added:
            errs.append(
                path.child("finalizers").forbidden(
                    "no new finalizers can be added if the object is being deleted, found new"
                    f" finalizers {json.dumps(added)}"
                )
            )
    return errs


# ---------------------------------------------------------------- pod spec pieces

_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
_PROTOCOLS = ("SCTP", "TCP", "UDP")
_HTTP_SCHEMES = ("HTTP", "HTTPS")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
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
_MOUNT_PROPAGATIONS = ("None", "HostToContainer", "Bidirectional")
_STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_ENV_FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
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


def _validate_local_descending_path(target: str, path: FieldPath) -> Errors:
    errs: Errors = []
    if target.startswith("/"):
        errs.append(path.invalid(target, "must be a relative path"))
    if ".." in target.replace("\\", "/").split("/"):
        errs.append(path.invalid(target, "must not contain '..'"))
    return errs


def _validate_local_non_reserved_path(target: str, path: FieldPath) -> Errors:
    errs = _validate_local_descending_path(target, path)
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


def _validate_field_ref(
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


def _validate_resource_field_ref(
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


def _validate_volumes(volumes: Sequence[v1.Volume], path: FieldPath) -> tuple[set[str], Errors]:
    errs: Errors = []
    names: set[str] = set()
    for i, vol in enumerate(volumes):
        p = path.index(i)
        name_path = p.child("name")
        errs.extend(_validate_volume_source(vol, p))
        if not vol.name:
            errs.append(name_path.required())
        else:
            errs.extend(_dns_label(vol.name, name_path))
        if vol.name in names:
            errs.append(name_path.duplicate(vol.name))
        names.add(vol.name)
    return names, errs


_VOLUME_SOURCES = (
    ("host_path", "hostPath"),
    ("empty_dir", "emptyDir"),
    ("config_map", "configMap"),
    ("secret", "secret"),
    ("downward_api", "downwardAPI"),
    ("persistent_volume_claim", "persistentVolumeClaim"),
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
            if not vol.host_path.path:
                errs.append(p.child("path").required())
            elif ".." in vol.host_path.path.split("/"):
                errs.append(p.child("path").invalid(vol.host_path.path, "must not contain '..'"))
            if vol.host_path.type not in _HOST_PATH_TYPES:
                errs.append(
                    p.child("type").not_supported(vol.host_path.type, list(_HOST_PATH_TYPES))
                )
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
                errs.extend(_dns_subdomain(vol.config_map.name, p.child("name")))
            errs.extend(_validate_key_to_paths(vol.config_map.items, p.child("items")))
            errs.extend(_validate_mode(vol.config_map, "default_mode", p.child("defaultMode")))
        elif attr == "secret":
            if not vol.secret.secret_name:
                errs.append(p.child("secretName").required())
            else:
                errs.extend(_dns_subdomain(vol.secret.secret_name, p.child("secretName")))
            errs.extend(_validate_key_to_paths(vol.secret.items, p.child("items")))
            errs.extend(_validate_mode(vol.secret, "default_mode", p.child("defaultMode")))
        elif attr == "downward_api":
            errs.extend(_validate_mode(vol.downward_api, "default_mode", p.child("defaultMode")))
            for j, item in enumerate(vol.downward_api.items):
                ip = p.child("items").index(j)
                if not item.path:
                    errs.append(ip.child("path").required())
                errs.extend(_validate_local_non_reserved_path(item.path, ip.child("path")))
                errs.extend(_validate_mode(item, "mode", ip.child("mode")))
                has_field = item.HasField("field_ref")
                has_res = item.HasField("resource_field_ref")
                if has_field and has_res:
                    errs.append(
                        ip.invalid(
                            "resource",
                            "fieldRef and resourceFieldRef can not be specified simultaneously",
                        )
                    )
                elif has_field:
                    errs.extend(
                        _validate_field_ref(
                            item.field_ref, _VOLUME_FIELD_PATHS, ip.child("fieldRef")
                        )
                    )
                elif has_res:
                    errs.extend(
                        _validate_resource_field_ref(
                            item.resource_field_ref, ip.child("resourceFieldRef"), True
                        )
                    )
                else:
                    errs.append(ip.required("one of fieldRef and resourceFieldRef is required"))
        elif attr == "persistent_volume_claim" and not vol.persistent_volume_claim.claim_name:
            errs.append(p.child("claimName").required())
    if count == 0:
        errs.append(path.required("must specify a volume type"))
    return errs


def _validate_env(env: Sequence[v1.EnvVar], path: FieldPath) -> Errors:
    errs: Errors = []
    for i, ev in enumerate(env):
        p = path.index(i)
        if not ev.name:
            errs.append(p.child("name").required())
        else:
            errs.extend(p.child("name").invalid(ev.name, m) for m in is_env_var_name(ev.name))
        if not ev.HasField("value_from"):
            continue
        vf = ev.value_from
        vp = p.child("valueFrom")
        sources = 0
        if vf.HasField("field_ref"):
            sources += 1
            errs.extend(_validate_field_ref(vf.field_ref, _ENV_FIELD_PATHS, vp.child("fieldRef")))
        if vf.HasField("resource_field_ref"):
            sources += 1
            errs.extend(
                _validate_resource_field_ref(
                    vf.resource_field_ref, vp.child("resourceFieldRef"), False
                )
            )
        for attr, json_name in (
            ("config_map_key_ref", "configMapKeyRef"),
            ("secret_key_ref", "secretKeyRef"),
        ):
            if vf.HasField(attr):
                sources += 1
                ref = getattr(vf, attr)
                rp = vp.child(json_name)
                if not ref.name:
                    errs.append(rp.child("name").required())
                else:
                    errs.extend(_dns_subdomain(ref.name, rp.child("name")))
                if not ref.key:
                    errs.append(rp.child("key").required())
                else:
                    errs.extend(
                        rp.child("key").invalid(ref.key, m) for m in is_config_map_key(ref.key)
                    )
        if sources == 0:
            errs.append(
                vp.invalid(
                    "",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`"
                    " or `secretKeyRef`",
                )
            )
        elif ev.value:
            errs.append(vp.invalid("", "may not be specified when `value` is not empty"))
        elif sources > 1:
            errs.append(vp.invalid("", "may not have more than one field specified at a time"))
    return errs


def _validate_env_from(env_from: Sequence[v1.EnvFromSource], path: FieldPath) -> Errors:
    errs: Errors = []
    for i, ef in enumerate(env_from):
        p = path.index(i)
        if ef.prefix:
            errs.extend(p.child("prefix").invalid(ef.prefix, m) for m in is_env_var_name(ef.prefix))
        sources = 0
        for attr, json_name in (("config_map_ref", "configMapRef"), ("secret_ref", "secretRef")):
            if ef.HasField(attr):
                sources += 1
                ref = getattr(ef, attr)
                if not ref.name:
                    errs.append(p.child(json_name, "name").required())
                else:
                    errs.extend(_dns_subdomain(ref.name, p.child(json_name, "name")))
        if sources == 0:
            errs.append(p.invalid("", "must specify one of: `configMapRef` or `secretRef`"))
        elif sources > 1:
            errs.append(p.invalid("", "may not have more than one field specified at a time"))
    return errs


def _validate_volume_mounts(
    mounts: Sequence[v1.VolumeMount], volumes: set[str], path: FieldPath
) -> Errors:
    errs: Errors = []
    mount_points: set[str] = set()
    for i, mnt in enumerate(mounts):
        p = path.index(i)
        if not mnt.name:
            errs.append(p.child("name").required())
        if mnt.name not in volumes:
            errs.append(p.child("name").not_found(mnt.name))
        if not mnt.mount_path:
            errs.append(p.child("mountPath").required())
        if mnt.mount_path in mount_points:
            errs.append(p.child("mountPath").invalid(mnt.mount_path, "must be unique"))
        mount_points.add(mnt.mount_path)
        if mnt.sub_path:
            errs.extend(_validate_local_descending_path(mnt.sub_path, p.child("subPath")))
        if mnt.sub_path and mnt.sub_path_expr:
            errs.append(
                p.child("subPathExpr").invalid(
                    mnt.sub_path_expr, "subPathExpr and subPath are mutually exclusive"
                )
            )
        if mnt.mount_propagation and mnt.mount_propagation not in _MOUNT_PROPAGATIONS:
            errs.append(
                p.child("mountPropagation").not_supported(
                    mnt.mount_propagation, list(_MOUNT_PROPAGATIONS)
                )
            )
    return errs


def _validate_ports(ports: Sequence[v1.ContainerPort], path: FieldPath) -> Errors:
    errs: Errors = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = path.index(i)
        if port.name:
            msgs = is_valid_port_name(port.name)
            if msgs:
                errs.extend(p.child("name").invalid(port.name, m) for m in msgs)
            elif port.name in names:
                errs.append(p.child("name").duplicate(port.name))
            else:
                names.add(port.name)
        if port.container_port == 0:
            errs.append(p.child("containerPort").required())
        else:
            errs.extend(
                p.child("containerPort").invalid(port.container_port, m)
                for m in is_valid_port_num(port.container_port)
            )
        if port.host_port != 0:
            errs.extend(
                p.child("hostPort").invalid(port.host_port, m)
                for m in is_valid_port_num(port.host_port)
            )
        errs.extend(_not_supported(port.protocol, _PROTOCOLS, p.child("protocol")))
        if port.host_ip:
            errs.extend(
                p.child("hostIP").invalid(port.host_ip, m) for m in is_valid_ip(port.host_ip)
            )
    return errs


def _is_hugepages(name: str) -> bool:
    return name.startswith("hugepages-")


def _is_native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _is_extended(name: str) -> bool:
    if _is_native(name) or name.startswith("requests."):
        return False
    return not is_qualified_name("requests." + name)


def _validate_container_resource_name(name: str, path: FieldPath) -> Errors:
    msgs = is_qualified_name(name)
    if msgs:
        return [path.invalid(name, m) for m in msgs]
    if "/" not in name:
        if name not in _STANDARD_CONTAINER_RESOURCES and not _is_hugepages(name):
            return [path.invalid(name, "must be a standard resource for containers")]
    elif not _is_native(name) and not _is_extended(name):
        return [path.invalid(name, "doesn't follow extended resource name standard")]
    return []


def _validate_quantity_value(
    name: str, text: str, path: FieldPath
) -> tuple[Quantity | None, Errors]:
    try:
        q = parse_quantity(text)
    except ValueError as e:
        return None, [path.invalid(text, str(e))]
    if q.sign() < 0:
        return q, [path.invalid(str(q), IS_NEGATIVE_ERROR)]
    if _is_extended(name) and q.amount.denominator != 1:
        return q, [path.invalid(str(q), "must be an integer")]
    return q, []


def validate_resource_requirements(res: v1.ResourceRequirements, path: FieldPath) -> Errors:
    errs: Errors = []
    lim_path = path.child("limits")
    req_path = path.child("requests")
    limits: dict[str, Quantity] = {}
    has_cpu_mem = False
    has_hugepages = False
    for name in sorted(res.limits):
        p = lim_path.key(name)
        errs.extend(_validate_container_resource_name(name, p))
        q, q_errs = _validate_quantity_value(name, res.limits[name], p)
        errs.extend(q_errs)
        if q is not None:
            limits[name] = q
        has_cpu_mem = has_cpu_mem or name in ("cpu", "memory")
        has_hugepages = has_hugepages or _is_hugepages(name)
    for name in sorted(res.requests):
        p = req_path.key(name)
        errs.extend(_validate_container_resource_name(name, p))
        q, q_errs = _validate_quantity_value(name, res.requests[name], p)
        errs.extend(q_errs)
        has_cpu_mem = has_cpu_mem or name in ("cpu", "memory")
        has_hugepages = has_hugepages or _is_hugepages(name)
        overcommit = _is_native(name) and not _is_hugepages(name)
        limit = limits.get(name)
        if q is None:
            continue
        if limit is not None:
            if q != limit and not overcommit:
                errs.append(p.invalid(str(q), f"must be equal to {name} limit of {limit}"))
            elif q > limit:
                errs.append(
                    p.invalid(str(q), f"must be less than or equal to {name} limit of {limit}")
                )
        elif name not in res.limits and not overcommit:
            errs.append(lim_path.required("Limit must be set for non overcommitable resources"))
    if has_hugepages and not has_cpu_mem:
        errs.append(path.forbidden("HugePages require cpu or memory"))
    return errs


def _validate_port_ref(
    port: v1.IntOrString, path: FieldPath, port_names: set[str] | None
) -> Errors:
    value = _ios(port)
    if value is None:
        return [path.required()]
    if isinstance(value, int):
        return [path.invalid(value, m) for m in is_valid_port_num(value)]
    msgs = is_valid_port_name(value)
    if msgs:
        return [path.invalid(value, m) for m in msgs]
    if port_names is not None and value not in port_names:
        # The kubelet resolves a named probe port among the container's own ports.
        return [
            path.invalid(
                value,
                f"must match the name of one of the container's ports (none is named {value!r})",
            )
        ]
    return []


def _validate_http_get(
    action: v1.HTTPGetAction, path: FieldPath, port_names: set[str] | None
) -> Errors:
    errs: Errors = []
    if not action.path:
        errs.append(path.child("path").required())
    errs.extend(_validate_port_ref(action.port, path.child("port"), port_names))
    if action.scheme not in _HTTP_SCHEMES:
        errs.append(path.child("scheme").not_supported(action.scheme, list(_HTTP_SCHEMES)))
    for header in action.http_headers:
        if not re.fullmatch(r"[-A-Za-z0-9!#$%&'*+.^_`|~]+", header.name):
            errs.append(
                path.child("httpHeaders").invalid(
                    header.name,
                    "a valid HTTP header must consist of alphanumeric characters or '-' (e.g."
                    " 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
                )
            )
    return errs


def _validate_handler(
    handler: v1.Probe | v1.LifecycleHandler,
    kinds: Sequence[tuple[str, str]],
    path: FieldPath,
    port_names: set[str] | None,
) -> Errors:
    errs: Errors = []
    count = 0
    for attr, json_name in kinds:
        if not handler.HasField(attr):
            continue
        p = path.child(json_name)
        if count > 0:
            errs.append(p.forbidden("may not specify more than 1 handler type"))
            continue
        count += 1
        if attr == "exec":
            if not handler.exec.command:
                errs.append(p.child("command").required())
        elif attr == "http_get":
            errs.extend(_validate_http_get(handler.http_get, p, port_names))
        elif attr == "tcp_socket":
            errs.extend(_validate_port_ref(handler.tcp_socket.port, p.child("port"), port_names))
        elif attr == "grpc" and isinstance(handler, v1.Probe):
            errs.extend(
                p.child("port").invalid(handler.grpc.port, m)
                for m in is_valid_port_num(handler.grpc.port)
            )
        elif (
            attr == "sleep"
            and isinstance(handler, v1.LifecycleHandler)
            and handler.sleep.seconds <= 0
        ):
            errs.append(p.child("seconds").invalid(handler.sleep.seconds, "must be greater than 0"))
    if count == 0:
        errs.append(path.required("must specify a handler type"))
    return errs


_PROBE_HANDLERS = (
    ("exec", "exec"),
    ("http_get", "httpGet"),
    ("tcp_socket", "tcpSocket"),
    ("grpc", "grpc"),
)
_LIFECYCLE_HANDLERS = (
    ("exec", "exec"),
    ("http_get", "httpGet"),
    ("tcp_socket", "tcpSocket"),
    ("sleep", "sleep"),
)


def _validate_probe(probe: v1.Probe, path: FieldPath, port_names: set[str]) -> Errors:
    errs = _validate_handler(probe, _PROBE_HANDLERS, path, port_names)
    errs.extend(_nonnegative(probe.initial_delay_seconds, path.child("initialDelaySeconds")))
    errs.extend(_nonnegative(probe.timeout_seconds, path.child("timeoutSeconds")))
    errs.extend(_nonnegative(probe.period_seconds, path.child("periodSeconds")))
    errs.extend(_nonnegative(probe.success_threshold, path.child("successThreshold")))
    errs.extend(_nonnegative(probe.failure_threshold, path.child("failureThreshold")))
    if (
        probe.HasField("termination_grace_period_seconds")
        and probe.termination_grace_period_seconds <= 0
    ):
        errs.append(
            path.child("terminationGracePeriodSeconds").invalid(
                probe.termination_grace_period_seconds, "must be greater than 0"
            )
        )
    return errs


def _validate_container_probes(ctr: v1.Container, path: FieldPath) -> Errors:
    errs: Errors = []
    port_names = {p.name for p in ctr.ports if p.name}
    if ctr.HasField("liveness_probe"):
        p = path.child("livenessProbe")
        errs.extend(_validate_probe(ctr.liveness_probe, p, port_names))
        if ctr.liveness_probe.success_threshold != 1:
            errs.append(
                p.child("successThreshold").invalid(
                    ctr.liveness_probe.success_threshold, "must be 1"
                )
            )
    if ctr.HasField("readiness_probe"):
        p = path.child("readinessProbe")
        errs.extend(_validate_probe(ctr.readiness_probe, p, port_names))
        if ctr.readiness_probe.HasField("termination_grace_period_seconds"):
            errs.append(
                p.child("terminationGracePeriodSeconds").invalid(
                    ctr.readiness_probe.termination_grace_period_seconds,
                    "must not be set for readinessProbes",
                )
            )
    if ctr.HasField("startup_probe"):
        p = path.child("startupProbe")
        errs.extend(_validate_probe(ctr.startup_probe, p, port_names))
        if ctr.startup_probe.success_threshold != 1:
            errs.append(
                p.child("successThreshold").invalid(
                    ctr.startup_probe.success_threshold, "must be 1"
                )
            )
    if ctr.HasField("lifecycle"):
        for attr, json_name in (("post_start", "postStart"), ("pre_stop", "preStop")):
            if ctr.lifecycle.HasField(attr):
                errs.extend(
                    _validate_handler(
                        getattr(ctr.lifecycle, attr),
                        _LIFECYCLE_HANDLERS,
                        path.child("lifecycle", json_name),
                        None,
                    )
                )
    return errs


def _validate_container_common(ctr: v1.Container, volumes: set[str], path: FieldPath) -> Errors:
    errs: Errors = []
    if not ctr.image:
        errs.append(path.child("image").required())
    elif ctr.image != ctr.image.strip():
        errs.append(
            path.child("image").invalid(ctr.image, "must not have leading or trailing whitespace")
        )
    errs.extend(_validate_ports(ctr.ports, path.child("ports")))
    errs.extend(_validate_env(ctr.env, path.child("env")))
    errs.extend(_validate_env_from(ctr.env_from, path.child("envFrom")))
    errs.extend(_validate_volume_mounts(ctr.volume_mounts, volumes, path.child("volumeMounts")))
    errs.extend(
        _not_supported(ctr.image_pull_policy, _PULL_POLICIES, path.child("imagePullPolicy"))
    )
    errs.extend(validate_resource_requirements(ctr.resources, path.child("resources")))
    errs.extend(
        _not_supported(
            ctr.termination_message_policy,
            _TERMINATION_MESSAGE_POLICIES,
            path.child("terminationMessagePolicy"),
        )
    )
    return errs


def _validate_container_name(name: str, seen: set[str], path: FieldPath) -> Errors:
    errs: Errors = []
    if not name:
        errs.append(path.required())
    else:
        errs.extend(_dns_label(name, path))
    if name in seen:
        errs.append(path.duplicate(name))
    seen.add(name)
    return errs


def _validate_containers(
    containers: Sequence[v1.Container], volumes: set[str], path: FieldPath
) -> Errors:
    if not containers:
        return [path.required()]
    errs: Errors = []
    seen: set[str] = set()
    for i, ctr in enumerate(containers):
        p = path.index(i)
        errs.extend(_validate_container_name(ctr.name, seen, p.child("name")))
        errs.extend(_validate_container_common(ctr, volumes, p))
        errs.extend(_validate_container_probes(ctr, p))
        if ctr.HasField("restart_policy"):
            errs.append(
                p.child("restartPolicy").forbidden("may not be set for non-init containers")
            )
    return errs


def _validate_init_containers(
    inits: Sequence[v1.Container],
    regular: Sequence[v1.Container],
    volumes: set[str],
    path: FieldPath,
) -> Errors:
    errs: Errors = []
    seen = {c.name for c in regular}
    for i, ctr in enumerate(inits):
        p = path.index(i)
        errs.extend(_validate_container_name(ctr.name, seen, p.child("name")))
        errs.extend(_validate_container_common(ctr, volumes, p))
        sidecar = ctr.HasField("restart_policy") and ctr.restart_policy == "Always"
        if ctr.HasField("restart_policy") and not sidecar:
            errs.append(p.child("restartPolicy").not_supported(ctr.restart_policy, ["Always"]))
        if sidecar:
            errs.extend(_validate_container_probes(ctr, p))
            continue
        for attr, json_name in (
            ("lifecycle", "lifecycle"),
            ("liveness_probe", "livenessProbe"),
            ("readiness_probe", "readinessProbe"),
            ("startup_probe", "startupProbe"),
        ):
            if ctr.HasField(attr):
                errs.append(
                    p.child(json_name).forbidden(
                        "may not be set for init containers without restartPolicy=Always"
                    )
                )
    return errs


def _validate_host_ports(spec: v1.PodSpec, path: FieldPath) -> Errors:
    """Host ports may not collide within a pod (AccumulateUniqueHostPorts)."""
    errs: Errors = []
    seen: set[str] = set()
    for field, json_name in (
        (spec.containers, "containers"),
        (spec.init_containers, "initContainers"),
    ):
        for i, ctr in enumerate(field):
            for j, port in enumerate(ctr.ports):
                if port.host_port == 0:
                    continue
                key = f"{port.host_ip}/{port.protocol}/{port.host_port}"
                if key in seen:
                    errs.append(
                        path.child(json_name)
                        .index(i)
                        .child("ports")
                        .index(j)
                        .child("hostPort")
                        .duplicate(key)
                    )
                seen.add(key)
                if spec.host_network and port.host_port != port.container_port:
                    errs.append(
                        path.child(json_name)
                        .index(i)
                        .child("ports")
                        .index(j)
                        .child("containerPort")
                        .invalid(
                            port.container_port, "must match `hostPort` when `hostNetwork` is true"
                        )
                    )
    return errs


def _validate_tolerations(tolerations: Sequence[v1.Toleration], path: FieldPath) -> Errors:
    errs: Errors = []
    for i, tol in enumerate(tolerations):
        p = path.index(i)
        if tol.key:
            errs.extend(validate_label_name(tol.key, p.child("key")))
        if not tol.key and tol.operator != "Exists":
            errs.append(
                p.child("operator").invalid(
                    tol.operator,
                    'operator must be Exists when `key` is empty, which means "match all values'
                    ' and all keys"',
                )
            )
        if tol.HasField("toleration_seconds") and tol.effect != "NoExecute":
            errs.append(
                p.child("effect").invalid(
                    tol.effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"
                )
            )
        if tol.operator in ("Equal", ""):
            msgs = is_valid_label_value(tol.value)
            if msgs:
                errs.append(p.child("operator").invalid(tol.value, ";".join(msgs)))
        elif tol.operator == "Exists":
            if tol.value:
                errs.append(
                    p.child("operator").invalid(
                        tol.value, "value must be empty when `operator` is 'Exists'"
                    )
                )
        else:
            errs.append(p.child("operator").not_supported(tol.operator, ["Equal", "Exists"]))
        if tol.effect and tol.effect not in _TAINT_EFFECTS:
            errs.append(p.child("effect").not_supported(tol.effect, list(_TAINT_EFFECTS)))
    return errs


def _validate_node_selector_requirement(req: v1.NodeSelectorRequirement, path: FieldPath) -> Errors:
    errs: Errors = []
    if req.operator in ("In", "NotIn"):
        if not req.values:
            errs.append(
                path.child("values").required(
                    "must be specified when `operator` is 'In' or 'NotIn'"
                )
            )
    elif req.operator in ("Exists", "DoesNotExist"):
        if req.values:
            errs.append(
                path.child("values").forbidden(
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                )
            )
    elif req.operator in ("Gt", "Lt"):
        if len(req.values) != 1:
            errs.append(
                path.child("values").required(
                    "must be specified single value when `operator` is 'Lt' or 'Gt'"
                )
            )
        else:
            try:
                int(req.values[0])
            except ValueError:
                errs.append(
                    path.child("values").index(0).invalid(req.values[0], "must be an integer")
                )
    else:
        errs.append(path.child("operator").invalid(req.operator, "not a valid selector operator"))
    errs.extend(validate_label_name(req.key, path.child("key")))
    return errs


def _validate_node_selector_term(term: v1.NodeSelectorTerm, path: FieldPath) -> Errors:
    errs: Errors = []
    for j, req in enumerate(term.match_expressions):
        errs.extend(
            _validate_node_selector_requirement(req, path.child("matchExpressions").index(j))
        )
    for j, req in enumerate(term.match_fields):
        p = path.child("matchFields").index(j)
        if req.operator not in ("In", "NotIn"):
            errs.append(p.child("operator").invalid(req.operator, "not a valid selector operator"))
        elif len(req.values) != 1:
            errs.append(
                p.child("values").required(
                    "must be only one value when `operator` is 'In' or 'NotIn' for node field"
                    " selector"
                )
            )
        if req.key != "metadata.name":
            errs.append(p.child("key").invalid(req.key, "not a valid field selector key"))
    return errs


def _validate_affinity_term(term: v1.PodAffinityTerm, path: FieldPath) -> Errors:
    errs: Errors = []
    if term.HasField("label_selector"):
        errs.extend(validate_label_selector(term.label_selector, path.child("labelSelector")))
    if term.HasField("namespace_selector"):
        errs.extend(
            validate_label_selector(term.namespace_selector, path.child("namespaceSelector"))
        )
    for i, ns in enumerate(term.namespaces):
        errs.extend(
            path.child("namespaces").index(i).invalid(ns, m) for m in name_is_dns_label(ns, False)
        )
    if not term.topology_key:
        errs.append(path.child("topologyKey").required("can not be empty"))
    else:
        errs.extend(validate_label_name(term.topology_key, path.child("topologyKey")))
    return errs


def _validate_weight(weight: int, path: FieldPath) -> Errors:
    if not 1 <= weight <= 100:
        return [path.invalid(weight, "must be in the range 1-100")]
    return []


def _validate_affinity(affinity: v1.Affinity, path: FieldPath) -> Errors:
    errs: Errors = []
    if affinity.HasField("node_affinity"):
        na = affinity.node_affinity
        np = path.child("nodeAffinity")
        if na.HasField("required_during_scheduling_ignored_during_execution"):
            rp = np.child("requiredDuringSchedulingIgnoredDuringExecution")
            terms = na.required_during_scheduling_ignored_during_execution.node_selector_terms
            tp = rp.child("nodeSelectorTerms")
            if not terms:
                errs.append(tp.required("must have at least one node selector term"))
            for i, term in enumerate(terms):
                errs.extend(_validate_node_selector_term(term, tp.index(i)))
        for i, pref in enumerate(na.preferred_during_scheduling_ignored_during_execution):
            pp = np.child("preferredDuringSchedulingIgnoredDuringExecution").index(i)
            errs.extend(_validate_weight(pref.weight, pp.child("weight")))
            errs.extend(_validate_node_selector_term(pref.preference, pp.child("preference")))
    for attr, json_name in (
        ("pod_affinity", "podAffinity"),
        ("pod_anti_affinity", "podAntiAffinity"),
    ):
        if not affinity.HasField(attr):
            continue
        pa: v1.PodAffinity = getattr(affinity, attr)
        pp = path.child(json_name)
        for i, aterm in enumerate(pa.required_during_scheduling_ignored_during_execution):
            errs.extend(
                _validate_affinity_term(
                    aterm, pp.child("requiredDuringSchedulingIgnoredDuringExecution").index(i)
                )
            )
        for i, wterm in enumerate(pa.preferred_during_scheduling_ignored_during_execution):
            wp = pp.child("preferredDuringSchedulingIgnoredDuringExecution").index(i)
            errs.extend(_validate_weight(wterm.weight, wp.child("weight")))
            errs.extend(
                _validate_affinity_term(wterm.pod_affinity_term, wp.child("podAffinityTerm"))
            )
    return errs


def _validate_topology_spread(
    constraints: Sequence[v1.TopologySpreadConstraint], path: FieldPath
) -> Errors:
    errs: Errors = []
    seen: set[tuple[str, str]] = set()
    for i, c in enumerate(constraints):
        p = path.index(i)
        if c.max_skew <= 0:
            errs.append(p.child("maxSkew").invalid(c.max_skew, "must be greater than zero"))
        if not c.topology_key:
            errs.append(p.child("topologyKey").required("can not be empty"))
        else:
            errs.extend(validate_label_name(c.topology_key, p.child("topologyKey")))
        errs.extend(
            _not_supported(
                c.when_unsatisfiable,
                ("DoNotSchedule", "ScheduleAnyway"),
                p.child("whenUnsatisfiable"),
            )
        )
        if c.HasField("min_domains") and c.min_domains <= 0:
            errs.append(p.child("minDomains").invalid(c.min_domains, "must be greater than 0"))
        if c.HasField("label_selector"):
            errs.extend(validate_label_selector(c.label_selector, p.child("labelSelector")))
        key = (c.topology_key, c.when_unsatisfiable)
        if key in seen:
            errs.append(
                p.child("{topologyKey, whenUnsatisfiable}").duplicate(f"{key[0]}, {key[1]}")
            )
        seen.add(key)
    return errs


def validate_pod_spec(
    spec: v1.PodSpec, path: FieldPath, claim_templates: Iterable[str] = ()
) -> Errors:
    """ValidatePodSpec (after defaults). ``claim_templates``: names of a StatefulSet's
    volumeClaimTemplates, which its pods get as volumes, so mounts may name them."""
    volumes, errs = _validate_volumes(spec.volumes, path.child("volumes"))
    volumes |= set(claim_templates)
    errs.extend(_validate_containers(spec.containers, volumes, path.child("containers")))
    errs.extend(
        _validate_init_containers(
            spec.init_containers, spec.containers, volumes, path.child("initContainers")
        )
    )
    errs.extend(_validate_host_ports(spec, path))
    errs.extend(_not_supported(spec.restart_policy, _RESTART_POLICIES, path.child("restartPolicy")))
    errs.extend(_not_supported(spec.dns_policy, _DNS_POLICIES, path.child("dnsPolicy")))
    if spec.dns_policy == "None":
        errs.append(
            path.child("dnsConfig").required("must provide `dnsConfig` when `dnsPolicy` is None")
        )
    errs.extend(validate_labels(dict(spec.node_selector), path.child("nodeSelector")))
    for attr, json_name in (
        ("service_account_name", "serviceAccountName"),
        ("node_name", "nodeName"),
        ("scheduler_name", "schedulerName"),
        ("priority_class_name", "priorityClassName"),
    ):
        value = getattr(spec, attr)
        if value:
            errs.extend(_dns_subdomain(value, path.child(json_name)))
    for attr in ("hostname", "subdomain"):
        value = getattr(spec, attr)
        if value:
            errs.extend(_dns_label(value, path.child(attr)))
    if spec.HasField("active_deadline_seconds"):
        ads = spec.active_deadline_seconds
        if not 1 <= ads <= MAX_UINT32:
            errs.append(
                path.child("activeDeadlineSeconds").invalid(
                    ads, inclusive_range_error(1, MAX_UINT32)
                )
            )
    if spec.HasField("termination_grace_period_seconds"):
        errs.extend(
            _nonnegative(
                spec.termination_grace_period_seconds, path.child("terminationGracePeriodSeconds")
            )
        )
    if spec.HasField("affinity"):
        errs.extend(_validate_affinity(spec.affinity, path.child("affinity")))
    errs.extend(_validate_tolerations(spec.tolerations, path.child("tolerations")))
    for i, alias in enumerate(spec.host_aliases):
        ap = path.child("hostAliases").index(i)
        errs.extend(ap.child("ip").invalid(alias.ip, m) for m in is_valid_ip(alias.ip))
        for j, host in enumerate(alias.hostnames):
            errs.extend(_dns_subdomain(host, ap.child("hostnames").index(j)))
    errs.extend(
        _validate_topology_spread(
            spec.topology_spread_constraints, path.child("topologySpreadConstraints")
        )
    )
    for i, gate in enumerate(spec.readiness_gates):
        gp = path.child("readinessGates").index(i).child("conditionType")
        errs.extend(
            gp.invalid(gate.condition_type, m) for m in is_qualified_name(gate.condition_type)
        )
    if spec.preemption_policy:
        errs.extend(
            _not_supported(
                spec.preemption_policy,
                ("Never", "PreemptLowerPriority"),
                path.child("preemptionPolicy"),
            )
        )
    for i, secret in enumerate(spec.image_pull_secrets):
        if secret.name:
            errs.extend(
                _dns_subdomain(secret.name, path.child("imagePullSecrets").index(i).child("name"))
            )
    return errs


_POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only"
    " additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be"
    " set to 1 if it was previously negative)"
)


def _validate_only_added_tolerations(
    new: Sequence[v1.Toleration], old: Sequence[v1.Toleration], path: FieldPath
) -> Errors:
    for old_tol in old:
        found = False
        for new_tol in new:
            clone = v1.Toleration()
            clone.CopyFrom(old_tol)
            clone.ClearField("toleration_seconds")
            if new_tol.HasField("toleration_seconds"):
                clone.toleration_seconds = new_tol.toleration_seconds
            if clone == new_tol:
                found = True
                break
        if not found:
            return [
                path.forbidden(
                    "existing toleration can not be modified except its tolerationSeconds"
                )
            ]
    return []


def validate_pod_update(new: v1.Pod, old: v1.Pod) -> Errors:
    errs: Errors = []
    spec_path = FieldPath("spec")
    for field, json_name in (("containers", "containers"), ("init_containers", "initContainers")):
        for i, ctr in enumerate(getattr(new.spec, field)):
            if not ctr.image:
                errs.append(spec_path.child(json_name).index(i).child("image").required())
    if new.spec.HasField("active_deadline_seconds"):
        ads = new.spec.active_deadline_seconds
        if not 0 <= ads <= MAX_UINT32:
            return errs + [
                spec_path.child("activeDeadlineSeconds").invalid(
                    ads, inclusive_range_error(0, MAX_UINT32)
                )
            ]
        if old.spec.HasField("active_deadline_seconds") and old.spec.active_deadline_seconds < ads:
            return errs + [
                spec_path.child("activeDeadlineSeconds").invalid(
                    ads, "must be less than or equal to previous value"
                )
            ]
    elif old.spec.HasField("active_deadline_seconds"):
        errs.append(
            spec_path.child("activeDeadlineSeconds").invalid(
                None, "must not update from a positive integer to nil value"
            )
        )
    errs.extend(
        _validate_only_added_tolerations(
            new.spec.tolerations, old.spec.tolerations, spec_path.child("tolerations")
        )
    )
    # Take the old spec, apply the changes that are allowed, and anything left is forbidden.
    munged = v1.PodSpec()
    munged.CopyFrom(old.spec)
    for field in ("containers", "init_containers"):
        old_list = getattr(munged, field)
        new_list = getattr(new.spec, field)
        if len(old_list) == len(new_list):
            for o, n in zip(old_list, new_list, strict=True):
                o.image = n.image
    _copy_field(munged, new.spec, "active_deadline_seconds")
    munged.ClearField("tolerations")
    munged.tolerations.extend(new.spec.tolerations)
    if (
        old.spec.HasField("termination_grace_period_seconds")
        and old.spec.termination_grace_period_seconds < 0
        and new.spec.HasField("termination_grace_period_seconds")
        and new.spec.termination_grace_period_seconds == 1
    ):
        munged.termination_grace_period_seconds = 1
    if munged != new.spec:
        errs.append(spec_path.forbidden(_POD_UPDATE_FORBIDDEN))
    return errs


def validate_pod_template(
    template: v1.PodTemplateSpec, path: FieldPath, claim_templates: Iterable[str] = ()
) -> Errors:
    """ValidatePodTemplateSpec: template labels/annotations and the pod spec."""
    errs = validate_labels(dict(template.metadata.labels), path.child("metadata", "labels"))
    errs.extend(
        validate_annotations(
            dict(template.metadata.annotations), path.child("metadata", "annotations")
        )
    )
    errs.extend(validate_pod_spec(template.spec, path.child("spec"), claim_templates))
    return errs


# ---------------------------------------------------------------- kinds


def _validate_pod(pod: v1.Pod) -> Errors:
    return validate_pod_spec(pod.spec, FieldPath("spec"))


def _validate_selector_and_template(
    spec: v1.ReplicaSetSpec
    | v1.DeploymentSpec
    | v1.DaemonSetSpec
    | v1.StatefulSetSpec
    | v1.JobSpec,
    path: FieldPath,
    kind_word: str,
    allowed_restart: Sequence[str],
    deadline_kind: str | None,
    claim_templates: Iterable[str] = (),
) -> Errors:
    """Selector required and non-empty, matching the template's labels; template valid."""
    errs: Errors = []
    sel_path = path.child("selector")
    template = spec.template
    selector: Selector | None = None
    if not spec.HasField("selector"):
        errs.append(sel_path.required())
    else:
        msg = spec.selector
        sel_errs = validate_label_selector(msg, sel_path)
        errs.extend(sel_errs)
        if not msg.match_labels and not msg.match_expressions:
            errs.append(sel_path.invalid(_plain(msg), f"empty selector is invalid for {kind_word}"))
        elif not sel_errs:
            try:
                selector = selector_from_label_selector(msg)
            except ValueError:
                errs.append(sel_path.invalid(_plain(msg), "invalid label selector"))
    if selector is not None and not selector.matches(dict(template.metadata.labels)):
        errs.append(
            path.child("template", "metadata", "labels").invalid(
                _plain(dict(template.metadata.labels)),
                "`selector` does not match template `labels`",
            )
        )
    errs.extend(validate_pod_template(template, path.child("template"), claim_templates))
    restart = template.spec.restart_policy
    if restart in _RESTART_POLICIES and restart not in allowed_restart:
        errs.append(
            path.child("template", "spec", "restartPolicy").not_supported(
                restart, list(allowed_restart)
            )
        )
    if deadline_kind is not None and template.spec.HasField("active_deadline_seconds"):
        errs.append(
            path.child("template", "spec", "activeDeadlineSeconds").invalid(
                template.spec.active_deadline_seconds,
                f"activeDeadlineSeconds in {deadline_kind} is not Supported",
            )
        )
    return errs


def _validate_replica_set(rs: v1.ReplicaSet) -> Errors:
    path = FieldPath("spec")
    errs = _nonnegative(rs.spec.replicas, path.child("replicas"))
    errs.extend(_nonnegative(rs.spec.min_ready_seconds, path.child("minReadySeconds")))
    errs.extend(
        _validate_selector_and_template(rs.spec, path, "deployment", ["Always"], "ReplicaSet")
    )
    return errs


def _validate_int_or_percent(value: v1.IntOrString, path: FieldPath) -> Errors:
    v = _ios(value)
    if isinstance(v, str):
        return [path.invalid(v, m) for m in is_valid_percent(v)]
    if isinstance(v, int):
        return _nonnegative(v, path)
    return []


def _int_or_percent_value(value: v1.IntOrString) -> int:
    v = _ios(value)
    if isinstance(v, str):
        try:
            return int(v.rstrip("%"))
        except ValueError:
            return 0
    return v or 0


def _not_more_than_100_percent(value: v1.IntOrString, path: FieldPath) -> Errors:
    v = _ios(value)
    if isinstance(v, str) and not is_valid_percent(v) and int(v[:-1]) > 100:
        return [path.invalid(v, "must not be greater than 100%")]
    return []


def _validate_deployment(d: v1.Deployment) -> Errors:
    spec = d.spec
    path = FieldPath("spec")
    errs = _nonnegative(spec.replicas, path.child("replicas"))
    errs.extend(_validate_selector_and_template(spec, path, "deployment", ["Always"], "ReplicaSet"))
    sp = path.child("strategy")
    strategy = spec.strategy
    if strategy.type == "Recreate":
        if strategy.HasField("rolling_update"):
            errs.append(
                sp.child("rollingUpdate").forbidden(
                    "may not be specified when strategy `type` is 'Recreate'"
                )
            )
    elif strategy.type == "RollingUpdate":
        rp = sp.child("rollingUpdate")
        if not strategy.HasField("rolling_update"):
            errs.append(rp.required("this should be defaulted and never be nil"))
        else:
            ru = strategy.rolling_update
            errs.extend(_validate_int_or_percent(ru.max_unavailable, rp.child("maxUnavailable")))
            errs.extend(_validate_int_or_percent(ru.max_surge, rp.child("maxSurge")))
            if (
                _int_or_percent_value(ru.max_unavailable) == 0
                and _int_or_percent_value(ru.max_surge) == 0
            ):
                errs.append(
                    rp.child("maxUnavailable").invalid(
                        _ios(ru.max_unavailable), "may not be 0 when `maxSurge` is 0"
                    )
                )
            errs.extend(_not_more_than_100_percent(ru.max_unavailable, rp.child("maxUnavailable")))
    else:
        errs.extend(_not_supported(strategy.type, ["Recreate", "RollingUpdate"], sp.child("type")))
    errs.extend(_nonnegative(spec.min_ready_seconds, path.child("minReadySeconds")))
    if spec.HasField("revision_history_limit"):
        errs.extend(_nonnegative(spec.revision_history_limit, path.child("revisionHistoryLimit")))
    if spec.HasField("progress_deadline_seconds"):
        pds = path.child("progressDeadlineSeconds")
        errs.extend(_nonnegative(spec.progress_deadline_seconds, pds))
        if spec.progress_deadline_seconds <= spec.min_ready_seconds:
            errs.append(
                pds.invalid(spec.progress_deadline_seconds, "must be greater than minReadySeconds")
            )
    return errs


def _validate_daemon_set(ds: v1.DaemonSet) -> Errors:
    spec = ds.spec
    path = FieldPath("spec")
    errs = _validate_selector_and_template(spec, path, "daemonset", ["Always"], "DaemonSet")
    errs.extend(_nonnegative(spec.min_ready_seconds, path.child("minReadySeconds")))
    if spec.HasField("revision_history_limit"):
        errs.extend(_nonnegative(spec.revision_history_limit, path.child("revisionHistoryLimit")))
    sp = path.child("updateStrategy")
    strategy = spec.update_strategy
    if strategy.type == "RollingUpdate":
        rp = sp.child("rollingUpdate")
        if not strategy.HasField("rolling_update"):
            errs.append(rp.required())
        else:
            ru = strategy.rolling_update
            errs.extend(_validate_int_or_percent(ru.max_unavailable, rp.child("maxUnavailable")))
            errs.extend(_validate_int_or_percent(ru.max_surge, rp.child("maxSurge")))
            errs.extend(_not_more_than_100_percent(ru.max_unavailable, rp.child("maxUnavailable")))
            errs.extend(_not_more_than_100_percent(ru.max_surge, rp.child("maxSurge")))
            has_unavailable = _int_or_percent_value(ru.max_unavailable) != 0
            has_surge = _int_or_percent_value(ru.max_surge) != 0
            if has_unavailable and has_surge:
                errs.append(
                    rp.child("maxSurge").invalid(
                        _ios(ru.max_surge), "may not be set when maxUnavailable is non-zero"
                    )
                )
            elif not has_unavailable and not has_surge:
                errs.append(rp.child("maxUnavailable").required("cannot be 0 when maxSurge is 0"))
    elif strategy.type != "OnDelete":
        errs.extend(_not_supported(strategy.type, ["OnDelete", "RollingUpdate"], sp.child("type")))
    return errs


def _validate_pvc_spec(spec: v1.PersistentVolumeClaimSpec, path: FieldPath) -> Errors:
    errs: Errors = []
    modes = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
    if not spec.access_modes:
        errs.append(path.child("accessModes").required("at least 1 access mode is required"))
    for mode in spec.access_modes:
        if mode not in modes:
            errs.append(path.child("accessModes").not_supported(mode, list(modes)))
    if spec.HasField("selector"):
        errs.extend(validate_label_selector(spec.selector, path.child("selector")))
    storage = spec.resources.requests.get("storage")
    rp = path.child("resources").key("storage")
    if storage is None:
        errs.append(rp.required())
    else:
        q, q_errs = _validate_quantity_value("storage", storage, rp)
        errs.extend(q_errs)
        if q is not None and q.is_zero():
            errs.append(rp.invalid(storage, "must be greater than zero"))
    if spec.HasField("volume_mode"):
        errs.extend(
            _not_supported(spec.volume_mode, ["Block", "Filesystem"], path.child("volumeMode"))
        )
    return errs


def _validate_stateful_set(sts: v1.StatefulSet) -> Errors:
    spec = sts.spec
    path = FieldPath("spec")
    errs: Errors = []
    policy = spec.pod_management_policy
    if not policy:
        errs.append(path.child("podManagementPolicy").required())
    elif policy not in ("OrderedReady", "Parallel"):
        errs.append(
            path.child("podManagementPolicy").invalid(
                policy, "must be 'OrderedReady' or 'Parallel'"
            )
        )
    sp = path.child("updateStrategy")
    strategy = spec.update_strategy
    if not strategy.type:
        errs.append(sp.required())
    elif strategy.type == "OnDelete":
        if strategy.HasField("rolling_update"):
            errs.append(
                sp.child("rollingUpdate").invalid(
                    _plain(strategy.rolling_update),
                    "only allowed for updateStrategy 'RollingUpdate'",
                )
            )
    elif strategy.type == "RollingUpdate":
        if strategy.HasField("rolling_update"):
            rp = sp.child("rollingUpdate")
            ru = strategy.rolling_update
            if ru.HasField("partition"):
                errs.extend(_nonnegative(ru.partition, rp.child("partition")))
            if ru.max_unavailable.WhichOneof("value") is not None:
                mp = rp.child("maxUnavailable")
                errs.extend(_validate_int_or_percent(ru.max_unavailable, mp))
                if _int_or_percent_value(ru.max_unavailable) == 0:
                    errs.append(mp.invalid(_ios(ru.max_unavailable), "must be greater than 0"))
                errs.extend(_not_more_than_100_percent(ru.max_unavailable, mp))
    else:
        errs.append(sp.invalid(strategy.type, "must be 'RollingUpdate' or 'OnDelete'"))
    retention = spec.persistent_volume_claim_retention_policy
    rp = path.child("persistentVolumeClaimRetentionPolicy")
    errs.extend(
        _not_supported(retention.when_deleted, ["Delete", "Retain"], rp.child("whenDeleted"))
    )
    errs.extend(_not_supported(retention.when_scaled, ["Delete", "Retain"], rp.child("whenScaled")))
    errs.extend(_nonnegative(spec.replicas, path.child("replicas")))
    errs.extend(_nonnegative(spec.min_ready_seconds, path.child("minReadySeconds")))
    errs.extend(_nonnegative(spec.ordinals.start, path.child("ordinals", "start")))
    if spec.HasField("revision_history_limit"):
        errs.extend(_nonnegative(spec.revision_history_limit, path.child("revisionHistoryLimit")))
    errs.extend(
        _validate_selector_and_template(
            spec, path, "statefulset", ["Always"], "StatefulSet",
            [c.metadata.name for c in spec.volume_claim_templates],
        )
    )
    for i, claim in enumerate(spec.volume_claim_templates):
        cp = path.child("volumeClaimTemplates").index(i)
        errs.extend(validate_labels(dict(claim.metadata.labels), cp.child("metadata", "labels")))
        if not claim.metadata.name:
            errs.append(cp.child("metadata", "name").required())
        errs.extend(_validate_pvc_spec(claim.spec, cp.child("spec")))
    return errs


def _validate_job_spec_common(spec: v1.JobSpec, path: FieldPath) -> Errors:
    """validateJobSpec: the rules a Job and a CronJob's jobTemplate share."""
    errs: Errors = []
    for attr, json_name in (
        ("parallelism", "parallelism"),
        ("completions", "completions"),
        ("active_deadline_seconds", "activeDeadlineSeconds"),
        ("backoff_limit", "backoffLimit"),
        ("ttl_seconds_after_finished", "ttlSecondsAfterFinished"),
    ):
        if spec.HasField(attr):
            errs.extend(_nonnegative(getattr(spec, attr), path.child(json_name)))
    if spec.HasField("active_deadline_seconds") and spec.active_deadline_seconds == 0:
        errs.append(path.child("activeDeadlineSeconds").invalid(0, "must be greater than 0"))
    if spec.HasField("completion_mode"):
        mode = spec.completion_mode
        if mode not in ("NonIndexed", "Indexed"):
            errs.append(path.child("completionMode").not_supported(mode, ["NonIndexed", "Indexed"]))
        if mode == "Indexed":
            errs.extend(_validate_indexed_job_limits(spec, path))
    return errs


MAX_PARALLELISM_FOR_INDEXED_JOB = 100_000
COMPLETIONS_SOFT_LIMIT = 100_000
PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS = 10_000


def _validate_indexed_job_limits(spec: v1.JobSpec, path: FieldPath) -> Errors:
    """Upstream's limits for completionMode Indexed (its status lists every index)."""
    errs: Errors = []
    if not spec.HasField("completions"):
        errs.append(path.child("completions").required("when completion mode is Indexed"))
    parallelism = spec.parallelism if spec.HasField("parallelism") else 1
    if parallelism > MAX_PARALLELISM_FOR_INDEXED_JOB:
        errs.append(path.child("parallelism").invalid(
            parallelism, f"must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED_JOB}"
                         " when completion mode is Indexed"))
    elif (spec.HasField("completions") and spec.completions > COMPLETIONS_SOFT_LIMIT
          and parallelism > PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS):
        errs.append(path.child("parallelism").invalid(
            parallelism, f"must be less than or equal to {PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS}"
                         " when completion mode is Indexed and completions is greater than"
                         f" {COMPLETIONS_SOFT_LIMIT}"))
    return errs


def _validate_job(job: v1.Job) -> Errors:
    spec = job.spec
    path = FieldPath("spec")
    errs = _validate_job_spec_common(spec, path)
    errs.extend(_validate_selector_and_template(spec, path, "job", ["OnFailure", "Never"], None))
    return errs


def _validate_time_zone(spec: v1.CronJobSpec, path: FieldPath) -> Errors:
    if not spec.HasField("time_zone"):
        return []
    tz = spec.time_zone
    if not tz:
        return [path.invalid(tz, "timeZone must be nil or non-empty string")]
    for part in tz.split("/"):
        if (
            part in (".", "..")
            or part.startswith("-")
            or not re.fullmatch(r"[A-Za-z.\-_0-9+]{1,14}", part)
        ):
            return [path.invalid(tz, f"unknown time zone {tz}")]
    if tz.lower() == "local":
        return [
            path.invalid(
                tz,
                "timeZone must be an explicit time zone as defined in"
                " https://www.iana.org/time-zones",
            )
        ]
    try:
        cron.load_time_zone(tz)
    except ValueError as e:
        return [path.invalid(tz, str(e))]
    return []


def _validate_cron_job(cj: v1.CronJob, old: v1.CronJob | None = None) -> Errors:
    spec = cj.spec
    path = FieldPath("spec")
    errs: Errors = []
    if len(cj.metadata.name) > CRONJOB_NAME_MAX_LENGTH:
        errs.append(
            FieldPath("metadata")
            .child("name")
            .invalid(cj.metadata.name, f"must be no more than {CRONJOB_NAME_MAX_LENGTH} characters")
        )
    sched_path = path.child("schedule")
    if not spec.schedule:
        errs.append(sched_path.required())
    else:
        if spec.schedule.strip().startswith("@every"):
            errs.append(sched_path.invalid(spec.schedule, "@every is not supported"))
        else:
            try:
                cron.parse_schedule(spec.schedule)
            except ValueError as e:
                errs.append(sched_path.invalid(spec.schedule, str(e)))
        allow_tz = old is not None and "TZ" in old.spec.schedule
        if "TZ" in spec.schedule and not allow_tz:
            errs.append(
                sched_path.invalid(
                    spec.schedule,
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                )
            )
    if spec.HasField("starting_deadline_seconds"):
        errs.extend(
            _nonnegative(spec.starting_deadline_seconds, path.child("startingDeadlineSeconds"))
        )
    if (
        old is None
        or old.spec.HasField("time_zone") != spec.HasField("time_zone")
        or (old.spec.time_zone != spec.time_zone)
    ):
        errs.extend(_validate_time_zone(spec, path.child("timeZone")))
    errs.extend(
        _not_supported(
            spec.concurrency_policy, ["Allow", "Forbid", "Replace"], path.child("concurrencyPolicy")
        )
    )
    jp = path.child("jobTemplate")
    jspec = spec.job_template.spec
    errs.extend(
        validate_labels(dict(spec.job_template.metadata.labels), jp.child("metadata", "labels"))
    )
    errs.extend(_validate_job_spec_common(jspec, jp.child("spec")))
    if jspec.HasField("selector"):
        errs.append(
            jp.child("spec", "selector").invalid(
                _plain(jspec.selector), "`selector` will be auto-generated"
            )
        )
    if jspec.HasField("manual_selector") and jspec.manual_selector:
        errs.append(jp.child("spec", "manualSelector").not_supported(True, ["nil", "false"]))
    template_path = jp.child("spec", "template")
    errs.extend(validate_pod_template(jspec.template, template_path))
    restart = jspec.template.spec.restart_policy
    if restart in _RESTART_POLICIES and restart not in ("OnFailure", "Never"):
        errs.append(
            template_path.child("spec", "restartPolicy").not_supported(
                restart, ["OnFailure", "Never"]
            )
        )
    for attr, json_name in (
        ("successful_jobs_history_limit", "successfulJobsHistoryLimit"),
        ("failed_jobs_history_limit", "failedJobsHistoryLimit"),
    ):
        if spec.HasField(attr):
            errs.extend(_nonnegative(getattr(spec, attr), path.child(json_name)))
    return errs


_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")


def _validate_service(svc: v1.Service) -> Errors:
    spec = svc.spec
    path = FieldPath("spec")
    errs: Errors = []
    headless = spec.cluster_ip == "None"
    if not spec.ports and not headless and spec.type != "ExternalName":
        errs.append(path.child("ports").required())
    if spec.type == "ExternalName":
        if spec.cluster_ip and spec.cluster_ip != "None":
            errs.append(
                path.child("clusterIP").forbidden("may not be set for ExternalName services")
            )
        cname = spec.external_name.removesuffix(".")
        if cname:
            errs.extend(_dns_subdomain(cname, path.child("externalName")))
        else:
            errs.append(path.child("externalName").required())
    names: set[str] = set()
    ports_path = path.child("ports")
    seen_ports: set[tuple[str, int]] = set()
    seen_node_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(spec.ports):
        p = ports_path.index(i)
        if len(spec.ports) > 1 and not port.name:
            errs.append(p.child("name").required())
        elif port.name:
            errs.extend(_dns_label(port.name, p.child("name")))
            if port.name in names:
                errs.append(p.child("name").duplicate(port.name))
            names.add(port.name)
        errs.extend(p.child("port").invalid(port.port, m) for m in is_valid_port_num(port.port))
        errs.extend(_not_supported(port.protocol, _PROTOCOLS, p.child("protocol")))
        errs.extend(_validate_port_ref(port.target_port, p.child("targetPort"), None))
        if port.HasField("app_protocol"):
            errs.extend(
                p.child("appProtocol").invalid(port.app_protocol, m)
                for m in is_qualified_name(port.app_protocol)
            )
        if port.node_port != 0:
            if spec.type not in ("NodePort", "LoadBalancer"):
                errs.append(
                    p.child("nodePort").forbidden(f"may not be used when `type` is '{spec.type}'")
                )
            else:
                errs.extend(
                    p.child("nodePort").invalid(port.node_port, m)
                    for m in is_valid_port_num(port.node_port)
                )
            key = (port.protocol, port.node_port)
            if key in seen_node_ports:
                errs.append(p.child("nodePort").duplicate(port.node_port))
            seen_node_ports.add(key)
        key = (port.protocol, port.port)
        if key in seen_ports:
            errs.append(p.duplicate(f"{port.protocol}/{port.port}"))
        seen_ports.add(key)
    errs.extend(validate_labels(dict(spec.selector), path.child("selector")))
    affinity = spec.session_affinity
    errs.extend(_not_supported(affinity, ["ClientIP", "None"], path.child("sessionAffinity")))
    ap = path.child("sessionAffinityConfig")
    if affinity == "ClientIP":
        detail = "when session affinity type is ClientIP"
        if not spec.HasField("session_affinity_config"):
            errs.append(ap.required(detail))
        elif not spec.session_affinity_config.HasField("client_ip"):
            errs.append(ap.child("clientIP").required(detail))
        elif not spec.session_affinity_config.client_ip.HasField("timeout_seconds"):
            errs.append(ap.child("clientIP", "timeoutSeconds").required(detail))
        else:
            timeout = spec.session_affinity_config.client_ip.timeout_seconds
            if not 0 < timeout <= MAX_CLIENT_IP_AFFINITY_SECONDS:
                errs.append(
                    ap.child("clientIP", "timeoutSeconds").invalid(
                        timeout,
                        f"must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}",
                    )
                )
    elif affinity == "None" and spec.HasField("session_affinity_config"):
        errs.append(ap.forbidden("must not be set when session affinity is None"))
    ip_path = path.child("clusterIP")
    if spec.cluster_ip and spec.cluster_ip != "None":
        errs.extend(ip_path.invalid(spec.cluster_ip, m) for m in is_valid_ip(spec.cluster_ip))
    if headless and spec.type in ("NodePort", "LoadBalancer"):
        errs.append(ip_path.invalid("None", f"may not be set to 'None' for {spec.type} services"))
    for i, ip in enumerate(spec.cluster_ips):
        cp = path.child("clusterIPs").index(i)
        if i == 0 and ip == "None":
            if len(spec.cluster_ips) > 1:
                errs.append(cp.invalid(ip, "'None' must be the first and only value"))
            continue
        errs.extend(cp.invalid(ip, m) for m in is_valid_ip(ip))
    if spec.cluster_ips and spec.cluster_ip and spec.cluster_ips[0] != spec.cluster_ip:
        errs.append(
            path.child("clusterIPs")
            .index(0)
            .invalid(spec.cluster_ips[0], "must match `clusterIP` if set")
        )
    for i, ip in enumerate(spec.external_ips):
        errs.extend(path.child("externalIPs").index(i).invalid(ip, m) for m in is_valid_ip(ip))
    errs.extend(_not_supported(spec.type, _SERVICE_TYPES, path.child("type")))
    if spec.external_traffic_policy and spec.external_traffic_policy not in ("Cluster", "Local"):
        errs.append(
            path.child("externalTrafficPolicy").not_supported(
                spec.external_traffic_policy, ["Cluster", "Local"]
            )
        )
    if spec.HasField("internal_traffic_policy") and spec.internal_traffic_policy not in (
        "Cluster",
        "Local",
    ):
        errs.append(
            path.child("internalTrafficPolicy").not_supported(
                spec.internal_traffic_policy, ["Cluster", "Local"]
            )
        )
    return errs


def _validate_service_update(new: v1.Service, old: v1.Service) -> Errors:
    # A cleared clusterIP is left to the API server to carry over; changing it is not allowed.
    if (
        old.spec.cluster_ip
        and new.spec.cluster_ip
        and new.spec.cluster_ip != old.spec.cluster_ip
        and "ExternalName" not in (new.spec.type, old.spec.type)
    ):
        return [FieldPath("spec").child("clusterIP").invalid(new.spec.cluster_ip, FIELD_IMMUTABLE)]
    return []


def _validate_endpoints(ep: v1.Endpoints) -> Errors:
    errs: Errors = []
    path = FieldPath("subsets")
    for i, subset in enumerate(ep.subsets):
        sp = path.index(i)
        if not subset.addresses and not subset.not_ready_addresses:
            errs.append(sp.required("must specify `addresses` or `notReadyAddresses`"))
        for field, json_name in (
            (subset.addresses, "addresses"),
            (subset.not_ready_addresses, "notReadyAddresses"),
        ):
            for j, addr in enumerate(field):
                ap = sp.child(json_name).index(j)
                # Loopback addresses are allowed (unlike upstream): kubelite's process runtime
                # gives pods their node's 127.0.0.x address.
                msgs = is_valid_ip(addr.ip)
                errs.extend(ap.child("ip").invalid(addr.ip, m) for m in msgs)
                if not msgs and ipaddress.ip_address(addr.ip).is_unspecified:
                    errs.append(ap.child("ip").invalid(addr.ip, "may not be unspecified (0.0.0.0)"))
                if addr.hostname:
                    errs.extend(_dns_label(addr.hostname, ap.child("hostname")))
                if addr.HasField("node_name"):
                    errs.extend(_dns_subdomain(addr.node_name, ap.child("nodeName")))
        for j, port in enumerate(subset.ports):
            pp = sp.child("ports").index(j)
            if len(subset.ports) > 1 and not port.name:
                errs.append(pp.child("name").required())
            elif port.name:
                errs.extend(_dns_label(port.name, pp.child("name")))
            errs.extend(
                pp.child("port").invalid(port.port, m) for m in is_valid_port_num(port.port)
            )
            errs.extend(_not_supported(port.protocol, _PROTOCOLS, pp.child("protocol")))
    return errs


def _validate_config_map(cm: v1.ConfigMap) -> Errors:
    errs: Errors = []
    total = 0
    for key in sorted(cm.data):
        p = FieldPath("data").key(key)
        errs.extend(p.invalid(key, m) for m in is_config_map_key(key))
        if key in cm.binary_data:
            errs.append(p.invalid(key, "duplicate of key present in binaryData"))
        total += len(cm.data[key].encode())
    for key in sorted(cm.binary_data):
        p = FieldPath("binaryData").key(key)
        errs.extend(p.invalid(key, m) for m in is_config_map_key(key))
        total += len(cm.binary_data[key])
    if total > MAX_SECRET_SIZE:
        errs.append(FieldPath("").too_long("", MAX_SECRET_SIZE))
    return errs


def _validate_immutable_data(
    new: v1.ConfigMap | v1.Secret,
    old: v1.ConfigMap | v1.Secret,
    data_fields: Sequence[tuple[str, str]],
) -> Errors:
    if not (old.HasField("immutable") and old.immutable):
        return []
    errs: Errors = []
    if not (new.HasField("immutable") and new.immutable):
        errs.append(FieldPath("immutable").forbidden("field is immutable when `immutable` is set"))
    for attr, json_name in data_fields:
        if dict(getattr(new, attr)) != dict(getattr(old, attr)):
            errs.append(
                FieldPath(json_name).forbidden("field is immutable when `immutable` is set")
            )
    return errs


_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def _validate_secret(secret: v1.Secret) -> Errors:
    errs: Errors = []
    data_path = FieldPath("data")
    total = 0
    for key in sorted(secret.data):
        errs.extend(data_path.key(key).invalid(key, m) for m in is_config_map_key(key))
        total += len(secret.data[key])
    for key in sorted(secret.string_data):
        if key not in secret.data:
            errs.extend(
                FieldPath("stringData").key(key).invalid(key, m) for m in is_config_map_key(key)
            )
            total += len(secret.string_data[key].encode())
    if total > MAX_SECRET_SIZE:
        errs.append(data_path.too_long("", MAX_SECRET_SIZE))
    keys = set(secret.data) | set(secret.string_data)
    if secret.type == "kubernetes.io/service-account-token":
        if not secret.metadata.annotations.get("kubernetes.io/service-account.name"):
            errs.append(
                FieldPath("metadata")
                .child("annotations")
                .key("kubernetes.io/service-account.name")
                .required()
            )
    elif secret.type == "kubernetes.io/basic-auth" and not keys & {"username", "password"}:
        errs.append(data_path.key("username").required())
        errs.append(data_path.key("password").required())
    for key in _SECRET_REQUIRED_KEYS.get(secret.type, ()):
        if key not in keys:
            errs.append(data_path.key(key).required())
    return errs


def _validate_event(ev: v1.Event) -> Errors:
    errs: Errors = []
    ns_path = FieldPath("involvedObject").child("namespace")
    involved_ns = ev.involved_object.namespace
    if not ev.event_time:
        if not involved_ns:
            if ev.metadata.namespace not in ("", "default"):
                errs.append(ns_path.invalid(involved_ns, "does not match event.namespace"))
        elif ev.metadata.namespace != involved_ns:
            errs.append(ns_path.invalid(involved_ns, "does not match event.namespace"))
    else:
        if not involved_ns and ev.metadata.namespace not in ("default", "kube-system"):
            errs.append(ns_path.invalid(involved_ns, "does not match event.namespace"))
        rc = FieldPath("reportingComponent")
        if not ev.reporting_component:
            errs.append(rc.required())
        errs.extend(
            rc.invalid(ev.reporting_component, m) for m in is_qualified_name(ev.reporting_component)
        )
        for value, name, limit in (
            (ev.reporting_instance, "reportingInstance", 128),
            (ev.action, "action", 128),
            (ev.reason, "reason", 128),
        ):
            if not value:
                errs.append(FieldPath(name).required())
            elif len(value) > limit:
                errs.append(FieldPath(name).invalid("", f"can have at most {limit} characters"))
        if len(ev.message) > 1024:
            errs.append(FieldPath("message").invalid("", "can have at most 1024 characters"))
    if ev.type and ev.type not in ("Normal", "Warning"):
        errs.append(FieldPath("type").not_supported(ev.type, ["Normal", "Warning"]))
    return errs


def _validate_lease(lease: v1.Lease) -> Errors:
    errs: Errors = []
    spec = lease.spec
    path = FieldPath("spec")
    if spec.HasField("lease_duration_seconds") and spec.lease_duration_seconds <= 0:
        errs.append(
            path.child("leaseDurationSeconds").invalid(
                spec.lease_duration_seconds, "must be greater than 0"
            )
        )
    if spec.HasField("lease_transitions") and spec.lease_transitions < 0:
        errs.append(
            path.child("leaseTransitions").invalid(spec.lease_transitions, IS_NEGATIVE_ERROR)
        )
    return errs


def _validate_node(node: v1.Node) -> Errors:
    errs: Errors = []
    path = FieldPath("spec")
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(node.spec.taints):
        p = path.child("taints").index(i)
        errs.extend(validate_label_name(taint.key, p.child("key")))
        msgs = is_valid_label_value(taint.value)
        if msgs:
            errs.append(p.child("value").invalid(taint.value, ";".join(msgs)))
        if not taint.effect:
            errs.append(p.child("effect").required())
        elif taint.effect not in _TAINT_EFFECTS:
            errs.append(p.child("effect").not_supported(taint.effect, list(_TAINT_EFFECTS)))
        key = (taint.key, taint.effect)
        if key in seen:
            errs.append(
                FieldError(
                    ErrorType.DUPLICATE,
                    str(p),
                    "taints must be unique by key and effect pair",
                    f"{taint.key}:{taint.effect}",
                )
            )
        seen.add(key)
    if node.spec.pod_cidr:
        errs.extend(
            path.child("podCIDR").invalid(node.spec.pod_cidr, m)
            for m in is_valid_cidr(node.spec.pod_cidr)
        )
    for i, cidr in enumerate(node.spec.pod_cidrs):
        errs.extend(path.child("podCIDRs").index(i).invalid(cidr, m) for m in is_valid_cidr(cidr))
    for field, json_name in (
        (node.status.capacity, "capacity"),
        (node.status.allocatable, "allocatable"),
    ):
        for name in sorted(field):
            p = FieldPath("status").child(json_name).key(name)
            errs.extend(p.invalid(name, m) for m in is_qualified_name(name))
            _, q_errs = _validate_quantity_value(name, field[name], p)
            errs.extend(q_errs)
    return errs


def _validate_namespace(ns: v1.Namespace) -> Errors:
    errs: Errors = []
    for i, name in enumerate(ns.spec.finalizers):
        p = FieldPath("spec").child("finalizers").index(i)
        msgs = is_qualified_name(name)
        errs.extend(p.invalid(name, m) for m in msgs)
        if not msgs and "/" not in name and name != "kubernetes":
            errs.append(
                p.invalid(
                    name, "name is neither a standard finalizer name nor is it fully qualified"
                )
            )
    if ns.status.phase and ns.status.phase not in ("Active", "Terminating"):
        errs.append(
            FieldPath("status")
            .child("phase")
            .not_supported(ns.status.phase, ["Active", "Terminating"])
        )
    return errs


# ---------------------------------------------------------------- updates per kind


def _copy_field(dst: Message, src: Message, attr: str) -> None:
    """Make ``dst.attr`` what ``src.attr`` is, presence included."""
    fd = src.DESCRIPTOR.fields_by_name[attr]
    if fd.message_type is not None or fd.has_presence:
        if not src.HasField(attr):
            dst.ClearField(attr)
        elif fd.message_type is not None:
            getattr(dst, attr).CopyFrom(getattr(src, attr))
        else:
            setattr(dst, attr, getattr(src, attr))
    else:
        setattr(dst, attr, getattr(src, attr))


def _validate_stateful_set_update(new: v1.StatefulSet, old: v1.StatefulSet) -> Errors:
    munged = v1.StatefulSetSpec()
    munged.CopyFrom(new.spec)
    for attr in (
        "replicas",
        "template",
        "update_strategy",
        "min_ready_seconds",
        "ordinals",
        "revision_history_limit",
        "persistent_volume_claim_retention_policy",
    ):
        _copy_field(munged, old.spec, attr)
    if munged != old.spec:
        return [
            FieldPath("spec").forbidden(
                "updates to statefulset spec for fields other than 'replicas', 'ordinals',"
                " 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and"
                " 'minReadySeconds' are forbidden"
            )
        ]
    return []


def _validate_job_update(new: v1.Job, old: v1.Job) -> Errors:
    path = FieldPath("spec")
    errs = _immutable(new.spec.selector, old.spec.selector, path.child("selector"))
    errs.extend(_immutable(new.spec.template, old.spec.template, path.child("template")))
    errs.extend(
        _immutable(
            new.spec.completions if new.spec.HasField("completions") else None,
            old.spec.completions if old.spec.HasField("completions") else None,
            path.child("completions"),
        )
    )
    errs.extend(
        _immutable(new.spec.completion_mode, old.spec.completion_mode, path.child("completionMode"))
    )
    return errs


def _validate_secret_update(new: v1.Secret, old: v1.Secret) -> Errors:
    errs = _immutable(new.type, old.type, FieldPath("type"))
    errs.extend(_validate_immutable_data(new, old, [("data", "data")]))
    return errs


def _validate_config_map_update(new: v1.ConfigMap, old: v1.ConfigMap) -> Errors:
    return _validate_immutable_data(new, old, [("data", "data"), ("binary_data", "binaryData")])


# ---------------------------------------------------------------- dispatch

_NAME_RULES: dict[str, NameValidator] = {
    "Namespace": name_is_dns_label,
    "Service": name_is_dns1035_label,
}


def _validate_kind(obj: Message, old: Message | None) -> Errors:
    """The kind-specific create rules, plus the update rules when ``old`` is given."""
    errs: Errors = []
    if isinstance(obj, v1.Pod):
        errs = _validate_pod(obj)
        if isinstance(old, v1.Pod):
            errs.extend(validate_pod_update(obj, old))
    elif isinstance(obj, v1.ReplicaSet):
        errs = _validate_replica_set(obj)
    elif isinstance(obj, v1.Deployment):
        errs = _validate_deployment(obj)
    elif isinstance(obj, v1.DaemonSet):
        errs = _validate_daemon_set(obj)
    elif isinstance(obj, v1.StatefulSet):
        errs = _validate_stateful_set(obj)
        if isinstance(old, v1.StatefulSet):
            errs.extend(_validate_stateful_set_update(obj, old))
    elif isinstance(obj, v1.Job):
        errs = _validate_job(obj)
        if isinstance(old, v1.Job):
            errs.extend(_validate_job_update(obj, old))
    elif isinstance(obj, v1.CronJob):
        errs = _validate_cron_job(obj, old if isinstance(old, v1.CronJob) else None)
    elif isinstance(obj, v1.Service):
        errs = _validate_service(obj)
        if isinstance(old, v1.Service):
            errs.extend(_validate_service_update(obj, old))
    elif isinstance(obj, v1.Endpoints):
        errs = _validate_endpoints(obj)
    elif isinstance(obj, v1.ConfigMap):
        errs = _validate_config_map(obj)
        if isinstance(old, v1.ConfigMap):
            errs.extend(_validate_config_map_update(obj, old))
    elif isinstance(obj, v1.Secret):
        errs = _validate_secret(obj)
        if isinstance(old, v1.Secret):
            errs.extend(_validate_secret_update(obj, old))
    elif isinstance(obj, v1.Event):
        errs = _validate_event(obj)
    elif isinstance(obj, v1.Lease):
        errs = _validate_lease(obj)
    elif isinstance(obj, v1.Node):
        errs = _validate_node(obj)
    elif isinstance(obj, v1.Namespace):
        errs = _validate_namespace(obj)
    if isinstance(obj, (v1.ReplicaSet, v1.Deployment, v1.DaemonSet, v1.StatefulSet)) and (
        isinstance(old, type(obj))
    ):
        errs.extend(
            _immutable(obj.spec.selector, old.spec.selector, FieldPath("spec").child("selector"))
        )
    errs.extend(_validate_unsupported_volumes(obj, old))
    return errs


PVC_VOLUMES_UNSUPPORTED = (
    "persistentVolumeClaim volumes are not supported: this cluster serves no"
    " PersistentVolumeClaims (a StatefulSet's volumeClaimTemplates give each of its pods an"
    " emptyDir volume of the template's name)"
)


def _pod_spec_of(obj: Message | None) -> tuple[v1.PodSpec, FieldPath] | None:
    """The pod spec an object carries (its own or its template's) and its path."""
    spec = FieldPath("spec")
    if isinstance(obj, v1.Pod):
        return obj.spec, spec
    if isinstance(obj, (v1.ReplicaSet, v1.Deployment, v1.DaemonSet, v1.StatefulSet, v1.Job)):
        return obj.spec.template.spec, spec.child("template", "spec")
    if isinstance(obj, v1.CronJob):
        return (obj.spec.job_template.spec.template.spec,
                spec.child("jobTemplate", "spec", "template", "spec"))
    return None


def _validate_unsupported_volumes(obj: Message, old: Message | None) -> Errors:
    """persistentVolumeClaim volumes are refused until PersistentVolumeClaims are served; an
    object stored with one keeps it through updates."""
    found = _pod_spec_of(obj)
    if found is None:
        return []
    spec, path = found
    before = _pod_spec_of(old)
    kept = {v.name for v in before[0].volumes
            if v.HasField("persistent_volume_claim")} if before is not None else set()
    return [
        FieldError(ErrorType.NOT_SUPPORTED,
                   str(path.child("volumes").index(i).child("persistentVolumeClaim")),
                   PVC_VOLUMES_UNSUPPORTED)
        for i, vol in enumerate(spec.volumes)
        if vol.HasField("persistent_volume_claim") and vol.name not in kept
    ]


_BY_MESSAGE: dict[type[Message], ResourceType] = {r.message: r for r in RESOURCES}


def name_rule(kind: str) -> NameValidator:
    """The rule a kind's metadata.name follows (DNS-1123 subdomain unless noted)."""
    return _NAME_RULES.get(kind, name_is_dns_subdomain)


def validate(obj: Message, old: Message | None = None) -> list[FieldError]:
    """Every rule ``obj`` breaks; with ``old``, also the update rules against it.

    Raises TypeError for a message that is not a registered kind, or an ``old`` of another type.
    """
    rtype = _BY_MESSAGE.get(type(obj))
    if rtype is None:
        raise TypeError(f"no validation for {type(obj).__name__}: not a registered kind")
    if old is not None and type(old) is not type(obj):
        raise TypeError(f"cannot compare {type(obj).__name__} with {type(old).__name__}")
    meta: v1.ObjectMeta = obj.metadata  # type: ignore[attr-defined]
    errs = validate_object_meta(
        meta, rtype.namespaced, name_rule(rtype.kind), FieldPath("metadata")
    )
    if old is not None:
        old_meta: v1.ObjectMeta = old.metadata  # type: ignore[attr-defined]
        errs.extend(validate_object_meta_update(meta, old_meta, FieldPath("metadata")))
    errs.extend(_validate_kind(obj, old))
    return errs
