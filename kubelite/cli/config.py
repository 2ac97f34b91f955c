"""Where klctl finds the API server, and how it talks to it.

The config file is ``--kubeconfig``, else ``$KUBELITE_CONFIG``, else ``~/.kubelite/config``.
A file with clusters/users/contexts is a kubeconfig (``kubelite init`` writes them: the
server, its CA, the user's certificate or token; ``--context`` picks a context, else its
current-context). The legacy file, a small YAML/JSON mapping ``{"server": "127.0.0.1:6443"}``
that ``kubelite up`` writes with :func:`write_config`, names a plaintext server.

The server is then, in order: the ``--server`` flag, ``$KUBELITE_SERVER``, the file's, then
127.0.0.1:6443. The flag and the variable replace only the address: a kubeconfig's
credentials stay.

``kubelite up`` writes that file (the cluster started last is klctl's) and also
``<data-dir>/config`` for its own cluster, so with several local clusters
``KUBELITE_CONFIG=<data-dir>/config`` picks one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubelite.client.config import (
    ClientConfig,
    ConfigError,
    is_kubeconfig,
    kubeconfig_client_config,
)

__all__ = ["ConfigError"]

DEFAULT_SERVER = "127.0.0.1:6443"
SERVER_ENV = "KUBELITE_SERVER"
CONFIG_ENV = "KUBELITE_CONFIG"


@dataclass(frozen=True)
class ServerAddress:
    address: str
    """host:port for gRPC."""
    source: str
    """Where it came from ("--server", "$KUBELITE_SERVER", the file's path, "default")."""


@dataclass(frozen=True)
class ResolvedConfig:
    config: ClientConfig
    """The server and, from a kubeconfig, the CA and credentials."""
    source: str
    """Where the server came from ("--server", "$KUBELITE_SERVER", the file's path,
    "default")."""
    path: Path | None
    """The kubeconfig used, if any."""
    context: str | None
    """Its context used (--context or its current-context)."""


def config_path(kubeconfig_flag: str | None = None,
                env: Mapping[str, str] | None = None) -> Path:
    """The config file: ``--kubeconfig``, ``$KUBELITE_CONFIG``, ``~/.kubelite/config``."""
    if kubeconfig_flag:
        return Path(kubeconfig_flag).expanduser()
    return default_config_path(env)


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    explicit = env.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    return Path.home() / ".kubelite" / "config"


def normalize_address(address: str) -> str:
    """host:port from what a user may paste (a URL with a scheme or a trailing slash)."""
    text = address.strip()
    for scheme in ("grpc://", "http://", "https://", "dns:///"):
        text = text.removeprefix(scheme)
    return text.rstrip("/")


def read_config(path: Path) -> dict[str, Any]:
    """The config file's mapping; {} when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from e
    try:
        data = yaml.safe_load(text)  # JSON is YAML, so one loader reads both
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid config file {path}: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config file {path}: expected a mapping with a server key")
    if is_kubeconfig(data):
        return data
    server = data.get("server")
    if server is not None and not isinstance(server, str):
        raise ConfigError(f"invalid config file {path}: server must be a string like host:port")
    return data


def write_config(path: str | os.PathLike[str], server: str) -> Path:
    """Writes ``{"server": server}`` atomically (readers never see half a file)."""
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    existing: dict[str, Any] = {}
    try:
        existing = read_config(target)
    except ConfigError:
        pass  # a broken file is replaced rather than kept
    if is_kubeconfig(existing):
        existing = {}  # the cluster started last is klctl's: its plaintext server replaces it
    existing["server"] = normalize_address(server)
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(existing, f, indent=2)
            f.write("\n")
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target


def resolve_client_config(
    server_flag: str | None = None, kubeconfig_flag: str | None = None,
    context_flag: str | None = None, env: Mapping[str, str] | None = None,
) -> ResolvedConfig:
    """The config klctl talks to the server with, and where its server came from."""
    env = os.environ if env is None else env
    path = config_path(kubeconfig_flag, env)
    if kubeconfig_flag and not path.exists():
        raise ConfigError(f"--kubeconfig: {path} does not exist")
    data = read_config(path)
    resolved: ResolvedConfig
    if is_kubeconfig(data):
        config = kubeconfig_client_config(data, path, context_flag)
        context = context_flag or str(data.get("current-context"))
        resolved = ResolvedConfig(config, str(path), path, context)
    elif context_flag:
        raise ConfigError(f"--context: {path} is not a kubeconfig (it has no contexts)")
    elif data.get("server"):
        resolved = ResolvedConfig(ClientConfig(normalize_address(data["server"])), str(path),
                                  None, None)
    else:
        resolved = ResolvedConfig(ClientConfig(DEFAULT_SERVER), "default", None, None)
    override, source = (server_flag, "--server") if server_flag else (
        env.get(SERVER_ENV), f"${SERVER_ENV}")
    if override:
        config = dataclasses.replace(resolved.config, server=normalize_address(override))
        resolved = dataclasses.replace(resolved, config=config, source=source)
    return resolved


def resolve_server(
    flag: str | None = None, env: Mapping[str, str] | None = None
) -> ServerAddress:
    """The server to talk to and where that choice came from."""
    resolved = resolve_client_config(flag, env=env)
    return ServerAddress(resolved.config.server, resolved.source)
