"""csrapproving's rules (what a kubelet may have approved for itself) and csrsigning's (what
each signer issues, for how long, with which CA)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from controller_manager import __main__ as cm_main
from controller_manager.certificates import (
    AUTO_APPROVED,
    SIGNER_VALIDATION_FAILURE,
    CSRApprovingController,
    CSRSigningController,
    Request,
    review,
    signing_duration,
)
from controller_manager.context import ControllerContext
from kubelite import pki
from kubelite.api import certificates as csrs
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient, deliver, fill_cache, make_context

BOOTSTRAPPER = ("system:bootstrap:abcdef", ("system:bootstrappers",
                                             "system:bootstrappers:kubeadm:default-node-token",
                                             "system:authenticated"))
NODE_A = ("system:node:node-a", ("system:nodes", "system:authenticated"))
ADMIN = ("kubernetes-admin", ("system:masters", "system:authenticated"))


@pytest.fixture(scope="module")
def key_pem() -> bytes:
    return pki.new_rsa_key_pair()[0]


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return pki.new_ca("kubernetes")


def make_csr(key_pem: bytes, *, cn: str = "system:node:node-a",
             orgs: tuple[str, ...] = ("system:nodes",), dns: tuple[str, ...] = (),
             ips: tuple[str, ...] = (),
             signer: str = csrs.KUBE_APISERVER_CLIENT_KUBELET_SIGNER,
             usages: tuple[str, ...] = csrs.KUBELET_CLIENT_USAGES,
             requester: tuple[str, tuple[str, ...]] = BOOTSTRAPPER,
             name: str = "csr-1", expiration_seconds: int | None = None,
             ) -> v1.CertificateSigningRequest:
    csr = v1.CertificateSigningRequest()
    csr.metadata.name = name
    csr.metadata.resource_version = "5"
    csr.spec.request = pki.new_csr(cn, orgs, dns, ips, key_pem=key_pem)
    csr.spec.signer_name = signer
    csr.spec.usages.extend(usages)
    csr.spec.username = requester[0]
    csr.spec.groups.extend(requester[1])
    if expiration_seconds is not None:
        csr.spec.expiration_seconds = expiration_seconds
    return csr


def node(name: str = "node-a", *, addresses: tuple[tuple[str, str], ...] = (
        ("InternalIP", "10.0.0.5"), ("Hostname", "node-a")), ready: bool = False) -> v1.Node:
    n = v1.Node()
    n.metadata.name = name
    for kind, address in addresses:
        n.status.addresses.add(type=kind, address=address)
    if ready:
        n.status.conditions.add(type="Ready", status="True")
    return n


def verdict(csr: v1.CertificateSigningRequest, *nodes: v1.Node) -> tuple[bool, str]:
    by_name = {n.metadata.name: n for n in nodes}
    result = review(csr, Request.of(csr), by_name.get)
    return result.approve, result.message


# ---------------------------------------------------------------- client certificates


def test_a_bootstrappers_kubelet_client_request_is_approved(key_pem: bytes) -> None:
    approve, message = verdict(make_csr(key_pem))
    assert approve, message
    assert "bootstrap token" in message


def test_a_nodes_renewal_of_its_own_client_certificate_is_approved(key_pem: bytes) -> None:
    approve, message = verdict(make_csr(key_pem, requester=NODE_A), node(ready=True))
    assert approve, message
    assert "self" in message


def test_a_node_asking_for_another_nodes_client_certificate_stays_pending(
        key_pem: bytes) -> None:
    approve, message = verdict(make_csr(key_pem, cn="system:node:node-b", requester=NODE_A))
    assert not approve
    assert "system:node:node-b" in message


def test_a_bootstrapper_cannot_take_the_name_of_a_ready_node(key_pem: bytes) -> None:
    csr = make_csr(key_pem)
    approve, message = verdict(csr, node(ready=True))
    assert not approve
    assert "Ready" in message
    # A node that is gone or not Ready may be joined again under its name.
    assert verdict(csr, node(ready=False))[0]


@pytest.mark.parametrize(("cn", "orgs"), [
    ("system:node:node-a", ("system:nodes", "system:masters")),
    ("system:node:node-a", ()),
    ("node-a", ("system:nodes",)),
    ("system:node:", ("system:nodes",)),
    ("system:node:node-a", ("system:masters",)),
])
def test_client_subjects_other_than_exactly_a_node_identity_stay_pending(
        key_pem: bytes, cn: str, orgs: tuple[str, ...]) -> None:
    approve, message = verdict(make_csr(key_pem, cn=cn, orgs=orgs))
    assert not approve
    assert "CN system:node:<name>, O system:nodes" in message


@pytest.mark.parametrize(("usages", "why"), [
    ((csrs.USAGE_CLIENT_AUTH, csrs.USAGE_SERVER_AUTH), "'server auth' not allowed"),
    ((csrs.USAGE_DIGITAL_SIGNATURE,), "must include 'client auth'"),
    (("client auth", "code signing"), "'code signing' not allowed"),
])
def test_client_requests_with_other_usages_stay_pending(key_pem: bytes, usages: tuple[str, ...],
                                                        why: str) -> None:
    approve, message = verdict(make_csr(key_pem, usages=usages))
    assert not approve
    assert why in message


def test_a_client_request_with_alt_names_stays_pending(key_pem: bytes) -> None:
    approve, _ = verdict(make_csr(key_pem, dns=("node-a",)))
    assert not approve


def test_client_requests_from_anyone_else_stay_pending(key_pem: bytes) -> None:
    approve, message = verdict(make_csr(key_pem, requester=ADMIN))
    assert not approve
    assert "kubernetes-admin" in message


def test_other_signers_are_left_to_an_administrator(key_pem: bytes) -> None:
    csr = make_csr(key_pem, signer=csrs.KUBE_APISERVER_CLIENT_SIGNER, requester=NODE_A)
    assert not verdict(csr)[0]


# ---------------------------------------------------------------- serving certificates


def serving(key_pem: bytes, **kw: object) -> v1.CertificateSigningRequest:
    args: dict[str, object] = {"signer": csrs.KUBELET_SERVING_SIGNER,
                               "usages": csrs.KUBELET_SERVING_USAGES, "requester": NODE_A,
                               "dns": ("node-a",), "ips": ("10.0.0.5",)}
    args.update(kw)
    return make_csr(key_pem, **args)  # type: ignore[arg-type]


def test_a_nodes_serving_request_for_its_own_addresses_is_approved(key_pem: bytes) -> None:
    approve, message = verdict(serving(key_pem), node())
    assert approve, message


def test_a_serving_request_waits_for_its_node(key_pem: bytes) -> None:
    approve, message = verdict(serving(key_pem))
    assert not approve
    assert "node node-a does not exist" in message


def test_a_serving_request_for_an_address_the_node_lacks_stays_pending(key_pem: bytes) -> None:
    approve, message = verdict(serving(key_pem, ips=("10.0.0.5", "10.0.0.99")), node())
    assert not approve
    assert "10.0.0.99" in message
    assert not verdict(serving(key_pem, dns=("node-b",)), node())[0]


def test_a_serving_request_by_a_bootstrapper_or_another_node_stays_pending(
        key_pem: bytes) -> None:
    assert not verdict(serving(key_pem, requester=BOOTSTRAPPER), node())[0]
    other = ("system:node:node-b", ("system:nodes",))
    assert not verdict(serving(key_pem, requester=other), node())[0]


def test_a_serving_request_needs_server_auth_and_an_address(key_pem: bytes) -> None:
    assert not verdict(serving(key_pem, usages=csrs.KUBELET_CLIENT_USAGES), node())[0]
    assert not verdict(serving(key_pem, dns=(), ips=()), node())[0]


# ---------------------------------------------------------------- the approving controller


async def test_the_approver_writes_approved_auto_approved(key_pem: bytes) -> None:
    client = FakeClient()
    ctx = make_context(client)
    controller = CSRApprovingController(ctx)
    csr = client.put(make_csr(key_pem))
    fill_cache(ctx, csr)
    await controller.reconcile("csr-1")
    written = client.last_status_write(v1.CertificateSigningRequest)
    (approved,) = written.status.conditions
    assert (approved.type, approved.status, approved.reason) == ("Approved", "True",
                                                                 AUTO_APPROVED)
    assert approved.last_update_time
    # Decided requests are not looked at again.
    fill_cache(ctx, written)
    await controller.reconcile("csr-1")
    assert len(client.status_updates) == 1


async def test_the_approver_denies_nothing(key_pem: bytes) -> None:
    client = FakeClient()
    ctx = make_context(client)
    controller = CSRApprovingController(ctx)
    fill_cache(ctx, client.put(make_csr(key_pem, cn="root", orgs=("system:masters",))))
    bad = make_csr(key_pem, name="garbage")
    bad.spec.request = b"not a request"
    fill_cache(ctx, client.put(bad))
    await controller.reconcile("csr-1")
    await controller.reconcile("garbage")
    assert client.status_updates == []


async def test_a_pending_serving_request_is_reviewed_again_when_its_node_changes(
        key_pem: bytes) -> None:
    client = FakeClient()
    ctx = make_context(client)
    controller = CSRApprovingController(ctx)
    deliver(ctx, client.put(serving(key_pem)))
    assert await controller.queue.get() == "csr-1"
    controller.queue.done("csr-1")
    deliver(ctx, node())
    assert await controller.queue.get() == "csr-1"
    controller.queue.done("csr-1")
    await controller.reconcile("csr-1")
    assert csrs.is_approved(client.last_status_write(v1.CertificateSigningRequest))


# ---------------------------------------------------------------- signing


def approved(csr: v1.CertificateSigningRequest) -> v1.CertificateSigningRequest:
    csrs.add_condition(csr, csrs.APPROVED, "AutoApproved", "test")
    return csr


def signer_for(ca: tuple[bytes, bytes], tmp_path: Path, **settings: object
               ) -> tuple[CSRSigningController, FakeClient, ControllerContext]:
    (tmp_path / "ca.crt").write_bytes(ca[0])
    (tmp_path / "ca.key").write_bytes(ca[1])
    client = FakeClient()
    ctx = make_context(client, cluster_signing_cert_file=str(tmp_path / "ca.crt"),
                       cluster_signing_key_file=str(tmp_path / "ca.key"), **settings)
    return CSRSigningController(ctx), client, ctx


async def test_an_approved_kubelet_client_request_is_signed_by_the_ca(
        key_pem: bytes, ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    controller, client, ctx = signer_for(ca, tmp_path)
    fill_cache(ctx, client.put(approved(make_csr(key_pem))))
    await controller.reconcile("csr-1")
    written = client.last_status_write(v1.CertificateSigningRequest)
    assert pki.is_issued_by(written.status.certificate, ca[0])
    assert pki.identity(written.status.certificate) == ("system:node:node-a", ["system:nodes"])
    cert = x509.load_pem_x509_certificate(written.status.certificate)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    lifetime = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=364) < lifetime <= dt.timedelta(days=365)


async def test_expiration_seconds_shortens_the_certificate(
        key_pem: bytes, ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    controller, client, ctx = signer_for(ca, tmp_path, cluster_signing_duration=7200.0)
    fill_cache(ctx, client.put(approved(
        make_csr(key_pem, expiration_seconds=3600))))
    await controller.reconcile("csr-1")
    cert = x509.load_pem_x509_certificate(
        client.last_status_write(v1.CertificateSigningRequest).status.certificate)
    lifetime = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=59) < lifetime <= dt.timedelta(hours=1)


def test_the_signing_duration_is_the_shorter_of_request_and_flag(key_pem: bytes) -> None:
    assert signing_duration(make_csr(key_pem), 100.0) == 100.0
    assert signing_duration(make_csr(key_pem, expiration_seconds=600), 100000.0) == 600.0
    assert signing_duration(make_csr(key_pem, expiration_seconds=9000), 700.0) == 700.0


async def test_pending_denied_and_unknown_signer_requests_are_not_signed(
        key_pem: bytes, ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    controller, client, ctx = signer_for(ca, tmp_path)
    denied = approved(make_csr(key_pem, name="denied"))
    csrs.add_condition(denied, csrs.DENIED, "Nope", "no")
    other = approved(make_csr(key_pem, name="other", signer="example.com/signer"))
    fill_cache(ctx, client.put(make_csr(key_pem, name="pending")),
               client.put(denied), client.put(other))
    for name in ("pending", "denied", "other"):
        await controller.reconcile(name)
    assert client.status_updates == []


async def test_a_request_its_signer_refuses_fails(
        key_pem: bytes, ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    controller, client, ctx = signer_for(ca, tmp_path)
    # An administrator approved it, but the kubelet signer signs only node identities.
    fill_cache(ctx, client.put(approved(
        make_csr(key_pem, cn="root", orgs=("system:masters",)))))
    await controller.reconcile("csr-1")
    written = client.last_status_write(v1.CertificateSigningRequest)
    assert not written.status.certificate
    failed = csrs.condition(written, csrs.FAILED)
    assert failed is not None and failed.reason == SIGNER_VALIDATION_FAILURE
    assert "system:node:<name>" in failed.message


async def test_an_administrator_approved_client_request_is_signed(
        key_pem: bytes, ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    controller, client, ctx = signer_for(ca, tmp_path)
    fill_cache(ctx, client.put(approved(make_csr(
        key_pem, cn="jane", orgs=("developers",), signer=csrs.KUBE_APISERVER_CLIENT_SIGNER,
        usages=(csrs.USAGE_CLIENT_AUTH,), requester=ADMIN))))
    await controller.reconcile("csr-1")
    cert = client.last_status_write(v1.CertificateSigningRequest).status.certificate
    assert pki.identity(cert) == ("jane", ["developers"])


async def test_a_serving_certificate_carries_the_requested_addresses(
        key_pem: bytes, ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    controller, client, ctx = signer_for(ca, tmp_path)
    fill_cache(ctx, client.put(approved(serving(key_pem))))
    await controller.reconcile("csr-1")
    cert = client.last_status_write(v1.CertificateSigningRequest).status.certificate
    assert pki.certificate_sans(cert) == (["node-a"], ["10.0.0.5"])


async def test_without_a_ca_nothing_is_signed(key_pem: bytes) -> None:
    client = FakeClient()
    ctx = make_context(client)
    controller = CSRSigningController(ctx)
    fill_cache(ctx, client.put(approved(make_csr(key_pem))))
    await controller.reconcile("csr-1")
    assert client.status_updates == []


def test_signing_flags_are_checked_at_start(ca: tuple[bytes, bytes], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cert, key = tmp_path / "ca.crt", tmp_path / "ca.key"
    cert.write_bytes(ca[0])
    key.write_bytes(ca[1])
    settings, _ = cm_main.parse_args(["--cluster-signing-cert-file", str(cert),
                                      "--cluster-signing-key-file", str(key),
                                      "--cluster-signing-duration", "720h"])
    assert settings.cluster_signing_duration == 720 * 3600.0
    assert cm_main.parse_args([])[0].cluster_signing_duration == 8760 * 3600.0

    other_key = tmp_path / "other.key"
    other_key.write_bytes(pki.new_rsa_key_pair()[0])
    for argv, message in [
        (["--cluster-signing-cert-file", str(cert)], "give both or neither"),
        (["--cluster-signing-cert-file", str(tmp_path / "missing.crt"),
          "--cluster-signing-key-file", str(key)], "cannot read"),
        (["--cluster-signing-cert-file", str(cert), "--cluster-signing-key-file",
          str(other_key)], "not the key of the certificate"),
    ]:
        with pytest.raises(SystemExit):
            cm_main.parse_args(argv)
        assert message in capsys.readouterr().err
