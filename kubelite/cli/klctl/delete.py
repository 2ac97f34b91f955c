"""``delete`` by name, file or selector; cascades, grace periods, waiting."""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

from kubelite.api import meta as m
from kubelite.api.errors import NotFound
from kubelite.api.registry import ResourceType, UnknownResource, by_kind
from kubelite.cli.klctl.batch import for_each_object
from kubelite.cli.klctl.context import Context
from kubelite.cli.klctl.errors import CliError
from kubelite.cli.klctl.flags import Commands, add_files, add_namespace, parse_bool, parse_duration
from kubelite.cli.klctl.manifests import load
from kubelite.cli.klctl.output import err
from kubelite.cli.klctl.resources import (
    namespace_of,
    no_resources,
    parse_targets,
    qualified_singular,
)
from kubelite.client.client import ApiClient

DELETE_WAIT_DEFAULT = 7 * 24 * 3600.0
"""kubectl's --timeout=0 on delete: wait "as long as it takes" (a week)."""


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
    verb = "force deleted" if args.force and grace == 0 else "deleted"
    pending: list[Deleted] = []

    async def delete(item: tuple[ResourceType, str, str]) -> str | None:
        rtype, name, namespace = item
        try:
            obj = await client.delete(
                rtype.message, name, namespace,
                grace_period_seconds=grace, propagation_policy=policy,
            )
        except NotFound:
            if args.ignore_not_found:
                return None
            raise
        pending.append(Deleted(rtype, name, namespace, m.meta(obj).uid))
        return f'{qualified_singular(rtype)} "{name}" {verb}'

    code = max(int(failed), await for_each_object(found, ctx, delete))
    if wait and pending:
        for d in await wait_gone(client, pending, timeout):
            err(f"error: timed out waiting for the condition on {d.rtype.plural}/{d.name}")
            code = 1
    return code


def register(commands: Commands) -> None:
    p = commands.add_parser("delete", help="delete objects by name, file or selector")
    p.add_argument("resources", nargs="*", metavar="KIND [NAME...]")
    add_files(p)
    add_namespace(p)
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
