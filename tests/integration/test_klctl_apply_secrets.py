"""klctl apply of a Secret against a real API server: the last-applied annotation never holds
its values, and re-applying still creates, leaves alone, changes and removes them."""

from __future__ import annotations

import base64
from pathlib import Path

from kubelite.cli.printers.formats import LAST_APPLIED
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import Klctl, write


def secret_manifest(data: dict[str, str], string_data: dict[str, str]) -> str:
    lines = ["apiVersion: v1", "kind: Secret", "metadata:", "  name: db", "type: Opaque"]
    if data:
        lines += ["data:"] + [f"  {k}: {base64.b64encode(v.encode()).decode()}"
                              for k, v in data.items()]
    if string_data:
        lines += ["stringData:"] + [f"  {k}: {v}" for k, v in string_data.items()]
    return "\n".join(lines) + "\n"


async def test_apply_keeps_secret_values_out_of_the_annotation(
    klctl: Klctl, client: ApiClient, tmp_path: Path
) -> None:
    path = write(tmp_path, "secret.yaml", secret_manifest(
        {"password": "hunter2", "user": "admin"}, {"token": "t0ken"}))
    first = await klctl("apply", "-f", path)
    assert (first.code, first.out) == (0, "secret/db created\n"), first.err
    stored = await client.get(v1.Secret, "db", "default")
    assert dict(stored.data) == {"password": b"hunter2", "user": b"admin", "token": b"t0ken"}
    annotation = stored.metadata.annotations[LAST_APPLIED]
    for value in ("hunter2", "admin", "t0ken"):
        assert value not in annotation
        assert base64.b64encode(value.encode()).decode() not in annotation

    again = await klctl("apply", "-f", path)
    assert (again.code, again.out) == (0, "secret/db unchanged\n"), again.err

    # password changes, user goes, token stays (it came from stringData).
    Path(path).write_text(secret_manifest({"password": "correct horse"}, {"token": "t0ken"}))
    changed = await klctl("apply", "-f", path)
    assert (changed.code, changed.out) == (0, "secret/db configured\n"), changed.err
    stored = await client.get(v1.Secret, "db", "default")
    assert dict(stored.data) == {"password": b"correct horse", "token": b"t0ken"}
    assert "correct horse" not in stored.metadata.annotations[LAST_APPLIED]
