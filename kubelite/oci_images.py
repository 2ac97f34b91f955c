"""Container images for the containerd runtime, built on the node without a container engine or
network: OCI image layouts made with umoci from the node's busybox (Debian's busybox-static)
and, where installed, Debian's tini-static as the signal-handling init; exported to archives
with skopeo for ``ctr images import``.

Three images from busybox: ``busybox`` (as docker.io/library/busybox), ``pause`` (the pod
sandbox) and ``testserver`` (an HTTP server on port 80 built on busybox, pushed by the tests as
library/nginx and kubelite/testserver). Three run kubelite's Python code, built from the node's
own interpreter and installed packages (copied, never compiled or downloaded): ``python``
(busybox, the interpreter with its standard library, shared libraries and kubelite's runtime
dependencies, and kubelite's packages), ``agnhost`` (the test server) and ``dns`` (the cluster
DNS server) on it, tagged :data:`PYTHON_IMAGES_TAG`. Each builder writes ``OUT_DIR/<name>``
once per content: the recipe's hash (files, their sources' bytes, the image config) is kept in
the layout, so a second call with the same inputs returns at once, and an edit to kubelite's
sources rebuilds only the layer holding them.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

BUSYBOX_BINARY = "/bin/busybox"
"""Debian's busybox-static installs the static busybox here."""
TINI_BINARY = "/usr/bin/tini-static"
"""Debian's tini package installs its static build here."""
AUTO = "auto"
"""``tini=AUTO``: use :data:`TINI_BINARY` where it exists, else build the image without it."""
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH in the images' config, as docker.io/library/busybox sets it."""
SLEEP_FOREVER = "2147483647"
"""Seconds the pause image sleeps: the largest a signed 32-bit sleep accepts (68 years)."""
STAMP = "kubelite-recipe"
"""File in a built layout holding its recipe's hash (OCI tools ignore unknown files)."""
RECIPE_FORMAT = "1"
"""Changes when the way recipes become layouts changes, so old caches are rebuilt."""

BUSYBOX = "busybox"
PAUSE = "pause"
TESTSERVER = "testserver"


class ImageBuildError(RuntimeError):
    """A tool the build needs is missing or failed; the message says which and why."""


# -- what goes into an image -------------------------------------------------------------------


@dataclass(frozen=True)
class Dir:
    mode: int = 0o755


@dataclass(frozen=True)
class File:
    data: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class Copy:
    """A file copied from the node; its bytes are part of the recipe's hash."""

    source: str
    mode: int = 0o755


@dataclass(frozen=True)
class Symlink:
    target: str


Entry = Dir | File | Copy | Symlink
Layer = Mapping[str, Entry]
"""Paths relative to the image's root, each with what to put there."""


@dataclass(frozen=True)
class ImageConfig:
    """The parts of the OCI image config the images set."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = (f"PATH={IMAGE_PATH}",)
    exposed_ports: tuple[str, ...] = ()
    """As ``80/tcp``."""
    working_dir: str = ""
    user: str = ""
    """Empty: root, as nginx's and busybox's images."""


@dataclass(frozen=True)
class ImageRecipe:
    name: str
    """Directory name under the output directory."""
    layers: tuple[Layer, ...]
    config: ImageConfig
    base: ImageRecipe | None = None
    """An image whose layers come first (its layout is built, then copied and added to)."""
    tag: str = "latest"


@dataclass(frozen=True)
class OciImage:
    """A built image: an OCI image layout and the tag naming the image in it."""

    layout: Path
    """The OCI image layout's directory."""
    tag: str
    """The tag (``org.opencontainers.image.ref.name``) of the image in the layout."""

    @property
    def reference(self) -> str:
        """The image as skopeo and umoci name it: ``oci:LAYOUT:TAG``."""
        return f"oci:{self.layout}:{self.tag}"

    @property
    def digest(self) -> str:
        """The digest of the image's manifest."""
        index = json.loads((self.layout / "index.json").read_text())
        for manifest in index.get("manifests", []):
            if manifest.get("annotations", {}).get("org.opencontainers.image.ref.name") == \
                    self.tag:
                return str(manifest["digest"])
        raise ImageBuildError(f"{self.layout}: no image tagged {self.tag!r} in index.json")


# -- the three images --------------------------------------------------------------------------


