"""What the Python images (kubelite/python, kubelite/agnhost, kubelite/dns) hold, chosen
without building them: the requirements' closure, the standard library's filter, ldd's output,
kubelite's packages from pyproject.toml's include globs, and the images' configs."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from kubelite.oci_images import (
    AGNHOST,
    DNS,
    IMAGE_LIBRARY_DIR,
    IMAGE_PYTHON,
    KUBELITE_SOURCE_DIR,
    PYTHON,
    PYTHON_IMAGES_TAG,
    Copy,
    ImageBuildError,
    Requirement,
    parse_ldd,
    parse_requirement,
    project_metadata,
    python_recipes,
    requirement_closure,
    source_files,
    stdlib_path_wanted,
)

INSTALLED: dict[str, Sequence[str]] = {
    "grpcio": ["typing-extensions~=4.12", 'grpcio-tools>=1.85; extra == "protobuf"'],
    "protobuf": [],
    "typing-extensions": [],
    "jsonpatch": ["jsonpointer>=3.8"],
    "jsonpointer": [],
    "uvloop": ['aiohttp>=3.10; extra == "test"'],
    "aetcd": ["grpcio<2,>1.66", "protobuf<8,>4", 'pytest==9.0; extra == "test"'],
    "dnspython": ["cryptography>=50 ; extra == 'dnssec'", "idna>=3.2 ; extra == 'idna'"],
    "idna": [],
    "pytest": [],
}


def requires_of(name: str) -> Sequence[str] | None:
    return INSTALLED.get(name)


def test_requirements_are_parsed_to_normalized_names_extras_and_markers() -> None:
    assert parse_requirement("PyYAML>=6.0") == Requirement("pyyaml")
    assert parse_requirement("typing_extensions") == Requirement("typing-extensions")
    assert parse_requirement("zope.interface (>=5)") == Requirement("zope-interface")
    assert parse_requirement("uvloop>=0.19; sys_platform != 'win32'") == Requirement(
        "uvloop", marker="sys_platform != 'win32'")
    req = parse_requirement("dnspython[DNSSEC, idna]>=2.6")
    assert req.name == "dnspython" and req.extras == {"dnssec", "idna"}
    assert parse_requirement('pytest>=8; extra == "dev"').for_extras == {"dev"}
    with pytest.raises(ImageBuildError, match="distribution name"):
        parse_requirement(">=1.0")


def test_closure_follows_requirements_transitively_without_extras() -> None:
    closure = requirement_closure(
        ["grpcio>=1.60", "aetcd>=1.0", "jsonpatch>=1.33", 'uvloop; sys_platform != "win32"',
         'pytest>=8; extra == "dev"'], requires_of)
    assert closure == ["aetcd", "grpcio", "jsonpatch", "jsonpointer", "protobuf",
                       "typing-extensions", "uvloop"]


def test_closure_follows_the_extras_asked_for() -> None:
    assert requirement_closure(["dnspython"], requires_of) == ["dnspython"]
    # idna is installed and asked for; cryptography (dnssec) is not installed but has a marker.
    assert requirement_closure(["dnspython[idna,dnssec]"], requires_of) == ["dnspython", "idna"]
    # An extra asked for by a second requirement of the same distribution is followed too.
    assert requirement_closure(["dnspython", "dnspython[idna]"], requires_of) == [
        "dnspython", "idna"]


def test_closure_skips_what_a_marker_left_out_and_names_what_is_missing() -> None:
    assert requirement_closure(["colorama; sys_platform == 'win32'"], requires_of) == []
    with pytest.raises(ImageBuildError, match=r"missing-dist \(required by jsonpatch\) is not "
                                              r"installed"):
        requirement_closure(["jsonpatch"], lambda name: {"jsonpatch": ["missing-dist"]}.get(name))


def test_closure_of_kubelites_own_requirements() -> None:
    """The checkout's pyproject against this environment: the runtime packages, no dev tools."""
    root = Path(__file__).resolve().parents[2]
    requirements, include = project_metadata(root)

    def installed(name: str) -> list[str] | None:
        try:
            return list(importlib.metadata.distribution(name).requires or [])
        except importlib.metadata.PackageNotFoundError:
            return None

    closure = requirement_closure(requirements, installed)
    assert {"grpcio", "protobuf", "structlog", "pyyaml", "aetcd"} <= set(closure)
    assert not {"pytest", "mypy", "ruff", "grpcio-tools", "import-linter"} & set(closure)
    assert "kubelite*" in include and "kubelet*" in include


