"""Discovery documents of the HTTP API, in the shapes kube-apiserver serves and kubectl reads."""

from __future__ import annotations

from typing import Any

from apiserver.http import discovery
from kubelite.api.registry import RESOURCES


def _by_name(resource_list: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in resource_list["resources"]}


def test_version_is_a_version_info() -> None:
    info = discovery.version()
    assert info["gitVersion"] == "v1.31.0-kubelite"
    assert (info["major"], info["minor"]) == ("1", "31")
    os_name, _, arch = info["platform"].partition("/")
    assert os_name == "linux" and arch and arch != "x86_64"
    assert all(isinstance(v, str) for v in info.values())


def test_core_group_versions() -> None:
    assert discovery.api_versions() == {
        "kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}


def test_group_list_names_every_named_group_once_with_its_preferred_version() -> None:
    document = discovery.api_group_list()
    assert (document["kind"], document["apiVersion"]) == ("APIGroupList", "v1")
    names = [g["name"] for g in document["groups"]]
    assert sorted(names) == sorted({r.group for r in RESOURCES if r.group})
    # kube-apiserver's order: apps before batch before rbac before coordination.
    assert names.index("apps") < names.index("batch") < names.index(
        "rbac.authorization.k8s.io") < names.index("coordination.k8s.io")
    apps = document["groups"][names.index("apps")]
    assert apps == {
        "name": "apps",
        "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
    }


def test_one_group() -> None:
    group = discovery.api_group("batch")
    assert group is not None
    assert group["kind"] == "APIGroup" and group["name"] == "batch"
    assert group["preferredVersion"] == {"groupVersion": "batch/v1", "version": "v1"}
    assert discovery.api_group("storage.k8s.io") is None
    assert discovery.api_group("") is None


def test_core_resources() -> None:
    document = discovery.resource_list("", "v1")
    assert document is not None
    assert (document["kind"], document["groupVersion"]) == ("APIResourceList", "v1")
    names = [r["name"] for r in document["resources"]]
    assert names == sorted(names)
    resources = _by_name(document)
    assert resources["pods"] == {
        "name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        "shortNames": ["po"], "categories": ["all"],
    }
    assert resources["namespaces"]["namespaced"] is False
    assert "categories" not in resources["configmaps"]
    assert "shortNames" not in resources["secrets"]
    assert resources["pods/log"] == {"name": "pods/log", "singularName": "", "namespaced": True,
                                     "kind": "Pod", "verbs": ["get"]}
    assert resources["pods/exec"]["kind"] == "PodExecOptions"
    assert resources["pods/exec"]["verbs"] == ["create", "get"]
    assert resources["pods/binding"]["verbs"] == ["create"]
    assert resources["pods/status"]["verbs"] == ["get", "patch", "update"]
    assert resources["serviceaccounts/token"] == {
        "name": "serviceaccounts/token", "singularName": "", "namespaced": True,
        "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest",
        "verbs": ["create"],
    }
    # Kinds without a status subresource have none listed.
    assert "configmaps/status" not in resources
    assert "nodes/status" in resources and "namespaces/status" in resources


def test_apps_resources_have_scale_in_autoscaling() -> None:
    document = discovery.resource_list("apps", "v1")
    assert document is not None
    resources = _by_name(document)
    assert set(resources) == {
        "deployments", "deployments/scale", "deployments/status",
        "replicasets", "replicasets/scale", "replicasets/status",
        "statefulsets", "statefulsets/scale", "statefulsets/status",
        "daemonsets", "daemonsets/status",
    }
    assert resources["deployments/scale"] == {
        "name": "deployments/scale", "singularName": "", "namespaced": True,
        "group": "autoscaling", "version": "v1", "kind": "Scale",
        "verbs": ["get", "patch", "update"],
    }
    assert resources["deployments"]["shortNames"] == ["deploy"]
    assert resources["deployments"]["categories"] == ["all"]


def test_reviews_can_only_be_created_and_csrs_approved() -> None:
    reviews = discovery.resource_list("authorization.k8s.io", "v1")
    assert reviews is not None
    assert {r["name"]: r["verbs"] for r in reviews["resources"]} == {
        "selfsubjectaccessreviews": ["create"], "subjectaccessreviews": ["create"]}
    certificates = discovery.resource_list("certificates.k8s.io", "v1")
    assert certificates is not None
    resources = _by_name(certificates)
    assert resources["certificatesigningrequests/approval"]["verbs"] == ["get", "patch",
                                                                         "update"]
    assert resources["certificatesigningrequests"]["namespaced"] is False


def test_every_served_group_version_has_a_list_and_others_none() -> None:
    for r in RESOURCES:
        group, _, version = r.api_version.rpartition("/")
        document = discovery.resource_list(group, version)
        assert document is not None and r.plural in _by_name(document)
    assert discovery.resource_list("apps", "v1beta1") is None
    assert discovery.resource_list("storage.k8s.io", "v1") is None
    assert discovery.resource_list("", "v2") is None
