"""``logs`` and ``exec``: a pod's containers."""

from __future__ import annotations

import argparse
import sys

from kubelite.cli.klctl.context import Context
from kubelite.cli.klctl.errors import CliError
from kubelite.cli.klctl.flags import Commands, add_namespace
from kubelite.cli.klctl.output import err
from kubelite.cli.klctl.resources import namespace_of
from kubelite.client.client import ApiClient


def _pod_name(arg: str) -> str:
    """``POD`` or ``pod/POD`` (``pods/``, ``po/``), as kubectl takes a pod argument."""
    return arg.split("/", 1)[1] if arg.startswith(("pod/", "pods/", "po/")) else arg


async def cmd_logs(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    name = _pod_name(args.pod)
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
    name = _pod_name(args.pod)
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


def register(commands: Commands) -> None:
    p = commands.add_parser("logs", help="print the logs of a container in a pod")
    p.add_argument("pod", metavar="POD")
    p.add_argument("-c", "--container", help="the container (default: the only one)")
    p.add_argument("-f", "--follow", action="store_true", help="stream new output")
    p.add_argument("-p", "--previous", action="store_true",
                   help="the previous instance of the container")
    p.add_argument("--tail", type=int, default=-1, help="lines from the end (-1: all)")
    add_namespace(p, all_namespaces=False)
    p.set_defaults(handler=cmd_logs)

    p = commands.add_parser("exec", help="run a command in a container: exec POD [-c C] -- CMD")
    p.add_argument("pod", metavar="POD")
    p.add_argument("-c", "--container", help="the container (default: the only one)")
    p.add_argument("-i", "--stdin", action="store_true", help="pass stdin to the command")
    add_namespace(p, all_namespaces=False)
    p.set_defaults(handler=cmd_exec, command_line=[])
