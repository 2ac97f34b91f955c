"""``auth can-i`` and ``create token``: asking the server what one may do, and tokens for
ServiceAccounts.

``klctl auth can-i VERB RESOURCE [NAME]`` asks with a SelfSubjectAccessReview, as kubectl does:
``yes`` (exit status 0) or ``no`` with the server's reason (exit status 1); ``--as`` and
``--as-group`` ask about another user (impersonation, which needs the ``impersonate`` verb).
``klctl create token SA`` prints a token from the ServiceAccount's TokenRequest.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from kubelite.api.registry import UnknownResource, by_name
from kubelite.cli.klctl.context import Context
from kubelite.cli.klctl.errors import CliError
from kubelite.cli.klctl.flags import Commands, add_namespace, parse_duration
from kubelite.cli.klctl.output import err, out
from kubelite.cli.klctl.resources import namespace_of
from kubelite.client.client import ApiClient, Impersonation
from protos.v1 import objects_pb2 as v1

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection",
         "impersonate", "bind", "escalate", "approve", "sign", "use", "*")


@dataclass(frozen=True)
class Resource:
    """What can-i asks about: a resource of a group, maybe a subresource and a name."""

    resource: str
    group: str
    namespaced: bool
    subresource: str = ""
    name: str = ""


def resolve_type(text: str) -> Resource:
    """``pods``, ``po``, ``deployments.apps``: the resource and its group. One this cluster
    does not serve is asked about as written (``widgets.example.com``), with kubectl's
    warning."""
    try:
        rtype = by_name(text)
    except UnknownResource:
        if text == "*":
            return Resource("*", "*", True)
        resource, _, group = text.partition(".")
        err(f"Warning: the server doesn't have a resource type '{text}'")
        return Resource(resource, group, True)
    return Resource(rtype.plural, rtype.group, rtype.namespaced)


async def cmd_can_i(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    if args.verb not in VERBS and not args.verb.isalpha():
        raise CliError(f"invalid verb {args.verb!r}")
    if args.resource is None:
        raise CliError("you must specify two arguments: verb resource or verb resource/name")
    target = can_i_target(args.resource, args.name or "", args.subresource or "")
    namespace = "" if args.all_namespaces or not target.namespaced else namespace_of(args)
    review = v1.SelfSubjectAccessReview()
    review.spec.resource_attributes.CopyFrom(v1.ResourceAttributes(
        namespace=namespace, verb=args.verb, group=target.group, resource=target.resource,
        subresource=target.subresource, name=target.name))
    impersonate = None
    if args.as_user:
        impersonate = Impersonation(args.as_user, tuple(args.as_group))
    elif args.as_group:
        raise CliError("--as-group needs --as: impersonating groups needs a user")
    answer = await client.access_review(review, impersonate=impersonate)
    if answer.status.allowed:
        if not args.quiet:
            out("yes")
        return 0
    if not args.quiet:
        line = "no"
        if answer.status.reason:
            line += f" - {answer.status.reason}"
        if answer.status.evaluation_error:
            line += f" - {answer.status.evaluation_error}"
        out(line)
    return 1


def can_i_target(text: str, name: str, subresource: str) -> Resource:
    """What ``RESOURCE [NAME]`` names: ``TYPE/NAME`` as kubectl takes it, or ``TYPE/SUB`` for
    a subresource kubectl's form names (pods/log, deployments/scale ...)."""
    head, slash, tail = text.partition("/")
    base = resolve_type(head)
    if slash and tail in _SUBRESOURCES.get(base.resource, ()) and not subresource:
        subresource = tail
    elif slash:
        if name:
            raise CliError(f"there is no need to specify a resource type as a separate"
                           f" argument when passing arguments in resource/name form:"
                           f" {text!r} and {name!r}")
        name = tail
    return Resource(base.resource, base.group, base.namespaced, subresource, name)


_SUBRESOURCES = {
    "pods": ("log", "exec", "status", "binding", "eviction", "attach", "portforward", "proxy"),
    "nodes": ("status", "proxy"),
    "serviceaccounts": ("token",),
    "deployments": ("scale", "status", "rollback"),
    "replicasets": ("scale", "status"),
    "statefulsets": ("scale", "status"),
    "daemonsets": ("status",),
    "jobs": ("status",),
    "cronjobs": ("status",),
    "services": ("status", "proxy"),
    "namespaces": ("status", "finalize"),
    "resourcequotas": ("status",),
    "certificatesigningrequests": ("approval", "status", "nodeclient", "selfnodeclient"),
}
"""Subresources kubectl's ``TYPE/SUB`` form names (otherwise ``TYPE/X`` is a name)."""


async def create_token(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    """``klctl create token SA``: prints a token for the ServiceAccount."""
    if len(args.what) != 2:
        raise CliError("exactly one NAME is required: klctl create token SERVICEACCOUNT")
    request = v1.TokenRequest()
    if args.duration:
        seconds = parse_duration(args.duration, "--duration")
        if seconds != int(seconds) or seconds < 0:
            raise CliError("--duration must be a positive number of whole seconds")
        if seconds:
            request.spec.expiration_seconds = int(seconds)
    request.spec.audiences.extend(args.audience)
    if args.bound_object_kind or args.bound_object_name:
        if args.bound_object_kind != "Pod":
            raise CliError('--bound-object-kind: only "Pod" is supported')
        if not args.bound_object_name:
            raise CliError("--bound-object-name is required with --bound-object-kind")
        request.spec.bound_object_ref.CopyFrom(v1.BoundObjectReference(
            kind="Pod", api_version="v1", name=args.bound_object_name,
            uid=args.bound_object_uid or ""))
    elif args.bound_object_uid:
        raise CliError("--bound-object-uid needs --bound-object-kind and --bound-object-name")
    answer = await client.request_token(namespace_of(args), args.what[1], request)
    out(answer.status.token)
    return 0


def add_create_token_flags(p: argparse.ArgumentParser) -> None:
    """``create token``'s flags, on the ``create`` command."""
    p.add_argument("--duration", default="",
                   help="create token: requested lifetime (e.g. 1h; default: the server's,"
                        " 1h)")
    p.add_argument("--audience", action="append", default=[],
                   help="create token: an intended audience (repeatable; default: the API)")
    p.add_argument("--bound-object-kind", default="",
                   help="create token: kind of the object the token is bound to (Pod)")
    p.add_argument("--bound-object-name", default="", help="create token: its name")
    p.add_argument("--bound-object-uid", default="", help="create token: its uid")


def register(commands: Commands) -> None:
    p = commands.add_parser("auth", help="inspect authorization: auth can-i VERB RESOURCE [NAME]")
    p.add_argument("action", metavar="can-i")
    p.add_argument("verb", metavar="VERB")
    p.add_argument("resource", nargs="?", metavar="RESOURCE[/NAME]")
    p.add_argument("name", nargs="?", metavar="NAME")
    add_namespace(p)
    p.add_argument("--subresource", default="", help="a subresource, such as log or exec")
    p.add_argument("--as", dest="as_user", default="",
                   help="ask as this user (impersonation)")
    p.add_argument("--as-group", action="append", default=[],
                   help="ask as a member of this group (repeatable; needs --as)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing: the exit status says yes (0) or no (1)")
    p.set_defaults(handler=cmd_auth)


async def cmd_auth(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    if args.action != "can-i":
        raise CliError(f'unknown command "{args.action}" for "klctl auth"; supported: can-i')
    return await cmd_can_i(args, client, ctx)
