"""Registry credentials from a pod's imagePullSecrets (kubernetes.io/dockerconfigjson and the
older kubernetes.io/dockercfg), as the kubelet's credential keyring reads them."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import structlog

from kubelet.runtime.interface import RegistryAuth
from kubelite.api.errors import NotFound
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CFG = "kubernetes.io/dockercfg"


def auths_of(secret: v1.Secret) -> list[RegistryAuth]:
    """The registries and credentials one Secret holds; ValueError naming the key when its
    content is not a docker config."""
    if secret.type == DOCKER_CONFIG_JSON:
        key = ".dockerconfigjson"
    elif secret.type == DOCKER_CFG:
        key = ".dockercfg"
    else:
        raise ValueError(f"type is {secret.type!r}, not {DOCKER_CONFIG_JSON!r}")
    try:
        document: Any = json.loads(secret.data[key])
    except (KeyError, ValueError) as e:
        raise ValueError(f"data[{key}] is not a docker config: {e}") from e
    entries: Any = document.get("auths", {}) if key == ".dockerconfigjson" else document
    if not isinstance(entries, Mapping):
        raise ValueError(f"data[{key}]: auths must be an object")
    result = []
    for server, entry in entries.items():
        if not isinstance(entry, Mapping):
            continue
        username, password = str(entry.get("username", "")), str(entry.get("password", ""))
        auth = str(entry.get("auth", ""))
        if auth and not username:
            try:
                username, _, password = base64.b64decode(auth).decode().partition(":")
            except ValueError as e:
                raise ValueError(f"data[{key}]: auth of {server!r} is not base64: {e}") from e
        result.append(RegistryAuth(server=str(server), username=username, password=password,
                                   auth=auth))
    return result


def registry_host(server: str) -> str:
    """The host[:port] a docker config key names (it may be a URL with a path)."""
    host = server.split("://", 1)[-1]
    return host.split("/", 1)[0]


def image_registry(image: str) -> str:
    """The registry an image reference pulls from, as Kubernetes normalises it."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def matching(auths: list[RegistryAuth], image: str) -> list[RegistryAuth]:
    """The credentials whose registry is the image's (docker.io also answers to
    index.docker.io, as in docker config files)."""
    wanted = image_registry(image)
    aliases = {wanted}
    if wanted == "docker.io":
        aliases |= {"index.docker.io", "registry-1.docker.io"}
    return [a for a in auths if registry_host(a.server) in aliases]


async def pull_credentials(client: ApiClient, pod: v1.Pod) -> tuple[list[RegistryAuth], str]:
    """Every credential of the pod's imagePullSecrets, and a warning for those that are
    missing or unreadable (the pull is still tried, as Kubernetes does)."""
    auths: list[RegistryAuth] = []
    problems = []
    for ref in pod.spec.image_pull_secrets:
        try:
            secret = await client.get(v1.Secret, ref.name, pod.metadata.namespace)
            auths.extend(auths_of(secret))
        except NotFound:
            problems.append(f'secret "{ref.name}" not found')
        except ValueError as e:
            problems.append(f'secret "{ref.name}": {e}')
    warning = ""
    if problems:
        warning = ("Unable to retrieve some image pull secrets (" + "; ".join(problems)
                   + "); attempting to pull the image may not succeed.")
    return auths, warning
