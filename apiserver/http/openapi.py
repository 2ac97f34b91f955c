"""The OpenAPI v2 (Swagger 2.0) document of the HTTP API, served at /openapi/v2.

kubectl reads it for three things: client-side validation of manifests (``kubectl apply``,
``create``: an unknown field or a wrong type is an error naming the field), ``kubectl
explain``, and apply's strategic merge patches (which lists merge by which key). It finds a
kind's schema by the definition's ``x-kubernetes-group-version-kind``, and whether a kind's
PATCH takes ``dryRun`` from the paths. kubectl asks for the document as protobuf (gnostic's
``openapi.v2.Document``), other clients as JSON: :func:`serialized` gives either.

Definitions are built from the protobuf descriptors of every served kind, so the schema is
exactly what the API decodes (kubelite.api.convert): properties by JSON name, int32/int64
integers, base64 ``byte`` strings, maps as ``additionalProperties``, IntOrString and Quantity
as upstream defines them, Kubernetes' fields that kubelite does not serve as properties of
any type (the server then says why they are refused), and the merge keys of
kubelite.api.strategic_merge. Names are upstream's (``io.k8s.api.core.v1.Pod``,
``io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta``), so tools that know them find them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from apiserver.http.discovery import KUBERNETES_VERSION
from kubelite.api.convert import QUANTITY_FIELDS, UNSUPPORTED_FIELDS
from kubelite.api.registry import EMBEDDED, RESOURCES, ResourceType
from kubelite.api.strategic_merge import PATCH_STRATEGIES

JSON = "application/json"
PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
"""The protobuf document's media type. kubectl and client-go ask for it with an ``@`` before
the version (below), which is no valid media type: Go's clients refuse it as a Content-Type."""
_PROTOBUF_ALIASES = (PROTOBUF, "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
GVK = "x-kubernetes-group-version-kind"

_META_MESSAGES = frozenset(
    {"ObjectMeta", "OwnerReference", "LabelSelector", "LabelSelectorRequirement", "Condition"}
)
"""Messages that are apimachinery's meta/v1 types upstream."""

_PACKAGE_OF = {"PodTemplateSpec": "io.k8s.api.core.v1"}
"""Core types that only other groups' kinds contain here (a Pod holds no PodTemplateSpec)."""

_TIME_SUFFIXES = ("_timestamp", "_time", "_at")
"""String fields named so hold metav1.Time (RFC 3339), as upstream's ``date-time`` strings."""

_KIND_DESCRIPTIONS = {
    "Namespace": "A scope for names: most kinds' objects live in one.",
    "Node": "A machine that runs pods; its kubelet keeps its status.",
    "PersistentVolume": "A piece of storage that claims can bind to.",
    "Pod": "A group of containers that run together on one node.",
    "Service": "A stable address in front of the pods its selector picks.",
    "Endpoints": "The addresses and ports behind a Service.",
    "ConfigMap": "Configuration data for pods, as keys and values.",
    "Secret": "Sensitive data for pods, as keys and base64-encoded values.",
    "Event": "A report of something that happened to an object.",
    "Lease": "A lock held by one holder at a time, renewed while held.",
    "ReplicaSet": "Keeps a number of identical pods running.",
    "Deployment": "Declares pods and rolls out changes to them through ReplicaSets.",
    "DaemonSet": "Runs one copy of a pod on each selected node.",
    "StatefulSet": "Runs pods with stable names and storage, in order.",
    "Job": "Runs pods until a number of them complete.",
    "CronJob": "Creates Jobs on a schedule.",
    "ServiceAccount": "An identity for processes that run in pods.",
    "ResourceQuota": "Limits the total resources a namespace may use.",
    "LimitRange": "Defaults and bounds for the resources of a namespace's pods and containers.",
    "Role": "Permissions within one namespace.",
    "ClusterRole": "Permissions across the cluster, or granted per namespace by RoleBindings.",
    "RoleBinding": "Grants a Role's or ClusterRole's permissions in one namespace.",
    "ClusterRoleBinding": "Grants a ClusterRole's permissions across the cluster.",
    "CertificateSigningRequest": "A request for a certificate, approved and signed in turn.",
    "SubjectAccessReview": "Asks whether a user may perform an action.",
    "SelfSubjectAccessReview": "Asks whether the requester may perform an action.",
    "TokenRequest": "Asks for a token of a ServiceAccount.",
    "PersistentVolumeClaim": "A request for storage.",
}

_FIELD_DESCRIPTIONS = {
    "apiVersion": "The versioned schema of this representation of the object: the server"
                  " converts to and from it.",
    "kind": "The kind of object this is, in CamelCase.",
    "metadata": "The object's metadata: name, namespace, labels, annotations, owners and the"
                " fields the server keeps.",
    "spec": "The desired state of the object.",
    "status": "The observed state of the object, written by the system through the status"
              " subresource.",
}

_SCALE = "io.k8s.api.autoscaling.v1"


# ---------------------------------------------------------------------------- entry points


@functools.cache
def document() -> dict[str, Any]:
    """The whole document, built once per process; callers must not change it."""
    definitions = _Definitions()
    for rtype in _kinds():
        definitions.add_message(_descriptor(rtype))
    for rtype in RESOURCES:
        if rtype.stored:
            definitions.add_list(rtype)
    definitions.schemas.update(_meta_definitions())
    return {
        "swagger": "2.0",
        "info": {"title": "kubelite", "version": KUBERNETES_VERSION},
        "paths": _paths(definitions),
        "definitions": dict(sorted(definitions.schemas.items())),
    }


@functools.cache
def document_json() -> bytes:
    return json.dumps(document(), separators=(",", ":")).encode()


@functools.cache
def document_protobuf() -> bytes:
    """The document as gnostic's ``openapi.v2.Document`` protobuf, which kubectl reads."""
    return _encode_document(document())


def serialized(accept: str) -> tuple[bytes, str]:
    """The body and content type answering a request with this Accept header: protobuf when
    the client asks for it (kubectl does), JSON otherwise."""
    media_types = {part.split(";")[0].strip() for part in accept.split(",")}
    if media_types & set(_PROTOBUF_ALIASES):
        return document_protobuf(), PROTOBUF
    return document_json(), JSON


# ---------------------------------------------------------------------------- definitions


def _kinds() -> list[ResourceType]:
    # Core kinds first: a type that core and another group share is core's upstream.
    kinds = [*RESOURCES, *EMBEDDED]
    return [r for r in kinds if not r.group] + [r for r in kinds if r.group]


def package(group: str, version: str = "v1") -> str:
    """Upstream's Go package of a group's types, as definition names spell it."""
    return f"io.k8s.api.{group.split('.')[0] if group else 'core'}.{version}"


def _descriptor(rtype: ResourceType) -> Descriptor:
    return cast(Descriptor, rtype.message.DESCRIPTOR)


def _version(rtype: ResourceType) -> str:
    return rtype.api_version.rpartition("/")[2]


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


class _Definitions:
    """The definitions of the messages reached from the kinds, each named for its package."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}
        self._names: dict[str, str] = {}
        self._kinds = {r.message.DESCRIPTOR.full_name: r for r in (*RESOURCES, *EMBEDDED)}

    def ref(self, desc: Descriptor) -> str:
        return f"#/definitions/{self._names[desc.full_name]}"

    def add_message(self, desc: Descriptor, owner_package: str = "") -> None:
        if desc.full_name in self._names:
            return
        rtype = self._kinds.get(desc.full_name)
        if desc.name in _META_MESSAGES:
            pkg = META
        elif desc.name in _PACKAGE_OF:
            pkg = _PACKAGE_OF[desc.name]
        elif rtype is not None:
            pkg = package(rtype.group, _version(rtype))
        else:
            pkg = owner_package
        name = f"{pkg}.{desc.name}"
        self._names[desc.full_name] = name
        for field in desc.fields:
            element = _element(field)
            if element.message_type is not None and not _is_int_or_string(element):
                self.add_message(element.message_type, pkg)
        self.schemas[name] = self._message_schema(desc, rtype)

    def _message_schema(self, desc: Descriptor, rtype: ResourceType | None) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        if rtype is not None:
            properties["apiVersion"] = {"type": "string"}
            properties["kind"] = {"type": "string"}
        for field in desc.fields:
            properties[field.json_name] = self._field_schema(desc, field)
        for name, why in UNSUPPORTED_FIELDS.get(desc.full_name, {}).items():
            # Any value passes kubectl; the server answers why the field is refused.
            properties.setdefault(name, {"description": why})
        if rtype is not None:
            for name, text in _FIELD_DESCRIPTIONS.items():
                if name in properties:
                    properties[name]["description"] = text
        schema: dict[str, Any] = {"type": "object",
                                  "properties": dict(sorted(properties.items()))}
        if rtype is not None:
            schema["description"] = _KIND_DESCRIPTIONS.get(rtype.kind, "")
            schema[GVK] = [_gvk(rtype.group, _version(rtype), rtype.kind)]
        return schema

    def _field_schema(self, owner: Descriptor, field: FieldDescriptor) -> dict[str, Any]:
        quantity = field.full_name in QUANTITY_FIELDS
        element = _element(field)
        if element is not field:  # a map
            return {"type": "object",
                    "additionalProperties": self._value_schema(element, quantity)}
        value = self._value_schema(field, quantity)
        if not field.is_repeated:
            return value
        schema: dict[str, Any] = {"type": "array", "items": value}
        strategy = PATCH_STRATEGIES.get((owner.name, field.json_name))
        if strategy is not None:
            kinds = (["merge"] if strategy.merge else []) + (
                ["retainKeys"] if strategy.retain_keys else [])
            if strategy.merge_key:
                schema["x-kubernetes-patch-merge-key"] = strategy.merge_key
            schema["x-kubernetes-patch-strategy"] = ",".join(kinds)
        return schema

    def _value_schema(self, field: FieldDescriptor, quantity: bool) -> dict[str, Any]:
        if field.message_type is not None:
            if _is_int_or_string(field):
                return {"$ref": f"#/definitions/{INT_OR_STRING}"}
            return {"$ref": self.ref(field.message_type)}
        if quantity:
            return {"$ref": f"#/definitions/{QUANTITY}"}
        return _scalar_schema(field)

    def add_list(self, rtype: ResourceType) -> None:
        kind = f"{rtype.kind}List"
        name = f"{package(rtype.group, _version(rtype))}.{kind}"
        self.schemas[name] = {
            "description": f"A list of {rtype.kind} objects.",
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string", "description": _FIELD_DESCRIPTIONS["apiVersion"]},
                "items": {"type": "array", "items": {"$ref": self.ref(_descriptor(rtype))}},
                "kind": {"type": "string", "description": _FIELD_DESCRIPTIONS["kind"]},
                "metadata": {"$ref": f"#/definitions/{META}.ListMeta"},
            },
            GVK: [_gvk(rtype.group, _version(rtype), kind)],
        }


def _element(field: FieldDescriptor) -> FieldDescriptor:
    """A map's value field; the field itself otherwise."""
    message_type = field.message_type
    if field.is_repeated and message_type is not None and message_type.GetOptions().map_entry:
        return message_type.fields_by_name["value"]
    return field


def _is_int_or_string(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.name == "IntOrString"


_INTEGER_FORMATS = {
    FieldDescriptor.CPPTYPE_INT32: "int32",
    FieldDescriptor.CPPTYPE_UINT32: "int64",
    FieldDescriptor.CPPTYPE_INT64: "int64",
    FieldDescriptor.CPPTYPE_UINT64: "int64",
}


def _scalar_schema(field: FieldDescriptor) -> dict[str, Any]:
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        if field.name.endswith(_TIME_SUFFIXES):
            return {"type": "string", "format": "date-time"}
        return {"type": "string"}
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return {"type": "boolean"}
    if cpp in _INTEGER_FORMATS:
        return {"type": "integer", "format": _INTEGER_FORMATS[cpp]}
    if cpp in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return {"type": "number", "format": "double"}
    raise TypeError(f"no OpenAPI type for {field.full_name}")  # enums: none in the API


def _meta_definitions() -> dict[str, dict[str, Any]]:
    """apimachinery's types that the paths answer with, and the ones kinds refer to."""
    string = {"type": "string"}
    strings = {"type": "array", "items": {"type": "string"}}
    integer = {"type": "integer", "format": "int32"}
    return {
        INT_OR_STRING: {
            "description": "An integer or a string (a port number or name, a count or a"
                           " percentage).",
            "type": "string",
            "format": "int-or-string",
        },
        QUANTITY: {
            "description": "A fixed-point amount with an optional suffix: 100m, 1.5, 64Mi,"
                           " 2Gi, 1e3. A JSON number is accepted too.",
            "type": "string",
        },
        f"{META}.ListMeta": {
            "description": "The metadata of a list: the resourceVersion it was read at and the"
                           " continue token of its next page.",
            "type": "object",
            "properties": {"continue": string, "remainingItemCount": {
                "type": "integer", "format": "int64"}, "resourceVersion": string,
                "selfLink": string},
        },
        f"{META}.Status": {
            "description": "The outcome of a request that returns no object, and every error.",
            "type": "object",
            "properties": {
                "apiVersion": string, "code": integer,
                "details": {"$ref": f"#/definitions/{META}.StatusDetails"}, "kind": string,
                "message": string, "metadata": {"$ref": f"#/definitions/{META}.ListMeta"},
                "reason": string, "status": string,
            },
            GVK: [_gvk("", "v1", "Status")],
        },
        f"{META}.StatusDetails": {
            "type": "object",
            "properties": {
                "causes": {"type": "array",
                           "items": {"$ref": f"#/definitions/{META}.StatusCause"}},
                "group": string, "kind": string, "name": string,
                "retryAfterSeconds": integer, "uid": string,
            },
        },
        f"{META}.StatusCause": {
            "type": "object",
            "properties": {"field": string, "message": string, "reason": string},
        },
        f"{META}.Preconditions": {
            "type": "object",
            "properties": {"resourceVersion": string, "uid": string},
        },
        f"{META}.DeleteOptions": {
            "description": "Options of a delete: grace period, preconditions, propagation.",
            "type": "object",
            "properties": {
                "apiVersion": string, "dryRun": strings,
                "gracePeriodSeconds": {"type": "integer", "format": "int64"}, "kind": string,
                "orphanDependents": {"type": "boolean"},
                "preconditions": {"$ref": f"#/definitions/{META}.Preconditions"},
                "propagationPolicy": string,
            },
            GVK: [_gvk("", "v1", "DeleteOptions")],
        },
        f"{META}.Patch": {
            "description": "A JSON patch, merge patch or strategic merge patch.",
            "type": "object",
        },
        f"{META}.WatchEvent": {
            "type": "object",
            "required": ["type", "object"],
            "properties": {"object": {"description": "The object, or a Status for ERROR."},
                           "type": string},
            GVK: [_gvk("", "v1", "WatchEvent")],
        },
        f"{_SCALE}.Scale": {
            "description": "The replicas of a scalable object (the scale subresource).",
            "type": "object",
            "properties": {
                "apiVersion": string, "kind": string,
                "metadata": {"$ref": f"#/definitions/{META}.ObjectMeta"},
                "spec": {"$ref": f"#/definitions/{_SCALE}.ScaleSpec"},
                "status": {"$ref": f"#/definitions/{_SCALE}.ScaleStatus"},
            },
            GVK: [_gvk("autoscaling", "v1", "Scale")],
        },
        f"{_SCALE}.ScaleSpec": {"type": "object", "properties": {"replicas": integer}},
        f"{_SCALE}.ScaleStatus": {
            "type": "object",
            "required": ["replicas"],
            "properties": {"replicas": integer, "selector": string},
        },
    }


# ---------------------------------------------------------------------------- paths


def _query(name: str, description: str, type_: str = "string",
           unique: bool = False) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "type": type_,
                             "description": description}
    if unique:
        param["uniqueItems"] = True
    return param


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "type": "string",
            "description": description, "uniqueItems": True}


