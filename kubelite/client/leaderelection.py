"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection.

Candidates try to acquire the Lease every ``retry_period``. A lease is free when its holder is
empty or when its record has not changed for ``lease_duration`` as observed on *this* clock,
so clock skew between hosts does not matter. The leader renews every ``retry_period`` and
steps down if it could not renew for ``renew_deadline``. Writes are guarded by
resourceVersion, so two candidates can never both win the same term.

``connected()`` tells readiness checks whether the candidate reaches the API server (its
lease reads are answered), for a leader and a standby alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import grpc
import structlog

from kubelite.api import meta as m
from kubelite.api.errors import ApiError, NotFound
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LeaderElectionSettings:
    name: str
    """Name of the Lease object (e.g. ``kube-scheduler``)."""
    identity: str
    """This candidate's identity, unique among candidates (host name + random suffix)."""
    namespace: str = "kube-system"
    lease_duration: float = 15.0
    """Seconds a non-leader waits after the last observed change before taking over."""
    renew_deadline: float = 10.0
    """Seconds the leader keeps trying to renew before it gives up leadership."""
    retry_period: float = 2.0
    """Seconds between attempts to acquire or renew."""
    release_on_cancel: bool = True
    """Clear the holder when stopping so a standby takes over at once."""


class LeaderElector:
    def __init__(self, client: ApiClient, settings: LeaderElectionSettings) -> None:
        self.client = client
        self.settings = settings
        self._observed: v1.Lease | None = None
        self._observed_at = 0.0
        self.is_leader = False
        self.transitions_seen = 0
        self._answered_at: float | None = None
        self._read_error = ""

    def connected(self) -> tuple[bool, str]:
        """Whether this candidate reaches the API server, with the reason.

        Yes when its last lease read was answered (found or not found), no longer than
        ``renew_deadline`` ago (leaders renew and standbys retry every ``retry_period``), and
        its channel is not failing to connect; a standby that reaches the server is as
        healthy as the leader.
        """
        if self._answered_at is None:
            return False, self._read_error or "lease not read yet"
        if self._read_error:
            return False, f"cannot read lease: {self._read_error}"
        try:
            state = self.client.channel.get_state(try_to_connect=False)
        except (AttributeError, RuntimeError):  # a fake client, or a closed channel
            state = None
        if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
            return False, "API server unreachable"
        age = time.monotonic() - self._answered_at
        if age > self.settings.renew_deadline:
            return False, f"no answer from the API server for {age:.1f}s"
        return True, "lease reads answered"

    async def run(
        self,
        lead: Callable[[], Coroutine[Any, Any, None]],
        on_stopped_leading: Callable[[], None] | None = None,
    ) -> None:
        """Waits to become leader, runs ``lead()`` while leading; returns when leadership ends.

        ``lead`` is cancelled when leadership is lost.
        """
        await self._acquire()
        leading = asyncio.create_task(lead(), name=f"leading-{self.settings.name}")
        renewing = asyncio.create_task(self._renew_until_lost())
        try:
            done, _ = await asyncio.wait({leading, renewing}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None:
                    log.error("leader task failed", lease=self.settings.name,
                              exc_info=task.exception())
        finally:
            for task in (leading, renewing):
                task.cancel()
            await asyncio.gather(leading, renewing, return_exceptions=True)
            self.is_leader = False
            if self.settings.release_on_cancel:
                await self._release()
            if on_stopped_leading is not None:
                on_stopped_leading()

    async def _acquire(self) -> None:
        log.info("waiting to acquire leadership", lease=self.settings.name,
                 identity=self.settings.identity)
        while not await self._try_acquire_or_renew():
            await asyncio.sleep(self.settings.retry_period)
        self.is_leader = True
        log.info("became leader", lease=self.settings.name, identity=self.settings.identity)

    async def _renew_until_lost(self) -> None:
        last_renew = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.retry_period)
            if await self._try_acquire_or_renew():
                last_renew = time.monotonic()
            elif time.monotonic() - last_renew > self.settings.renew_deadline:
                log.warning("lost leadership", lease=self.settings.name,
                            identity=self.settings.identity)
                return

    async def _try_acquire_or_renew(self) -> bool:
        s = self.settings
        now = m.format_micro_time(m.now())
        try:
            lease = await self.client.get(v1.Lease, s.name, s.namespace)
        except NotFound:
            self._answered()
            lease = v1.Lease(metadata=v1.ObjectMeta(name=s.name, namespace=s.namespace))
            self._fill(lease, now, acquired=True)
            lease.spec.lease_transitions = 0
            try:
                self._observe(await self.client.create(lease))
                return True
            except ApiError as e:
                log.debug("lease create failed", error=str(e))
                return False
        except ApiError as e:
            self._read_error = str(e) or type(e).__name__
            log.warning("cannot read lease", lease=s.name, error=str(e))
            return False
        self._answered()
        self._observe(lease)
        holder = lease.spec.holder_identity
        expired = time.monotonic() > self._observed_at + (
            lease.spec.lease_duration_seconds or s.lease_duration
        )
        if holder and holder != s.identity and not expired:
            return False
        updated = m.copy(lease)
        acquired = holder != s.identity
        self._fill(updated, now, acquired=acquired)
        if acquired:
            updated.spec.lease_transitions = lease.spec.lease_transitions + 1
        try:
            self._observe(await self.client.update(updated))
            return True
        except ApiError as e:
            log.debug("lease update failed", error=str(e))
            return False

    def _answered(self) -> None:
        self._answered_at = time.monotonic()
        self._read_error = ""

    def _fill(self, lease: v1.Lease, now: str, acquired: bool) -> None:
        lease.spec.holder_identity = self.settings.identity
        lease.spec.lease_duration_seconds = max(1, round(self.settings.lease_duration))
        lease.spec.renew_time = now
        if acquired:
            lease.spec.acquire_time = now

    def _observe(self, lease: v1.Lease) -> None:
        if self._observed is None or self._observed.spec != lease.spec:
            self._observed = lease
            self._observed_at = time.monotonic()

    async def _release(self) -> None:
        s = self.settings
        try:
            lease = await self.client.get(v1.Lease, s.name, s.namespace)
            if lease.spec.holder_identity != s.identity:
                return
            lease.spec.holder_identity = ""
            lease.spec.lease_duration_seconds = 1
            await self.client.update(lease)
        except ApiError as e:
            log.warning("could not release lease", lease=s.name, error=str(e))
