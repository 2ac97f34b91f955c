"""klctl against a real API server: verbs, output, and bad input that must write nothing.

klctl's ``main`` runs its own event loop, so each call runs in a thread while the API server
keeps serving on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from apiserver.server import ApiServer
from kubelite.api import errors, meta
from kubelite.cli.klctl import main
from kubelite.cli.printers.formats import LAST_APPLIED, human_duration
from kubelite.cli.printers.tables import pod_status
from kubelite.client.client import ApiClient
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import Klctl, write

APP = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: web}
data:
  mode: fast
---
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
      - name: main
        image: nginx
        resources:
          requests: {cpu: 100m}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
"""


def pod_manifest(name: str, labels: str = "{app: web}", namespace: str = "") -> str:
    ns = f"\n  namespace: {namespace}" if namespace else ""
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: {name}{ns}
  labels: {labels}
spec:
  containers:
  - name: main
    image: busybox
"""


def lines(text: str) -> list[list[str]]:
    """Table lines split on runs of spaces (kubectl pads with at least three)."""
    return [[c for c in line.split("   ") if c.strip()] for line in text.splitlines() if line]


def columns(header: str) -> list[str]:
    return [c.strip() for c in header.split("  ") if c.strip()]


# ---------------------------------------------------------------------------- apply / create


async def test_apply_creates_then_unchanged_then_configured(
    klctl: Klctl, client: ApiClient, tmp_path: Path
) -> None:
    path = write(tmp_path, "app.yaml", APP)
    first = await klctl("apply", "-f", path)
    assert first.code == 0, first.err
    assert first.out.splitlines() == [
        "configmap/settings created",
        "deployment.apps/web created",
        "service/web created",
    ]

    again = await klctl("apply", "-f", path)
    assert again.code == 0, again.err
    assert again.out.splitlines() == [
        "configmap/settings unchanged",
        "deployment.apps/web unchanged",
        "service/web unchanged",
    ]

    # A controller writes status; a later apply must keep it.
    deployment = await client.get(v1.Deployment, "web")
    deployment.status.ready_replicas = 2
    await client.update_status(deployment)
    Path(path).write_text(
        Path(path).read_text().replace("replicas: 2", "replicas: 3").replace("mode: fast", "x: y")
    )
    changed = await klctl("apply", "-f", path)
    assert changed.code == 0, changed.err
    assert changed.out.splitlines() == [
        "configmap/settings configured",
        "deployment.apps/web configured",
        "service/web unchanged",
    ]
    deployment = await client.get(v1.Deployment, "web")
    assert deployment.spec.replicas == 3
    assert deployment.status.ready_replicas == 2
    applied = json.loads(deployment.metadata.annotations[LAST_APPLIED])
    assert applied["spec"]["replicas"] == 3
    assert applied["metadata"]["namespace"] == "default"
    # "mode" left the manifest, so apply removed it; "x" arrived.
    settings = await client.get(v1.ConfigMap, "settings")
    assert dict(settings.data) == {"x": "y"}


async def test_apply_keeps_fields_set_by_others(
    klctl: Klctl, client: ApiClient, tmp_path: Path
) -> None:
    path = write(tmp_path, "cm.yaml", """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: shared}
        data: {mine: "1"}
    """)
    assert (await klctl("apply", "-f", path)).code == 0
    await client.patch(v1.ConfigMap, "shared", {"data": {"theirs": "2"},
                                                "metadata": {"labels": {"owner": "ctl"}}})
    Path(path).write_text(Path(path).read_text().replace('"1"', '"10"'))
    result = await klctl("apply", "-f", path)
    assert result.out.strip() == "configmap/shared configured"
    cm = await client.get(v1.ConfigMap, "shared")
    assert dict(cm.data) == {"mine": "10", "theirs": "2"}
    assert dict(cm.metadata.labels) == {"owner": "ctl"}


async def test_apply_from_a_directory_and_a_list(klctl: Klctl, client: ApiClient,
                                                  tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    write(folder, "a.yaml", """
        apiVersion: v1
        kind: List
        items:
        - {apiVersion: v1, kind: ConfigMap, metadata: {name: one}}
        - {apiVersion: v1, kind: ConfigMap, metadata: {name: two}}
    """)
    write(folder, "b.json", json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "three"}}))
    result = await klctl("apply", "-f", str(folder))
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "configmap/one created", "configmap/two created", "configmap/three created",
    ]


async def test_create_reports_already_exists(klctl: Klctl, tmp_path: Path) -> None:
    path = write(tmp_path, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    created = await klctl("create", "-f", path)
    assert (created.code, created.out.strip()) == (0, "configmap/x created")
    again = await klctl("create", "-f", path)
    assert again.code == 1
    assert again.err.strip() == 'Error from server (AlreadyExists): configmaps "x" already exists'


async def test_create_namespace_and_namespace_flag(klctl: Klctl, client: ApiClient,
                                                   tmp_path: Path) -> None:
    assert (await klctl("create", "namespace", "team")).out.strip() == "namespace/team created"
    path = write(tmp_path, "pod.yaml", pod_manifest("p"))
    assert (await klctl("apply", "-n", "team", "-f", path)).code == 0
    assert (await client.get(v1.Pod, "p", "team")).metadata.namespace == "team"
    other = write(tmp_path, "other.yaml", pod_manifest("q", namespace="default"))
    mismatch = await klctl("apply", "-n", "team", "-f", other)
    assert mismatch.code == 1
    assert 'the namespace from the provided object "default" does not match' in mismatch.err


# ---------------------------------------------------------------------------- get


async def test_get_tables_per_kind(klctl: Klctl, client: ApiClient, tmp_path: Path) -> None:
    await klctl("apply", "-f", write(tmp_path, "app.yaml", APP + "---" + pod_manifest("p1")))

    pods = await klctl("get", "pods")
    assert pods.code == 0, pods.err
    header, row = pods.out.splitlines()
    assert columns(header) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert row.split()[:4] == ["p1", "0/1", "Pending", "0"]
    assert row.split()[4].endswith("s")
    # kubectl's layout: each column is as wide as its longest cell plus three spaces.
    assert header.startswith("NAME   READY   STATUS    RESTARTS   AGE")

    wide = await klctl("get", "po", "-o", "wide")
    assert columns(wide.out.splitlines()[0]) == [
        "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE",
        "READINESS GATES",
    ]

    deploy = await klctl("get", "deploy")
    assert columns(deploy.out.splitlines()[0]) == [
        "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert deploy.out.splitlines()[1].split()[:4] == ["web", "0/2", "0", "0"]

    svc = await klctl("get", "svc", "web")
    assert columns(svc.out.splitlines()[0]) == [
        "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert svc.out.splitlines()[1].split()[1] == "ClusterIP"
    assert "80/TCP" in svc.out

    cm = await klctl("get", "cm", "--show-labels")
    assert columns(cm.out.splitlines()[0]) == ["NAME", "DATA", "AGE", "LABELS"]
    assert cm.out.splitlines()[1].split()[1] == "1"
    assert cm.out.splitlines()[1].split()[-1] == "app=web"

    ns = await klctl("get", "ns", "default", "--no-headers")
    assert ns.out.split()[:2] == ["default", "Active"]

    several = await klctl("get", "deploy,cm")
    assert "deployment.apps/web" in several.out and "configmap/settings" in several.out
    assert several.out.count("NAME") == 2


async def test_get_output_json_yaml_and_name(klctl: Klctl, tmp_path: Path) -> None:
    await klctl("apply", "-f", write(tmp_path, "app.yaml", APP))

    one = await klctl("get", "deployment", "web", "-o", "json")
    data = json.loads(one.out)
    assert data["apiVersion"] == "apps/v1" and data["kind"] == "Deployment"
    assert data["metadata"]["name"] == "web"
    assert data["spec"]["replicas"] == 2
    assert data["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx"

    many = json.loads((await klctl("get", "cm,deploy", "-o", "json")).out)
    assert many["kind"] == "List" and many["apiVersion"] == "v1"
    assert [i["kind"] for i in many["items"]] == ["ConfigMap", "Deployment"]

    listed = json.loads((await klctl("get", "deploy", "-o", "json")).out)
    assert listed["kind"] == "List" and len(listed["items"]) == 1

    import yaml

    doc = yaml.safe_load((await klctl("get", "cm", "settings", "-o", "yaml")).out)
    assert doc["kind"] == "ConfigMap" and doc["data"] == {"mode": "fast"}

    names = await klctl("get", "deploy,svc,cm", "-o", "name")
    assert names.out.splitlines() == [
        "deployment.apps/web", "service/kubernetes", "service/web", "configmap/settings"]

    bad = await klctl("get", "pods", "-o", "xml")
    assert bad.code == 1 and "xml" in bad.err


async def test_get_selectors_and_all_namespaces(klctl: Klctl, client: ApiClient,
                                                tmp_path: Path) -> None:
    await klctl("create", "namespace", "other")
    manifests = "---".join([
        pod_manifest("a", "{tier: front}"),
        pod_manifest("b", "{tier: back}"),
        pod_manifest("c", "{tier: front}", namespace="other"),
    ])
    assert (await klctl("apply", "-f", write(tmp_path, "pods.yaml", manifests))).code == 0

    front = await klctl("get", "pods", "-l", "tier=front", "-o", "name")
    assert front.out.splitlines() == ["pod/a"]
    by_field = await klctl("get", "pods", "--field-selector", "metadata.name=b", "-o", "name")
    assert by_field.out.splitlines() == ["pod/b"]
    phase = await klctl("get", "pods", "--field-selector", "status.phase=Running")
    assert phase.code == 0 and phase.out == ""
    assert phase.err.strip() == "No resources found in default namespace."

    everywhere = await klctl("get", "pods", "-A", "-l", "tier=front")
    header, *rows = everywhere.out.splitlines()
    assert columns(header)[:2] == ["NAMESPACE", "NAME"]
    assert sorted((r.split()[0], r.split()[1]) for r in rows) == [("default", "a"),
                                                                  ("other", "c")]
    none = await klctl("get", "pods", "-A", "-l", "tier=nothing")
    assert none.err.strip() == "No resources found"


async def test_get_missing_and_unknown(klctl: Klctl) -> None:
    missing = await klctl("get", "pods", "x")
    assert missing.code == 1
    assert missing.err.strip() == 'Error from server (NotFound): pods "x" not found'
    unknown = await klctl("get", "widgets")
    assert unknown.code == 1
    assert unknown.err.strip() == 'error: the server doesn\'t have a resource type "widgets"'
    empty = await klctl("get", "cm")
    assert (empty.code, empty.err.strip()) == (0, "No resources found in default namespace.")


async def watching_configmaps(api_server: ApiServer, before: int) -> None:
    """Until a watch of ConfigMaps more than ``before`` is open on the server."""
    cache = api_server.api.caches["configmaps"]
    await eventually(lambda: cache.watcher_count > before, timeout=10,
                     message="klctl's watch open on the server")


async def test_get_watch_prints_changes(klctl: Klctl, client: ApiClient,
                                        api_server: ApiServer) -> None:
    await client.create(v1.ConfigMap(metadata=v1.ObjectMeta(name="first")))
    before = api_server.api.caches["configmaps"].watcher_count
    watching = asyncio.create_task(klctl("get", "cm", "-w", "--request-timeout", "2s"))
    await watching_configmaps(api_server, before)
    await client.create(v1.ConfigMap(metadata=v1.ObjectMeta(name="second"), data={"k": "v"}))
    result = await watching
    assert result.code == 0, result.err
    out_lines = result.out.splitlines()
    assert columns(out_lines[0]) == ["NAME", "DATA", "AGE"]
    assert out_lines[1].split()[0] == "first"
    assert [line.split()[0] for line in out_lines[2:]] == ["second"]

    # The first watch has ended on the server too before the second starts.
    cache = api_server.api.caches["configmaps"]
    await eventually(lambda: cache.watcher_count == before, timeout=10,
                     message="the first watch closed on the server")
    only = asyncio.create_task(klctl("get", "cm", "--watch-only", "--request-timeout", "1.5s"))
    await watching_configmaps(api_server, before)
    await client.patch(v1.ConfigMap, "first", {"data": {"a": "b"}})
    result = await only
    assert [line.split()[:2] for line in result.out.splitlines()] == [["NAME", "DATA"],
                                                                      ["first", "1"]]


# ---------------------------------------------------------------------------- describe


async def test_describe_shows_fields_and_events(klctl: Klctl, client: ApiClient,
                                                tmp_path: Path) -> None:
    await klctl("apply", "-f", write(tmp_path, "app.yaml", APP + "---" + pod_manifest("p1")))
    quiet = await klctl("describe", "deploy", "web")
    assert quiet.code == 0, quiet.err
    text = quiet.out
    assert text.startswith("Name:")
    assert "Namespace:" in text and "default" in text
    assert "app=web" in text
    assert "Replicas:" in text and "2 desired" in text
    assert "Image:" in text and "nginx" in text
    assert text.rstrip().splitlines()[-1].split() == ["Events:", "<none>"]

    pod = await client.get(v1.Pod, "p1")
    event = v1.Event(
        metadata=v1.ObjectMeta(name="p1.1"),
        involved_object=v1.ObjectReference(kind="Pod", name="p1", namespace="default",
                                           uid=pod.metadata.uid),
        reason="Scheduled", message="Successfully assigned default/p1 to node-1",
        type="Normal", source=v1.EventSource(component="default-scheduler"),
        first_timestamp=pod.metadata.creation_timestamp,
        last_timestamp=pod.metadata.creation_timestamp, count=1,
    )
    await client.create(event)
    other = v1.Event()
    other.CopyFrom(event)
    other.metadata.name = "elsewhere"
    other.involved_object.name = "someone-else"
    other.reason = "NotMine"
    await client.create(other)

    described = await klctl("describe", "pod", "p1")
    assert described.code == 0, described.err
    lines_ = described.out.splitlines()
    start = lines_.index("Events:")
    assert lines_[start + 1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert lines_[start + 3].split()[:2] == ["Normal", "Scheduled"]
    assert "default-scheduler" in lines_[start + 3]
    assert "NotMine" not in described.out
    assert "Status:" in described.out and "Pending" in described.out

    missing = await klctl("describe", "pod", "nope")
    assert missing.code == 1 and 'pods "nope" not found' in missing.err


# ---------------------------------------------------------------------------- delete


async def test_delete_by_name_file_selector_and_all(klctl: Klctl, client: ApiClient,
                                                    tmp_path: Path) -> None:
    path = write(tmp_path, "app.yaml", APP)
    await klctl("apply", "-f", path)
    for name, tier in (("a", "x"), ("b", "x"), ("c", "y")):
        await client.create(v1.ConfigMap(metadata=v1.ObjectMeta(name=name, labels={"t": tier})))

    by_name = await klctl("delete", "cm", "a")
    assert (by_name.code, by_name.out.strip()) == (0, 'configmap "a" deleted')
    by_selector = await klctl("delete", "cm", "-l", "t=x")
    assert by_selector.out.strip() == 'configmap "b" deleted'
    from_file = await klctl("delete", "-f", path)
    assert from_file.out.splitlines() == [
        'configmap "settings" deleted', 'deployment.apps "web" deleted', 'service "web" deleted',
    ]
    everything = await klctl("delete", "cm", "--all")
    assert everything.out.strip() == 'configmap "c" deleted'
    assert (await client.list(v1.ConfigMap, "default")).items == []

    missing = await klctl("delete", "cm", "gone")
    assert missing.code == 1
    assert missing.err.strip() == 'Error from server (NotFound): configmaps "gone" not found'
    assert (await klctl("delete", "cm", "gone", "--ignore-not-found")).code == 0
    no_name = await klctl("delete", "cm")
    assert no_name.code == 1 and "no name was specified" in no_name.err


async def test_delete_pod_waits_until_gone(klctl: Klctl, client: ApiClient,
                                           tmp_path: Path) -> None:
    await klctl("apply", "-f", write(tmp_path, "p.yaml", pod_manifest("p1")))
    result = await klctl("delete", "pod", "p1", "--now")
    assert (result.code, result.out.strip()) == (0, 'pod "p1" deleted')
    with pytest.raises(errors.NotFound):
        await client.get(v1.Pod, "p1")


async def test_delete_cascade_policies_record_finalizers(klctl: Klctl,
                                                         client: ApiClient) -> None:
    for name in ("fg", "orphan", "bg"):
        await client.create(v1.ConfigMap(metadata=v1.ObjectMeta(name=name)))

    # Foreground and orphan leave a finalizer for the garbage collector: do not wait for it.
    fg = await klctl("delete", "cm", "fg", "--cascade=foreground", "--wait=false")
    assert (fg.code, fg.out.strip()) == (0, 'configmap "fg" deleted')
    marked = await client.get(v1.ConfigMap, "fg")
    assert list(marked.metadata.finalizers) == ["foregroundDeletion"]
    assert marked.metadata.deletion_timestamp

    orphan = await klctl("delete", "cm", "orphan", "--cascade=orphan", "--wait=false")
    assert orphan.code == 0
    assert list((await client.get(v1.ConfigMap, "orphan")).metadata.finalizers) == ["orphan"]

    background = await klctl("delete", "cm", "bg", "--cascade=background")
    assert background.code == 0
    with pytest.raises(errors.NotFound):
        await client.get(v1.ConfigMap, "bg")

    # Waiting on an object a finalizer holds ends with kubectl's timeout error.
    stuck = await klctl("delete", "cm", "fg", "--timeout=1s")
    assert stuck.code == 1
    assert "timed out waiting for the condition on configmaps/fg" in stuck.err

    bad = await klctl("delete", "cm", "x", "--cascade=sometimes")
    assert bad.code == 1 and "invalid cascade value (sometimes)" in bad.err


# ---------------------------------------------------------------- label / annotate / patch


async def test_label_and_annotate(klctl: Klctl, client: ApiClient) -> None:
    await client.create(v1.ConfigMap(metadata=v1.ObjectMeta(name="cm", labels={"app": "web"})))

    added = await klctl("label", "cm", "cm", "tier=front")
    assert (added.code, added.out.strip()) == (0, "configmap/cm labeled")
    clash = await klctl("label", "cm", "cm", "app=api")
    assert clash.code == 1
    assert clash.err.strip() == "error: 'app' already has a value (web), and --overwrite is false"
    assert (await klctl("label", "cm", "cm", "app=api", "--overwrite")).code == 0
    assert (await klctl("label", "cm/cm", "tier-")).out.strip() == "configmap/cm labeled"
    assert dict((await client.get(v1.ConfigMap, "cm")).metadata.labels) == {"app": "api"}
    same = await klctl("label", "cm", "cm", "app=api")
    assert same.out.strip() == "configmap/cm not labeled"

    assert (await klctl("annotate", "cm", "cm", "note=hi")).out.strip() == "configmap/cm annotated"
    clash = await klctl("annotate", "cm", "cm", "note=ho")
    assert clash.code == 1 and "'note' already has a value (hi)" in clash.err
    assert (await klctl("annotate", "cm", "cm", "note=ho", "--overwrite")).code == 0
    annotations = (await client.get(v1.ConfigMap, "cm")).metadata.annotations
    assert annotations["note"] == "ho"
    assert (await klctl("annotate", "cm", "cm", "note-")).code == 0
    assert "note" not in (await client.get(v1.ConfigMap, "cm")).metadata.annotations

    invalid = await klctl("label", "cm", "cm", "bad key=x")
    assert invalid.code == 1
    assert invalid.err.startswith("Error from server (Invalid):") and "metadata.labels" in \
        invalid.err


async def test_patch_merge_and_status(klctl: Klctl, client: ApiClient, tmp_path: Path) -> None:
    await klctl("apply", "-f", write(tmp_path, "app.yaml", APP))
    patched = await klctl("patch", "deploy", "web", "--type", "merge", "-p",
                        '{"spec": {"replicas": 5}}')
    assert (patched.code, patched.out.strip()) == (0, "deployment.apps/web patched")
    assert (await client.get(v1.Deployment, "web")).spec.replicas == 5
    again = await klctl("patch", "deploy", "web", "-p", '{"spec": {"replicas": 5}}')
    assert again.out.strip() == "deployment.apps/web patched (no change)"

    status = await klctl("patch", "deploy", "web", "--subresource", "status", "-p",
                       '{"status": {"readyReplicas": 4}}')
    assert status.code == 0, status.err
    assert (await client.get(v1.Deployment, "web")).status.ready_replicas == 4

    unknown = await klctl("patch", "deploy", "web", "--type", "apply", "-p", "{}")
    assert unknown.code == 1
    assert "--type apply is not supported" in unknown.err

    invalid = await klctl("patch", "deploy", "web", "-p", '{"spec": {"replicas": -1}}')
    assert invalid.code == 1
    assert "spec.replicas: Invalid value: -1: must be greater than or equal to 0" in invalid.err
    assert (await client.get(v1.Deployment, "web")).spec.replicas == 5


WEB_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: kubelite/agnhost:1.0
        args: [netexec, --http-port=8080]
        ports:
        - {containerPort: 8080, name: http}
        env:
        - {name: COLOR, value: blue}
        - {name: MODE, value: fast}
        resources:
          requests: {cpu: 100m, memory: 64Mi}
        readinessProbe:
          httpGet: {path: /readyz, port: 8080}
        livenessProbe:
          tcpSocket: {port: 8080}
"""