_DRY_RUN = _query("dryRun", "When present (All), the change is checked and not stored.",
                  unique=True)
_FIELD_MANAGER = _query("fieldManager", "The name of the actor making the change.",
                        unique=True)
_PRETTY = _query("pretty", "If 'true', the output is indented.", unique=True)
_LIST_PARAMS = (
    _query("labelSelector", "Only objects whose labels match.", unique=True),
    _query("fieldSelector", "Only objects whose fields match.", unique=True),
    _query("limit", "The most objects to return; continue for more.", "integer", True),
    _query("continue", "The token of the next page, from the previous list.", unique=True),
    _query("resourceVersion", "Where a list or watch starts.", unique=True),
    _query("watch", "Watch for changes instead of listing.", "boolean", True),
    _query("allowWatchBookmarks", "Ask for BOOKMARK events in a watch.", "boolean", True),
    _query("timeoutSeconds", "How long a list or watch may last.", "integer", True),
)
_MIME = ["application/json", "application/yaml"]
_PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json",
                "application/strategic-merge-patch+json"]


def _tag(rtype: ResourceType) -> tuple[str, str]:
    """(operation id infix, tag): ``RbacAuthorizationV1``, ``rbacAuthorization_v1``."""
    group = rtype.group.removesuffix(".k8s.io") if rtype.group else "core"
    words = group.split(".")
    camel = words[0] + "".join(w.capitalize() for w in words[1:])
    version = _version(rtype)
    return camel[0].upper() + camel[1:] + version.capitalize(), f"{camel}_{version}"


