"""klctl: kubectl for kubelite.

Verbs, flags, output and error text follow kubectl so that what works with kubectl works here:
apply, create, get, describe, delete, label, annotate, patch, version, api-resources.
Every failure is one ``error: ...`` or ``Error from server (Reason): ...`` line on stderr and
exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime as dt
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn

import grpc
import yaml
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kubelite.api import convert, podtemplate, strategic_merge
from kubelite.api import meta as m
from kubelite.api.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Expired,
    Invalid,
    KubeliteError,
    NotFound,
    Timeout,
    Unavailable,
)
from kubelite.api.manifests import ManifestError, load_paths
from kubelite.api.registry import RESOURCES, ResourceType, UnknownResource, by_kind, by_name
from kubelite.cli.config import ConfigError, resolve_server
from kubelite.cli.printers.describe import describe
from kubelite.cli.printers.formats import LAST_APPLIED, resource_name
from kubelite.cli.printers.serialize import list_object, to_json, to_yaml
from kubelite.cli.printers.tables import Table
from kubelite.cli.printers.tabwriter import render_table
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1

DEFAULT_REQUEST_TIMEOUT = 30.0
"""Seconds a request may take when --request-timeout is not given (kubectl: none)."""
NO_TIMEOUT = 365 * 24 * 3600.0
"""Stands for "no deadline" where the client needs a number."""
DELETE_WAIT_DEFAULT = 7 * 24 * 3600.0
"""kubectl's --timeout=0 on delete: wait "as long as it takes" (a week)."""

# `get all` as kubectl expands it (the kinds we serve).
ALL_KINDS = ("pods", "services", "daemonsets", "deployments", "replicasets", "statefulsets",
             "jobs", "cronjobs")


class CliError(KubeliteError):
    """A failure reported as ``error: <message>``."""


class _UsageError(Exception):
    pass


@dataclass
class Context:
    server: str
    request_timeout: float
    explicit_timeout: bool
    """Whether --request-timeout was given (it then also bounds watches)."""


# ---------------------------------------------------------------------------- output helpers


def out(text: str = "") -> None:
    print(text, file=sys.stdout, flush=True)


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def api_error_text(e: ApiError, ctx: Context) -> str:
    """One line for a failed request, as kubectl words it."""
    if isinstance(e, Unavailable) and e.message.startswith("API server unavailable"):
        detail = e.message.removeprefix("API server unavailable: ")
        return f"error: cannot reach the API server at {ctx.server}: {detail}"
    if isinstance(e, Timeout) and e.message == "Deadline Exceeded":
        return (f"error: cannot reach the API server at {ctx.server}: no answer within"
                f" {ctx.request_timeout:g}s (--request-timeout)")
    return f"Error from server ({e.reason}): {e.message}"


def _is_connection_error(e: ApiError) -> bool:
    return (isinstance(e, Unavailable) and e.message.startswith("API server unavailable")) or (
        isinstance(e, Timeout) and e.message == "Deadline Exceeded"
    )


def parse_duration(text: str, flag: str) -> float:
    """Go-style durations (``5s``, ``1m30s``, ``250ms``); a bare number is seconds."""
    value = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise CliError(f'invalid argument "{text}" for "{flag}" flag: time: invalid duration'
                       f' "{text}"')
    return sum(float(n) * units[u] for n, u in parts)


# ---------------------------------------------------------------------------- resource args


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


def namespace_of(args: argparse.Namespace) -> str:
    return str(args.namespace or "default")


def qualified_singular(rtype: ResourceType) -> str:
    """``deployment.apps``: how kubectl names a kind in ``"web" deleted`` lines."""
    return f"{rtype.singular}.{rtype.group}" if rtype.group else rtype.singular


# ---------------------------------------------------------------------------- manifests


def decode(source: str, doc: dict[str, Any]) -> tuple[ResourceType, Message]:
    """The typed object for one manifest document; errors name the field and the rule."""
    try:
        return convert.from_dict(doc)
    except convert.ConversionError as e:
        kind = e.kind
        try:
            kind = by_kind(e.kind).qualified_kind if e.kind else "object"
        except UnknownResource:
            pass
        message = Invalid.from_field_errors(kind, e.name, e.errors).message
        raise CliError(f'error validating "{source}": {message}') from None


def manifest_namespace(rtype: ResourceType, obj: Message, flag: str | None) -> str:
    """The namespace a manifest's object goes to; a conflicting -n is an error, as in kubectl."""
    if not rtype.namespaced:
        return ""
    own = m.meta(obj).namespace
    if own and flag and own != flag:
        raise CliError(
            f'the namespace from the provided object "{own}" does not match the namespace'
            f' "{flag}". You must pass \'--namespace={own}\' to perform this operation.'
        )
    return str(own or flag or "default")


