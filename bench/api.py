"""API server throughput and watch latency, against raw etcd measured in the same run, and
the cost of security: the same API server secured, beside the insecure one.

Prints one JSON object:
- creates/s and gets/s of ConfigMaps and creates/s of Secrets through the insecure API
  server (its own process, ``--insecure``) at concurrency 1 and 64 (``api_*``);
- the same through a secured API server (``secured_*``), as ``kubelite up`` runs it:
  ``kubelite init``'s certificates, TLS, the client authenticated by an x509 certificate of
  a user who is not an admin and is authorized by RBAC (a RoleBinding to ``edit`` in the
  benchmark's namespace), the Node and RBAC authorizers, the default admission plugins and
  Secrets encrypted in etcd (aesgcm); etcd over mutual TLS unless ``--secured-etcd plain``.
  Each secured measurement runs right after its insecure twin, and
  ``ratio_secured_to_insecure_*`` is their quotient (the cost of security; 1.0 is free);
- raw etcd puts/s and ranges/s from the same gRPC etcd client at the same concurrencies;
- their ratios to the insecure API server's;
- watch event latency p50/p99 (write acknowledged -> event delivered) with 100 watchers;
- a second reference: the same client against a do-nothing Python gRPC server
  (bench/echo_server.py), the ceiling any Python gRPC API server has on this machine.

Usage: python -m bench.api [--ops N] [--watchers N] [--security on|off]
                           [--secured-etcd tls|plain]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from apiserver.encryption import ENCRYPTED_PREFIX
from apiserver.etcd import Etcd, EtcdSettings
from bench.harness import (
    apiserver_process,
    module_process,
    percentile,
    rate,
    temporary_etcd,
)
from kubelite import daemon
from kubelite.api.errors import Forbidden
from kubelite.client.client import ApiClient
from kubelite.client.config import ClientConfig, load_kubeconfig
from kubelite.cluster_security import apiserver_security, etcd_tls
from kubelite.etcd_process import EtcdProcess
from kubelite.pki import ClusterPki, init_cluster, issue
from protos.v1 import objects_pb2 as v1

PAYLOAD = {"config.yaml": "replicas: 3\nimage: web:1.0\n" * 4}
SECRET_PAYLOAD = {"password": b"correct horse battery staple", "token": b"0123456789abcdef" * 4}
CONCURRENCIES = (1, 64)
NAMESPACE = "bench"
"""The namespace every object of the API measurements goes to, on both servers."""
BENCH_USER = "bench-user"
"""The secured client's user: its certificate's CN; no group grants it anything."""
BENCH_GROUP = "bench-developers"
EDIT_BINDING = "bench-user-edit"
RBAC_GROUP = "rbac.authorization.k8s.io"
ETCD_PREFIX = "/registry"
"""The secured server's key prefix (its own etcd, or beside the insecure one's)."""
SECURED_PREFIX_ON_SHARED_ETCD = "/registry-secured"
PERMISSION_TIMEOUT = 20.0
"""Seconds the secured server gets to see the RoleBinding (its RBAC copy follows a watch)."""


def configmap(name: str) -> v1.ConfigMap:
    return v1.ConfigMap(metadata=v1.ObjectMeta(name=name, labels={"app": "bench"}), data=PAYLOAD)


def secret(name: str) -> v1.Secret:
    return v1.Secret(metadata=v1.ObjectMeta(name=name, labels={"app": "bench"}),
                     data=SECRET_PAYLOAD, type="Opaque")


async def raw_etcd(endpoint: str, ops: int) -> dict[str, float]:
    etcd = Etcd(EtcdSettings(endpoints=(endpoint,)))
    value = configmap("x").SerializeToString()
    prefix = f"/raw-{uuid.uuid4().hex[:8]}/"
    figures: dict[str, float] = {}
    try:
        for c in CONCURRENCIES:
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


Measurement = Callable[[ApiClient, int, int], Awaitable[float]]
"""(client, concurrency, ops) -> operations per second."""


def api_measurements() -> dict[str, Measurement]:
    """What is measured through each API server, by figure name (without the ``_cC``).

    Gets read the ConfigMaps the creates before them made (names shared through ``runs``).
    """
    runs: dict[tuple[int, int], str] = {}

    def run_of(client: ApiClient, c: int) -> str:
        return runs.setdefault((id(client), c), uuid.uuid4().hex[:6])

    async def creates(client: ApiClient, c: int, ops: int) -> float:
        run = run_of(client, c)
        return await rate(lambda i: client.create(configmap(f"cm-{run}-{i}"), NAMESPACE), c, ops)

    async def gets(client: ApiClient, c: int, ops: int) -> float:
        run = run_of(client, c)
        return await rate(lambda i: client.get(v1.ConfigMap, f"cm-{run}-{i}", NAMESPACE), c, ops)

    async def secret_creates(client: ApiClient, c: int, ops: int) -> float:
        run = uuid.uuid4().hex[:6]
        return await rate(lambda i: client.create(secret(f"s-{run}-{i}"), NAMESPACE), c, ops)

    return {"creates_per_s": creates, "gets_per_s": gets, "secret_creates_per_s": secret_creates}


async def side_by_side(clients: dict[str, ApiClient], ops: int) -> dict[str, float]:
    """Every API measurement at every concurrency on each client in turn (``{side}_{figure}_cC``),
    so that load from elsewhere on the machine falls on both sides alike."""
    figures: dict[str, float] = {}
    for c in CONCURRENCIES:
        for figure, measure in api_measurements().items():
            for side, client in clients.items():
                figures[f"{side}_{figure}_c{c}"] = await measure(client, c, ops)
    return figures


async def python_grpc_ceiling(ops: int) -> dict[str, float]:
    """The same client against a do-nothing Python gRPC server (bench/echo_server.py)."""
    with module_process("bench.echo_server") as address:
        async with ApiClient(address) as client:
            return {
                f"creates_per_s_c{c}": await rate(
                    lambda i: client.create(configmap(f"e-{i}")), c, ops
                )
                for c in CONCURRENCIES
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


# --------------------------------------------------------------------------- secured server


@dataclass(frozen=True)
class SecuredServer:
    """A secured API server of the benchmark and what its client needs."""

    address: str
    pki: ClusterPki
    etcd: EtcdSettings
    """How to reach its etcd (to check that Secrets are stored encrypted)."""
    prefix: str

    def admin(self) -> ClientConfig:
        """``kubelite init``'s admin (system:masters)."""
        return dataclasses.replace(load_kubeconfig(self.pki.admin_conf), server=self.address)

    def user(self) -> ClientConfig:
        """A user with a certificate of the cluster CA and no permission but its binding."""
        cert, key = issue(self.pki.ca_cert.read_bytes(), self.pki.ca_key.read_bytes(),
                          BENCH_USER, [BENCH_GROUP], client=True)
        return ClientConfig(self.address, ca_pem=self.pki.ca_cert.read_bytes(), cert_pem=cert,
                            key_pem=key)


