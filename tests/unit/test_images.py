"""The process runtime's image catalogue and Kubernetes' command/args and $(VAR) rules."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from kubelet.runtime import images
from kubelet.runtime.interface import RuntimeError_

AGNHOST = [sys.executable, "-m", "kubelet.images.agnhost"]


@pytest.mark.parametrize("image", [
    "busybox", "busybox:1.36", "busybox:latest", "docker.io/library/busybox:1.36",
    "busybox@sha256:" + "a" * 64,
])
def test_busybox_any_tag_defaults_to_sh(image: str) -> None:
    assert images.resolve(image, [], []) == ["sh"]


@pytest.mark.parametrize("image", [
    "kubelite/agnhost", "kubelite/agnhost:2.52", "registry.k8s.io/e2e-test-images/agnhost:2.47",
])
def test_agnhost_entrypoint_and_default_args(image: str) -> None:
    assert images.resolve(image, [], []) == [*AGNHOST, "serve-hostname"]


def test_args_replace_the_default_args_and_keep_the_entrypoint() -> None:
    assert images.resolve("kubelite/agnhost:1", [], ["netexec", "--http-port=8081"]) == [
        *AGNHOST, "netexec", "--http-port=8081"]
    assert images.resolve("busybox", [], ["-c", "true"]) == ["-c", "true"]


def test_command_replaces_the_entrypoint_and_drops_the_default_args() -> None:
    assert images.resolve("kubelite/agnhost", ["python3"], []) == ["python3"]
    assert images.resolve("busybox", ["sh", "-c"], ["echo hi"]) == ["sh", "-c", "echo hi"]


def test_pause_sleeps() -> None:
    argv = images.resolve("kubelite/pause:3.9", [], [])
    assert argv[-1] == "pause" and argv[0] == sys.executable


@pytest.mark.parametrize("image", [
    "kubelite/dns", "kubelite/dns:1.0", "docker.io/kubelite/dns:1.0",
])
def test_dns_runs_the_cluster_dns_package(image: str) -> None:
    assert images.resolve(image, [], []) == [sys.executable, "-m", "clusterdns"]
    assert "PYTHONPATH" in images.image_env(image)


def test_uncatalogued_image_runs_its_command_from_the_host() -> None:
    assert images.resolve("nginx:1.25", ["sleep"], ["5"]) == ["sleep", "5"]


def test_uncatalogued_image_without_command_is_err_image_pull() -> None:
    with pytest.raises(RuntimeError_) as info:
        images.resolve("nginx:1.25", [], ["-g", "daemon off;"])
    assert info.value.reason == "ErrImagePull"
    assert info.value.message == (
        'image "nginx:1.25" cannot run on the process runtime: it is not in the catalogue '
        "(busybox, kubelite/agnhost, kubelite/pause, kubelite/dns) and the container has no "
        "command"
    )


def test_registry_port_is_not_a_tag() -> None:
    assert images.repository("localhost:5000/busybox:1") == "localhost:5000/busybox"
    assert images.lookup("localhost:5000/busybox") is None


@pytest.mark.parametrize("image", [
    "busybox", "busybox:1.36", "registry.k8s.io/busybox", "registry.k8s.io/busybox:1.28",
    "docker.io/library/busybox:latest", "library/busybox", "docker.io/busybox:1.36.1",
])
def test_busybox_spellings_are_the_real_busybox(image: str) -> None:
    known = images.lookup(image)
    assert known is not None and known.name == "busybox" and known.busybox


def test_only_busybox_is_run_by_busybox() -> None:
    assert not any(images.lookup(name).busybox  # type: ignore[union-attr]
                   for name in images.catalogue_names() if name != "busybox")


def test_image_env() -> None:
    # busybox's applets come first, so "sh" is busybox's sh and not the node's.
    assert images.image_env("busybox")["PATH"].split(":")[0] == images.BUSYBOX_BIN
    assert images.image_env("nginx")["PATH"] == images.DEFAULT_PATH
    assert "PYTHONPATH" in images.image_env("kubelite/agnhost:1")


@pytest.mark.parametrize(("text", "expected"), [
    ("$(A)", "a"),
    ("x$(A)y$(B)z", "xaybz"),
    ("$(MISSING)", "$(MISSING)"),
    ("$$(A)", "$(A)"),
    ("$$$(A)", "$a"),
    ("$$", "$"),
    ("$", "$"),
    ("a$", "a$"),
    ("$A", "$A"),
    ("$(A", "$(A"),
    ("$()", "$()"),
    ("$(A)$(A)", "aa"),
    ("$(EMPTY)-", "-"),
    ("no refs", "no refs"),
    ("$(WEIRD.NAME-1)", "w"),
])
def test_expand_as_kubernetes(text: str, expected: str) -> None:
    env = {"A": "a", "B": "b", "EMPTY": "", "WEIRD.NAME-1": "w"}
    assert images.expand(text, env) == expected


def test_built_in_images_name_the_node_paths_they_need(tmp_path: Path) -> None:
    venv_python = tmp_path / "checkout" / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(sys.executable)
    builtins = images.Builtins(str(venv_python), str(tmp_path / "checkout"))
    agnhost = images.lookup("kubelite/agnhost", builtins)
    assert agnhost is not None and agnhost.entrypoint[0] == str(venv_python)
    assert dict(agnhost.env)["PYTHONPATH"] == str(tmp_path / "checkout")
    paths = agnhost.node_paths
    assert str(tmp_path / "checkout" / ".venv") in paths and str(tmp_path / "checkout") in paths
    # and the installation the venv's interpreter links to
    real = os.path.realpath(sys.executable)
    assert os.path.dirname(os.path.dirname(real)) in paths
    assert images.resolve("kubelite/pause", [], [], builtins)[0] == str(venv_python)
