"""deploy/docker-compose.yml is a valid compose file with the services the design names, and
it and deploy/node-entrypoint.sh run the commands kubelite.components builds (which the
daemons' parsers take: tests/unit/test_components.py), secured with the flags
kubelite.cluster_security derives from `kubelite init`'s files, which the one-shot ``init``
service (deploy/stack_init.py) writes: every file a command names is one it makes. Nodes hold
no CA key: they join with the join volume's bootstrap token. Cluster DNS runs as pods, as in
Kubernetes: the one-shot ``addons`` service applies deploy/addons/dns.yaml and the kubelets give
pods its Service as their nameserver. test_compose_cluster.py runs the stack."""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from apiserver.__main__ import parse_args as parse_apiserver_args
from apiserver.server import ApiServerSettings
from clusterdns.__main__ import parse_args as parse_dns_args
from kubelet.__main__ import parse_args as parse_kubelet_args
from kubelet.runtime.images import expand, lookup
from kubelite.cli.local import build_parser
from kubelite.client.config import load_kubeconfig
from kubelite.cluster_security import apiserver_security, etcd_tls
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
from kubelite.pki import ClusterPki, certificate_sans, first_service_ip

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
ENTRYPOINT = ROOT / "deploy" / "node-entrypoint.sh"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DNS_ADDON = ROOT / "deploy" / "addons" / "dns.yaml"
STACK_INIT = ROOT / "deploy" / "stack_init.py"
DNS_ADDON_IN_IMAGE = "/opt/kubelite/deploy/addons/dns.yaml"
"""Where the image holds dns.yaml (WORKDIR /opt/kubelite) for the addons service to apply."""
SERVER = "apiserver:6443"
NODE = "node"
"""The nodes' service (scaled: `--scale node=N`)."""
NODEPORTS = "nodeports"
"""The proxy whose NodePorts the host reaches."""
ONE_SHOT = {"init", "token", "addons"}
"""Services that do one job and exit (restarted only on failure)."""
CONTROL_PLANE = ("etcd", "apiserver", "scheduler", "controller-manager")
PKI_DIR = "/etc/kubelite"
"""Where the pki volume (`kubelite init`'s data dir, with the CAs' keys) is mounted."""
JOIN_DIR = "/etc/kubelite-join"
"""Where the join volume (what nodes join with) is mounted."""
PKI = ClusterPki(Path(PKI_DIR))
NODE_PORTS = "30000-30019"
"""The API server's node port range in the compose file, which nodeports publishes."""
NODE_IP = "$(hostname -i | cut -d' ' -f1)"
"""How a container's command finds its own address (its first)."""
RUN_AS_PODS: dict[type[Daemon], Path] = {ClusterDns: DNS_ADDON}
"""Daemons no compose service runs: Kubernetes runs cluster DNS as pods, so the stack does too,
from the addon manifest whose image runs the daemon's module on the nodes."""

ETCD = Etcd(name="etcd", data_dir="/var/lib/etcd", client_urls=("https://0.0.0.0:2379",),
            advertise_client_urls=("https://etcd:2379",), peer_url="https://127.0.0.1:2380",
            log_level=None, logger=None, tls=etcd_tls(PKI))
DAEMONS_OF_SERVICES: dict[str, Daemon] = {
    "apiserver": ApiServer(listen="0.0.0.0:6443", etcd_servers="etcd:2379",
                           security=apiserver_security(PKI)),
    "scheduler": Scheduler(server=SERVER, kubeconfig=str(PKI.scheduler_conf)),
    "controller-manager": ControllerManager(
        server=SERVER, kubeconfig=str(PKI.controller_manager_conf),
        cluster_signing_cert_file=str(PKI.ca_cert), cluster_signing_key_file=str(PKI.ca_key),
        root_ca_file=str(PKI.ca_cert)),
}
"""The compose file's control-plane services besides etcd, as specs."""
EXTRA_FLAGS: dict[str, list[str]] = {
    "apiserver": ["--service-node-port-range", NODE_PORTS],
}
"""Flags a service passes beyond its spec's (ApiServer has no node port range field)."""
KUBELET = Kubelet(node_name="$NODE_NAME", address="$NODE_IP", server="$SERVER",
                  root_dir="/var/lib/kubelite/kubelet", stop_pods_on_exit=True)
KUBELET_CREDENTIALS = ["--kubeconfig", "$NODE_DIR/kubelet.conf",
                       "--bootstrap-kubeconfig", "$JOIN_DIR/bootstrap-kubelet.conf",
                       "--cert-dir", "$NODE_DIR/pki"]
