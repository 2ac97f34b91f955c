"""Client configs: kubeconfig files as kubectl reads them, the in-cluster config, and the
rules of ClientConfig."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelite import pki
from kubelite.client.config import (
    ClientConfig,
    ConfigError,
    in_cluster_config,
    load_kubeconfig,
    normalize_server,
    write_kubeconfig,
)


@pytest.fixture(scope="module")
def creds() -> dict[str, bytes]:
    ca, ca_key = pki.new_ca("kubernetes")
    cert, key = pki.issue(ca, ca_key, "alice", ["devs"], client=True)
    return {"ca": ca, "cert": cert, "key": key}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(creds: dict[str, bytes], **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "prod", "cluster": {"server": "https://10.0.0.1:6443",
                                         "certificate-authority-data": b64(creds["ca"])}},
            {"name": "dev", "cluster": {"server": "http://127.0.0.1:8080"}},
        ],
        "users": [
            {"name": "alice", "user": {"client-certificate-data": b64(creds["cert"]),
                                       "client-key-data": b64(creds["key"])}},
            {"name": "bot", "user": {"token": "abc.def"}},
        ],
        "contexts": [
            {"name": "alice@prod", "context": {"cluster": "prod", "user": "alice",
                                               "namespace": "team"}},
            {"name": "bot@prod", "context": {"cluster": "prod", "user": "bot"}},
            {"name": "dev", "context": {"cluster": "dev"}},
        ],
        "current-context": "alice@prod",
    }
    data.update(overrides)
    return data


def write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_current_context_with_inline_data(tmp_path: Path, creds: dict[str, bytes]) -> None:
    config = load_kubeconfig(write(tmp_path / "config", kubeconfig(creds)))
    assert config == ClientConfig(server="10.0.0.1:6443", ca_pem=creds["ca"],
                                  cert_pem=creds["cert"], key_pem=creds["key"],
                                  namespace="team")
    assert config.secure


def test_named_contexts(tmp_path: Path, creds: dict[str, bytes]) -> None:
    path = write(tmp_path / "config", kubeconfig(creds))
    bot = load_kubeconfig(path, "bot@prod")
    assert bot.token == "abc.def" and bot.cert_pem is None and bot.current_token() == "abc.def"
    dev = load_kubeconfig(path, context="dev")
    assert dev == ClientConfig("127.0.0.1:8080") and not dev.secure


def test_files_are_relative_to_the_kubeconfig(tmp_path: Path, creds: dict[str, bytes]) -> None:
    (tmp_path / "certs").mkdir()
    for name in ("ca", "cert", "key"):
        (tmp_path / "certs" / f"{name}.pem").write_bytes(creds[name])
    (tmp_path / "certs" / "token").write_text("from-file\n")
    data = kubeconfig(creds)
    data["clusters"][0]["cluster"] = {"server": "https://api:6443",
                                      "certificate-authority": "certs/ca.pem",
                                      "tls-server-name": "kubernetes"}
    data["users"][0]["user"] = {"client-certificate": "certs/cert.pem",
                                "client-key": str(tmp_path / "certs" / "key.pem")}
    data["users"][1]["user"] = {"tokenFile": "certs/token"}
    path = write(tmp_path / "config", data)
    alice = load_kubeconfig(path)
    assert (alice.ca_pem, alice.cert_pem, alice.key_pem) == (creds["ca"], creds["cert"],
                                                             creds["key"])
    assert alice.server == "api:6443" and alice.server_name == "kubernetes"
    bot = load_kubeconfig(path, "bot@prod")
    assert bot.token_file == str(tmp_path / "certs" / "token")
    assert bot.current_token() == "from-file"


def _error(tmp_path: Path, data: object, context: str | None = None) -> str:
    path = write(tmp_path / "config", data)
    with pytest.raises(ConfigError) as failed:
        load_kubeconfig(path, context)
    message = str(failed.value)
    assert message.startswith(f"kubeconfig {path}: "), message
    return message.removeprefix(f"kubeconfig {path}: ")


def test_errors_name_the_field(tmp_path: Path, creds: dict[str, bytes]) -> None:
    def with_cluster(**cluster: Any) -> dict[str, Any]:
        data = kubeconfig(creds)
        data["clusters"][0]["cluster"] = cluster
        return data

    def with_user(**user: Any) -> dict[str, Any]:
        data = kubeconfig(creds)
        data["users"][0]["user"] = user
        return data

    ca = b64(creds["ca"])
    cases: list[tuple[object, str | None, str]] = [
        (kubeconfig(creds, **{"current-context": ""}), None,
         "current-context: not set (choose a context with --context)"),
        (kubeconfig(creds), "nope", "context: no context named 'nope' in contexts"),
        (kubeconfig(creds, kind="Pod"), None, "kind: must be \"Config\", not 'Pod'"),
        (kubeconfig(creds, contexts="x"), None, "contexts: must be a list"),
        (kubeconfig(creds, contexts=[{"context": {}}]), None, "contexts[0].name: required"),
        (with_cluster(**{"certificate-authority-data": ca}), None,
         "clusters[0].cluster.server: required (https://host:port)"),
        (with_cluster(server="https://h:1"), None,
         "clusters[0].cluster.certificate-authority: required for an https server"),
        (with_cluster(server="https://h:1", **{"certificate-authority-data": "%%%"}), None,
         "clusters[0].cluster.certificate-authority-data: not valid base64"),
        (with_cluster(server="https://h:1", **{"certificate-authority-data": b64(b"junk")}),
         None, "clusters[0].cluster.certificate-authority: not a PEM certificate"),
        (with_cluster(server="https://h:1", **{"certificate-authority": "missing.pem"}), None,
         "clusters[0].cluster.certificate-authority: cannot read"),
        (with_cluster(server="https://h:1", **{"certificate-authority": "a",
                                               "certificate-authority-data": ca}), None,
         "clusters[0].cluster.certificate-authority: give either certificate-authority or"),
        (with_cluster(server="unix:///sock", **{"certificate-authority-data": ca}), None,
         "clusters[0].cluster.server: scheme 'unix' is not supported"),
        (with_cluster(server="https://h:1", **{"insecure-skip-tls-verify": True}), None,
         "clusters[0].cluster.insecure-skip-tls-verify: not supported"),
        (with_user(**{"client-certificate-data": b64(creds["cert"])}), None,
         "users[0].user.client-key: required with client-certificate"),
        (with_user(**{"client-key-data": b64(creds["cert"])}), None,
         "users[0].user.client-key: not an unencrypted PEM private key"),
        (with_user(token=5), None, "users[0].user.token: must be a string"),
        (kubeconfig(creds, contexts=[{"name": "x", "context": {"cluster": "prod",
                                                               "user": "carol"}}],
                    **{"current-context": "x"}), None,
         "contexts[0].context.user: no user named 'carol' in users"),
        (kubeconfig(creds, contexts=[{"name": "x", "context": {"cluster": "dev",
                                                               "user": "bot"}}],
                    **{"current-context": "x"}), None,
         "users[1].user: credentials are only sent over TLS"),
    ]
    for data, context, expected in cases:
        message = _error(tmp_path, data, context)
        assert message.startswith(expected), (expected, message)
    path = write(tmp_path / "config", ["a", "list"])
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_kubeconfig(path)
    with pytest.raises(ConfigError, match="file does not exist"):
        load_kubeconfig(tmp_path / "absent")


def test_write_kubeconfig_round_trip(tmp_path: Path, creds: dict[str, bytes]) -> None:
    path = write_kubeconfig(tmp_path / "sub" / "admin.conf", cluster="c", server="h:6443",
                            ca_pem=creds["ca"], user="alice", cert_pem=creds["cert"],
                            key_pem=creds["key"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = yaml.safe_load(path.read_text())
    assert data["clusters"][0]["cluster"]["server"] == "https://h:6443"
    assert data["current-context"] == "alice@c"
    assert load_kubeconfig(path) == ClientConfig("h:6443", creds["ca"], creds["cert"],
                                                 creds["key"])
    token_path = write_kubeconfig(tmp_path / "bot.conf", cluster="c", server="https://h:1",
                                  ca_pem=creds["ca"], user="bot", token="t.t",
                                  context="ctx", namespace="ns")
    assert load_kubeconfig(token_path) == ClientConfig("h:1", creds["ca"], token="t.t",
                                                       namespace="ns")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bot.conf", "sub"]  # no temp files


def test_in_cluster(tmp_path: Path, creds: dict[str, bytes]) -> None:
    (tmp_path / "ca.crt").write_bytes(creds["ca"])
    (tmp_path / "token").write_text("first")
    (tmp_path / "namespace").write_text("apps")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    config = in_cluster_config(env, tmp_path)
    assert config.server == "10.96.0.1:443" and config.ca_pem == creds["ca"]
    assert config.namespace == "apps" and config.token is None
    assert config.current_token() == "first"
    (tmp_path / "token").write_text("second")  # rotated by the kubelet
    assert config.current_token() == "second"
    v6 = in_cluster_config({"KUBERNETES_SERVICE_HOST": "fd00::1",
                            "KUBERNETES_SERVICE_PORT": "443"}, tmp_path)
    assert v6.server == "[fd00::1]:443"

    with pytest.raises(ConfigError, match=r"\$KUBERNETES_SERVICE_HOST and"
                                          r" \$KUBERNETES_SERVICE_PORT must be set"):
        in_cluster_config({}, tmp_path)
    (tmp_path / "token").write_text("")
    with pytest.raises(ConfigError, match="token file .* is empty"):
        in_cluster_config(env, tmp_path)
    (tmp_path / "token").unlink()
    with pytest.raises(ConfigError, match="token: no such file"):
        in_cluster_config(env, tmp_path)
    with pytest.raises(ConfigError, match="ca.crt"):
        in_cluster_config(env, tmp_path / "absent")


def test_client_config_rules(creds: dict[str, bytes]) -> None:
    with pytest.raises(ConfigError, match="credentials are only sent over TLS"):
        ClientConfig("h:1", token="t")
    with pytest.raises(ConfigError, match="needs its key"):
        ClientConfig("h:1", ca_pem=creds["ca"], cert_pem=creds["cert"])
    assert "key" not in repr(ClientConfig("h:1", creds["ca"], creds["cert"], b"SECRET"))
    assert "abc" not in repr(ClientConfig("h:1", creds["ca"], token="abc"))


@pytest.mark.parametrize(("given", "expected"), [
    ("https://h:6443", "h:6443"), ("https://h", "h:443"), ("http://h", "h:80"),
    ("h:1", "h:1"), ("https://[::1]:6443/", "[::1]:6443"), ("https://[::1]", "[::1]:443"),
    ("https://h:6443/some/path", "h:6443"),
])
def test_normalize_server(given: str, expected: str) -> None:
    assert normalize_server(given) == expected


def test_other_grpc_targets_are_kept() -> None:
    assert normalize_server("unix:///run/api.sock") == "unix:///run/api.sock"
    assert normalize_server("unix:/run/api.sock") == "unix:/run/api.sock"  # gRPC's short form
    assert ClientConfig("dns:///api:6443").server == "dns:///api:6443"
    with pytest.raises(ConfigError, match="expected https://host:port"):
        normalize_server("https://")
