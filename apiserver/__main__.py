"""kubelite-apiserver: parse options into settings and serve."""

from __future__ import annotations

import argparse
import ipaddress
from typing import Any

from apiserver import encryption
from apiserver.admission.chain import DEFAULT_ON, ORDER, AdmissionSettings
from apiserver.allocator import IPRange, PortRange
from apiserver.api import ApiSettings
from apiserver.authn import AuthenticationSettings
from apiserver.bootstrap import BootstrapSettings
from apiserver.etcd import EtcdSettings
from apiserver.http.server import HttpSettings
from apiserver.http.watch import WatchSettings
from apiserver.inflight import InflightSettings
from apiserver.kubelet_proxy import KubeletClientSettings
from apiserver.security import AuthorizationSettings, modes_from_flag
from apiserver.server import ApiServer, ApiServerSettings, TlsSettings
from apiserver.token_request import TokenRequestSettings
from apiserver.txn_batch import TxnBatchSettings
from apiserver.watch_cache import WatchCacheSettings
from kubelite import daemon, durations, logs
from kubelite.auth import tokens


def parse_args(argv: list[str] | None = None) -> tuple[ApiServerSettings, str]:
    p = argparse.ArgumentParser(prog="kubelite-apiserver", description=__doc__)
    p.add_argument("--listen", default="127.0.0.1:6443", help="host:port to serve gRPC on")
    p.add_argument("--http-listen", default="",
                   help="host:port to serve the Kubernetes-compatible HTTP/JSON API on (kubectl"
                        " and the official clients; TLS unless --insecure); empty: none")
    p.add_argument("--min-request-timeout", type=float,
                   default=WatchSettings.min_request_timeout,
                   help="seconds an HTTP watch without timeoutSeconds lasts at least (it ends"
                        " at a random time up to twice this)")
    p.add_argument("--advertise-address", default="",
                   help="IP address published in the kubernetes Service's Endpoints (default:"
                        " the --listen host; this host's address when that is 0.0.0.0)")
    p.add_argument(
        "--etcd-servers", default="127.0.0.1:2379", help="comma-separated etcd host:port list"
    )
    p.add_argument("--etcd-prefix", default="/registry", help="key prefix in etcd")
    p.add_argument("--etcd-cafile", default=None,
                   help="CA bundle to verify etcd's serving certificate with (TLS to etcd)")
    p.add_argument("--etcd-certfile", default=None,
                   help="client certificate to present to etcd")
    p.add_argument("--etcd-keyfile", default=None, help="private key of --etcd-certfile")
    p.add_argument("--encryption-provider-config", default=None,
                   help="EncryptionConfiguration file: which resources are encrypted in etcd"
                        " and with which keys")
    p.add_argument("--etcd-batch-writes", default="true", choices=("true", "false"),
                   help="send the writes of concurrent requests to etcd as shared transactions"
                        " (group commit; objects written together share a resourceVersion)")
    p.add_argument("--etcd-batch-max-in-flight", type=int,
                   default=TxnBatchSettings.max_in_flight,
                   help="etcd write transactions in flight before new writes wait to be"
                        " batched")
    p.add_argument("--etcd-batch-linger", type=float, default=TxnBatchSettings.linger,
                   help="seconds a batch of writes may wait to be as large as the last one"
                        " that left for etcd (0: never wait)")
    p.add_argument("--etcd-batch-idle", type=float, default=TxnBatchSettings.idle,
                   help="seconds after which a waiting batch of writes leaves when no write"
                        " has joined it")
    p.add_argument("--consistent-read-linger", type=float,
                   default=WatchCacheSettings.consistent_read_linger,
                   help="seconds the request for etcd's revision behind consistent reads may"
                        " wait to serve as many reads as the last one did (0: never wait)")
    p.add_argument("--compaction-interval", type=float, default=300.0,
                   help="seconds between etcd compactions (0 disables)")
    p.add_argument("--watch-cache-size", type=int, default=10_000,
                   help="events kept per resource for resuming watches")
    p.add_argument("--watch-cache-max-bytes", type=int, default=32 * 1024 * 1024,
                   help="bytes of objects kept per resource for resuming watches")
    p.add_argument("--max-request-bytes", type=int, default=ApiSettings.max_request_bytes,
                   help="largest request taken; larger ones are RequestEntityTooLarge (keep it"
                        " about twice etcd's --max-request-bytes)")
    p.add_argument("--watch-progress-interval", type=float, default=1.0,
                   help="seconds between bookmarks/progress checks on quiet watches")
    p.add_argument("--event-ttl", type=int, default=3600,
                   help="seconds an Event is kept (0: forever)")
    p.add_argument("--default-toleration-seconds", type=int, default=300,
                   help="tolerationSeconds of the not-ready/unreachable NoExecute tolerations"
                        " added to pods that lack them")
    p.add_argument("--service-cluster-ip-range", default="127.96.0.0/16",
                   help="CIDR to allocate Service ClusterIPs from (a loopback block lets"
                        " proxies bind them without privileges)")
    p.add_argument("--service-node-port-range", default="30000-32767",
                   help="port range to allocate NodePort Services' nodePorts from")
    limits = InflightSettings()
    p.add_argument("--max-requests-inflight", type=int, default=limits.max_requests_inflight,
                   help="reads (get, list) served at once; more are answered TooManyRequests"
                        " (0: no limit)")
    p.add_argument("--max-mutating-requests-inflight", type=int,
                   default=limits.max_mutating_requests_inflight,
                   help="writes (create, update, patch, delete, bind) served at once; more are"
                        " answered TooManyRequests (0: no limit)")
    p.add_argument("--max-long-running-requests", type=int,
                   default=limits.max_long_running_requests,
                   help="watches and log/exec streams open at once, beside the limits above"
                        " (0: no limit)")
    p.add_argument("--max-uncached-watches", type=int, default=limits.max_uncached_watches,
                   help="of those, watches from before the watch cache's window while they"
                        " replay from an etcd watch of their own, until they reach it"
                        " (0: no limit)")
    p.add_argument("--retry-after-seconds", type=int, default=limits.retry_after_seconds,
                   help="seconds a request refused with TooManyRequests is told to wait")
    p.add_argument("--max-pending-calls", type=int, default=limits.max_pending_calls,
                   help="calls gRPC holds before the server takes them up (past it gRPC"
                        " cancels calls)")
    _add_security_flags(p)
    p.add_argument("--enable-admission-plugins", default="",
                   help="comma-separated admission plugins to run beside the default set"
                        f" ({', '.join(DEFAULT_ON)}); known: {', '.join(ORDER)}")
    p.add_argument("--disable-admission-plugins", default="",
                   help="comma-separated admission plugins of the default set not to run")
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    if a.advertise_address:
        try:
            ipaddress.ip_address(a.advertise_address)
        except ValueError:
            p.error(f"--advertise-address: {a.advertise_address!r} is not an IP address")
    try:
        inflight = InflightSettings(
            max_requests_inflight=a.max_requests_inflight,
            max_mutating_requests_inflight=a.max_mutating_requests_inflight,
            max_long_running_requests=a.max_long_running_requests,
            max_uncached_watches=a.max_uncached_watches,
            retry_after_seconds=a.retry_after_seconds,
            max_pending_calls=a.max_pending_calls,
        )
    except ValueError as e:
        p.error(str(e))
    if a.watch_cache_size < 1:
        p.error(f"--watch-cache-size: must be at least 1, got {a.watch_cache_size}")
    if not 0 <= a.consistent_read_linger <= 1:
        p.error("--consistent-read-linger: must be between 0 and 1 second,"
                f" got {a.consistent_read_linger}")
    if a.compaction_interval < 0:
        p.error(f"--compaction-interval: must not be negative (0 disables),"
                f" got {a.compaction_interval}")
    if a.watch_cache_max_bytes < 0:
        p.error(f"--watch-cache-max-bytes: must not be negative, got {a.watch_cache_max_bytes}")
    if a.max_request_bytes <= 0:
        p.error(f"--max-request-bytes: must be greater than 0, got {a.max_request_bytes}")
    try:
        IPRange.parse(a.service_cluster_ip_range)
        PortRange.parse(a.service_node_port_range)
    except ValueError as e:
        p.error(str(e))
    if a.encryption_provider_config:
        try:
            encryption.load(a.encryption_provider_config)
        except encryption.EncryptionConfigError as e:
            p.error(f"--encryption-provider-config: {e}")
    try:
        admission = AdmissionSettings(
            enable_plugins=tuple(n.strip() for n in a.enable_admission_plugins.split(",")
                                 if n.strip()),
            disable_plugins=tuple(n.strip() for n in a.disable_admission_plugins.split(",")
                                  if n.strip()),
        )
    except ValueError as e:
        p.error(str(e))
    try:
        etcd = EtcdSettings(
            endpoints=tuple(s.strip() for s in a.etcd_servers.split(",") if s),
            ca_file=a.etcd_cafile, cert_file=a.etcd_certfile, key_file=a.etcd_keyfile,
        )
    except ValueError as e:
        p.error(str(e))
    try:
        batching = TxnBatchSettings(enabled=a.etcd_batch_writes == "true",
                                    max_in_flight=a.etcd_batch_max_in_flight,
                                    linger=a.etcd_batch_linger,
                                    idle=a.etcd_batch_idle)
    except ValueError as e:
        field, _, rule = str(e).partition(": ")
        p.error(f"--etcd-batch-{field.replace('_', '-')}: {rule}")
    try:
        security = _security_settings(a)
    except ValueError as e:
        p.error(str(e))
    try:
        http = HttpSettings(watch=WatchSettings(min_request_timeout=a.min_request_timeout))
    except ValueError as e:
        p.error(str(e))
    settings = ApiServerSettings(
        **security,
        listen=a.listen,
        http_listen=a.http_listen,
        http=http,
        etcd=etcd,
        etcd_write_batching=batching,
        api=ApiSettings(
            storage_prefix=a.etcd_prefix,
            max_request_bytes=a.max_request_bytes,
            service_cluster_ip_range=a.service_cluster_ip_range,
            service_node_port_range=a.service_node_port_range,
            watch_cache=WatchCacheSettings(
                capacity=a.watch_cache_size, max_bytes=a.watch_cache_max_bytes,
                progress_interval=a.watch_progress_interval,
                consistent_read_linger=a.consistent_read_linger,
            ),
            default_toleration_seconds=a.default_toleration_seconds,
            event_ttl=a.event_ttl,
            admission=admission,
        ),
        inflight=inflight,
        bootstrap=BootstrapSettings(advertise_address=a.advertise_address),
        compaction_interval=a.compaction_interval,
        encryption_provider_config=a.encryption_provider_config,
    )
    return settings, a.log_level