def busybox_recipe(busybox: str = BUSYBOX_BINARY) -> ImageRecipe:
    """docker.io/library/busybox: /bin holds busybox and a link per applet; root, a user 1000
    and nobody; ``sh`` as its command."""
    applets = _busybox_applets(busybox)
    layer: dict[str, Entry] = {
        "bin": Dir(), "etc": Dir(), "home": Dir(), "home/user": Dir(0o777),
        "root": Dir(0o700), "tmp": Dir(0o1777), "var": Dir(), "usr": Dir(), "usr/bin": Dir(),
        "usr/sbin": Dir(), "sbin": Dir(),
        "bin/busybox": Copy(busybox),
        "etc/passwd": File(
            b"root:x:0:0:root:/root:/bin/sh\n"
            b"user:x:1000:1000:user:/home/user:/bin/sh\n"
            b"nobody:x:65534:65534:nobody:/home:/bin/false\n"),
        "etc/group": File(b"root:x:0:\nuser:x:1000:\nnobody:x:65534:\n"),
        # The runtime bind-mounts the pod's hostname over it; the file must exist.
        "etc/hostname": File(b""),
    }
    for applet in applets:
        layer[f"bin/{applet}"] = Symlink("busybox")
    return ImageRecipe(BUSYBOX, (layer,), ImageConfig(cmd=("sh",)))


def pause_recipe(busybox: str = BUSYBOX_BINARY, tini: str | None = AUTO) -> ImageRecipe:
    """The pod sandbox's image: a process that sleeps until it is signalled. Under tini (which
    reaps the pod's orphans and passes SIGTERM on) where the node has tini-static; else a
    busybox shell that exits on SIGTERM or SIGINT."""
    tini = _resolve_tini(tini)
    layer: dict[str, Entry] = {
        "bin": Dir(), "sbin": Dir(), "etc": Dir(), "tmp": Dir(0o1777),
        "bin/busybox": Copy(busybox), "bin/sleep": Symlink("busybox"),
        "etc/hostname": File(b""),
    }
    if tini is not None:
        layer["sbin/tini"] = Copy(tini)
        entrypoint: tuple[str, ...] = ("/sbin/tini", "--", "/bin/sleep", SLEEP_FOREVER)
    else:
        layer["bin/sh"] = Symlink("busybox")
        entrypoint = ("/bin/sh", "-c", f"trap 'exit 0' TERM INT; sleep {SLEEP_FOREVER} & wait")
    return ImageRecipe(PAUSE, (layer,), ImageConfig(entrypoint=entrypoint))


TESTSERVER_INDEX = b"""<!DOCTYPE html>
<html>
<head><title>Welcome to kubelite's test server!</title></head>
<body>
<h1>Welcome to nginx!</h1>
<p>This is kubelite's test server (busybox httpd) standing in for nginx.</p>
<p>GET /cgi-bin/hostname answers with the name of the pod that served it.</p>
</body>
</html>
"""

TESTSERVER_HOSTNAME_CGI = b"""#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
hostname
"""

TESTSERVER_COMMAND = ("httpd", "-f", "-v", "-p", "80", "-h", "/www")
"""busybox httpd in the foreground, logging requests to stderr, serving /www on port 80."""


def testserver_recipe(busybox: str = BUSYBOX_BINARY, tini: str | None = AUTO) -> ImageRecipe:
    """An HTTP server on port 80 built on the busybox image: /www/index.html, and
    /cgi-bin/hostname answering with the pod's hostname (so a client sees which pod answered).
    httpd runs under tini where the node has tini-static, so SIGTERM stops it at once as it
    stops nginx; else under a shell that exits on SIGTERM."""
    tini = _resolve_tini(tini)
    layer: dict[str, Entry] = {
        "www": Dir(), "www/cgi-bin": Dir(),
        "www/index.html": File(TESTSERVER_INDEX),
        "www/cgi-bin/hostname": File(TESTSERVER_HOSTNAME_CGI, 0o755),
    }
    if tini is not None:
        layer["sbin/tini"] = Copy(tini)
        config = ImageConfig(entrypoint=("/sbin/tini", "--"), cmd=TESTSERVER_COMMAND,
                             exposed_ports=("80/tcp",))
    else:
        config = ImageConfig(
            cmd=("/bin/sh", "-c", f"trap 'exit 0' TERM INT; {' '.join(TESTSERVER_COMMAND)} & wait"),
            exposed_ports=("80/tcp",))
    return ImageRecipe(TESTSERVER, (layer,), config, base=busybox_recipe(busybox))


