"""API server throughput and watch latency, against raw etcd measured in the same run, and
the cost of security: the same API server secured, beside the insecure one.

Prints one JSON object:
- creates/s and gets/s of ConfigMaps and creates/s of Secrets through the insecure API
  server (its own process, ``--insecure``) at concurrency 1 and 64 (``api_*``), ``--ops``
  operations per measurement at 1 and ``--ops-c64`` at 64 (chunks of 2,000 by default, so
  the 64 clients' start and end are a small part of each);
- the same through a secured API server (``secured_*``), as ``kubelite up`` runs it:
  ``kubelite init``'s certificates, TLS, the client authenticated by an x509 certificate of
  a user who is not an admin and is authorized by RBAC (a RoleBinding to ``edit`` in the
  benchmark's namespace), the Node and RBAC authorizers, the default admission plugins and
  Secrets encrypted in etcd (aesgcm); etcd over mutual TLS unless ``--secured-etcd plain``.
  The two servers take turns (``--rounds`` chunks per measurement), and
  ``ratio_secured_to_insecure_*`` is the quotient of their rates: the cost of security (1.0
  is free; the goal is 0.8 or more);
- ``cpu_ms_per_op``: CPU one operation costs the client, the API server and etcd on each
  side, and ``ratio_secured_to_insecure_cpu_efficiency_*``, the quotient of their sums
  (steadier than the rates when other processes share the machine);
- raw etcd puts/s and ranges/s from the same gRPC etcd client at the same concurrencies, their
  ratios to the insecure API server's, and the same over etcd's mutual TLS (``etcd_tls_*``);
- a ceiling: the same client against a do-nothing Python gRPC server (bench/echo_server.py),
  in plaintext and with the secured server's TLS and client certificate (``echo_tls_*``), so
  the cost of TLS alone in Python gRPC shows beside the cost of security; creates and
  gets through the insecure server against it (``ratio_creates_to_python_grpc_echo_cC``,
  ``ratio_gets_to_python_grpc_echo_cC``; the goal at c64 is 0.7 and 0.8); the echo servers
  take turns with the API servers, chunk by chunk, so the ratio does not move with the
  machine's load between two phases of the run;
- the CPU one create costs the API server and etcd, beside what one raw put costs etcd
  (``api_server_cpu_us_per_create_cC``, ``etcd_cpu_us_per_create_cC``,
  ``etcd_cpu_us_per_raw_put_cC``);
- dry-run creates through the insecure server (``api_dry_run_creates_per_s_cC``), taking
  turns with the echo server's creates: everything a create does but storage (decoding,
  defaults, admission, validation, the answer), so that its rate and CPU
  (``ratio_dry_run_creates_to_python_grpc_echo_cC``,
  ``api_server_cpu_us_per_dry_run_create_cC``) split a create's cost into the work before
  storage and storage itself (etcd's transaction and the watch event);
- creates/s and gets/s of ConfigMaps through the insecure server's Kubernetes HTTP/JSON API
  (``--http-listen``; aiohttp, a keep-alive pool of as many connections as the concurrency)
  at concurrency 1 and 64 (``http_*``), taking turns with its gRPC API, and
  ``ratio_http_to_grpc_*``, the quotient of their rates (and of their CPU per operation);
- watch event latency p50/p99 (write acknowledged -> event delivered) with 100 watchers on
  the insecure server;
- ``scaleout``: creates/s and gets/s at c64 through one API server and through two over one
  etcd with the client's round robin, and their ratios (bench/scaleout.py).

Usage: python -m bench.api [--ops N] [--ops-c64 N] [--rounds N] [--watchers N] [--events N]
                           [--security on|off] [--secured-etcd tls|plain] [--http on|off]
                           [--scaleout on|off] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from apiserver.encryption import ENCRYPTED_PREFIX
from apiserver.etcd import Etcd, EtcdSettings
from bench.harness import (
    apiserver_process,
    child_serving,
    module_process,
    percentile,
    py_spy,
    rate,
    temporary_etcd,
)
from bench.proxy import cpu_seconds
from kubelite import daemon
from kubelite.api.errors import Forbidden
from kubelite.client.client import ApiClient
from kubelite.client.config import ClientConfig, load_kubeconfig
from kubelite.cluster_security import apiserver_security, etcd_tls
from kubelite.etcd_process import EtcdProcess
from kubelite.pki import ClusterPki, init_cluster, issue
from kubelite.ports import free_port
from kubelite.testing.wait import eventually
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
SECURED_PREFIX_ON_SHARED_ETCD = "/registry-secured"
"""The secured server's key prefix when it shares the insecure server's etcd."""
PROFILE_RATE = 100
"""Samples per second py-spy takes of each API server with --profile."""
PERMISSION_TIMEOUT = 20.0
"""Seconds the secured server gets to see the RoleBinding (its RBAC copy follows a watch)."""
API_FIGURES = ("creates_per_s", "gets_per_s", "secret_creates_per_s")
"""What is measured through each API server (gets read what the creates before them made)."""
DRY_RUN_FIGURE = "dry_run_creates_per_s"
"""Measured through the insecure server and the plaintext echo server (which answers a
dry-run create as any create)."""
ECHO_FIGURES = ("creates_per_s", "gets_per_s")
HTTP_FIGURES = ("creates_per_s", "gets_per_s")
"""What is measured through the insecure server's HTTP API, beside the same through gRPC."""
HTTP_READY_TIMEOUT = 20.0
"""Seconds the insecure server's HTTP API gets to answer /readyz once its gRPC API serves."""

