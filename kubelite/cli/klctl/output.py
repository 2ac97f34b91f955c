"""klctl's standard output and error, flushed line by line."""

from __future__ import annotations

import sys


def out(text: str = "") -> None:
    print(text, file=sys.stdout, flush=True)


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
