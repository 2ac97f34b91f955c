"""``describe``: kubectl's describe text, with the object's events."""

from __future__ import annotations

import argparse
import sys

from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.errors import BadRequest
from kubelite.api.registry import ResourceType
from kubelite.cli.klctl.context import Context
from kubelite.cli.klctl.errors import CliError
from kubelite.cli.klctl.flags import Commands, add_namespace, parse_bool
from kubelite.cli.klctl.output import err
from kubelite.cli.klctl.resources import fetch, namespace_of, no_resources, parse_targets
from kubelite.cli.printers.describe import describe
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1


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


def register(commands: Commands) -> None:
    p = commands.add_parser("describe", help="show details of objects")
    p.add_argument("resources", nargs="*", metavar="KIND [NAME...]")
    add_namespace(p)
    p.add_argument("-l", "--selector")
    p.add_argument("--field-selector")
    p.add_argument("--show-events", type=lambda v: parse_bool(v, "--show-events"), default=True)
    p.set_defaults(handler=cmd_describe)
