"""deploy/docker-compose.yml is a valid compose file with the services the design names, and
it and deploy/node-entrypoint.sh run the commands kubelite.components builds (which the
daemons' parsers take: tests/unit/test_components.py). Cluster DNS runs as pods, as in
Kubernetes: the one-shot ``addons`` service applies deploy/addons/dns.yaml and the kubelets give
pods its Service as their nameserver. test_compose_cluster.py runs the stack."""

from __future__ import annotations

import ipaddress
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from apiserver.__main__ import parse_args as parse_apiserver_args
from clusterdns.__main__ import parse_args as parse_dns_args
from kubelet.__main__ import parse_args as parse_kubelet_args
from kubelet.runtime.images import expand, lookup
from kubelite.components import (
    DAEMONS,
    ApiServer,
    ClusterDns,
    ControllerManager,
    Daemon,
    Etcd,
    Kubelet,
    Proxy,
    Scheduler,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
ENTRYPOINT = ROOT / "deploy" / "node-entrypoint.sh"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DNS_ADDON = ROOT / "deploy" / "addons" / "dns.yaml"
DNS_ADDON_IN_IMAGE = "/opt/kubelite/deploy/addons/dns.yaml"
"""Where the image holds dns.yaml (WORKDIR /opt/kubelite) for the addons service to apply."""
SERVER = "apiserver:6443"
NODE = "node"
"""The nodes' service (scaled: `--scale node=N`)."""
NODEPORTS = "nodeports"
"""The proxy whose NodePorts the host reaches."""
ONE_SHOT = {"addons", "client-config"}
"""Services that do one job and exit (restarted only on failure)."""
CONTROL_PLANE = ("etcd", "apiserver", "scheduler", "controller-manager")
NODE_PORTS = "30000-30019"
"""The API server's node port range in the compose file, which nodeports publishes."""
NODE_IP = "$(hostname -i | cut -d' ' -f1)"
"""How a container's command finds its own address (its first)."""
RUN_AS_PODS: dict[type[Daemon], Path] = {ClusterDns: DNS_ADDON}
"""Daemons no compose service runs: Kubernetes runs cluster DNS as pods, so the stack does too,
from the addon manifest whose image runs the daemon's module on the nodes."""

ETCD = Etcd(name="etcd", data_dir="/var/lib/etcd", client_urls=("http://0.0.0.0:2379",),
            advertise_client_urls=("http://etcd:2379",), log_level=None, logger=None)
DAEMONS_OF_SERVICES: dict[str, Daemon] = {
    "apiserver": ApiServer(listen="0.0.0.0:6443", etcd_servers="etcd:2379"),
    "scheduler": Scheduler(server=SERVER),
    "controller-manager": ControllerManager(server=SERVER),
}
"""The compose file's control-plane services besides etcd, as specs."""
EXTRA_FLAGS: dict[str, list[str]] = {
    "apiserver": ["--service-node-port-range", NODE_PORTS],
}
"""Flags a service passes beyond its spec's (ApiServer has no node port range field)."""
KUBELET = Kubelet(node_name="$NODE_NAME", address="$NODE_IP", server="$SERVER",
                  root_dir="/var/lib/kubelite/kubelet", stop_pods_on_exit=True)
PROXY = Proxy(node_name="$NODE_NAME", node_ip="$NODE_IP", server="$SERVER")
"""node-entrypoint.sh's commands, as specs (shell variables as values)."""


def services() -> dict[str, Any]:
    """The compose file's services with its variables at their defaults, as compose reads
    them (``${VAR:-default}`` is the default, ``$$`` a ``$``)."""
    return dict(interpolated(yaml.safe_load(COMPOSE.read_text()))["services"])


VARIABLE = re.compile(r"\$\$|\$\{(\w+):-([^}]*)\}")


def interpolated(value: Any) -> Any:
    if isinstance(value, str):
        return VARIABLE.sub(lambda m: "$" if m.group(0) == "$$" else m.group(2), value)
    if isinstance(value, dict):
        return {key: interpolated(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolated(item) for item in value]
    return value


def healthcheck(service: dict[str, Any]) -> str:
    return " ".join(service["healthcheck"]["test"][1:])


def test_compose_file_is_valid() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    result = subprocess.run([tool, "-f", str(COMPOSE), "config"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {*CONTROL_PLANE, NODE, NODEPORTS, *ONE_SHOT}
    for name, service in services.items():
        restart = "on-failure" if name in ONE_SHOT else "unless-stopped"
        assert service.get("restart") == restart, name
    for name in (*CONTROL_PLANE, NODE, NODEPORTS):
        assert "healthcheck" in services[name], name
    assert services[NODE]["scale"] == 3
    assert config["volumes"] == {"etcd-data": {}}


def test_nodes_may_mount_but_need_no_privileged_mode() -> None:
    # `privileged` asks for every capability, which an engine running without some refuses.
    node = services()[NODE]
    assert "privileged" not in node
    assert node["cap_add"] == ["SYS_ADMIN"]
    assert set(node["security_opt"]) == {"seccomp=unconfined", "apparmor=unconfined"}
    # Pods' overlay layers cannot be on the container's own overlay root.
    assert node["tmpfs"] == ["/var/lib/kubelite:exec,mode=755"]
    assert KUBELET.root_dir is not None and KUBELET.root_dir.startswith("/var/lib/kubelite/")


def test_the_host_reaches_the_api_and_node_ports_on_loopback() -> None:
    found = services()
    assert found["apiserver"]["ports"] == ["127.0.0.1:6443:6443"]
    assert found[NODEPORTS]["ports"] == [f"127.0.0.1:{NODE_PORTS}:{NODE_PORTS}"]
    # The published ports are the ones the API server hands out.
    apiserver, _ = parse_apiserver_args(found["apiserver"]["command"][1:])
    assert apiserver.api.service_node_port_range == NODE_PORTS
    # The nodeports service is a proxy as every node runs, on its container's address.
    command = found[NODEPORTS]["command"]
    assert command[:2] == ["sh", "-c"]
    words = shlex.split(command[2])
    assert words[0] == "exec"
    assert words[1:] == Proxy(node_name=NODEPORTS, node_ip=NODE_IP, server=SERVER).argv()
    assert healthcheck(found[NODEPORTS]) == (
        f'sh -c kubelite health "{NODE_IP}:{Proxy.HEALTH_PORT}"')


def test_the_stack_exports_klctls_config_first() -> None:
    config = services()["client-config"]
    assert "depends_on" not in config  # nothing to wait for: it runs at once
    assert config["volumes"] == ["./.kubelite:/export"]
    assert config["environment"] == {"API_PORT": "6443"}
    script = config["command"][2]
    assert script == "printf '{\"server\": \"127.0.0.1:%s\"}\\n' \"$API_PORT\" > /export/config"


def test_every_console_script_the_compose_file_runs_exists() -> None:
    text = COMPOSE.read_text() + ENTRYPOINT.read_text()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for daemon in DAEMONS:
        assert scripts.get(daemon.script) == f"{daemon.module}.__main__:main", (
            f"{daemon.script} is not the console script of {daemon.module}")
        if daemon in RUN_AS_PODS:
            continue  # test_daemons_run_as_pods_run_through_their_image
        assert daemon.script in text, f"no compose service runs {daemon.script}"


def test_daemons_run_as_pods_run_through_their_image() -> None:
    # On the nodes' process runtime an image is a program of the node: the addon's image is
    # the one that runs the daemon's module.
    for daemon, manifest in RUN_AS_PODS.items():
        image = lookup(container_of(manifest)["image"])
        assert image is not None, manifest
        assert image.entrypoint[1:] == ("-m", daemon.module), manifest


def test_dns_pods_serve_on_their_pod_ip() -> None:
    # The kubelet expands $(POD_IP) from the env the manifest takes from status.podIP; the
    # server finds the API server by the kubernetes Service's env the kubelet gives pods.
    dns = container_of(DNS_ADDON)
    [pod_ip_env] = [env for env in dns["env"] if env["name"] == "POD_IP"]
    assert pod_ip_env["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    pod_ip = "172.18.0.5"
    args = [expand(arg, {"POD_IP": pod_ip}) for arg in dns["args"]]
    _, settings, _ = parse_dns_args(args)
    assert (settings.listen_address, settings.port) == (pod_ip, ClusterDns.PORT)
    assert settings.health_address == f"{pod_ip}:{ClusterDns.HEALTH_PORT}"


def container_of(manifest: Path) -> dict[str, Any]:
    """The one container of the manifest's Deployment."""
    [deployment] = [document for document in yaml.safe_load_all(manifest.read_text())
                    if document["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_the_image_holds_every_package_and_the_addons() -> None:
    dockerfile = DOCKERFILE.read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    for package in (pattern.rstrip("*") for pattern in packages):
        assert f"COPY {package} ./{package}\n" in dockerfile, package
    assert "WORKDIR /opt/kubelite\n" in dockerfile
    assert "COPY deploy/addons ./deploy/addons\n" in dockerfile


def test_the_addons_service_applies_the_dns_addon_once_the_api_server_is_up() -> None:
    addons = services()["addons"]
    assert addons["depends_on"] == {"apiserver": {"condition": "service_healthy"}}
    assert addons["command"][:2] == ["sh", "-c"]
    script = addons["command"][2]
    # Retried until it succeeds; klctl finds the API server by KUBELITE_SERVER.
    assert script.startswith(f"until klctl apply -f {DNS_ADDON_IN_IMAGE}; do "), script
    assert addons["environment"]["KUBELITE_SERVER"] == SERVER


def test_kubelets_give_pods_the_dns_service_as_nameserver() -> None:
    [service] = [document for document in yaml.safe_load_all(DNS_ADDON.read_text())
                 if document["kind"] == "Service"]
    assert (service["metadata"]["name"], service["metadata"]["namespace"]) == (
        "kube-dns", "kube-system")
    cluster_ip = service["spec"]["clusterIP"]
    # The 10th address of the API server's range, as Kubernetes' kube-dns (10.96.0.10).
    apiserver, _ = parse_apiserver_args(services()["apiserver"]["command"][1:])
    service_range = ipaddress.ip_network(apiserver.api.service_cluster_ip_range)
    assert cluster_ip == str(service_range[10])
    node_args = ["--cluster-dns", cluster_ip, "--cluster-domain", "cluster.local"]
    assert services()[NODE]["command"] == ["kubelite-node", *node_args]
    # The entrypoint hands its arguments to the kubelet ("$@"), which takes them.
    kubelet = Kubelet(node_name="node-1", address="172.18.0.5", server=SERVER,
                      root_dir="/var/lib/kubelite/kubelet", stop_pods_on_exit=True)
    settings, _ = parse_kubelet_args([*kubelet.flags(), *node_args])
    assert settings.cluster_dns == (cluster_ip,)
    assert settings.cluster_domain == "cluster.local"


def test_control_plane_services_run_the_specs_commands() -> None:
    found = services()
    assert found["etcd"]["command"] == ETCD.argv()
    assert found["etcd"]["healthcheck"]["test"] == ["CMD", "curl", "-fs", ETCD.health_url]
    for name, spec in DAEMONS_OF_SERVICES.items():
        assert found[name]["command"] == [*spec.argv(), *EXTRA_FLAGS.get(name, [])], name
        assert healthcheck(found[name]) == f"kubelite health {spec.health}", name


def entrypoint_command(script: str) -> list[str]:
    """The words of the line of node-entrypoint.sh that runs ``script`` in the background."""
    text = ENTRYPOINT.read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if line.startswith(f"{script} ")]
    assert len(lines) == 1, f"{script}: {lines}"
    words = shlex.split(lines[0])
    assert words[-1] == "&"
    return words[:-1]


def test_node_entrypoint_runs_the_specs_commands() -> None:
    assert entrypoint_command(Kubelet.script) == [*KUBELET.argv(), "$@"]
    assert entrypoint_command(Proxy.script) == PROXY.argv()


def test_node_healthcheck_asks_the_node_daemons_default_health_ports() -> None:
    # The node's daemons serve health on NODE_IP (the container's first address) at their
    # default ports, which the healthcheck asks.
    check = healthcheck(services()[NODE])
    for spec, port in ((KUBELET, Kubelet.HEALTH_PORT), (PROXY, Proxy.HEALTH_PORT)):
        assert spec.health == f"$NODE_IP:{port}"
        assert f'kubelite health "{NODE_IP}:{port}"' in check