def build_busybox_image(out_dir: Path, *, busybox: str = BUSYBOX_BINARY) -> OciImage:
    return build_image(busybox_recipe(busybox), out_dir)


def build_pause_image(
    out_dir: Path, *, busybox: str = BUSYBOX_BINARY, tini: str | None = AUTO,
) -> OciImage:
    return build_image(pause_recipe(busybox, tini), out_dir)


def build_testserver_image(
    out_dir: Path, *, busybox: str = BUSYBOX_BINARY, tini: str | None = AUTO,
) -> OciImage:
    return build_image(testserver_recipe(busybox, tini), out_dir)


def build_all_images(out_dir: Path, *, busybox: str = BUSYBOX_BINARY,
                     tini: str | None = AUTO) -> dict[str, OciImage]:
    """busybox, pause and testserver, by name."""
    return {
        BUSYBOX: build_busybox_image(out_dir, busybox=busybox),
        PAUSE: build_pause_image(out_dir, busybox=busybox, tini=tini),
        TESTSERVER: build_testserver_image(out_dir, busybox=busybox, tini=tini),
    }


# -- the Python images -------------------------------------------------------------------------
#
# kubelite's own programs (the test server, the cluster DNS server) on containerd: this node's
# interpreter, the parts of its standard library a server uses, the shared libraries they load,
# kubelite's runtime dependencies from the environment it runs in and kubelite's packages from
# its checkout. Nothing is compiled or downloaded: every file is a copy of one on the node.

PYTHON = "python"
PYTHON_RUNTIME = "python-runtime"
AGNHOST = "agnhost"
DNS = "dns"
PYTHON_IMAGES_TAG = "1.0"
"""The tag of the Python images. Not ``latest``: Kubernetes then defaults imagePullPolicy to
IfNotPresent, so a node runs the copy it was given."""
IMAGE_PREFIX = "usr/local"
"""The interpreter's prefix in the images (PYTHONHOME): bin/python3, lib/python3.X with the
standard library and site-packages."""
IMAGE_LIBRARY_DIR = f"{IMAGE_PREFIX}/lib"
"""The shared libraries the interpreter and its extension modules load (LD_LIBRARY_PATH)."""
KUBELITE_SOURCE_DIR = f"{IMAGE_PREFIX}/lib/kubelite"
"""kubelite's own top-level packages (PYTHONPATH)."""
IMAGE_PYTHON = f"/{IMAGE_PREFIX}/bin/python3"
PYTHON_ENV = (
    f"PATH={IMAGE_PATH}", f"PYTHONHOME=/{IMAGE_PREFIX}", f"PYTHONPATH=/{KUBELITE_SOURCE_DIR}",
    f"LD_LIBRARY_PATH=/{IMAGE_LIBRARY_DIR}", "PYTHONUNBUFFERED=1",
)
"""The Python images' environment; output unbuffered so container logs show lines at once."""
AGNHOST_MODULE = "kubelet.images.agnhost"
AGNHOST_DEFAULT_ARGS = ("serve-hostname",)
"""As the process runtime's kubelite/agnhost: the test server, answering with the pod's name."""
DNS_MODULE = "clusterdns"
SOURCE_ROOT = str(Path(__file__).resolve().parent.parent)
"""The checkout holding kubelite's pyproject.toml and top-level packages."""

SKIPPED_STDLIB_DIRS = frozenset({
    "__pycache__", "test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo",
    "ensurepip", "lib2to3", "site-packages", "dist-packages",
})
"""Directories of the standard library the images leave out, wherever they are: tests, the Tk
GUI (Tk is not in the images), pip's bundled wheels, the base installation's own packages."""
SKIPPED_EXTENSIONS = ("_test", "_ctypes_test", "xx", "_xx", "_tkinter")
"""Prefixes of lib-dynload's modules the images leave out: CPython's tests, Tk."""
_SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")
_EXTRA_MARKER = re.compile(r"""\bextra\s*==\s*(['"])(.*?)\1""")
_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?")