def web_container(d: v1.Deployment) -> v1.Container:
    (web,) = [c for c in d.spec.template.spec.containers if c.name == "web"]
    return web


async def test_patch_of_one_image_keeps_the_container_as_kubectl_does(
    klctl: Klctl, client: ApiClient, tmp_path: Path
) -> None:
    assert (await klctl("apply", "-f", write(tmp_path, "web.yaml", WEB_DEPLOYMENT))).code == 0
    before = web_container(await client.get(v1.Deployment, "web"))
    patched = await klctl("patch", "deploy", "web", "-p", json.dumps(
        {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x"}]}}}}))
    assert (patched.code, patched.out.strip()) == (0, "deployment.apps/web patched"), patched.err
    after = web_container(await client.get(v1.Deployment, "web"))
    assert after.image == "x"
    expected = v1.Container()
    expected.CopyFrom(before)
    expected.image = "x"
    assert after == expected  # args, ports, env, probes and resources all kept
    assert after.args and after.ports and after.env and after.resources.requests
    assert after.readiness_probe.http_get.path == "/readyz"

    # --type strategic says the same; --type merge replaces the list as RFC 7386 says.
    same = await klctl("patch", "deploy", "web", "--type", "strategic", "-p",
                       '{"spec": {"template": {"spec": {"containers": [{"name": "web",'
                       ' "image": "x"}]}}}}')
    assert same.out.strip() == "deployment.apps/web patched (no change)"
    merge = await klctl("patch", "deploy", "web", "--type", "merge", "-p",
                        '{"spec": {"template": {"spec": {"containers": [{"name": "web",'
                        ' "image": "y"}]}}}}')
    assert merge.code == 0, merge.err
    replaced = web_container(await client.get(v1.Deployment, "web"))
    assert replaced.image == "y"
    assert not replaced.args and not replaced.env and not replaced.ports


async def test_patch_type_json(klctl: Klctl, client: ApiClient, tmp_path: Path) -> None:
    assert (await klctl("apply", "-f", write(tmp_path, "web.yaml", WEB_DEPLOYMENT))).code == 0
    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-",
         "value": {"name": "SIZE", "value": "l"}},
        {"op": "remove", "path": "/spec/template/spec/containers/0/args"},
    ]
    patched = await klctl("patch", "deploy", "web", "--type", "json", "-p", json.dumps(ops))
    assert (patched.code, patched.out.strip()) == (0, "deployment.apps/web patched"), patched.err
    d = await client.get(v1.Deployment, "web")
    assert d.spec.replicas == 3
    assert [e.name for e in web_container(d).env] == ["COLOR", "MODE", "SIZE"]
    assert not web_container(d).args

    failed = await klctl("patch", "deploy", "web", "--type", "json", "-p",
                         '[{"op": "test", "path": "/spec/replicas", "value": 1},'
                         ' {"op": "replace", "path": "/spec/replicas", "value": 9}]')
    assert failed.code == 1
    assert failed.err.startswith("Error from server (Invalid):")
    assert "operation 0 (test /spec/replicas)" in failed.err
    assert (await client.get(v1.Deployment, "web")).spec.replicas == 3

    not_a_list = await klctl("patch", "deploy", "web", "--type", "json", "-p",
                             '{"spec": {"replicas": 2}}')
    assert not_a_list.code == 1
    assert "a JSON patch (--type json) must be a list of operations" in not_a_list.err
    not_an_object = await klctl("patch", "deploy", "web", "-p", '[{"op": "remove"}]')
    assert not_an_object.code == 1
    assert "a strategic merge patch must be a JSON object" in not_an_object.err
    bad_op = await klctl("patch", "deploy", "web", "--type", "json", "-p",
                         '[{"op": "frobnicate", "path": "/spec"}]')
    assert bad_op.code == 1
    assert bad_op.err.startswith("Error from server (BadRequest):")
    assert (await client.get(v1.Deployment, "web")).spec.replicas == 3


async def test_patch_too_deep_or_malformed_is_an_error_line(
    klctl: Klctl, client: ApiClient, tmp_path: Path
) -> None:
    assert (await klctl("apply", "-f", write(tmp_path, "web.yaml", WEB_DEPLOYMENT))).code == 0
    before = await client.get(v1.Deployment, "web")
    deep = '{"spec":' * 100_000 + "{}" + "}" * 100_000
    result = await klctl("patch", "deploy", "web", "-p", deep)
    assert result.code == 1
    assert "nests objects and lists more than" in result.err
    assert "Traceback" not in result.err
    nested = '{"spec":' * 200 + "{}" + "}" * 200  # parses, but too deep for the server
    result = await klctl("patch", "deploy", "web", "-p", nested)
    assert result.code == 1
    assert result.err.startswith("Error from server (BadRequest):")
    missing_key = await klctl("patch", "deploy", "web", "-p", json.dumps(
        {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}))
    assert missing_key.code == 1
    assert 'spec.template.spec.containers[0]: the element has no merge key "name"' in \
        missing_key.err
    assert await client.get(v1.Deployment, "web") == before


async def test_apply_keeps_what_others_added_to_a_container_and_drops_what_the_manifest_did(
    klctl: Klctl, client: ApiClient, tmp_path: Path
) -> None:
    path = write(tmp_path, "web.yaml", WEB_DEPLOYMENT)
    assert (await klctl("apply", "-f", path)).code == 0
    # Another writer: one more env var and a field of its own on the container, and a sidecar.
    other = {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "terminationMessagePath": "/tmp/why",
         "env": [{"name": "INJECTED", "value": "1"}]},
        {"name": "proxy", "image": "busybox", "command": ["sleep", "3600"]},
    ]}}}}
    await client.patch(v1.Deployment, "web", other, patch_type="strategic")

    # The manifest drops MODE and the args and changes the image.
    Path(path).write_text(
        Path(path).read_text()
        .replace("        - {name: MODE, value: fast}\n", "")
        .replace("        args: [netexec, --http-port=8080]\n", "")
        .replace("image: kubelite/agnhost:1.0", "image: kubelite/agnhost:2.0")
    )
    result = await klctl("apply", "-f", path)
    assert (result.code, result.out.strip()) == (0, "deployment.apps/web configured"), result.err
    d = await client.get(v1.Deployment, "web")
    assert sorted(c.name for c in d.spec.template.spec.containers) == ["proxy", "web"]
    web = web_container(d)
    assert web.image == "kubelite/agnhost:2.0"
    assert not web.args
    assert sorted(e.name for e in web.env) == ["COLOR", "INJECTED"]
    assert web.termination_message_path == "/tmp/why"
    assert [p.container_port for p in web.ports] == [8080]
    assert web.readiness_probe.http_get.path == "/readyz"

    again = await klctl("apply", "-f", path)
    assert again.out.strip() == "deployment.apps/web unchanged"


