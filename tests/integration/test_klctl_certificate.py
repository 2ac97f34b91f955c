"""klctl certificate approve|deny against a real API server: the decision is a condition in
the request's status, as kubectl writes it."""

from __future__ import annotations

from kubelite import pki
from kubelite.api import certificates as csrs
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import Klctl


async def create_csr(client: ApiClient, name: str) -> v1.CertificateSigningRequest:
    key, _ = pki.new_rsa_key_pair()
    return await client.create(v1.CertificateSigningRequest(
        metadata=v1.ObjectMeta(name=name),
        spec=v1.CertificateSigningRequestSpec(
            request=pki.new_csr("jane", ["developers"], key_pem=key),
            signer_name=csrs.KUBE_APISERVER_CLIENT_SIGNER, usages=[csrs.USAGE_CLIENT_AUTH]),
    ))


async def test_approve_and_deny_write_their_condition(client: ApiClient, klctl: Klctl) -> None:
    await create_csr(client, "jane")
    await create_csr(client, "mallory")

    result = await klctl("certificate", "approve", "jane")
    assert (result.code, result.out) == (0, "certificatesigningrequest.certificates.k8s.io/jane"
                                            " approved\n")
    approved = await client.get(v1.CertificateSigningRequest, "jane")
    (condition,) = approved.status.conditions
    assert (condition.type, condition.status, condition.reason) == ("Approved", "True",
                                                                    "KubectlApprove")

    # Approving again changes nothing; denying an approved request is refused.
    assert (await klctl("certificate", "approve", "jane")).code == 0
    again = await client.get(v1.CertificateSigningRequest, "jane")
    assert again.metadata.resource_version == approved.metadata.resource_version
    refused = await klctl("certificate", "deny", "jane")
    assert refused.code == 1
    assert "already Approved" in refused.err

    result = await klctl("certificate", "deny", "mallory")
    assert result.out == "certificatesigningrequest.certificates.k8s.io/mallory denied\n"
    denied = await client.get(v1.CertificateSigningRequest, "mallory")
    assert csrs.is_denied(denied) and not csrs.is_approved(denied)
    assert denied.status.conditions[0].reason == "KubectlDeny"


async def test_unknown_requests_and_verbs_are_errors(client: ApiClient, klctl: Klctl) -> None:
    missing = await klctl("certificate", "approve", "nope")
    assert missing.code == 1
    assert 'certificatesigningrequests.certificates.k8s.io "nope" not found' in missing.err
    wrong = await klctl("certificate", "sign", "nope")
    assert wrong.code == 1
    assert 'unknown command "sign"' in wrong.err
    none = await klctl("certificate", "approve")
    assert none.code == 1
    assert "one or more CSRs must be specified" in none.err
