"""Running a daemon's async main until SIGTERM or SIGINT, then stopping it cleanly."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


async def serve_until_signalled(
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    ready: Callable[[], None] | None = None,
) -> None:
    """start(); wait for SIGTERM/SIGINT; stop(). A second signal does not interrupt stop()."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await start()
        if ready is not None:
            ready()
        await stopping.wait()
        log.info("signal received; shutting down")
    finally:
        await stop()


def run(main: Awaitable[None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]
    else:
        uvloop.run(main)  # type: ignore[arg-type]
