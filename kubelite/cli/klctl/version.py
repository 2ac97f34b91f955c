"""``version`` and ``api-resources``: klctl's version, the server's kinds."""

from __future__ import annotations

import argparse

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kubelite.api.registry import RESOURCES
from kubelite.cli.klctl.context import Context
from kubelite.cli.klctl.errors import CliError
from kubelite.cli.klctl.flags import Commands, parse_bool
from kubelite.cli.klctl.output import out
from kubelite.cli.printers.tabwriter import render_table
from kubelite.client.client import ApiClient


def client_version() -> str:
    # importlib.metadata is imported here: no other command needs it.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "v" + version("kubelite")
    except PackageNotFoundError:  # running from a source tree
        return "v0.0.0-unknown"


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


def register(commands: Commands) -> None:
    p = commands.add_parser("version", help="print the client version and check the server")
    p.add_argument("--client", action="store_true", help="client version only")
    p.set_defaults(handler=cmd_version)

    p = commands.add_parser("api-resources", help="list the kinds the server serves")
    p.add_argument("--namespaced", default=None)
    p.add_argument("-o", "--output")
    p.add_argument("--no-headers", action="store_true")
    p.set_defaults(handler=cmd_api_resources, offline=True)
