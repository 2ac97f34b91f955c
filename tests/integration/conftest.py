"""Fixtures shared by the integration tests (the real etcd and API server come from
tests/conftest.py)."""

from __future__ import annotations

import asyncio

import pytest

from apiserver.server import ApiServer
from kubelite.cli.klctl import main
from tests.integration.helpers import Klctl, Result


@pytest.fixture
def klctl(api_server: ApiServer, capsys: pytest.CaptureFixture[str]) -> Klctl:
    """Runs klctl against ``api_server`` in a thread (its ``main`` runs its own event loop)
    while the server keeps serving on the test's loop; returns its code and output."""

    async def run(*args: str) -> Result:
        capsys.readouterr()  # drop whatever earlier calls printed
        code = await asyncio.to_thread(main, ["--server", api_server.address, *args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
