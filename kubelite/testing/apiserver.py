"""An in-process API server over a given etcd, with test-friendly timers."""

from __future__ import annotations

import uuid

from apiserver.api import ApiSettings
from apiserver.etcd import EtcdSettings
from apiserver.server import ApiServer, ApiServerSettings
from apiserver.watch_cache import WatchCacheSettings


def server_settings(
    etcd_endpoint: str,
    *,
    prefix: str | None = None,
    listen: str = "127.0.0.1:0",
    compaction_interval: float = 0.0,
    progress_interval: float = 0.2,
    cache_capacity: int = 10_000,
) -> ApiServerSettings:
    """Settings for a server isolated from others on the same etcd by its own key prefix."""
    return ApiServerSettings(
        listen=listen,
        etcd=EtcdSettings(endpoints=(etcd_endpoint,)),
        api=ApiSettings(
            storage_prefix=prefix or f"/test-{uuid.uuid4().hex[:12]}",
            watch_cache=WatchCacheSettings(
                capacity=cache_capacity, progress_interval=progress_interval
            ),
        ),
        compaction_interval=compaction_interval,
        health_interval=0.5,
        shutdown_grace=0.5,
    )


async def start_api_server(settings: ApiServerSettings) -> ApiServer:
    server = ApiServer(settings)
    await server.start()
    return server
