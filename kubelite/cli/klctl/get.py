"""``get``: tables, -o wide|name|yaml|json, and ``--watch``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from google.protobuf.message import Message

from kubelite.api import convert
from kubelite.api import meta as m
from kubelite.api.errors import Expired, Unavailable
from kubelite.cli.klctl.context import Context
from kubelite.cli.klctl.errors import CliError
from kubelite.cli.klctl.flags import Commands, add_namespace
from kubelite.cli.klctl.output import err, out
from kubelite.cli.klctl.resources import Target, fetch, namespace_of, no_resources, parse_targets
from kubelite.cli.printers.formats import resource_name
from kubelite.cli.printers.serialize import list_object, to_json, to_yaml
from kubelite.cli.printers.tables import Table
from kubelite.client.client import ApiClient


def check_output(output: str | None) -> None:
    allowed = ("json", "name", "wide", "yaml")
    if output is not None and output not in allowed:
        raise CliError(
            f'unable to match a printer suitable for the output format "{output}", allowed'
            f" formats are: {','.join(allowed)}"
        )


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


def register(commands: Commands) -> None:
    p = commands.add_parser("get", help="display one or many objects")
    p.add_argument("resources", nargs="*", metavar="KIND[,KIND] [NAME...]")
    add_namespace(p)
    p.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier!=db")
    p.add_argument("--field-selector", help="field selector, e.g. status.phase=Running")
    p.add_argument("-o", "--output", help="wide, yaml, json or name")
    p.add_argument("-w", "--watch", action="store_true", help="watch for changes after listing")
    p.add_argument("--watch-only", action="store_true", help="watch for changes without listing")
    p.add_argument("--show-labels", action="store_true", help="add a LABELS column")
    p.add_argument("--no-headers", action="store_true", help="print tables without headers")
    p.set_defaults(handler=cmd_get)