@dataclass(frozen=True)
class Requirement:
    """A PEP 508 requirement, as far as choosing which distributions to copy needs."""

    name: str
    """Normalized as PEP 503 does: lower case, each run of ``-_.`` one ``-``."""
    extras: frozenset[str] = frozenset()
    marker: str = ""
    """The environment marker after ``;``, unevaluated; empty when there is none."""

    @property
    def for_extras(self) -> frozenset[str]:
        """The extras whose requirement this is (``extra == "x"`` in its marker)."""
        return frozenset(normalize_name(m.group(2)) for m in _EXTRA_MARKER.finditer(self.marker))


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def parse_requirement(text: str) -> Requirement:
    """``name[extra,...] version-spec ; marker``."""
    spec, _, marker = text.partition(";")
    match = _REQUIREMENT_NAME.match(spec)
    if match is None:
        raise ImageBuildError(f"requirement {text!r}: it must start with a distribution name")
    extras = (match.group(2) or "[]")[1:-1].split(",")
    return Requirement(normalize_name(match.group(1)),
                       frozenset(normalize_name(e) for e in extras if e.strip()), marker.strip())


def requirement_closure(
    requirements: Iterable[str], requires_of: Callable[[str], Sequence[str] | None], *,
    required_by: str = "kubelite",
) -> list[str]:
    """The installed distributions ``requirements`` need, transitively: normalized names, sorted.
    ``requires_of(name)`` gives an installed distribution's own requirements, None when it is not
    installed.

    Markers are judged by what is installed rather than evaluated: a requirement with a marker
    counts when its distribution is installed (the installer found the marker true) and is
    skipped otherwise; one without a marker must be installed. A requirement of an extra
    (``extra == "x"``) counts only where a requirement asked for that extra (``name[x]``)."""
    followed: dict[str, set[str]] = {}
    """Each distribution reached -> the extras whose requirements were followed."""
    pending = [(required_by, r) for r in map(parse_requirement, requirements) if not r.for_extras]
    while pending:
        parent, requirement = pending.pop()
        requires = requires_of(requirement.name)
        if requires is None:
            if requirement.marker:
                continue
            raise ImageBuildError(
                f"{requirement.name} (required by {parent}) is not installed in the environment "
                "the Python images are built from: install it (pip install -e .)")
        first = requirement.name not in followed
        extras = followed.setdefault(requirement.name, set())
        new = requirement.extras - extras
        if not first and not new:
            continue
        extras |= new
        for needed in map(parse_requirement, requires):
            if (needed.for_extras & new) if needed.for_extras else first:
                pending.append((requirement.name, needed))
    return sorted(followed)


def stdlib_path_wanted(relative: str) -> bool:
    """Whether a file of the standard library (path relative to it) goes into the images: not
    under :data:`SKIPPED_STDLIB_DIRS` or the build's config-* directory (a static libpython
    for embedding), not bytecode, and not one of :data:`SKIPPED_EXTENSIONS`."""
    path = PurePosixPath(relative)
    if any(not _stdlib_dir_wanted(part) for part in path.parts[:-1]):
        return False
    if path.suffix in (".pyc", ".pyo"):
        return False
    if path.parts[0] == "lib-dynload":
        return not path.name.startswith(SKIPPED_EXTENSIONS)
    return True


def _stdlib_dir_wanted(name: str) -> bool:
    return name not in SKIPPED_STDLIB_DIRS and not name.startswith("config-")


def stdlib_files(stdlib: Path) -> dict[str, Path]:
    """The standard library's files the images hold (see :func:`stdlib_path_wanted`), by path
    relative to ``stdlib``."""
    found: dict[str, Path] = {}
    for directory, dirs, files in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if _stdlib_dir_wanted(d))
        for name in sorted(files):
            relative = os.path.relpath(os.path.join(directory, name), stdlib)
            if stdlib_path_wanted(relative):
                found[relative] = Path(directory, name)
    return found