@contextmanager
def secured_apiserver(shared_etcd: str, directory: Path, etcd_transport: str
                      ) -> Iterator[SecuredServer]:
    """The API server as ``kubelite up`` runs it, on ``kubelite init``'s files under
    ``directory``: over its own etcd with mutual TLS (``etcd_transport`` "tls"), or over the
    shared plaintext etcd under a prefix of its own ("plain")."""
    pki = init_cluster(directory / "cluster").pki
    security = apiserver_security(pki)
    if etcd_transport == "plain":
        security = dataclasses.replace(security, etcd_cafile=None, etcd_certfile=None,
                                       etcd_keyfile=None)
        with apiserver_process(shared_etcd, "--etcd-prefix", SECURED_PREFIX_ON_SHARED_ETCD,
                               *security.flags()) as address:
            yield SecuredServer(address, pki, EtcdSettings(endpoints=(shared_etcd,)),
                                SECURED_PREFIX_ON_SHARED_ETCD)
        return
    etcd = EtcdProcess(directory / "etcd-tls", tls=etcd_tls(pki))
    etcd.start()
    try:
        with apiserver_process(etcd.endpoint, "--etcd-prefix", ETCD_PREFIX,
                               *security.flags()) as address:
            yield SecuredServer(address, pki, EtcdSettings(
                endpoints=(etcd.endpoint,), ca_file=str(pki.etcd_ca_cert),
                cert_file=str(pki.apiserver_etcd_client_cert),
                key_file=str(pki.apiserver_etcd_client_key)), ETCD_PREFIX)
    finally:
        etcd.stop()


async def grant_edit(server: SecuredServer, user: ApiClient) -> None:
    """The namespace and the user's RoleBinding to ``edit`` in it (made by the admin); returns
    once the user's first create is allowed."""
    async with ApiClient(server.admin()) as admin:
        await admin.create(v1.Namespace(metadata=v1.ObjectMeta(name=NAMESPACE)))
        await admin.create(v1.RoleBinding(
            metadata=v1.ObjectMeta(name=EDIT_BINDING, namespace=NAMESPACE),
            subjects=[v1.Subject(kind="User", api_group=RBAC_GROUP, name=BENCH_USER)],
            role_ref=v1.RoleRef(api_group=RBAC_GROUP, kind="ClusterRole", name="edit")))
    deadline = time.monotonic() + PERMISSION_TIMEOUT
    while True:
        try:
            await user.create(configmap("permission-check"), NAMESPACE)
            return
        except Forbidden:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.05)


