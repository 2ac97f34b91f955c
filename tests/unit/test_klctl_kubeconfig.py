"""klctl's config resolution with kubeconfig files, and `klctl config`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kubelite import pki
from kubelite.cli.config import (
    ConfigError,
    resolve_client_config,
    resolve_server,
    write_config,
)
from kubelite.cli.klctl import main
from kubelite.client.config import ClientConfig, kubeconfig_data, write_kubeconfig


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return pki.new_ca("kubernetes")


@pytest.fixture
def kubeconfig(tmp_path: Path, ca: tuple[bytes, bytes]) -> Path:
    cert, key = pki.issue(ca[0], ca[1], "kubernetes-admin", ["system:masters"], client=True)
    data = kubeconfig_data(cluster="kubelite", server="10.0.0.1:6443", ca_pem=ca[0],
                           user="kubernetes-admin", cert_pem=cert, key_pem=key)
    data["users"].append({"name": "bot", "user": {"token": "abc.def"}})
    data["contexts"].append({"name": "bot", "context": {"cluster": "kubelite", "user": "bot",
                                                        "namespace": "jobs"}})
    path = tmp_path / "kube" / "config"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


def test_resolution_order(tmp_path: Path, kubeconfig: Path, ca: tuple[bytes, bytes]) -> None:
    env = {"KUBELITE_CONFIG": str(kubeconfig)}
    r = resolve_client_config(env=env)
    assert r.config.server == "10.0.0.1:6443" and r.config.ca_pem == ca[0]
    assert r.config.cert_pem is not None
    assert (r.source, r.path, r.context) == (str(kubeconfig), kubeconfig,
                                             "kubernetes-admin@kubelite")

    bot = resolve_client_config(context_flag="bot", env=env)
    assert bot.config.token == "abc.def" and bot.config.namespace == "jobs"
    assert bot.context == "bot"

    # --server and $KUBELITE_SERVER replace only the address; the credentials stay
    moved = resolve_client_config(server_flag="127.0.0.1:7000", env=env)
    assert moved.config.server == "127.0.0.1:7000" and moved.source == "--server"
    assert moved.config.cert_pem == r.config.cert_pem
    from_env = resolve_client_config(env={**env, "KUBELITE_SERVER": "https://h:1"})
    assert from_env.config.server == "h:1" and from_env.source == "$KUBELITE_SERVER"
    assert from_env.config.ca_pem == ca[0]

    # --kubeconfig wins over $KUBELITE_CONFIG
    legacy = write_config(tmp_path / "legacy", "127.0.0.1:6000")
    flagged = resolve_client_config(kubeconfig_flag=str(kubeconfig),
                                    env={"KUBELITE_CONFIG": str(legacy)})
    assert flagged.config.server == "10.0.0.1:6443"
    plain = resolve_client_config(env={"KUBELITE_CONFIG": str(legacy)})
    assert plain.config == ClientConfig("127.0.0.1:6000") and plain.path is None
    assert resolve_server(env={"KUBELITE_CONFIG": str(kubeconfig)}).address == "10.0.0.1:6443"

    nothing = resolve_client_config(env={"KUBELITE_CONFIG": str(tmp_path / "absent")})
    assert nothing.config == ClientConfig("127.0.0.1:6443") and nothing.source == "default"


def test_resolution_errors(tmp_path: Path, kubeconfig: Path) -> None:
    with pytest.raises(ConfigError, match="--kubeconfig: .* does not exist"):
        resolve_client_config(kubeconfig_flag=str(tmp_path / "absent"))
    legacy = write_config(tmp_path / "legacy", "127.0.0.1:6000")
    with pytest.raises(ConfigError, match="--context: .* is not a kubeconfig"):
        resolve_client_config(kubeconfig_flag=str(legacy), context_flag="x")
    with pytest.raises(ConfigError, match="context: no context named 'x'"):
        resolve_client_config(kubeconfig_flag=str(kubeconfig), context_flag="x")


def test_write_config_replaces_a_kubeconfig(kubeconfig: Path) -> None:
    write_config(kubeconfig, "127.0.0.1:6000")
    assert json.loads(kubeconfig.read_text()) == {"server": "127.0.0.1:6000"}


def test_klctl_config_commands(kubeconfig: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flag = ["--kubeconfig", str(kubeconfig)]
    assert main(["config", "current-context", *flag]) == 0
    assert capsys.readouterr().out == "kubernetes-admin@kubelite\n"

    assert main(["config", "view", *flag]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["clusters"][0]["cluster"]["certificate-authority-data"] == "DATA+OMITTED"
    assert shown["users"][0]["user"]["client-key-data"] == "DATA+OMITTED"
    assert shown["users"][1]["user"]["token"] == "REDACTED"

    assert main(["config", "view", "--raw", "--minify", "--context", "bot", *flag]) == 0
    minified = yaml.safe_load(capsys.readouterr().out)
    assert [u["name"] for u in minified["users"]] == ["bot"]
    assert minified["users"][0]["user"]["token"] == "abc.def"

    assert main(["config", "get-contexts", *flag]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]
    assert lines[1].split() == ["*", "kubernetes-admin@kubelite", "kubelite",
                                "kubernetes-admin"]
    assert lines[2].split() == ["bot", "kubelite", "bot", "jobs"]

    assert main(["config", "use-context", "bot", *flag]) == 0
    assert capsys.readouterr().out == 'Switched to context "bot".\n'
    assert yaml.safe_load(kubeconfig.read_text())["current-context"] == "bot"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600

    assert main(["config", "use-context", "nope", *flag]) == 1
    assert capsys.readouterr().err == 'error: no context exists with the name: "nope"\n'
    assert main(["config", "frobnicate", *flag]) == 1
    assert 'unknown config command "frobnicate"' in capsys.readouterr().err


def test_klctl_reports_a_broken_kubeconfig(tmp_path: Path, ca: tuple[bytes, bytes],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = write_kubeconfig(tmp_path / "c", cluster="c", server="h:1", ca_pem=ca[0],
                            user="u", token="t")
    data = yaml.safe_load(path.read_text())
    data["clusters"][0]["cluster"]["certificate-authority-data"] = "%%%"
    path.write_text(yaml.safe_dump(data))
    assert main(["get", "pods", "--kubeconfig", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"error: kubeconfig {path}: clusters[0].cluster.certificate-authority-data: not valid"
        " base64\n")