def _paths(definitions: _Definitions) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for rtype in RESOURCES:
        paths.update(_kind_paths(rtype, definitions))
    return dict(sorted(paths.items()))


def _kind_paths(rtype: ResourceType, definitions: _Definitions) -> Iterator[tuple[str, Any]]:
    prefix = f"/apis/{rtype.api_version}" if rtype.group else "/api/v1"
    scope = "/namespaces/{namespace}" if rtype.namespaced else ""
    collection = f"{prefix}{scope}/{rtype.plural}"
    item = f"{collection}/{{name}}"
    infix, tag = _tag(rtype)
    namespaced = "Namespaced" if rtype.namespaced else ""
    gvk = _gvk(rtype.group, _version(rtype), rtype.kind)
    ref = {"$ref": definitions.ref(_descriptor(rtype))}
    list_ref = {"$ref": f"#/definitions/{package(rtype.group, _version(rtype))}.{rtype.kind}List"}
    status_ref = {"$ref": f"#/definitions/{META}.Status"}
    scope_params = ([_path_param("namespace", "The object's namespace.")]
                    if rtype.namespaced else [])

    def operation(verb: str, action: str, description: str, responses: dict[str, Any],
                  params: tuple[dict[str, Any], ...] = (), body: dict[str, Any] | None = None,
                  consumes: list[str] | None = None) -> dict[str, Any]:
        parameters = list(params)
        if body is not None:
            parameters.insert(0, {"name": "body", "in": "body", "required": True,
                                  "schema": body})
        op: dict[str, Any] = {
            "description": description,
            "consumes": consumes or ["*/*"],
            "produces": _MIME,
            "schemes": ["https"],
            "tags": [tag],
            "operationId": f"{verb}{infix}{namespaced}{rtype.kind}",
            "responses": {**{code: {"description": text, "schema": schema}
                             for code, (text, schema) in responses.items()},
                          "401": {"description": "Unauthorized"}},
            "x-kubernetes-action": action,
            GVK: gvk,
        }
        if parameters:
            op["parameters"] = parameters
        return op

    created = {"200": ("OK", ref), "201": ("Created", ref), "202": ("Accepted", ref)}
    if not rtype.stored:
        yield collection, {
            "post": operation("create", "post", f"create a {rtype.kind}", created,
                              (_DRY_RUN, _FIELD_MANAGER), ref),
            "parameters": [*scope_params, _PRETTY],
        }
        return
    yield collection, {
        "get": operation("list", "list", f"list or watch objects of kind {rtype.kind}",
                         {"200": ("OK", list_ref)}, _LIST_PARAMS),
        "post": operation("create", "post", f"create a {rtype.kind}", created,
                          (_DRY_RUN, _FIELD_MANAGER), ref),
        "parameters": [*scope_params, _PRETTY],
    }
    item_params = [_path_param("name", f"The name of the {rtype.kind}."), *scope_params,
                   _PRETTY]
    yield item, {
        "get": operation("read", "get", f"read the specified {rtype.kind}",
                         {"200": ("OK", ref)}),
        "put": operation("replace", "put", f"replace the specified {rtype.kind}",
                         {"200": ("OK", ref), "201": ("Created", ref)},
                         (_DRY_RUN, _FIELD_MANAGER), ref),
        "patch": operation("patch", "patch", f"partially update the specified {rtype.kind}",
                           {"200": ("OK", ref), "201": ("Created", ref)},
                           (_DRY_RUN, _FIELD_MANAGER), {"$ref": f"#/definitions/{META}.Patch"},
                           _PATCH_TYPES),
        "delete": operation("delete", "delete", f"delete a {rtype.kind}",
                            {"200": ("OK", status_ref), "202": ("Accepted", status_ref)},
                            (_DRY_RUN,
                             _query("gracePeriodSeconds", "Seconds before the object is"
                                    " deleted; 0 deletes at once.", "integer", True),
                             _query("propagationPolicy", "Orphan, Background or Foreground:"
                                    " what happens to dependents.", unique=True)),
                            {"$ref": f"#/definitions/{META}.DeleteOptions"}),
        "parameters": item_params,
    }
    if rtype.namespaced:
        yield f"{prefix}/{rtype.plural}", {
            "get": {**operation("list", "list", f"list or watch objects of kind {rtype.kind}"
                                " in every namespace", {"200": ("OK", list_ref)}, _LIST_PARAMS),
                    "operationId": f"list{infix}{rtype.kind}ForAllNamespaces"},
            "parameters": [_PRETTY],
        }
    if rtype.has_status:
        yield f"{item}/status", {
            "get": {**operation("read", "get", f"read status of the specified {rtype.kind}",
                                {"200": ("OK", ref)}),
                    "operationId": f"read{infix}{namespaced}{rtype.kind}Status"},
            "put": {**operation("replace", "put", f"replace status of the specified"
                                f" {rtype.kind}", {"200": ("OK", ref)},
                                (_DRY_RUN, _FIELD_MANAGER), ref),
                    "operationId": f"replace{infix}{namespaced}{rtype.kind}Status"},
            "patch": {**operation("patch", "patch", f"partially update status of the"
                                  f" specified {rtype.kind}", {"200": ("OK", ref)},
                                  (_DRY_RUN, _FIELD_MANAGER),
                                  {"$ref": f"#/definitions/{META}.Patch"}, _PATCH_TYPES),
                      "operationId": f"patch{infix}{namespaced}{rtype.kind}Status"},
            "parameters": item_params,
        }


