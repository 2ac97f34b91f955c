"""A node's pod bridge left with another podCIDR's address (an earlier cluster, or the node's
previous podCIDR) is removed before the CNI configuration is written, since the bridge plugin
refuses to reuse it; a bridge already on the podCIDR is kept. Runs in a network namespace the
test makes."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 is not installed"),
]

SCRIPT = """
import asyncio, sys
from kubelet.runtime.cni import remove_stale_bridge
print(asyncio.run(remove_stale_bridge(sys.argv[1], sys.argv[2])))
"""


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"kltb-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def inside(netns: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], check=True,
                          capture_output=True, text=True).stdout


def remove_stale(netns: str, bridge: str, cidr: str) -> str:
    return inside(netns, sys.executable, "-c", SCRIPT, bridge, cidr).strip().splitlines()[-1]


def test_a_bridge_on_another_pod_cidr_is_removed_and_one_on_it_kept(netns: str) -> None:
    inside(netns, "ip", "link", "add", "kltest0", "type", "bridge")
    inside(netns, "ip", "addr", "add", "10.244.0.1/24", "dev", "kltest0")
    assert remove_stale(netns, "kltest0", "10.244.0.0/24") == "False"
    assert "kltest0" in inside(netns, "ip", "-br", "link")
    assert remove_stale(netns, "kltest0", "10.244.1.0/24") == "True"
    assert "kltest0" not in inside(netns, "ip", "-br", "link")
    # No bridge yet: nothing to do.
    assert remove_stale(netns, "kltest0", "10.244.1.0/24") == "False"