Ops = dict[int, int]
"""Operations per measurement, by concurrency."""
Operation = Callable[[int], Awaitable[object]]
Operations = Callable[[str, int, int], Operation]
"""``(figure, concurrency, chunk)`` -> the ``i``-th call of that chunk of a measurement."""


def configmap(name: str) -> v1.ConfigMap:
    return v1.ConfigMap(metadata=v1.ObjectMeta(name=name, labels={"app": "bench"}), data=PAYLOAD)


def secret(name: str) -> v1.Secret:
    return v1.Secret(metadata=v1.ObjectMeta(name=name, labels={"app": "bench"}),
                     data=SECRET_PAYLOAD, type="Opaque")


async def raw_etcd(settings: EtcdSettings, ops: Ops, etcd_pid: int | None = None
                   ) -> dict[str, float]:
    """Puts and ranges per second straight to etcd; given its pid, also etcd's CPU
    microseconds per put and per range (``cpu_us_per_put_cC``)."""
    etcd = Etcd(settings)
    value = configmap("x").SerializeToString()
    prefix = f"/raw-{uuid.uuid4().hex[:8]}/"
    figures: dict[str, float] = {}

    async def measured(name: str, op: Operation, c: int) -> None:
        before = cpu_seconds(etcd_pid) if etcd_pid is not None else 0.0
        figures[f"{name}s_per_s_c{c}"] = await rate(op, c, ops[c])
        if etcd_pid is not None:
            figures[f"cpu_us_per_{name}_c{c}"] = (
                (cpu_seconds(etcd_pid) - before) / ops[c] * 1e6)

    try:
        for c in CONCURRENCIES:
            run = uuid.uuid4().hex[:6]
            await measured("put", lambda i: etcd.put(f"{prefix}{run}-{i}".encode(), value), c)
            await measured("range", lambda i: etcd.range(f"{prefix}{run}-{i}".encode()), c)
    finally:
        await etcd.close()
    return figures


# --------------------------------------------------------------------------- sides


def grpc_operations(client: ApiClient) -> Operations:
    """Calls through the gRPC API. Names depend on the concurrency and the chunk only: each
    server has its own store, and the gets find the creates' objects."""
    def operation(figure: str, c: int, chunk: int) -> Operation:
        if figure == "creates_per_s":
            return lambda i: client.create(configmap(f"cm-c{c}-{chunk}-{i}"), NAMESPACE)
        if figure == "gets_per_s":
            return lambda i: client.get(v1.ConfigMap, f"cm-c{c}-{chunk}-{i}", NAMESPACE)
        if figure == DRY_RUN_FIGURE:
            return lambda i: client.create(configmap(f"dry-c{c}-{chunk}-{i}"), NAMESPACE,
                                           dry_run=True)
        if figure == "secret_creates_per_s":
            return lambda i: client.create(secret(f"s-c{c}-{chunk}-{i}"), NAMESPACE)
        raise ValueError(f"figure: unknown {figure!r}")
    return operation


