"""How klctl fails: ``error: ...`` and ``Error from server (Reason): ...`` lines."""

from __future__ import annotations

from kubelite.api.errors import ApiError, KubeliteError, Timeout, Unavailable
from kubelite.cli.klctl.context import Context


class CliError(KubeliteError):
    """A failure reported as ``error: <message>``."""


class UsageError(Exception):
    """A command line the parser refused; its error lines are already printed."""


class ObjectFailed(KubeliteError):
    """One object failed (a write, a check); the message is already the complete line to print."""


def api_error_text(e: ApiError, ctx: Context) -> str:
    """One line for a failed request, as kubectl words it."""
    if isinstance(e, Unavailable) and e.message.startswith("API server unavailable"):
        detail = e.message.removeprefix("API server unavailable: ")
        return f"error: cannot reach the API server at {ctx.server}: {detail}"
    if isinstance(e, Timeout) and e.message == "Deadline Exceeded":
        return (f"error: cannot reach the API server at {ctx.server}: no answer within"
                f" {ctx.request_timeout:g}s (--request-timeout)")
    return f"Error from server ({e.reason}): {e.message}"


def is_connection_error(e: ApiError) -> bool:
    return (isinstance(e, Unavailable) and e.message.startswith("API server unavailable")) or (
        isinstance(e, Timeout) and e.message == "Deadline Exceeded"
    )
