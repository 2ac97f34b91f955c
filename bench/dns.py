"""kubelite-dns against dnsmasq: cached A lookups from concurrent clients, measured side by
side in one run.

- ``kubelite``: ``python -m clusterdns`` (its own process) with its own API server and etcd,
  serving ``--services`` Services (ClusterIPs allocated by the API server);
- ``dnsmasq`` (Debian's dnsmasq-base): the reference, serving a hosts file with the same
  names and addresses (``--no-resolv --no-hosts --addn-hosts``), from its cache as well.

The load cycles through every name (A queries) with ``--clients`` clients each waiting for
its answer before it asks again (16 queries in flight). With dnsperf installed (Debian's
dnsperf, the default generator): queries/s from a run of ``--duration`` seconds, then
p50/p99 latency from a second, verbose run of the same load (printing every answer costs
dnsperf time, so its rate is not the one reported). Without it, a Python (uvloop) generator
in its own process measures both at once (it is then the bottleneck: the ratios say less).
Every answer is checked: lost queries and rcodes other than NOERROR are counted as errors.

Prints one JSON object with, per target, queries/s, p50/p99/average latency in
microseconds, errors and the server's CPU time per query, and the ratios kubelite/dnsmasq
of queries/s (goal >= 0.5) and dnsmasq/kubelite of p99 latency and CPU per query (above 1
favours kubelite). Traffic stays on 127.0.0.1.

Usage: python -m bench.dns [--services N] [--clients N] [--duration S]
       [--generator auto|dnsperf|python]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

from bench.harness import apiserver_process, percentile, stop, temporary_etcd
from bench.proxy import cpu_seconds
from kubelite import daemon
from kubelite.client.client import ApiClient
from kubelite.ports import free_port
from protos.v1 import objects_pb2 as v1

HOST = "127.0.0.1"
ZONE = "cluster.local"
NAMESPACE = "default"


# --------------------------------------------------------------------------- targets


async def _create_services(api: str, count: int) -> dict[str, str]:
    """``count`` Services; their FQDNs -> ClusterIPs."""
    names: dict[str, str] = {}
    async with ApiClient(api) as client:
        for i in range(count):
            svc = v1.Service(metadata=v1.ObjectMeta(name=f"svc-{i}", namespace=NAMESPACE))
            svc.spec.ports.add(name="http", port=80, protocol="TCP")
            created = await client.create(svc)
            names[f"svc-{i}.{NAMESPACE}.svc.{ZONE}"] = created.spec.cluster_ip
    return names


@contextlib.contextmanager
def server_process(argv: Sequence[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server until the block ends (SIGTERM, then SIGKILL after 10 s); output to ``log``."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        stop(proc)


def wait_answering(port: int, names: dict[str, str], proc: subprocess.Popen[bytes], log: Path,
                   timeout: float = 30.0) -> None:
    """Until the server answers every name with its address."""
    deadline = time.monotonic() + timeout
    pending = dict(names)
    while pending:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:"
                               f" {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} names unanswered after {timeout}s;"
                               f" log: {log.read_text()[-2000:]}")
        for name, ip in list(pending.items()):
            try:
                response = dns.query.udp(dns.message.make_query(name, "A"), HOST, 0.5, port)
            except (dns.exception.Timeout, OSError):
                break
            if [str(r) for rrset in response.answer for r in rrset] == [ip]:
                del pending[name]
            else:
                time.sleep(0.05)
                break


# --------------------------------------------------------------------------- load


def _dnsperf(port: int, queries: Path, clients: int, duration: float, verbose: bool
             ) -> str:
    argv = ["dnsperf", "-s", HOST, "-p", str(port), "-d", str(queries), "-c", str(clients),
            "-q", str(clients), "-l", str(duration), "-t", "1"]
    if verbose:
        argv.append("-v")
    return subprocess.run(argv, capture_output=True, text=True, check=True,
                          timeout=duration + 30).stdout


def _field(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"unexpected dnsperf output (no {pattern!r}): {text[-2000:]}")
    return found.group(1)


def dnsperf_load(port: int, queries: Path, clients: int, duration: float, pid: int
                 ) -> dict[str, float]:
    cpu0 = cpu_seconds(pid)
    rate_run = _dnsperf(port, queries, clients, duration, verbose=False)
    cpu = cpu_seconds(pid) - cpu0
    completed = int(_field(r"Queries completed:\s+(\d+)", rate_run))
    lost = int(_field(r"Queries lost:\s+(\d+)", rate_run))
    noerror = re.search(r"NOERROR (\d+)", _field(r"Response codes:\s+(.*)", rate_run))
    latency_run = _dnsperf(port, queries, clients, duration / 2, verbose=True)
    latencies: list[float] = []
    errors = lost + completed - (int(noerror.group(1)) if noerror else 0)
    for line in latency_run.splitlines():
        if line.startswith("> "):
            words = line.split()
            latencies.append(float(words[-1]))
            errors += words[1] != "NOERROR"
    return {
        "queries_per_s": float(_field(r"Queries per second:\s+([\d.]+)", rate_run)),
        "queries": completed,
        "errors": errors,
        "avg_latency_us": float(_field(r"Average Latency \(s\):\s+([\d.]+)", rate_run)) * 1e6,
        "p50_latency_us": percentile(latencies, 50) * 1e6,
        "p99_latency_us": percentile(latencies, 99) * 1e6,
        "cpu_us_per_query": cpu / completed * 1e6 if completed else 0.0,
    }


class _Client(asyncio.DatagramProtocol):
    """One client: one query in flight on its own socket."""

    def __init__(self) -> None:
        self.waiter: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)


async def _python_load(port: int, names: Sequence[str], clients: int, duration: float
                       ) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    wires = [dns.message.make_query(name, "A").to_wire() for name in names]
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def client(offset: int) -> None:
        nonlocal errors
        transport, protocol = await loop.create_datagram_endpoint(
            _Client, remote_addr=(HOST, port))
        try:
            i = offset
            while time.perf_counter() < deadline:
                query_id = random.getrandbits(16).to_bytes(2, "big")
                wire = query_id + wires[i % len(wires)][2:]
                i += 1
                protocol.waiter = loop.create_future()
                start = time.perf_counter()
                transport.sendto(wire)
                try:
                    answer = await asyncio.wait_for(protocol.waiter, 1.0)
                except TimeoutError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - start)
                if answer[:2] != query_id or answer[3] & 0x0F != dns.rcode.NOERROR:
                    errors += 1
        finally:
            transport.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(i * 7) for i in range(clients)))
    elapsed = time.perf_counter() - start
    return {
        "queries_per_s": len(latencies) / elapsed,
        "queries": len(latencies),
        "errors": errors,
        "avg_latency_us": sum(latencies) / max(1, len(latencies)) * 1e6,
        "p50_latency_us": percentile(latencies, 50) * 1e6,
        "p99_latency_us": percentile(latencies, 99) * 1e6,
    }


def python_load(port: int, names_file: Path, clients: int, duration: float
                ) -> dict[str, float]:
    """The Python generator in its own process (so it does not share the bench's loop)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.dns", "loadgen", "--port", str(port),
         "--names", str(names_file), "--clients", str(clients), "--duration", str(duration)],
        capture_output=True, text=True, check=True, timeout=duration + 60,
    ).stdout
    return dict(json.loads(out))


