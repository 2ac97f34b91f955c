"""Secrets encrypted at rest: a real etcd and API server with an EncryptionConfiguration. etcd
holds ciphertext under Kubernetes' prefix (as etcdctl shows it), the API serves plaintext
(get, list, watch), a rotation keeps old values readable and re-encrypts on update, a value
under a key the configuration dropped is a clear error, and unconfigured resources stay
plaintext."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import shutil
import subprocess
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from apiserver.server import ApiServer
from kubelite.api.errors import InternalError
from kubelite.client.client import ApiClient, WatchEvent
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from protos.v1 import objects_pb2 as v1

KEY1 = base64.b64encode(os.urandom(32)).decode()
KEY2 = base64.b64encode(os.urandom(32)).decode()
PASSWORD = b"hunter2-in-plaintext"


def write_config(path: Path, *keys: tuple[str, str]) -> Path:
    lines = ["apiVersion: apiserver.config.k8s.io/v1", "kind: EncryptionConfiguration",
             "resources:", "- resources: [secrets]", "  providers:", "  - aesgcm:",
             "      keys:"]
    for name, secret in keys:
        lines += [f"      - name: {name}", f"        secret: {secret}"]
    lines.append("  - identity: {}")
    path.write_text("\n".join(lines) + "\n")
    return path


def secret(name: str, password: bytes = PASSWORD, **labels: str) -> v1.Secret:
    return v1.Secret(metadata=v1.ObjectMeta(name=name, labels=labels), type="Opaque",
                     data={"password": password})


class Cluster:
    """An API server with an encryption configuration, restartable with another one."""

    def __init__(self, etcd: EtcdProcess, tmp_path: Path) -> None:
        self.etcd = etcd
        self.settings = server_settings(etcd.endpoint)
        self.prefix = self.settings.api.storage_prefix
        self.config = tmp_path / "encryption-config.yaml"
        self.server: ApiServer | None = None

    async def start(self) -> ApiServer:
        self.server = await start_api_server(dataclasses.replace(
            self.settings, encryption_provider_config=str(self.config)))
        return self.server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def raw(self, resource: str, name: str) -> bytes:
        """The value etcd holds for an object, read past the API server."""
        assert self.server is not None
        key = f"{self.prefix}/{resource}/default/{name}".encode()
        response = await self.server.etcd.range(key)
        assert response.kvs, f"{key!r} is not in etcd"
        return bytes(response.kvs[0].value)

    def etcdctl(self, resource: str, name: str) -> bytes | None:
        """``etcdctl get`` of the object's key (None when etcdctl is not installed)."""
        etcdctl = shutil.which("etcdctl")
        if etcdctl is None:
            return None
        result = subprocess.run(
            [etcdctl, "--endpoints", self.etcd.endpoint, "get", "--print-value-only",
             f"{self.prefix}/{resource}/default/{name}"],
            capture_output=True, timeout=30, check=True, env={**os.environ, "ETCDCTL_API": "3"},
        )
        return result.stdout


