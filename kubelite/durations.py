"""Go durations (``time.ParseDuration``), as Kubernetes' commands take them in flags."""

from __future__ import annotations

import argparse
import re

_NUMBER = r"(?:\d+\.?\d*|\.\d+)"
_PART = re.compile(rf"({_NUMBER})(ns|us|µs|μs|ms|s|m|h)")
_BARE = re.compile(_NUMBER)
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
          "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration: decimal numbers each with a unit (``ns``, ``us`` or ``µs``,
    ``ms``, ``s``, ``m``, ``h``), as ``15s``, ``1m30s``, ``250ms`` or ``1.5h``. A bare number
    is seconds, as kubectl takes ``--request-timeout=5``. Surrounding blanks are ignored.

    Durations here are lengths of time (timeouts, periods, backoffs), so a sign is refused.
    Raises ValueError in Go's words: ``time: invalid duration "TEXT"``.
    """
    value = text.strip()
    if _BARE.fullmatch(value):
        return float(value)
    parts = _PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f'time: invalid duration "{text}"')
    return sum(float(n) * _UNITS[u] for n, u in parts)


def duration_flag(text: str) -> float:
    """An argparse ``type=`` for daemons' duration flags: seconds, or a usage error."""
    try:
        return parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text.strip()!r} (e.g. 15s, 500ms, 1m30s)"
        ) from None
