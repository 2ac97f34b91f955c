"""The containerd node's fixtures (tests/integration/cri/node.py) for every test here."""

from tests.integration.cri.node import (  # noqa: F401 - fixtures, found by name
    containerd,
    network,
    node,
    registries,
)