def _add_security_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--insecure", action="store_true",
                   help="serve plaintext with no authentication or authorization (for learning"
                        " only; without it, --tls-cert-file and --tls-private-key-file are"
                        " required)")
    p.add_argument("--tls-cert-file", default="",
                   help="serving certificate (PEM), followed by its CA")
    p.add_argument("--tls-private-key-file", default="", help="its private key (PEM)")
    p.add_argument("--client-ca-file", default="",
                   help="CA whose client certificates authenticate users (CN the name, O the"
                        " groups)")
    p.add_argument("--anonymous-auth", default="false", choices=("true", "false"),
                   help="serve requests without credentials as system:anonymous instead of"
                        " refusing them")
    p.add_argument("--enable-bootstrap-token-auth", action="store_true",
                   help="accept bootstrap tokens (Secrets kube-system/bootstrap-token-ID) as"
                        " bearer tokens, for nodes joining")
    p.add_argument("--service-account-key-file", action="append", default=[],
                   help="PEM file of public keys that ServiceAccount tokens may be signed with"
                        " (repeatable)")
    p.add_argument("--service-account-signing-key-file", default="",
                   help="RSA private key (PEM) that ServiceAccount tokens are signed with")
    p.add_argument("--service-account-issuer", action="append", default=[],
                   help="issuer of ServiceAccount tokens: the first signs, all are accepted"
                        f" (default {tokens.DEFAULT_ISSUER})")
    p.add_argument("--api-audiences", default="",
                   help="comma-separated audiences a token must name (default: the issuers)")
    p.add_argument("--service-account-max-token-expiration", default="",
                   help="longest lifetime of a requested token (e.g. 48h; default: none)")
    p.add_argument("--authorization-mode", default="Node,RBAC",
                   help="comma-separated authorizers in order: Node, RBAC, AlwaysAllow")
    p.add_argument("--kubelet-client-certificate", default="",
                   help="certificate the server presents to kubelets (PEM)")
    p.add_argument("--kubelet-client-key", default="", help="its private key (PEM)")
    p.add_argument("--kubelet-certificate-authority", default="",
                   help="CA that kubelets' serving certificates are verified against")