"""The kubelet's TLS bootstrap (the last two flags its spec does not have): it writes
--kubeconfig with the certificate the cluster signs."""
PROXY = Proxy(node_name="$NODE_NAME", node_ip="$NODE_IP", server="$SERVER")
PROXY_CREDENTIALS = ["--kubeconfig", "$JOIN_DIR/proxy.conf"]
"""node-entrypoint.sh's commands, as specs (shell variables as values), and the credentials
it adds unless KUBELITE_INSECURE=true."""


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
    assert set(config["volumes"]) == {"etcd-data", "pki", "join"}


def test_nodes_may_mount_but_need_no_privileged_mode() -> None:
    # `privileged` asks for every capability, which an engine running without some refuses.
    node = services()[NODE]
    assert "privileged" not in node
    assert node["cap_add"] == ["SYS_ADMIN"]
    assert set(node["security_opt"]) == {"seccomp=unconfined", "apparmor=unconfined"}
    # Pods' overlay layers cannot be on the container's own overlay root.
    assert node["tmpfs"] == ["/var/lib/kubelite:exec,mode=755"]
    assert KUBELET.root_dir is not None and KUBELET.root_dir.startswith("/var/lib/kubelite/")


def test_the_host_reaches_the_api_and_node_ports_on_loopback(
        initialized: dict[str, Path]) -> None:
    found = services()
    assert found["apiserver"]["ports"] == ["127.0.0.1:6443:6443"]
    assert found[NODEPORTS]["ports"] == [f"127.0.0.1:{NODE_PORTS}:{NODE_PORTS}"]
    # The published ports are the ones the API server hands out.
    apiserver = apiserver_settings(initialized)
    assert apiserver.api.service_node_port_range == NODE_PORTS
    # The nodeports service is a proxy as every node runs, on its container's address.
    command = found[NODEPORTS]["command"]
    assert command[:2] == ["sh", "-c"]
    words = shlex.split(command[2])
    assert words[0] == "exec"
    assert words[1:] == Proxy(node_name=NODEPORTS, node_ip=NODE_IP, server=SERVER,
                              kubeconfig=f"{JOIN_DIR}/proxy.conf").argv()
    assert healthcheck(found[NODEPORTS]) == (
        f'sh -c kubelite health "{NODE_IP}:{Proxy.HEALTH_PORT}"')