# ---------------------------------------------------------------------------- protobuf
#
# gnostic's openapi.v2 messages (github.com/google/gnostic-models/openapiv2/OpenAPIv2.proto),
# written by hand for the parts this document uses: the field numbers below are that file's.
# Vendor extensions carry their value as YAML; JSON is YAML, so json.dumps writes it.


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _str(number: int, value: str) -> bytes:
    return _len(number, value.encode()) if value else b""


def _bool(number: int, value: bool) -> bytes:
    return _varint(number << 3) + b"\x01" if value else b""


def _strings(number: int, values: list[str]) -> bytes:
    return b"".join(_len(number, v.encode()) for v in values)


def _named(number: int, name: str, value: bytes) -> bytes:
    """A gnostic Named* message (name = 1, value = 2) as field ``number``."""
    return _len(number, _str(1, name) + _len(2, value))


def _any(value: Any) -> bytes:
    return _str(2, json.dumps(value))  # Any.yaml


def _extensions(number: int, obj: dict[str, Any]) -> bytes:
    return b"".join(_named(number, k, _any(v)) for k, v in obj.items() if k.startswith("x-"))


def _check_keys(what: str, obj: dict[str, Any], known: set[str]) -> None:
    unknown = {k for k in obj if not k.startswith("x-")} - known
    if unknown:
        raise ValueError(f"{what}: no protobuf encoding for {sorted(unknown)}")


