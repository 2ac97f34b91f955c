"""How a client reaches the API server: the server, the CA it trusts and who it is.

A :class:`ClientConfig` comes from a kubeconfig file (:func:`load_kubeconfig`, the format
kubectl reads: clusters, users, contexts, current-context), from a pod's ServiceAccount
mount (:func:`in_cluster_config`) or is built directly. :func:`make_channel` turns it into a
gRPC channel: plaintext without a CA, else TLS verified against that CA, with the client
certificate when there is one and the bearer token as a call credential (re-read from its file
at each call, so rotated ServiceAccount tokens keep working).

Several API servers: a config's server may be a comma-separated list (``a:6443,b:6443``, in a
kubeconfig ``https://a:6443,https://b:6443``). Its channel spreads calls round robin over the
servers that are up (gRPC's ``round_robin`` policy over their addresses, resolved when the
channel is made); a server that goes down is skipped until it is back. Every server must
present a certificate valid for the first server's host (or ``server_name``).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import socket
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml

from kubelite.api.errors import KubeliteError
from kubelite.auth.anonymous_transport import ANONYMOUS_CLIENT_CERT_PEM, ANONYMOUS_CLIENT_KEY_PEM

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where the kubelet mounts a pod's ServiceAccount token, the cluster CA and the namespace."""
SERVICE_HOST_ENV = "KUBERNETES_SERVICE_HOST"
SERVICE_PORT_ENV = "KUBERNETES_SERVICE_PORT"

ChannelOptions = Sequence[tuple[str, Any]]


class ConfigError(KubeliteError):
    """A client configuration (a kubeconfig file, the in-cluster files) cannot be used."""


@dataclass(frozen=True)
class ClientConfig:
    """Where the API server is and how to talk to it."""

    server: str
    """host:port of the API server (a URL such as ``https://host:port`` is normalized; other
    gRPC targets such as ``unix:///path`` are kept), or several, comma-separated
    (``a:6443,b:6443``): several API servers over one etcd, called round robin."""
    ca_pem: bytes | None = None
    """PEM of the CA(s) that sign the server's certificate; None: a plaintext channel."""
    cert_pem: bytes | None = None
    """PEM of the client certificate (x509 authentication); needs ``key_pem``."""
    key_pem: bytes | None = field(default=None, repr=False)
    """PEM of the client certificate's private key."""
    token: str | None = field(default=None, repr=False)
    """A bearer token sent with every call (wins over ``token_file``)."""
    token_file: str | None = None
    """A file holding the bearer token, read again at each call (rotated tokens work)."""
    server_name: str | None = None
    """The name the server's certificate must carry, when not the host of ``server``."""
    namespace: str | None = None
    """The default namespace of the context (or the pod's own, in a cluster)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "server", normalize_server(self.server))
        if (self.cert_pem is None) != (self.key_pem is None):
            raise ConfigError("a client certificate needs its key (cert_pem and key_pem"
                              " go together)")
        if self.ca_pem is None and (self.cert_pem is not None or self.has_token):
            raise ConfigError("credentials are only sent over TLS: a client certificate or a"
                              " token needs the server's CA (ca_pem)")

    @property
    def servers(self) -> tuple[str, ...]:
        """The API servers of ``server``, each host:port (or one other gRPC target)."""
        return split_servers(self.server)

    @property
    def secure(self) -> bool:
        """Whether the channel is TLS."""
        return self.ca_pem is not None

    @property
    def has_token(self) -> bool:
        return bool(self.token) or bool(self.token_file)

    def current_token(self) -> str | None:
        """The bearer token to send now: ``token``, else the content of ``token_file``."""
        if self.token:
            return self.token
        if not self.token_file:
            return None
        try:
            token = Path(self.token_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"cannot read token file {self.token_file}:"
                              f" {e.strerror or e}") from e
        if not token:
            raise ConfigError(f"token file {self.token_file} is empty")
        return token


GRPC_TARGET_SCHEMES = ("dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:", "vsock:")
"""Prefixes of gRPC's own target forms, which are kept as they are (never split at commas)."""


