"""Controller expectations (Kubernetes' UIDTrackingControllerExpectations).

A controller that creates or deletes objects records what it asked the API for, and its
informer handlers record what they see arrive. Until the two meet (or ``ttl`` passes, so a
lost event never wedges an owner) a reconcile must not count the objects again, or a cache
that lags behind the controller's own writes makes it create or delete twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

EXPECTATIONS_TTL = 300.0
"""Seconds after which unmet expectations are ignored (upstream: 5 minutes)."""


@dataclass
class _Expectation:
    adds: int
    deleting: set[str]
    """Identities of the objects whose deletion is expected: each is observed gone once."""
    timestamp: float


class ControllerExpectations:
    """Creations and deletions a controller has asked for and not yet seen in its cache, by
    owner key. Deletions are tracked by an identity the caller chooses (a uid or a key)."""

    def __init__(self, ttl: float = EXPECTATIONS_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._items: dict[str, _Expectation] = {}

    def satisfied(self, key: str) -> bool:
        """Whether the controller may act on ``key``: nothing pending, or pending too long,
        or never set (a new owner, or a controller that restarted)."""
        exp = self._items.get(key)
        if exp is None:
            return True
        if exp.adds <= 0 and not exp.deleting:
            return True
        return self.clock() - exp.timestamp > self.ttl

    def pending(self, key: str) -> tuple[int, int]:
        """(creations, deletions) still expected for ``key``."""
        exp = self._items.get(key)
        return (exp.adds, len(exp.deleting)) if exp is not None else (0, 0)

    def expect(self, key: str, creations: int = 0, deletions: Iterable[str] = ()) -> None:
        """Replaces ``key``'s expectations: ``creations`` objects to appear and the objects
        named by ``deletions`` to go (upstream's SetExpectations with the deleted uids)."""
        self._items[key] = _Expectation(creations, set(deletions), self.clock())

    def expect_creations(self, key: str, count: int) -> None:
        self.expect(key, creations=count)

    def expect_deletions(self, key: str, identities: Iterable[str]) -> None:
        self.expect(key, deletions=identities)

    def creation_observed(self, key: str) -> None:
        exp = self._items.get(key)
        if exp is not None:
            exp.adds -= 1

    def deletion_observed(self, key: str, identity: str) -> None:
        exp = self._items.get(key)
        if exp is not None:
            exp.deleting.discard(identity)

    def forget(self, key: str) -> None:
        """Drops ``key``'s expectations (its owner is gone)."""
        self._items.pop(key, None)