def measure(name: str, port: int, pid: int, files: dict[str, Path], a: argparse.Namespace,
            generator: str) -> dict[str, float]:
    """The figures of one target, with that server's CPU time per query (steadier than
    rates when other processes share the machine)."""
    print(f"measuring {name} ...", file=sys.stderr, flush=True)
    if generator == "dnsperf":
        figures = dnsperf_load(port, files["queries"], a.clients, a.duration, pid)
    else:
        cpu0 = cpu_seconds(pid)
        figures = python_load(port, files["names"], a.clients, a.duration)
        cpu = cpu_seconds(pid) - cpu0
        figures["cpu_us_per_query"] = cpu / figures["queries"] * 1e6 if figures["queries"] else 0.0
    return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in figures.items()}


# --------------------------------------------------------------------------- run


def run(a: argparse.Namespace) -> dict[str, object]:
    generator = a.generator
    if generator == "auto":
        generator = "dnsperf" if shutil.which("dnsperf") else "python"
    dnsmasq = shutil.which("dnsmasq") or (
        "/usr/sbin/dnsmasq" if Path("/usr/sbin/dnsmasq").exists() else None)
    result: dict[str, object] = {
        "benchmark": "dns",
        "cpus": os.cpu_count(),
        "services": a.services,
        "clients": a.clients,
        "duration_s": a.duration,
        "generator": generator,
        "query": "A, cycling through every Service's name",
    }
    figures: dict[str, dict[str, float]] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-dns-")))
        tmp.chmod(0o755)  # dnsmasq reads the hosts file after dropping root (to nobody)
        etcd = stack.enter_context(temporary_etcd())
        api = stack.enter_context(apiserver_process(etcd.endpoint))
        names: dict[str, str] = {}

        async def create() -> None:
            names.update(await _create_services(api, a.services))

        daemon.run(create())
        files = {"hosts": tmp / "hosts", "queries": tmp / "queries", "names": tmp / "names"}
        files["hosts"].write_text("".join(f"{ip} {name}\n" for name, ip in names.items()))
        files["queries"].write_text("".join(f"{name} A\n" for name in names))
        files["names"].write_text("".join(f"{name}\n" for name in names))

        port = free_port()
        log = tmp / "kubelite-dns.log"
        with server_process(
            [sys.executable, "-m", "clusterdns", "--server", api, "--listen-address", HOST,
             "--port", str(port), "--resolv-conf", "/dev/null", "--health-address", "",
             "--log-level", "error"], log,
        ) as proc:
            wait_answering(port, names, proc, log)
            figures["kubelite"] = measure("kubelite-dns", port, proc.pid, files, a, generator)

        if dnsmasq is None:
            result["dnsmasq"] = ("missing: install it (apt-get install -y dnsmasq-base) to"
                                 " compare")
        else:
            version = subprocess.run([dnsmasq, "--version"], capture_output=True,
                                     text=True).stdout.splitlines()[0]
            result["dnsmasq_version"] = version
            port = free_port()
            log = tmp / "dnsmasq.log"
            with server_process(
                [dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=",
                 "--port", str(port), "--listen-address", HOST, "--bind-interfaces",
                 "--no-resolv", "--no-hosts", "--addn-hosts", str(files["hosts"]),
                 "--log-facility=-"], log,
            ) as proc:
                wait_answering(port, names, proc, log)
                figures["dnsmasq"] = measure("dnsmasq", port, proc.pid, files, a, generator)
    for target, values in figures.items():
        for key, value in values.items():
            result[f"{target}_{key}"] = value
    if "dnsmasq" in figures:
        ours, ref = figures["kubelite"], figures["dnsmasq"]
        result["ratio_kubelite_to_dnsmasq_queries_per_s"] = round(
            ours["queries_per_s"] / ref["queries_per_s"], 3)
        # Latency and CPU: dnsmasq's over kubelite's, so that above 1 favours kubelite.
        for metric in ("p50_latency_us", "p99_latency_us", "cpu_us_per_query"):
            result[f"ratio_dnsmasq_to_kubelite_{metric}"] = (
                round(ref[metric] / ours[metric], 3) if ours[metric] else None)
        result["goal_queries_per_s_ratio"] = 0.5
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command")
    g = sub.add_parser("loadgen", help="(internal) the Python load generator")
    g.add_argument("--port", type=int, required=True)
    g.add_argument("--names", required=True, help="file of names, one a line")
    g.add_argument("--clients", type=int, default=16)
    g.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--services", type=int, default=100, help="Services (names) served")
    p.add_argument("--clients", type=int, default=16, help="clients, one query in flight each")
    p.add_argument("--duration", type=float, default=5.0,
                   help="seconds of load per target (dnsperf: plus half that for latency)")
    p.add_argument("--generator", choices=["auto", "dnsperf", "python"], default="auto")
    a = p.parse_args(argv)
    if a.command == "loadgen":
        out: dict[str, float] = {}
        names = Path(a.names).read_text().split()

        async def load() -> None:
            out.update(await _python_load(a.port, names, a.clients, a.duration))

        daemon.run(load())
        print(json.dumps(out))
        return
    print(json.dumps(run(a), indent=2))


if __name__ == "__main__":
    main()