def normalize_server(server: str) -> str:
    """host:port from a server URL (``https://host:port``, ``https://host``, ``host:port``);
    another gRPC target (``unix:///path``, ``dns:///host:port``) is kept as it is. A
    comma-separated list of servers is normalized entry by entry (``https://a:1, b:2`` is
    ``a:1,b:2``); an empty entry or a server named twice is an error."""
    text = server.strip()
    if _is_grpc_target(text) or "," not in text:
        return _normalize_one(server, text)
    entries: list[str] = []
    for i, entry in enumerate(text.split(",")):
        if not entry.strip():
            raise ConfigError(f"server {server!r}: entry {i + 1} is empty (servers are"
                              " separated by single commas)")
        normalized = _normalize_one(server, entry.strip())
        if "://" in normalized or _is_grpc_target(normalized):
            raise ConfigError(f"server {server!r}: entry {i + 1} ({entry.strip()!r}): a list"
                              " of servers takes host:port or https://host:port entries")
        if normalized in entries:
            raise ConfigError(f"server {server!r}: {normalized} is named twice")
        entries.append(normalized)
    return ",".join(entries)


def split_servers(server: str) -> tuple[str, ...]:
    """The servers of a (normalized) server: its comma-separated entries, or the one gRPC
    target it is."""
    text = server.strip()
    if _is_grpc_target(text):
        return (text,)
    return tuple(entry.strip() for entry in text.split(","))


def _is_grpc_target(text: str) -> bool:
    return text.startswith(GRPC_TARGET_SCHEMES)


def _normalize_one(server: str, text: str) -> str:
    if _is_grpc_target(text):
        return text  # unix:path as well as unix:///path
    scheme, sep, rest = text.partition("://")
    if sep and scheme not in ("https", "http"):
        return text
    if not sep:
        scheme, rest = "", text
    host_port = rest.split("/", 1)[0]
    if not host_port:
        raise ConfigError(f"server {server!r}: expected https://host:port or host:port")
    if scheme and not _has_port(host_port):
        host_port = f"{host_port}:{443 if scheme == 'https' else 80}"
    return host_port


def _has_port(host_port: str) -> bool:
    if host_port.startswith("["):
        return "]:" in host_port
    return host_port.count(":") == 1


def server_url(server: str) -> str:
    """``https://host:port`` of a host:port (the form kubeconfig files carry); of several
    servers, their URLs comma-separated."""
    return ",".join("https://" + s for s in split_servers(normalize_server(server)))


def join_host_port(host: str, port: int | str) -> str:
    """host:port, with an IPv6 host in brackets."""
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


# ------------------------------------------------------------------------- kubeconfig


def is_kubeconfig(data: object) -> bool:
    """Whether a parsed config file is a kubeconfig (rather than the legacy ``{server: ...}``)."""
    return isinstance(data, Mapping) and any(
        k in data for k in ("clusters", "contexts", "users", "current-context"))