_SCHEMA_KEYS = {"$ref", "format", "title", "description", "required", "enum",
                "additionalProperties", "type", "items", "allOf", "properties", "readOnly"}


def _schema(schema: dict[str, Any]) -> bytes:
    _check_keys("schema", schema, _SCHEMA_KEYS)
    out = [_str(1, schema.get("$ref", "")), _str(2, schema.get("format", "")),
           _str(3, schema.get("title", "")), _str(4, schema.get("description", "")),
           _strings(19, schema.get("required", [])),
           b"".join(_len(20, _any(v)) for v in schema.get("enum", []))]
    additional = schema.get("additionalProperties")
    if isinstance(additional, bool):
        out.append(_len(21, _varint(2 << 3) + _varint(int(additional))))
    elif additional is not None:
        out.append(_len(21, _len(1, _schema(additional))))
    if "type" in schema:
        out.append(_len(22, _strings(1, [schema["type"]])))
    if "items" in schema:
        out.append(_len(23, _len(1, _schema(schema["items"]))))
    out += [_len(24, _schema(s)) for s in schema.get("allOf", [])]
    if "properties" in schema:
        out.append(_len(25, b"".join(_named(1, k, _schema(v))
                                     for k, v in schema["properties"].items())))
    out += [_bool(27, schema.get("readOnly", False)), _extensions(31, schema)]
    return b"".join(out)


