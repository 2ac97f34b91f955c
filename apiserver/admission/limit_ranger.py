"""LimitRanger admission (plugin/pkg/admission/limitranger): the LimitRanges of a pod's
namespace give its containers default limits and requests where they state none (noted in the
``kubernetes.io/limit-ranger`` annotation), then bound them: min, max and maxLimitRequestRatio
per Container, and per Pod over the pod's total. Pods are checked when created only (their
resources cannot change afterwards)."""

from __future__ import annotations

from collections.abc import Mapping

from apiserver.admission.objects import Sources
from apiserver.admission.plugin import CREATE, Attributes, Plugin
from kubelite.api import quota
from kubelite.api.quantity import Quantity, format_quantity, parse_quantity
from protos.v1 import objects_pb2 as v1

ANNOTATION = "kubernetes.io/limit-ranger"
CONTAINER = "Container"
POD = "Pod"
MAX_MILLI_VALUE = (2**63 - 1) // 1000
"""Larger values are compared in whole units, as Kubernetes (milli-units would overflow)."""


def defaulted_item(item: v1.LimitRangeItem) -> v1.LimitRangeItem:
    """SetDefaults_LimitRangeItem for Container items: the default limit falls back to max, the
    default request to the default limit, then to min."""
    result = v1.LimitRangeItem()
    result.CopyFrom(item)
    if item.type != CONTAINER:
        return result
    for name, value in item.max.items():
        result.default.setdefault(name, value)
    for name, value in result.default.items():
        result.default_request.setdefault(name, value)
    for name, value in item.min.items():
        result.default_request.setdefault(name, value)
    return result


def _set_defaults(
    container: v1.Container, limits: Mapping[str, str], requests: Mapping[str, str], kind: str,
) -> list[str]:
    notes = []
    set_requests = sorted(n for n in requests if n not in container.resources.requests)
    set_limits = sorted(n for n in limits if n not in container.resources.limits)
    for name in set_limits:
        container.resources.limits[name] = limits[name]
    for name in set_requests:
        container.resources.requests[name] = requests[name]
    if set_requests:
        notes.append(f"{', '.join(set_requests)} request for {kind} {container.name}")
    if set_limits:
        notes.append(f"{', '.join(set_limits)} limit for {kind} {container.name}")
    return notes


def apply_defaults(limit_range: v1.LimitRange, pod: v1.Pod) -> None:
    """PodMutateLimitFunc: the Container items' defaults into containers lacking them."""
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    for item in map(defaulted_item, limit_range.spec.limits):
        if item.type == CONTAINER:
            requests.update(item.default_request)
            limits.update(item.default)
    notes: list[str] = []
    for container in pod.spec.containers:
        notes += _set_defaults(container, limits, requests, "container")
    for container in pod.spec.init_containers:
        notes += _set_defaults(container, limits, requests, "init container")
    if notes:
        pod.metadata.annotations[ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)


def _comparable(*values: Quantity) -> list[int]:
    """Kubernetes' requestLimitEnforcedValues: milli-units when none would overflow."""
    if all(v.value() <= MAX_MILLI_VALUE for v in values):
        return [v.milli_value() for v in values]
    return [v.value() for v in values]


Resources = Mapping[str, Quantity]
_ZERO = Quantity.zero()


def min_error(kind: str, name: str, enforced: Quantity, requests: Resources,
              limits: Resources) -> str:
    shown = format_quantity(enforced)
    if name not in requests:
        return f"minimum {name} usage per {kind} is {shown}.  No request is specified"
    request, limit, bound = _comparable(requests[name], limits.get(name, _ZERO), enforced)
    if request < bound:
        return (f"minimum {name} usage per {kind} is {shown}, but request is"
                f" {format_quantity(requests[name])}")
    if name in limits and limit < bound:
        return (f"minimum {name} usage per {kind} is {shown}, but limit is"
                f" {format_quantity(limits[name])}")
    return ""


