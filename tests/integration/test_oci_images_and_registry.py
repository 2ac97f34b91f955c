"""The test images built with umoci from the node's busybox, and the local registry serving them:
what the images hold, that builds are cached by content, pushes and tags through the registry's
API, skopeo reading them back, and basic auth."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelite.oci_images import (
    BUSYBOX,
    PAUSE,
    TESTSERVER,
    File,
    ImageConfig,
    ImageRecipe,
    OciImage,
    build_busybox_image,
    build_image,
    export_archive,
)
from kubelite.registry import LocalRegistry, LocalRegistrySettings, RegistryCredentials
from kubelite.testing.images import (
    REGISTRY_IMAGES,
    image_registry,
    missing_image_tools,
)

pytestmark = pytest.mark.skipif(bool(missing_image_tools()),
                                reason=f"needs {', '.join(missing_image_tools())}")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, images_dir: Path,
             images: dict[str, OciImage]) -> Iterator[LocalRegistry]:
    with image_registry(Path(tmp_path_factory.mktemp("registry")), images_dir) as registry:
        yield registry


def blob(image: OciImage, digest: str) -> bytes:
    algorithm, _, value = digest.partition(":")
    return (image.layout / "blobs" / algorithm / value).read_bytes()


def manifest(image: OciImage) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(blob(image, image.digest))
    return result


def config(image: OciImage) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(blob(image, manifest(image)["config"]["digest"]))
    return result


def files(image: OciImage) -> dict[str, tarfile.TarInfo]:
    """Every path in the image's layers (later layers win), without the leading ./."""
    found: dict[str, tarfile.TarInfo] = {}
    for layer in manifest(image)["layers"]:
        data = gzip.decompress(blob(image, layer["digest"]))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                found[member.name.removeprefix("./").rstrip("/")] = member
    return found


def read(image: OciImage, path: str) -> bytes:
    for layer in reversed(manifest(image)["layers"]):
        data = gzip.decompress(blob(image, layer["digest"]))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                if member.name.removeprefix("./") == path:
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    return extracted.read()
    raise AssertionError(f"{path} not in {image.reference}")


def test_busybox_image(images: dict[str, OciImage]) -> None:
    image = images[BUSYBOX]
    cfg = config(image)
    assert cfg["os"] == "linux"
    assert cfg["config"]["Cmd"] == ["sh"]
    assert cfg["config"].get("User", "") == ""
    assert any(e.startswith("PATH=") and ":/bin" in e for e in cfg["config"]["Env"])

    paths = files(image)
    assert paths["bin/busybox"].isfile() and paths["bin/busybox"].mode & 0o111
    assert read(image, "bin/busybox") == Path("/bin/busybox").read_bytes()
    for applet in ("sh", "ls", "wget", "httpd", "sleep", "hostname", "nc"):
        assert paths[f"bin/{applet}"].issym() and paths[f"bin/{applet}"].linkname == "busybox"
    assert paths["tmp"].isdir() and paths["tmp"].mode == 0o1777
    assert paths["etc/hostname"].isfile() and paths["etc/hostname"].size == 0
    passwd = {line.split(":")[0]: line.split(":")[2]
              for line in read(image, "etc/passwd").decode().splitlines()}
    assert passwd == {"root": "0", "user": "1000", "nobody": "65534"}
    groups = {line.split(":")[2] for line in read(image, "etc/group").decode().splitlines()}
    assert groups == {"0", "1000", "65534"}
    # Files belong to root in the image, whoever built it.
    assert {m.uid for m in paths.values()} == {0}


def test_pause_image(images: dict[str, OciImage]) -> None:
    image = images[PAUSE]
    entrypoint = config(image)["config"]["Entrypoint"]
    assert entrypoint[-2:] == ["/bin/sleep", "2147483647"] or entrypoint[0] == "/bin/sh"
    paths = files(image)
    for program in entrypoint[:1] + [a for a in entrypoint if a.startswith("/bin/")]:
        assert program.lstrip("/") in paths, program


def test_testserver_image(images: dict[str, OciImage]) -> None:
    image = images[TESTSERVER]
    cfg = config(image)["config"]
    assert cfg["ExposedPorts"] == {"80/tcp": {}}
    assert cfg.get("User", "") == ""
    command = cfg.get("Entrypoint", []) + cfg.get("Cmd", [])
    assert "httpd" in " ".join(command) and "/www" in " ".join(command)
    # Built on busybox: its layer first, shared with the busybox image.
    assert manifest(image)["layers"][0] == manifest(
        OciImage(image.layout.parent / BUSYBOX, "latest"))["layers"][0]
    assert b"kubelite's test server" in read(image, "www/index.html")
    cgi = files(image)["www/cgi-bin/hostname"]
    assert cgi.mode & 0o111
    assert b"hostname" in read(image, "www/cgi-bin/hostname")


