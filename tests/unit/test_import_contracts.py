"""pyproject.toml's import contracts cover every module of kubelite: the layers contract that
keeps the daemons off kubelite's libraries names each library module (import-linter itself
checks that the per-kubelite contract, marked exhaustive, names them all)."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import kubelite

ROOT = Path(__file__).resolve().parents[2]


def layer_modules(layer: str) -> set[str]:
    return {m.strip() for m in layer.replace("|", ":").split(":")}


def test_the_daemons_contract_names_every_kubelite_module() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"]
    daemons = next(c for c in contracts if "apiserver" in c["layers"][1])
    named = set().union(*(layer_modules(layer) for layer in daemons["layers"]))
    modules = {f"kubelite.{m.name}" for m in pkgutil.iter_modules(kubelite.__path__)}
    missing = sorted(modules - named)
    assert not missing, f"put these in a layer of {daemons['name']!r}: {missing}"
