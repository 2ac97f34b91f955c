"""Running a daemon's async main until SIGTERM or SIGINT, then stopping it cleanly."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import structlog

from kubelite.client.config import ClientConfig, ConfigError, load_kubeconfig, normalize_server

log = structlog.get_logger(__name__)


class Startable(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def _until_stopping(work: Awaitable[None], stopping: asyncio.Event) -> bool:
    """Runs ``work`` unless ``stopping`` is set first, in which case it is cancelled (a start
    that waits for a dependency, e.g. etcd or the API server, must not outlive SIGTERM).
    True when ``work`` finished; its failure is raised."""
    task = asyncio.ensure_future(work)
    signalled = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait((task, signalled), return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        return False
    task.result()  # its failure, if it failed
    return True


async def serve_until_signalled(
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    ready: Callable[[], None] | None = None,
    health: Startable | None = None,
) -> None:
    """start(); wait for SIGTERM/SIGINT; stop(). A second signal does not interrupt stop().

    ``health`` (a readiness server) starts before the component, so it reports NOT_SERVING
    while the component comes up, and stops before it, so nobody is told "ready" mid-stop.
    """
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        if health is not None:
            await health.start()
        if not await _until_stopping(start(), stopping):
            log.info("signal received while starting; shutting down")
            return
        if ready is not None:
            ready()
        await stopping.wait()
        log.info("signal received; shutting down")
    finally:
        if health is not None:
            await health.stop()
        await stop()


def run(main: Coroutine[Any, Any, None]) -> None:
    """Runs ``main`` on uvloop when installed, unless KUBELITE_EVENT_LOOP=asyncio."""
    if os.environ.get("KUBELITE_EVENT_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


DEFAULT_SERVER = "127.0.0.1:6443"


def add_api_server_flags(parser: argparse.ArgumentParser) -> None:
    """``--kubeconfig`` (where the API server is and who this daemon is, as upstream's
    daemons take it) and ``--server`` (a plaintext address, or the server of the kubeconfig
    when both are given). Either may name several API servers (``--server a:1,b:2``; a
    kubeconfig's server ``https://a:1,https://b:2``): calls go round robin to those up."""
    parser.add_argument(
        "--kubeconfig", default=os.environ.get("KUBELITE_KUBECONFIG") or None,
        help="client config file (kubeconfig): the API server, its CA and this daemon's"
             " credentials (default: $KUBELITE_KUBECONFIG)")
    parser.add_argument(
        "--server", default=None,
        help="API server host:port, or several comma-separated (HOST:PORT,HOST:PORT: calls"
             " go round robin to the servers that are up); alone, a plaintext connection"
             " (insecure clusters); with --kubeconfig, overrides its server (default:"
             f" $KUBELITE_SERVER or {DEFAULT_SERVER})")


def api_server_target(args: argparse.Namespace) -> str | ClientConfig:
    """What ApiClient connects to, from the flags of :func:`add_api_server_flags`; a server
    list that cannot be used is a ConfigError naming --server."""
    server = args.server
    try:
        if args.kubeconfig:
            config = load_kubeconfig(args.kubeconfig)
            return dataclasses.replace(config, server=server) if server else config
        return normalize_server(str(server or os.environ.get("KUBELITE_SERVER")
                                    or DEFAULT_SERVER))
    except ConfigError as e:
        if str(e).startswith("kubeconfig "):
            raise
        where = "--server" if server or args.kubeconfig else "$KUBELITE_SERVER"
        raise ConfigError(f"{where}: {e}") from None
