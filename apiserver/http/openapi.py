"""The OpenAPI v2 (Swagger 2.0) document of the HTTP API, served at /openapi/v2."""

from __future__ import annotations

from typing import Any


def document() -> dict[str, Any]:
    """The whole document, built once per process."""
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.31.0-kubelite"},
            "paths": {}, "definitions": {}}