def test_builds_are_cached_by_content(tmp_path: Path, images_dir: Path,
                                      images: dict[str, OciImage]) -> None:
    stamp = images[BUSYBOX].layout / "kubelite-recipe"
    before = stamp.stat().st_mtime_ns
    again = build_busybox_image(images_dir)
    assert again == images[BUSYBOX]
    assert stamp.stat().st_mtime_ns == before

    def recipe(text: bytes) -> ImageRecipe:
        return ImageRecipe("note", ({"note": File(text)},), ImageConfig(cmd=("cat", "/note")))

    first = build_image(recipe(b"one"), tmp_path)
    first_digest = first.digest
    assert build_image(recipe(b"one"), tmp_path).digest == first_digest
    second = build_image(recipe(b"two"), tmp_path)
    assert second.layout == first.layout and second.digest != first_digest
    assert read(second, "note") == b"two"
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["note"]


def test_export_archive_for_ctr_import(tmp_path: Path, images: dict[str, OciImage]) -> None:
    archive = export_archive(images[PAUSE], tmp_path / "pause.tar",
                             name="docker.io/kubelite/pause:latest")
    written = archive.stat().st_mtime_ns
    inspected = json.loads(subprocess.run(
        ["skopeo", "--insecure-policy", "inspect", f"oci-archive:{archive}"],
        check=True, capture_output=True).stdout)
    assert inspected["Digest"] == images[PAUSE].digest
    with tarfile.open(archive) as tar:
        index_file = tar.extractfile("index.json")
        assert index_file is not None
        index = json.loads(index_file.read())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == \
        "docker.io/kubelite/pause:latest"
    export_archive(images[PAUSE], archive, name="docker.io/kubelite/pause:latest")
    assert archive.stat().st_mtime_ns == written


def test_registry_serves_the_pushed_images(registry: LocalRegistry,
                                           images: dict[str, OciImage]) -> None:
    for repository, name in REGISTRY_IMAGES.items():
        with urllib.request.urlopen(f"{registry.url}/v2/{repository}/tags/list") as response:
            assert json.loads(response.read()) == {"name": repository,
                                                   "tags": [images[name].tag]}
        inspected = json.loads(subprocess.run(
            ["skopeo", "--insecure-policy", "inspect", "--tls-verify=false",
             f"docker://{registry.reference(repository, images[name].tag)}"],
            check=True, capture_output=True).stdout)
        assert inspected["Digest"] == images[name].digest
    assert registry.tags("library/nginx") == ["latest"]
    assert registry.address.startswith("127.0.0.1:")


def test_registry_push_under_another_tag(registry: LocalRegistry,
                                         images: dict[str, OciImage]) -> None:
    image = images[BUSYBOX]
    reference = registry.push(image.layout, image.tag, "kubelite/busybox", dest_tag="1.35")
    assert reference == f"{registry.address}/kubelite/busybox:1.35"
    assert registry.tags("kubelite/busybox") == ["1.35"]


def test_registry_with_basic_auth(tmp_path: Path, images: dict[str, OciImage]) -> None:
    credentials = RegistryCredentials("puller", "s3cret pass")
    registry = LocalRegistry(LocalRegistrySettings(tmp_path / "reg", credentials=credentials))
    with registry:
        pid = registry.pid
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{registry.url}/v2/")
        assert refused.value.code == 401
        image = images[BUSYBOX]
        reference = registry.push(image.layout, image.tag, "library/busybox")
        assert registry.tags("library/busybox") == ["latest"]
        anonymous = subprocess.run(
            ["skopeo", "--insecure-policy", "inspect", "--tls-verify=false",
             f"docker://{reference}"], capture_output=True)
        assert anonymous.returncode != 0
        authorised = subprocess.run(
            ["skopeo", "--insecure-policy", "inspect", "--tls-verify=false",
             "--creds", "puller:s3cret pass", f"docker://{reference}"], capture_output=True)
        assert authorised.returncode == 0, authorised.stderr
    assert not registry.running()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_bad_credentials_are_refused() -> None:
    with pytest.raises(ValueError, match="registry username 'a:b'"):
        RegistryCredentials("a:b", "x")
    with pytest.raises(ValueError, match="registry password"):
        RegistryCredentials("a", "")
