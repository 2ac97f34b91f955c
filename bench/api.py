"""API server throughput and watch latency, against raw etcd measured in the same run.

Prints one JSON object:
- creates/s and gets/s through the API server (its own process) at concurrency 1 and 64;
- raw etcd puts/s and ranges/s from the same gRPC etcd client at the same concurrencies;
- their ratios;
- watch event latency p50/p99 (write acknowledged -> event delivered) with 100 watchers;
- a second reference: the same client against a do-nothing Python gRPC server
  (bench/echo_server.py), the ceiling any Python gRPC API server has on this machine.

Usage: python -m bench.api [--ops N] [--watchers N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from apiserver.etcd import Etcd, EtcdSettings
from bench.harness import (
    apiserver_process,
    module_process,
    percentile,
    rate,
    temporary_etcd,
)
from kubelite import daemon
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1

PAYLOAD = {"config.yaml": "replicas: 3\nimage: web:1.0\n" * 4}


def configmap(name: str) -> v1.ConfigMap:
    return v1.ConfigMap(metadata=v1.ObjectMeta(name=name, labels={"app": "bench"}), data=PAYLOAD)


async def raw_etcd(endpoint: str, ops: int) -> dict[str, float]:
    etcd = Etcd(EtcdSettings(endpoints=(endpoint,)))
    value = configmap("x").SerializeToString()
    prefix = f"/raw-{uuid.uuid4().hex[:8]}/"
    figures: dict[str, float] = {}
    try:
        for c in (1, 64):
            run = uuid.uuid4().hex[:6]
            figures[f"puts_per_s_c{c}"] = await rate(
                lambda i: etcd.put(f"{prefix}{run}-{i}".encode(), value), c, ops
            )
            figures[f"ranges_per_s_c{c}"] = await rate(
                lambda i: etcd.range(f"{prefix}{run}-{i}".encode()), c, ops
            )
    finally:
        await etcd.close()
    return figures


async def through_api(address: str, ops: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    async with ApiClient(address) as client:
        for c in (1, 64):
            run = uuid.uuid4().hex[:6]
            figures[f"creates_per_s_c{c}"] = await rate(
                lambda i: client.create(configmap(f"cm-{run}-{i}")), c, ops
            )
            figures[f"gets_per_s_c{c}"] = await rate(
                lambda i: client.get(v1.ConfigMap, f"cm-{run}-{i}"), c, ops
            )
    return figures


async def python_grpc_ceiling(ops: int) -> dict[str, float]:
    """The same client against a do-nothing Python gRPC server (bench/echo_server.py)."""
    with module_process("bench.echo_server") as address:
        async with ApiClient(address) as client:
            return {
                f"creates_per_s_c{c}": await rate(
                    lambda i: client.create(configmap(f"e-{i}")), c, ops
                )
                for c in (1, 64)
            }


async def watch_latency(address: str, watchers: int, events: int) -> dict[str, float]:
    """Latency from the writer's acknowledged create to each watcher receiving it."""
    namespace = f"watch-{uuid.uuid4().hex[:6]}"
    written: dict[str, float] = {}
    latencies: list[float] = []
    async with ApiClient(address) as client:
        await client.create(v1.Namespace(metadata=v1.ObjectMeta(name=namespace)))
        start = await client.list(v1.ConfigMap, namespace)
        ready = asyncio.Event()
        subscribed = 0
        done = 0
        all_done = asyncio.Event()

        async def watch() -> None:
            nonlocal subscribed, done
            received = 0
            stream = client.watch(v1.ConfigMap, namespace, resource_version=start.resource_version,
                                  allow_bookmarks=True)
            subscribed += 1
            if subscribed == watchers:
                ready.set()
            async for event in stream:
                if event.type != "ADDED" or event.object is None:
                    continue
                now = time.perf_counter()
                sent = written.get(event.object.metadata.name)
                if sent is not None:
                    latencies.append(now - sent)
                received += 1
                if received == events:
                    done += 1
                    if done == watchers:
                        all_done.set()
                    return

        tasks = [asyncio.create_task(watch()) for _ in range(watchers)]
        await ready.wait()
        await asyncio.sleep(0.5)  # let every stream reach the server before writing
        for i in range(events):
            name = f"ev-{i}"
            before = time.perf_counter()
            written[name] = before
            await client.create(configmap(name), namespace)
            await asyncio.sleep(0.01)
        await asyncio.wait_for(all_done.wait(), 60)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "watch_latency_ms_p50": round(percentile(latencies, 50) * 1000, 2),
        "watch_latency_ms_p99": round(percentile(latencies, 99) * 1000, 2),
        "watch_events_delivered": len(latencies),
    }


async def main_async(ops: int, watchers: int, events: int) -> dict[str, object]:
    with temporary_etcd() as etcd, apiserver_process(etcd.endpoint) as address:
        raw = await raw_etcd(etcd.endpoint, ops)
        api = await through_api(address, ops)
        latency = await watch_latency(address, watchers, events)
    echo = await python_grpc_ceiling(ops)
    result: dict[str, object] = {"benchmark": "api", "ops_per_measurement": ops}
    result.update({f"api_{k}": round(v, 1) for k, v in api.items()})
    result.update({f"etcd_{k}": round(v, 1) for k, v in raw.items()})
    for c in (1, 64):
        result[f"ratio_creates_to_etcd_puts_c{c}"] = round(
            api[f"creates_per_s_c{c}"] / raw[f"puts_per_s_c{c}"], 3
        )
        result[f"ratio_gets_to_etcd_ranges_c{c}"] = round(
            api[f"gets_per_s_c{c}"] / raw[f"ranges_per_s_c{c}"], 3
        )
        result[f"echo_python_grpc_creates_per_s_c{c}"] = round(echo[f"creates_per_s_c{c}"], 1)
        result[f"ratio_creates_to_python_grpc_echo_c{c}"] = round(
            api[f"creates_per_s_c{c}"] / echo[f"creates_per_s_c{c}"], 3
        )
    result["watchers"] = watchers
    result.update(latency)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ops", type=int, default=3000, help="operations per measurement")
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--events", type=int, default=200, help="events each watcher must receive")
    a = p.parse_args()
    result: dict[str, object] = {}

    async def run() -> None:
        result.update(await main_async(a.ops, a.watchers, a.events))

    daemon.run(run())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
