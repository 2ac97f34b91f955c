"""Free loopback ports (kubelite.ports), for tests."""

from __future__ import annotations

from kubelite.ports import free_port

__all__ = ["free_port"]
