"""controller_manager.pod_facts: the pod index by controller uid, the facts a ReplicaSet sync
reads (the same answers as reading the pod), their cache by cached object, and label
matching by set inclusion."""

from __future__ import annotations

import datetime as dt

import pytest

from controller_manager.pod_facts import (
    LabelMatcher,
    PodFactsCache,
    add_controller_index,
    controlled_by,
    orphans,
    pod_facts,
)
from controller_manager.workload import pod_available
from kubelite.api import meta as m
from kubelite.api import pods as podutil
from kubelite.api.labels import parse_selector
from kubelite.client.informer import Store
from protos.v1 import objects_pb2 as v1

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def pod(name: str, namespace: str = "default", *, controller: str | None = None,
        other_owner: str | None = None, labels: dict[str, str] | None = None,
        ready: bool | None = True, ready_for: float = 60.0, phase: str = "Running",
        deleting: bool = False) -> v1.Pod:
    p = v1.Pod(metadata=v1.ObjectMeta(name=name, namespace=namespace, uid=f"uid-{name}"))
    p.metadata.labels.update(labels if labels is not None else {"app": "web"})
    if other_owner is not None:
        p.metadata.owner_references.add(kind="ConfigMap", name="x", uid=other_owner)
    if controller is not None:
        p.metadata.owner_references.add(kind="ReplicaSet", name="rs", uid=controller,
                                        controller=True)
    if deleting:
        p.metadata.deletion_timestamp = m.format_time(NOW)
    p.status.phase = phase
    if ready is not None:
        p.status.conditions.add(type="Ready", status="True" if ready else "False",
                                last_transition_time=m.format_time(
                                    NOW - dt.timedelta(seconds=ready_for)))
    return p


def test_pods_are_indexed_by_controller_and_orphans_by_namespace() -> None:
    store: Store[v1.Pod] = Store()
    add_controller_index(store)
    store.put(pod("a", controller="rs-1"))
    store.put(pod("b", controller="rs-1", other_owner="cm-1"))
    store.put(pod("c", controller="rs-2"))
    store.put(pod("orphan"))
    store.put(pod("owned-not-controlled", other_owner="cm-1"))
    store.put(pod("elsewhere", "other"))
    assert sorted(p.metadata.name for p in controlled_by(store, "rs-1")) == ["a", "b"]
    assert [p.metadata.name for p in controlled_by(store, "cm-1")] == []
    assert sorted(p.metadata.name for p in orphans(store, "default")) == [
        "orphan", "owned-not-controlled"]
    assert [p.metadata.name for p in orphans(store, "other")] == ["elsewhere"]
    # Adopted: the pod moves from the orphans to its controller.
    store.put(pod("orphan", controller="rs-2"))
    assert "orphan" not in [p.metadata.name for p in orphans(store, "default")]
    assert sorted(p.metadata.name for p in controlled_by(store, "rs-2")) == ["c", "orphan"]


@pytest.mark.parametrize("p", [
    pod("ready"), pod("not-ready", ready=False), pod("no-condition", ready=None),
    pod("just-ready", ready_for=5), pod("pending", phase="Pending", ready=False),
    pod("failed", phase="Failed", ready=False), pod("deleting", deleting=True),
    pod("no-transition-time"),
], ids=lambda p: p.metadata.name)
@pytest.mark.parametrize("min_ready", [0, 30])
def test_facts_answer_as_the_pod_does(p: v1.Pod, min_ready: int) -> None:
    if p.metadata.name == "no-transition-time":
        p.status.conditions[0].last_transition_time = ""
    facts = pod_facts(p)
    assert facts.active == podutil.is_active(p)
    assert facts.ready == podutil.is_ready(p)
    assert facts.available(min_ready, NOW) == pod_available(p, min_ready, NOW)
    assert facts.labels == dict(p.metadata.labels)


def test_fully_labeled_needs_every_template_label() -> None:
    facts = pod_facts(pod("p", labels={"app": "web", "tier": "front"}))
    assert facts.fully_labeled(frozenset({("app", "web")}))
    assert facts.fully_labeled(frozenset({("app", "web"), ("tier", "front")}))
    assert not facts.fully_labeled(frozenset({("app", "web"), ("tier", "back")}))
    assert not facts.fully_labeled(frozenset({("extra", "1")}))


@pytest.mark.parametrize("selector", [
    "app=web", "app==web,tier=front", "app in (web)", "", "app in (web,api)", "app!=web",
    "tier", "!tier", "app notin (api)",
])
@pytest.mark.parametrize("labels", [
    {"app": "web"}, {"app": "web", "tier": "front"}, {"app": "api"}, {},
])
def test_label_matcher_agrees_with_the_selector(selector: str, labels: dict[str, str]) -> None:
    parsed = parse_selector(selector)
    facts = pod_facts(pod("p", labels=labels))
    assert LabelMatcher(parsed).matches(facts) == parsed.matches(labels)


def test_cache_reads_each_cached_object_once_and_follows_replacements() -> None:
    cache = PodFactsCache()
    a, b = pod("a"), pod("b", ready=False)
    first = cache.facts("default/rs", [a, b])
    again = cache.facts("default/rs", [a, b])
    assert again[0] is first[0] and again[1] is first[1]
    # The informer replaces b with a new object (now ready): its facts are read anew.
    b2 = pod("b", ready=True)
    third = cache.facts("default/rs", [a, b2])
    assert third[0] is first[0]
    assert third[1] is not first[1] and third[1].ready
    # Pods the owner no longer has are dropped; a forgotten owner keeps nothing.
    cache.facts("default/rs", [b2])
    assert len(cache) == 1
    cache.forget("default/rs")
    assert len(cache) == 0
