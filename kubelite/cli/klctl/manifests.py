"""Manifests given with ``-f``: their objects, namespaces and write errors."""

from __future__ import annotations

import argparse
from typing import Any

from google.protobuf.message import Message

from kubelite.api import convert
from kubelite.api import meta as m
from kubelite.api.errors import ApiError, Invalid
from kubelite.api.manifests import load_paths
from kubelite.api.registry import ResourceType, UnknownResource, by_kind
from kubelite.cli.klctl.context import Context
from kubelite.cli.klctl.errors import CliError, api_error_text


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
