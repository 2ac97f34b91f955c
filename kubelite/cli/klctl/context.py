"""What every command gets: the server, the request timeout."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kubelite.client.client import ApiClient
from kubelite.client.config import ClientConfig

DEFAULT_REQUEST_TIMEOUT = 30.0
"""Seconds a request may take when --request-timeout is not given (kubectl: none)."""
NO_TIMEOUT = 365 * 24 * 3600.0
"""Stands for "no deadline" where the client needs a number."""


@dataclass
class Context:
    server: str
    request_timeout: float
    explicit_timeout: bool
    """Whether --request-timeout was given (it then also bounds watches)."""
    client_config: ClientConfig | None = None
    """TLS and credentials from a kubeconfig; None: a plaintext ``server``."""


Handler = Callable[[argparse.Namespace, ApiClient, Context], Awaitable[int]]
"""A command: its parsed arguments, a client of the server, the context; the exit status."""
