"""Where klctl finds the API server.

In order: the ``--server`` flag, ``$KUBELITE_SERVER``, the config file (``$KUBELITE_CONFIG``
or ``~/.kubelite/config``, a small YAML/JSON mapping ``{"server": "127.0.0.1:6443"}`` that
``kubelite up`` writes with :func:`write_config`), then 127.0.0.1:6443.

``kubelite up`` writes that file (the cluster started last is klctl's) and also
``<data-dir>/config`` for its own cluster, so with several local clusters
``KUBELITE_CONFIG=<data-dir>/config`` picks one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubelite.api.errors import KubeliteError

DEFAULT_SERVER = "127.0.0.1:6443"
SERVER_ENV = "KUBELITE_SERVER"
CONFIG_ENV = "KUBELITE_CONFIG"


class ConfigError(KubeliteError):
    """The config file exists but cannot be used."""


@dataclass(frozen=True)
class ServerAddress:
    address: str
    """host:port for gRPC."""
    source: str
    """Where it came from ("--server", "$KUBELITE_SERVER", the file's path, "default")."""


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


def resolve_server(
    flag: str | None = None, env: Mapping[str, str] | None = None
) -> ServerAddress:
    """The server to talk to and where that choice came from."""
    env = os.environ if env is None else env
    if flag:
        return ServerAddress(normalize_address(flag), "--server")
    from_env = env.get(SERVER_ENV)
    if from_env:
        return ServerAddress(normalize_address(from_env), f"${SERVER_ENV}")
    path = default_config_path(env)
    server = read_config(path).get("server")
    if server:
        return ServerAddress(normalize_address(server), str(path))
    return ServerAddress(DEFAULT_SERVER, "default")
