"""The verbs of the HTTP API on resources: the JSON in, the Api's answer, the JSON out.

Each handler is the HTTP twin of a gRPC servicer method (apiserver.servicer): the same
authorization attributes, the same Api call made as the request's user (``acting_as``), so
that both faces answer alike. What only HTTP has lives here too: content negotiation (objects,
``meta.k8s.io`` Tables and PartialObjectMetadata), DeleteOptions, dry run, the Binding and
Scale objects, collection deletes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import jsonpatch
import structlog
import yaml
from aiohttp import web
from google.protobuf.message import Message
from multidict import MultiMapping

from apiserver.api import Api
from apiserver.authz import review
from apiserver.http import streams, tables, watch
from apiserver.http.routes import (
    STREAM_SUBRESOURCES,
    ResourceRequest,
    authorization_verb,
    is_true,
)
from apiserver.http.status import (
    JSON,
    NotAcceptable,
    UnsupportedMediaType,
    json_response,
    success,
)
from apiserver.kubelet_proxy import KubeletProxy
from apiserver.request_context import acting_as
from apiserver.security import Security
from apiserver.servicer import ApiServicer
from apiserver.storage import conflict
from kubelite.api import convert, labels, patches
from kubelite.api import meta as m
from kubelite.api.errors import (
    BadRequest,
    Conflict,
    Invalid,
    NotFound,
    RequestEntityTooLarge,
)
from kubelite.api.field_errors import FieldPath
from kubelite.api.registry import EMBEDDED, ResourceType
from kubelite.api.strategies.access import set_requester
from kubelite.auth.user import UserInfo
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

META_GROUP = "meta.k8s.io"
TOKEN_REQUESTS = next(r for r in EMBEDDED if r.kind == "TokenRequest")
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json")
APPLY_PATCH = "application/apply-patch+yaml"
SCALE_VERSION = "autoscaling/v1"
CONFLICT_RETRIES = 20
OBJECT_NAME: ContextVar[str] = ContextVar("kubelite_http_object_name", default="")
"""The name of the request's object when its path names none (a create), for the Status
of its failure (each request is served in its own task, with its own value)."""


# ---------------------------------------------------------------- content negotiation


@dataclass(frozen=True)
class Output:
    """The representation a client accepts (its Accept header)."""

    form: str = "object"
    """object (the kind's own JSON), Table, or PartialObjectMetadata."""
    version: str = "v1"
    """meta.k8s.io's version of a Table or PartialObjectMetadata (v1 or v1beta1)."""
    include_object: str = "Metadata"
    """A Table's includeObject: None, Metadata or Object."""


def _media_type(text: str) -> tuple[str, dict[str, str]]:
    media, *raw = (p.strip() for p in text.split(";"))
    params = {}
    for param in raw:
        key, _, value = param.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return media.lower(), params


def negotiate(accept: str, query: Mapping[str, str]) -> Output:
    """The first representation of ``accept`` this server produces (NotAcceptable if none):
    JSON, or JSON as a meta.k8s.io Table or PartialObjectMetadata(List)."""
    include_object = query.get("includeObject", "Metadata")
    if include_object not in ("None", "Metadata", "Object"):
        raise BadRequest(f'includeObject: Unsupported value: "{include_object}": supported'
                         ' values: "None", "Metadata", "Object"')
    if not accept.strip():
        return Output()
    for text in accept.split(","):
        media, params = _media_type(text)
        if media not in ("application/json", "application/*", "*/*"):
            continue
        as_ = params.get("as")
        if as_ is None:
            return Output()
        if params.get("g") != META_GROUP or params.get("v") not in ("v1", "v1beta1"):
            continue
        if as_ == "Table":
            return Output("Table", params["v"], include_object)
        if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            return Output("PartialObjectMetadata", params["v"])
    raise NotAcceptable(f"only the following media types are accepted: {JSON}, {JSON};as=Table;"
                        f"g={META_GROUP};v=v1, {JSON};as=PartialObjectMetadata;"
                        f"g={META_GROUP};v=v1")


def render(rtype: ResourceType, obj: Message, output: Output) -> dict[str, Any]:
    """One object as the client asked for it."""
    if output.form == "Table":
        meta = {"resourceVersion": m.meta(obj).resource_version}
        result = tables.table(rtype, [obj], list_meta=meta,
                              include_object=output.include_object)
        result["apiVersion"] = f"{META_GROUP}/{output.version}"
        return result
    data = convert.to_dict(rtype, obj)
    if output.form == "PartialObjectMetadata":
        return {"kind": "PartialObjectMetadata", "apiVersion": f"{META_GROUP}/{output.version}",
                "metadata": data.get("metadata", {})}
    return data


def render_list(rtype: ResourceType, items: list[Message], list_meta: dict[str, Any],
                output: Output) -> dict[str, Any]:
    """A list (``PodList``: apiVersion, kind, metadata with resourceVersion and continue)."""
    if output.form == "Table":
        result = tables.table(rtype, items, list_meta=list_meta,
                              include_object=output.include_object)
        result["apiVersion"] = f"{META_GROUP}/{output.version}"
        return result
    if output.form == "PartialObjectMetadata":
        return {"kind": "PartialObjectMetadataList",
                "apiVersion": f"{META_GROUP}/{output.version}", "metadata": list_meta,
                "items": [render(rtype, o, output) for o in items]}
    return {"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version, "metadata": list_meta,
            "items": [convert.to_dict(rtype, o) for o in items]}


# ---------------------------------------------------------------- request bodies


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request's body; RequestEntityTooLarge past ``limit`` bytes, before reading it
    when the client says its length."""
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge(f"Request entity too large: limit is {limit}")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestEntityTooLarge(f"Request entity too large: limit is {limit}") from None


def decode_json(request: web.Request, body: bytes) -> Any:
    """The document of a JSON (or YAML) body."""
    media, _ = _media_type(request.headers.get("Content-Type", JSON))
    if media in ("application/yaml", "application/x-yaml", "text/yaml"):
        try:
            return yaml.safe_load(body)
        except yaml.YAMLError as e:
            raise BadRequest(f"the body of the request is not valid YAML: {e}") from None
    if media not in (JSON, "*/*", "") and not media.endswith("+json"):
        raise UnsupportedMediaType(f'the body of the request was in an unknown format -'
                                   f' accepted media types include: {JSON}, application/yaml'
                                   f' (not "{media}")')
    try:
        return json.loads(body)
    except ValueError as e:
        raise BadRequest(f"the body of the request is not valid JSON: {e}") from None


def decode_object(rtype: ResourceType, data: Any) -> Message:
    """The object of a create or update: its apiVersion and kind default to the URL's
    resource (as kube-apiserver decodes into the endpoint's kind) and must match it."""
    if not isinstance(data, dict):
        raise BadRequest(f"the body of the request must be a JSON object, not"
                         f" {type(data).__name__}")
    data = {"apiVersion": rtype.api_version, "kind": rtype.kind, **data}
    if data["kind"] != rtype.kind or data["apiVersion"] != rtype.api_version:
        raise BadRequest(f'the API version in the data ({data["apiVersion"]}) and kind'
                         f' ({data["kind"]}) do not match the resource: expected'
                         f" {rtype.api_version} {rtype.kind}")
    try:
        _, obj = convert.from_dict(data)
    except convert.ConversionError as e:
        raise e.to_api_error() from e
    return obj


def decode_message(message: type[Message], what: str, data: Any) -> Message:
    """A body of a kind that is not stored (TokenRequest), without its apiVersion/kind."""
    if not isinstance(data, dict):
        raise BadRequest(f"the body of the request must be a JSON object ({what})")
    body = {k: v for k, v in data.items() if k not in ("apiVersion", "kind")}
    try:
        return convert.message_from_dict(message, body)
    except convert.ConversionError as e:
        raise e.to_api_error() from e


def dry_run(query: MultiMapping[str], options: Mapping[str, Any] | None = None) -> bool:
    """Whether ``dryRun=All`` was asked (in the query or in DeleteOptions)."""
    values: list[Any] = list(query.getall("dryRun", []))
    if options is not None:
        given = options.get("dryRun") or []
        if not isinstance(given, list):
            raise BadRequest("dryRun: Invalid type: expected a list of strings")
        values += given
    for value in values:
        if value != "All":
            raise BadRequest(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    return bool(values)


def _int_param(query: Mapping[str, str], name: str) -> int | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f'{name}: Invalid value: "{text}": must be an integer') from None


# ---------------------------------------------------------------- scale


def scale_of(rtype: ResourceType, obj: Message) -> dict[str, Any]:
    """The autoscaling/v1 Scale of a Deployment, ReplicaSet or StatefulSet."""
    meta = m.meta(obj)
    spec: Any = obj.spec  # type: ignore[attr-defined]
    status: Any = obj.status  # type: ignore[attr-defined]
    try:
        selector = str(labels.selector_from_label_selector(spec.selector))
    except ValueError:
        selector = ""
    metadata = {k: v for k, v in (
        ("name", meta.name), ("namespace", meta.namespace), ("uid", meta.uid),
        ("resourceVersion", meta.resource_version),
        ("creationTimestamp", meta.creation_timestamp)) if v}
    return {"kind": "Scale", "apiVersion": SCALE_VERSION, "metadata": metadata,
            "spec": {"replicas": spec.replicas},
            "status": {"replicas": status.replicas, "selector": selector}}


def _scale_replicas(data: Any, name: str) -> tuple[int, str]:
    """spec.replicas and metadata.resourceVersion of a Scale; Invalid/BadRequest naming the
    field."""
    if not isinstance(data, dict):
        raise BadRequest("the body of the request must be a JSON object (Scale)")
    kind, version = data.get("kind", "Scale"), data.get("apiVersion", SCALE_VERSION)
    if kind != "Scale" or version not in (SCALE_VERSION, "apps/v1"):
        raise BadRequest(f"the body must be an {SCALE_VERSION} Scale, not {version} {kind}")
    meta = data.get("metadata") or {}
    spec = data.get("spec") or {}
    if not isinstance(meta, dict) or not isinstance(spec, dict):
        raise BadRequest("Scale: metadata and spec must be objects")
    replicas = spec.get("replicas", 0)
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        raise Invalid.from_field_errors("Scale", name, [
            FieldPath("spec.replicas").type_invalid(replicas, "expected integer")])
    if replicas < 0:
        raise Invalid.from_field_errors("Scale", name, [
            FieldPath("spec.replicas").invalid(replicas, "must be greater than or equal to 0")])
    scale_name = meta.get("name", name)
    if scale_name != name:
        raise BadRequest(f"the name of the object ({scale_name}) does not match the name on"
                         f" the URL ({name})")
    return replicas, str(meta.get("resourceVersion") or "")


# ---------------------------------------------------------------- the verbs


Handler = Callable[[web.Request, ResourceRequest, UserInfo | None], Awaitable[web.StreamResponse]]


class Handlers:
    """The resource verbs over one Api, as ``security`` allows them."""

    def __init__(self, api: Api, security: Security, servicer: ApiServicer,
                 kubelets: KubeletProxy, watches: watch.Watches) -> None:
        self.api = api
        self.security = security
        self.servicer = servicer
        self.kubelets = kubelets
        self.watches = watches

    @property
    def max_body(self) -> int:
        return self.api.settings.max_request_bytes

    def authorize(self, user: UserInfo | None, request: ResourceRequest) -> None:
        """Forbidden unless ``user`` may: the verb and subresource on the resource, in the
        path's namespace, naming the path's object."""
        rtype = request.rtype
        self.security.check(user, authorization_verb(request), rtype.plural,
                            api_group=rtype.group, subresource=request.subresource,
                            namespace=request.namespace if rtype.namespaced else "",
                            name=request.name)

    async def serve(self, http: web.Request, request: ResourceRequest, user: UserInfo | None
                    ) -> web.StreamResponse:
        if request.subresource in STREAM_SUBRESOURCES:
            return await self._stream(http, request, user)
        self.authorize(user, request)
        handler: Handler = {
            "get": self.get, "list": self.list, "watch": self.watch, "create": self.create,
            "update": self.update, "patch": self.patch, "delete": self.delete,
            "deletecollection": self.delete_collection,
        }[request.verb]
        return await handler(http, request, user)

    # ------------------------------------------------------------ reads

    async def get(self, http: web.Request, request: ResourceRequest, user: UserInfo | None
                  ) -> web.StreamResponse:
        rtype = request.rtype
        output = negotiate(http.headers.get("Accept", ""), http.query)
        obj = await self.api.get(rtype, request.namespace, request.name)
        if request.subresource == "scale":
            return json_response(scale_of(rtype, obj))
        return json_response(render(rtype, obj, output))

    async def list(self, http: web.Request, request: ResourceRequest, user: UserInfo | None
                   ) -> web.StreamResponse:
        rtype, query = request.rtype, http.query
        output = negotiate(http.headers.get("Accept", ""), query)
        limit = _int_param(query, "limit") or 0
        version = query.get("resourceVersion", "")
        check_resource_version_match(query)
        if version not in ("", "0") and not query.get("continue"):
            # Not older than the version asked: the list reads etcd's latest, once the
            # server has seen that version at all (TooLargeResourceVersion after a while).
            revision = _int_param(query, "resourceVersion") or 0
            await self.api.caches[rtype.plural].wait_for_revision(revision)
        items, revision, token = await self.api.list(
            rtype, request.namespace, query.get("labelSelector", ""),
            query.get("fieldSelector", ""), limit, query.get("continue", ""))
        list_meta: dict[str, Any] = {"resourceVersion": str(revision)}
        if token:
            list_meta["continue"] = token
        return json_response(render_list(rtype, items, list_meta, output))

    async def watch(self, http: web.Request, request: ResourceRequest, user: UserInfo | None
                    ) -> web.StreamResponse:
        output = negotiate(http.headers.get("Accept", ""), http.query)
        rtype = request.rtype
        return await self.watches.serve(
            http, self.api, request, lambda obj: render(rtype, obj, output),
            table=output.form == "Table")

    # ------------------------------------------------------------ writes

    async def create(self, http: web.Request, request: ResourceRequest, user: UserInfo | None
                     ) -> web.StreamResponse:
        rtype = request.rtype
        if request.subresource == "binding":
            return await self._bind(http, request, user)
        if request.subresource == "token":
            return await self._token(http, request, user)
        output = negotiate(http.headers.get("Accept", ""), http.query)
        data = decode_json(http, await read_body(http, self.max_body))
        obj = decode_object(rtype, data)
        OBJECT_NAME.set(m.meta(obj).name)  # what a failure's Status names
        if not rtype.stored:
            return json_response(render(rtype, self._review(obj, user), output), 201)
        if user is not None and isinstance(obj, v1.CertificateSigningRequest):
            set_requester(obj, user)  # the server says who asks, never the client
        with acting_as(user):
            created = await self.api.create(rtype, request.namespace, obj, dry_run(http.query))
        return json_response(render(rtype, created, output), 201)

    def _review(self, obj: Message, user: UserInfo | None) -> Message:
        reviewer = self.security.reviewer()
        if isinstance(obj, v1.SubjectAccessReview):
            return review.subject_access_review(obj, reviewer)
        if isinstance(obj, v1.SelfSubjectAccessReview):
            return review.self_subject_access_review(obj, user, reviewer)
        raise BadRequest(f"{type(obj).__name__} cannot be created on this server")

    async def update(self, http: web.Request, request: ResourceRequest, user: UserInfo | None
                     ) -> web.StreamResponse:
        rtype, sub = request.rtype, request.subresource
        data = decode_json(http, await read_body(http, self.max_body))
        if sub == "scale":
            replicas, version = _scale_replicas(data, request.name)
            return await self._scale(request, user, replicas, version, dry_run(http.query))
        output = negotiate(http.headers.get("Accept", ""), http.query)
        obj = decode_object(rtype, data)
        meta = m.meta(obj)
        if meta.name != request.name:
            raise BadRequest(f"the name of the object ({meta.name}) does not match the name on"
                             f" the URL ({request.name})")
        if rtype.namespaced and meta.namespace and meta.namespace != request.namespace:
            raise BadRequest("the namespace of the provided object does not match the"
                             " namespace sent on the request")
        dry = dry_run(http.query)
        if sub in ("status", "approval"):
            if user is not None and isinstance(obj, v1.CertificateSigningRequest):
                await self.servicer._check_csr_status(user, obj)
            with acting_as(user):
                stored = await self.api.update_status(rtype, request.namespace, obj, dry)
        else:
            with acting_as(user):
                stored = await self.api.update(rtype, request.namespace, obj, dry)
        return json_response(render(rtype, stored, output))

    async def patch(self, http: web.Request, request: ResourceRequest, user: UserInfo | None
                    ) -> web.StreamResponse:
        rtype, sub = request.rtype, request.subresource
        media, _ = _media_type(http.headers.get("Content-Type", ""))
        if media == APPLY_PATCH:
            raise UnsupportedMediaType("server-side apply is not supported by this server:"
                                       " use a client-side apply (kubectl apply"
                                       " --server-side=false) or another patch type")
        if media not in PATCH_TYPES:
            raise UnsupportedMediaType(f'the body of the request was in an unknown format -'
                                       f' accepted media types include: {", ".join(PATCH_TYPES)}'
                                       f' (not "{media}")')
        body = await read_body(http, self.max_body)
        dry = dry_run(http.query)
        if sub == "scale":
            return await self._patch_scale(request, user, body, media, dry)
        output = negotiate(http.headers.get("Accept", ""), http.query)
        if (user is not None and rtype.kind == "CertificateSigningRequest"
                and sub in ("status", "approval")):
            # What a patch changes is known only once applied: it may approve and sign.
            current = await self.api.get(rtype, "", request.name)
            assert isinstance(current, v1.CertificateSigningRequest)
            for verb in ("approve", "sign"):
                self.servicer._check_signer(user, verb, current.spec.signer_name, request.name)
        status_only = sub in ("status", "approval")
        with acting_as(user):
            if dry:
                patched = await self._dry_run_patch(request, body, media, status_only)
            else:
                patched = await self.api.patch(rtype, request.namespace, request.name, body,
                                               media, "status" if status_only else "")
        return json_response(render(rtype, patched, output))

    async def _dry_run_patch(self, request: ResourceRequest, body: bytes, media: str,
                             status_only: bool) -> Message:
        """What a patch would store: applied to the live object, then an update in dry-run
        (validation and admission, nothing written)."""
        rtype = request.rtype
        document = patches.decode(body, patches.patch_type(media))
        current = await self.api.get(rtype, request.namespace, request.name)
        patched = document.apply(convert.to_dict(rtype, current), rtype.message)
        try:
            _, obj = convert.from_dict(patched)
        except convert.ConversionError as e:
            raise Invalid.from_field_errors(rtype.qualified_kind, request.name, e.errors) from e
        if m.meta(obj).name != request.name:
            raise BadRequest("the name of the object does not match the name on the request")
        if status_only:
            return await self.api.update_status(rtype, request.namespace, obj, True)
        return await self.api.update(rtype, request.namespace, obj, True)

    async def _scale(self, request: ResourceRequest, user: UserInfo | None, replicas: int,
                     version: str, dry: bool) -> web.StreamResponse:
        """Sets spec.replicas of the scaled object (at ``version``, when given)."""
        rtype = request.rtype
        for _ in range(CONFLICT_RETRIES):
            current = await self.api.get(rtype, request.namespace, request.name)
            if version and version != m.meta(current).resource_version:
                raise conflict(rtype, request.name)
            updated = m.copy(current)
            updated.spec.replicas = replicas  # type: ignore[attr-defined]
            try:
                with acting_as(user):
                    stored = await self.api.update(rtype, request.namespace, updated, dry)
            except Conflict:
                if version:
                    raise
                continue  # another write landed in between: scale the new object
            return json_response(scale_of(rtype, stored))
        raise conflict(rtype, request.name)

    async def _patch_scale(self, request: ResourceRequest, user: UserInfo | None, body: bytes,
                           media: str, dry: bool) -> web.StreamResponse:
        """A patch of the Scale (kubectl scale sends a merge patch of spec.replicas)."""
        rtype = request.rtype
        try:
            document = json.loads(body)
        except ValueError as e:
            raise BadRequest(f"the patch is not valid JSON: {e}") from None
        current = await self.api.get(rtype, request.namespace, request.name)
        scale = scale_of(rtype, current)
        if media == "application/json-patch+json":
            try:
                patched = jsonpatch.apply_patch(scale, document)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException,
                    TypeError) as e:
                raise Invalid(f"the JSON patch does not apply to the Scale: {e}") from None
        else:
            # A Scale has no lists: a strategic merge is a merge patch here.
            patched = convert.merge_patch(scale, document)
        replicas, version = _scale_replicas(patched, request.name)
        given = scale["metadata"].get("resourceVersion", "")
        return await self._scale(request, user, replicas,
                                 version if version != given else "", dry)

    async def delete(self, http: web.Request, request: ResourceRequest, user: UserInfo | None
                     ) -> web.StreamResponse:
        rtype = request.rtype
        options = await self._delete_options(http)
        output = negotiate(http.headers.get("Accept", ""), http.query)
        grace, policy, uid, version = _delete_arguments(http.query, options)
        if dry_run(http.query, options):
            current = await self.api.get(rtype, request.namespace, request.name)
            meta = m.meta(current)
            if uid and uid != meta.uid:
                raise Conflict(f"Precondition failed: UID in precondition: {uid}, UID in"
                               f" object meta: {meta.uid}")
            if version and version != meta.resource_version:
                raise conflict(rtype, request.name)
            return json_response(render(rtype, current, output))
        with acting_as(user):
            deleted = await self.api.delete(rtype, request.namespace, request.name, grace,
                                            policy, uid, version)
        meta = m.meta(deleted)
        if meta.deletion_timestamp or rtype.kind == "Pod":
            # Still there (graceful deletion, finalizers), or a kind answered with its last
            # state as kube-apiserver does for pods.
            return json_response(render(rtype, deleted, output))
        return json_response(success(rtype=rtype, name=meta.name, uid=meta.uid))

    async def delete_collection(self, http: web.Request, request: ResourceRequest,
                                user: UserInfo | None) -> web.StreamResponse:
        """Deletes every object the list's selectors match; answers with their list."""
        rtype, query = request.rtype, http.query
        options = await self._delete_options(http)
        output = negotiate(http.headers.get("Accept", ""), query)
        grace, policy, _, _ = _delete_arguments(query, options)
        dry = dry_run(query, options)
        items, revision, _ = await self.api.list(
            rtype, request.namespace, query.get("labelSelector", ""),
            query.get("fieldSelector", ""))
        deleted = []
        for obj in items:
            meta = m.meta(obj)
            if dry:
                deleted.append(obj)
                continue
            try:
                with acting_as(user):
                    deleted.append(await self.api.delete(rtype, meta.namespace, meta.name,
                                                         grace, policy))
            except NotFound:
                continue  # gone meanwhile
        return json_response(render_list(rtype, deleted, {"resourceVersion": str(revision)},
                                         output))

    async def _delete_options(self, http: web.Request) -> dict[str, Any]:
        body = await read_body(http, self.max_body)
        if not body.strip():
            return {}
        options = decode_json(http, body)
        if not isinstance(options, dict):
            raise BadRequest("DeleteOptions must be a JSON object")
        return options

    # ------------------------------------------------------------ subresources

    async def _bind(self, http: web.Request, request: ResourceRequest, user: UserInfo | None
                    ) -> web.StreamResponse:
        """POST pods/NAME/binding: a v1 Binding to its target node."""
        data = decode_json(http, await read_body(http, self.max_body))
        if not isinstance(data, dict):
            raise BadRequest("a Binding must be a JSON object")
        meta = data.get("metadata") or {}
        target = data.get("target") or {}
        if not isinstance(meta, dict) or not isinstance(target, dict):
            raise BadRequest("Binding: metadata and target must be objects")
        if meta.get("name", request.name) != request.name:
            raise BadRequest(f"the name of the object ({meta.get('name')}) does not match the"
                             f" name on the URL ({request.name})")
        if target.get("kind", "Node") not in ("Node", ""):
            raise Invalid.from_field_errors("Binding", request.name, [
                FieldPath("target.kind").not_supported(target.get("kind"), ["Node"])])
        node = target.get("name", "")
        if not isinstance(node, str):
            raise BadRequest("Binding: target.name must be a string")
        with acting_as(user):
            pod = await self.api.bind(request.namespace, request.name, node,
                                      str(meta.get("uid") or ""))
        return json_response(success(201, rtype=request.rtype, name=request.name,
                                     uid=m.meta(pod).uid), 201)

    async def _token(self, http: web.Request, request: ResourceRequest, user: UserInfo | None
                     ) -> web.StreamResponse:
        """POST serviceaccounts/NAME/token: a TokenRequest answered with its token."""
        data = decode_json(http, await read_body(http, self.max_body))
        token_request = decode_message(v1.TokenRequest, "TokenRequest", data)
        assert isinstance(token_request, v1.TokenRequest)
        with acting_as(user):
            # NodeRestriction: a node asks tokens only for its pods.
            await self.api.admission.create_subresource(
                request.rtype, request.namespace, request.name, "token", token_request)
            issued = await self.security.tokens.create(request.namespace, request.name,
                                                       token_request)
        return json_response(convert.to_dict(TOKEN_REQUESTS, issued), 201)

    async def _stream(self, http: web.Request, request: ResourceRequest,
                      user: UserInfo | None) -> web.StreamResponse:
        """pods/log, pods/exec, pods/portforward: relayed from the pod's kubelet; each checks
        its own verbs (a WebSocket upgrade by GET needs get and create on pods/exec)."""
        stream = {"log": streams.logs, "exec": streams.exec_,
                  "portforward": getattr(streams, "portforward", None)}.get(request.subresource)
        if stream is None:
            raise NotFound(f"pods/{request.subresource} is not served by this server")

        async def authorize(verb: str, subresource: str) -> None:
            self.security.check(user, verb, request.rtype.plural,
                                api_group=request.rtype.group, subresource=subresource,
                                namespace=request.namespace, name=request.name)

        response: web.StreamResponse = await stream(
            http, self.api, self.kubelets, request.namespace, request.name,
            authorize=authorize)
        return response


LIST_OPTIONS = "ListOptions.meta.k8s.io"


def check_resource_version_match(query: Mapping[str, str]) -> None:
    """resourceVersionMatch as kube-apiserver validates it; only NotOlderThan (the default
    meaning of a resourceVersion) is served."""
    match = query.get("resourceVersionMatch", "")
    if not match:
        return
    path = FieldPath("resourceVersionMatch")
    if not query.get("resourceVersion"):
        raise Invalid.from_field_errors(LIST_OPTIONS, "", [path.forbidden(
            "resourceVersionMatch is forbidden unless resourceVersion is provided")])
    if match != "NotOlderThan":
        raise Invalid.from_field_errors(LIST_OPTIONS, "", [
            path.not_supported(match, ["NotOlderThan"])])


def _delete_arguments(query: Mapping[str, str], options: Mapping[str, Any]
                      ) -> tuple[int | None, str, str, str]:
    """(gracePeriodSeconds, propagationPolicy, precondition uid, precondition
    resourceVersion) of a delete, from DeleteOptions or the query."""
    kind = options.get("kind", "DeleteOptions")
    if kind != "DeleteOptions":
        raise BadRequest(f"the body of a delete must be DeleteOptions, not {kind}")
    grace = options.get("gracePeriodSeconds")
    if grace is None:
        grace = _int_param(query, "gracePeriodSeconds")
    elif isinstance(grace, bool) or not isinstance(grace, int):
        raise BadRequest("gracePeriodSeconds: Invalid type: expected integer")
    policy = options.get("propagationPolicy") or query.get("propagationPolicy", "")
    orphan = options.get("orphanDependents")
    if orphan is None and "orphanDependents" in query:
        orphan = is_true(query.get("orphanDependents"))
    if orphan is not None:
        if policy:
            raise Invalid.from_field_errors("DeleteOptions.meta.k8s.io", "", [
                FieldPath("propagationPolicy").invalid(
                    policy, "orphanDependents and propagationPolicy cannot both be set")])
        policy = "Orphan" if orphan else "Background"
    if not isinstance(policy, str):
        raise BadRequest("propagationPolicy: Invalid type: expected string")
    preconditions = options.get("preconditions") or {}
    if not isinstance(preconditions, dict):
        raise BadRequest("preconditions: Invalid type: expected object")
    return (grace, policy, str(preconditions.get("uid") or ""),
            str(preconditions.get("resourceVersion") or ""))

