"""Fixtures shared by every tier: a real etcd, API servers on it, and a task-leak check; and
each test's tier as a marker."""

from __future__ import annotations

import os

# Before grpc loads: tests fork processes (etcd, components, containers) from a process with
# gRPC threads; gRPC's fork handlers must not run in those children (see kubelite/__init__).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
# klctl and the daemons never read the user's own cluster config (~/.kubelite/config, which
# `kubelite up` makes an admin kubeconfig): tests say which cluster they talk to.
os.environ["KUBELITE_CONFIG"] = os.path.join(
    os.environ.get("TMPDIR", "/tmp"), f"kubelite-tests-{os.getpid()}-no-config")
os.environ.pop("KUBELITE_KUBECONFIG", None)

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from apiserver.server import ApiServer
from kubelite.client.client import ApiClient
from kubelite.oci_images import OciImage
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.images import build_test_images
from tests.e2e.conftest import REPORT_KEY, fault_table, merge_report_data, report_of

TIERS = ("integration", "e2e")
"""Directories under tests/ whose tests carry a marker of the same name."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks each test with its tier, so ``-m "not e2e"`` selects the unit and integration
    tests and ``-m integration`` the integration tests alone."""
    here = Path(__file__).parent
    for item in items:
        parts = item.path.relative_to(here).parts if item.path.is_relative_to(here) else ()
        if parts and parts[0] in TIERS:
            item.add_marker(parts[0])


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    """One real etcd for the session; tests isolate themselves with their own key prefix."""
    process = EtcdProcess(Path(tmp_path_factory.mktemp("etcd")) / "data")
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def shared_images_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the containerd tiers' test images are built, once for the whole run: the xdist
    workers share it (builds are locked and keyed by their content, kubelite/oci_images.py),
    so the first module that needs an image builds it and the others find it. A test that
    builds other contents under the same names takes a directory of its own."""
    base = tmp_path_factory.getbasetemp()
    run = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return run / "shared-images"


@pytest.fixture(scope="module")
def images_dir(shared_images_dir: Path) -> Path:
    """Where a module's test images are built: the run's shared directory, unless the module
    overrides this fixture with one of its own."""
    return shared_images_dir


@pytest.fixture(scope="module")
def images(images_dir: Path) -> dict[str, OciImage]:
    """The project's test images (kubelite.testing.images), built in ``images_dir``."""
    return build_test_images(images_dir)


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fails a test that leaves asyncio tasks running behind it."""
    before = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    deadline = asyncio.get_running_loop().time() + 2.0
    while True:
        leaked = [
            t for t in asyncio.all_tasks() - before if t is not current and not t.done()
            and not t.get_name().startswith("Task-")  # grpc's internal callbacks
        ]
        if not leaked or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.02)
    assert not leaked, f"test leaked tasks: {[t.get_name() for t in leaked]}"


@pytest.fixture
async def api_server(etcd: EtcdProcess) -> AsyncIterator[ApiServer]:
    server = await start_api_server(server_settings(etcd.endpoint))
    yield server
    await server.stop()


@pytest.fixture
async def client(api_server: ApiServer) -> AsyncIterator[ApiClient]:
    async with ApiClient(api_server.address, timeout=10) as c:
        yield c


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist: a worker's e2e report joins the controller's, which prints them all."""
    data = getattr(node, "workeroutput", {}).get("e2e_report")
    if data:
        merge_report_data(report_of(node.config), data)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    report = config.stash.get(REPORT_KEY, None)
    if report is None or not (report.lines or report.faults):
        return
    if report.lines:
        terminalreporter.write_sep("-", "e2e timings")
        for line in report.lines:
            terminalreporter.write_line(line)
    if report.faults:
        terminalreporter.write_sep("-", "fault runs")
        for line in fault_table(report.faults):
            terminalreporter.write_line(line)
