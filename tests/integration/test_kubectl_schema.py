"""Real kubectl against the HTTP API's discovery, OpenAPI document and Tables (real etcd, an
in-process API server): kubectl 1.20 (Debian's, OpenAPI v2 only) and 1.37 (which falls back
to v2 where the server has no OpenAPI v3) validate manifests client-side naming the field,
explain fields, compute apply's merge patches from the schema's merge keys, find resources by
short name and category, and print the same columns and cells as klctl."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from apiserver.server import ApiServer
from kubelite.api.registry import by_kind
from kubelite.cli.printers.tables import Table
from kubelite.client.client import ApiClient
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1

ROOT = Path(__file__).resolve().parents[2]
KUBECTLS = {
    "1.20": ROOT / ".venv" / "kubernetes-client" / "usr" / "bin" / "kubectl",
    "1.37": Path(sys.executable).with_name("kubectl"),
}

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox
        command: [sleep, "3600"]
        ports:
        - containerPort: 80
        resources:
          limits: {cpu: 1, memory: 64Mi}
"""


@pytest.fixture(params=sorted(KUBECTLS))
def kubectl_path(request: pytest.FixtureRequest) -> Path:
    path = KUBECTLS[request.param]
    if not path.exists():
        pytest.skip(f"kubectl {request.param} is not installed (./dev setup_test_tools)")
    return path


@pytest.fixture
async def server(etcd: EtcdProcess) -> AsyncIterator[ApiServer]:
    settings = dataclasses.replace(server_settings(etcd.endpoint), http_listen="127.0.0.1:0")
    api_server = await start_api_server(settings)
    yield api_server
    await api_server.stop()


class Kubectl:
    def __init__(self, path: Path, server: ApiServer, home: Path) -> None:
        self.path = path
        self.kubeconfig = home / "kubeconfig"
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test",
                          "cluster": {"server": f"http://{server.http_address}"}}],
            "users": [{"name": "test", "user": {}}],
            "contexts": [{"name": "test",
                          "context": {"cluster": "test", "user": "test",
                                      "namespace": "default"}}],
        }))
        self.cache = home / "cache"

    async def __call__(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            str(self.path), f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.cache}",
            *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={"HOME": str(self.cache)})
        out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def ok(self, *args: str, stdin: str = "") -> str:
        code, out, err = await self(*args, stdin=stdin)
        assert code == 0, f"kubectl {' '.join(args)}: {err}"
        return out


@pytest.fixture
def kubectl(kubectl_path: Path, server: ApiServer, tmp_path: Path) -> Kubectl:
    return Kubectl(kubectl_path, server, tmp_path)


async def test_invalid_manifests_are_refused_naming_the_fields(kubectl: Kubectl) -> None:
    bad = DEPLOYMENT.replace("replicas: 2", 'replicas: "two"').replace(
        "image: busybox", "image: busybox\n        imagee: nginx")
    code, _, err = await kubectl("apply", "-f", "-", stdin=bad)
    assert code != 0
    assert 'unknown field "imagee" in io.k8s.api.core.v1.Container' in err
    assert "invalid type for io.k8s.api.apps.v1.DeploymentSpec.replicas" in err
    code, _, err = await kubectl("get", "deployments", "web")
    assert code != 0 and "NotFound" in err


async def test_explain_reads_the_schema(kubectl: Kubectl) -> None:
    out = await kubectl.ok("explain", "pod.spec.containers.ports")
    assert re.search(r"containerPort\s+<integer>", out)
    assert re.search(r"protocol\s+<string>", out)
    out = await kubectl.ok("explain", "deploy")
    assert "Declares pods and rolls out changes" in out


async def test_apply_patches_by_merge_key_and_tables_match_klctl(
        kubectl: Kubectl, server: ApiServer) -> None:
    assert "deployment.apps/web created" in await kubectl.ok("apply", "-f", "-",
                                                            stdin=DEPLOYMENT)
    # A second apply without the port: the strategic merge patch, computed from the schema's
    # merge keys, keeps the container by name and drops its ports.
    changed = DEPLOYMENT.replace("        ports:\n        - containerPort: 80\n", "")
    assert "deployment.apps/web configured" in await kubectl.ok(
        "apply", "-f", "-", stdin=changed)
    out = await kubectl.ok("get", "deploy", "web", "-o",
                           "jsonpath={.spec.template.spec.containers[*].name}"
                           " {.spec.template.spec.containers[0].ports}")
    assert out.strip() == "web"

    async with ApiClient(server.address) as grpc:
        deployment = await grpc.get(v1.Deployment, "web", "default")
    printed = (await kubectl.ok("get", "deploy", "-o", "wide")).splitlines()
    table = Table(by_kind("Deployment"), wide=True)
    expected = table.render([deployment], dt.datetime.now(dt.UTC))

    def without_age(line: str) -> list[str]:
        cells = re.split(r"\s{2,}", line.strip())
        return cells[:4] + cells[5:]

    assert [without_age(line) for line in printed] == [without_age(line) for line in expected]
    assert printed[0] == expected[0]


async def test_discovery_names_short_names_and_categories(kubectl: Kubectl) -> None:
    await kubectl.ok("apply", "-f", "-", stdin=DEPLOYMENT)
    resources = await kubectl.ok("api-resources")
    assert re.search(r"deployments\s+deploy\s+apps/v1\s+true\s+Deployment", resources)
    assert re.search(r"subjectaccessreviews\s+authorization.k8s.io/v1\s+false", resources)
    assert "deployment.apps/web" in await kubectl.ok("get", "all")
    assert "web" in await kubectl.ok("get", "deploy")
    version = await kubectl.ok("version", "-o", "json")
    assert json.loads(version)["serverVersion"]["gitVersion"] == "v1.31.0-kubelite"


async def test_scale_finds_the_scale_subresource(kubectl: Kubectl, server: ApiServer) -> None:
    await kubectl.ok("apply", "-f", "-", stdin=DEPLOYMENT)
    assert "scaled" in await kubectl.ok("scale", "deployment/web", "--replicas=4")
    async with ApiClient(server.address) as grpc:
        async def scaled() -> bool:
            return (await grpc.get(v1.Deployment, "web", "default")).spec.replicas == 4

        await eventually(scaled, message="the deployment scaled to 4")