@pytest.mark.parametrize(("path", "wanted"), [
    ("os.py", True),
    ("asyncio/base_events.py", True),
    ("encodings/utf_8.py", True),
    ("_sysconfigdata__linux_x86_64-linux-gnu.py", True),
    ("lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so", True),
    ("lib-dynload/_asyncio.cpython-311-x86_64-linux-gnu.so", True),
    ("lib-dynload/_testcapi.cpython-311-x86_64-linux-gnu.so", False),
    ("lib-dynload/xxlimited.cpython-311-x86_64-linux-gnu.so", False),
    ("lib-dynload/_ctypes_test.cpython-311-x86_64-linux-gnu.so", False),
    ("lib-dynload/_tkinter.cpython-311-x86_64-linux-gnu.so", False),
    ("test/test_os.py", False),
    ("unittest/test/test_case.py", False),
    ("distutils/tests/test_core.py", False),
    ("idlelib/editor.py", False),
    ("tkinter/__init__.py", False),
    ("ensurepip/_bundled/pip-23.2.1-py3-none-any.whl", False),
    ("site-packages/pip/__init__.py", False),
    ("config-3.11-x86_64-linux-gnu/libpython3.11.a", False),
    ("__pycache__/os.cpython-311.pyc", False),
    ("json/__pycache__/decoder.cpython-311.pyc", False),
])
def test_standard_library_filter(path: str, wanted: bool) -> None:
    assert stdlib_path_wanted(path) is wanted


LDD = """\
/usr/bin/python3.11:
\tlinux-vdso.so.1 (0x00007ffd1a5f2000)
\tlibpython3.11.so.1.0 => /opt/python/lib/libpython3.11.so.1.0 (0x00007f2b1c000000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2b1be1e000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f2b1c6f0000)
/opt/python/lib/python3.11/lib-dynload/_ssl.so:
\tlinux-vdso.so.1 (0x00007ffd1a5f2000)
\tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f2b1c59c000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2b1be1e000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f2b1c6f0000)
/opt/static.so:
\tstatically linked
"""


def test_ldd_output_gives_libraries_and_the_loader() -> None:
    libraries, loaders = parse_ldd(LDD, ["/usr/bin/python3.11", "/opt/x/_ssl.so", "/opt/static.so"])
    assert libraries == {
        "libpython3.11.so.1.0": "/opt/python/lib/libpython3.11.so.1.0",
        "libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6",
        "libssl.so.3": "/lib/x86_64-linux-gnu/libssl.so.3",
    }
    assert loaders == ["/lib64/ld-linux-x86-64.so.2"]


def test_ldd_single_file_and_a_missing_library() -> None:
    single = "\tlibfoo.so.1 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n"
    with pytest.raises(ImageBuildError, match=r"/opt/ext\.so needs libfoo\.so\.1, which ldd "
                                              r"does not find"):
        parse_ldd(single, ["/opt/ext.so"])
    clash = "a:\n\tlibz.so.1 => /lib/libz.so.1 (0x1)\nb:\n\tlibz.so.1 => /opt/libz.so.1 (0x1)\n"
    with pytest.raises(ImageBuildError, match=r"libz\.so\.1 is both /lib/libz\.so\.1 and "
                                              r"/opt/libz\.so\.1 \(for b\)"):
        parse_ldd(clash, ["a", "b"])