def stack_init() -> ModuleType:
    """deploy/stack_init.py, the init service's program, as a module."""
    spec = importlib.util.spec_from_file_location("stack_init", STACK_INIT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_init_runs_first_and_everything_else_waits_for_it() -> None:
    found = services()
    init = found["init"]
    assert "depends_on" not in init  # nothing to wait for: it runs at once
    assert init["volumes"] == [f"pki:{PKI_DIR}", f"join:{JOIN_DIR}", "./.kubelite:/export"]
    args, _ = stack_init().parse_args(init["command"][1:])
    assert args.data_dir == Path(PKI_DIR)
    assert args.join_dir == Path(JOIN_DIR)
    assert args.export == Path("/export/config")
    # The host reaches the API server on the port the apiserver service publishes.
    assert found["apiserver"]["ports"] == [f"{args.host_server}:6443"]
    completed = {"condition": "service_completed_successfully"}
    for name in (*CONTROL_PLANE, NODEPORTS, "token", "addons"):
        assert found[name]["depends_on"]["init"] == completed, name
    # Nodes wait for the join token's Secret, which the token service makes as soon as the
    # API server answers (it waits for it itself).
    assert found[NODE]["depends_on"] == {"token": completed}
    assert found["token"]["depends_on"] == {"init": completed}


def test_the_ca_key_stays_in_the_control_plane() -> None:
    # Nodes (and the host's NodePort proxy) mount the join volume alone, read-only.
    for name, service in services().items():
        volumes = service.get("volumes", [])
        if name in (NODE, NODEPORTS):
            assert volumes == [f"join:{JOIN_DIR}:ro"], name
        elif name != "init":
            assert f"join:{JOIN_DIR}:ro" not in volumes, name
            if name in (*CONTROL_PLANE, "token", "addons"):
                assert f"pki:{PKI_DIR}:ro" in volumes, name


@pytest.fixture(scope="module")
def initialized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """What the init service writes, run here as the compose file runs it: each mount point
    of its volumes -> where it is here."""
    root = tmp_path_factory.mktemp("stack")
    mounts = {PKI_DIR: root / "pki", JOIN_DIR: root / "join", "/export": root / "export"}
    mounts["/export"].mkdir()
    argv = services()["init"]["command"][1:]
    argv += ["--data-dir", str(mounts[PKI_DIR]), "--join-dir", str(mounts[JOIN_DIR]),
             "--export", str(mounts["/export"] / "config")]
    assert stack_init().main(argv) == 0
    return mounts


def apiserver_settings(mounts: dict[str, Path]) -> ApiServerSettings:
    """The apiserver service's settings as its parser reads them (the files it names, which
    the parser reads, where the init service wrote them here)."""
    argv = [str(local_path(mounts, arg)) if arg.startswith(PKI_DIR + "/") else arg
            for arg in services()["apiserver"]["command"][1:]]
    settings, _ = parse_apiserver_args(argv)
    return settings


def local_path(mounts: dict[str, Path], path: str) -> Path:
    for mount, here in mounts.items():
        if path.startswith(mount + "/"):
            return here / path.removeprefix(mount + "/")
    raise AssertionError(f"{path} is in none of {sorted(mounts)}")


def test_every_file_the_stack_names_is_one_init_writes(initialized: dict[str, Path]) -> None:
    text = COMPOSE.read_text() + ENTRYPOINT.read_text().replace("$JOIN_DIR", JOIN_DIR)
    named = set(re.findall(r"(/etc/kubelite(?:-join)?/[\w./-]+)", text))
    assert named, "the stack names no credentials"
    missing = [path for path in sorted(named) if not local_path(initialized, path).exists()]
    assert missing == []
    # Nothing in the join volume can sign: no key but the bootstrap kubeconfig's token.
    join = initialized[JOIN_DIR]
    assert sorted(p.name for p in join.iterdir()) == sorted(stack_init().JOIN_FILES)
    for path in join.iterdir():
        assert b"PRIVATE KEY" not in path.read_bytes() or path.name == "proxy.conf", path


def test_the_certificates_name_what_clients_reach_them_by(
        initialized: dict[str, Path]) -> None:
    pki = ClusterPki(initialized[PKI_DIR])
    dns, ips = certificate_sans(pki.apiserver_cert.read_bytes())
    apiserver = apiserver_settings(initialized)
    # Components by the service's name, the host by the published loopback port, pods by
    # the kubernetes Service's ClusterIP (the first address of the API server's range).
    assert "apiserver" in dns
    assert {"127.0.0.1", first_service_ip(apiserver.api.service_cluster_ip_range)} <= set(ips)
    etcd_dns, _ = certificate_sans(pki.etcd_server_cert.read_bytes())
    assert "etcd" in etcd_dns


def test_nodes_bootstrap_with_the_join_volume(initialized: dict[str, Path]) -> None:
    join = initialized[JOIN_DIR]
    pki = ClusterPki(initialized[PKI_DIR])
    bootstrap = load_kubeconfig(join / "bootstrap-kubelet.conf")
    assert bootstrap.server == SERVER
    assert bootstrap.ca_pem == pki.ca_cert.read_bytes() == (join / "ca.crt").read_bytes()
    assert bootstrap.token == pki.read_bootstrap_token() == (join / "token").read_text().strip()
    assert bootstrap.cert_pem is None
    assert (join / "ca-cert-hash").read_text().strip() == pki.ca_cert_hash()
    assert load_kubeconfig(join / "proxy.conf") == load_kubeconfig(pki.proxy_conf)


def test_the_host_gets_the_admins_kubeconfig(initialized: dict[str, Path]) -> None:
    exported = load_kubeconfig(initialized["/export"] / "config")
    admin = load_kubeconfig(ClusterPki(initialized[PKI_DIR]).admin_conf)
    assert exported.server == "127.0.0.1:6443"
    assert admin.server == SERVER
    assert (exported.ca_pem, exported.cert_pem, exported.key_pem) == (
        admin.ca_pem, admin.cert_pem, admin.key_pem)


def test_the_token_service_makes_the_join_tokens_secret() -> None:
    token = services()["token"]
    assert token["command"][:2] == ["sh", "-c"]
    words = shlex.split(token["command"][2])
    assert words[0] == "exec" and words[-1] == ">/dev/null"  # the token stays out of logs
    assert words[1] == "kubelite"
    parsed = build_parser().parse_args(words[2:-1])
    assert (parsed.command, parsed.token_command) == ("token", "create")
    assert parsed.data_dir == Path(PKI_DIR)
    assert parsed.timeout >= 60  # long enough for the API server to come up
    assert parsed.kubeconfig is None and parsed.token is None  # init's admin.conf and token


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
    assert addons["depends_on"]["apiserver"] == {"condition": "service_healthy"}
    assert addons["command"][:2] == ["sh", "-c"]
    script = addons["command"][2]
    # Retried until it succeeds, as the cluster's admin (klctl's config: admin.conf).
    assert script.startswith(f"until klctl apply -f {DNS_ADDON_IN_IMAGE}; do "), script
    assert addons["environment"] == {"KUBELITE_CONFIG": str(PKI.admin_conf)}


def test_kubelets_give_pods_the_dns_service_as_nameserver(
        initialized: dict[str, Path]) -> None:
    [service] = [document for document in yaml.safe_load_all(DNS_ADDON.read_text())
                 if document["kind"] == "Service"]
    assert (service["metadata"]["name"], service["metadata"]["namespace"]) == (
        "kube-dns", "kube-system")
    cluster_ip = service["spec"]["clusterIP"]
    # The 10th address of the API server's range, as Kubernetes' kube-dns (10.96.0.10).
    apiserver = apiserver_settings(initialized)
    service_range = ipaddress.ip_network(apiserver.api.service_cluster_ip_range)
    assert cluster_ip == str(service_range[10])
    node_args = ["--cluster-dns", cluster_ip, "--cluster-domain", "cluster.local"]
    assert services()[NODE]["command"] == ["kubelite-node", *node_args]
    # The entrypoint hands its arguments to the kubelet ("$@"), which takes them.
    kubelet = Kubelet(node_name="node-1", address="172.18.0.5", server=SERVER,
                      root_dir="/var/lib/kubelite/kubelet", stop_pods_on_exit=True)
    credentials = [flag.replace("$JOIN_DIR", JOIN_DIR).replace("$NODE_DIR", "/var/lib/node")
                   for flag in KUBELET_CREDENTIALS]
    settings, _ = parse_kubelet_args([*kubelet.flags(), *credentials, *node_args])
    assert settings.cluster_dns == (cluster_ip,)
    assert settings.cluster_domain == "cluster.local"
    assert settings.bootstrap_kubeconfig == f"{JOIN_DIR}/bootstrap-kubelet.conf"
    assert settings.cert_dir == "/var/lib/node/pki"


def test_control_plane_services_run_the_specs_commands() -> None:
    found = services()
    assert found["etcd"]["command"] == ETCD.argv()
    # etcd's health with its CA and the client certificate it takes (the API server's).
    assert found["etcd"]["healthcheck"]["test"] == [
        "CMD", "curl", "-fs", "--cacert", str(PKI.etcd_ca_cert),
        "--cert", str(PKI.apiserver_etcd_client_cert),
        "--key", str(PKI.apiserver_etcd_client_key), ETCD.health_url]
    for name, spec in DAEMONS_OF_SERVICES.items():
        assert found[name]["command"] == [*spec.argv(), *EXTRA_FLAGS.get(name, [])], name
        # The API server's health is on its TLS port; the others serve it in plaintext.
        tls = f"--ca-file {PKI.ca_cert} " if name == "apiserver" else ""
        assert healthcheck(found[name]) == f"kubelite health {tls}{spec.health}", name


def entrypoint_command(script: str) -> list[str]:
    """The words of the line of node-entrypoint.sh that runs ``script`` in the background."""
    text = ENTRYPOINT.read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if line.startswith(f"{script} ")]
    assert len(lines) == 1, f"{script}: {lines}"
    words = shlex.split(lines[0])
    assert words[-1] == "&"
    return words[:-1]