def load(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    if not args.filename:
        raise CliError("must specify one of -f and -k")
    return load_paths(args.filename, recursive=args.recursive)


def write_error(source: str, e: ApiError, ctx: Context) -> str:
    """How a failed write of a manifest's object is reported."""
    if isinstance(e, Invalid):
        return f'error: error validating "{source}": {e.message}'
    return api_error_text(e, ctx)


# ---------------------------------------------------------------------------- apply


def applied_configuration(
    rtype: ResourceType, doc: dict[str, Any], namespace: str
) -> dict[str, Any]:
    """The manifest as kubectl records it: namespace filled in, without its own annotation."""
    applied = copy.deepcopy(doc)
    metadata = applied.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
        applied["metadata"] = metadata
    if rtype.namespaced:
        metadata["namespace"] = namespace
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
        if not annotations:
            del metadata["annotations"]
    return applied


async def apply_one(client: ApiClient, ctx: Context, source: str, doc: dict[str, Any],
                    flag_namespace: str | None) -> str:
    rtype, obj = decode(source, doc)
    meta = m.meta(obj)
    if not meta.name:
        if meta.generate_name:
            raise CliError(f"from {source}: cannot use generate name with apply")
        raise CliError(
            f'error validating "{source}": {rtype.qualified_kind} "" is invalid: metadata.name:'
            " Required value: name or generateName is required"
        )
    namespace = manifest_namespace(rtype, obj, flag_namespace)
    applied = applied_configuration(rtype, doc, namespace)
    recorded = json.dumps(applied, sort_keys=True, separators=(",", ":")) + "\n"
    modified = copy.deepcopy(applied)
    modified["metadata"].setdefault("annotations", {})[LAST_APPLIED] = recorded
    label = resource_name(rtype, meta.name)
    try:
        live = await client.get(rtype.message, meta.name, namespace)
    except NotFound:
        _, new = decode(source, modified)
        try:
            await client.create(new, namespace)
        except ApiError as e:
            raise _WriteFailed(write_error(source, e, ctx)) from e
        return f"{label} created"
    current = convert.to_dict(rtype, live)
    original: dict[str, Any] = {}
    recorded_before = m.meta(live).annotations.get(LAST_APPLIED)
    if recorded_before is None:
        err(f"Warning: resource {rtype.plural}/{meta.name} is missing the {LAST_APPLIED}"
            " annotation which is required by klctl apply. klctl apply should only be used on"
            " resources created declaratively by either klctl create --save-config or klctl"
            " apply. The missing annotation will be patched automatically.")
    else:
        try:
            loaded = json.loads(recorded_before)
            original = loaded if isinstance(loaded, dict) else {}
        except (ValueError, RecursionError):  # unreadable: as if there were none
            original = {}
    try:
        # kubectl's three-way strategic merge patch: lists such as containers or env merge
        # by their keys, so what other writers added to the live object stays.
        patch = strategic_merge.three_way_patch(original, modified, current, rtype.message)
    except strategic_merge.PatchError as e:
        raise _WriteFailed(f'error: when creating the patch for "{source}": {e}') from e
    if not patch:
        return f"{label} unchanged"
    try:
        updated = await client.patch(rtype.message, meta.name, patch, namespace,
                                     patch_type="strategic")
    except ApiError as e:
        raise _WriteFailed(write_error(source, e, ctx)) from e
    if not changed(rtype, live, updated):
        return f"{label} unchanged"
    return f"{label} configured"


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


class _WriteFailed(KubeliteError):
    """A write failed; the message is already the complete line to print."""


async def cmd_apply(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    docs = load(args)  # a file that does not parse stops everything before any write
    if not docs:
        raise CliError("no objects passed to apply")
    failed = False
    for source, doc in docs:
        try:
            out(await apply_one(client, ctx, source, doc, args.namespace))
        except _WriteFailed as e:
            err(str(e))
            failed = True
        except CliError as e:
            err(f"error: {e}")
            failed = True
        except ApiError as e:
            if _is_connection_error(e):
                raise
            err(api_error_text(e, ctx))
            failed = True
    return 1 if failed else 0


def generated_documents(what: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """``create namespace NAME``: the manifest kubectl's generator would build."""
    if len(what) != 2 or what[0] not in ("namespace", "ns"):
        raise CliError('unknown create form: use "klctl create -f FILE" or'
                       ' "klctl create namespace NAME"')
    doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": what[1]}}
    return [("namespace", doc)]


async def cmd_create(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    if args.what and args.filename:
        raise CliError("cannot give both -f and a kind to create")
    docs = generated_documents(args.what) if args.what else load(args)
    if not docs:
        raise CliError("no objects passed to create")
    failed = False
    for source, doc in docs:
        try:
            rtype, obj = decode(source, doc)
            namespace = manifest_namespace(rtype, obj, args.namespace)
            created = await client.create(obj, namespace)
            out(f"{resource_name(rtype, m.meta(created).name)} created")
        except CliError as e:
            err(f"error: {e}")
            failed = True
        except ApiError as e:
            if _is_connection_error(e):
                raise
            err(write_error(source, e, ctx))
            failed = True
    return 1 if failed else 0


# ---------------------------------------------------------------------------- get


def no_resources(namespace: str, all_namespaces: bool, targets: Sequence[Target]) -> str:
    if all_namespaces or not any(t.rtype.namespaced for t in targets):
        return "No resources found"
    return f"No resources found in {namespace} namespace."


def check_output(output: str | None) -> None:
    allowed = ("json", "name", "wide", "yaml")
    if output is not None and output not in allowed:
        raise CliError(
            f'unable to match a printer suitable for the output format "{output}", allowed'
            f" formats are: {','.join(allowed)}"
        )


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


async def cmd_get(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    check_output(args.output)
    targets = parse_targets(args.resources, allow_all=True)
    if not targets:
        raise CliError(
            'You must specify the type of resource to get. Use "klctl api-resources" for a'
            " complete list of supported resources."
        )
    if args.all_namespaces and any(t.names for t in targets):
        raise CliError("a resource cannot be retrieved by name across all namespaces")
    namespace = "" if args.all_namespaces else namespace_of(args)
    watching = args.watch or args.watch_only
    if watching and len(targets) > 1:
        raise CliError("you may only specify a single resource type")
    if watching and len(targets[0].names) > 1:
        raise CliError("watch is only supported on individual resources and resource collections")

    results: list[tuple[Target, list[Message], str]] = []
    failed = False
    for target in targets:
        objects, revision, missing = await fetch(client, target, namespace, args, ctx)
        failed |= missing
        results.append((target, objects, revision))

    total = sum(len(objs) for _, objs, _ in results)
    single = len(targets) == 1 and len(targets[0].names) == 1
    output = args.output
    now = m.now()
    tables: dict[str, Table] = {}
    if not (watching and args.watch_only):
        if output in ("json", "yaml"):
            dicts = [convert.to_dict(t.rtype, o) for t, objs, _ in results for o in objs]
            if single and len(dicts) == 1:
                data: Any = dicts[0]
            elif single:
                data = None  # the named object was not found: the error says it all
            else:
                data = list_object(dicts)
            if data is not None:
                sys.stdout.write(to_json(data) + "\n" if output == "json" else to_yaml(data))
                sys.stdout.flush()
        elif output == "name":
            for target, objects, _ in results:
                for obj in objects:
                    out(resource_name(target.rtype, m.meta(obj).name))
        else:
            printed = 0
            show_kind = len(targets) > 1
            for target, objects, _ in results:
                table = Table(target.rtype, wide=output == "wide",
                              namespace_column=args.all_namespaces and target.rtype.namespaced,
                              show_labels=args.show_labels, show_kind=show_kind)
                tables[target.rtype.kind] = table
                if not objects:
                    continue
                if printed:
                    out()
                for line in table.render(objects, now, headers=not args.no_headers):
                    out(line)
                printed += 1
        if total == 0 and not failed and not watching:
            err(no_resources(namespace, args.all_namespaces, targets))
    if watching:
        target, _, revision = results[0]
        if total == 0 and not args.watch_only and not failed:
            err(no_resources(namespace, args.all_namespaces, targets))
        if target.names and failed:
            return 1
        table = tables.get(target.rtype.kind) or Table(
            target.rtype, wide=output == "wide",
            namespace_column=args.all_namespaces and target.rtype.namespaced,
            show_labels=args.show_labels,
        )
        header_pending = args.watch_only or total == 0
        return await watch(client, args, ctx, target, namespace, revision, table, header_pending)
    return 1 if failed else 0


async def watch(client: ApiClient, args: argparse.Namespace, ctx: Context, target: Target,
                namespace: str, revision: str, table: Table, header_pending: bool) -> int:
    """Prints one line (or object) per change until interrupted or --request-timeout."""
    field_selector = args.field_selector or ""
    if target.names:
        by_name_selector = f"metadata.name={target.names[0]}"
        field_selector = f"{field_selector},{by_name_selector}" if field_selector \
            else by_name_selector
    output = args.output
    state = {"revision": revision, "header": header_pending}

    async def stream() -> None:
        failures = 0
        while True:
            try:
                async for event in client.watch(
                    target.rtype.message,
                    namespace if target.rtype.namespaced else "",
                    label_selector=args.selector or "",
                    field_selector=field_selector,
                    resource_version=state["revision"],  # type: ignore[arg-type]
                ):
                    failures = 0
                    state["revision"] = event.resource_version
                    if event.object is None:
                        continue
                    show(event.object)
            except Expired:
                state["revision"] = ""  # start over from the current state
            except Unavailable:
                failures += 1
                if failures > 5:
                    raise
                await asyncio.sleep(min(0.2 * 2 ** failures, 2.0))

    def show(obj: Message) -> None:
        if output == "json":
            out(to_json(convert.to_dict(target.rtype, obj)))
        elif output == "yaml":
            sys.stdout.write("---\n" + to_yaml(convert.to_dict(target.rtype, obj)))
            sys.stdout.flush()
        elif output == "name":
            out(resource_name(target.rtype, m.meta(obj).name))
        else:
            if state["header"] and not args.no_headers:
                out(table.render_one(table.headers))
            state["header"] = False
            out(table.render_one(table.row(obj, m.now())))

    if ctx.explicit_timeout and ctx.request_timeout > 0:
        try:
            await asyncio.wait_for(stream(), ctx.request_timeout)
        except TimeoutError:
            pass  # the watch's time is up: a normal end, as with kubectl
        return 0
    await stream()
    return 0


# ---------------------------------------------------------------------------- describe


async def events_for(client: ApiClient, rtype: ResourceType, obj: Message) -> list[v1.Event]:
    meta = m.meta(obj)
    selector = f"involvedObject.name={meta.name}"
    if rtype.namespaced:
        selector += f",involvedObject.namespace={meta.namespace}"
    namespace = meta.namespace if rtype.namespaced else ""
    try:
        listed = await client.list(v1.Event, namespace, field_selector=selector)
        events = list(listed.items)
    except BadRequest:
        # A server without these field selectors: filter here instead.
        events = [e for e in (await client.list(v1.Event, namespace)).items
                  if e.involved_object.name == meta.name]
    return [
        e for e in events
        if (not e.involved_object.kind or e.involved_object.kind == rtype.kind)
        and (not e.involved_object.uid or e.involved_object.uid == meta.uid)
    ]


async def cmd_describe(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    targets = parse_targets(args.resources, allow_all=True)
    if not targets:
        raise CliError(
            'You must specify the type of resource to describe. Use "klctl api-resources" for'
            " a complete list of supported resources."
        )
    namespace = "" if args.all_namespaces else namespace_of(args)
    texts: list[str] = []
    failed = False
    for target in targets:
        objects, _, missing = await fetch(client, target, namespace, args, ctx)
        failed |= missing
        for obj in objects:
            events = await events_for(client, target.rtype, obj) if args.show_events else None
            texts.append(describe(target.rtype, obj, events))
    if texts:
        sys.stdout.write("\n\n".join(texts))
        sys.stdout.flush()
    elif not failed:
        err(no_resources(namespace, args.all_namespaces, targets))
    return 1 if failed else 0


# ---------------------------------------------------------------------------- delete


_CASCADE = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan",
            "true": "Background", "false": "Orphan"}


@dataclass
class Deleted:
    rtype: ResourceType
    name: str
    namespace: str
    uid: str


async def delete_targets(client: ApiClient, args: argparse.Namespace,
                         ctx: Context) -> tuple[list[tuple[ResourceType, str, str]], bool]:
    """(kind, name, namespace) to delete, and whether finding them failed somewhere."""
    found: list[tuple[ResourceType, str, str]] = []
    if args.filename:
        if args.resources:
            raise CliError("resource(s) were provided, but -f was also given")
        for source, doc in load(args):
            kind, metadata = doc.get("kind"), doc.get("metadata")
            name = metadata.get("name") if isinstance(metadata, dict) else None
            if not isinstance(kind, str) or not isinstance(name, str) or not name:
                raise CliError(f'error validating "{source}": kind and metadata.name are required')
            try:
                rtype = by_kind(kind)
            except UnknownResource as e:
                raise CliError(f'error validating "{source}": {e}') from None
            own = metadata.get("namespace") if isinstance(metadata, dict) else None
            if rtype.namespaced and isinstance(own, str) and own and args.namespace and (
                own != args.namespace
            ):
                raise CliError(
                    f'the namespace from the provided object "{own}" does not match the'
                    f' namespace "{args.namespace}". You must pass \'--namespace={own}\' to'
                    " perform this operation."
                )
            namespace = (own if isinstance(own, str) and own else namespace_of(args)) \
                if rtype.namespaced else ""
            found.append((rtype, name, namespace))
        return found, False
    targets = parse_targets(args.resources)
    if not targets:
        raise CliError("You must provide one or more resources by argument or filename.")
    named = any(t.names for t in targets)
    if named and (args.all or args.selector):
        raise CliError("name cannot be provided when a selector or --all is specified")
    if not named and not (args.all or args.selector or args.field_selector):
        raise CliError("resource(s) were provided, but no name was specified")
    namespace = "" if args.all_namespaces else namespace_of(args)
    for target in targets:
        if target.names:
            found.extend((target.rtype, n, namespace_of(args)) for n in target.names)
            continue
        listed = await client.list(
            target.rtype.message, namespace if target.rtype.namespaced else "",
            label_selector=args.selector or "", field_selector=args.field_selector or "",
        )
        found.extend((target.rtype, m.meta(o).name, m.meta(o).namespace) for o in listed.items)
    if not found:
        err(no_resources(namespace, args.all_namespaces, targets))
    return found, False


def grace_period(args: argparse.Namespace) -> int | None:
    """kubectl's rules: --now is 1; 0 without --force becomes 1; --force alone is 0."""
    grace: int = args.grace_period
    if args.now:
        if grace != -1:
            raise CliError("--now and --grace-period cannot be specified together")
        grace = 1
    if grace == 0 and not args.force:
        grace = 1
    if args.force and grace < 0:
        grace = 0
    return None if grace < 0 else grace


async def wait_gone(client: ApiClient, pending: list[Deleted], timeout: float) -> list[Deleted]:
    """Polls until each object is gone (or replaced by a new one); returns those still there."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    remaining = list(pending)
    while remaining:
        still = []
        for d in remaining:
            try:
                obj = await client.get(d.rtype.message, d.name, d.namespace or "default")
            except NotFound:
                continue
            if m.meta(obj).uid == d.uid:
                still.append(d)
        remaining = still
        if not remaining or time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 1.0)
    return remaining


async def cmd_delete(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    policy = _CASCADE.get(str(args.cascade).lower())
    if policy is None:
        raise CliError(
            f'invalid cascade value ({args.cascade}). Must be "background", "foreground", or'
            ' "orphan".'
        )
    grace = grace_period(args)
    wait = parse_bool(args.wait, "--wait")
    timeout = parse_duration(args.timeout, "--timeout") or DELETE_WAIT_DEFAULT
    if args.force and grace == 0:
        err("Warning: Immediate deletion does not wait for confirmation that the running"
            " resource has been terminated. The resource may continue to run on the cluster"
            " indefinitely.")
    found, failed = await delete_targets(client, args, ctx)
    pending: list[Deleted] = []
    for rtype, name, namespace in found:
        try:
            obj = await client.delete(
                rtype.message, name, namespace,
                grace_period_seconds=grace, propagation_policy=policy,
            )
        except NotFound as e:
            if not args.ignore_not_found:
                err(api_error_text(e, ctx))
                failed = True
            continue
        except ApiError as e:
            if _is_connection_error(e):
                raise
            err(api_error_text(e, ctx))
            failed = True
            continue
        verb = "force deleted" if args.force and grace == 0 else "deleted"
        out(f'{qualified_singular(rtype)} "{name}" {verb}')
        pending.append(Deleted(rtype, name, namespace, m.meta(obj).uid))
    if wait and pending:
        for d in await wait_gone(client, pending, timeout):
            err(f"error: timed out waiting for the condition on {d.rtype.plural}/{d.name}")
            failed = True
    return 1 if failed else 0


def parse_bool(value: str | bool, flag: str) -> bool:
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in ("true", "1", "t", "yes"):
        return True
    if text in ("false", "0", "f", "no"):
        return False
    raise CliError(f'invalid argument "{value}" for "{flag}" flag: strconv.ParseBool: parsing'
                   f' "{value}": invalid syntax')


# ---------------------------------------------------------------------------- label / annotate


def split_changes(words: Sequence[str]) -> tuple[list[str], dict[str, str], list[str]]:
    """(resource args, key=value to set, keys to remove), as kubectl splits label arguments."""
    resources: list[str] = []
    changes: dict[str, str] = {}
    removals: list[str] = []
    seen_change = False
    for word in words:
        if "=" in word:
            key, _, value = word.partition("=")
            if not key:
                raise CliError(f"invalid label spec: {word}")
            changes[key] = value
            seen_change = True
        elif word.endswith("-") and (seen_change or resources):
            if len(word) == 1:
                raise CliError(f"invalid label spec: {word}")
            removals.append(word[:-1])
            seen_change = True
        elif seen_change:
            raise CliError(f"invalid label spec: {word}")
        else:
            resources.append(word)
    for key in removals:
        if key in changes:
            raise CliError(f"can not both modify and remove the following label(s) in the same"
                           f" command: {key}")
    return resources, changes, removals


async def cmd_metadata_map(args: argparse.Namespace, client: ApiClient, ctx: Context,
                           field: str) -> int:
    """label and annotate: one merge patch of metadata.labels / metadata.annotations."""
    noun = "label" if field == "labels" else "annotation"
    verb = "labeled" if field == "labels" else "annotated"
    resources, changes, removals = split_changes(args.words)
    if args.filename:
        docs = load(args)
        objects: list[tuple[ResourceType, str, str]] = []
        for source, doc in docs:
            rtype, obj = decode(source, doc)
            objects.append((rtype, m.meta(obj).name, manifest_namespace(rtype, obj,
                                                                        args.namespace)))
    else:
        targets = parse_targets(resources)
        if not targets:
            raise CliError("one or more resources must be specified as <resource> <name> or"
                           " <resource>/<name>")
        named = any(t.names for t in targets)
        if not named and not (args.all or args.selector):
            raise CliError("resource(s) were provided, but no name was specified")
        namespace = "" if args.all_namespaces else namespace_of(args)
        objects = []
        for target in targets:
            if target.names:
                objects.extend((target.rtype, n, namespace_of(args)) for n in target.names)
                continue
            listed = await client.list(target.rtype.message,
                                       namespace if target.rtype.namespaced else "",
                                       label_selector=args.selector or "")
            objects.extend((target.rtype, m.meta(o).name, m.meta(o).namespace)
                           for o in listed.items)
    if not changes and not removals and not args.list:
        raise CliError(f"at least one {noun} update is required")
    failed = False
    for rtype, name, namespace in objects:
        try:
            current = await client.get(rtype.message, name, namespace or "default")
        except NotFound as e:
            err(api_error_text(e, ctx))
            failed = True
            continue
        existing = dict(getattr(m.meta(current), field))
        if args.list:
            for key in sorted(existing):
                out(f"{key}={existing[key]}")
            continue
        if not args.overwrite:
            clashes = [k for k, v in changes.items() if k in existing and existing[k] != v]
            if clashes:
                err("error: " + "\n".join(
                    f"'{k}' already has a value ({existing[k]}), and --overwrite is false"
                    for k in clashes))
                failed = True
                continue
        patch_values: dict[str, str | None] = {
            k: v for k, v in changes.items() if existing.get(k) != v
        }
        for key in removals:
            if key in existing:
                patch_values[key] = None
            else:
                err(f'{noun} "{key}" not found.')
        label = resource_name(rtype, name)
        if not patch_values:
            out(f"{label} not {verb}")
            continue
        patch: dict[str, Any] = {"metadata": {field: patch_values}}
        if args.resource_version:
            patch["metadata"]["resourceVersion"] = args.resource_version
        try:
            await client.patch(rtype.message, name, patch, namespace)
        except ApiError as e:
            if _is_connection_error(e):
                raise
            err(api_error_text(e, ctx))
            failed = True
            continue
        out(f"{label} {verb}")
    return 1 if failed else 0


# ---------------------------------------------------------------------------- patch


PATCH_TYPES = {"strategic": "a strategic merge patch", "merge": "a JSON merge patch",
               "json": "a JSON patch (--type json)"}
"""klctl patch --type: strategic (kubectl's default for built-in kinds), merge, json."""


def parse_patch(text: str, patch_type: str) -> dict[str, Any] | list[Any]:
    """The patch document of ``-p``/``--patch-file``: JSON, or YAML as kubectl accepts."""
    try:
        try:
            data = json.loads(text)
        except ValueError:
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise CliError(f'unable to parse "{text}": {e}') from None
    except RecursionError:
        raise CliError(
            f"unable to parse the patch: it nests objects and lists more than"
            f" {strategic_merge.MAX_DEPTH} levels deep"
        ) from None
    if patch_type == "json":
        if not isinstance(data, list):
            raise CliError(f'unable to parse "{text}": {PATCH_TYPES[patch_type]} must be a list'
                           ' of operations, such as [{"op": "replace", "path": "/spec/replicas",'
                           ' "value": 3}]')
        return data
    if not isinstance(data, dict):
        raise CliError(f'unable to parse "{text}": {PATCH_TYPES[patch_type]} must be a JSON'
                       " object")
    return data


async def cmd_patch(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    if args.type not in PATCH_TYPES:
        raise CliError(f"--type {args.type} is not supported: use one of"
                       f" {', '.join(PATCH_TYPES)}")
    if args.patch is None and args.patch_file is None:
        raise CliError("must specify -p to patch")
    if args.patch is not None and args.patch_file is not None:
        raise CliError("cannot specify --patch and --patch-file together")
    text = args.patch
    if args.patch_file is not None:
        try:
            text = await asyncio.to_thread(Path(args.patch_file).read_text, encoding="utf-8")
        except OSError as e:
            raise CliError(f"unable to read patch file: {e.strerror or e}") from None
    patch = parse_patch(text, args.type)
    if args.subresource not in ("", "status"):
        raise CliError(f'invalid subresource value: "{args.subresource}". Must be one of'
                       ' [status]')
    targets = parse_targets(args.resources)
    names = [(t.rtype, n) for t in targets for n in t.names]
    if not names:
        raise CliError("resource(s) were provided, but no name was specified")
    failed = False
    for rtype, name in names:
        namespace = namespace_of(args) if rtype.namespaced else ""
        try:
            before = await client.get(rtype.message, name, namespace or "default")
            after = await client.patch(rtype.message, name, patch, namespace,
                                       subresource=args.subresource, patch_type=args.type)
        except ApiError as e:
            if _is_connection_error(e):
                raise
            err(api_error_text(e, ctx))
            failed = True
            continue
        label = resource_name(rtype, name)
        out(f"{label} patched" if changed(rtype, before, after) else f"{label} patched (no change)")
    return 1 if failed else 0


# ---------------------------------------------------------------- version / api-resources


def client_version() -> str:
    try:
        return "v" + version("kubelite")
    except PackageNotFoundError:  # running from a source tree
        return "v0.0.0-unknown"


async def cmd_logs(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    name = args.pod.split("/", 1)[1] if args.pod.startswith(("pod/", "pods/", "po/")) else args.pod
    stream = client.pod_logs(
        namespace_of(args), name, args.container or "", follow=args.follow,
        previous=args.previous, tail_lines=args.tail,
    )
    async for data in stream:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return 0


async def cmd_exec(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    if not args.command_line:
        raise CliError("you must specify at least one command for the container")
    name = args.pod.split("/", 1)[1] if args.pod.startswith(("pod/", "pods/", "po/")) else args.pod
    stdin = sys.stdin.buffer.read() if args.stdin else b""
    code = 0
    async for fd, data in client.pod_exec(namespace_of(args), name, args.command_line,
                                          args.container or "", stdin=stdin):
        if fd == -1:
            code = int(data or b"0")
            continue
        stream = sys.stdout.buffer if fd == 1 else sys.stderr.buffer
        stream.write(data)
        stream.flush()
    if code != 0:
        err(f"command terminated with exit code {code}")
    return code


async def cmd_version(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    out(f"Client Version: {client_version()}")
    if args.client:
        return 0
    stub = health_pb2_grpc.HealthStub(client.channel)
    try:
        response = await stub.Check(health_pb2.HealthCheckRequest(service=""),
                                    timeout=ctx.request_timeout)
    except grpc.aio.AioRpcError as e:
        raise CliError(f"cannot reach the API server at {ctx.server}: {e.details()}") from None
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    out(f"Server: {ctx.server} ({status})")
    return 0


async def cmd_api_resources(args: argparse.Namespace, client: ApiClient | None,
                            ctx: Context) -> int:
    check = args.namespaced
    rows = []
    core = sorted((r for r in RESOURCES if not r.group), key=lambda r: r.plural)
    grouped = sorted((r for r in RESOURCES if r.group), key=lambda r: (r.group, r.plural))
    for r in core + grouped:
        if check is not None and r.namespaced != parse_bool(check, "--namespaced"):
            continue
        rows.append(r)
    if args.output == "name":
        for r in rows:
            out(f"{r.plural}.{r.group}" if r.group else r.plural)
        return 0
    if args.output not in (None, "wide"):
        raise CliError(f'--output {args.output} is not available')
    table = [["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]]
    table += [[r.plural, ",".join(r.short_names), r.api_version,
               "true" if r.namespaced else "false", r.kind] for r in rows]
    for line in render_table(table[1:] if args.no_headers else table):
        out(line)
    return 0


# ---------------------------------------------------------------------------- rollout, scale, set

_REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
_CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
_RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
# A Deployment's own annotations, never copied back from a ReplicaSet on rollback.
_ROLLBACK_SKIPPED_ANNOTATIONS = frozenset({
    LAST_APPLIED, _REVISION_ANNOTATION, "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas", "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
})
_SCALABLE_KINDS = ("Deployment", "ReplicaSet", "StatefulSet")


def _one_target(resources: Sequence[str], verb: str) -> tuple[ResourceType, list[str]]:
    targets = parse_targets(resources)
    if not targets:
        raise CliError(f"required resource not specified (e.g. klctl {verb} deployment/web)")
    names = [n for t in targets for n in t.names]
    if not names:
        raise CliError("resource(s) were provided, but no name was specified")
    if len(targets) > 1:
        raise CliError(f"{verb} works on one kind at a time")
    return targets[0].rtype, names


def _require_deployment(rtype: ResourceType, verb: str) -> None:
    if rtype.kind != "Deployment":
        raise CliError(f"no {verb} has been implemented for {rtype.qualified_kind!r}")


def _revision_of(obj: v1.ReplicaSet | v1.Deployment) -> int:
    try:
        return int(obj.metadata.annotations.get(_REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


def rollout_status_line(d: v1.Deployment) -> tuple[str, bool]:
    """kubectl's DeploymentStatusViewer: the line to print and whether the rollout is done."""
    name = d.metadata.name
    status = d.status
    if d.metadata.generation > status.observed_generation:
        return "Waiting for deployment spec update to be observed...", False
    for condition in status.conditions:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            raise CliError(f'deployment "{name}" exceeded its progress deadline')
    replicas = d.spec.replicas
    if status.updated_replicas < replicas:
        return (f'Waiting for deployment "{name}" rollout to finish: {status.updated_replicas}'
                f" out of {replicas} new replicas have been updated..."), False
    if status.replicas > status.updated_replicas:
        return (f'Waiting for deployment "{name}" rollout to finish:'
                f" {status.replicas - status.updated_replicas} old replicas are pending"
                " termination..."), False
    if status.available_replicas < status.updated_replicas:
        return (f'Waiting for deployment "{name}" rollout to finish:'
                f" {status.available_replicas} of {status.updated_replicas} updated replicas"
                " are available..."), False
    return f'deployment "{name}" successfully rolled out', True


async def _rollout_status(args: argparse.Namespace, client: ApiClient, ctx: Context,
                          rtype: ResourceType, name: str, namespace: str) -> int:
    _require_deployment(rtype, "status viewer")
    watch_changes = parse_bool(args.watch, "--watch")
    timeout = parse_duration(args.timeout, "--timeout") if args.timeout else 0.0
    last = ""

    def show(d: v1.Deployment) -> bool:
        nonlocal last
        if args.revision:
            running = _revision_of(d)
            if running != args.revision:
                raise CliError(f"desired revision ({args.revision}) is different from the"
                               f" running revision ({running})")
        line, done = rollout_status_line(d)
        if line != last:
            out(line)
            last = line
        return done

    async def follow() -> None:
        failures = 0
        while True:
            d = await client.get(v1.Deployment, name, namespace)
            if show(d) or not watch_changes:
                return
            try:
                async for event in client.watch(v1.Deployment, namespace,
                                                field_selector=f"metadata.name={name}",
                                                resource_version=d.metadata.resource_version):
                    failures = 0
                    if event.object is None:
                        continue
                    if event.type == "DELETED":
                        raise CliError(f'deployment "{name}" was deleted')
                    if show(event.object):
                        return
            except (Expired, Unavailable):
                failures += 1
                if failures > 5:
                    raise
                await asyncio.sleep(min(0.2 * 2 ** failures, 2.0))

    if timeout > 0:
        try:
            await asyncio.wait_for(follow(), timeout)
        except TimeoutError:
            raise CliError("timed out waiting for the condition") from None
    else:
        await follow()
    return 0


async def _owned_replica_sets(client: ApiClient, d: v1.Deployment) -> list[v1.ReplicaSet]:
    result = await client.list(v1.ReplicaSet, d.metadata.namespace)
    return [rs for rs in result.items if m.is_controlled_by(rs, d)]


async def _rollout_history(args: argparse.Namespace, client: ApiClient, ctx: Context,
                           rtype: ResourceType, name: str, namespace: str) -> int:
    _require_deployment(rtype, "history viewer")
    d = await client.get(v1.Deployment, name, namespace)
    history = {_revision_of(rs): rs for rs in await _owned_replica_sets(client, d)}
    history.pop(0, None)
    label = resource_name(rtype, name)
    if args.revision:
        rs = history.get(args.revision)
        if rs is None:
            raise CliError(f"unable to find the specified revision {args.revision}")
        out(f"{label} with revision #{args.revision}")
        out("Pod Template:")
        template = convert.message_to_dict(rs.spec.template)
        for line in to_yaml(template).splitlines():
            out(f"  {line}")
        return 0
    out(f"{label} ")
    rows = [("REVISION", "CHANGE-CAUSE")]
    for revision in sorted(history):
        cause = history[revision].metadata.annotations.get(_CHANGE_CAUSE_ANNOTATION, "")
        rows.append((str(revision), cause or "<none>"))
    width = max(len(r[0]) for r in rows) + 2  # kubectl's tabwriter: two spaces of padding
    for revision_text, cause in rows:
        out(f"{revision_text:<{width}}{cause}")
    out()
    return 0


async def _rollout_undo(args: argparse.Namespace, client: ApiClient, ctx: Context,
                        rtype: ResourceType, name: str, namespace: str) -> int:
    """Kubernetes 1.x rollback, done client side: the chosen revision's template (and its
    change-cause) goes back into the Deployment, which rolls it out as a new revision."""
    _require_deployment(rtype, "rollbacker")
    label = resource_name(rtype, name)
    for _ in range(5):
        d = await client.get(v1.Deployment, name, namespace)
        if d.spec.paused:
            raise CliError(f"you cannot rollback a paused deployment; resume it first with"
                           f" 'klctl rollout resume {label}' and try again")
        history = {_revision_of(rs): rs for rs in await _owned_replica_sets(client, d)}
        history.pop(0, None)
        to_revision = args.to_revision
        if to_revision == 0:
            revisions = sorted(history, reverse=True)
            if len(revisions) < 2:
                raise CliError(f'no rollout history found for deployment "{name}"')
            to_revision = revisions[1]
        rs = history.get(to_revision)
        if rs is None:
            raise CliError(f"unable to find specified revision {to_revision} in history")
        template = podtemplate.without_hash(rs.spec.template)
        if podtemplate.equal_ignore_hash(template, d.spec.template):
            out(f"{label} skipped rollback (current template already matches revision"
                f" {to_revision})")
            return 0
        updated = m.copy(d)
        updated.spec.template.CopyFrom(template)
        for key, value in rs.metadata.annotations.items():
            if key not in _ROLLBACK_SKIPPED_ANNOTATIONS:
                updated.metadata.annotations[key] = value
        try:
            await client.update(updated)
        except Conflict:
            continue
        out(f"{label} rolled back")
        return 0
    raise CliError(f"could not roll back {label}: it kept changing")


async def _rollout_patch(args: argparse.Namespace, client: ApiClient, ctx: Context,
                         rtype: ResourceType, name: str, namespace: str) -> int:
    """pause, resume and restart: one field of the Deployment."""
    _require_deployment(rtype, args.action)
    label = resource_name(rtype, name)
    d = await client.get(v1.Deployment, name, namespace)
    quoted = f'{rtype.plural}.{rtype.group} "{name}"'
    patch: dict[str, Any]
    if args.action == "pause":
        if d.spec.paused:
            raise CliError(f"{quoted} is already paused")
        patch, done = {"spec": {"paused": True}}, "paused"
    elif args.action == "resume":
        if not d.spec.paused:
            raise CliError(f"{quoted} is not paused")
        patch, done = {"spec": {"paused": None}}, "resumed"
    else:
        if d.spec.paused:
            raise CliError(f"{quoted} can't restart paused deployment (run rollout resume"
                           " first)")
        stamp = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        patch = {"spec": {"template": {"metadata": {"annotations": {
            _RESTARTED_AT_ANNOTATION: stamp}}}}}
        done = "restarted"
    await client.patch(v1.Deployment, name, patch, namespace)
    out(f"{label} {done}")
    return 0


async def cmd_rollout(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    actions = {"status": _rollout_status, "history": _rollout_history, "undo": _rollout_undo,
               "pause": _rollout_patch, "resume": _rollout_patch, "restart": _rollout_patch}
    action = actions.get(args.action)
    if action is None:
        raise CliError(f'unknown command "{args.action}" for "klctl rollout"; one of:'
                       f" {', '.join(actions)}")
    rtype, names = _one_target(args.resources, f"rollout {args.action}")
    namespace = namespace_of(args)
    code = 0
    for name in names:
        code = max(code, await action(args, client, ctx, rtype, name, namespace))
    return code


async def cmd_scale(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    if args.replicas is None:
        raise CliError("required flag(s) \"replicas\" not set")
    if args.replicas < 0:
        raise CliError("The --replicas=COUNT flag is required, and COUNT must be greater than"
                       " or equal to 0")
    rtype, names = _one_target(args.resources, "scale")
    if rtype.kind not in _SCALABLE_KINDS:
        raise CliError(f"cannot scale {rtype.plural}: only deployments, replicasets and"
                       " statefulsets have a scale")
    namespace = namespace_of(args)
    failed = False
    for name in names:
        patch: dict[str, Any] = {"spec": {"replicas": args.replicas}}
        try:
            if args.current_replicas is not None:
                current = await client.get(rtype.message, name, namespace)
                have = current.spec.replicas  # type: ignore[attr-defined]
                if have != args.current_replicas:
                    raise CliError(f"Expected replicas to be {args.current_replicas}, was {have}")
                patch["metadata"] = {"resourceVersion": m.meta(current).resource_version}
            await client.patch(rtype.message, name, patch, namespace)
        except ApiError as e:
            if _is_connection_error(e):
                raise
            err(api_error_text(e, ctx))
            failed = True
            continue
        out(f"{resource_name(rtype, name)} scaled")
    return 1 if failed else 0


def _pod_spec_of(obj: Message) -> v1.PodSpec | None:
    if isinstance(obj, v1.Pod):
        return obj.spec
    if isinstance(obj, v1.CronJob):
        return obj.spec.job_template.spec.template.spec
    spec = getattr(obj, "spec", None)
    template = getattr(spec, "template", None)
    if isinstance(template, v1.PodTemplateSpec):
        return template.spec
    return None


def set_images(spec: v1.PodSpec, images: dict[str, str]) -> list[str]:
    """Sets container images by name (``*`` for all); returns the names not found."""
    containers = [*spec.init_containers, *spec.containers]
    missing = []
    for wanted, image in images.items():
        found = False
        for container in containers:
            if wanted in ("*", container.name):
                container.image = image
                found = True
        if not found:
            missing.append(wanted)
    return missing


async def cmd_set(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    if args.what != "image":
        raise CliError(f'unknown command "{args.what}" for "klctl set"; supported: image')
    resources = [w for w in args.words if "=" not in w]
    images: dict[str, str] = {}
    for word in args.words:
        if "=" in word:
            container, _, image = word.partition("=")
            if not container or not image:
                raise CliError(f"invalid image update {word!r}: expected CONTAINER=IMAGE")
            images[container] = image
    if not images:
        raise CliError("at least one image update is required")
    rtype, names = _one_target(resources, "set image")
    namespace = namespace_of(args)
    failed = False
    for name in names:
        try:
            for _ in range(5):
                obj = await client.get(rtype.message, name, namespace)
                spec = _pod_spec_of(obj)
                if spec is None:
                    raise CliError(f"{rtype.plural} have no pod template to set an image in")
                missing = set_images(spec, images)
                if missing:
                    raise CliError(f'unable to find container named "{missing[0]}"')
                try:
                    await client.update(obj)
                    break
                except Conflict:
                    continue
            else:
                raise CliError(f"could not update {resource_name(rtype, name)}: it kept"
                               " changing")
        except ApiError as e:
            if _is_connection_error(e):
                raise
            err(api_error_text(e, ctx))
            failed = True
            continue
        out(f"{resource_name(rtype, name)} image updated")
    return 1 if failed else 0


# ---------------------------------------------------------------------------- arguments


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        err(f"error: {message}")
        err(f"See '{self.prog} --help' for usage.")
        raise _UsageError(message)


Handler = Callable[[argparse.Namespace, ApiClient, Context], Awaitable[int]]


def _add_namespace(p: argparse.ArgumentParser, all_namespaces: bool = True) -> None:
    p.add_argument("-n", "--namespace", help="the namespace of the objects")
    if all_namespaces:
        p.add_argument("-A", "--all-namespaces", action="store_true",
                       help="across all namespaces")


def _add_files(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("-f", "--filename", action="append", default=[], required=required,
                   help="a file, a directory or - for standard input (repeatable)")
    p.add_argument("-R", "--recursive", action="store_true",
                   help="process the directory given with -f recursively")


class _Commands:
    """Sub-command parsers, each parsed on its own with options and arguments intermixed.

    argparse's subparsers cannot parse ``get pods -n ns web`` (a positional after an option);
    parse_intermixed_args can, but not through subparsers, so each command is its own parser
    and the global flags are accepted before or after the command.
    """

    def __init__(self) -> None:
        self.parsers: dict[str, _Parser] = {}
        self.helps: dict[str, str] = {}

    def add_parser(self, name: str, help: str) -> _Parser:
        p = _Parser(prog=f"klctl {name}", description=help)
        _add_globals(p, default=None)
        self.parsers[name] = p
        self.helps[name] = help
        return p


def _add_globals(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument("-s", "--server", default=default,
                   help="the address of the API server (host:port)")
    p.add_argument("--request-timeout", default=default,
                   help="how long to wait for a single request (e.g. 5s, 1m; 0: no limit)")


def build_parser() -> tuple[argparse.ArgumentParser, _Commands]:
    sub = _Commands()
    _build_commands(sub)
    epilog = "commands:\n" + "\n".join(f"  {n:<15}{h}" for n, h in sub.helps.items())
    parser = _Parser(prog="klctl", description="klctl controls a kubelite cluster.",
                     epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_globals(parser, default=None)
    parser.add_argument("-n", "--namespace", help="the namespace of the objects")
    parser.add_argument("command", nargs="?", metavar="COMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    return parser, sub


def _build_commands(sub: _Commands) -> None:
    p = sub.add_parser("apply", help="apply a configuration to objects by file name or stdin")
    _add_files(p)
    _add_namespace(p, all_namespaces=False)
    p.set_defaults(handler=cmd_apply)

    p = sub.add_parser("create", help="create objects from a file or stdin")
    p.add_argument("what", nargs="*", metavar="namespace NAME",
                   help="create a namespace without a manifest")
    _add_files(p)
    _add_namespace(p, all_namespaces=False)
    p.set_defaults(handler=cmd_create)

    p = sub.add_parser("get", help="display one or many objects")
    p.add_argument("resources", nargs="*", metavar="KIND[,KIND] [NAME...]")
    _add_namespace(p)
    p.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier!=db")
    p.add_argument("--field-selector", help="field selector, e.g. status.phase=Running")
    p.add_argument("-o", "--output", help="wide, yaml, json or name")
    p.add_argument("-w", "--watch", action="store_true", help="watch for changes after listing")
    p.add_argument("--watch-only", action="store_true", help="watch for changes without listing")
    p.add_argument("--show-labels", action="store_true", help="add a LABELS column")
    p.add_argument("--no-headers", action="store_true", help="print tables without headers")
    p.set_defaults(handler=cmd_get)

    p = sub.add_parser("logs", help="print the logs of a container in a pod")
    p.add_argument("pod", metavar="POD")
    p.add_argument("-c", "--container", help="the container (default: the only one)")
    p.add_argument("-f", "--follow", action="store_true", help="stream new output")
    p.add_argument("-p", "--previous", action="store_true",
                   help="the previous instance of the container")
    p.add_argument("--tail", type=int, default=-1, help="lines from the end (-1: all)")
    _add_namespace(p, all_namespaces=False)
    p.set_defaults(handler=cmd_logs)

    p = sub.add_parser("exec", help="run a command in a container: exec POD [-c C] -- CMD")
    p.add_argument("pod", metavar="POD")
    p.add_argument("-c", "--container", help="the container (default: the only one)")
    p.add_argument("-i", "--stdin", action="store_true", help="pass stdin to the command")
    _add_namespace(p, all_namespaces=False)
    p.set_defaults(handler=cmd_exec, command_line=[])

    p = sub.add_parser("describe", help="show details of objects")
    p.add_argument("resources", nargs="*", metavar="KIND [NAME...]")
    _add_namespace(p)
    p.add_argument("-l", "--selector")
    p.add_argument("--field-selector")
    p.add_argument("--show-events", type=lambda v: parse_bool(v, "--show-events"), default=True)
    p.set_defaults(handler=cmd_describe)

    p = sub.add_parser("delete", help="delete objects by name, file or selector")
    p.add_argument("resources", nargs="*", metavar="KIND [NAME...]")
    _add_files(p)
    _add_namespace(p)
    p.add_argument("-l", "--selector")
    p.add_argument("--field-selector")
    p.add_argument("--all", action="store_true", help="every object of the kind(s)")
    p.add_argument("--cascade", default="background",
                   help="background (default), foreground or orphan")
    p.add_argument("--grace-period", type=int, default=-1,
                   help="seconds the object gets to terminate (-1: its own default)")
    p.add_argument("--now", action="store_true", help="same as --grace-period=1")
    p.add_argument("--force", action="store_true",
                   help="with --grace-period=0: remove at once, without waiting for the kubelet")
    p.add_argument("--wait", nargs="?", const="true", default="true",
                   help="wait until the objects are gone (default true)")
    p.add_argument("--timeout", default="0s", help="how long to wait (0: a week)")
    p.add_argument("--ignore-not-found", action="store_true")
    p.set_defaults(handler=cmd_delete)

    for verb, field in (("label", "labels"), ("annotate", "annotations")):
        p = sub.add_parser(verb, help=f"update the {field} of objects")
        p.add_argument("words", nargs="*", metavar="KIND NAME KEY=VAL... KEY-...")
        p.add_argument("-f", "--filename", action="append", default=[])
        p.add_argument("-R", "--recursive", action="store_true")
        _add_namespace(p)
        p.add_argument("-l", "--selector")
        p.add_argument("--all", action="store_true")
        p.add_argument("--overwrite", action="store_true",
                       help="allow changing the value of an existing key")
        p.add_argument("--list", action="store_true", help="print the current values")
        p.add_argument("--resource-version", default="",
                       help="only update if the object is still at this resourceVersion")
        p.set_defaults(handler=_metadata_handler(field))

    p = sub.add_parser("patch", help="update fields of an object with a strategic merge patch,"
                       " a JSON merge patch or a JSON patch")
    p.add_argument("resources", nargs="*", metavar="KIND NAME")
    _add_namespace(p, all_namespaces=False)
    p.add_argument("-p", "--patch", help="the patch, as JSON or YAML")
    p.add_argument("--patch-file", help="a file holding the patch")
    p.add_argument("--type", default="strategic",
                   help="strategic (the default: lists such as containers merge by name),"
                   " merge (RFC 7386: lists are replaced) or json (RFC 6902 operations)")
    p.add_argument("--subresource", default="", help="status to patch the status")
    p.set_defaults(handler=cmd_patch)

    p = sub.add_parser("version", help="print the client version and check the server")
    p.add_argument("--client", action="store_true", help="client version only")
    p.set_defaults(handler=cmd_version)

    p = sub.add_parser("api-resources", help="list the kinds the server serves")
    p.add_argument("--namespaced", default=None)
    p.add_argument("-o", "--output")
    p.add_argument("--no-headers", action="store_true")
    p.set_defaults(handler=cmd_api_resources, offline=True)

    p = sub.add_parser("rollout", help="manage the rollout of a deployment:"
                       " status, history, undo, pause, resume, restart")
    p.add_argument("action", metavar="ACTION",
                   help="status, history, undo, pause, resume or restart")
    p.add_argument("resources", nargs="*", metavar="KIND NAME | KIND/NAME")
    _add_namespace(p, all_namespaces=False)
    p.add_argument("--to-revision", type=int, default=0,
                   help="undo: the revision to roll back to (0: the previous one)")
    p.add_argument("--revision", type=int, default=0,
                   help="history: show this revision's template; status: expect it")
    p.add_argument("-w", "--watch", nargs="?", const="true", default="true",
                   help="status: wait until the rollout is done (default true)")
    p.add_argument("--timeout", default="", help="status: how long to wait (e.g. 2m)")
    p.set_defaults(handler=cmd_rollout)

    p = sub.add_parser("scale", help="set the replicas of a deployment, replicaset or"
                       " statefulset")
    p.add_argument("resources", nargs="*", metavar="KIND NAME | KIND/NAME")
    _add_namespace(p, all_namespaces=False)
    p.add_argument("--replicas", type=int, help="the new number of replicas")
    p.add_argument("--current-replicas", type=int,
                   help="only scale if the object has this many replicas now")
    p.set_defaults(handler=cmd_scale)

    p = sub.add_parser("set", help="update fields of objects: set image KIND/NAME C=IMAGE")
    p.add_argument("what", metavar="image")
    p.add_argument("words", nargs="*", metavar="KIND/NAME CONTAINER=IMAGE...")
    _add_namespace(p, all_namespaces=False)
    p.set_defaults(handler=cmd_set)


def _metadata_handler(field: str) -> Handler:
    async def handler(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
        return await cmd_metadata_map(args, client, ctx, field)

    return handler


# ---------------------------------------------------------------------------- main


async def _run(args: argparse.Namespace, ctx: Context) -> int:
    handler: Handler = args.handler
    if getattr(args, "offline", False):
        return await cmd_api_resources(args, None, ctx)
    # A command line fails fast when the server is down rather than waiting for it.
    async with ApiClient(ctx.server, timeout=ctx.request_timeout, wait_for_ready=False) as client:
        return await handler(args, client, ctx)


def run(argv: Sequence[str]) -> int:
    """Runs one klctl command line and returns its exit status."""
    parser, commands = build_parser()
    try:
        top = parser.parse_args(list(argv))
        if not top.command:
            parser.print_help(sys.stderr)
            return 1
        command = commands.parsers.get(top.command)
        if command is None:
            err(f'error: unknown command "{top.command}" for "klctl"')
            err("Run 'klctl --help' for usage.")
            return 1
        rest: list[str] = list(top.args)
        command_line: list[str] = []
        if top.command == "exec" and "--" in rest:
            at = rest.index("--")
            rest, command_line = rest[:at], rest[at + 1 :]
        args = command.parse_intermixed_args(rest)
        if top.command == "exec":
            args.command_line = command_line
    except _UsageError:
        return 1
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    for name in ("server", "request_timeout", "namespace"):
        if getattr(args, name, None) is None and getattr(top, name) is not None:
            setattr(args, name, getattr(top, name))
    try:
        server = resolve_server(args.server)
        if args.request_timeout is None:
            timeout, explicit = DEFAULT_REQUEST_TIMEOUT, False
        else:
            timeout = parse_duration(args.request_timeout, "--request-timeout")
            explicit = True
        ctx = Context(server.address, timeout or NO_TIMEOUT, explicit and timeout > 0)
        return asyncio.run(_run(args, ctx))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `klctl get ... | head`: the reader has gone, nothing to say
        return 141
    except (CliError, ConfigError, UnknownResource) as e:
        err(f"error: {e}")
    except ManifestError as e:
        err(f"error: {e}")
    except _WriteFailed as e:
        err(str(e))
    except ApiError as e:
        err(api_error_text(e, ctx))
    except Exception as e:  # noqa: BLE001  # the promise: an error line, never a traceback
        err(f"error: {type(e).__name__}: {e}")
    return 1


def main(argv: list[str] | None = None) -> int:
    """klctl's entry point.

    Called with ``argv`` (tests, other code) it returns the exit status; as the console
    script (no ``argv``) it raises SystemExit with it so the process exits non-zero on failure.
    """
    if argv is not None:
        return run(argv)
    code = run(sys.argv[1:])
    if code == 141:
        # Keep the interpreter's final flush from complaining about the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(code)


if __name__ == "__main__":
    sys.exit(main())
