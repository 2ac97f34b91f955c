"""Waiting on conditions with deadlines: the only way tests synchronise."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(
    check: Callable[[], Any],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    """Polls ``check`` until it returns something truthy; fails after ``timeout`` seconds.

    ``check`` may be sync or async; exceptions count as "not yet" and the last one is
    reported if the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
                result = await result
            if result:
                return result
        except AssertionError as e:
            last = e
        except Exception as e:  # noqa: BLE001 - 'not yet'; reported at the deadline
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}") from last
        await asyncio.sleep(interval)
