"""Controllers by name, as kube-controller-manager's --controllers names them.

Each entry points at a module attribute that takes a ControllerContext and returns a
kubelite.client.controller.Controller; modules are imported only when selected.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable

from controller_manager.context import ControllerContext
from kubelite.client.controller import Controller

CONTROLLERS: dict[str, str] = {
    "replicaset": "controller_manager.replicaset:ReplicaSetController",
    "deployment": "controller_manager.deployment:DeploymentController",
    "daemonset": "controller_manager.daemonset:DaemonSetController",
    "statefulset": "controller_manager.statefulset:StatefulSetController",
    "job": "controller_manager.job:JobController",
    "cronjob": "controller_manager.cronjob:CronJobController",
    "garbagecollector": "controller_manager.garbagecollector:GarbageCollector",
    "nodelifecycle": "controller_manager.nodelifecycle:NodeLifecycleController",
    "namespace": "controller_manager.namespace:NamespaceController",
    "endpoints": "controller_manager.endpoints:EndpointsController",
    "podgc": "controller_manager.podgc:PodGCController",
}


def select(flags: tuple[str, ...]) -> list[str]:
    """Kubernetes' --controllers rules: ``*`` enables all, ``name`` one, ``-name`` disables."""
    enabled: set[str] = set()
    for flag in flags:
        name = flag.strip()
        if name == "*":
            enabled |= set(CONTROLLERS)
        elif name.startswith("-"):
            if name[1:] not in CONTROLLERS:
                raise ValueError(f"unknown controller {name[1:]!r}; known: {sorted(CONTROLLERS)}")
        elif name:
            if name not in CONTROLLERS:
                raise ValueError(f"unknown controller {name!r}; known: {sorted(CONTROLLERS)}")
            enabled.add(name)
    for flag in flags:
        if flag.strip().startswith("-"):
            enabled.discard(flag.strip()[1:])
    return sorted(enabled)


def factory(name: str) -> Callable[[ControllerContext], Controller]:
    module_name, _, attribute = CONTROLLERS[name].partition(":")
    module = importlib.import_module(module_name)
    constructor: Callable[[ControllerContext], Controller] = getattr(module, attribute)
    return constructor


def available(name: str) -> bool:
    """Whether the controller's module exists yet (controllers land one by one)."""
    module_name = CONTROLLERS[name].partition(":")[0]
    return importlib.util.find_spec(module_name) is not None