def _security_settings(a: argparse.Namespace) -> dict[str, Any]:
    """The security fields of ApiServerSettings from the flags; ValueError naming the flag."""
    if not a.insecure and not (a.tls_cert_file and a.tls_private_key_file):
        raise ValueError("--tls-cert-file and --tls-private-key-file are required (or"
                         " --insecure, to serve plaintext with no authentication, for learning"
                         " only)")
    max_expiration = 0
    if a.service_account_max_token_expiration:
        try:
            max_expiration = int(durations.parse_duration(
                a.service_account_max_token_expiration))
        except ValueError as e:
            raise ValueError(f"--service-account-max-token-expiration: {e}") from None
        if max_expiration < tokens.MIN_EXPIRATION_SECONDS:
            raise ValueError("--service-account-max-token-expiration: must be at least 10m")
    return {
        "insecure": a.insecure,
        "tls": TlsSettings(a.tls_cert_file, a.tls_private_key_file, a.client_ca_file),
        "authentication": AuthenticationSettings(
            anonymous=a.anonymous_auth == "true",
            bootstrap_tokens=a.enable_bootstrap_token_auth,
            service_account_key_files=tuple(a.service_account_key_file),
            service_account_issuers=tuple(a.service_account_issuer)
            or (tokens.DEFAULT_ISSUER,),
            api_audiences=tuple(x.strip() for x in a.api_audiences.split(",") if x.strip()),
        ),
        "authorization": AuthorizationSettings(modes=modes_from_flag(a.authorization_mode)),
        "token_requests": TokenRequestSettings(a.service_account_signing_key_file,
                                               max_expiration),
        "kubelet_client": KubeletClientSettings(a.kubelet_client_certificate,
                                                a.kubelet_client_key,
                                                a.kubelet_certificate_authority),
    }


def main(argv: list[str] | None = None) -> None:
    settings, level = parse_args(argv)
    logs.configure(level, component="apiserver")

    async def serve() -> None:
        # grpc.aio objects bind to the loop they are made on: make them inside it.
        server = ApiServer(settings)
        await daemon.serve_until_signalled(server.start, server.stop)

    daemon.run(serve())


if __name__ == "__main__":
    main()
