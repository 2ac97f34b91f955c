"""Resource arguments (``KIND NAME``, ``KIND/NAME``), namespaces and fetching by them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from kubelite.api import convert
from kubelite.api import meta as m
from kubelite.api.errors import NotFound
from kubelite.api.registry import ResourceType, UnknownResource, by_name
from kubelite.cli.klctl.context import Context
from kubelite.cli.klctl.errors import CliError, api_error_text
from kubelite.cli.klctl.output import err
from kubelite.client.client import ApiClient

# `get all` as kubectl expands it (the kinds we serve).
ALL_KINDS = ("pods", "services", "daemonsets", "deployments", "replicasets", "statefulsets",
             "jobs", "cronjobs")


@dataclass
class Target:
    rtype: ResourceType
    names: list[str]
    """Empty: every object (of the namespace, filtered by selectors)."""


def lookup(name: str) -> ResourceType:
    try:
        return by_name(name)
    except UnknownResource as e:
        raise CliError(str(e)) from None


def parse_targets(args: Sequence[str], *, allow_all: bool = False) -> list[Target]:
    """``KIND[,KIND] [NAME...]`` or ``KIND/NAME...``, as kubectl reads resource arguments."""
    if not args:
        return []
    if "/" in args[0]:
        targets: list[Target] = []
        for arg in args:
            kind, sep, name = arg.partition("/")
            if not sep or not kind or not name:
                raise CliError(
                    "there is no need to specify a resource type as a separate argument when"
                    " passing arguments in resource/name form (e.g. 'klctl get resource/"
                    "<resource_name>' instead of 'klctl get resource resource/<resource_name>'"
                )
            rtype = lookup(kind)
            for t in targets:
                if t.rtype is rtype:
                    t.names.append(name)
                    break
            else:
                targets.append(Target(rtype, [name]))
        return targets
    kinds: list[ResourceType] = []
    for kind in args[0].split(","):
        if not kind:
            continue
        if kind == "all" and allow_all:
            kinds.extend(by_name(k) for k in ALL_KINDS)
        else:
            kinds.append(lookup(kind))
    names = list(args[1:])
    for name in names:
        if "/" in name:
            raise CliError(
                "there is no need to specify a resource type as a separate argument when passing"
                " arguments in resource/name form (e.g. 'klctl get resource/<resource_name>'"
                " instead of 'klctl get resource resource/<resource_name>'"
            )
    return [Target(k, list(names)) for k in dict.fromkeys(kinds)]


def one_target(resources: Sequence[str], verb: str) -> tuple[ResourceType, list[str]]:
    targets = parse_targets(resources)
    if not targets:
        raise CliError(f"required resource not specified (e.g. klctl {verb} deployment/web)")
    names = [n for t in targets for n in t.names]
    if not names:
        raise CliError("resource(s) were provided, but no name was specified")
    if len(targets) > 1:
        raise CliError(f"{verb} works on one kind at a time")
    return targets[0].rtype, names


def namespace_of(args: argparse.Namespace) -> str:
    return str(args.namespace or "default")


def qualified_singular(rtype: ResourceType) -> str:
    """``deployment.apps``: how kubectl names a kind in ``"web" deleted`` lines."""
    return f"{rtype.singular}.{rtype.group}" if rtype.group else rtype.singular


async def fetch(client: ApiClient, target: Target, namespace: str, args: argparse.Namespace,
                ctx: Context) -> tuple[list[Message], str, bool]:
    """(objects, list resourceVersion, whether a named object was missing)."""
    missing = False
    if target.names:
        objects: list[Message] = []
        for name in target.names:
            try:
                objects.append(await client.get(target.rtype.message, name, namespace or "default"))
            except NotFound as e:
                err(api_error_text(e, ctx))
                missing = True
        return objects, "", missing
    listed = await client.list(
        target.rtype.message,
        namespace if target.rtype.namespaced else "",
        label_selector=args.selector or "",
        field_selector=args.field_selector or "",
    )
    return list(listed.items), listed.resource_version, False


def no_resources(namespace: str, all_namespaces: bool, targets: Sequence[Target]) -> str:
    if all_namespaces or not any(t.rtype.namespaced for t in targets):
        return "No resources found"
    return f"No resources found in {namespace} namespace."


def _comparable(rtype: ResourceType, obj: Message) -> dict[str, Any]:
    data = convert.to_dict(rtype, obj)
    data.get("metadata", {}).pop("resourceVersion", None)
    # An empty status/spec and none at all mean the same to a reader.
    return {k: v for k, v in data.items() if v != {}}


def changed(rtype: ResourceType, before: Message, after: Message) -> bool:
    """Whether a write changed what the object says (not merely its resourceVersion)."""
    if m.meta(before).resource_version == m.meta(after).resource_version:
        return False
    return _comparable(rtype, before) != _comparable(rtype, after)
