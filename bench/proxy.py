"""kubelite-proxy against direct connections and haproxy, measured side by side in one run.

Prints one JSON object with, for each target,
- ``direct``: the client connects to the backend ports itself (round robin in the client),
- ``proxy``: through ``python -m proxy`` (its own process) on a Service's ClusterIP, the
  Service and its hand-written Endpoints stored through a real API server and etcd,
- ``haproxy``: haproxy in TCP mode with ``balance roundrobin`` over the same backend ports,

- bulk throughput in MB/s, download (backend -> client) and upload (client -> backend), each
  ``--bulk-bytes`` split over ``--bulk-connections`` connections;
- new-connection rate: short HTTP GETs with ``Connection: close`` (one request per
  connection) at concurrency ``--concurrency``, from wrk when installed, else from a Python
  (uvloop) load generator process sending ``--requests`` requests; the same generator for all
  three targets;

- the proxy's and haproxy's own CPU time per GB and per connection (steadier than the rates
  when other work shares the machine);

and the ratios proxy/direct and proxy/haproxy (for CPU costs haproxy/proxy, so that above 1
favours the proxy in every ratio). haproxy runs with its defaults (threads = CPUs, 16 KiB
buffers, no splice); when it is not installed the JSON says so and has no haproxy ratios.
The backends (``backend`` sub-command) run in their own processes: an uvloop HTTP server
answering at once, and a threaded bulk server that sources or sinks bytes. Traffic stays on
127.0.0.0/8.

Usage: python -m bench.proxy [--bulk-bytes N] [--bulk-connections N] [--requests N]
       [--concurrency N] [--duration S] [--generator auto|wrk|python]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

from bench.harness import apiserver_process, stop, temporary_etcd, wait_for_port
from kubelite import daemon
from kubelite.client.client import ApiClient
from kubelite.testing.ports import free_port
from protos.v1 import objects_pb2 as v1

CLUSTER_IP = "127.96.200.10"
NODE_IP = "127.0.0.1"
HTTP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
    b"Connection: close\r\n\r\nok\n"
)
CHUNK = 1024 * 1024
Address = tuple[str, int]


# --------------------------------------------------------------------------- backends


class _HttpProtocol(asyncio.Protocol):
    """Answers the first complete request with HTTP_RESPONSE and closes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.data = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.data += data
        if b"\r\n\r\n" in self.data and self.transport is not None:
            self.transport.write(HTTP_RESPONSE)
            self.transport.close()
            self.transport = None

    def eof_received(self) -> bool | None:
        return None


def _bulk_connection(conn: socket.socket) -> None:
    """``GET n\\n``: send n bytes, then close. ``PUT n\\n`` + bytes: sink them, answer the
    count once the client half-closed."""
    with conn:
        header = b""
        while not header.endswith(b"\n"):
            byte = conn.recv(1)
            if not byte:
                return
            header += byte
        verb, size = header.split()
        if verb == b"GET":
            left = int(size)
            chunk = memoryview(bytes(CHUNK))
            while left > 0:
                n = min(left, CHUNK)
                conn.sendall(chunk[:n])
                left -= n
        else:
            buf = bytearray(CHUNK)
            total = 0
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                total += n
            conn.sendall(b"OK %d\n" % total)


def _bulk_server(sock: socket.socket) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=_bulk_connection, args=(conn,), daemon=True).start()


def _listen(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)
    return sock


def run_backend(http_ports: Sequence[int], bulk_ports: Sequence[int]) -> None:
    for port in bulk_ports:
        threading.Thread(target=_bulk_server, args=(_listen(port),), daemon=True).start()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        servers = [
            await loop.create_server(_HttpProtocol, sock=_listen(port), backlog=4096)
            for port in http_ports
        ]
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        for server in servers:
            server.close()

    daemon.run(serve())


