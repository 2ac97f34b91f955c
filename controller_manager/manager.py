"""Runs the selected controllers over shared informers, while this replica leads."""

from __future__ import annotations

import asyncio

import structlog

from controller_manager import registry
from controller_manager.context import ControllerContext
from controller_manager.settings import ControllerManagerSettings
from kubelite.client.client import ApiClient
from kubelite.client.controller import Controller
from kubelite.client.events import EventRecorder
from kubelite.client.informer import InformerFactory, InformerSettings
from kubelite.client.leaderelection import LeaderElector
from kubelite.health import Readiness, all_ready, informers_readiness

log = structlog.get_logger(__name__)


class ControllerManager:
    def __init__(self, settings: ControllerManagerSettings, client: ApiClient | None = None
                 ) -> None:
        self.settings = settings
        self.client = client or ApiClient(settings.server)
        self._owns_client = client is None
        self.controllers: dict[str, Controller] = {}
        self._task: asyncio.Task[None] | None = None
        self.leading = asyncio.Event()
        self.elector: LeaderElector | None = None
        self.informers: InformerFactory | None = None
        """The informers of the current term (None while standing by)."""

    @property
    def is_leader(self) -> bool:
        """Holds the Lease now (always, without leader election)."""
        return not self.settings.leader_elect or (
            self.elector is not None and self.elector.is_leader
        )

    def readiness(self) -> Readiness:
        """Ready while connected: with leader election, the API server answers its lease
        reads (leader and standby alike); while leading, its informers all watch."""
        results: list[Readiness] = []
        if self.settings.leader_elect:
            if self.elector is None:
                return False, "not standing for election yet"
            results.append(self.elector.connected())
        if self.informers is not None or not self.settings.leader_elect:
            informers = self.informers.informers() if self.informers is not None else []
            results.append(informers_readiness(informers))
        return all_ready(*results)

    async def start(self) -> None:
        names = registry.select(self.settings.controllers)
        if self.settings.leader_elect:
            self._task = asyncio.create_task(self._stand_for_election(names),
                                             name="controller-manager-election")
        else:
            self._task = asyncio.create_task(self._lead(names), name="controller-manager")

    async def _stand_for_election(self, names: list[str]) -> None:
        """Leads while elected; after losing the Lease, stands again as a standby."""
        elector = self.elector = LeaderElector(self.client, self.settings.leader_election)
        while True:
            await elector.run(lambda: self._lead(names))
            log.warning("no longer leading; standing for election again")

    async def _lead(self, names: list[str]) -> None:
        informers = InformerFactory(
            self.client, InformerSettings(resync_period=self.settings.resync_period)
        )
        recorder = EventRecorder(self.client, "kube-controller-manager",
                                 self.settings.leader_election.identity)
        ctx = ControllerContext(self.client, informers, recorder, self.settings)
        controllers: dict[str, Controller] = {}
        self.informers = informers
        try:
            for name in names:
                controllers[name] = registry.factory(name)(ctx)
            self.controllers = controllers
            recorder.start()
            informers.start()
            await informers.wait_for_sync()
            for controller in controllers.values():
                await controller.start()
                controller.run()
            log.info("controllers running", controllers=sorted(controllers))
            self.leading.set()
            await asyncio.Event().wait()
        finally:
            self.leading.clear()
            self.informers = None
            await asyncio.gather(*(c.stop() for c in controllers.values()),
                                 return_exceptions=True)
            await informers.stop()
            await recorder.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._owns_client:
            await self.client.close()