def read_kubeconfig_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping of a kubeconfig file (not interpreted)."""
    target = Path(path).expanduser()
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"kubeconfig {target}: file does not exist") from None
    except OSError as e:
        raise ConfigError(f"kubeconfig {target}: cannot read: {e.strerror or e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"kubeconfig {target}: not valid YAML: {e}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"kubeconfig {target}: expected a mapping (apiVersion: v1, kind:"
                          " Config)")
    return data


def load_kubeconfig(path: str | os.PathLike[str], context: str | None = None) -> ClientConfig:
    """The ClientConfig of ``context`` (default: current-context) of a kubeconfig file.

    Files named by ``certificate-authority``, ``client-certificate``, ``client-key`` and
    ``tokenFile`` are relative to the kubeconfig's directory; the ``-data`` forms are base64.
    """
    target = Path(path).expanduser()
    return kubeconfig_client_config(read_kubeconfig_file(target), target, context)


def kubeconfig_client_config(
    data: Mapping[str, Any], path: Path, context: str | None = None
) -> ClientConfig:
    """The ClientConfig of a parsed kubeconfig (``path`` names it in errors and anchors
    relative file names)."""
    reader = _Kubeconfig(data, path)
    return reader.client_config(context)


class _Kubeconfig:
    def __init__(self, data: Mapping[str, Any], path: Path) -> None:
        self.data = data
        self.path = path
        self.base = path.parent

    def error(self, field_path: str, rule: str) -> ConfigError:
        return ConfigError(f"kubeconfig {self.path}: {field_path}: {rule}")

    def client_config(self, context_name: str | None) -> ClientConfig:
        kind = self.data.get("kind")
        if kind is not None and kind != "Config":
            raise self.error("kind", f'must be "Config", not {kind!r}')
        api_version = self.data.get("apiVersion")
        if api_version is not None and api_version != "v1":
            raise self.error("apiVersion", f'must be "v1", not {api_version!r}')
        if not context_name:
            current = self.data.get("current-context")
            if current is not None and not isinstance(current, str):
                raise self.error("current-context", "must be a string")
            if not current:
                raise self.error("current-context", "not set (choose a context with --context)")
            context_name = current
            where = "current-context"
        else:
            where = "context"
        context, context_path = self.named("contexts", "context", context_name, where)
        cluster_name = self.string(context, "cluster", context_path)
        if not cluster_name:
            raise self.error(f"{context_path}.cluster", "required")
        cluster, cluster_path = self.named("clusters", "cluster", cluster_name,
                                           f"{context_path}.cluster")
        user_name = self.string(context, "user", context_path)
        user: Mapping[str, Any] = {}
        user_path = ""
        if user_name:
            user, user_path = self.named("users", "user", user_name, f"{context_path}.user")
        namespace = self.string(context, "namespace", context_path) or None

        server = self.string(cluster, "server", cluster_path)
        if not server:
            raise self.error(f"{cluster_path}.server", "required (https://host:port)")
        # Several API servers: their URLs comma-separated, all of one scheme.
        schemes = {entry.partition("://")[0].strip() if "://" in entry else ""
                   for entry in server.split(",") if entry.strip()}
        for scheme in sorted(schemes):
            if scheme not in ("", "https", "http"):
                raise self.error(f"{cluster_path}.server", f"scheme {scheme!r} is not"
                                 " supported (https or http)")
        if len(schemes) > 1:
            raise self.error(f"{cluster_path}.server", "servers of one cluster take one"
                             " scheme (every URL https, or every one http)")
        scheme = schemes.pop()
        if cluster.get("insecure-skip-tls-verify"):
            raise self.error(f"{cluster_path}.insecure-skip-tls-verify",
                             "not supported: give the cluster's certificate-authority")
        ca_pem = self.file_or_data(cluster, "certificate-authority", cluster_path)
        if ca_pem is not None:
            self.check_certificates(ca_pem, f"{cluster_path}.certificate-authority")
        if scheme == "https" and ca_pem is None:
            raise self.error(f"{cluster_path}.certificate-authority",
                             "required for an https server (certificate-authority or"
                             " certificate-authority-data)")
        if scheme == "http" and ca_pem is not None:
            raise self.error(f"{cluster_path}.server", "an http server takes no"
                                                       " certificate-authority (use https)")
        server_name = self.string(cluster, "tls-server-name", cluster_path) or None

        cert_pem = self.file_or_data(user, "client-certificate", user_path)
        key_pem = self.file_or_data(user, "client-key", user_path)
        if cert_pem is not None:
            self.check_certificates(cert_pem, f"{user_path}.client-certificate")
        if key_pem is not None:
            self.check_key(key_pem, f"{user_path}.client-key")
        if (cert_pem is None) != (key_pem is None):
            missing = "client-key" if key_pem is None else "client-certificate"
            raise self.error(f"{user_path}.{missing}", "required with"
                             f" {'client-certificate' if key_pem is None else 'client-key'}")
        token = self.string(user, "token", user_path) or None
        token_file = self.string(user, "tokenFile", user_path) or None
        if token_file:
            token_file = str(self.resolve(token_file))
        if ca_pem is None and (cert_pem is not None or token or token_file):
            raise self.error(f"{user_path}", "credentials are only sent over TLS: the cluster"
                             " needs an https server and its certificate-authority")
        try:
            server = normalize_server(server)
        except ConfigError as e:
            if "," in server:  # which entry is wrong, and why
                raise self.error(f"{cluster_path}.server", str(e)) from None
            raise self.error(f"{cluster_path}.server", "expected https://host:port") from None
        return ClientConfig(server=server, ca_pem=ca_pem, cert_pem=cert_pem,
                            key_pem=key_pem, token=token, token_file=token_file,
                            server_name=server_name, namespace=namespace)

    def named(self, section: str, inner: str, name: str, referrer: str
              ) -> tuple[Mapping[str, Any], str]:
        """The ``inner`` mapping of the entry of ``section`` called ``name``, and its path."""
        entries = self.data.get(section) or []
        if not isinstance(entries, list):
            raise self.error(section, "must be a list")
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise self.error(f"{section}[{i}]", f"must be a mapping with name and {inner}")
            entry_name = entry.get("name")
            if not isinstance(entry_name, str) or not entry_name:
                raise self.error(f"{section}[{i}].name", "required")
            if entry_name != name:
                continue
            value = entry.get(inner)
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise self.error(f"{section}[{i}].{inner}", "must be a mapping")
            return value, f"{section}[{i}].{inner}"
        raise self.error(referrer, f"no {inner} named {name!r} in {section}")

    def string(self, mapping: Mapping[str, Any], key: str, path: str) -> str:
        value = mapping.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.error(f"{path}.{key}", "must be a string")
        return value

    def resolve(self, name: str) -> Path:
        p = Path(name).expanduser()
        return p if p.is_absolute() else self.base / p

    def file_or_data(self, mapping: Mapping[str, Any], key: str, path: str) -> bytes | None:
        """The bytes of ``key-data`` (base64) or of the file ``key`` names; None if neither."""
        data = self.string(mapping, f"{key}-data", path)
        name = self.string(mapping, key, path)
        if data and name:
            raise self.error(f"{path}.{key}", f"give either {key} or {key}-data, not both")
        if data:
            try:
                return base64.b64decode("".join(data.split()), validate=True)
            except (binascii.Error, ValueError):
                raise self.error(f"{path}.{key}-data", "not valid base64") from None
        if name:
            file = self.resolve(name)
            try:
                return file.read_bytes()
            except OSError as e:
                raise self.error(f"{path}.{key}",
                                 f"cannot read {file}: {e.strerror or e}") from e
        return None

    # cryptography is imported when a kubeconfig carries certificates: it is a large import,
    # which every klctl command would pay for otherwise.
    def check_certificates(self, pem: bytes, field_path: str) -> None:
        from cryptography import x509

        try:
            x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise self.error(field_path, "not a PEM certificate") from None

    def check_key(self, pem: bytes, field_path: str) -> None:
        from cryptography.hazmat.primitives import serialization

        try:
            serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise self.error(field_path, "not an unencrypted PEM private key") from None


def kubeconfig_data(
    *, cluster: str, server: str, ca_pem: bytes, user: str, cert_pem: bytes | None = None,
    key_pem: bytes | None = None, token: str | None = None, context: str | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    """A kubeconfig mapping with one cluster, one user and one context, the data inline."""
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    if (cert_pem is None) != (key_pem is None):
        raise ConfigError("a client certificate needs its key (cert_pem and key_pem go"
                          " together)")
    user_entry: dict[str, str] = {}
    if cert_pem is not None and key_pem is not None:
        user_entry["client-certificate-data"] = b64(cert_pem)
        user_entry["client-key-data"] = b64(key_pem)
    if token:
        user_entry["token"] = token
    context_name = context or f"{user}@{cluster}"
    context_entry = {"cluster": cluster, "user": user}
    if namespace:
        context_entry["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "certificate-authority-data": b64(ca_pem), "server": server_url(server)}}],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [{"name": context_name, "context": context_entry}],
        "current-context": context_name,
        "preferences": {},
    }


def write_kubeconfig(
    path: str | os.PathLike[str], *, cluster: str, server: str, ca_pem: bytes, user: str,
    cert_pem: bytes | None = None, key_pem: bytes | None = None, token: str | None = None,
    context: str | None = None, namespace: str | None = None,
) -> Path:
    """Writes a kubeconfig (context ``user@cluster`` unless named) atomically, mode 0600."""
    data = kubeconfig_data(cluster=cluster, server=server, ca_pem=ca_pem, user=user,
                           cert_pem=cert_pem, key_pem=key_pem, token=token, context=context,
                           namespace=namespace)
    return write_kubeconfig_data(path, data)


def write_kubeconfig_data(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Writes a kubeconfig mapping atomically (readers never see half a file), mode 0600."""
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target