def entrypoint_credentials(insecure: bool) -> tuple[list[str], list[str]]:
    """The kubelet's and the proxy's credential flags node-entrypoint.sh picks (the shell runs
    its block; the directories stay variables)."""
    text = ENTRYPOINT.read_text()
    start = text.index('if [ "${KUBELITE_INSECURE')
    block = text[start:text.index("\nfi\n", start) + 4]
    result = subprocess.run(
        ["sh", "-c", block + 'printf "%s\\n" "$kubelet_credentials" "$proxy_credentials"'],
        env={"PATH": "/usr/bin:/bin", "NODE_DIR": "$NODE_DIR", "JOIN_DIR": "$JOIN_DIR",
             "KUBELITE_INSECURE": "true" if insecure else "false"},
        capture_output=True, text=True, check=True)
    kubelet, proxy, _ = result.stdout.split("\n")
    return kubelet.split(), proxy.split()


def test_node_entrypoint_runs_the_specs_commands() -> None:
    assert entrypoint_command(Kubelet.script) == [*KUBELET.argv(), "$kubelet_credentials",
                                                  "$@"]
    assert entrypoint_command(Proxy.script) == [*PROXY.argv(), "$proxy_credentials"]
    assert entrypoint_credentials(insecure=False) == (KUBELET_CREDENTIALS, PROXY_CREDENTIALS)
    assert entrypoint_credentials(insecure=True) == ([], [])
    # Its directories: the join volume's mount, and the node's own credentials outside the
    # pods' tmpfs (kept when the container restarts).
    text = ENTRYPOINT.read_text()
    assert f'JOIN_DIR="${{KUBELITE_JOIN_DIR:-{JOIN_DIR}}}"' in text
    assert 'NODE_DIR="${KUBELITE_NODE_DIR:-/var/lib/kubelite-node}"' in text


