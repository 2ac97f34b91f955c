"""A local image registry: Debian's docker-registry (distribution v2) on a free loopback port
with its storage in a given directory, optionally behind htpasswd basic auth; images are pushed
to it from OCI layouts with skopeo. Tests and local clusters pull from it, as from any
registry, with no network."""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import json
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from kubelite.ports import free_port
from kubelite.processes import ManagedProcess

BCRYPT_COST = 5
"""bcrypt cost of the htpasswd entries: the registry checks the password on every request, and
these are throwaway test credentials, so cheap beats strong (Go's bcrypt accepts 4 and up)."""


class RegistryError(RuntimeError):
    """The registry or skopeo is missing, did not start, or refused an operation."""


@dataclass(frozen=True)
class RegistryCredentials:
    username: str
    """Basic auth user name (no ``:``, as htpasswd requires)."""
    password: str
    """Its password."""

    def __post_init__(self) -> None:
        if not self.username or ":" in self.username or "\n" in self.username:
            raise ValueError(
                f"registry username {self.username!r}: must be non-empty without ':' or newline")
        if not self.password:
            raise ValueError("registry password: must not be empty")


@dataclass(frozen=True)
class LocalRegistrySettings:
    directory: Path
    """Holds the registry's config, htpasswd file, log and its storage (``storage/``)."""
    host: str = "127.0.0.1"
    """Address it listens on: loopback only."""
    port: int = 0
    """Port it listens on; 0 picks a free one at start."""
    credentials: RegistryCredentials | None = None
    """When set, every request needs this user and password (htpasswd basic auth)."""
    binary: str = "docker-registry"
    """The registry program: a path or a name on PATH (Debian's docker-registry)."""
    launcher: tuple[str, ...] = ()
    """A command the registry runs under, which execs it: ``("ip", "netns", "exec", NAME)``
    serves from that network namespace (``host`` then is an address there, and ``port`` must
    be given: a free port is looked for in this process's namespace)."""
    start_timeout: float = 20.0
    """Seconds to wait for /v2/ to answer after starting."""
    stop_timeout: float = 10.0
    """Seconds after SIGTERM before the registry is killed."""
    push_timeout: float = 120.0
    """Seconds one skopeo copy into the registry may take."""


class LocalRegistry:
    """A docker-registry serving ``settings``::

        with LocalRegistry(settings) as registry:
            registry.push(layout, "latest", "library/busybox")
    """

    def __init__(self, settings: LocalRegistrySettings) -> None:
        self.settings = settings
        self.directory = Path(settings.directory).absolute()
        self.port = settings.port
        self._process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        """``host:port``: the registry host part of image references pushed here."""
        return f"{self.settings.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def storage_dir(self) -> Path:
        return self.directory / "storage"

    @property
    def log_path(self) -> Path:
        return self.directory / "registry.log"

    def start(self) -> None:
        binary = shutil.which(self.settings.binary)
        if binary is None:
            raise RegistryError(
                f"{self.settings.binary} not found: install Debian's docker-registry "
                "(apt-get install docker-registry)")
        self.port = self.port or free_port(self.settings.host)
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.directory / "config.yml"
        # JSON is YAML: the registry reads it as its config.
        config_path.write_text(json.dumps(self._config(), indent=2) + "\n")
        self._process = ManagedProcess(
            "docker-registry", [*self.settings.launcher, binary, "serve", str(config_path)],
            self.log_path)
        self._process.start()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _config(self) -> dict[str, object]:
        config: dict[str, object] = {
            "version": "0.1",
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                # Nothing to purge in a throwaway registry; spares a background walk.
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": self.address, "secret": secrets.token_hex(16)},
        }
        creds = self.settings.credentials
        if creds is not None:
            htpasswd = self.directory / "htpasswd"
            htpasswd.write_text(f"{creds.username}:{bcrypt_hash(creds.password)}\n")
            htpasswd.chmod(0o600)
            config["auth"] = {"htpasswd": {"realm": "kubelite", "path": str(htpasswd)}}
        return config

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.settings.start_timeout
        last = ""
        while True:
            process = self._process
            if process is not None and not process.running():
                raise RegistryError(
                    f"docker-registry exited with {process.returncode}:\n{process.tail()}")
            try:
                # Any answer from /v2/ (200, or 401 behind auth) means it serves the API.
                self._get("/v2/", authenticate=False)
                return
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    return
                last = str(e)
            except OSError as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise RegistryError(
                    f"docker-registry did not answer {self.url}/v2/ within "
                    f"{self.settings.start_timeout}s: {last}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; waits until it has exited."""
        if self._process is not None:
            self._process.stop(self.settings.stop_timeout)
            self._process = None

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> LocalRegistry:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- images ----------------------------------------------------------------------------

    def reference(self, repository: str, tag: str = "latest") -> str:
        """``host:port/repository:tag``: how a runtime names an image pushed here."""
        return f"{self.address}/{repository}:{tag}"

    def push(self, oci_layout: Path, tag: str, repository: str,
             *, dest_tag: str | None = None) -> str:
        """Copies the image ``tag`` of the OCI layout to ``repository:dest_tag`` (``tag`` by
        default) here; returns its reference."""
        skopeo = shutil.which("skopeo")
        if skopeo is None:
            raise RegistryError(
                "skopeo not found: install Debian's skopeo (apt-get install skopeo)")
        reference = self.reference(repository, dest_tag or tag)
        argv = [skopeo, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"]
        creds = self.settings.credentials
        if creds is not None:
            argv.append(f"--dest-creds={creds.username}:{creds.password}")
        argv += [f"oci:{Path(oci_layout).absolute()}:{tag}", f"docker://{reference}"]
        try:
            done = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL,
                                  timeout=self.settings.push_timeout)
        except subprocess.TimeoutExpired as e:
            raise RegistryError(f"pushing {reference} took over {e.timeout}s") from e
        if done.returncode != 0:
            raise RegistryError(
                f"pushing {oci_layout}:{tag} to {reference} failed: "
                f"{done.stderr.decode(errors='replace').strip()}")
        return reference

    def tags(self, repository: str) -> list[str]:
        """The repository's tags, from the registry's /v2/<name>/tags/list."""
        body = json.loads(self._get(f"/v2/{repository}/tags/list"))
        return list(body.get("tags") or [])

    def _get(self, path: str, *, authenticate: bool = True, timeout: float = 5.0) -> bytes:
        request = urllib.request.Request(self.url + path)
        creds = self.settings.credentials
        if authenticate and creds is not None:
            token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        # A loopback registry is never reached through a proxy from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=timeout) as response:
            return bytes(response.read())


def bcrypt_hash(password: str, cost: int = BCRYPT_COST) -> str:
    """An htpasswd bcrypt entry's hash (``$2b$...``), made by the C library's crypt (Debian's
    libxcrypt), the only format docker-registry's htpasswd accepts."""
    name = ctypes.util.find_library("crypt")
    if name is None:
        raise RegistryError("registry auth needs libcrypt (Debian's libcrypt1) for bcrypt")
    lib = ctypes.CDLL(name)
    gensalt = lib.crypt_gensalt
    gensalt.restype = ctypes.c_char_p
    gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    crypt = lib.crypt
    crypt.restype = ctypes.c_char_p
    crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    # No random bytes given: libxcrypt draws the salt from the kernel.
    salt = gensalt(b"$2b$", cost, None, 0)
    hashed = crypt(password.encode(), salt) if salt else None
    if not hashed or not hashed.startswith(b"$2b$"):
        raise RegistryError("this C library's crypt cannot make bcrypt hashes for htpasswd")
    return str(hashed.decode())