def distribution_files(distribution: importlib.metadata.Distribution) -> dict[str, Path]:
    """An installed distribution's files as its RECORD lists them, by path relative to its
    site-packages: modules, extension modules, data and metadata; no bytecode, and nothing
    installed outside site-packages (scripts)."""
    name = distribution.metadata["Name"]
    if distribution.files is None:
        raise ImageBuildError(f"{name}: installed without a RECORD of its files; reinstall it")
    found: dict[str, Path] = {}
    for file in distribution.files:
        relative = PurePosixPath(str(file))
        if relative.is_absolute() or ".." in relative.parts or "__pycache__" in relative.parts \
                or relative.suffix in (".pyc", ".pyo"):
            continue
        source = Path(str(distribution.locate_file(file)))
        if not source.is_file():
            raise ImageBuildError(f"{name}: {relative}, listed in its RECORD, is missing "
                                  f"({source}); reinstall it")
        found[str(relative)] = source
    return found


def project_metadata(source_root: Path) -> tuple[list[str], list[str]]:
    """kubelite's runtime requirements (``project.dependencies``) and its top-level package
    globs (``tool.setuptools.packages.find.include``) from the checkout's pyproject.toml: the
    checkout's own, current even where the installed metadata is older."""
    path = source_root / "pyproject.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ImageBuildError(
            f"{path}: {e}; the Python images are built from kubelite's checkout") from e
    dependencies = data.get("project", {}).get("dependencies", [])
    include = data.get("tool", {}).get("setuptools", {}).get("packages", {}).get(
        "find", {}).get("include")
    for field, value in (("project.dependencies", dependencies),
                         ("tool.setuptools.packages.find.include", include)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ImageBuildError(f"{path}: {field} must be a list of strings")
    return list(dependencies), list(include)


def source_files(source_root: Path, include: Sequence[str]) -> dict[str, Path]:
    """The .py files of the top-level packages in ``source_root`` whose names match one of
    ``include`` (setuptools' globs such as ``kubelite*``), by path relative to it."""
    found: dict[str, Path] = {}
    for entry in sorted(source_root.iterdir()):
        if not (entry / "__init__.py").is_file() or \
                not any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in include):
            continue
        for directory, dirs, files in os.walk(entry):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    path = Path(directory, name)
                    found[str(path.relative_to(source_root))] = path
    return found


