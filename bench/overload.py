"""The API server under overload: a burst of creates, and GETs beside many old-version watches.

Prints one JSON object:
- burst: ``--creates`` concurrent creates from one client, counted by final gRPC status (all
  should be OK; CANCELLED or DEADLINE_EXCEEDED means requests were lost to overload) and how
  many 429 (TooManyRequests) answers the client retried on the way;
- GET latency p50/p99 from a client in a process of its own, first on an idle server (the
  reference measured in the same run), then while ``--watchers`` watches from a
  resourceVersion older than the API server's watch cache (each needing its own etcd watch
  and a replay of the history) are opened and held, and the ratio between the two;
- how many of those watches were established and how many were refused (TooManyRequests).

Usage: python -m bench.overload [--creates N] [--watchers N] [--history N] [-- SERVER FLAGS]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections import Counter

import grpc

from apiserver.etcd import Etcd, EtcdSettings
from bench.harness import apiserver_process, percentile, temporary_etcd
from kubelite import daemon
from kubelite.api.errors import ApiError, TooManyRequests
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1

PAYLOAD = {"config.yaml": "replicas: 3\nimage: web:1.0\n" * 4}


def configmap(name: str) -> v1.ConfigMap:
    return v1.ConfigMap(metadata=v1.ObjectMeta(name=name, labels={"app": "bench"}), data=PAYLOAD)


def status_of(error: BaseException) -> str:
    """The gRPC status code name behind a failed call."""
    cause = error.__cause__
    if isinstance(cause, grpc.aio.AioRpcError):
        return str(cause.code().name)
    return type(error).__name__


async def burst(address: str, creates: int) -> dict[str, object]:
    """``creates`` creates at once from one client; outcomes by gRPC status."""
    outcomes: Counter[str] = Counter()
    run = uuid.uuid4().hex[:6]
    async with ApiClient(address) as client:

        async def create(i: int) -> None:
            try:
                await client.create(configmap(f"burst-{run}-{i}"))
                outcomes["OK"] += 1
            except ApiError as e:
                outcomes[status_of(e)] += 1

        start = time.perf_counter()
        await asyncio.gather(*(create(i) for i in range(creates)))
        elapsed = time.perf_counter() - start
        retried = getattr(client, "stats", None)
    return {
        "burst_creates": creates,
        "burst_outcomes": dict(sorted(outcomes.items())),
        "burst_cancelled": outcomes["CANCELLED"],
        "burst_failed": creates - outcomes["OK"],
        "burst_seconds": round(elapsed, 2),
        "burst_429_retries": getattr(retried, "too_many_requests_retries", None),
    }


async def get_latencies(address: str, name: str, seconds: float) -> list[float]:
    """Sequential GETs of one object for ``seconds``; each one's latency."""
    latencies: list[float] = []
    async with ApiClient(address) as client:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            before = time.perf_counter()
            await client.get(v1.ConfigMap, name, "default")
            latencies.append(time.perf_counter() - before)
    return latencies


async def probe(address: str, name: str, seconds: float) -> list[float]:
    """get_latencies in a process of its own, so that the watchers' work in this one does
    not count as the server's latency."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.overload", "--probe", address, name, str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"GET probe exited with {proc.returncode}")
    latencies: list[float] = json.loads(out)
    return latencies


def summary(prefix: str, latencies: list[float]) -> dict[str, float]:
    return {
        f"{prefix}_get_ms_p50": round(percentile(latencies, 50) * 1000, 2),
        f"{prefix}_get_ms_p99": round(percentile(latencies, 99) * 1000, 2),
        f"{prefix}_gets": len(latencies),
    }


async def watchers_from_old_version(
    address: str, old_version: str, watchers: int, clients: int, history: int, seconds: float
) -> dict[str, object]:
    """GET latency while ``watchers`` watches from ``old_version`` open and stay open."""
    namespace = f"overload-{uuid.uuid4().hex[:6]}"
    figures: dict[str, object] = {}
    async with ApiClient(address) as writer:
        await writer.create(configmap("probe"), "default")
        figures.update(summary("idle", await probe(address, "probe", seconds)))
        await writer.create(v1.Namespace(metadata=v1.ObjectMeta(name=namespace)))
        for i in range(history):
            await writer.create(configmap(f"h-{i}"), namespace)

        watch_clients = [ApiClient(address) for _ in range(clients)]
        established = 0
        outcomes: Counter[str] = Counter()

        async def watch(client: ApiClient) -> None:
            nonlocal established
            received = 0
            try:
                async for event in client.watch(
                    v1.ConfigMap, namespace, resource_version=old_version
                ):
                    if event.type == "ADDED":
                        received += 1
                        if received == history:
                            established += 1
            except TooManyRequests:
                outcomes["TooManyRequests"] += 1
            except ApiError as e:
                outcomes[status_of(e)] += 1

        tasks = [
            asyncio.create_task(watch(watch_clients[i % clients])) for i in range(watchers)
        ]
        try:
            loaded = await probe(address, "probe", seconds)
        finally:
            figures["watchers_caught_up"] = established
            figures["watchers_ended"] = dict(sorted(outcomes.items()))
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for c in watch_clients:
                await c.close()
        figures.update(summary("watchers", loaded))
    idle = figures["idle_get_ms_p99"]
    assert isinstance(idle, float)
    figures["ratio_p99_watchers_to_idle"] = round(figures["watchers_get_ms_p99"] / idle, 1)  # type: ignore[operator]
    return figures


async def main_async(a: argparse.Namespace) -> dict[str, object]:
    result: dict[str, object] = {"benchmark": "overload", "watchers": a.watchers}
    with temporary_etcd() as etcd:
        raw = Etcd(EtcdSettings(endpoints=(etcd.endpoint,)))
        try:
            # A version from before the API server starts is older than its watch cache.
            old_version = str(await raw.current_revision())
            await raw.put(b"/bench-overload/bump", b"1")
        finally:
            await raw.close()
        with apiserver_process(etcd.endpoint, *a.server_flags) as address:
            result.update(await burst(address, a.creates))
            result.update(
                await watchers_from_old_version(
                    address, old_version, a.watchers, a.watch_clients, a.history, a.seconds
                )
            )
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--creates", type=int, default=2000, help="creates in the burst")
    p.add_argument("--watchers", type=int, default=2000, help="watches from an old version")
    p.add_argument("--watch-clients", type=int, default=20, help="connections they share")
    p.add_argument("--history", type=int, default=100, help="objects each watch replays")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of GETs per phase")
    p.add_argument("server_flags", nargs="*", help="extra kubelite-apiserver flags (after --)")
    p.add_argument("--probe", nargs=3, metavar=("ADDRESS", "NAME", "SECONDS"),
                   help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.probe:
        address, name, seconds = a.probe
        latencies: list[float] = []

        async def measure() -> None:
            latencies.extend(await get_latencies(address, name, float(seconds)))

        daemon.run(measure())
        print(json.dumps(latencies))
        return
    result: dict[str, object] = {}

    async def run() -> None:
        result.update(await main_async(a))

    daemon.run(run())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
