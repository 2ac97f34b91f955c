"""The flags of a secured cluster's components, from its credentials (`kubelite init`'s
layout): what `kubelite up`, the multi-host harness and the compose stack all run."""

from __future__ import annotations

from kubelite.components import ApiServerSecurity, EtcdTls
from kubelite.pki import ClusterPki


def etcd_tls(pki: ClusterPki) -> EtcdTls:
    return EtcdTls(
        cert_file=str(pki.etcd_server_cert), key_file=str(pki.etcd_server_key),
        trusted_ca_file=str(pki.etcd_ca_cert), client_cert_auth=True,
        peer_cert_file=str(pki.etcd_peer_cert), peer_key_file=str(pki.etcd_peer_key),
        peer_trusted_ca_file=str(pki.etcd_ca_cert), peer_client_cert_auth=True,
    )


def apiserver_security(pki: ClusterPki) -> ApiServerSecurity:
    return ApiServerSecurity(
        tls_cert_file=str(pki.apiserver_cert), tls_private_key_file=str(pki.apiserver_key),
        client_ca_file=str(pki.ca_cert), service_account_key_file=str(pki.sa_pub),
        service_account_signing_key_file=str(pki.sa_key),
        kubelet_client_certificate=str(pki.apiserver_kubelet_client_cert),
        kubelet_client_key=str(pki.apiserver_kubelet_client_key),
        kubelet_certificate_authority=str(pki.ca_cert),
        etcd_cafile=str(pki.etcd_ca_cert), etcd_certfile=str(pki.apiserver_etcd_client_cert),
        etcd_keyfile=str(pki.apiserver_etcd_client_key),
        encryption_provider_config=str(pki.encryption_config),
    )