_PARAMETER_KEYS = {"name", "in", "description", "required", "type", "format", "uniqueItems",
                   "schema"}


def _parameter(param: dict[str, Any]) -> bytes:
    """A ParametersItem holding a Parameter."""
    _check_keys("parameter", param, _PARAMETER_KEYS)
    where = param["in"]
    if where == "body":
        body = (_str(1, param.get("description", "")) + _str(2, param["name"]) + _str(3, where)
                + _bool(4, param.get("required", False)) + _len(5, _schema(param["schema"])))
        return _len(1, _len(1, body))
    common = (_bool(1, param.get("required", False)) + _str(2, where)
              + _str(3, param.get("description", "")) + _str(4, param["name"]))
    if where == "query":
        # QueryParameterSubSchema: allowEmptyValue 5, type 6, format 7, uniqueItems 20.
        sub = common + _str(6, param.get("type", "")) + _str(7, param.get("format", "")) + (
            _bool(20, param.get("uniqueItems", False)))
        number = 3
    elif where == "path":
        # PathParameterSubSchema: type 5, format 6, uniqueItems 19.
        sub = common + _str(5, param.get("type", "")) + _str(6, param.get("format", "")) + (
            _bool(19, param.get("uniqueItems", False)))
        number = 4
    else:
        raise ValueError(f"parameter {param['name']}: no protobuf encoding for in={where}")
    return _len(1, _len(2, _len(number, sub)))


