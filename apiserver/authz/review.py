"""SubjectAccessReview and SelfSubjectAccessReview (authorization.k8s.io/v1): "may this user
do this?", answered by the same authorizers that guard requests; nothing is stored.

A SubjectAccessReview names the user (and groups, extra); creating one needs ``create`` on
subjectaccessreviews (the kubelet has it for its callers). A SelfSubjectAccessReview asks about
the caller itself (``klctl auth can-i``); every authenticated user may (system:basic-user).
"""

from __future__ import annotations

from google.protobuf.message import Message

from apiserver.authz.attributes import Attributes, Authorizer, Decision
from kubelite.api import meta as m
from kubelite.api.errors import Invalid
from kubelite.api.field_errors import FieldError, FieldPath
from kubelite.auth.user import UserInfo
from protos.v1 import objects_pb2 as v1

NO_AUTHORIZATION = "no authorization is configured: every request is allowed"


def _check_spec(resource: v1.ResourceAttributes, has_non_resource: bool,
                errors: list[FieldError]) -> None:
    spec = FieldPath("spec")
    if not resource.verb and not has_non_resource:
        errors.append(spec.child("resourceAttributes").required(
            "exactly one of nonResourceAttributes or resourceAttributes must be specified"))
    if resource.verb and has_non_resource:
        errors.append(spec.child("nonResourceAttributes").forbidden(
            "cannot be specified in combination with resourceAttributes"))
    if resource.verb and not resource.resource:
        errors.append(spec.child("resourceAttributes", "resource").required())


def _attributes(user: UserInfo, resource: v1.ResourceAttributes) -> Attributes:
    return Attributes(user=user, verb=resource.verb, resource=resource.resource,
                      api_group=resource.group, subresource=resource.subresource,
                      namespace=resource.namespace, name=resource.name)


def _answer(review: Message, authorizer: Authorizer | None, user: UserInfo,
            resource: v1.ResourceAttributes, non_resource: bool) -> Message:
    status = review.status  # type: ignore[attr-defined]
    status.Clear()
    if authorizer is None:
        status.allowed, status.reason = True, NO_AUTHORIZATION
    elif non_resource:
        # Only resource requests exist on this API: no path is ever served.
        status.allowed = False
        status.reason = "non-resource URLs are not served by this API server"
    else:
        verdict = authorizer.authorize(_attributes(user, resource))
        status.allowed = verdict.allowed
        status.denied = verdict.decision is Decision.DENY
        status.reason = verdict.reason
    meta = m.meta(review)
    meta.creation_timestamp = meta.creation_timestamp or m.now_rfc3339()
    return review


def subject_access_review(review: v1.SubjectAccessReview, authorizer: Authorizer | None
                          ) -> v1.SubjectAccessReview:
    """The review with its status: whether ``spec.user`` (with ``spec.groups``) may."""
    spec = review.spec
    errors: list[FieldError] = []
    _check_spec(spec.resource_attributes,
                spec.HasField("non_resource_attributes"), errors)
    if not spec.user and not spec.groups:
        errors.append(FieldPath("spec.user").invalid(
            spec.user, "at least one of user or group must be specified"))
    if errors:
        raise Invalid.from_field_errors("SubjectAccessReview.authorization.k8s.io",
                                        review.metadata.name, errors)
    user = UserInfo(spec.user, spec.uid, tuple(spec.groups),
                    {k: tuple(v.items) for k, v in spec.extra.items()})
    _answer(review, authorizer, user, spec.resource_attributes,
            spec.HasField("non_resource_attributes"))
    return review


def self_subject_access_review(review: v1.SelfSubjectAccessReview, user: UserInfo | None,
                               authorizer: Authorizer | None) -> v1.SelfSubjectAccessReview:
    """The review with its status: whether the caller may."""
    spec = review.spec
    errors: list[FieldError] = []
    _check_spec(spec.resource_attributes,
                spec.HasField("non_resource_attributes"), errors)
    if errors:
        raise Invalid.from_field_errors("SelfSubjectAccessReview.authorization.k8s.io",
                                        review.metadata.name, errors)
    if user is None:
        authorizer = None  # no authentication: nothing is checked
        user = UserInfo("")
    _answer(review, authorizer, user, spec.resource_attributes,
            spec.HasField("non_resource_attributes"))
    return review
