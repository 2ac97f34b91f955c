"""Projected volumes: one source each, unique relative paths, token lifetimes, modes, and
the defaults Kubernetes gives them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kubelite.api.convert import from_dict
from kubelite.api.defaults import apply_defaults
from kubelite.api.field_errors import ErrorType
from kubelite.api.validation import validate
from protos.v1 import objects_pb2 as v1
from tests.unit.validation.support import VALID, At, Expect, exactly, make_pod

INVALID, REQUIRED, FORBIDDEN = ErrorType.INVALID, ErrorType.REQUIRED, ErrorType.FORBIDDEN
VOL = "spec.volumes[0].projected"


def _api_access(source: v1.ProjectedVolumeSource) -> None:
    """The kube-api-access volume the ServiceAccount admission adds to pods."""
    source.sources.add().service_account_token.CopyFrom(
        v1.ServiceAccountTokenProjection(path="token", expiration_seconds=3607))
    cm = source.sources.add().config_map
    cm.name = "kube-root-ca.crt"
    cm.items.add(key="ca.crt", path="ca.crt")
    ns = source.sources.add().downward_api.items.add(path="namespace")
    ns.field_ref.field_path = "metadata.namespace"


def _pod(mutate: Callable[[v1.ProjectedVolumeSource], object]) -> v1.Pod:
    def add(pod: v1.Pod) -> None:
        vol = pod.spec.volumes.add(name="kube-api-access-x2x9d")
        vol.projected.SetInParent()
        mutate(vol.projected)
        pod.spec.containers[0].volume_mounts.add(
            name="kube-api-access-x2x9d", read_only=True,
            mount_path="/var/run/secrets/kubernetes.io/serviceaccount")
    return make_pod(add)


def _then(*steps: Callable[[v1.ProjectedVolumeSource], object]
          ) -> Callable[[v1.ProjectedVolumeSource], None]:
    def mutate(source: v1.ProjectedVolumeSource) -> None:
        for step in steps:
            step(source)
    return mutate


def _token(**fields: object) -> Callable[[v1.ProjectedVolumeSource], None]:
    def mutate(source: v1.ProjectedVolumeSource) -> None:
        source.sources.add().service_account_token.CopyFrom(
            v1.ServiceAccountTokenProjection(**fields))  # type: ignore[arg-type]
    return mutate


def _secret(name: str, *paths: str) -> Callable[[v1.ProjectedVolumeSource], None]:
    def mutate(source: v1.ProjectedVolumeSource) -> None:
        secret = source.sources.add().secret
        secret.name = name
        for path in paths:
            secret.items.add(key=path.replace("/", "-") or "k", path=path)
    return mutate


def _two_in_one(source: v1.ProjectedVolumeSource) -> None:
    both = source.sources.add()
    both.secret.name = "a"
    both.config_map.name = "b"


def _empty_source(source: v1.ProjectedVolumeSource) -> None:
    source.sources.add()


def _mode(mode: int) -> Callable[[v1.ProjectedVolumeSource], None]:
    def mutate(source: v1.ProjectedVolumeSource) -> None:
        source.default_mode = mode
    return mutate


@pytest.mark.parametrize(("mutate", "expect"), [
    pytest.param(_api_access, VALID, id="kube-api-access"),
    pytest.param(_token(path="token", expiration_seconds=600), VALID, id="ten-minutes"),
    pytest.param(_token(path="token", expiration_seconds=599), exactly(
        (INVALID, f"{VOL}.sources[0].serviceAccountToken.expirationSeconds"), at=(At(
            f"{VOL}.sources[0].serviceAccountToken.expirationSeconds",
            text=f"{VOL}.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 599:"
                 " may not specify a duration less than 10 minutes"),)), id="short-token"),
    pytest.param(_token(path="token", expiration_seconds=2**32 + 1), exactly(
        (INVALID, f"{VOL}.sources[0].serviceAccountToken.expirationSeconds"), at=(At(
            f"{VOL}.sources[0].serviceAccountToken.expirationSeconds",
            detail="may not specify a duration larger than 2^32 seconds"),)), id="long-token"),
    pytest.param(_token(expiration_seconds=3600), exactly(
        (REQUIRED, f"{VOL}.sources[0].serviceAccountToken.path")), id="token-path"),
    pytest.param(_token(path="../token"), exactly(
        (INVALID, f"{VOL}.sources[0].serviceAccountToken.path"), at=(At(
            f"{VOL}.sources[0].serviceAccountToken.path", detail="must not contain '..'"),)),
        id="token-escapes"),
    pytest.param(_token(path="/token"), exactly(
        (INVALID, f"{VOL}.sources[0].serviceAccountToken.path")), id="token-absolute"),
    pytest.param(_two_in_one, exactly((FORBIDDEN, f"{VOL}.sources[0]"), at=(At(
        f"{VOL}.sources[0]", detail="may not specify more than 1 volume type per source"),)),
        id="two-in-one-source"),
    pytest.param(_empty_source, exactly((REQUIRED, f"{VOL}.sources[0]"), at=(At(
        f"{VOL}.sources[0]", detail="must specify one of: secret, configMap, downwardAPI,"
                                    " serviceAccountToken"),)), id="empty-source"),
    pytest.param(_then(_api_access, _secret("extra", "ca.crt")), exactly(
        (INVALID, f"{VOL}.sources[3].secret.items[0].path"), at=(At(
            f"{VOL}.sources[3].secret.items[0].path",
            text=f'{VOL}.sources[3].secret.items[0].path: Invalid value: "ca.crt": conflicting'
                 " duplicate paths"),)), id="duplicate-path"),
    pytest.param(_then(_api_access, _token(path="namespace")), exactly(
        (INVALID, f"{VOL}.sources[3].serviceAccountToken.path")), id="token-duplicates-file"),
    pytest.param(_secret("", "a/../../b"), exactly(
        (REQUIRED, f"{VOL}.sources[0].secret.name"),
        (INVALID, f"{VOL}.sources[0].secret.items[0].path")), id="secret-name-and-path"),
    pytest.param(_mode(0o1000), exactly((INVALID, f"{VOL}.defaultMode")), id="mode"),
])
def test_projected_volumes(mutate: Callable[[v1.ProjectedVolumeSource], object],
                           expect: Expect) -> None:
    expect.check(validate(_pod(mutate)))


def test_downward_api_items_are_checked_in_projections() -> None:
    def bad(source: v1.ProjectedVolumeSource) -> None:
        item = source.sources.add().downward_api.items.add(path="labels")
        item.field_ref.field_path = "spec.nodeName"
    exactly((ErrorType.NOT_SUPPORTED,
             f"{VOL}.sources[0].downwardAPI.items[0].fieldRef.fieldPath")).check(
        validate(_pod(bad)))


def test_projected_defaults() -> None:
    pod = _pod(_then(_token(path="vault-token"), _api_access))
    projected = pod.spec.volumes[0].projected
    assert not pod.spec.volumes[0].HasField("empty_dir")  # a source, not "no source"
    assert projected.default_mode == 0o644
    assert projected.sources[0].service_account_token.expiration_seconds == 3600
    assert projected.sources[1].service_account_token.expiration_seconds == 3607
    assert projected.sources[3].downward_api.items[0].field_ref.api_version == "v1"
    assert validate(pod) == []


def test_projected_volume_from_a_manifest() -> None:
    _, pod = from_dict({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "volumeMounts": [
                {"name": "all-in-one", "mountPath": "/projected", "readOnly": True}]}],
            "volumes": [{"name": "all-in-one", "projected": {"sources": [
                {"secret": {"name": "user", "items": [{"key": "username", "path": "my-user"}]}},
                {"configMap": {"name": "settings"}},
                {"serviceAccountToken": {"audience": "vault", "path": "vault-token",
                                         "expirationSeconds": 7200}}]}}],
        },
    })
    apply_defaults(pod)
    assert validate(pod) == []