@contextlib.contextmanager
def process(
    argv: Sequence[str], wait_ports: Sequence[Address] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        for host, port in wait_ports:
            wait_for_port(host, port, proc)
        yield proc
    finally:
        stop(proc)


# --------------------------------------------------------------------------- load


def bulk(targets: Sequence[Address], total: int, connections: int, upload: bool) -> float:
    """MB/s moving ``total`` bytes over ``connections`` parallel connections."""
    per = total // connections
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            with socket.create_connection(targets[i % len(targets)]) as s:
                if upload:
                    s.sendall(b"PUT %d\n" % per)
                    chunk = memoryview(bytes(CHUNK))
                    left = per
                    while left > 0:
                        n = min(left, CHUNK)
                        s.sendall(chunk[:n])
                        left -= n
                    s.shutdown(socket.SHUT_WR)
                    reply = s.recv(100)
                    if reply != b"OK %d\n" % per:
                        raise RuntimeError(f"upload: backend answered {reply!r}")
                else:
                    s.sendall(b"GET %d\n" % per)
                    buf = bytearray(CHUNK)
                    got = 0
                    while True:
                        n = s.recv_into(buf)
                        if not n:
                            break
                        got += n
                    if got != per:
                        raise RuntimeError(f"download: got {got} of {per} bytes")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(connections)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"bulk transfer failed: {errors[0]!r}")
    return per * connections / elapsed / 1e6


def wrk_rate(targets: Sequence[Address], concurrency: int, duration: float) -> dict[str, float]:
    """wrk against each target in turn (``duration`` split between them), requests/s."""
    requests = 0
    errors = 0
    elapsed = 0.0
    slice_ = max(1, round(duration / len(targets)))  # wrk takes whole seconds
    for host, port in targets:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{concurrency}", f"-d{slice_}s", "-H", "Connection: close",
             f"http://{host}:{port}/"],
            capture_output=True, text=True, check=True,
        ).stdout
        m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
        if m is None:
            raise RuntimeError(f"unexpected wrk output: {out}")
        unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
        requests += int(m.group(1))
        elapsed += float(m.group(2)) * unit
        e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        if e is not None:
            errors += sum(int(x) for x in e.groups())
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if non2xx is not None:
            errors += int(non2xx.group(1))
    return {"requests_per_s": requests / elapsed, "requests": requests, "errors": errors}


async def _python_load(
    targets: Sequence[Address], concurrency: int, total: int
) -> dict[str, float]:
    request = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    counter = iter(range(total))
    errors = 0

    async def worker() -> None:
        nonlocal errors
        for i in counter:
            host, port = targets[i % len(targets)]
            try:
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(request)
                data = await reader.read()
                writer.close()
                if not data.startswith(b"HTTP/1.1 200"):
                    errors += 1
            except OSError:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {"requests_per_s": total / elapsed, "requests": total, "errors": errors}


def python_rate(targets: Sequence[Address], concurrency: int, total: int) -> dict[str, float]:
    """The Python generator in its own process (so it does not share the bench's loop)."""
    spec = ",".join(f"{h}:{p}" for h, p in targets)
    out = subprocess.run(
        [sys.executable, "-m", "bench.proxy", "loadgen", "--targets", spec,
         "--concurrency", str(concurrency), "--requests", str(total)],
        capture_output=True, text=True, check=True,
    ).stdout
    return dict(json.loads(out))


def _parse_targets(text: str) -> list[Address]:
    result = []
    for item in text.split(","):
        host, _, port = item.rpartition(":")
        result.append((host, int(port)))
    return result


# --------------------------------------------------------------------------- targets


async def _store_service(
    address: str, http_ports: Sequence[int], bulk_ports: Sequence[int], http_port: int,
    bulk_port: int,
) -> None:
    """A selector-less Service with an explicit ClusterIP and hand-written Endpoints."""
    async with ApiClient(address) as client:
        svc = v1.Service(metadata=v1.ObjectMeta(name="bench", namespace="default"))
        svc.spec.cluster_ip = CLUSTER_IP
        svc.spec.ports.add(name="http", port=http_port, protocol="TCP").target_port.int_val = 8080
        svc.spec.ports.add(name="bulk", port=bulk_port, protocol="TCP").target_port.int_val = 9090
        await client.create(svc)
        ep = v1.Endpoints(metadata=v1.ObjectMeta(name="bench", namespace="default"))
        for name, ports in (("http", http_ports), ("bulk", bulk_ports)):
            for port in ports:
                subset = ep.subsets.add()
                subset.addresses.add(ip="127.0.0.1")
                subset.ports.add(name=name, port=port, protocol="TCP")
        await client.create(ep)