def configmap_json(name: str) -> dict[str, Any]:
    """:func:`configmap` as the HTTP API takes it."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"app": "bench"}}, "data": PAYLOAD}


async def http_call(session: aiohttp.ClientSession, method: str, path: str, expected: int,
                    body: dict[str, Any] | None = None) -> object:
    """One request; the decoded JSON answer (as the gRPC client decodes its own)."""
    async with session.request(method, path, json=body) as response:
        if response.status != expected:
            text = await response.text()
            raise RuntimeError(f"{method} {path}: HTTP {response.status}, expected {expected}:"
                               f" {text[:500]}")
        return await response.json()


@asynccontextmanager
async def http_operations(address: str) -> AsyncIterator[Operations]:
    """Calls through the HTTP API at ``address`` (plaintext): at each concurrency, a session
    keeping alive as many connections as the calls in flight. Their names differ from the
    gRPC API's, which writes to the same server."""
    base = f"http://{address}"
    sessions = {c: aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(
        limit=c, limit_per_host=c, force_close=False)) for c in CONCURRENCIES}
    try:
        async def ready() -> bool:
            async with sessions[1].get("/readyz") as response:
                return response.status == 200
        await eventually(ready, timeout=HTTP_READY_TIMEOUT,
                         message=f"the HTTP API at {address} to answer /readyz")
        configmaps = f"/api/v1/namespaces/{NAMESPACE}/configmaps"

        def operation(figure: str, c: int, chunk: int) -> Operation:
            session = sessions[c]
            if figure == "creates_per_s":
                return lambda i: http_call(session, "POST", configmaps, 201,
                                           configmap_json(f"http-cm-c{c}-{chunk}-{i}"))
            if figure == "gets_per_s":
                return lambda i: http_call(session, "GET",
                                           f"{configmaps}/http-cm-c{c}-{chunk}-{i}", 200)
            raise ValueError(f"figure: unknown {figure!r}")
        yield operation
    finally:
        for session in sessions.values():
            await session.close()


@dataclass
class Side:
    """One server measured: its client, and the processes whose CPU its work costs."""

    name: str
    operations: Operations
    figures: Sequence[str]
    """What is measured on this side (of the figures a measurement asks for)."""
    server_pid: int
    etcd_pid: int | None = None
    """None: the server has no etcd (the echo server)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall seconds per measurement (``figure_cC``)."""
    done: dict[str, int] = field(default_factory=dict)
    """Operations per measurement."""
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    """CPU seconds per measurement: of this client's process, the server and etcd."""

    async def run(self, key: str, op: Operation, c: int, count: int) -> None:
        before = self.cpu_now()
        start = time.perf_counter()
        await rate(op, c, count)
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start
        self.done[key] = self.done.get(key, 0) + count
        spent = self.cpu.setdefault(key, {})
        for process, value in self.cpu_now().items():
            spent[process] = spent.get(process, 0.0) + value - before[process]

    def cpu_now(self) -> dict[str, float]:
        now = {"client": time.process_time(), "server": cpu_seconds(self.server_pid)}
        if self.etcd_pid is not None:
            now["etcd"] = cpu_seconds(self.etcd_pid)
        return now

    def rates(self) -> dict[str, float]:
        """``{name}_{figure}_cC``: operations per second."""
        return {f"{self.name}_{key}": self.done[key] / seconds
                for key, seconds in self.seconds.items()}

    def cpu_ms_per_op(self) -> dict[str, dict[str, float]]:
        """Per measurement (``figure_cC`` without ``_per_s``): CPU ms per operation."""
        return {key.replace("_per_s", ""): {process: round(seconds / self.done[key] * 1000, 3)
                                            for process, seconds in spent.items()}
                for key, spent in self.cpu.items()}


