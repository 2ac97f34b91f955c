"""ServiceAccount admission (plugin/pkg/admission/serviceaccount): every new pod runs as a
ServiceAccount that exists (``default`` unless it names one) and, unless the pod or its
ServiceAccount opts out with automountServiceAccountToken false, gets the
``kube-api-access-<5 random>`` projected volume (a bound token, the cluster CA, the namespace)
mounted read-only at /var/run/secrets/kubernetes.io/serviceaccount in every container.

A namespace's ``default`` ServiceAccount is made by the controller manager once the namespace
exists, so a pod created right after its namespace (one manifest with both) may come first:
as upstream's plugin, admission looks that one up again for a while (10 lookups, 100-200 ms
apart) before refusing the pod; any other missing ServiceAccount refuses it at once."""

from __future__ import annotations

import asyncio
import random

from apiserver.admission.objects import Sources
from apiserver.admission.plugin import CREATE, Attributes, Plugin
from kubelite.api import meta as m
from protos.v1 import objects_pb2 as v1

DEFAULT_SERVICE_ACCOUNT = "default"
VOLUME_PREFIX = "kube-api-access-"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_EXPIRATION_SECONDS = 3607
"""Kubernetes' WarnOnlyBoundTokenExpirationSeconds: an hour and a few seconds, the few seconds
marking tokens that kubelets refresh."""
DEFAULT_ACCOUNT_LOOKUPS = 10
"""Lookups of a namespace's ``default`` ServiceAccount before a pod running as it is refused
(upstream's ServiceAccount admission makes as many)."""
DEFAULT_ACCOUNT_RETRY_INTERVAL = (0.1, 0.2)
"""Seconds between those lookups: a random time in this range, as upstream's."""
ROOT_CA_CONFIG_MAP = "kube-root-ca.crt"
PROJECTED_DEFAULT_MODE = 0o644


def token_volume_source() -> v1.ProjectedVolumeSource:
    """The projection every automounted pod gets (Kubernetes' TokenVolumeSource)."""
    source = v1.ProjectedVolumeSource(default_mode=PROJECTED_DEFAULT_MODE)
    source.sources.add().service_account_token.CopyFrom(v1.ServiceAccountTokenProjection(
        path="token", expiration_seconds=TOKEN_EXPIRATION_SECONDS,
    ))
    config_map = source.sources.add().config_map
    config_map.name = ROOT_CA_CONFIG_MAP
    config_map.items.add(key="ca.crt", path="ca.crt")
    source.sources.add().downward_api.items.add(
        path="namespace",
        field_ref=v1.ObjectFieldSelector(api_version="v1", field_path="metadata.namespace"),
    )
    return source


def should_automount(service_account: v1.ServiceAccount, pod: v1.Pod) -> bool:
    """The pod's word wins, then the ServiceAccount's; by default, yes."""
    if pod.spec.HasField("automount_service_account_token"):
        return pod.spec.automount_service_account_token
    if service_account.HasField("automount_service_account_token"):
        return service_account.automount_service_account_token
    return True


def mount_token(pod: v1.Pod) -> None:
    """Adds the token volume (once) and its mount to every container without a mount at the
    mount path (a mount there of the pod's own keeps the token out of that container)."""
    name = next(
        (vol.name for vol in pod.spec.volumes if vol.name.startswith(VOLUME_PREFIX)), ""
    ) or m.generated_name(VOLUME_PREFIX)
    needed = False
    for container in (*pod.spec.init_containers, *pod.spec.containers):
        if any(mount.mount_path == MOUNT_PATH for mount in container.volume_mounts):
            continue
        container.volume_mounts.add(name=name, read_only=True, mount_path=MOUNT_PATH)
        needed = True
    if needed and not any(vol.name == name for vol in pod.spec.volumes):
        pod.spec.volumes.add(name=name, projected=token_volume_source())


class ServiceAccountAdmission(Plugin):
    name = "ServiceAccount"

    def __init__(self, sources: Sources, *, default_lookups: int = DEFAULT_ACCOUNT_LOOKUPS,
                 retry_interval: tuple[float, float] = DEFAULT_ACCOUNT_RETRY_INTERVAL) -> None:
        self.service_accounts = sources.store("serviceaccounts")
        self.default_lookups = default_lookups
        self.retry_interval = retry_interval

    async def admit(self, a: Attributes) -> None:
        if a.operation != CREATE or a.subresource or not isinstance(a.obj, v1.Pod):
            return
        pod = a.obj
        # serviceAccount is the deprecated name of serviceAccountName; they say the same.
        if not pod.spec.service_account_name:
            pod.spec.service_account_name = pod.spec.service_account or DEFAULT_SERVICE_ACCOUNT
        pod.spec.service_account = pod.spec.service_account_name
        name = pod.spec.service_account_name
        service_account = await self._service_account(a.namespace, name)
        if service_account is None:
            raise a.forbidden(
                f"error looking up service account {a.namespace}/{name}:"
                f' serviceaccount "{name}" not found'
            )
        if should_automount(service_account, pod):
            mount_token(pod)
        if not pod.spec.image_pull_secrets:
            pod.spec.image_pull_secrets.extend(service_account.image_pull_secrets)

    async def _service_account(self, namespace: str, name: str) -> v1.ServiceAccount | None:
        """The ServiceAccount, or None when it does not exist (for ``default``, after it was
        looked up ``default_lookups`` times: its controller may be about to make it)."""
        lookups = self.default_lookups if name == DEFAULT_SERVICE_ACCOUNT else 1
        for attempt in range(max(lookups, 1)):
            if attempt:
                await asyncio.sleep(random.uniform(*self.retry_interval))
            found = await self.service_accounts.get(namespace, name)
            if isinstance(found, v1.ServiceAccount):
                return found
        return None