def haproxy_config(path: Path, frontends: dict[int, Sequence[int]]) -> None:
    lines = [
        "global", "  maxconn 8000", "", "defaults", "  mode tcp", "  timeout connect 2s",
        "  timeout client 60s", "  timeout server 60s", "",
    ]
    for i, (port, backends) in enumerate(frontends.items()):
        lines += [f"listen l{i}", f"  bind 127.0.0.1:{port}", "  balance roundrobin"]
        lines += [f"  server s{j} 127.0.0.1:{b}" for j, b in enumerate(backends)]
        lines.append("")
    path.write_text("\n".join(lines))


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a process (all its threads) so far; 0 without a pid."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    name: str, http: Sequence[Address], bulk_targets: Sequence[Address], a: argparse.Namespace,
    generator: str, pid: int | None = None,
) -> dict[str, float]:
    """The figures of one target; with ``pid``, also that process's CPU cost per unit of
    work (steadier than rates when other processes share the machine)."""
    print(f"measuring {name} ...", file=sys.stderr, flush=True)
    cpu0 = cpu_seconds(pid)
    down = bulk(bulk_targets, a.bulk_bytes, a.bulk_connections, upload=False)
    up = bulk(bulk_targets, a.bulk_bytes, a.bulk_connections, upload=True)
    cpu1 = cpu_seconds(pid)
    if generator == "wrk":
        rate = wrk_rate(http, a.concurrency, a.duration)
    else:
        rate = python_rate(http, a.concurrency, a.requests)
    cpu2 = cpu_seconds(pid)
    figures = {
        "bulk_download_mb_per_s": round(down, 1),
        "bulk_upload_mb_per_s": round(up, 1),
        "connections_per_s": round(rate["requests_per_s"], 1),
        "connection_requests": int(rate["requests"]),
        "connection_errors": int(rate["errors"]),
    }
    if pid is not None:
        figures["cpu_s_per_gb"] = round((cpu1 - cpu0) / (2 * a.bulk_bytes / 1e9), 3)
        figures["cpu_us_per_connection"] = round((cpu2 - cpu1) / rate["requests"] * 1e6, 1)
    return figures