async def stored_secret_prefixes(server: SecuredServer) -> set[bytes]:
    """How the secured server's Secrets start in etcd (the encryption prefix, or raw)."""
    etcd = Etcd(server.etcd)
    try:
        start = f"{server.prefix}/secrets/{NAMESPACE}/".encode()
        response = await etcd.range(start, start[:-1] + b"0", limit=20)
    finally:
        await etcd.close()
    return {kv.value[:len(ENCRYPTED_PREFIX)] for kv in response.kvs}


@asynccontextmanager
async def secured_client(server: SecuredServer) -> AsyncIterator[ApiClient]:
    async with ApiClient(server.user()) as user:
        await grant_edit(server, user)
        yield user


# --------------------------------------------------------------------------- the run


async def main_async(ops: int, watchers: int, events: int, security: bool,
                     secured_etcd: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="kubelite-bench-api-") as tmp, \
            temporary_etcd() as etcd, \
            apiserver_process(etcd.endpoint, "--insecure") as address:
        raw = await raw_etcd(etcd.endpoint, ops)
        async with ApiClient(address) as insecure:
            await insecure.create(v1.Namespace(metadata=v1.ObjectMeta(name=NAMESPACE)))
            if security:
                with secured_apiserver(etcd.endpoint, Path(tmp), secured_etcd) as server:
                    async with secured_client(server) as secured:
                        api = await side_by_side({"api": insecure, "secured": secured}, ops)
                    prefixes = await stored_secret_prefixes(server)
                if prefixes != {ENCRYPTED_PREFIX}:
                    raise RuntimeError("the secured server's Secrets are not all stored"
                                       f" encrypted: values start with {sorted(prefixes)}")
            else:
                api = await side_by_side({"api": insecure}, ops)
        latency = await watch_latency(address, watchers, events)
    echo = await python_grpc_ceiling(ops)
    result: dict[str, object] = {"benchmark": "api", "ops_per_measurement": ops}
    if security:
        result["security"] = {
            "secured_server": "TLS; x509 client certificate of a user bound to ClusterRole"
                              f" edit in namespace {NAMESPACE}; authorization Node,RBAC;"
                              " default admission plugins; Secrets encrypted with aesgcm",
            "secured_etcd": "mutual TLS" if secured_etcd == "tls" else "plaintext (shared)",
            "secured_secrets_stored_encrypted": True,
        }
    else:
        result["security"] = "off: the insecure server only (--security off)"
    result.update({k: round(v, 1) for k, v in api.items()})
    result.update({f"etcd_{k}": round(v, 1) for k, v in raw.items()})
    for c in CONCURRENCIES:
        if security:
            for figure in api_measurements():
                name = figure.removesuffix("_per_s")
                result[f"ratio_secured_to_insecure_{name}_c{c}"] = round(
                    api[f"secured_{figure}_c{c}"] / api[f"api_{figure}_c{c}"], 3)
        result[f"ratio_creates_to_etcd_puts_c{c}"] = round(
            api[f"api_creates_per_s_c{c}"] / raw[f"puts_per_s_c{c}"], 3
        )
        result[f"ratio_gets_to_etcd_ranges_c{c}"] = round(
            api[f"api_gets_per_s_c{c}"] / raw[f"ranges_per_s_c{c}"], 3
        )
        result[f"echo_python_grpc_creates_per_s_c{c}"] = round(echo[f"creates_per_s_c{c}"], 1)
        result[f"ratio_creates_to_python_grpc_echo_c{c}"] = round(
            api[f"api_creates_per_s_c{c}"] / echo[f"creates_per_s_c{c}"], 3
        )
    result["watchers"] = watchers
    result.update(latency)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ops", type=int, default=3000, help="operations per measurement")
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--events", type=int, default=200, help="events each watcher must receive")
    p.add_argument("--security", choices=("on", "off"), default="on",
                   help="on: measure a secured API server beside the insecure one (default)")
    p.add_argument("--secured-etcd", choices=("tls", "plain"), default="tls",
                   help="the secured server's etcd: its own with mutual TLS, as kubelite up"
                        " runs it (default), or the insecure server's plaintext one, which"
                        " leaves the API server's own cost of security alone in the ratio")
    a = p.parse_args()
    if a.ops <= 0:
        p.error(f"--ops: must be greater than 0, got {a.ops}")
    result: dict[str, object] = {}

    async def run() -> None:
        result.update(await main_async(a.ops, a.watchers, a.events, a.security == "on",
                                       a.secured_etcd))

    daemon.run(run())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
