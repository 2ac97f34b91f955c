"""Manifests from the Kubernetes docs through klctl and a real API server: what kubelite runs,
and what it refuses with a clear message and nothing written (claims and storage classes it
does not serve yet, volume types it lacks)."""

from __future__ import annotations

from pathlib import Path

from apiserver.etcd import prefix_end
from apiserver.server import ApiServer
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import Klctl, write

MANIFESTS = Path(__file__).parents[1] / "unit" / "manifests"

# https://kubernetes.io/docs/concepts/storage/persistent-volumes/ (the claim and the volume).
PVC = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: myclaim
spec:
  accessModes:
    - ReadWriteOnce
  volumeMode: Filesystem
  resources:
    requests:
      storage: 8Gi
  storageClassName: slow
"""

PV = """
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv0003
spec:
  capacity:
    storage: 5Gi
  volumeMode: Filesystem
  accessModes:
    - ReadWriteOnce
  persistentVolumeReclaimPolicy: Recycle
  storageClassName: slow
  hostPath:
    path: /tmp/pv0003
"""

# https://kubernetes.io/docs/concepts/storage/storage-classes/ (the local example).
STORAGE_CLASS = """
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-storage
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
"""

POD_WITH_CLAIM = """
apiVersion: v1
kind: Pod
metadata:
  name: mypod
spec:
  containers:
    - name: myfrontend
      image: nginx
      volumeMounts:
      - mountPath: "/var/www/html"
        name: mypd
  volumes:
    - name: mypd
      persistentVolumeClaim:
        claimName: myclaim
"""

# https://kubernetes.io/docs/tasks/configure-pod-container/configure-projected-volume-storage/
PROJECTED = """
apiVersion: v1
kind: Pod
metadata:
  name: test-projected-volume
spec:
  containers:
  - name: test-projected-volume
    image: busybox:1.28
    args:
    - sleep
    - "86400"
    volumeMounts:
    - name: all-in-one
      mountPath: "/projected-volume"
      readOnly: true
  volumes:
  - name: all-in-one
    projected:
      sources:
      - secret:
          name: user
      - secret:
          name: pass
"""


async def stored_keys(api_server: ApiServer, part: str) -> list[str]:
    prefix = f"{api_server.settings.api.storage_prefix}/".encode()
    response = await api_server.etcd.range(prefix, prefix_end(prefix))
    return [kv.key.decode() for kv in response.kvs if part in kv.key.decode()]


async def test_persistent_volume_claims_and_storage_classes_are_refused_volumes_served(
    klctl: Klctl, api_server: ApiServer, tmp_path: Path
) -> None:
    claim = await klctl("apply", "-f", write(tmp_path, "pvc.yaml", PVC))
    assert claim.code != 0
    assert 'error validating "' in claim.err
    assert 'PersistentVolumeClaims are not supported' in claim.err, claim.err
    storage_class = await klctl("apply", "-f", write(tmp_path, "sc.yaml", STORAGE_CLASS))
    assert storage_class.code != 0
    assert "StorageClasses are not supported" in storage_class.err, storage_class.err
    volume = await klctl("create", "-f", write(tmp_path, "pv.yaml", PV))
    assert volume.code == 0, volume.err
    assert volume.lines == ["persistentvolume/pv0003 created"]
    listed = await klctl("get", "pvc")
    assert listed.code != 0
    assert 'the server doesn\'t have a resource type "pvc"' in listed.err, listed.err
    assert await stored_keys(api_server, "persistentvolume") == [
        f"{api_server.settings.api.storage_prefix}/persistentvolumes/pv0003"]


async def test_pod_with_a_claim_volume_is_refused(
    klctl: Klctl, client: ApiClient, tmp_path: Path
) -> None:
    result = await klctl("apply", "-f", write(tmp_path, "pod.yaml", POD_WITH_CLAIM))
    assert result.code != 0
    assert ('spec.volumes[0].persistentVolumeClaim: Unsupported value: persistentVolumeClaim'
            ' volumes are not supported') in result.err, result.err
    assert (await client.list(v1.Pod, "default")).items == []


async def test_the_docs_projected_volume_is_accepted(
    klctl: Klctl, client: ApiClient, tmp_path: Path
) -> None:
    # Kubernetes' docs example (tasks/configure-pod-container/configure-projected-volume).
    result = await klctl("apply", "-f", write(tmp_path, "projected.yaml", PROJECTED))
    assert result.code == 0, result.err
    pod = await client.get(v1.Pod, "test-projected-volume", "default")
    sources = pod.spec.volumes[0].projected.sources
    assert [s.secret.name for s in sources] == ["user", "pass"]
    assert pod.spec.volumes[0].projected.default_mode == 0o644


async def test_canonical_stateful_set_is_accepted(
    klctl: Klctl, client: ApiClient
) -> None:
    result = await klctl("apply", "-f", str(MANIFESTS / "statefulset.yaml"))
    assert result.code == 0, result.err
    assert result.out.strip() == "statefulset.apps/web created"
    sts = await client.get(v1.StatefulSet, "web", "default")
    assert [c.metadata.name for c in sts.spec.volume_claim_templates] == ["www"]