def test_source_files_are_the_included_packages_py_files(tmp_path: Path) -> None:
    for path in ["kubelite/__init__.py", "kubelite/api/__init__.py", "kubelite/api/x.py",
                 "kubelite/api/__pycache__/x.cpython-311.pyc", "kubelite/api/x.pyi",
                 "protos/__init__.py", "protos/v1/a_pb2.py", "protos/v1/a.proto",
                 "tests/__init__.py", "tests/test_x.py", "kubelite.egg-info/PKG-INFO",
                 "clusterdns/__init__.py", "clusterdns/__main__.py", "setup.py"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    found = source_files(tmp_path, ["kubelite*", "protos*", "clusterdns*"])
    assert sorted(found) == [
        "clusterdns/__init__.py", "clusterdns/__main__.py", "kubelite/__init__.py",
        "kubelite/api/__init__.py", "kubelite/api/x.py", "protos/__init__.py",
        "protos/v1/a_pb2.py"]
    assert found["protos/v1/a_pb2.py"] == tmp_path / "protos/v1/a_pb2.py"


def test_pyproject_fields_are_checked(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\ndependencies = ["a"]\n[tool.setuptools.packages.find]\ninclude = "x*"\n')
    with pytest.raises(ImageBuildError,
                       match="tool.setuptools.packages.find.include must be a list of strings"):
        project_metadata(tmp_path)
    with pytest.raises(ImageBuildError, match="kubelite's checkout"):
        project_metadata(tmp_path / "elsewhere")


def test_recipes_of_the_python_images() -> None:
    """The recipes of this checkout and interpreter (nothing is built)."""
    recipes = python_recipes()
    python, agnhost, dns = recipes[PYTHON], recipes[AGNHOST], recipes[DNS]
    assert {python.tag, agnhost.tag, dns.tag} == {PYTHON_IMAGES_TAG} != {"latest"}
    assert agnhost.base is python and dns.base is python and not agnhost.layers
    assert agnhost.config.entrypoint == (IMAGE_PYTHON, "-m", "kubelet.images.agnhost")
    assert agnhost.config.cmd == ("serve-hostname",)
    assert dns.config.entrypoint == (IMAGE_PYTHON, "-m", "clusterdns")
    env = dict(e.split("=", 1) for e in python.config.env)
    assert env["PYTHONPATH"] == f"/{KUBELITE_SOURCE_DIR}"
    assert env["LD_LIBRARY_PATH"] == f"/{IMAGE_LIBRARY_DIR}"

    sources = python.layers[0]
    assert f"{KUBELITE_SOURCE_DIR}/kubelet/images/agnhost.py" in sources
    assert f"{KUBELITE_SOURCE_DIR}/kubelite/oci_images.py" in sources
    assert all(path.endswith(".py") for path in sources)
    assert not any(path.startswith(f"{KUBELITE_SOURCE_DIR}/tests/") for path in sources)

    runtime = python.base
    assert runtime is not None and runtime.base is not None and runtime.base.name == "busybox"
    layer = runtime.layers[0]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    binary = layer[f"usr/local/bin/python{version}"]
    assert isinstance(binary, Copy) and binary.mode == 0o755
    stdlib = f"usr/local/lib/python{version}"
    site = f"{stdlib}/site-packages"
    assert f"{stdlib}/asyncio/__init__.py" in layer and f"{stdlib}/os.py" in layer
    assert not any(p.startswith((f"{stdlib}/test/", f"{stdlib}/idlelib/")) for p in layer)
    assert not any("__pycache__" in p for p in layer)
    assert f"{site}/grpc/__init__.py" in layer and f"{site}/structlog/__init__.py" in layer
    assert f"{site}/yaml/__init__.py" in layer and f"{site}/google/protobuf/__init__.py" in layer
    assert not any(p.startswith((f"{site}/pytest/", f"{site}/mypy/", f"{site}/pip/"))
                   for p in layer)
    assert f"{IMAGE_LIBRARY_DIR}/libc.so.6" in layer
    assert any(p.startswith("lib") and "ld-linux" in p for p in layer)  # the dynamic loader
