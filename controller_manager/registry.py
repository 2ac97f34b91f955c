"""Controllers by name, as kube-controller-manager's --controllers names them.

Each entry is a constructor that takes a ControllerContext and returns a
kubelite.client.controller.Controller. Adding a controller = its module + one line here.
"""

from __future__ import annotations

from collections.abc import Callable

from controller_manager.certificates import CSRApprovingController, CSRSigningController
from controller_manager.context import ControllerContext
from controller_manager.cronjob import CronJobController
from controller_manager.daemonset import DaemonSetController
from controller_manager.deployment import DeploymentController
from controller_manager.endpoints import EndpointsController
from controller_manager.garbagecollector import GarbageCollector
from controller_manager.job import JobController
from controller_manager.namespace import NamespaceController
from controller_manager.node_ipam import NodeIPAMController
from controller_manager.nodelifecycle import NodeLifecycleController
from controller_manager.podgc import PodGCController
from controller_manager.replicaset import ReplicaSetController
from controller_manager.resourcequota import ResourceQuotaController
from controller_manager.serviceaccounts import RootCACertPublisher, ServiceAccountsController
from controller_manager.statefulset import StatefulSetController
from kubelite.client.controller import Controller

Factory = Callable[[ControllerContext], Controller]

CONTROLLERS: dict[str, Factory] = {
    "replicaset": ReplicaSetController,
    "deployment": DeploymentController,
    "daemonset": DaemonSetController,
    "statefulset": StatefulSetController,
    "job": JobController,
    "cronjob": CronJobController,
    "garbagecollector": GarbageCollector,
    "nodelifecycle": NodeLifecycleController,
    "nodeipam": NodeIPAMController,
    "namespace": NamespaceController,
    "endpoints": EndpointsController,
    "podgc": PodGCController,
    "csrapproving": CSRApprovingController,
    "csrsigning": CSRSigningController,
    "serviceaccount": ServiceAccountsController,
    "root-ca-cert-publisher": RootCACertPublisher,
    "resourcequota": ResourceQuotaController,
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


def factory(name: str) -> Factory:
    return CONTROLLERS[name]
