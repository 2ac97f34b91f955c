"""``-o yaml`` and ``-o json``: objects as kubectl serializes them."""

from __future__ import annotations

import json
from typing import Any

import yaml


def to_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                     allow_unicode=True)


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Multi-line strings as literal blocks, as kubectl prints scripts and config files.
    # Strings that would read back as something else are double-quoted, as go-yaml does.
    style: str | None = None
    if "\n" in value:
        style = "|"
    else:
        implicit = dumper.resolve(  # type: ignore[no-untyped-call]
            yaml.ScalarNode, value, (True, False)
        )
        if implicit != _STR_TAG:
            style = '"'
    return dumper.represent_scalar(_STR_TAG, value, style=style)


_STR_TAG = "tag:yaml.org,2002:str"


_Dumper.add_representer(str, _str_representer)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=4, ensure_ascii=False)


def list_object(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Several objects as one ``kind: List``, as kubectl prints them with -o yaml|json."""
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}