def test_node_healthcheck_asks_the_node_daemons_default_health_ports() -> None:
    # The node's daemons serve health on NODE_IP (the container's first address) at their
    # default ports, which the healthcheck asks.
    check = healthcheck(services()[NODE])
    for spec, port in ((KUBELET, Kubelet.HEALTH_PORT), (PROXY, Proxy.HEALTH_PORT)):
        assert spec.health == f"$NODE_IP:{port}"
        assert f'kubelite health "{NODE_IP}:{port}"' in check


# ---------------------------------------------------------------- the insecure override

INSECURE = ROOT / "deploy" / "docker-compose.insecure.yml"
"""For learning only: the same stack with no TLS, authentication or authorization."""


def merged_services(*files: Path) -> dict[str, Any]:
    """The services of the compose files as docker-compose merges them."""
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    args = [arg for path in files for arg in ("-f", str(path))]
    result = subprocess.run([tool, *args, "config"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout)["services"])


def test_the_insecure_override_runs_the_specs_commands_without_credentials() -> None:
    found = merged_services(COMPOSE, INSECURE)
    assert set(found) == set(merged_services(COMPOSE))
    etcd = Etcd(name="etcd", data_dir="/var/lib/etcd", client_urls=("http://0.0.0.0:2379",),
                advertise_client_urls=("http://etcd:2379",), log_level=None, logger=None)
    assert found["etcd"]["command"] == etcd.argv()
    assert found["etcd"]["healthcheck"]["test"] == ["CMD", "curl", "-fs", etcd.health_url]
    plain: dict[str, Daemon] = {
        "apiserver": ApiServer(listen="0.0.0.0:6443", etcd_servers="etcd:2379"),
        "scheduler": Scheduler(server=SERVER),
        "controller-manager": ControllerManager(server=SERVER),
    }
    for name, spec in plain.items():
        assert found[name]["command"] == [*spec.argv(), *EXTRA_FLAGS.get(name, [])], name
        assert healthcheck(found[name]) == f"kubelite health {spec.health}", name
    assert "--insecure" in found["apiserver"]["command"]
    # Nodes run without credentials; klctl's config names the plaintext server.
    assert found[NODE]["environment"] == {"KUBELITE_INSECURE": "true"}
    assert found["token"]["command"] == ["true"]
    assert "--kubeconfig" not in found[NODEPORTS]["command"][2]
    assert found["addons"]["environment"] == {"KUBELITE_CONFIG": "/dev/null",
                                              "KUBELITE_SERVER": SERVER}
    args, rest = stack_init().parse_args(found["init"]["command"][1:])
    assert args.insecure and rest == []
    assert found["apiserver"]["ports"] == [f"{args.host_server}:6443/tcp"]


def test_the_insecure_init_exports_a_plaintext_config(tmp_path: Path) -> None:
    text = INSECURE.read_text()
    command = interpolated(yaml.safe_load(text))["services"]["init"]["command"]
    export = tmp_path / "config"
    assert stack_init().main([*command[1:], "--data-dir", str(tmp_path / "pki"),
                              "--join-dir", str(tmp_path / "join"),
                              "--export", str(export)]) == 0
    assert yaml.safe_load(export.read_text()) == {"server": "127.0.0.1:6443"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]  # no credentials