# ---------------------------------------------------------------- version / api-resources


async def test_version_and_api_resources(klctl: Klctl) -> None:
    version = await klctl("version")
    assert version.code == 0
    assert version.out.startswith("Client Version: v")
    assert "SERVING" in version.out
    resources = await klctl("api-resources")
    header, *rows = resources.out.splitlines()
    assert columns(header) == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert ["deployments", "deploy", "apps/v1", "true", "Deployment"] in [r.split() for r in rows]


# ---------------------------------------------------------------------------- bad input


BAD_CASES = {
    "invalid-name": (
        """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: Invalid_Name}
        """,
        v1.ConfigMap,
        ['ConfigMap "Invalid_Name" is invalid', 'metadata.name: Invalid value: "Invalid_Name"',
         "RFC 1123"],
    ),
    "unknown-field": (
        """
        apiVersion: v1
        kind: Pod
        metadata: {name: typo}
        spec:
          containers:
          - name: main
            imagee: busybox
        """,
        v1.Pod,
        ["spec.containers[0].imagee: Unknown field"],
    ),
    "wrong-type": (
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: "three"
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers: [{name: main, image: nginx}]
        """,
        v1.Deployment,
        ['spec.replicas: Invalid type: "three": expected integer'],
    ),
    "bad-quantity": (
        """
        apiVersion: v1
        kind: Pod
        metadata: {name: hungry}
        spec:
          containers:
          - name: main
            image: busybox
            resources:
              requests: {cpu: abc}
        """,
        v1.Pod,
        ['spec.containers[0].resources.requests[cpu]: Invalid value: "abc"',
         "quantities must match"],
    ),
    "negative-replicas": (
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: -1
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers: [{name: main, image: nginx}]
        """,
        v1.Deployment,
        ['error validating "',
         'Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater'
         + ' than or equal to 0'],
    ),
    "missing-namespace": (
        """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: lost, namespace: nowhere}
        """,
        v1.ConfigMap,
        ['Error from server (NotFound): namespaces "nowhere" not found'],
    ),
}