def parse_ldd(output: str, files: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """What ``ldd FILE...`` printed: the shared libraries the files need (name as the files
    ask for it -> the node's file), and the dynamic loaders. A library ldd did not find is an
    error naming the file that needs it."""
    libraries: dict[str, str] = {}
    loaders: list[str] = []
    current = files[0] if len(files) == 1 else "?"
    for line in output.splitlines():
        if not line[:1].isspace():
            if line.endswith(":"):  # the header of each file's part when there are several
                current = line[:-1]
            continue
        entry = line.strip()
        name, arrow, found = entry.partition(" => ")
        path = found.rsplit(" (", 1)[0].strip()
        if arrow and not path.startswith("/"):
            raise ImageBuildError(f"{current} needs {name}, which ldd does not find on this node")
        if arrow:
            if libraries.setdefault(name, path) != path:
                raise ImageBuildError(f"{name} is both {libraries[name]} and {path} (for "
                                      f"{current}); the images hold one library of each name")
        elif entry.startswith("/"):
            loader = entry.rsplit(" (", 1)[0]
            if loader not in loaders:
                loaders.append(loader)
        # else linux-vdso (the kernel's) or "statically linked": nothing to copy
    return libraries, loaders


def shared_libraries(files: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """:func:`parse_ldd` of ``ldd`` on ``files`` (remembered while the files stay the same)."""
    key = tuple((f, *_identity(f)) for f in files)
    known = _ldd_results.get(key)
    if known is None:
        known = parse_ldd(_run([_tool("ldd", "libc-bin"), *files]), files)
        _ldd_results[key] = known
    return known


def python_runtime_layer(source_root: str = SOURCE_ROOT) -> dict[str, Entry]:
    """The running interpreter (the real binary behind a venv's link), its standard library,
    kubelite's runtime dependencies (transitively) from the environment it runs in, and every
    shared library these load, with the dynamic loader."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    lib = f"{IMAGE_PREFIX}/lib/python{version}"
    executable = os.path.realpath(sys.executable)
    layer: dict[str, Entry] = {
        f"{IMAGE_PREFIX}/bin/python{version}": Copy(executable),
        f"{IMAGE_PREFIX}/bin/python3": Symlink(f"python{version}"),
        f"{IMAGE_PREFIX}/bin/python": Symlink("python3"),
    }
    binaries = [executable]

    def copy(path: str, source: Path) -> None:
        layer[path] = Copy(str(source), 0o755 if source.stat().st_mode & 0o111 else 0o644)
        if _SHARED_OBJECT.search(source.name):
            binaries.append(str(source))

    for relative, source in stdlib_files(Path(sysconfig.get_paths()["stdlib"])).items():
        copy(f"{lib}/{relative}", source)
    requirements, _ = project_metadata(Path(source_root))
    for name in requirement_closure(requirements, _installed_requires):
        for relative, source in distribution_files(importlib.metadata.distribution(name)).items():
            copy(f"{lib}/site-packages/{relative}", source)
    libraries, loaders = shared_libraries(binaries)
    for name, path in libraries.items():
        layer[f"{IMAGE_LIBRARY_DIR}/{name}"] = Copy(path)
    for loader in loaders:
        layer[loader.lstrip("/")] = Copy(loader)
    return layer


def kubelite_source_layer(source_root: str = SOURCE_ROOT) -> dict[str, Entry]:
    """kubelite's top-level packages (those pyproject.toml's find.include names), .py files."""
    _, include = project_metadata(Path(source_root))
    return {f"{KUBELITE_SOURCE_DIR}/{relative}": Copy(str(source), 0o644)
            for relative, source in source_files(Path(source_root), include).items()}


def python_recipes(busybox: str = BUSYBOX_BINARY,
                   source_root: str = SOURCE_ROOT) -> dict[str, ImageRecipe]:
    """kubelite/python (the interpreter and kubelite on busybox, ``python3`` as its command),
    kubelite/agnhost (the test server) and kubelite/dns (the cluster DNS server) on it, by
    name. The interpreter with its libraries is a layer of its own, below kubelite's sources,
    so an edit to the sources rebuilds only their layer."""
    runtime = ImageRecipe(
        PYTHON_RUNTIME, (python_runtime_layer(source_root),),
        ImageConfig(cmd=(IMAGE_PYTHON,), env=PYTHON_ENV), base=busybox_recipe(busybox),
        tag=PYTHON_IMAGES_TAG)
    python = ImageRecipe(PYTHON, (kubelite_source_layer(source_root),), runtime.config,
                         base=runtime, tag=PYTHON_IMAGES_TAG)
    agnhost = ImageRecipe(AGNHOST, (), ImageConfig(
        entrypoint=(IMAGE_PYTHON, "-m", AGNHOST_MODULE), cmd=AGNHOST_DEFAULT_ARGS,
        env=PYTHON_ENV), base=python, tag=PYTHON_IMAGES_TAG)
    dns = ImageRecipe(DNS, (), ImageConfig(
        entrypoint=(IMAGE_PYTHON, "-m", DNS_MODULE), env=PYTHON_ENV,
        exposed_ports=("53/udp", "53/tcp")), base=python, tag=PYTHON_IMAGES_TAG)
    return {PYTHON: python, AGNHOST: agnhost, DNS: dns}


def build_python_images(out_dir: Path, *, busybox: str = BUSYBOX_BINARY,
                        source_root: str = SOURCE_ROOT) -> dict[str, OciImage]:
    """python, agnhost and dns (see :func:`python_recipes`), by name."""
    return {name: build_image(recipe, out_dir)
            for name, recipe in python_recipes(busybox, source_root).items()}


def _installed_requires(name: str) -> list[str] | None:
    try:
        distribution = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    return list(distribution.requires or [])


# -- building ----------------------------------------------------------------------------------


def recipe_hash(recipe: ImageRecipe) -> str:
    """Hash of everything the layout is made from: files, copied files' bytes, config, base."""
    digest = hashlib.sha256()
    digest.update(f"format {RECIPE_FORMAT}\nname {recipe.name}\ntag {recipe.tag}\n".encode())
    if recipe.base is not None:
        digest.update(f"base {recipe_hash(recipe.base)}\n".encode())
    for number, layer in enumerate(recipe.layers):
        digest.update(f"layer {number}\n".encode())
        for path in sorted(layer):
            entry = layer[path]
            digest.update(f"{path}\0{type(entry).__name__}\0".encode())
            if isinstance(entry, File):
                digest.update(f"{entry.mode:o}\0".encode() + hashlib.sha256(entry.data).digest())
            elif isinstance(entry, Copy):
                digest.update(f"{entry.mode:o}\0".encode() + _file_sha256(entry.source))
            elif isinstance(entry, Dir):
                digest.update(f"{entry.mode:o}".encode())
            else:
                digest.update(entry.target.encode())
            digest.update(b"\n")
    digest.update(json.dumps(_config_json(recipe.config), sort_keys=True).encode())
    return digest.hexdigest()


def build_image(recipe: ImageRecipe, out_dir: Path) -> OciImage:
    """``OUT_DIR/<recipe.name>``, an OCI layout holding the image under ``recipe.tag``; built
    only when missing or made from other inputs. Safe to call from several processes at once."""
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / recipe.name
    image = OciImage(target, recipe.tag)
    wanted = recipe_hash(recipe)
    if _stamp(target) == wanted:
        return image
    base = build_image(recipe.base, out_dir) if recipe.base is not None else None
    with _locked(out_dir / f".{recipe.name}.lock"):
        if _stamp(target) == wanted:  # built meanwhile by another process
            return image
        umoci = _tool("umoci", "umoci")
        work = Path(tempfile.mkdtemp(prefix=f".{recipe.name}.", dir=out_dir))
        try:
            layout = work / "layout"
            ref = f"{layout}:{recipe.tag}"
            if base is not None:
                _copy_layout(base.layout, layout)
                (layout / STAMP).unlink()
                if base.tag != recipe.tag:
                    _run([umoci, "tag", "--image", f"{layout}:{base.tag}", recipe.tag])
                    _run([umoci, "rm", "--image", f"{layout}:{base.tag}"])
            else:
                _run([umoci, "init", "--layout", str(layout)])
                _run([umoci, "new", "--image", ref])
            for layer in recipe.layers:
                _add_layer(umoci, ref, work / "bundle", layer)
            _run([umoci, "config", "--image", ref, *_config_flags(recipe.config)])
            _run([umoci, "gc", "--layout", str(layout)])
            (layout / STAMP).write_text(wanted + "\n")
            if target.exists():
                shutil.rmtree(target)
            layout.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return image


def export_archive(image: OciImage, archive: Path, *, name: str) -> Path:
    """Writes ``image`` to an oci-archive tar at ``archive`` naming it ``name`` (a full
    reference such as ``docker.io/kubelite/pause:latest``, which ``ctr images import`` gives
    the imported image). Skipped when ``archive`` already holds this image under this name."""
    archive = Path(archive).absolute()
    source = archive.with_name(archive.name + ".source")
    wanted = f"{image.digest} {name}\n"
    if archive.exists() and source.exists() and source.read_text() == wanted:
        return archive
    skopeo = _tool("skopeo", "skopeo")
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f".{archive.name}.{os.getpid()}.tmp")
    partial.unlink(missing_ok=True)
    try:
        _run([skopeo, "--insecure-policy", "copy", "--quiet", image.reference,
              f"oci-archive:{partial}:{name}"])
        partial.rename(archive)
    finally:
        partial.unlink(missing_ok=True)
    source.write_text(wanted)
    return archive


