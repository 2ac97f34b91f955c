"""klctl rollout / scale / set image against a real API server with the replicaset and
deployment controllers and hollow nodes running.

klctl's ``main`` runs its own event loop, so each call runs in a thread while the servers
keep running on the test's loop.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from apiserver.server import ApiServer
from kubelite.api import podtemplate
from kubelite.cli.klctl import main
from kubelite.cli.klctl.rollout import rollout_status_line
from kubelite.client.client import ApiClient
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import NS, Klctl, new_deployment, running_cluster, wait_rolled_out

REVISION = "deployment.kubernetes.io/revision"


@pytest.fixture
async def cluster(api_server: ApiServer, client: ApiClient) -> AsyncIterator[ApiClient]:
    async with running_cluster(api_server, client) as c:
        yield c


async def revisions(client: ApiClient) -> dict[str, int]:
    """Revision of each ReplicaSet of the Deployment, by image."""
    rss = (await client.list(v1.ReplicaSet, NS)).items
    return {rs.spec.template.spec.containers[0].image: int(rs.metadata.annotations[REVISION])
            for rs in rss}


async def test_rollout_status_waits_for_the_rollout(
        cluster: ApiClient, api_server: ApiServer, capsys: pytest.CaptureFixture[str],
        klctl: Klctl) -> None:
    client = cluster
    d = new_deployment(replicas=3)
    d.spec.paused = True  # nothing rolls out until the status command is waiting
    await client.create(d)

    async def observed() -> bool:
        d = await client.get(v1.Deployment, "web", NS)
        return d.status.observed_generation == d.metadata.generation

    await eventually(observed, message="the paused deployment observed")
    capsys.readouterr()
    status = asyncio.create_task(asyncio.to_thread(
        main, ["--server", api_server.address, "rollout", "status", "deployment/web",
               "--timeout=20s"]))
    printed: list[str] = []

    def waiting() -> bool:
        printed.append(capsys.readouterr().out)
        return "Waiting" in "".join(printed)

    await eventually(waiting, message="status to wait")
    await client.patch(v1.Deployment, "web", {"spec": {"paused": False}}, NS)
    code = await status
    printed.append(capsys.readouterr().out)
    # Only klctl's lines: the controllers in this process log to stdout too.
    lines = [line for line in "".join(printed).splitlines()
             if line.startswith(("Waiting", 'deployment "web"'))]
    assert code == 0
    assert lines[0] == ('Waiting for deployment "web" rollout to finish: 0 out of 3 new'
                        " replicas have been updated...")
    assert lines[-1] == 'deployment "web" successfully rolled out'
    assert all(a != b for a, b in itertools.pairwise(lines))  # on change only
    again = await klctl("rollout", "status", "deployment", "web")
    assert again.lines == ['deployment "web" successfully rolled out']


def test_rollout_status_lines_follow_kubectl() -> None:
    d = new_deployment(replicas=3)
    d.metadata.generation = 2
    d.status.observed_generation = 1
    assert rollout_status_line(d) == ("Waiting for deployment spec update to be observed...",
                                      False)
    d.status.observed_generation = 2
    d.status.replicas, d.status.updated_replicas = 4, 3
    assert rollout_status_line(d)[0] == ('Waiting for deployment "web" rollout to finish: 1 old'
                                         " replicas are pending termination...")
    d.status.replicas, d.status.available_replicas = 3, 2
    assert rollout_status_line(d)[0] == ('Waiting for deployment "web" rollout to finish: 2 of'
                                         " 3 updated replicas are available...")
    d.status.available_replicas = 3
    assert rollout_status_line(d) == ('deployment "web" successfully rolled out', True)


async def test_set_image_history_and_undo(cluster: ApiClient, klctl: Klctl) -> None:
    client = cluster
    d = new_deployment(replicas=2)
    d.metadata.annotations["kubernetes.io/change-cause"] = "first release"
    await client.create(d)
    await wait_rolled_out(client, "web", 2)

    result = await klctl("set", "image", "deployment/web", "main=nginx:2")
    assert (result.code, result.lines) == (0, ["deployment.apps/web image updated"])
    await wait_rolled_out(client, "web", 2, image="nginx:2")
    assert await revisions(client) == {"nginx:1": 1, "nginx:2": 2}

    history = await klctl("rollout", "history", "deployment/web")
    assert history.code == 0, history.err
    assert history.lines == ["deployment.apps/web ", "REVISION  CHANGE-CAUSE",
                             "1         first release", "2         first release", ""]

    undo = await klctl("rollout", "undo", "deployment/web")
    assert (undo.code, undo.lines) == (0, ["deployment.apps/web rolled back"])
    d = await wait_rolled_out(client, "web", 2, image="nginx:1")
    assert podtemplate.POD_TEMPLATE_HASH_LABEL not in d.spec.template.metadata.labels
    # The old ReplicaSet is back, as a new revision.
    assert await revisions(client) == {"nginx:1": 3, "nginx:2": 2}
    assert d.metadata.annotations[REVISION] == "3"
    history = await klctl("rollout", "history", "deployment/web")
    assert [line.split()[0] for line in history.lines[2:] if line] == ["2", "3"]

    back = await klctl("rollout", "undo", "deployment/web", "--to-revision=2")
    assert back.code == 0, back.err
    await wait_rolled_out(client, "web", 2, image="nginx:2")
    assert await revisions(client) == {"nginx:1": 3, "nginx:2": 4}

    same = await klctl("rollout", "undo", "deployment/web", "--to-revision=4")
    assert same.lines == ["deployment.apps/web skipped rollback (current template already"
                          " matches revision 4)"]
    missing = await klctl("rollout", "undo", "deployment/web", "--to-revision=9")
    assert missing.code == 1
    assert missing.err.strip() == "error: unable to find specified revision 9 in history"

    detail = await klctl("rollout", "history", "deployment/web", "--revision=3")
    assert detail.lines[0] == "deployment.apps/web with revision #3"
    assert "image: nginx:1" in detail.out

    bad = await klctl("set", "image", "deployment/web", "nope=nginx:3")
    assert (bad.code, bad.err.strip()) == (1, 'error: unable to find container named "nope"')


async def test_restart_pause_and_resume(cluster: ApiClient, klctl: Klctl) -> None:
    client = cluster
    await client.create(new_deployment(replicas=2))
    await wait_rolled_out(client, "web", 2)
    before = {p.metadata.name for p in (await client.list(v1.Pod, NS)).items}

    restart = await klctl("rollout", "restart", "deployment/web")
    assert (restart.code, restart.lines) == (0, ["deployment.apps/web restarted"])
    d = await wait_rolled_out(client, "web", 2)
    assert "kubectl.kubernetes.io/restartedAt" in d.spec.template.metadata.annotations
    after = {p.metadata.name for p in (await client.list(v1.Pod, NS)).items}
    assert not before & after
    rss = (await client.list(v1.ReplicaSet, NS)).items
    assert sorted(rs.metadata.annotations[REVISION] for rs in rss) == ["1", "2"]

    assert (await klctl("rollout", "pause", "deployment/web")).lines == [
        "deployment.apps/web paused"]
    again = await klctl("rollout", "pause", "deployment/web")
    assert (again.code, again.err.strip()) == (
        1, 'error: deployments.apps "web" is already paused')
    blocked = await klctl("rollout", "restart", "deployment/web")
    assert blocked.code == 1 and "run rollout resume first" in blocked.err
    undo = await klctl("rollout", "undo", "deployment/web")
    assert undo.code == 1 and "resume it first" in undo.err
    assert (await klctl("rollout", "resume", "deployment/web")).lines == [
        "deployment.apps/web resumed"]
    assert not (await client.get(v1.Deployment, "web", NS)).spec.paused


async def test_scale(cluster: ApiClient, klctl: Klctl) -> None:
    client = cluster
    await client.create(new_deployment(replicas=2))
    await wait_rolled_out(client, "web", 2)
    result = await klctl("scale", "--replicas=4", "deployment/web")
    assert (result.code, result.lines) == (0, ["deployment.apps/web scaled"])
    await wait_rolled_out(client, "web", 4)

    rs = v1.ReplicaSet(metadata=v1.ObjectMeta(name="cache", namespace=NS))
    rs.spec.replicas = 3
    rs.spec.selector.match_labels["app"] = "cache"
    rs.spec.template.metadata.labels["app"] = "cache"
    rs.spec.template.spec.containers.add(name="main", image="redis")
    await client.create(rs)
    result = await klctl("scale", "replicaset", "cache", "--replicas", "1")
    assert (result.code, result.lines) == (0, ["replicaset.apps/cache scaled"])

    async def one_cache_pod() -> bool:
        pods = (await client.list(v1.Pod, NS, label_selector="app=cache")).items
        return len([p for p in pods if not p.metadata.deletion_timestamp]) == 1

    await eventually(one_cache_pod, timeout=20, message="cache scaled to 1")

    sts = v1.StatefulSet(metadata=v1.ObjectMeta(name="db", namespace=NS))
    sts.spec.replicas = 1
    sts.spec.service_name = "db"
    sts.spec.selector.match_labels["app"] = "db"
    sts.spec.template.metadata.labels["app"] = "db"
    sts.spec.template.spec.containers.add(name="main", image="postgres")
    await client.create(sts)
    result = await klctl("scale", "sts/db", "--replicas=3")
    assert result.code == 0, result.err
    assert (await client.get(v1.StatefulSet, "db", NS)).spec.replicas == 3

    wrong = await klctl("scale", "deployment/web", "--replicas=1", "--current-replicas=2")
    assert (wrong.code, wrong.err.strip()) == (1, "error: Expected replicas to be 2, was 4")
    assert (await client.get(v1.Deployment, "web", NS)).spec.replicas == 4
    pods = await klctl("scale", "pods", "x", "--replicas=1")
    assert pods.code == 1 and "cannot scale pods" in pods.err
