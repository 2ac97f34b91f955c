"""The klctl command line: the top-level parser, each verb's own, and dispatch.

Each verb module registers its parsers (``register``); this module only builds the top-level
parser, finds the command's parser and runs its handler, turning every failure into one
error line and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence

from kubelite.api.errors import ApiError
from kubelite.api.manifests import ManifestError
from kubelite.api.registry import UnknownResource
from kubelite.cli.config import ConfigError, resolve_client_config
from kubelite.cli.klctl import (
    apply,
    auth,
    certificate,
    delete,
    describe,
    get,
    kubeconfig,
    logs,
    patch,
    rollout,
    scale,
    version,
)
from kubelite.cli.klctl.context import DEFAULT_REQUEST_TIMEOUT, NO_TIMEOUT, Context, Handler
from kubelite.cli.klctl.errors import CliError, ObjectFailed, UsageError, api_error_text
from kubelite.cli.klctl.flags import Commands, Parser, add_globals, parse_duration
from kubelite.cli.klctl.output import err
from kubelite.client.client import ApiClient
from kubelite.processes import INTERRUPTED_EXIT_CODE

REGISTER: tuple[Callable[[Commands], None], ...] = (
    apply.register, get.register, logs.register, describe.register, delete.register,
    patch.register, version.register, rollout.register, scale.register,
    certificate.register, kubeconfig.register, auth.register,
)
"""Each verb module adds its commands' parsers; ``klctl --help`` lists them in this order."""


def build_parser() -> tuple[argparse.ArgumentParser, Commands]:
    sub = Commands()
    for register in REGISTER:
        register(sub)
    epilog = "commands:\n" + "\n".join(f"  {n:<15}{h}" for n, h in sub.helps.items())
    parser = Parser(prog="klctl", description="klctl controls a kubelite cluster.",
                    epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_globals(parser, default=None)
    parser.add_argument("-n", "--namespace", help="the namespace of the objects")
    parser.add_argument("command", nargs="?", metavar="COMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    return parser, sub


async def _run(args: argparse.Namespace, ctx: Context) -> int:
    handler: Handler = args.handler
    if getattr(args, "offline", False):
        return await version.cmd_api_resources(args, None, ctx)
    # A command line fails fast when the server is down rather than waiting for it.
    target = ctx.client_config if ctx.client_config is not None else ctx.server
    async with ApiClient(target, timeout=ctx.request_timeout, wait_for_ready=False) as client:
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
    except UsageError:
        return 1
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    for name in ("server", "kubeconfig", "context", "request_timeout", "namespace"):
        if getattr(args, name, None) is None and getattr(top, name) is not None:
            setattr(args, name, getattr(top, name))
    try:
        local: Callable[[argparse.Namespace], int] | None = getattr(args, "local", None)
        if local is not None:  # works on the config file alone, no server
            return local(args)
        resolved = resolve_client_config(args.server, args.kubeconfig, args.context)
        config = resolved.config
        if getattr(args, "namespace", "") is None and config.namespace:
            args.namespace = config.namespace  # the context's namespace, as kubectl
        if args.request_timeout is None:
            timeout, explicit = DEFAULT_REQUEST_TIMEOUT, False
        else:
            timeout = parse_duration(args.request_timeout, "--request-timeout")
            explicit = True
        ctx = Context(config.server, timeout or NO_TIMEOUT, explicit and timeout > 0,
                      config if config.secure else None)
        return asyncio.run(_run(args, ctx))
    except KeyboardInterrupt:
        return INTERRUPTED_EXIT_CODE
    except BrokenPipeError:  # `klctl get ... | head`: the reader has gone, nothing to say
        return 141
    except (CliError, ConfigError, UnknownResource) as e:
        err(f"error: {e}")
    except ManifestError as e:
        err(f"error: {e}")
    except ObjectFailed as e:
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