# ------------------------------------------------------------------------- in a pod


def in_cluster_config(
    env: Mapping[str, str] | None = None, root: str | os.PathLike[str] = SERVICE_ACCOUNT_DIR,
) -> ClientConfig:
    """The config of a process in a pod: the ``kubernetes`` Service from
    $KUBERNETES_SERVICE_HOST/PORT, the CA and ServiceAccount token the kubelet mounted (the
    token file is read at each call, so the kubelet's rotations are picked up)."""
    env = os.environ if env is None else env
    host = env.get(SERVICE_HOST_ENV, "")
    port = env.get(SERVICE_PORT_ENV, "")
    if not host or not port:
        raise ConfigError(f"in-cluster config: ${SERVICE_HOST_ENV} and ${SERVICE_PORT_ENV}"
                          " must be set (is this process running in a pod?)")
    directory = Path(root)
    ca_path = directory / "ca.crt"
    token_path = directory / "token"
    try:
        ca_pem = ca_path.read_bytes()
    except OSError as e:
        raise ConfigError(f"in-cluster config: cannot read {ca_path}:"
                          f" {e.strerror or e}") from e
    if not token_path.is_file():
        raise ConfigError(f"in-cluster config: cannot read {token_path}: no such file")
    namespace: str | None = None
    try:
        namespace = (directory / "namespace").read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        pass
    config = ClientConfig(server=join_host_port(host, port), ca_pem=ca_pem,
                          token_file=str(token_path), namespace=namespace)
    config.current_token()  # a missing or empty token is an error now, not at the first call
    return config


