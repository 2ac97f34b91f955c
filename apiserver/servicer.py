"""The gRPC face of the API: decode the request, call Api, encode the answer, map errors."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from apiserver.api import Api
from apiserver.authz import review
from apiserver.kubelet_proxy import KubeletClientSettings, KubeletProxy
from apiserver.request_context import acting_as
from apiserver.security import Security
from apiserver.watch_cache import BOOKMARK
from kubelite.api import meta as m
from kubelite.api.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    InternalError,
    NotFound,
    RequestEntityTooLarge,
    status_metadata,
)
from kubelite.api.registry import ResourceType, UnknownResource, by_kind, by_plural
from kubelite.api.strategies.access import set_requester
from kubelite.auth.user import UserInfo
from protos.v1 import apiserver_pb2 as pb
from protos.v1 import apiserver_pb2_grpc as pb_grpc
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

R = TypeVar("R")
M = TypeVar("M", bound=Message)
Context = grpc.aio.ServicerContext[Any, Any]
PODS = by_kind("Pod")
CSRS = by_kind("CertificateSigningRequest")


def _decisions(csr: v1.CertificateSigningRequest) -> set[tuple[str, str]]:
    return {(c.type, c.status) for c in csr.status.conditions if c.type in ("Approved", "Denied")}


async def _abort(context: Context, error: ApiError) -> None:
    context.set_trailing_metadata(status_metadata(error))
    await context.abort(error.code, error.message)


def _api_call(
    method: Callable[[ApiServicer, Any, Context], Awaitable[R]],
) -> Callable[[ApiServicer, Any, Context], Awaitable[R]]:
    """Refuses requests over the size limit; turns ApiErrors into gRPC statuses; anything
    else is a logged internal error."""

    @functools.wraps(method)
    async def wrapper(self: ApiServicer, request: Any, context: Context) -> R:
        try:
            limit = self.api.settings.max_request_bytes
            if request.ByteSize() > limit:
                raise RequestEntityTooLarge(f"Request entity too large: limit is {limit}")
            return await method(self, request, context)
        except ApiError as e:
            await _abort(context, e)
        except UnknownResource as e:
            await _abort(context, BadRequest(str(e)))
        except Exception as e:  # the one place unexpected errors become statuses
            if isinstance(e, grpc.aio.AbortError):
                raise
            log.exception("request failed", method=method.__name__)
            await _abort(context, InternalError(f"internal error: {type(e).__name__}: {e}"))
        raise AssertionError("unreachable")

    return wrapper


def _decode(rtype: ResourceType, data: bytes) -> Message:
    """The object in a request; BadRequest when it does not decode or carries fields this
    server does not know (they would be stored unseen, past every validation)."""
    return _decode_message(rtype.message, rtype.kind, data)


def _decode_message(message: type[M], kind: str, data: bytes) -> M:
    def decode() -> M:
        obj = message()
        obj.ParseFromString(data)
        return obj

    try:
        obj = decode()
    except DecodeError as e:
        raise BadRequest(f"object is not a valid serialized {kind}: {e}") from e
    size = obj.ByteSize()
    obj.DiscardUnknownFields()
    if obj.ByteSize() != size:
        places = ", ".join(_unknown_fields(decode(), kind))
        raise BadRequest(f"{kind} is not valid: strict decoding error: {places}")
    return obj


def _unknown_fields(msg: Message, path: str) -> list[str]:
    """Where ``msg`` holds fields its type does not declare, by JSON path and field number."""
    unknown = UnknownFieldSet(msg)
    found = [
        f"unknown field number {unknown[i].field_number} in {path}" for i in range(len(unknown))
    ]
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        child = f"{path}.{fd.json_name}"
        if fd.message_type.GetOptions().map_entry:
            if fd.message_type.fields_by_name["value"].message_type is not None:
                for key, item in value.items():
                    found += _unknown_fields(item, f"{child}[{key}]")
        elif fd.is_repeated:
            for i, item in enumerate(value):
                found += _unknown_fields(item, f"{child}[{i}]")
        else:
            found += _unknown_fields(value, child)
    return found


def _stored(plural: str) -> ResourceType:
    """The resource of a request that reads or changes stored objects; access reviews are
    only ever created (Kubernetes answers 405 to anything else)."""
    rtype = by_plural(plural)
    if not rtype.stored:
        raise BadRequest(f"the server does not allow this method on the requested resource:"
                         f" {rtype.plural} can only be created")
    return rtype


def _encode(obj: Message) -> pb.ObjectResponse:
    return pb.ObjectResponse(object=obj.SerializeToString())


class ApiServicer(pb_grpc.ApiServerServicer):
    """Every call: who it comes from (``Security.user``), whether they may (Kubernetes' verb
    of the method on the resource it names), then the API's answer, computed as that user
    (``acting_as``: admission sees who asks)."""

    def __init__(self, api: Api, security: Security,
                 kubelets: KubeletClientSettings = KubeletClientSettings()) -> None:
        self.api = api
        self.security = security
        self.kubelets = KubeletProxy(api, kubelets)

    async def _user(
        self, context: Context, verb: str, rtype: ResourceType, namespace: str,
        name: str = "", subresource: str = "",
    ) -> UserInfo | None:
        """The caller, once authorized to ``verb`` the resource (Unauthorized, Forbidden)."""
        user = await self.security.user(context)
        self._authorize(user, verb, rtype, namespace, name, subresource)
        return user

    def _authorize(self, user: UserInfo | None, verb: str, rtype: ResourceType, namespace: str,
                   name: str = "", subresource: str = "") -> None:
        self.security.check(user, verb, rtype.plural, api_group=rtype.group,
                            subresource=subresource,
                            namespace=namespace if rtype.namespaced else "", name=name)

    @_api_call
    async def Create(self, request: pb.CreateRequest, context: Any) -> pb.ObjectResponse:
        rtype = by_plural(request.resource)
        if request.subresource:
            return await self._create_subresource(rtype, request, context)
        user = await self.security.user(context)
        obj = _decode(rtype, request.object)
        namespace = m.meta(obj).namespace or request.namespace or "default"
        self._authorize(user, "create", rtype, namespace)
        if not rtype.stored:
            return _encode(self._review(rtype, obj, user))
        if user is not None and isinstance(obj, v1.CertificateSigningRequest):
            # Signers and approvers trust who asked: the server says, never the client. (An
            # insecure server has no one to say it and keeps what the client wrote.)
            set_requester(obj, user)
        with acting_as(user):
            return _encode(await self.api.create(rtype, request.namespace, obj,
                                                 request.dry_run))

    async def _create_subresource(self, rtype: ResourceType, request: pb.CreateRequest,
                                  context: Context) -> pb.ObjectResponse:
        if (rtype.plural, request.subresource) != ("serviceaccounts", "token"):
            raise BadRequest(f'{rtype.plural} have no "{request.subresource}" subresource to'
                             " create")
        if not request.name:
            raise BadRequest("a TokenRequest names its ServiceAccount (name)")
        namespace = request.namespace or "default"
        user = await self._user(context, "create", rtype, namespace, request.name, "token")
        token_request = _decode_message(v1.TokenRequest, "TokenRequest", request.object)
        with acting_as(user):
            # NodeRestriction: a node asks tokens only for pods bound to it.
            await self.api.admission.create_subresource(rtype, namespace, request.name,
                                                        "token", token_request)
            return _encode(await self.security.tokens.create(namespace, request.name,
                                                             token_request))

    async def _check_csr_status(self, user: UserInfo,
                                csr: v1.CertificateSigningRequest) -> None:
        """Approving or denying a request needs ``update`` on certificatesigningrequests/
        approval and ``approve`` on its signer, issuing its certificate ``sign`` on the signer
        (upstream's CertificateApproval and CertificateSigning checks)."""
        try:
            current = await self.api.get(CSRS, "", csr.metadata.name)
        except NotFound:
            return  # the update fails on its own terms
        assert isinstance(current, v1.CertificateSigningRequest)
        signer = current.spec.signer_name
        if _decisions(current) != _decisions(csr):
            self.security.check(user, "update", CSRS.plural, api_group=CSRS.group,
                                subresource="approval", name=csr.metadata.name)
            self._check_signer(user, "approve", signer, csr.metadata.name)
        if current.status.certificate != csr.status.certificate:
            self._check_signer(user, "sign", signer, csr.metadata.name)

    def _check_signer(self, user: UserInfo, verb: str, signer: str, name: str) -> None:
        """``verb`` on ``signers/<signerName>`` or on ``signers/<domain>/*``."""
        for target in (signer, f"{signer.partition('/')[0]}/*"):
            try:
                self.security.check(user, verb, "signers", api_group=CSRS.group, name=target)
                return
            except Forbidden:
                continue
        raise Forbidden(f'{CSRS.plural}.{CSRS.group} "{name}" is forbidden: user not permitted'
                        f' to {verb} requests with signerName "{signer}"')

    def _review(self, rtype: ResourceType, obj: Message, user: UserInfo | None) -> Message:
        reviewer = self.security.reviewer()
        if isinstance(obj, v1.SubjectAccessReview):
            return review.subject_access_review(obj, reviewer)
        if isinstance(obj, v1.SelfSubjectAccessReview):
            return review.self_subject_access_review(obj, user, reviewer)
        raise BadRequest(f"{rtype.plural} cannot be created on this server")

    @_api_call
    async def Get(self, request: pb.GetRequest, context: Any) -> pb.ObjectResponse:
        rtype = _stored(request.resource)
        await self._user(context, "get", rtype, request.namespace, request.name)
        data = await self.api.get_serialized(rtype, request.namespace, request.name)
        return pb.ObjectResponse(object=data)

    @_api_call
    async def List(self, request: pb.ListRequest, context: Any) -> pb.ListResponse:
        rtype = _stored(request.resource)
        await self._user(context, "list", rtype, request.namespace)
        items, revision, token = await self.api.list(
            rtype,
            request.namespace,
            request.label_selector,
            request.field_selector,
            request.limit,
            request.continue_token,
        )
        return pb.ListResponse(
            resource_version=str(revision),
            items=[o.SerializeToString() for o in items],
            continue_token=token,
        )

    @_api_call
    async def Update(self, request: pb.UpdateRequest, context: Any) -> pb.ObjectResponse:
        rtype = _stored(request.resource)
        user = await self.security.user(context)
        obj = _decode(rtype, request.object)
        meta = m.meta(obj)
        self._authorize(user, "update", rtype, meta.namespace or request.namespace or "default",
                        meta.name)
        with acting_as(user):
            return _encode(await self.api.update(rtype, request.namespace, obj,
                                                 request.dry_run))

    @_api_call
    async def UpdateStatus(self, request: pb.UpdateRequest, context: Any) -> pb.ObjectResponse:
        rtype = _stored(request.resource)
        user = await self.security.user(context)
        obj = _decode(rtype, request.object)
        meta = m.meta(obj)
        self._authorize(user, "update", rtype, meta.namespace or request.namespace or "default",
                        meta.name, "status")
        if user is not None and isinstance(obj, v1.CertificateSigningRequest):
            await self._check_csr_status(user, obj)
        with acting_as(user):
            return _encode(await self.api.update_status(rtype, request.namespace, obj,
                                                        request.dry_run))

    @_api_call
    async def Patch(self, request: pb.PatchRequest, context: Any) -> pb.ObjectResponse:
        rtype = _stored(request.resource)
        user = await self._user(context, "patch", rtype, request.namespace or "default",
                                request.name, request.subresource)
        if (user is not None and rtype.kind == "CertificateSigningRequest"
                and request.subresource == "status"):
            # What a patch changes is known only once applied: it may approve and sign.
            current = await self.api.get(rtype, "", request.name)
            assert isinstance(current, v1.CertificateSigningRequest)
            for verb in ("approve", "sign"):
                self._check_signer(user, verb, current.spec.signer_name, request.name)
        with acting_as(user):
            return _encode(
                await self.api.patch(
                    rtype, request.namespace, request.name, request.patch, request.patch_type,
                    request.subresource,
                )
            )

    @_api_call
    async def Delete(self, request: pb.DeleteRequest, context: Any) -> pb.ObjectResponse:
        rtype = _stored(request.resource)
        user = await self._user(context, "delete", rtype, request.namespace or "default",
                                request.name)
        grace = request.grace_period_seconds if request.HasField("grace_period_seconds") else None
        with acting_as(user):
            return _encode(
                await self.api.delete(
                    rtype,
                    request.namespace,
                    request.name,
                    grace,
                    request.propagation_policy,
                    request.preconditions.uid,
                    request.preconditions.resource_version,
                )
            )

    @_api_call
    async def Bind(self, request: pb.BindRequest, context: Any) -> pb.ObjectResponse:
        user = await self._user(context, "create", PODS, request.namespace or "default",
                                request.name, "binding")
        with acting_as(user):
            pod = await self.api.bind(request.namespace, request.name, request.node_name,
                                      request.pod_uid)
        return _encode(pod)

    async def PodLogs(self, request: pb.PodLogsRequest, context: Context
                      ) -> AsyncIterator[pb.Chunk]:
        try:
            await self._user(context, "get", PODS, request.namespace or "default",
                             request.name, "log")
            async for chunk in self.kubelets.logs(request):
                yield chunk
        except ApiError as e:
            await _abort(context, e)

    async def PodExec(self, request: pb.PodExecRequest, context: Context
                      ) -> AsyncIterator[pb.Chunk]:
        try:
            await self._user(context, "create", PODS, request.namespace or "default",
                             request.name, "exec")
            async for chunk in self.kubelets.exec(request):
                yield chunk
        except ApiError as e:
            await _abort(context, e)

    async def Watch(
        self, request: pb.WatchRequest, context: Context
    ) -> AsyncIterator[pb.WatchEvents]:
        try:
            rtype = _stored(request.resource)
            await self._user(context, "watch", rtype, request.namespace)
            stream = self.api.watch_batches(
                rtype,
                request.namespace,
                request.label_selector,
                request.field_selector,
                request.resource_version,
            )
            bookmarks = request.allow_watch_bookmarks
            async for batch in stream:
                # One message for the events ready together: a busy watch pays gRPC's cost
                # per message once for many events.
                events = [
                    pb.WatchEvent(type=BOOKMARK, resource_version=str(item.revision))
                    if item.type == BOOKMARK else
                    pb.WatchEvent(type=item.type, object=item.data,
                                  resource_version=str(item.resume_revision))
                    for item in batch if bookmarks or item.type != BOOKMARK
                ]
                if events:
                    yield pb.WatchEvents(events=events)
        except ApiError as e:
            await _abort(context, e)
        except UnknownResource as e:
            await _abort(context, BadRequest(str(e)))