def chunks(ops: int, rounds: int) -> list[int]:
    """``ops`` cut into ``rounds`` chunks as equal as can be."""
    return [ops // rounds + (1 if r < ops % rounds else 0) for r in range(rounds)]


async def side_by_side(sides: Sequence[Side], figures: Sequence[str], ops: Ops,
                       rounds: int) -> None:
    """Every measurement at every concurrency on each side, in ``rounds`` chunks that take
    turns (A B, B A, A B, ...), so that load from elsewhere on the machine falls on every side
    alike. A side measures only the figures among its own."""
    for c in CONCURRENCIES:
        for figure in figures:
            key = f"{figure}_c{c}"
            measured = [side for side in sides if figure in side.figures]
            for r, count in enumerate(chunks(ops[c], rounds)):
                for side in measured if r % 2 == 0 else list(reversed(measured)):
                    await side.run(key, side.operations(figure, c, r), c, count)


def process_id(etcd: EtcdProcess) -> int:
    if etcd.process is None:
        raise RuntimeError("etcd is not running")
    return etcd.process.pid


# --------------------------------------------------------------------------- secured server


def user_config(pki: ClusterPki, address: str) -> ClientConfig:
    """The benchmark's user: a certificate of the cluster CA, no permission but its binding."""
    cert, key = issue(pki.ca_cert.read_bytes(), pki.ca_key.read_bytes(), BENCH_USER,
                      [BENCH_GROUP], client=True)
    return ClientConfig(address, ca_pem=pki.ca_cert.read_bytes(), cert_pem=cert, key_pem=key)


@dataclass(frozen=True)
class SecuredServer:
    """A secured API server of the benchmark."""

    address: str
    pki: ClusterPki
    etcd: EtcdSettings
    """How a client reaches its etcd (the Secrets' check, the raw etcd TLS reference)."""
    etcd_pid: int
    prefix: str

    def admin(self) -> ClientConfig:
        """``kubelite init``'s admin (system:masters)."""
        return dataclasses.replace(load_kubeconfig(self.pki.admin_conf), server=self.address)


@contextmanager
def secured_apiserver(pki: ClusterPki, shared_etcd: EtcdProcess, directory: Path,
                      etcd_transport: str) -> Iterator[SecuredServer]:
    """The API server as ``kubelite up`` runs it, on ``kubelite init``'s files: over its own
    etcd (data under ``directory``) with mutual TLS (``etcd_transport`` "tls"), or over the
    shared plaintext etcd under a prefix of its own ("plain")."""
    security = apiserver_security(pki)
    if etcd_transport == "plain":
        security = dataclasses.replace(security, etcd_cafile=None, etcd_certfile=None,
                                       etcd_keyfile=None)
        with apiserver_process(shared_etcd.endpoint, "--etcd-prefix",
                               SECURED_PREFIX_ON_SHARED_ETCD, *security.flags()) as address:
            yield SecuredServer(address, pki, EtcdSettings(endpoints=(shared_etcd.endpoint,)),
                                process_id(shared_etcd), SECURED_PREFIX_ON_SHARED_ETCD)
        return
    etcd = EtcdProcess(directory / "etcd-tls", tls=etcd_tls(pki))
    etcd.start()
    try:
        with apiserver_process(etcd.endpoint, "--etcd-prefix", ETCD_PREFIX,
                               *security.flags()) as address:
            yield SecuredServer(address, pki, EtcdSettings(
                endpoints=(etcd.endpoint,), ca_file=str(pki.etcd_ca_cert),
                cert_file=str(pki.apiserver_etcd_client_cert),
                key_file=str(pki.apiserver_etcd_client_key)), process_id(etcd), ETCD_PREFIX)
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


# --------------------------------------------------------------------------- measurements


@dataclass
class ApiFigures:
    sides: list[Side]
    etcd_tls: dict[str, float] | None = None
    """Raw etcd over mutual TLS (the secured server's own etcd), when it has one."""


@contextmanager
def profiled(sides: Sequence[Side], directory: Path | None) -> Iterator[None]:
    """py-spy records each side's server while the block runs, into DIRECTORY/SIDE.txt:
    collapsed stacks of the thread holding the GIL (what costs the server's Python time)."""
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    spy = py_spy()
    recorders = [subprocess.Popen(
        [spy, "record", "--pid", str(side.server_pid), "--gil", "--nonblocking",
         "--format", "raw", "--rate", str(PROFILE_RATE), "-o", str(directory / f"{side.name}.txt")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for side in sides]
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)  # py-spy writes its file and exits
        for recorder in recorders:
            _, err = recorder.communicate(timeout=30)
            if recorder.returncode != 0:
                raise RuntimeError(f"py-spy failed ({recorder.returncode}):"
                                   f" {err.decode(errors='replace')[-2000:]}")


@asynccontextmanager
async def http_side(address: str, http_address: str | None, etcd: EtcdProcess
                    ) -> AsyncIterator[list[Side]]:
    """The insecure server's HTTP API at ``http_address`` as a side (none without one)."""
    if http_address is None:
        yield []
        return
    async with http_operations(http_address) as operations:
        yield [Side("http", operations, HTTP_FIGURES, child_serving(address),
                    process_id(etcd))]


async def measure_api(etcd: EtcdProcess, address: str, http_address: str | None,
                      pki: ClusterPki | None, tmp: Path, ops: Ops, rounds: int,
                      secured_etcd: str, profile: Path | None,
                      echo: Sequence[Side]) -> ApiFigures:
    """The API measurements on the insecure server at ``address`` (and through its HTTP API
    at ``http_address`` when given) and, given a PKI, on a secured one beside it (each server
    profiled into ``profile`` when given), taking turns with the ``echo`` servers."""
    async with ApiClient(address) as insecure, \
            http_side(address, http_address, etcd) as http:
        await insecure.create(v1.Namespace(metadata=v1.ObjectMeta(name=NAMESPACE)))
        figures = (*API_FIGURES, DRY_RUN_FIGURE)
        grpc = [Side("api", grpc_operations(insecure), figures, child_serving(address),
                     process_id(etcd))]
        if pki is None:
            with profiled(grpc, profile):
                await side_by_side([*grpc, *http, *echo], figures, ops, rounds)
            return ApiFigures([*grpc, *http])
        with secured_apiserver(pki, etcd, tmp, secured_etcd) as server:
            async with ApiClient(user_config(pki, server.address)) as user:
                await grant_edit(server, user)
                grpc.append(Side("secured", grpc_operations(user), API_FIGURES,
                                 child_serving(server.address), server.etcd_pid))
                with profiled(grpc, profile):
                    await side_by_side([*grpc, *http, *echo], figures, ops, rounds)
            prefixes = await stored_secret_prefixes(server)
            etcd_tls = await raw_etcd(server.etcd, ops) if secured_etcd == "tls" else None
        if prefixes != {ENCRYPTED_PREFIX}:
            raise RuntimeError("the secured server's Secrets are not all stored encrypted:"
                               f" values start with {sorted(prefixes)}")
        return ApiFigures([*grpc, *http], etcd_tls)


@asynccontextmanager
async def echo_servers(pki: ClusterPki | None) -> AsyncIterator[list[Side]]:
    """The ceiling: the same client against a do-nothing Python gRPC server
    (bench/echo_server.py) in plaintext and, given a PKI, with the secured server's TLS and
    client certificate; their sides take turns with the API servers'."""
    with module_process("bench.echo_server") as plain:
        async with ApiClient(plain) as client:
            sides = [Side("echo", grpc_operations(client), (*ECHO_FIGURES, DRY_RUN_FIGURE),
                          child_serving(plain))]
            if pki is None:
                yield sides
                return
            with module_process("bench.echo_server", "--tls-cert-file", str(pki.apiserver_cert),
                                "--tls-private-key-file", str(pki.apiserver_key),
                                "--client-ca-file", str(pki.ca_cert)) as secure:
                async with ApiClient(user_config(pki, secure)) as tls_client:
                    sides.append(Side("echo_tls", grpc_operations(tls_client), ECHO_FIGURES,
                                      child_serving(secure)))
                    yield sides


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


# --------------------------------------------------------------------------- the run


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3)


async def main_async(ops: Ops, rounds: int, watchers: int, events: int, security: bool,
                     secured_etcd: str, profile: Path | None = None, http: bool = True,
                     scaleout: bool = True) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="kubelite-bench-api-") as tmp:
        pki = init_cluster(Path(tmp) / "cluster").pki if security else None
        http_address = f"127.0.0.1:{free_port()}" if http else None
        http_flags = ("--http-listen", http_address) if http_address is not None else ()
        with temporary_etcd() as etcd, \
                apiserver_process(etcd.endpoint, "--insecure", *http_flags) as address:
            raw = await raw_etcd(EtcdSettings(endpoints=(etcd.endpoint,)), ops,
                                 process_id(etcd))
            async with echo_servers(pki) as echo_sides:
                api = await measure_api(etcd, address, http_address, pki, Path(tmp), ops,
                                        rounds, secured_etcd, profile, echo_sides)
            latency = await watch_latency(address, watchers, events)
        scaled: dict[str, float] = {}
        if scaleout:
            # bench.scaleout builds on this module's sides: imported here, not at the top.
            from bench import scaleout as scaleout_bench
            with temporary_etcd() as etcd:
                scaled = await scaleout_bench.measure(etcd.endpoint, ops[64], rounds)

    result: dict[str, object] = {"benchmark": "api",
                                 "ops_per_measurement": {f"c{c}": n for c, n in ops.items()},
                                 "rounds": rounds}
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
    if not http:
        result["http"] = "off: the gRPC API only (--http off)"
    rates: dict[str, float] = {}
    cpu: dict[str, dict[str, dict[str, float]]] = {}
    for side in [*api.sides, *echo_sides]:
        rates.update(side.rates())
        for key, spent in side.cpu_ms_per_op().items():
            cpu.setdefault(key, {})[side.name] = spent
    result.update({k: round(v, 1) for k, v in rates.items()})
    result.update({f"etcd_{k}": round(v, 1) for k, v in raw.items()})
    if api.etcd_tls is not None:
        result.update({f"etcd_tls_{k}": round(v, 1) for k, v in api.etcd_tls.items()})
    for c in CONCURRENCIES:
        if security:
            for figure in API_FIGURES:
                name = figure.removesuffix("_per_s")
                result[f"ratio_secured_to_insecure_{name}_c{c}"] = ratio(
                    rates[f"secured_{figure}_c{c}"], rates[f"api_{figure}_c{c}"])
            for figure in API_FIGURES:
                name = figure.removesuffix("_per_s")
                costs = cpu[f"{name}_c{c}"]
                result[f"ratio_secured_to_insecure_cpu_efficiency_{name}_c{c}"] = ratio(
                    sum(costs["api"].values()), sum(costs["secured"].values()))
            result[f"ratio_echo_tls_to_echo_creates_c{c}"] = ratio(
                rates[f"echo_tls_creates_per_s_c{c}"], rates[f"echo_creates_per_s_c{c}"])
            if api.etcd_tls is not None:
                for op in ("puts", "ranges"):
                    result[f"ratio_etcd_tls_to_etcd_{op}_c{c}"] = ratio(
                        api.etcd_tls[f"{op}_per_s_c{c}"], raw[f"{op}_per_s_c{c}"])
        result[f"ratio_creates_to_etcd_puts_c{c}"] = ratio(
            rates[f"api_creates_per_s_c{c}"], raw[f"puts_per_s_c{c}"])
        result[f"ratio_gets_to_etcd_ranges_c{c}"] = ratio(
            rates[f"api_gets_per_s_c{c}"], raw[f"ranges_per_s_c{c}"])
        result[f"ratio_creates_to_python_grpc_echo_c{c}"] = ratio(
            rates[f"api_creates_per_s_c{c}"], rates[f"echo_creates_per_s_c{c}"])
        result[f"ratio_gets_to_python_grpc_echo_c{c}"] = ratio(
            rates[f"api_gets_per_s_c{c}"], rates[f"echo_gets_per_s_c{c}"])
        # What one create costs the API server and etcd, beside what a put costs etcd alone.
        spent = cpu[f"creates_c{c}"]["api"]
        result[f"api_server_cpu_us_per_create_c{c}"] = round(spent["server"] * 1000)
        result[f"etcd_cpu_us_per_create_c{c}"] = round(spent["etcd"] * 1000)
        result[f"etcd_cpu_us_per_raw_put_c{c}"] = round(raw[f"cpu_us_per_put_c{c}"])
        result[f"echo_server_cpu_us_per_create_c{c}"] = round(
            cpu[f"creates_c{c}"]["echo"]["server"] * 1000)
        # The same without storage: the API's own work before etcd.
        result[f"ratio_dry_run_creates_to_python_grpc_echo_c{c}"] = ratio(
            rates[f"api_{DRY_RUN_FIGURE}_c{c}"], rates[f"echo_{DRY_RUN_FIGURE}_c{c}"])
        result[f"api_server_cpu_us_per_dry_run_create_c{c}"] = round(
            cpu[f"dry_run_creates_c{c}"]["api"]["server"] * 1000)
        if http:
            for figure in HTTP_FIGURES:
                name = figure.removesuffix("_per_s")
                result[f"ratio_http_to_grpc_{name}_c{c}"] = ratio(
                    rates[f"http_{figure}_c{c}"], rates[f"api_{figure}_c{c}"])
                costs = cpu[f"{name}_c{c}"]
                result[f"ratio_http_to_grpc_cpu_efficiency_{name}_c{c}"] = ratio(
                    sum(costs["api"].values()), sum(costs["http"].values()))
    if scaleout:
        result["scaleout"] = scaled
    else:
        result["scaleout"] = "off: one API server only (--scaleout off)"
    result["cpu_ms_per_op"] = cpu
    if profile is not None:
        result["profiles"] = str(profile)
    result["watchers"] = watchers
    result.update(latency)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ops", type=int, default=2000,
                   help="operations per measurement at concurrency 1")
    p.add_argument("--ops-c64", type=int, default=8000,
                   help="operations per measurement at concurrency 64: each of the --rounds"
                        " chunks long enough that the 64 clients' start and end are a small"
                        " part of it (and the scale-out measurement)")
    p.add_argument("--rounds", type=int, default=4,
                   help="chunks each measurement is cut into, the servers taking turns")
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--events", type=int, default=200, help="events each watcher must receive")
    p.add_argument("--security", choices=("on", "off"), default="on",
                   help="on: measure a secured API server beside the insecure one (default)")
    p.add_argument("--secured-etcd", choices=("tls", "plain"), default="tls",
                   help="the secured server's etcd: its own with mutual TLS, as kubelite up"
                        " runs it (default), or the insecure server's plaintext one, which"
                        " leaves the API server's own cost of security alone in the ratio")
    p.add_argument("--http", choices=("on", "off"), default="on",
                   help="on: measure the insecure server's HTTP API beside its gRPC API"
                        " (default)")
    p.add_argument("--scaleout", choices=("on", "off"), default="on",
                   help="on: creates and gets through one API server and through two over one"
                        " etcd, round robin (bench/scaleout.py; default)")
    p.add_argument("--profile", type=Path, default=None, metavar="DIR",
                   help="record each API server with py-spy (pip install py-spy) during the API"
                        " measurements: DIR/api.txt and DIR/secured.txt, collapsed stacks of"
                        " the thread holding the GIL")
    a = p.parse_args()
    if a.profile is not None:
        try:
            py_spy()
        except FileNotFoundError as e:
            p.error(f"--profile: {e}")
    for flag, value in (("--ops", a.ops), ("--ops-c64", a.ops_c64)):
        if value <= 0:
            p.error(f"{flag}: must be greater than 0, got {value}")
    if not 0 < a.rounds <= min(a.ops, a.ops_c64):
        p.error(f"--rounds: must be between 1 and --ops and --ops-c64"
                f" ({min(a.ops, a.ops_c64)}), got {a.rounds}")
    result: dict[str, object] = {}

    async def run() -> None:
        result.update(await main_async({1: a.ops, 64: a.ops_c64}, a.rounds, a.watchers, a.events,
                                       a.security == "on", a.secured_etcd, a.profile,
                                       a.http == "on", a.scaleout == "on"))

    daemon.run(run())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