def run(a: argparse.Namespace) -> dict[str, object]:
    generator = a.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"
    haproxy = shutil.which("haproxy")
    http_ports = [free_port() for _ in range(3)]
    bulk_ports = [free_port() for _ in range(3)]
    result: dict[str, object] = {
        "benchmark": "proxy",
        "cpus": os.cpu_count(),
        "bulk_bytes": a.bulk_bytes,
        "bulk_connections": a.bulk_connections,
        "concurrency": a.concurrency,
        "generator": generator,
        "backend_ports": {"http": len(http_ports), "bulk": len(bulk_ports)},
    }
    backend_argv = [
        sys.executable, "-m", "bench.proxy", "backend",
        "--http-ports", ",".join(map(str, http_ports)),
        "--bulk-ports", ",".join(map(str, bulk_ports)),
    ]
    figures: dict[str, dict[str, float]] = {}
    with contextlib.ExitStack() as stack:
        for _ in range(a.backend_processes):
            stack.enter_context(
                process(backend_argv, [("127.0.0.1", p) for p in http_ports + bulk_ports])
            )
        direct_http = [("127.0.0.1", p) for p in http_ports]
        direct_bulk = [("127.0.0.1", p) for p in bulk_ports]
        figures["direct"] = measure("direct", direct_http, direct_bulk, a, generator)

        etcd = stack.enter_context(temporary_etcd())
        api = stack.enter_context(apiserver_process(etcd.endpoint))
        http_port, bulk_port = 80, 9000
        daemon.run(_store_service(api, http_ports, bulk_ports, http_port, bulk_port))
        proxy_argv = [
            sys.executable, "-m", "proxy", "--node-name", "bench", "--node-ip", NODE_IP,
            "--server", api, "--log-level", "warning",
        ]
        with process(proxy_argv, [(CLUSTER_IP, http_port), (CLUSTER_IP, bulk_port)]) as proc:
            figures["proxy"] = measure(
                "proxy", [(CLUSTER_IP, http_port)], [(CLUSTER_IP, bulk_port)], a, generator,
                proc.pid,
            )

        if haproxy is None:
            result["haproxy"] = "missing: install it (apt-get install -y haproxy) to compare"
        else:
            version = subprocess.run(
                [haproxy, "-v"], capture_output=True, text=True
            ).stdout.splitlines()[0]
            result["haproxy_version"] = version
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-proxy-")))
            h_http, h_bulk = free_port(), free_port()
            haproxy_config(tmp / "haproxy.cfg", {h_http: http_ports, h_bulk: bulk_ports})
            with process(
                [haproxy, "-db", "-f", str(tmp / "haproxy.cfg")],
                [("127.0.0.1", h_http), ("127.0.0.1", h_bulk)],
            ) as proc:
                figures["haproxy"] = measure(
                    "haproxy", [("127.0.0.1", h_http)], [("127.0.0.1", h_bulk)], a, generator,
                    proc.pid,
                )
    for target, values in figures.items():
        for key, value in values.items():
            result[f"{target}_{key}"] = value
    metrics = ("bulk_download_mb_per_s", "bulk_upload_mb_per_s", "connections_per_s")
    for reference in ("direct", "haproxy"):
        if reference not in figures:
            continue
        for metric in metrics:
            result[f"ratio_proxy_to_{reference}_{metric.removesuffix('_per_s')}"] = round(
                figures["proxy"][metric] / figures[reference][metric], 3
            )
    if "haproxy" in figures:
        # CPU per unit of work, haproxy's over the proxy's: > 1 means the proxy is cheaper.
        for metric in ("cpu_s_per_gb", "cpu_us_per_connection"):
            proxy_cost = figures["proxy"][metric]
            result[f"ratio_haproxy_to_proxy_{metric}"] = (
                round(figures["haproxy"][metric] / proxy_cost, 3) if proxy_cost else None
            )
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command")
    b = sub.add_parser("backend", help="(internal) serve HTTP and bulk ports")
    b.add_argument("--http-ports", default="")
    b.add_argument("--bulk-ports", default="")
    g = sub.add_parser("loadgen", help="(internal) the Python load generator")
    g.add_argument("--targets", required=True)
    g.add_argument("--concurrency", type=int, default=32)
    g.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--bulk-bytes", type=int, default=2_000_000_000,
                   help="bytes per bulk measurement (each direction)")
    p.add_argument("--bulk-connections", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=32, help="connections in flight")
    p.add_argument("--requests", type=int, default=20_000,
                   help="requests per target (Python generator)")
    p.add_argument("--duration", type=float, default=6.0, help="seconds per target (wrk)")
    p.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--backend-processes", type=int, default=2,
                   help="backend processes sharing the ports (SO_REUSEPORT)")
    a = p.parse_args(argv)
    if a.command == "backend":
        run_backend(
            [int(x) for x in a.http_ports.split(",") if x],
            [int(x) for x in a.bulk_ports.split(",") if x],
        )
        return
    if a.command == "loadgen":
        out: dict[str, float] = {}

        async def load() -> None:
            out.update(await _python_load(_parse_targets(a.targets), a.concurrency, a.requests))

        daemon.run(load())
        print(json.dumps(out))
        return
    print(json.dumps(run(a), indent=2))


if __name__ == "__main__":
    main()
