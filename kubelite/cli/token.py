"""`kubelite token create`: the Secret of a bootstrap token, so that nodes can join with it
(`kubelite join`, or a kubelet's --bootstrap-kubeconfig), as `kubeadm token create` makes one.

    kubelite token create [--data-dir D] [--kubeconfig PATH] [--token ID.SECRET] [--ttl 24h]
                          [--print-join-command]

The token is the data dir's join token (``D/bootstrap-token``, made by `kubelite init`) unless
--token names another; the administrator's client config is ``D/admin.conf`` unless
--kubeconfig names another. The Secret ``kube-system/bootstrap-token-ID`` (type
``bootstrap.kubernetes.io/token``) is created, or renewed when it exists: it expires --ttl
from now (0: never). The command returns once the API server accepts the token, so a node
started next can use it at once, and prints the token (or the join command).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kubelite import pki
from kubelite.api.errors import AlreadyExists, ApiError, Unauthorized, Unavailable
from kubelite.client.client import ApiClient
from kubelite.client.config import ClientConfig, ConfigError, load_kubeconfig
from kubelite.durations import duration_flag
from protos.v1 import objects_pb2 as v1

NAMESPACE = "kube-system"
"""Where bootstrap token Secrets live."""


class TokenError(Exception):
    """The token's Secret could not be made or the token is not accepted; the message says
    why."""


@dataclass(frozen=True)
class TokenCreateSettings:
    """What `kubelite token create` does."""

    data_dir: Path
    """The cluster's data dir (`kubelite init`'s): its join token and admin.conf."""
    kubeconfig: Path | None = None
    """The administrator's client config (None: the data dir's admin.conf)."""
    token: str | None = None
    """The token, ID.SECRET (None: the data dir's join token)."""
    ttl: float = pki.DEFAULT_BOOTSTRAP_TOKEN_TTL
    """Seconds from now the token expires (0: never)."""
    timeout: float = 60.0
    """Seconds to wait for the API server to answer and to accept the token."""
    poll_interval: float = 0.2
    """Seconds between tries of the token while the API server does not accept it yet."""
    print_join_command: bool = False
    """Print `kubelite join ...` rather than the token alone."""

    def __post_init__(self) -> None:
        if self.ttl < 0:
            raise TokenError("--ttl: must be 0 (never expires) or more")
        if not self.timeout > 0:
            raise TokenError("--timeout: must be more than 0")
        if self.token is not None:
            try:
                pki.parse_bootstrap_token(self.token)
            except pki.PkiError:
                raise TokenError("--token: must be ID.SECRET, matching"
                                 " [a-z0-9]{6}.[a-z0-9]{16}") from None

    @property
    def admin_kubeconfig(self) -> Path:
        return self.kubeconfig or pki.ClusterPki(self.data_dir).admin_conf

    def read_token(self) -> str:
        if self.token is not None:
            return self.token
        try:
            return pki.ClusterPki(self.data_dir).read_bootstrap_token()
        except pki.PkiError as e:
            raise TokenError(f"--data-dir: {e} (run `kubelite init` first, or give --token)"
                             ) from None


def token_secret(token: str, ttl: float) -> v1.Secret:
    """The token's Secret, expiring ``ttl`` seconds from now (never when 0)."""
    data = pki.bootstrap_token_secret_data(token, ttl,
                                           description="a bootstrap token for joining nodes")
    return v1.Secret(
        metadata=v1.ObjectMeta(name=pki.bootstrap_token_secret_name(token),
                               namespace=NAMESPACE),
        type=pki.BOOTSTRAP_TOKEN_SECRET_TYPE,
        data={key: value.encode() for key, value in data.items()},
    )


async def ensure_token_secret(admin: ApiClient, token: str, ttl: float) -> bool:
    """Creates the token's Secret, or renews it (its data replaced: a new expiration) when it
    exists. Returns whether it was created."""
    wanted = token_secret(token, ttl)
    try:
        await admin.create(wanted)
        return True
    except AlreadyExists:
        pass
    existing = await admin.get(v1.Secret, wanted.metadata.name, NAMESPACE)
    if existing.type != wanted.type:
        raise TokenError(f"Secret {NAMESPACE}/{wanted.metadata.name} exists with type"
                         f" {existing.type!r}, not {wanted.type}: delete it first")
    existing.ClearField("data")
    existing.data.update(wanted.data)
    await admin.update(existing)
    return False


async def wait_until_accepted(server: str, ca_pem: bytes, token: str, timeout: float,
                              interval: float) -> None:
    """Returns once the API server authenticates ``token`` (the Secret reaches its
    authenticator shortly after it is written); TokenError after ``timeout`` seconds."""
    config = ClientConfig(server, ca_pem=ca_pem, token=token)
    deadline = time.monotonic() + timeout
    last = ""
    async with ApiClient(config, timeout=max(1.0, min(timeout, 10.0)),
                         wait_for_ready=False) as client:
        while True:
            try:
                await client.list(v1.CertificateSigningRequest, page_size=1)
                return
            except (Unauthorized, Unavailable) as e:
                last = str(e)
            except ApiError:
                return  # authenticated: what it may do is the bootstrap policy's business
            if time.monotonic() >= deadline:
                raise TokenError(f"the API server at {server} did not accept the token within"
                                 f" {timeout:g}s: {last}")
            await asyncio.sleep(interval)


def join_command(server: str, ca_pem: bytes, token: str) -> str:
    return (f"kubelite join {server} --token {token} --discovery-token-ca-cert-hash"
            f" {pki.public_key_hash(ca_pem)} --node-name NAME")


async def create(settings: TokenCreateSettings) -> str:
    """Makes or renews the token's Secret and waits until the token is accepted; returns what
    to print."""
    token = settings.read_token()
    try:
        admin = load_kubeconfig(settings.admin_kubeconfig)
    except ConfigError as e:
        raise TokenError(f"--kubeconfig: {e}") from None
    if admin.ca_pem is None:
        raise TokenError(f"--kubeconfig {settings.admin_kubeconfig}: names no"
                         " certificate-authority: bootstrap tokens are only sent over TLS")
    async with ApiClient(admin, timeout=settings.timeout) as client:
        try:
            created = await ensure_token_secret(client, token, settings.ttl)
        except ApiError as e:
            raise TokenError(f"cannot write Secret {NAMESPACE}/"
                             f"{pki.bootstrap_token_secret_name(token)}: {e}") from None
    token_id = token.partition(".")[0]
    expiry = "never expires" if not settings.ttl else f"expires in {settings.ttl:g}s"
    print(f"bootstrap token {token_id} {'created' if created else 'renewed'}"
          f" (Secret {NAMESPACE}/{pki.bootstrap_token_secret_name(token)}, {expiry})",
          file=sys.stderr, flush=True)
    await wait_until_accepted(admin.server, admin.ca_pem, token, settings.timeout,
                              settings.poll_interval)
    if settings.print_join_command:
        return join_command(admin.server, admin.ca_pem, token)
    return token


# ---------------------------------------------------------------- the command line

SUMMARY = "make a bootstrap token's Secret (or renew it), so that nodes can join with it"


def add_parser(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
               default_data_dir: Path) -> None:
    """Adds `token create` to `kubelite`'s subcommands."""
    p: argparse.ArgumentParser = sub.add_parser("token", help="bootstrap tokens",
                                                description="bootstrap tokens")
    p.set_defaults(parser=p)
    actions = p.add_subparsers(dest="token_command", required=True, metavar="create")
    c: argparse.ArgumentParser = actions.add_parser(
        "create", help=SUMMARY, description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    c.set_defaults(parser=c)
    c.add_argument("--data-dir", type=Path, default=default_data_dir, metavar="DIR",
                   help=f"the cluster's data dir (kubelite init's; default {default_data_dir})")
    c.add_argument("--kubeconfig", type=Path, default=None, metavar="PATH",
                   help="the administrator's client config (default: DIR/admin.conf)")
    c.add_argument("--token", default=None, metavar="ID.SECRET",
                   help="the token (default: the data dir's join token, DIR/bootstrap-token)")
    c.add_argument("--ttl", type=duration_flag, default=pki.DEFAULT_BOOTSTRAP_TOKEN_TTL,
                   metavar="DURATION",
                   help="how long the token is valid from now, e.g. 24h (0: never expires;"
                        " default 24h)")
    c.add_argument("--timeout", type=duration_flag, default=60.0, metavar="DURATION",
                   help="how long to wait for the API server and for it to accept the token"
                        " (default 60s)")
    c.add_argument("--print-join-command", action="store_true",
                   help="print the `kubelite join` command rather than the token")


def settings_from(a: argparse.Namespace) -> TokenCreateSettings:
    """The settings of parsed options; a bad value exits with the subcommand's usage."""
    try:
        return TokenCreateSettings(data_dir=a.data_dir, kubeconfig=a.kubeconfig,
                                   token=a.token, ttl=a.ttl, timeout=a.timeout,
                                   print_join_command=a.print_join_command)
    except TokenError as e:
        parser: argparse.ArgumentParser = a.parser
        parser.error(str(e))


def run(a: argparse.Namespace) -> int:
    """Runs `kubelite token create` with parsed options: 0, or 1 with an error line."""
    settings = settings_from(a)
    try:
        print(asyncio.run(create(settings)))
    except TokenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