# -- helpers -----------------------------------------------------------------------------------


def _add_layer(umoci: str, ref: str, bundle: Path, layer: Layer) -> None:
    """One more layer: unpack the image, write the layer's entries, repack (umoci stores the
    difference as a new layer)."""
    unpack = [umoci, "unpack"]
    if os.geteuid() != 0:
        # Files the build user owns are stored as root's.
        unpack.append("--rootless")
    _run([*unpack, "--image", ref, str(bundle)])
    rootfs = bundle / "rootfs"
    for path in sorted(layer):
        _write_entry(rootfs, path, layer[path])
    _run([umoci, "repack", "--image", ref, str(bundle)])
    shutil.rmtree(bundle)


def _write_entry(rootfs: Path, path: str, entry: Entry) -> None:
    if path.startswith("/") or ".." in Path(path).parts:
        raise ImageBuildError(f"image path {path!r} must be relative and stay in the image")
    dest = rootfs / path
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(entry, Dir):
        dest.mkdir(exist_ok=True)
        os.chmod(dest, entry.mode)
    elif isinstance(entry, File):
        dest.write_bytes(entry.data)
        os.chmod(dest, entry.mode)
    elif isinstance(entry, Copy):
        shutil.copyfile(entry.source, dest)
        os.chmod(dest, entry.mode)
    else:
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        os.symlink(entry.target, dest)


