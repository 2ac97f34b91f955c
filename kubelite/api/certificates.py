"""CertificateSigningRequests (certificates.k8s.io/v1): the signers Kubernetes names, the key
usages a request may ask for, its conditions and the PKCS#10 request it carries.

Shared by the controller manager's approver and signer, the kubelet's TLS bootstrap and
klctl's ``certificate approve|deny``. The functions that read a request import cryptography
(a large import) when they run, so that klctl's other commands do not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubelite.api import meta as m
from kubelite.auth.user import NODE_USER_PREFIX, NODES
from protos.v1 import objects_pb2 as v1

if TYPE_CHECKING:
    from cryptography import x509

KUBE_APISERVER_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
"""Client certificates the API server honours; signed only once someone approved them."""
KUBE_APISERVER_CLIENT_KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
"""Kubelets' client certificates (``system:node:N`` in ``system:nodes``)."""
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
"""Kubelets' serving certificates (the kubelet API)."""
LEGACY_UNKNOWN_SIGNER = "kubernetes.io/legacy-unknown"

USAGE_DIGITAL_SIGNATURE = "digital signature"
USAGE_KEY_ENCIPHERMENT = "key encipherment"
USAGE_CLIENT_AUTH = "client auth"
USAGE_SERVER_AUTH = "server auth"

KUBELET_CLIENT_USAGES = (USAGE_DIGITAL_SIGNATURE, USAGE_KEY_ENCIPHERMENT, USAGE_CLIENT_AUTH)
"""What a kubelet asks for its client certificate (upstream's kubelet, RSA keys)."""
KUBELET_SERVING_USAGES = (USAGE_DIGITAL_SIGNATURE, USAGE_KEY_ENCIPHERMENT, USAGE_SERVER_AUTH)
"""What a kubelet asks for its serving certificate."""

APPROVED = "Approved"
DENIED = "Denied"
FAILED = "Failed"
CONDITION_TRUE = "True"

NODE_ORGANIZATION = NODES
"""The one organization (O) of a kubelet's certificates: its group."""


def node_user_name(node_name: str) -> str:
    """The user (and certificate CN) of a node's kubelet: ``system:node:N``."""
    return NODE_USER_PREFIX + node_name


def condition(csr: v1.CertificateSigningRequest, kind: str
              ) -> v1.CertificateSigningRequestCondition | None:
    """The request's condition of type ``kind`` whose status is True, if any."""
    for c in csr.status.conditions:
        if c.type == kind and c.status in ("", CONDITION_TRUE):
            return c
    return None


def is_approved(csr: v1.CertificateSigningRequest) -> bool:
    """Approved and not denied (a request carrying both counts as denied, as upstream)."""
    return condition(csr, APPROVED) is not None and condition(csr, DENIED) is None


def is_denied(csr: v1.CertificateSigningRequest) -> bool:
    return condition(csr, DENIED) is not None


def is_failed(csr: v1.CertificateSigningRequest) -> bool:
    return condition(csr, FAILED) is not None


def is_pending(csr: v1.CertificateSigningRequest) -> bool:
    """Neither approved nor denied yet."""
    return condition(csr, APPROVED) is None and condition(csr, DENIED) is None


def add_condition(csr: v1.CertificateSigningRequest, kind: str, reason: str, message: str
                  ) -> None:
    """Appends a True condition, stamped now (in place)."""
    stamp = m.now_rfc3339()
    csr.status.conditions.add(type=kind, status=CONDITION_TRUE, reason=reason,
                              message=message, last_update_time=stamp,
                              last_transition_time=stamp)


def state(csr: v1.CertificateSigningRequest) -> str:
    """kubectl's CONDITION column: Pending, Approved, Denied, Failed and ``,Issued``."""
    parts = [c.type for c in csr.status.conditions
             if c.type in (APPROVED, DENIED, FAILED) and c.status in ("", CONDITION_TRUE)]
    text = ",".join(parts) or "Pending"
    if csr.status.certificate:
        text += ",Issued"
    return text


def parse_request(pem: bytes) -> x509.CertificateSigningRequest:
    """The PKCS#10 request of ``spec.request``; ValueError naming the field and what is wrong
    (not PEM, or its signature does not verify)."""
    from cryptography import x509

    try:
        request = x509.load_pem_x509_csr(pem)
    except ValueError as e:
        raise ValueError(f"spec.request: not a PEM certificate request ({e})") from None
    if not request.is_signature_valid:
        raise ValueError("spec.request: its signature does not verify against its public key")
    return request


def subject_names(request: x509.CertificateSigningRequest) -> tuple[list[str], list[str], int]:
    """(common names, organizations, count of all subject attributes) of a request."""
    from cryptography.x509.oid import NameOID

    subject = request.subject
    cns = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return cns, orgs, len(list(subject))


def subject_alt_names(request: x509.CertificateSigningRequest
                      ) -> tuple[list[str], list[str], int]:
    """(DNS names, IP addresses as text, count of other names: emails, URIs, ...) of the
    request's subjectAltName extension (empty without one)."""
    from cryptography import x509

    try:
        ext = request.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return [], [], 0
    names = ext.value
    dns = list(names.get_values_for_type(x509.DNSName))
    ips = [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    return dns, ips, len(list(names)) - len(dns) - len(ips)