@pytest.mark.parametrize("verb", ["apply", "create"])
@pytest.mark.parametrize("case", list(BAD_CASES))
async def test_bad_manifest_is_reported_and_writes_nothing(
    klctl: Klctl, client: ApiClient, tmp_path: Path, case: str, verb: str
) -> None:
    text, kind, expected = BAD_CASES[case]
    path = write(tmp_path, "bad.yaml", text)
    result = await klctl(verb, "-f", path)
    assert result.code == 1
    assert result.out == ""
    for fragment in expected:
        assert fragment in result.err, result.err
    assert "Traceback" not in result.err
    assert (await client.list(kind, "")).items == []


async def test_text_that_is_not_yaml_applies_nothing(
    klctl: Klctl, client: ApiClient, tmp_path: Path
) -> None:
    path = write(tmp_path, "bad.yaml", """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: fine}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: [broken
            x: y
    """)
    result = await klctl("apply", "-f", path)
    assert result.code == 1
    assert result.err.startswith(f"error: error parsing {path}: line ")
    assert (await client.list(v1.ConfigMap, "default")).items == []

    prose = write(tmp_path, "prose.yaml", "this is not a manifest\n")
    result = await klctl("apply", "-f", prose)
    assert result.code == 1 and result.err.startswith(f"error: error parsing {prose}: line 1")


