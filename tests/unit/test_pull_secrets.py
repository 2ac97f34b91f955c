"""imagePullSecrets become registry credentials for the image's registry."""

from __future__ import annotations

import base64
import json

import pytest

from kubelet.pull_secrets import auths_of, image_registry, matching
from kubelet.runtime.interface import RegistryAuth
from protos.v1 import objects_pb2 as v1


def docker_secret(auths: dict[str, dict[str, str]]) -> v1.Secret:
    s = v1.Secret(type="kubernetes.io/dockerconfigjson")
    s.data[".dockerconfigjson"] = json.dumps({"auths": auths}).encode()
    return s


def test_username_and_password_come_from_auth_when_not_given() -> None:
    token = base64.b64encode(b"alice:s3cret").decode()
    [auth] = auths_of(docker_secret({"127.0.0.1:5000": {"auth": token}}))
    assert (auth.server, auth.username, auth.password) == ("127.0.0.1:5000", "alice", "s3cret")


def test_a_secret_of_another_type_or_content_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="not 'kubernetes.io/dockerconfigjson'"):
        auths_of(v1.Secret(type="Opaque"))
    broken = v1.Secret(type="kubernetes.io/dockerconfigjson")
    broken.data[".dockerconfigjson"] = b"{nope"
    with pytest.raises(ValueError, match=r"data\[.dockerconfigjson\]"):
        auths_of(broken)


@pytest.mark.parametrize(("image", "registry"), [
    ("nginx", "docker.io"), ("library/nginx:1.25", "docker.io"),
    ("127.0.0.1:5000/app:v1", "127.0.0.1:5000"), ("registry.k8s.io/pause:3.9", "registry.k8s.io"),
    ("localhost/x", "localhost"),
])
def test_image_registry(image: str, registry: str) -> None:
    assert image_registry(image) == registry


def test_only_the_images_registry_credentials_are_used() -> None:
    auths = [RegistryAuth("https://index.docker.io/v1/", "a", "b"),
             RegistryAuth("127.0.0.1:5000", "c", "d")]
    assert [a.username for a in matching(auths, "nginx")] == ["a"]
    assert [a.username for a in matching(auths, "127.0.0.1:5000/app")] == ["c"]
