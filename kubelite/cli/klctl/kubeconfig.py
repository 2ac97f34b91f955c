"""``config``: the kubeconfig file klctl uses (view, get-contexts, current-context,
use-context), as kubectl's ``config`` does. These read and write the file only; no server."""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path
from typing import Any

import yaml

from kubelite.cli.config import config_path
from kubelite.cli.klctl.errors import CliError
from kubelite.cli.klctl.flags import Commands
from kubelite.cli.klctl.output import out
from kubelite.cli.printers.tabwriter import render_table
from kubelite.client.config import is_kubeconfig, read_kubeconfig_file, write_kubeconfig_data

ACTIONS = ("view", "get-contexts", "current-context", "use-context")
_SECRET_DATA = ("certificate-authority-data", "client-certificate-data", "client-key-data")


def _load(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    path = config_path(args.kubeconfig)
    if not path.exists():
        raise CliError(f"no kubeconfig at {path} (--kubeconfig, $KUBELITE_CONFIG)")
    data = read_kubeconfig_file(path)
    if not is_kubeconfig(data):
        raise CliError(f"{path} is not a kubeconfig: it names only a plaintext server")
    return path, data


def _entries(data: dict[str, Any], section: str) -> list[dict[str, Any]]:
    entries = data.get(section) or []
    if not isinstance(entries, list):
        raise CliError(f"{section}: must be a list")
    return [e for e in entries if isinstance(e, dict)]


def _redacted(data: dict[str, Any]) -> dict[str, Any]:
    shown = copy.deepcopy(data)
    for entry in _entries(shown, "clusters") + _entries(shown, "users"):
        inner = entry.get("cluster") or entry.get("user")
        if not isinstance(inner, dict):
            continue
        for key in _SECRET_DATA:
            if key in inner:
                inner[key] = "DATA+OMITTED"
        if "token" in inner:
            inner["token"] = "REDACTED"
    return shown


def _minified(data: dict[str, Any], context: str) -> dict[str, Any]:
    contexts = [c for c in _entries(data, "contexts") if c.get("name") == context]
    if not contexts:
        raise CliError(f'context "{context}" does not exist')
    inner = contexts[0].get("context") or {}
    minified = dict(data)
    minified["contexts"] = contexts
    minified["clusters"] = [c for c in _entries(data, "clusters")
                            if c.get("name") == inner.get("cluster")]
    minified["users"] = [u for u in _entries(data, "users") if u.get("name") == inner.get("user")]
    minified["current-context"] = context
    return minified


def view(args: argparse.Namespace) -> int:
    _, data = _load(args)
    if args.minify:
        context = args.context or data.get("current-context")
        if not context:
            raise CliError("current-context must exist in order to minify")
        data = _minified(data, str(context))
    if not args.raw:
        data = _redacted(data)
    out(yaml.safe_dump(data, sort_keys=False).rstrip("\n"))
    return 0


def current_context(args: argparse.Namespace) -> int:
    _, data = _load(args)
    current = data.get("current-context")
    if not current:
        raise CliError("current-context is not set")
    out(str(current))
    return 0


def get_contexts(args: argparse.Namespace) -> int:
    _, data = _load(args)
    current = data.get("current-context")
    rows = [["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]]
    for entry in _entries(data, "contexts"):
        inner = entry.get("context") or {}
        name = str(entry.get("name", ""))
        if args.names and name not in args.names:
            continue
        rows.append(["*" if name == current else "", name, str(inner.get("cluster", "")),
                     str(inner.get("user", "")), str(inner.get("namespace", ""))])
    if args.output == "name":
        for row in rows[1:]:
            out(row[1])
        return 0
    if args.names and len(rows) == 1:
        raise CliError(f"context {args.names[0]} not found")
    for line in render_table(rows):
        out(line)
    return 0


def use_context(args: argparse.Namespace) -> int:
    if len(args.names) != 1:
        raise CliError("use-context takes one context name")
    name = args.names[0]
    path, data = _load(args)
    if not any(c.get("name") == name for c in _entries(data, "contexts")):
        raise CliError(f'no context exists with the name: "{name}"')
    data["current-context"] = name
    mode = os.stat(path).st_mode & 0o777
    write_kubeconfig_data(path, data)
    os.chmod(path, mode)
    out(f'Switched to context "{name}".')
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    handlers = {"view": view, "get-contexts": get_contexts, "current-context": current_context,
                "use-context": use_context}
    handler = handlers.get(args.action)
    if handler is None:
        raise CliError(f'unknown config command "{args.action}"; one of: {", ".join(ACTIONS)}')
    return handler(args)


def register(commands: Commands) -> None:
    p = commands.add_parser("config", help="the kubeconfig file: view, get-contexts,"
                            " current-context, use-context NAME")
    p.add_argument("action", metavar="ACTION", help=", ".join(ACTIONS))
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="use-context: the context; get-contexts: the contexts to list")
    p.add_argument("--raw", action="store_true",
                   help="view: show certificates, keys and tokens")
    p.add_argument("--minify", action="store_true",
                   help="view: only what the current context (or --context) uses")
    p.add_argument("-o", "--output", default=None, help="get-contexts: name")
    p.set_defaults(local=cmd_config)