async def test_one_bad_document_does_not_stop_the_others(
    klctl: Klctl, client: ApiClient, tmp_path: Path
) -> None:
    path = write(tmp_path, "mixed.yaml", """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: Invalid_Name}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: good}
    """)
    result = await klctl("apply", "-f", path)
    assert result.code == 1
    assert result.out.strip() == "configmap/good created"
    assert 'metadata.name: Invalid value: "Invalid_Name"' in result.err
    names = [c.metadata.name for c in (await client.list(v1.ConfigMap, "default")).items]
    assert names == ["good"]


async def test_unreachable_server_fails_fast(capsys: pytest.CaptureFixture[str]) -> None:
    from kubelite.testing.ports import free_port

    address = f"127.0.0.1:{free_port()}"
    code = await asyncio.to_thread(main, ["-s", address, "--request-timeout", "30s", "get", "po"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach the API server at {address}: ")
    # The refusal itself, not the request timeout that waiting for the server would reach.
    assert "Connection refused" in err and "Deadline" not in err, err
    assert "Traceback" not in err


async def test_server_from_environment_and_config_file(
    api_server: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kubelite.cli.config import write_config

    config = write_config(tmp_path / "kube" / "config", api_server.address)
    monkeypatch.delenv("KUBELITE_SERVER", raising=False)
    monkeypatch.setenv("KUBELITE_CONFIG", str(config))
    assert await asyncio.to_thread(main, ["get", "ns", "default", "-o", "name"]) == 0
    assert capsys.readouterr().out.strip() == "namespace/default"
    monkeypatch.setenv("KUBELITE_SERVER", "127.0.0.1:1")  # the environment wins over the file
    assert await asyncio.to_thread(main, ["get", "ns"]) == 1
    assert "127.0.0.1:1" in capsys.readouterr().err


async def test_force_delete_of_a_terminating_pod(klctl: Klctl, client: ApiClient) -> None:
    pod = v1.Pod(metadata=v1.ObjectMeta(name="bound"))
    pod.spec.containers.add(name="main", image="busybox")
    pod.spec.node_name = "node-1"  # a kubelet would have to confirm a graceful stop
    await client.create(pod)

    graceful = await klctl("delete", "pod", "bound", "--wait=false")
    assert graceful.out.strip() == 'pod "bound" deleted'
    row = (await klctl("get", "pod", "bound", "--no-headers")).out.split()
    assert row[:3] == ["bound", "0/1", "Terminating"]

    forced = await klctl("delete", "pod", "bound", "--force", "--grace-period=0")
    assert forced.code == 0, forced.err
    assert forced.out.strip() == 'pod "bound" force deleted'
    assert "Immediate deletion does not wait" in forced.err
    with pytest.raises(errors.NotFound):
        await client.get(v1.Pod, "bound")


# ---------------------------------------------------------------------------- printers


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-5, "<invalid>"), (-1, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"),
     (192, "3m12s"), (600, "10m"), (179 * 60, "179m"), (4 * 3600, "4h"),
     (4 * 3600 + 30 * 60, "4h30m"), (20 * 3600, "20h"), (51 * 3600, "2d3h"),
     (10 * 86400, "10d"), (800 * 86400, "2y70d"), (9 * 365 * 86400, "9y")],
)
def test_ages_as_kubectl_prints_them(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def _pod_with(**status: object) -> v1.Pod:
    pod = v1.Pod(metadata=v1.ObjectMeta(name="p"))
    pod.spec.containers.add(name="a", image="i")
    pod.spec.containers.add(name="b", image="i")
    pod.status.phase = "Pending"
    for key, value in status.items():
        getattr(pod.status, key).extend(value)
    return pod


def test_pod_status_column_follows_kubectl() -> None:
    now = meta.now()
    assert pod_status(_pod_with(), now) == ("0/2", "Pending", "0")

    waiting = _pod_with(container_statuses=[
        v1.ContainerStatus(name="a", ready=True, restart_count=1,
                           state=v1.ContainerState(running=v1.ContainerStateRunning())),
        v1.ContainerStatus(name="b", restart_count=2, state=v1.ContainerState(
            waiting=v1.ContainerStateWaiting(reason="CrashLoopBackOff"))),
    ])
    waiting.status.phase = "Running"
    assert pod_status(waiting, now) == ("1/2", "CrashLoopBackOff", "3")

    killed = _pod_with(container_statuses=[
        v1.ContainerStatus(name="a", state=v1.ContainerState(
            terminated=v1.ContainerStateTerminated(exit_code=137, signal=9))),
    ])
    assert pod_status(killed, now)[1] == "Signal:9"

    init = _pod_with(init_container_statuses=[
        v1.ContainerStatus(name="i1", state=v1.ContainerState(
            terminated=v1.ContainerStateTerminated(exit_code=0, reason="Completed"))),
        v1.ContainerStatus(name="i2", state=v1.ContainerState(running=v1.ContainerStateRunning())),
    ])
    init.spec.init_containers.add(name="i1", image="i")
    init.spec.init_containers.add(name="i2", image="i")
    assert pod_status(init, now)[1] == "Init:1/2"

    init_failed = _pod_with(init_container_statuses=[
        v1.ContainerStatus(name="i1", state=v1.ContainerState(
            terminated=v1.ContainerStateTerminated(exit_code=3))),
    ])
    init_failed.spec.init_containers.add(name="i1", image="i")
    assert pod_status(init_failed, now)[1] == "Init:ExitCode:3"

    terminating = _pod_with()
    terminating.metadata.deletion_timestamp = meta.now_rfc3339()
    assert pod_status(terminating, now)[1] == "Terminating"
    terminating.status.phase = "Succeeded"
    assert pod_status(terminating, now)[1] == "Succeeded"
