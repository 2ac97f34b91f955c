"""containerd's config.toml as ContainerdProcess writes it: CRI's sandbox image, registry
mirrors (plain HTTP ones too), CNI directories, and listeners of its own so containerds run
side by side."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from kubelite.containerd_process import (
    CAP_SYS_RESOURCE,
    CRI_PLUGIN,
    ContainerdSettings,
    apparmor_enabled,
    has_capability,
    render_config,
    toml_text,
)


def parsed(settings: ContainerdSettings, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("snapshotter", "overlayfs")
    return tomllib.loads(render_config(settings, **kwargs))


def cri(config: dict[str, Any]) -> dict[str, Any]:
    plugin: dict[str, Any] = config["plugins"][CRI_PLUGIN]
    return plugin


def test_paths_listeners_and_cri_plugin(tmp_path: Path) -> None:
    settings = ContainerdSettings.under(tmp_path, sandbox_image="docker.io/kubelite/pause:3")
    config = parsed(settings)

    assert config["version"] == 2
    assert config["root"] == str(tmp_path / "root")
    assert config["state"] == str(tmp_path / "state")
    assert config["grpc"]["address"] == str(tmp_path / "containerd.sock")
    assert config["ttrpc"]["address"] == str(tmp_path / "containerd.sock.ttrpc")
    assert config["debug"]["address"] == ""
    assert config["metrics"]["address"] == ""
    assert config["grpc"]["tcp_address"] == ""
    assert config["required_plugins"] == [CRI_PLUGIN]
    assert config["plugins"]["io.containerd.internal.v1.opt"]["path"] == str(
        tmp_path / "root" / "opt")

    plugin = cri(config)
    assert plugin["sandbox_image"] == "docker.io/kubelite/pause:3"
    assert plugin["stream_server_address"] == "127.0.0.1"
    assert plugin["stream_server_port"] == "0"
    assert plugin["netns_mounts_under_state_dir"] is True
    assert plugin["disable_tcp_service"] is True
    assert plugin["containerd"]["snapshotter"] == "overlayfs"
    assert plugin["containerd"]["default_runtime_name"] == "runc"
    runc = plugin["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"] == {"SystemdCgroup": False, "Root": str(tmp_path / "state" / "runc")}
    assert "image_pull_progress_timeout" not in plugin


def test_cni_directories(tmp_path: Path) -> None:
    settings = ContainerdSettings.under(
        tmp_path, cni_bin_dir=Path("/opt/cni/bin"), cni_conf_dir=tmp_path / "cni" / "conf",
        cni_max_conf_num=2)
    assert cri(parsed(settings))["cni"] == {
        "bin_dir": "/opt/cni/bin", "conf_dir": str(tmp_path / "cni" / "conf"),
        "max_conf_num": 2}
    assert cri(parsed(ContainerdSettings.under(tmp_path)))["cni"]["bin_dir"] == "/usr/lib/cni"
    assert cri(parsed(ContainerdSettings.under(tmp_path)))["cni"]["conf_dir"] == str(
        tmp_path / "net.d")


def test_registry_mirrors_plain_http_and_insecure_registries(tmp_path: Path) -> None:
    settings = ContainerdSettings.under(
        tmp_path,
        registry_mirrors={"docker.io": ["http://127.0.0.1:5000", "https://mirror.test"],
                          "quay.io": ["https://quay-mirror.test:8443"]},
        insecure_registries=["mirror.test", "quay-mirror.test:8443"])
    registry = cri(parsed(settings))["registry"]

    assert registry["mirrors"]["docker.io"]["endpoint"] == [
        "http://127.0.0.1:5000", "https://mirror.test"]
    assert registry["mirrors"]["quay.io"]["endpoint"] == ["https://quay-mirror.test:8443"]
    # A plain-HTTP endpoint's own host is reached over plain HTTP too.
    assert registry["mirrors"]["127.0.0.1:5000"]["endpoint"] == ["http://127.0.0.1:5000"]
    assert "mirror.test" not in registry["mirrors"]
    assert registry["configs"] == {
        "mirror.test": {"tls": {"insecure_skip_verify": True}},
        "quay-mirror.test:8443": {"tls": {"insecure_skip_verify": True}},
    }


def test_an_explicit_mirror_of_the_http_host_is_kept(tmp_path: Path) -> None:
    settings = ContainerdSettings.under(tmp_path, registry_mirrors={
        "docker.io": ["http://127.0.0.1:5000"],
        "127.0.0.1:5000": ["http://127.0.0.1:6000"]})
    mirrors = cri(parsed(settings))["registry"]["mirrors"]
    assert mirrors["127.0.0.1:5000"]["endpoint"] == ["http://127.0.0.1:6000"]


def test_snapshotter_cgroups_apparmor_and_pull_progress(tmp_path: Path) -> None:
    settings = ContainerdSettings.under(
        tmp_path, snapshotter="native", systemd_cgroup=True, cgroup_path="/kubelite/node-1",
        disable_apparmor=False, image_pull_progress_timeout=90.0, log_level="debug")
    config = tomllib.loads(render_config(settings))
    plugin = cri(config)
    assert plugin["containerd"]["snapshotter"] == "native"
    assert plugin["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert config["cgroup"]["path"] == "/kubelite/node-1"
    assert plugin["disable_apparmor"] is False
    assert plugin["image_pull_progress_timeout"] == "90s"
    assert config["debug"]["level"] == "debug"

    detected = cri(parsed(ContainerdSettings.under(tmp_path)))
    assert detected["disable_apparmor"] is (not apparmor_enabled())
    assert detected["restrict_oom_score_adj"] is (not has_capability(CAP_SYS_RESOURCE))
    assert cri(parsed(ContainerdSettings.under(tmp_path, restrict_oom_score_adj=True)))[
        "restrict_oom_score_adj"] is True
    assert cri(parsed(ContainerdSettings.under(tmp_path), restrict_oom_score_adj=False))[
        "restrict_oom_score_adj"] is False
    assert cri(parsed(ContainerdSettings.under(tmp_path), disable_apparmor=True))[
        "disable_apparmor"] is True


def test_two_containerds_share_no_path_or_listener(tmp_path: Path) -> None:
    a = parsed(ContainerdSettings.under(tmp_path / "a"))
    b = parsed(ContainerdSettings.under(tmp_path / "b"))
    for key in ("root", "state"):
        assert a[key] != b[key]
    assert a["grpc"]["address"] != b["grpc"]["address"]
    assert a["ttrpc"]["address"] != b["ttrpc"]["address"]
    assert cri(a)["cni"]["conf_dir"] != cri(b)["cni"]["conf_dir"]
    runc_a = cri(a)["containerd"]["runtimes"]["runc"]["options"]["Root"]
    runc_b = cri(b)["containerd"]["runtimes"]["runc"]["options"]["Root"]
    assert runc_a != runc_b


@pytest.mark.parametrize(("overrides", "message"), [
    ({"snapshotter": "zfs"}, "snapshotter: 'zfs' is not one of auto, overlayfs, native"),
    ({"socket": Path("/tmp/" + "x" * 120)}, "socket: "),
    ({"cni_max_conf_num": 0}, "cni_max_conf_num: 0 must be 1 or more"),
    ({"log_level": "loud"}, "log_level: 'loud' is not one of trace, debug, info"),
    ({"stream_server_port": 70000}, "stream_server_port: 70000 is not a port"),
    ({"registry_mirrors": {"docker.io": "http://127.0.0.1:5000"}},
     "registry_mirrors['docker.io']: must be a non-empty list"),
    ({"registry_mirrors": {"docker.io": ["127.0.0.1:5000"]}},
     "registry_mirrors['docker.io']: '127.0.0.1:5000' is not an http:// or https:// URL"),
    ({"registry_mirrors": {"docker.io/library": ["http://127.0.0.1:5000"]}},
     "registry_mirrors: 'docker.io/library' is not a registry host"),
    ({"image_pull_progress_timeout": 0.0}, "image_pull_progress_timeout: 0.0 must be positive"),
])
def test_bad_settings_name_the_field(tmp_path: Path, overrides: dict[str, Any],
                                     message: str) -> None:
    with pytest.raises(ValueError) as error:
        ContainerdSettings.under(tmp_path, **overrides)
    assert message in str(error.value)


def test_toml_text_quotes_keys_and_strings() -> None:
    table = {
        "a": 'say "hi" \\ there\n', "n": 3, "f": 0.5, "on": True, "list": ["x", "y\"z"],
        "t": {"dotted.key": {"k": "v"}, "empty": {}, "plain_key-1": {"x": 1}},
    }
    assert tomllib.loads(toml_text(table)) == table
