"""What a controller reads of each of its pods at every sync, read once per cached version.

A ReplicaSet of 1,000 pods syncs after nearly every pod event, and each sync looks at every
pod: labels, phase, deletion, the Ready condition. Read from the protobuf messages each
time, that is most of the controller manager's work at that scale. Informer caches replace
an object on every change and never change it in place (cached objects are read-only), so
the facts of one cached object never change: ``PodFactsCache`` keeps them per owner, by
object, for as long as the owner's pods still include that object.

The pods of one owner come from the shared pod informer's index by controller uid
(upstream's PodControllerUIDIndex), orphans under one key per namespace, so a sync looks
at its own pods and the namespace's orphans only, not at every pod of the namespace.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api import pods as podutil
from kubelite.api.labels import Operator, Selector
from kubelite.client.informer import Store
from protos.v1 import objects_pb2 as v1

CONTROLLER_INDEX = "controller-uid"
"""The shared pod informer's index of pods by their controller's uid (orphans: see
``orphan_key``)."""


def orphan_key(namespace: str) -> str:
    """The CONTROLLER_INDEX value of the orphans of ``namespace`` (a uid has no slash)."""
    return f"{namespace}/_ORPHAN_POD"


def index_by_controller_uid(obj: Message) -> list[str]:
    ref = m.controller_of(obj)
    if ref is not None:
        return [ref.uid]
    return [orphan_key(m.meta(obj).namespace)]


def add_controller_index(store: Store[v1.Pod]) -> None:
    """Indexes ``store`` by controller uid (controllers sharing the store all ask)."""
    store.add_indexer(CONTROLLER_INDEX, index_by_controller_uid)


def controlled_by(store: Store[v1.Pod], uid: str) -> list[v1.Pod]:
    """The cached pods whose controller has ``uid``."""
    return store.by_index(CONTROLLER_INDEX, uid)


def orphans(store: Store[v1.Pod], namespace: str) -> list[v1.Pod]:
    """The cached pods of ``namespace`` without a controller."""
    return store.by_index(CONTROLLER_INDEX, orphan_key(namespace))


@dataclass(frozen=True, slots=True)
class PodFacts:
    labels: Mapping[str, str]
    label_items: frozenset[tuple[str, str]]
    """The labels as pairs: a set of required pairs matches by inclusion."""
    active: bool
    """Counts toward replicas: not finished and not being deleted."""
    ready: bool
    ready_since: dt.datetime | None
    """When Ready: the Ready condition's last transition (None when it has none)."""

    def fully_labeled(self, template_labels: frozenset[tuple[str, str]]) -> bool:
        """Carries every label of the template (``template_labels`` as pairs)."""
        return template_labels <= self.label_items

    def available(self, min_ready_seconds: int, now: dt.datetime) -> bool:
        """Ready for at least minReadySeconds (upstream's podutil.IsPodAvailable)."""
        if not self.ready:
            return False
        if min_ready_seconds <= 0:
            return True
        if self.ready_since is None:
            return False
        return self.ready_since + dt.timedelta(seconds=min_ready_seconds) <= now


def pod_facts(pod: v1.Pod) -> PodFacts:
    ready = False
    since: dt.datetime | None = None
    for condition in pod.status.conditions:
        if condition.type == "Ready":
            ready = condition.status == "True"
            if ready and condition.last_transition_time:
                since = m.parse_time(condition.last_transition_time)
            break
    labels = dict(pod.metadata.labels)
    return PodFacts(labels, frozenset(labels.items()), podutil.is_active(pod), ready, since)


_EXACT = (Operator.EQUALS, Operator.DOUBLE_EQUALS)


class LabelMatcher:
    """``selector.matches`` over PodFacts: by set inclusion when the selector only asks for
    exact values (a Deployment's or ReplicaSet's matchLabels), else the selector itself."""

    def __init__(self, selector: Selector) -> None:
        self.selector = selector
        self.required: frozenset[tuple[str, str]] | None = None
        if not selector.nothing and all(
                r.operator in _EXACT or (r.operator is Operator.IN and len(r.values) == 1)
                for r in selector.requirements):
            self.required = frozenset((r.key, r.values[0]) for r in selector.requirements)

    def matches(self, facts: PodFacts) -> bool:
        if self.required is not None:
            return self.required <= facts.label_items
        return self.selector.matches(facts.labels)


class PodFactsCache:
    """PodFacts of each owner's pods, by cached object, kept while the owner still has it."""

    def __init__(self) -> None:
        self._by_owner: dict[str, dict[int, tuple[v1.Pod, PodFacts]]] = {}

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._by_owner.values())

    def facts(self, owner_key: str, pods: Sequence[v1.Pod]) -> list[PodFacts]:
        """The facts of ``pods`` (the owner's pods now), in order; the owner's entries become
        exactly these pods."""
        known = self._by_owner.get(owner_key, {})
        fresh: dict[int, tuple[v1.Pod, PodFacts]] = {}
        result: list[PodFacts] = []
        for pod in pods:
            entry = known.get(id(pod))
            # The entry holds its pod, so an id seen here is still that pod's unless the
            # pod was replaced: check it is the same object.
            if entry is None or entry[0] is not pod:
                entry = (pod, pod_facts(pod))
            fresh[id(pod)] = entry
            result.append(entry[1])
        self._by_owner[owner_key] = fresh
        return result

    def forget(self, owner_key: str) -> None:
        self._by_owner.pop(owner_key, None)
