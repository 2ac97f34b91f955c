"""CertificateSigningRequests: approved by csrapproving, signed by csrsigning, as
kube-controller-manager's controllers of those names.

csrapproving approves, and never denies, what a kubelet asks for itself:
- a client certificate (signer ``kubernetes.io/kube-apiserver-client-kubelet``) whose subject
  is exactly CN ``system:node:N``, O ``system:nodes``, with no subject alternative names and
  usages among digital signature, key encipherment and client auth (client auth required),
  requested by ``system:node:N`` itself (a renewal) or by a bootstrap token's user (group
  ``system:bootstrappers``: a node joining), unless Node N exists and is Ready (as kubeadm
  join refuses to take a live node's name; once that Node is no longer Ready, the request
  is looked at again);
- a serving certificate (signer ``kubernetes.io/kubelet-serving``) requested by
  ``system:node:N`` for CN ``system:node:N``, O ``system:nodes``, usages among digital
  signature, key encipherment and server auth (server auth required), whose DNS names and IP
  addresses are all addresses of Node N's status (a request made before the Node shows them
  waits, and is looked at again when the Node changes).
Anything else stays pending for an administrator (``klctl certificate approve|deny``).
Approval is the condition Approved, reason AutoApproved, as upstream.

csrsigning issues the certificate of every approved request of the kubelet signers and of
``kubernetes.io/kube-apiserver-client`` (which only an administrator approves) with the
cluster CA (``--cluster-signing-cert-file``/``--cluster-signing-key-file``), valid for
``spec.expirationSeconds`` or ``--cluster-signing-duration`` (8760h), whichever is shorter,
and never past the CA's own expiry. A request the signer's rules refuse gets the condition
Failed, reason SignerValidationFailure, and no certificate. Without a CA it signs nothing.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from controller_manager.context import ControllerContext
from kubelite import pki
from kubelite.api import certificates as csrs
from kubelite.api import meta as m
from kubelite.auth.user import BOOTSTRAPPERS, NODE_USER_PREFIX, NODES
from kubelite.client.controller import Controller
from kubelite.client.informer import Informer
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

AUTO_APPROVED = "AutoApproved"
"""Reason of the Approved condition the approver writes (upstream's)."""
SIGNER_VALIDATION_FAILURE = "SignerValidationFailure"
"""Reason of the Failed condition of a request the signer refuses (upstream's)."""

CLIENT_USAGES = frozenset({csrs.USAGE_DIGITAL_SIGNATURE, csrs.USAGE_KEY_ENCIPHERMENT,
                           csrs.USAGE_CLIENT_AUTH})
"""Usages a client certificate may carry (client auth required)."""
SERVING_USAGES = frozenset({csrs.USAGE_DIGITAL_SIGNATURE, csrs.USAGE_KEY_ENCIPHERMENT,
                            csrs.USAGE_SERVER_AUTH})
"""Usages a kubelet's serving certificate may carry (server auth required)."""

SIGNERS = (csrs.KUBE_APISERVER_CLIENT_KUBELET_SIGNER, csrs.KUBELET_SERVING_SIGNER,
           csrs.KUBE_APISERVER_CLIENT_SIGNER)
"""The signers csrsigning issues certificates for."""

KUBELET_SIGNERS = (csrs.KUBE_APISERVER_CLIENT_KUBELET_SIGNER, csrs.KUBELET_SERVING_SIGNER)
"""The signers whose requests csrapproving reviews."""
NODE_INDEX = "requested-node"
"""Pending kubelet requests by the node they name: their review depends on that Node."""


@dataclass(frozen=True)
class Request:
    """What a CertificateSigningRequest's PKCS#10 request asks for."""

    common_names: tuple[str, ...]
    organizations: tuple[str, ...]
    subject_attributes: int
    """How many attributes the subject has in all (CN and O included)."""
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    other_names: int
    """Subject alternative names that are neither DNS names nor IPs (emails, URIs, ...)."""

    @staticmethod
    def of(csr: v1.CertificateSigningRequest) -> Request:
        """The request of ``spec.request``; ValueError naming the field when unreadable."""
        parsed = csrs.parse_request(csr.spec.request)
        cns, orgs, attributes = csrs.subject_names(parsed)
        dns, ips, others = csrs.subject_alt_names(parsed)
        return Request(tuple(cns), tuple(orgs), attributes, tuple(dns), tuple(ips), others)

    @property
    def node_name(self) -> str | None:
        """N when the subject is exactly CN ``system:node:N``, O ``system:nodes``."""
        if (len(self.common_names) == 1 and self.organizations == (csrs.NODE_ORGANIZATION,)
                and self.subject_attributes == 2
                and self.common_names[0].startswith(NODE_USER_PREFIX)):
            name = self.common_names[0].removeprefix(NODE_USER_PREFIX)
            return name or None
        return None

    @property
    def has_alt_names(self) -> bool:
        return bool(self.dns_names or self.ip_addresses or self.other_names)


def _usages_problem(usages: Collection[str], allowed: frozenset[str], required: str
                    ) -> str | None:
    extra = sorted(set(usages) - allowed)
    if extra:
        return (f"spec.usages: {', '.join(repr(u) for u in extra)} not allowed (allowed:"
                f" {', '.join(sorted(allowed))})")
    if required not in usages:
        return f"spec.usages: must include {required!r}"
    return None


# ---------------------------------------------------------------- approval


@dataclass(frozen=True)
class Review:
    """The approver's verdict on one request."""

    approve: bool
    message: str
    """The Approved condition's message, or why the request stays pending."""


def review(csr: v1.CertificateSigningRequest, request: Request,
           node: Callable[[str], v1.Node | None]) -> Review:
    """Whether the approver approves ``csr`` (whose parsed request is ``request``), ``node``
    giving a Node from the cache by name."""
    signer = csr.spec.signer_name
    if signer == csrs.KUBE_APISERVER_CLIENT_KUBELET_SIGNER:
        return _review_kubelet_client(csr, request, node)
    if signer == csrs.KUBELET_SERVING_SIGNER:
        return _review_kubelet_serving(csr, request, node)
    return Review(False, f"signer {signer!r} is left to an administrator")


def _review_kubelet_client(csr: v1.CertificateSigningRequest, request: Request,
                           node: Callable[[str], v1.Node | None]) -> Review:
    node_name = request.node_name
    if node_name is None:
        return Review(False, "the subject is not exactly CN system:node:<name>, O system:nodes")
    if request.has_alt_names:
        return Review(False, "a kubelet client certificate takes no subject alternative names")
    problem = _usages_problem(csr.spec.usages, CLIENT_USAGES, csrs.USAGE_CLIENT_AUTH)
    if problem:
        return Review(False, problem)
    if csr.spec.username == csrs.node_user_name(node_name) and NODES in csr.spec.groups:
        return Review(True, "Auto approving self kubelet client certificate.")
    if BOOTSTRAPPERS in csr.spec.groups:
        # As kubeadm join refuses to: a token holder does not take over a live node.
        existing = node(node_name)
        if existing is not None and _ready(existing):
            return Review(False, f"node {node_name} exists and is Ready: a bootstrap token"
                                 " cannot take over the identity of a live node")
        return Review(True, "Auto approving kubelet client certificate requested by a"
                            " bootstrap token.")
    return Review(False, f"requested by {csr.spec.username!r}, neither a bootstrapper nor"
                         f" {csrs.node_user_name(node_name)!r}")


def _review_kubelet_serving(csr: v1.CertificateSigningRequest, request: Request,
                            node: Callable[[str], v1.Node | None]) -> Review:
    node_name = request.node_name
    if node_name is None:
        return Review(False, "the subject is not exactly CN system:node:<name>, O system:nodes")
    if csr.spec.username != csrs.node_user_name(node_name) or NODES not in csr.spec.groups:
        return Review(False, f"requested by {csr.spec.username!r}, not by node {node_name}"
                             " itself")
    problem = _usages_problem(csr.spec.usages, SERVING_USAGES, csrs.USAGE_SERVER_AUTH)
    if problem:
        return Review(False, problem)
    if request.other_names:
        return Review(False, "a serving certificate takes only DNS names and IP addresses as"
                             " subject alternative names")
    if not request.dns_names and not request.ip_addresses:
        return Review(False, "a serving certificate needs a DNS name or an IP address")
    found = node(node_name)
    if found is None:
        return Review(False, f"node {node_name} does not exist (yet)")
    dns, ips = node_addresses(found)
    foreign = [d for d in request.dns_names if d not in dns] + [
        ip for ip in request.ip_addresses if _canonical_ip(ip) not in ips]
    if foreign:
        return Review(False, f"{', '.join(foreign)}: not among node {node_name}'s addresses")
    return Review(True, "Auto approving kubelet serving certificate of its own node.")


def _ready(node: v1.Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


def _canonical_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def node_addresses(node: v1.Node) -> tuple[set[str], set[str]]:
    """(DNS names, IP addresses) a Node's status.addresses give it."""
    dns: set[str] = set()
    ips: set[str] = set()
    for address in node.status.addresses:
        try:
            ips.add(str(ipaddress.ip_address(address.address)))
        except ValueError:
            dns.add(address.address)
    return dns, ips


def _requested_node(csr: v1.CertificateSigningRequest) -> list[str]:
    """The node a pending kubelet request names: its review depends on that Node."""
    if csr.spec.signer_name not in KUBELET_SIGNERS or not csrs.is_pending(csr):
        return []
    try:
        name = Request.of(csr).node_name
    except ValueError:
        return []
    return [name] if name else []


class CSRApprovingController(Controller):
    name = "csrapproving"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client = ctx.client
        self.csrs: Informer[v1.CertificateSigningRequest] = ctx.informers.informer(
            v1.CertificateSigningRequest)
        self.nodes: Informer[v1.Node] = ctx.informers.informer(v1.Node)
        self.csrs.store.add_indexer(NODE_INDEX, _requested_node)
        self.csrs.add_handlers(on_add=self._csr_changed,
                               on_update=lambda _old, new: self._csr_changed(new))
        self.nodes.add_handlers(on_add=self._node_changed,
                                on_update=lambda _old, new: self._node_changed(new))

    def _csr_changed(self, csr: v1.CertificateSigningRequest) -> None:
        if csrs.is_pending(csr):
            self.enqueue(csr)

    def _node_changed(self, node: v1.Node) -> None:
        for csr in self.csrs.store.by_index(NODE_INDEX, node.metadata.name):
            self.enqueue(csr)

    async def reconcile(self, key: str) -> None:
        cached = self.csrs.store.get(key)
        if cached is None or not csrs.is_pending(cached):
            return
        if cached.spec.signer_name not in KUBELET_SIGNERS:
            return
        try:
            request = Request.of(cached)
        except ValueError as e:
            log.info("certificate signing request left pending", csr=key, why=str(e))
            return
        verdict = review(cached, request, self.nodes.store.get)
        if not verdict.approve:
            log.debug("certificate signing request left pending", csr=key,
                      why=verdict.message)
            return
        csr = m.copy(cached)
        csrs.add_condition(csr, csrs.APPROVED, AUTO_APPROVED, verdict.message)
        # A conflict goes back to the queue and is looked at again from the cache.
        await self.client.update_status(csr)
        log.info("certificate signing request approved", csr=key,
                 signer=csr.spec.signer_name, requester=csr.spec.username)


# ---------------------------------------------------------------- signing


def signing_problem(csr: v1.CertificateSigningRequest, request: Request) -> str | None:
    """Why the signer of ``csr`` refuses it (None: it signs), as upstream's signers check."""
    signer = csr.spec.signer_name
    if signer == csrs.KUBE_APISERVER_CLIENT_SIGNER:
        return _usages_problem(csr.spec.usages, CLIENT_USAGES, csrs.USAGE_CLIENT_AUTH)
    if request.node_name is None:
        return (f"signer {signer} signs only subjects CN system:node:<name>, O"
                " system:nodes")
    if signer == csrs.KUBE_APISERVER_CLIENT_KUBELET_SIGNER:
        if request.has_alt_names:
            return f"signer {signer} signs no subject alternative names"
        return _usages_problem(csr.spec.usages, CLIENT_USAGES, csrs.USAGE_CLIENT_AUTH)
    if signer == csrs.KUBELET_SERVING_SIGNER:
        if request.other_names:
            return f"signer {signer} signs only DNS names and IP addresses"
        if not request.dns_names and not request.ip_addresses:
            return f"signer {signer} needs a DNS name or an IP address"
        return _usages_problem(csr.spec.usages, SERVING_USAGES, csrs.USAGE_SERVER_AUTH)
    return f"signer {signer} is not one this controller signs for"


def signing_duration(csr: v1.CertificateSigningRequest, maximum: float) -> float:
    """Seconds the certificate is valid: spec.expirationSeconds, at most ``maximum``."""
    if csr.spec.HasField("expiration_seconds") and csr.spec.expiration_seconds > 0:
        return min(float(csr.spec.expiration_seconds), maximum)
    return maximum


@dataclass(frozen=True)
class SigningCA:
    """The cluster CA csrsigning issues certificates with."""

    cert_pem: bytes
    key_pem: bytes

    @staticmethod
    def load(cert_file: str, key_file: str) -> SigningCA:
        """Reads and checks the pair; ValueError naming the flag and what is wrong."""
        data: dict[str, bytes] = {}
        for flag, path in (("--cluster-signing-cert-file", cert_file),
                           ("--cluster-signing-key-file", key_file)):
            try:
                data[flag] = Path(path).read_bytes()
            except OSError as e:
                raise ValueError(f"{flag}: cannot read {path}: {e.strerror or e}") from None
        cert_pem, key_pem = data["--cluster-signing-cert-file"], data[
            "--cluster-signing-key-file"]
        try:
            cert = pki.load_certificate(cert_pem, f"--cluster-signing-cert-file {cert_file}")
        except pki.PkiError as e:
            raise ValueError(str(e)) from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            raise ValueError(f"--cluster-signing-key-file {key_file}: not an unencrypted PEM"
                             " private key") from None
        if cert.public_key() != key.public_key():
            raise ValueError(f"--cluster-signing-key-file {key_file}: not the key of the"
                             f" certificate in {cert_file}")
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise ValueError(f"--cluster-signing-cert-file {cert_file}: not a CA certificate"
                             " (basicConstraints CA:TRUE)")
        return SigningCA(cert_pem, key_pem)


class CSRSigningController(Controller):
    name = "csrsigning"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client = ctx.client
        settings = ctx.settings
        self.max_duration = settings.cluster_signing_duration
        self.ca: SigningCA | None = None
        if settings.cluster_signing_cert_file or settings.cluster_signing_key_file:
            self.ca = SigningCA.load(settings.cluster_signing_cert_file,
                                     settings.cluster_signing_key_file)
        self.csrs: Informer[v1.CertificateSigningRequest] = ctx.informers.informer(
            v1.CertificateSigningRequest)
        self.csrs.add_handlers(on_add=self._csr_changed,
                               on_update=lambda _old, new: self._csr_changed(new))

    async def start(self) -> None:
        if self.ca is None:
            log.warning("not signing certificates: no --cluster-signing-cert-file and"
                        " --cluster-signing-key-file")

    def _csr_changed(self, csr: v1.CertificateSigningRequest) -> None:
        if self.ca is not None and _to_sign(csr):
            self.enqueue(csr)

    async def reconcile(self, key: str) -> None:
        cached = self.csrs.store.get(key)
        if cached is None or self.ca is None or not _to_sign(cached):
            return
        csr = m.copy(cached)
        try:
            request = Request.of(csr)
        except ValueError as e:
            problem: str | None = str(e)
        else:
            problem = signing_problem(csr, request)
        if problem is not None:
            csrs.add_condition(csr, csrs.FAILED, SIGNER_VALIDATION_FAILURE, problem)
            await self.client.update_status(csr)
            log.info("certificate signing request refused by its signer", csr=key,
                     signer=csr.spec.signer_name, why=problem)
            return
        seconds = signing_duration(csr, self.max_duration)
        csr.status.certificate = pki.sign_csr(
            self.ca.cert_pem, self.ca.key_pem, csr.spec.request, list(csr.spec.usages),
            duration=datetime.timedelta(seconds=seconds))
        await self.client.update_status(csr)
        log.info("certificate issued", csr=key, signer=csr.spec.signer_name,
                 subject=request.common_names, valid_seconds=seconds)


def _to_sign(csr: v1.CertificateSigningRequest) -> bool:
    return (csr.spec.signer_name in SIGNERS and csrs.is_approved(csr)
            and not csrs.is_failed(csr) and not csr.status.certificate)
