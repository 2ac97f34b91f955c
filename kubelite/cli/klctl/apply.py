"""``apply`` (three-way strategic merge, as kubectl) and ``create``."""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from kubelite.api import convert, strategic_merge
from kubelite.api import meta as m
from kubelite.api.errors import ApiError, NotFound
from kubelite.api.registry import ResourceType
from kubelite.cli.klctl import auth
from kubelite.cli.klctl.batch import for_each_object
from kubelite.cli.klctl.context import Context
from kubelite.cli.klctl.errors import CliError, ObjectFailed
from kubelite.cli.klctl.flags import Commands, add_files, add_namespace
from kubelite.cli.klctl.manifests import decode, load, manifest_namespace, write_error
from kubelite.cli.klctl.output import err
from kubelite.cli.klctl.resources import changed
from kubelite.cli.printers.formats import LAST_APPLIED, resource_name
from kubelite.client.client import ApiClient


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


SECRET_FIELDS = ("data", "stringData")
"""A Secret's fields whose values never go into the last-applied annotation in plaintext."""


def is_secret(rtype: ResourceType) -> bool:
    return rtype.kind == "Secret" and not rtype.group


def secret_digest(field: str, value: object) -> str:
    """What the annotation keeps of one Secret value: the SHA-256 of its bytes (``data``
    values decoded from base64), so a later apply still sees whether it changed."""
    if isinstance(value, str):
        raw = value.encode()
        if field == "data":
            try:
                raw = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                pass  # not base64: the server refuses it when it is sent
    else:
        raw = json.dumps(value, sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def redact_secret(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (a Secret's manifest or live object) with each data and stringData value
    replaced by its digest."""
    redacted = dict(doc)
    for field in SECRET_FIELDS:
        values = doc.get(field)
        if isinstance(values, dict):
            redacted[field] = {k: None if v is None else secret_digest(field, v)
                               for k, v in values.items()}
    return redacted


def recorded_configuration(rtype: ResourceType, applied: dict[str, Any]) -> str:
    """The last-applied annotation's value: the manifest as JSON, a Secret's values as
    digests (kubectl keeps them in plaintext; here they would be a second, unencrypted copy
    wherever the object is shown or kept)."""
    if is_secret(rtype):
        applied = redact_secret(applied)
    return json.dumps(applied, sort_keys=True, separators=(",", ":")) + "\n"


def apply_patch(rtype: ResourceType, original: dict[str, Any], modified: dict[str, Any],
                current: dict[str, Any]) -> dict[str, Any]:
    """kubectl's three-way patch from the last applied configuration, the manifest and the
    live object. For a Secret the three are compared with digests in place of values (the
    annotation only has those), then the values that changed are put back from the manifest:
    a changed value is sent, an unchanged one is not, a removed key is removed."""
    if not is_secret(rtype):
        return strategic_merge.three_way_patch(original, modified, current, rtype.message)
    patch = strategic_merge.three_way_patch(
        original, redact_secret(modified), redact_secret(current), rtype.message)
    for field in SECRET_FIELDS:
        sent, wanted = patch.get(field), modified.get(field)
        if isinstance(sent, dict) and isinstance(wanted, dict):
            for key, value in sent.items():
                if value is not None:
                    sent[key] = wanted[key]
    return patch


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
    recorded = recorded_configuration(rtype, applied)
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
            raise ObjectFailed(write_error(source, e, ctx)) from e
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
        patch = apply_patch(rtype, original, modified, current)
    except strategic_merge.PatchError as e:
        raise ObjectFailed(f'error: when creating the patch for "{source}": {e}') from e
    if not patch:
        return f"{label} unchanged"
    try:
        updated = await client.patch(rtype.message, meta.name, patch, namespace,
                                     patch_type="strategic")
    except ApiError as e:
        raise ObjectFailed(write_error(source, e, ctx)) from e
    if not changed(rtype, live, updated):
        return f"{label} unchanged"
    return f"{label} configured"


async def cmd_apply(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    docs = load(args)  # a file that does not parse stops everything before any write
    if not docs:
        raise CliError("no objects passed to apply")

    async def apply(item: tuple[str, dict[str, Any]]) -> str:
        source, doc = item
        return await apply_one(client, ctx, source, doc, args.namespace)

    return await for_each_object(docs, ctx, apply, report_cli_errors=True)


def generated_documents(what: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """``create namespace NAME``: the manifest kubectl's generator would build."""
    if len(what) != 2 or what[0] not in ("namespace", "ns"):
        raise CliError('unknown create form: use "klctl create -f FILE" or'
                       ' "klctl create namespace NAME"')
    doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": what[1]}}
    return [("namespace", doc)]


async def cmd_create(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    if args.what[:1] == ["token"] and not args.filename:
        return await auth.create_token(args, client, ctx)
    if args.what and args.filename:
        raise CliError("cannot give both -f and a kind to create")
    docs = generated_documents(args.what) if args.what else load(args)
    if not docs:
        raise CliError("no objects passed to create")

    async def create(item: tuple[str, dict[str, Any]]) -> str:
        source, doc = item
        rtype, obj = decode(source, doc)
        namespace = manifest_namespace(rtype, obj, args.namespace)
        created = await client.create(obj, namespace)
        return f"{resource_name(rtype, m.meta(created).name)} created"

    return await for_each_object(docs, ctx, create, report_cli_errors=True,
                                 error_text=lambda item, e: write_error(item[0], e, ctx))


def register(commands: Commands) -> None:
    p = commands.add_parser("apply", help="apply a configuration to objects by file name or stdin")
    add_files(p)
    add_namespace(p, all_namespaces=False)
    p.set_defaults(handler=cmd_apply)

    p = commands.add_parser("create", help="create objects from a file or stdin")
    p.add_argument("what", nargs="*", metavar="namespace NAME | token SERVICEACCOUNT",
                   help="create a namespace without a manifest, or a ServiceAccount token")
    add_files(p)
    auth.add_create_token_flags(p)
    add_namespace(p, all_namespaces=False)
    p.set_defaults(handler=cmd_create)