@pytest.fixture
async def cluster(etcd: EtcdProcess, tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(etcd, tmp_path)
    try:
        yield c
    finally:
        await c.stop()


class Changes:
    """A Secret watch, read one change at a time as (type, name, password)."""

    def __init__(self, stream: AsyncIterator[WatchEvent[v1.Secret]]) -> None:
        self._stream = cast(AsyncGenerator[WatchEvent[v1.Secret], None], stream)

    async def next(self) -> tuple[str, str, bytes]:
        async with asyncio.timeout(10):
            async for event in self._stream:
                if event.type != "BOOKMARK":
                    assert event.object is not None
                    obj = event.object
                    return event.type, obj.metadata.name, obj.data["password"]
        raise AssertionError("the watch ended")

    async def close(self) -> None:
        await self._stream.aclose()


async def test_secrets_are_ciphertext_in_etcd_and_plaintext_through_the_api(
    cluster: Cluster,
) -> None:
    write_config(cluster.config, ("key1", KEY1))
    server = await cluster.start()
    async with ApiClient(server.address, timeout=10) as client:
        created = await client.create(secret("s1", app="db"), "default")
        cm = v1.ConfigMap(metadata=v1.ObjectMeta(name="cm1"), data={"visible": "in-etcd"})
        await client.create(cm, "default")

        stored = await cluster.raw("secrets", "s1")
        assert stored.startswith(b"k8s:enc:aesgcm:v1:key1:")
        assert PASSWORD not in stored and b"s1" not in stored
        shown = cluster.etcdctl("secrets", "s1")
        if shown is not None:
            assert shown.startswith(b"k8s:enc:aesgcm:v1:key1:") and PASSWORD not in shown
        # Not named in the configuration: stored as it is.
        assert b"in-etcd" in await cluster.raw("configmaps", "cm1")

        assert (await client.get(v1.Secret, "s1", "default")).data["password"] == PASSWORD
        listed = await client.list(v1.Secret, "default")
        assert [s.data["password"] for s in listed.items if s.metadata.name == "s1"] == [
            PASSWORD]
        # A watch from "now" starts with the current objects, decrypted...
        start = Changes(client.watch(v1.Secret, "default", field_selector="metadata.name=s1"))
        assert await start.next() == ("ADDED", "s1", PASSWORD)
        await start.close()
        # ...and the watch cache serves changes decrypted (a selector needs the object and
        # its previous state).
        events = Changes(client.watch(v1.Secret, "default", label_selector="app=db",
                                      resource_version=created.metadata.resource_version))
        changed = await client.get(v1.Secret, "s1", "default")
        changed.data["password"] = b"changed"
        await client.update(changed)
        assert await events.next() == ("MODIFIED", "s1", b"changed")
        await events.close()


async def test_rotation_keeps_old_secrets_readable_and_an_update_rewrites_them(
    cluster: Cluster,
) -> None:
    write_config(cluster.config, ("key1", KEY1))
    server = await cluster.start()
    async with ApiClient(server.address, timeout=10) as client:
        for name in ("old", "patched", "changed", "forgotten"):
            last = await client.create(secret(name, app="db"), "default")
        # Something else after them: the next server's watch window starts past them.
        await client.create(v1.ConfigMap(metadata=v1.ObjectMeta(name="after")), "default")
    await cluster.stop()

    # Rotation, step 1: the new key first, the old one still there to read.
    write_config(cluster.config, ("key2", KEY2), ("key1", KEY1))
    server = await cluster.start()
    async with ApiClient(server.address, timeout=10) as client:
        old = await client.get(v1.Secret, "old", "default")
        assert old.data["password"] == PASSWORD
        assert (await cluster.raw("secrets", "old")).startswith(b"k8s:enc:aesgcm:v1:key1:")
        # A watch from before this server's window replays from etcd: decrypted too.
        since = last.metadata.resource_version
        assert server.api.caches["secrets"].start_revision > int(since)
        events = Changes(client.watch(v1.Secret, "default", label_selector="app=db",
                                      resource_version=since))
        # Step 2: rewrite every Secret. An update that changes nothing still re-encrypts
        # (an Update of the object as read, what kubectl replace sends)...
        rewritten = await client.update(old)
        assert rewritten.metadata.resource_version != old.metadata.resource_version
        assert (await cluster.raw("secrets", "old")).startswith(b"k8s:enc:aesgcm:v1:key2:")
        # ...an empty patch too (klctl patch secret NAME -p '{}')...
        await client.patch(v1.Secret, "patched", {}, "default")
        assert (await cluster.raw("secrets", "patched")).startswith(b"k8s:enc:aesgcm:v1:key2:")
        # ...and so does one that changes something.
        changed = await client.get(v1.Secret, "changed", "default")
        changed.data["password"] = b"new"
        await client.update(changed)
        assert (await cluster.raw("secrets", "changed")).startswith(b"k8s:enc:aesgcm:v1:key2:")
        assert [await events.next(), await events.next()] == [
            ("MODIFIED", "old", PASSWORD), ("MODIFIED", "patched", PASSWORD)]
        assert await events.next() == ("MODIFIED", "changed", b"new")
        await events.close()
        # Written now: key2, and unchanged again is not written again.
        again = await client.update(rewritten)
        assert again.metadata.resource_version == rewritten.metadata.resource_version
    await cluster.stop()

    # Step 3: the old key removed. What was rewritten reads; what was not is a clear error.
    write_config(cluster.config, ("key2", KEY2))
    server = await cluster.start()
    async with ApiClient(server.address, timeout=10) as client:
        assert (await client.get(v1.Secret, "old", "default")).data["password"] == PASSWORD
        with pytest.raises(InternalError) as caught:
            await client.get(v1.Secret, "forgotten", "default")
        assert 'aesgcm key "key1"' in str(caught.value)
        assert f"{cluster.prefix}/secrets/default/forgotten" in str(caught.value)
        names = {s.metadata.name for s in (await client.list(v1.Secret, "default")).items}
        assert names == {"old", "patched", "changed"}  # the unreadable one is skipped (and logged)
