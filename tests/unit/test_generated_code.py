"""The committed generated code matches the .proto files, and the import layers hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_protobuf_code_is_current(tmp_path: Path) -> None:
    protos = sorted(
        str(p.relative_to(ROOT))
        for package in (ROOT / "protos" / "v1", ROOT / "protos" / "cri" / "v1")
        for p in package.glob("*.proto")
    )
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", ".", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", *protos],
        cwd=ROOT, check=True,
    )
    generated = sorted(tmp_path.rglob("*_pb2*.py*"))
    assert generated, "protoc generated nothing"
    stale = [
        str(g.relative_to(tmp_path))
        for g in generated
        if (ROOT / g.relative_to(tmp_path)).read_bytes() != g.read_bytes()
    ]
    assert not stale, f"regenerate with scripts/gen-protos: {stale}"


def test_import_layers() -> None:
    """Daemons -> kubelite -> protos; daemons never import each other."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
