"""Verbs over several objects: each in turn, its line printed, its failure reported.

As kubectl's apply, create, delete, label, annotate, patch, scale and set image do: one object
failing (not found, refused, invalid) gets its error line and the others still go on; the exit
status is 1 if any failed. Losing the server ends the command at once, as every other object
would fail the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from kubelite.api.errors import ApiError
from kubelite.cli.klctl.context import Context
from kubelite.cli.klctl.errors import CliError, ObjectFailed, api_error_text, is_connection_error
from kubelite.cli.klctl.output import err, out

T = TypeVar("T")


async def for_each_object(
    items: Iterable[T],
    ctx: Context,
    act: Callable[[T], Awaitable[str | None]],
    *,
    error_text: Callable[[T, ApiError], str] | None = None,
    report_cli_errors: bool = False,
) -> int:
    """Runs ``act`` on each item and prints the line it returns (``... patched``; None: none).

    An item's ObjectFailed is printed as it is and an ApiError as ``error_text`` words it
    (by default kubectl's ``Error from server ...``); with ``report_cli_errors`` a CliError,
    too, is that item's ``error: ...`` (a bad manifest among several), otherwise it ends the
    command. Returns the exit status: 1 if any item failed.
    """
    failed = False
    for item in items:
        try:
            line = await act(item)
        except ObjectFailed as e:
            err(str(e))
            failed = True
            continue
        except CliError as e:
            if not report_cli_errors:
                raise
            err(f"error: {e}")
            failed = True
            continue
        except ApiError as e:
            if is_connection_error(e):
                raise
            err(error_text(item, e) if error_text is not None else api_error_text(e, ctx))
            failed = True
            continue
        if line is not None:
            out(line)
    return 1 if failed else 0
