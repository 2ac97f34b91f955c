"""``label``, ``annotate`` and ``patch``: changes to objects by patch."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from kubelite.api import meta as m
from kubelite.api import strategic_merge
from kubelite.api.registry import ResourceType
from kubelite.cli.klctl.batch import for_each_object
from kubelite.cli.klctl.context import Context, Handler
from kubelite.cli.klctl.errors import CliError, ObjectFailed
from kubelite.cli.klctl.flags import Commands, add_namespace
from kubelite.cli.klctl.manifests import decode, load, manifest_namespace
from kubelite.cli.klctl.output import err, out
from kubelite.cli.klctl.resources import changed, namespace_of, parse_targets
from kubelite.cli.printers.formats import resource_name
from kubelite.client.client import ApiClient


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

    async def update(item: tuple[ResourceType, str, str]) -> str | None:
        rtype, name, namespace = item
        current = await client.get(rtype.message, name, namespace or "default")
        existing = dict(getattr(m.meta(current), field))
        if args.list:
            for key in sorted(existing):
                out(f"{key}={existing[key]}")
            return None
        if not args.overwrite:
            clashes = [k for k, v in changes.items() if k in existing and existing[k] != v]
            if clashes:
                raise ObjectFailed("error: " + "\n".join(
                    f"'{k}' already has a value ({existing[k]}), and --overwrite is false"
                    for k in clashes))
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
            return f"{label} not {verb}"
        patch: dict[str, Any] = {"metadata": {field: patch_values}}
        if args.resource_version:
            patch["metadata"]["resourceVersion"] = args.resource_version
        await client.patch(rtype.message, name, patch, namespace)
        return f"{label} {verb}"

    return await for_each_object(objects, ctx, update)


def _metadata_handler(field: str) -> Handler:
    async def handler(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
        return await cmd_metadata_map(args, client, ctx, field)

    return handler


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

    async def patch_one(item: tuple[ResourceType, str]) -> str:
        rtype, name = item
        namespace = namespace_of(args) if rtype.namespaced else ""
        before = await client.get(rtype.message, name, namespace or "default")
        after = await client.patch(rtype.message, name, patch, namespace,
                                   subresource=args.subresource, patch_type=args.type)
        label = resource_name(rtype, name)
        if changed(rtype, before, after):
            return f"{label} patched"
        return f"{label} patched (no change)"

    return await for_each_object(names, ctx, patch_one)


def register(commands: Commands) -> None:
    for verb, field in (("label", "labels"), ("annotate", "annotations")):
        p = commands.add_parser(verb, help=f"update the {field} of objects")
        p.add_argument("words", nargs="*", metavar="KIND NAME KEY=VAL... KEY-...")
        p.add_argument("-f", "--filename", action="append", default=[])
        p.add_argument("-R", "--recursive", action="store_true")
        add_namespace(p)
        p.add_argument("-l", "--selector")
        p.add_argument("--all", action="store_true")
        p.add_argument("--overwrite", action="store_true",
                       help="allow changing the value of an existing key")
        p.add_argument("--list", action="store_true", help="print the current values")
        p.add_argument("--resource-version", default="",
                       help="only update if the object is still at this resourceVersion")
        p.set_defaults(handler=_metadata_handler(field))

    p = commands.add_parser("patch", help="update fields of an object with a strategic merge patch,"
                            " a JSON merge patch or a JSON patch")
    p.add_argument("resources", nargs="*", metavar="KIND NAME")
    add_namespace(p, all_namespaces=False)
    p.add_argument("-p", "--patch", help="the patch, as JSON or YAML")
    p.add_argument("--patch-file", help="a file holding the patch")
    p.add_argument("--type", default="strategic",
                   help="strategic (the default: lists such as containers merge by name),"
                   " merge (RFC 7386: lists are replaced) or json (RFC 6902 operations)")
    p.add_argument("--subresource", default="", help="status to patch the status")
    p.set_defaults(handler=cmd_patch)