def max_error(kind: str, name: str, enforced: Quantity, requests: Resources,
              limits: Resources) -> str:
    shown = format_quantity(enforced)
    if name not in limits:
        return f"maximum {name} usage per {kind} is {shown}.  No limit is specified"
    request, limit, bound = _comparable(requests.get(name, _ZERO), limits[name], enforced)
    if limit > bound:
        return (f"maximum {name} usage per {kind} is {shown}, but limit is"
                f" {format_quantity(limits[name])}")
    if name in requests and request > bound:
        return (f"maximum {name} usage per {kind} is {shown}, but request is"
                f" {format_quantity(requests[name])}")
    return ""


def ratio_error(kind: str, name: str, enforced: Quantity, requests: Resources,
                limits: Resources) -> str:
    shown = format_quantity(enforced)
    request, limit, _ = _comparable(
        requests.get(name, _ZERO), limits.get(name, _ZERO), enforced
    )
    if name not in requests or request == 0:
        return (f"{name} max limit to request ratio per {kind} is {shown}, but no request is"
                " specified or request is 0")
    if name not in limits or limit == 0:
        return (f"{name} max limit to request ratio per {kind} is {shown}, but no limit is"
                " specified or limit is 0")
    ratio = limit / request
    scaled, bound = ratio, float(enforced.value())
    if enforced.value() <= MAX_MILLI_VALUE:
        scaled, bound = ratio * 1000, float(enforced.milli_value())
    if scaled > bound:
        return (f"{name} max limit to request ratio per {kind} is {shown}, but provided ratio"
                f" is {ratio:f}")
    return ""


def _check(kind: str, item: v1.LimitRangeItem, requests: Resources, limits: Resources
           ) -> list[str]:
    errors = []
    for bounds, check in ((item.min, min_error), (item.max, max_error),
                          (item.max_limit_request_ratio, ratio_error)):
        for name in sorted(bounds):
            errors.append(check(kind, name, parse_quantity(bounds[name]), requests, limits))
    return [e for e in errors if e]


def limit_errors(limit_range: v1.LimitRange, pod: v1.Pod) -> list[str]:
    """PodValidateLimitFunc: every bound the pod breaks, in Kubernetes' words."""
    errors: list[str] = []
    for item in map(defaulted_item, limit_range.spec.limits):
        if item.type == CONTAINER:
            for container in (*pod.spec.containers, *pod.spec.init_containers):
                errors += _check(
                    CONTAINER, item,
                    quota.parse_list(container.resources.requests),
                    quota.parse_list(container.resources.limits),
                )
        elif item.type == POD:
            errors += _check(POD, item, quota.pod_total(pod.spec, "requests"),
                             quota.pod_total(pod.spec, "limits"))
    return errors


class LimitRanger(Plugin):
    name = "LimitRanger"

    def __init__(self, sources: Sources) -> None:
        self.limit_ranges = sources.store("limitranges")

    def _applies(self, a: Attributes) -> bool:
        return a.operation == CREATE and not a.subresource and isinstance(a.obj, v1.Pod)

    async def _ranges(self, a: Attributes) -> list[v1.LimitRange]:
        items = await self.limit_ranges.in_namespace(a.namespace)
        ranges = [r for r in items if isinstance(r, v1.LimitRange)]
        return sorted(ranges, key=lambda r: r.metadata.name)

    async def admit(self, a: Attributes) -> None:
        if not self._applies(a):
            return
        assert isinstance(a.obj, v1.Pod)
        for limit_range in await self._ranges(a):
            apply_defaults(limit_range, a.obj)

    async def validate(self, a: Attributes) -> None:
        if not self._applies(a):
            return
        assert isinstance(a.obj, v1.Pod)
        for limit_range in await self._ranges(a):
            errors = limit_errors(limit_range, a.obj)
            if errors:
                raise a.forbidden(errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]")