_OPERATION_KEYS = {"tags", "summary", "description", "operationId", "produces", "consumes",
                   "parameters", "responses", "schemes", "deprecated"}


def _operation(op: dict[str, Any]) -> bytes:
    _check_keys("operation", op, _OPERATION_KEYS)
    responses = b""
    for code, response in op.get("responses", {}).items():
        _check_keys("response", response, {"description", "schema"})
        body = _str(1, response.get("description", ""))
        if "schema" in response:
            body += _len(2, _len(1, _schema(response["schema"])))  # SchemaItem.schema
        responses += _named(1, code, _len(1, body))  # ResponseValue.response
    return b"".join([
        _strings(1, op.get("tags", [])), _str(2, op.get("summary", "")),
        _str(3, op.get("description", "")), _str(5, op.get("operationId", "")),
        _strings(6, op.get("produces", [])), _strings(7, op.get("consumes", [])),
        b"".join(_len(8, _parameter(p)) for p in op.get("parameters", [])),
        _len(9, responses), _strings(10, op.get("schemes", [])),
        _bool(11, op.get("deprecated", False)), _extensions(13, op),
    ])


_PATH_ITEM_FIELDS: dict[str, int] = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6,
                                     "head": 7, "patch": 8}


def _path_item(item: dict[str, Any]) -> bytes:
    _check_keys("path", item, {*_PATH_ITEM_FIELDS, "parameters"})
    out = [_len(number, _operation(item[verb])) for verb, number in _PATH_ITEM_FIELDS.items()
           if verb in item]
    out += [_len(9, _parameter(p)) for p in item.get("parameters", [])]
    out.append(_extensions(10, item))
    return b"".join(out)


def _encode_document(doc: dict[str, Any]) -> bytes:
    _check_keys("document", doc, {"swagger", "info", "paths", "definitions"})
    info = doc["info"]
    return b"".join([
        _str(1, doc["swagger"]),
        _len(2, _str(1, info.get("title", "")) + _str(2, info.get("version", ""))
             + _str(3, info.get("description", ""))),
        _len(8, b"".join(_named(2, path, _path_item(item))
                         for path, item in doc["paths"].items())),
        _len(9, b"".join(_named(1, name, _schema(schema))
                         for name, schema in doc["definitions"].items())),
    ])