# ------------------------------------------------------------------------- channels


class _BearerToken(grpc.AuthMetadataPlugin):
    """``authorization: Bearer <token>`` on every call, the token looked up each time."""

    def __init__(self, config: ClientConfig) -> None:
        self._config = config

    def __call__(self, context: grpc.AuthMetadataContext,
                 callback: grpc.AuthMetadataPluginCallback) -> None:
        try:
            token = self._config.current_token()
        except ConfigError as e:
            callback((), e)  # the call fails with this error rather than going unauthenticated
            return
        callback((("authorization", f"Bearer {token}"),), None)


def channel_credentials(config: ClientConfig) -> grpc.ChannelCredentials:
    """TLS credentials of a secure config (with the token as call credentials)."""
    if config.ca_pem is None:
        raise ConfigError("channel credentials need the server's CA (ca_pem)")
    # Without a certificate of its own a client presents the public anonymous-transport one
    # (kubelite.auth.anonymous_transport): the server requires some certificate, and then
    # authenticates this client by its token alone.
    credentials = grpc.ssl_channel_credentials(
        root_certificates=config.ca_pem,
        private_key=config.key_pem or ANONYMOUS_CLIENT_KEY_PEM,
        certificate_chain=config.cert_pem or ANONYMOUS_CLIENT_CERT_PEM)
    if config.has_token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.metadata_call_credentials(_BearerToken(config), name="bearer"))
    return credentials


def make_channel(config: ClientConfig, options: ChannelOptions = ()) -> grpc.aio.Channel:
    """An asyncio channel to the config's server(s): plaintext when it has no CA, else TLS.

    Several servers: one channel balancing calls round robin over those that are up. TLS
    checks every server's certificate against ``server_name``, else the first server's
    host."""
    servers = config.servers
    target, balancing = channel_target(servers)
    opts = [*options, *balancing]
    if config.ca_pem is None:
        return grpc.aio.insecure_channel(target, options=opts)
    name = config.server_name or (split_host_port(servers[0])[0] if len(servers) > 1 else None)
    if name:
        opts.append(("grpc.ssl_target_name_override", name))
    return grpc.aio.secure_channel(target, channel_credentials(config), options=opts)


ROUND_ROBIN = ("grpc.lb_policy_name", "round_robin")


def channel_target(servers: Sequence[str]) -> tuple[str, list[tuple[str, Any]]]:
    """The gRPC target of ``servers`` and the channel options it needs.

    One server: its host:port (gRPC resolves a name, again on each reconnect). Several: an
    ``ipv4:`` (or ``ipv6:``) list of their addresses, each name resolved now to its first
    address, and the ``round_robin`` policy, which keeps a connection to each, sends each
    call to the next one that is up, skips one that is down and reconnects to it in the
    background. The calls' authority is the first server's host:port."""
    if not servers:
        raise ConfigError("server: at least one API server is needed")
    if len(servers) == 1:
        return servers[0], []
    addresses = list(dict.fromkeys(resolve_server(server) for server in servers))
    if all(isinstance(ip, ipaddress.IPv4Address) for ip, _ in addresses):
        target = "ipv4:" + ",".join(f"{ip}:{port}" for ip, port in addresses)
    else:  # IPv6, or a mix: IPv4 as IPv4-mapped IPv6 addresses on dual-stack sockets
        target = "ipv6:" + ",".join(f"[{_as_ipv6(ip)}]:{port}" for ip, port in addresses)
    return target, [ROUND_ROBIN, ("grpc.default_authority", servers[0])]


def split_host_port(server: str) -> tuple[str, int]:
    """(host, port) of ``host:port`` or ``[v6]:port``; a missing or bad port is an error."""
    host, sep, port = server.rpartition(":")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"server {server!r}: expected host:port (a port from 1 to 65535)"
                          " in a list of servers")
    return host, int(port)


def resolve_server(server: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """(IP, port) of ``host:port``: the IP given, or the first address of the name."""
    host, port = split_host_port(server)
    try:
        return ipaddress.ip_address(host), port
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise ConfigError(f"server {server}: cannot resolve {host}: {e}") from e
    for family, _, _, _, address in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            return ipaddress.ip_address(str(address[0]).partition("%")[0]), port
    raise ConfigError(f"server {server}: {host} has no IP address")


def _as_ipv6(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return str(ip) if isinstance(ip, ipaddress.IPv6Address) else f"::ffff:{ip}"