def _config_json(config: ImageConfig) -> dict[str, object]:
    return {
        "Entrypoint": list(config.entrypoint), "Cmd": list(config.cmd), "Env": list(config.env),
        "ExposedPorts": sorted(config.exposed_ports), "WorkingDir": config.working_dir,
        "User": config.user,
    }


def _config_flags(config: ImageConfig) -> list[str]:
    # Clearing first makes a derived image's config exactly the recipe's, not a merge with
    # its base's.
    flags = ["--clear=config.entrypoint", "--clear=config.cmd", "--clear=config.env",
             "--clear=config.exposedports"]
    flags += [f"--config.entrypoint={arg}" for arg in config.entrypoint]
    flags += [f"--config.cmd={arg}" for arg in config.cmd]
    flags += [f"--config.env={env}" for env in config.env]
    flags += [f"--config.exposedports={port}" for port in config.exposed_ports]
    flags += [f"--config.workingdir={config.working_dir}", f"--config.user={config.user}"]
    return flags


def _busybox_applets(busybox: str) -> list[str]:
    if not os.path.isfile(busybox) or not os.access(busybox, os.X_OK):
        raise ImageBuildError(
            f"no busybox at {busybox}: install Debian's busybox-static "
            "(apt-get install busybox-static)")
    listed = _run([busybox, "--list"])
    applets = sorted(a for a in listed.split() if "/" not in a and a not in (".", "..", "busybox"))
    if "sh" not in applets:
        raise ImageBuildError(f"{busybox} has no sh applet: install Debian's busybox-static")
    return applets


def _resolve_tini(tini: str | None) -> str | None:
    if tini == AUTO:
        return TINI_BINARY if os.access(TINI_BINARY, os.X_OK) else None
    if tini is not None and not os.access(tini, os.X_OK):
        raise ImageBuildError(f"no tini at {tini}: install Debian's tini (apt-get install tini)")
    return tini


def _copy_layout(source: Path, dest: Path) -> None:
    """A copy of an OCI layout whose blobs are hard links: blobs are named by their digest and
    never change, and the Python images' are large."""
    def copy(src: str, dst: str) -> None:
        if "blobs" in Path(src).relative_to(source).parts:
            try:
                os.link(src, dst)
                return
            except OSError:
                pass  # another file system or no links there: a copy does as well
        shutil.copy2(src, dst)

    shutil.copytree(source, dest, symlinks=True, copy_function=copy)


_file_digests: dict[tuple[str, int, int, int, int], bytes] = {}
"""Digests of files already read in this process, by path and what stat says of the file."""
_ldd_results: dict[tuple[tuple[str, int, int, int, int], ...],
                   tuple[dict[str, str], list[str]]] = {}


def _identity(path: str) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _file_sha256(path: str) -> bytes:
    key = (path, *_identity(path))
    known = _file_digests.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    _file_digests[key] = digest.digest()
    return _file_digests[key]


def _stamp(layout: Path) -> str | None:
    try:
        return (layout / STAMP).read_text().strip()
    except OSError:
        return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ImageBuildError(f"{name} not found: install Debian's {package} "
                              f"(apt-get install {package})")
    return found


def _run(argv: Sequence[str], timeout: float = 120.0) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ImageBuildError(f"{' '.join(argv)}: {e}") from e
    if done.returncode != 0:
        raise ImageBuildError(
            f"{' '.join(argv)} exited with {done.returncode}: "
            f"{done.stderr.decode(errors='replace').strip()}")
    return done.stdout.decode(errors="replace")


__all__ = [
    "AGNHOST", "AUTO", "BUSYBOX", "DNS", "PAUSE", "PYTHON", "PYTHON_IMAGES_TAG", "TESTSERVER",
    "Copy", "Dir", "File", "ImageBuildError", "ImageConfig", "ImageRecipe", "OciImage",
    "Requirement", "Symlink", "build_all_images", "build_busybox_image", "build_image",
    "build_pause_image", "build_python_images", "build_testserver_image", "busybox_recipe",
    "distribution_files", "export_archive", "parse_ldd", "parse_requirement", "pause_recipe",
    "python_recipes", "recipe_hash", "requirement_closure", "source_files", "stdlib_files",
    "stdlib_path_wanted", "testserver_recipe",
]
