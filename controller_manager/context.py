"""What every controller gets: the client, the shared informers, an event recorder, settings."""

from __future__ import annotations

from dataclasses import dataclass

from controller_manager.settings import ControllerManagerSettings
from kubelite.client.client import ApiClient
from kubelite.client.events import EventRecorder
from kubelite.client.informer import InformerFactory
from kubelite.client.workqueue import RateLimit


@dataclass
class ControllerContext:
    client: ApiClient
    informers: InformerFactory
    """Shared: ask it for an informer in the constructor; the manager starts them all."""
    recorder: EventRecorder
    settings: ControllerManagerSettings

    @property
    def rate_limit(self) -> RateLimit:
        return RateLimit(self.settings.retry_base_delay, self.settings.retry_max_delay)
