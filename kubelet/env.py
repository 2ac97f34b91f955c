"""A container's environment, resolved as the kubelet does (makeEnvironmentVariables).

Order of precedence, lowest first: Service variables, envFrom sources, env entries; values of
env entries may refer to earlier variables as $(NAME). A missing ConfigMap, Secret or key is a
CreateContainerConfigError unless marked optional.
"""

from __future__ import annotations

from collections.abc import Mapping

from kubelet.errors import config_error
from kubelet.runtime.images import expand
from kubelite.api.errors import NotFound
from kubelite.api.names import is_env_var_name
from kubelite.api.quantity import parse_quantity
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1


def field_value(pod: v1.Pod, path: str) -> str:
    """A downward API fieldRef value."""
    meta = pod.metadata
    simple = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace,
        "metadata.uid": meta.uid,
        "spec.nodeName": pod.spec.node_name,
        "spec.serviceAccountName": pod.spec.service_account_name,
        "status.hostIP": pod.status.host_ip,
        "status.podIP": pod.status.pod_ip,
        "status.podIPs": ",".join(ip.ip for ip in pod.status.pod_ips) or pod.status.pod_ip,
        "status.hostIPs": pod.status.host_ip,
    }
    if path in simple:
        return simple[path]
    for prefix, source in (
        ("metadata.labels", meta.labels),
        ("metadata.annotations", meta.annotations),
    ):
        if path == prefix:
            return "\n".join(f'{k}="{v}"' for k, v in sorted(source.items()))
        if path.startswith(prefix + "['") and path.endswith("']"):
            return source.get(path[len(prefix) + 2 : -2], "")
    raise config_error(f"unsupported fieldRef fieldPath {path!r}")


def resource_value(
    pod: v1.Pod,
    selector: v1.ResourceFieldSelector,
    default_container: str,
    node_allocatable: Mapping[str, str],
) -> str:
    """A downward API resourceFieldRef value (limits fall back to node allocatable)."""
    name = selector.container_name or default_container
    container = next((c for c in pod.spec.containers if c.name == name), None)
    if container is None:
        raise config_error(f"resourceFieldRef names unknown container {name!r}")
    kind, _, resource = selector.resource.partition(".")
    source = container.resources.limits if kind == "limits" else container.resources.requests
    raw = source.get(resource) or (node_allocatable.get(resource, "0") if kind == "limits" else "0")
    value = parse_quantity(raw)
    divisor = parse_quantity(selector.divisor or "1")
    if divisor.is_zero():
        raise config_error("resourceFieldRef divisor must not be zero")
    # Kubernetes rounds up: 250m cpu with divisor 1 is "1".
    amount = value.amount / divisor.amount
    return str(-((-amount.numerator) // amount.denominator))


MAX_HOSTNAME_LENGTH = 63


def pod_hostname(pod: v1.Pod) -> str:
    """The pod's host name as the kubelet gives it (GeneratePodHostNameAndDomain):
    spec.hostname when set, else the pod's name, cut to 63 characters."""
    name = pod.spec.hostname or pod.metadata.name
    if len(name) > MAX_HOSTNAME_LENGTH:
        name = name[:MAX_HOSTNAME_LENGTH].rstrip("-.")
    return name


class EnvResolver:
    def __init__(self, client: ApiClient, node_allocatable: Mapping[str, str]) -> None:
        self.client = client
        self.node_allocatable = node_allocatable

    async def _configmap(self, namespace: str, name: str, optional: bool) -> v1.ConfigMap | None:
        try:
            return await self.client.get(v1.ConfigMap, name, namespace)
        except NotFound:
            if optional:
                return None
            raise config_error(f'configmap "{name}" not found') from None

    async def _secret(self, namespace: str, name: str, optional: bool) -> v1.Secret | None:
        try:
            return await self.client.get(v1.Secret, name, namespace)
        except NotFound:
            if optional:
                return None
            raise config_error(f'secret "{name}" not found') from None

    async def resolve(
        self, pod: v1.Pod, container: v1.Container, service_env: Mapping[str, str] = {}
    ) -> dict[str, str]:
        namespace = pod.metadata.namespace
        # KUBELITE_POD_IP: where a pod should bind, since pods share the host's network
        # namespace: its own address from the node's podCIDR, or the node's (the built-in test
        # image binds it). PATH is the image's, as in Kubernetes (the runtime sets it).
        env: dict[str, str] = {
            "HOSTNAME": pod_hostname(pod),
            "KUBELITE_POD_IP": pod.status.pod_ip,
        }
        env.update(service_env)
        for source in container.env_from:
            values: Mapping[str, str] = {}
            if source.HasField("config_map_ref"):
                ref = source.config_map_ref
                cm = await self._configmap(namespace, ref.name, ref.optional)
                values = dict(cm.data) if cm else {}
            elif source.HasField("secret_ref"):
                sref = source.secret_ref
                secret = await self._secret(namespace, sref.name, sref.optional)
                values = (
                    {k: v.decode(errors="replace") for k, v in secret.data.items()}
                    if secret
                    else {}
                )
            for key, value in values.items():
                name = source.prefix + key
                if not is_env_var_name(name):  # Kubernetes skips invalid names (with an event)
                    env[name] = value
        for var in container.env:
            if not var.HasField("value_from"):
                env[var.name] = expand(var.value, env)
                continue
            src = var.value_from
            if src.HasField("field_ref"):
                env[var.name] = field_value(pod, src.field_ref.field_path)
            elif src.HasField("resource_field_ref"):
                env[var.name] = resource_value(
                    pod, src.resource_field_ref, container.name, self.node_allocatable
                )
            elif src.HasField("config_map_key_ref"):
                cm_key = src.config_map_key_ref
                cm = await self._configmap(namespace, cm_key.name, cm_key.optional)
                if cm is not None and cm_key.key in cm.data:
                    env[var.name] = cm.data[cm_key.key]
                elif cm is not None and not cm_key.optional:
                    raise config_error(
                        f"couldn't find key {cm_key.key} in ConfigMap {namespace}/{cm_key.name}"
                    )
            elif src.HasField("secret_key_ref"):
                secret_key = src.secret_key_ref
                secret = await self._secret(namespace, secret_key.name, secret_key.optional)
                if secret is not None and secret_key.key in secret.data:
                    env[var.name] = secret.data[secret_key.key].decode(errors="replace")
                elif secret is not None and not secret_key.optional:
                    raise config_error(
                        f"couldn't find key {secret_key.key} in Secret"
                        f" {namespace}/{secret_key.name}"
                    )
        return env
