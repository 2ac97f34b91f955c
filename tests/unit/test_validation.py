"""Object validation: rules, exact field paths and Kubernetes' wording."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.convert import from_dict
from kubelite.api.defaults import apply_defaults
from kubelite.api.field_errors import ErrorType, FieldError
from kubelite.api.manifests import load_documents
from kubelite.api.names import (
    is_c_identifier,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_valid_port_name,
    mask_trailing_dash,
    name_is_dns_subdomain,
)
from kubelite.api.validation import validate
from protos.v1 import objects_pb2 as v1

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or"
    " '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used"
    " for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"


def _fields(errs: list[FieldError]) -> set[tuple[ErrorType, str]]:
    return {(e.type, e.field) for e in errs}


def _find(errs: list[FieldError], field: str) -> FieldError:
    matches = [e for e in errs if e.field == field]
    assert matches, f"no error at {field}: {[str(e) for e in errs]}"
    return matches[0]


def _defaulted(obj: Message) -> Message:
    apply_defaults(obj)
    return obj


def make_pod(mutate: Callable[[v1.Pod], object] | None = None) -> v1.Pod:
    pod = v1.Pod()
    pod.metadata.name = "web"
    pod.metadata.namespace = "default"
    ctr = pod.spec.containers.add(name="app", image="nginx:1.25")
    ctr.ports.add(name="http", container_port=8080)
    ctr.liveness_probe.http_get.port.str_val = "http"
    ctr.readiness_probe.tcp_socket.port.int_val = 8080
    ctr.resources.requests["cpu"] = "100m"
    ctr.resources.limits["cpu"] = "500m"
    ctr.resources.limits["memory"] = "128Mi"
    if mutate is not None:
        mutate(pod)
    apply_defaults(pod)
    return pod


def _template(t: v1.PodTemplateSpec, restart: str = "") -> None:
    t.metadata.labels["app"] = "web"
    t.spec.containers.add(name="app", image="nginx:1.25")
    if restart:
        t.spec.restart_policy = restart


def make_deployment() -> v1.Deployment:
    d = v1.Deployment()
    d.metadata.name = "web"
    d.metadata.namespace = "default"
    d.spec.selector.match_labels["app"] = "web"
    _template(d.spec.template)
    apply_defaults(d)
    return d


# ---------------------------------------------------------------- names


def test_name_messages() -> None:
    assert is_dns1123_subdomain("Bad_Name") == [SUBDOMAIN_MSG]
    assert is_dns1123_subdomain("a" * 254)[0] == "must be no more than 253 characters"
    assert is_dns1123_label("a.b") == ["must not contain dots"]
    assert is_dns1123_label("-a")[0].startswith("a lowercase RFC 1123 label must consist")
    assert is_dns1035_label("1abc")[0].startswith(
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with"
        " an alphabetic character"
    )
    assert is_dns1035_label("abc-1") == []
    assert is_c_identifier("_ok9") == []
    assert is_c_identifier("9no") != []
    assert is_env_var_name("MY.VAR-1") == []
    assert is_env_var_name("1VAR") != []
    assert is_env_var_name("..") == ["must not be '..'"]
    assert is_valid_port_name("http") == []
    assert is_valid_port_name("8080") == ["must contain at least one letter (a-z)"]
    assert "must be no more than 15 characters" in is_valid_port_name("a" * 16)
    assert "must not contain consecutive hyphens (-)" in is_valid_port_name("a--b")
    assert "must not begin or end with a hyphen (-)" in is_valid_port_name("a-")


def test_mask_trailing_dash() -> None:
    assert mask_trailing_dash("web-") == "wea"  # upstream replaces the last two characters
    assert mask_trailing_dash("-") == "-"
    assert name_is_dns_subdomain("web-", True) == []
    assert name_is_dns_subdomain("web-", False) != []


# ---------------------------------------------------------------- metadata


def test_valid_pod_has_no_errors() -> None:
    assert validate(make_pod()) == []


def test_name_required_unless_generate_name() -> None:
    pod = make_pod()
    pod.metadata.name = ""
    err = _find(validate(pod), "metadata.name")
    assert err.type is ErrorType.REQUIRED
    assert str(err) == "metadata.name: Required value: name or generateName is required"
    pod.metadata.generate_name = "web-"
    assert validate(pod) == []
    pod.metadata.generate_name = "Web-"
    assert _fields(validate(pod)) == {(ErrorType.INVALID, "metadata.generateName")}


def test_invalid_name_message() -> None:
    pod = make_pod()
    pod.metadata.name = "Bad_Name"
    errs = validate(pod)
    assert [str(e) for e in errs] == [f'metadata.name: Invalid value: "Bad_Name": {SUBDOMAIN_MSG}']


def test_name_rules_per_kind() -> None:
    ns = v1.Namespace()
    ns.metadata.name = "a.b"
    assert _find(validate(_defaulted(ns)), "metadata.name").detail == "must not contain dots"
    cm = v1.ConfigMap()
    cm.metadata.name = "1abc.x"
    cm.metadata.namespace = "default"
    assert validate(cm) == []
    svc = v1.Service()
    svc.metadata.name = "1abc"
    svc.metadata.namespace = "default"
    svc.spec.ports.add(port=80)
    errs = validate(_defaulted(svc))
    assert _fields(errs) == {(ErrorType.INVALID, "metadata.name")}
    assert "DNS-1035" in errs[0].detail


def test_namespace_required_or_forbidden() -> None:
    pod = make_pod()
    pod.metadata.namespace = ""
    assert _find(validate(pod), "metadata.namespace").type is ErrorType.REQUIRED
    node = v1.Node()
    node.metadata.name = "n1"
    node.metadata.namespace = "default"
    assert _find(validate(node), "metadata.namespace").type is ErrorType.FORBIDDEN


def test_labels_and_annotations() -> None:
    pod = make_pod()
    pod.metadata.labels["bad key"] = "v"
    pod.metadata.labels["ok"] = "bad value"
    pod.metadata.annotations["Example.com/Fine"] = "annotation keys ignore case"
    pod.metadata.annotations["no/pe/x"] = "x"
    errs = validate(pod)
    assert [(e.field, e.value) for e in errs] == [
        ("metadata.labels", "bad key"),
        ("metadata.labels", "bad value"),
        ("metadata.annotations", "no/pe/x"),
    ]


def test_owner_references() -> None:
    pod = make_pod()
    pod.metadata.owner_references.add(api_version="apps/v1", kind="ReplicaSet", name="rs")
    assert _fields(validate(pod)) == {(ErrorType.INVALID, "metadata.ownerReferences[0].uid")}


def test_metadata_update_immutable() -> None:
    old = make_pod()
    old.metadata.uid = "u1"
    old.metadata.creation_timestamp = "2024-01-01T00:00:00Z"
    new = v1.Pod()
    new.CopyFrom(old)
    new.metadata.labels["added"] = "fine"
    assert validate(new, old) == []
    new.metadata.uid = "u2"
    new.metadata.name = "other"
    new.metadata.creation_timestamp = "2025-01-01T00:00:00Z"
    errs = validate(new, old)
    assert _fields(errs) == {
        (ErrorType.INVALID, "metadata.uid"),
        (ErrorType.INVALID, "metadata.name"),
        (ErrorType.INVALID, "metadata.creationTimestamp"),
    }
    assert all(e.detail == "field is immutable" for e in errs)


def test_no_new_finalizers_while_deleting() -> None:
    old = make_pod()
    old.metadata.deletion_timestamp = "2024-01-01T00:00:00Z"
    new = v1.Pod()
    new.CopyFrom(old)
    new.metadata.finalizers.append("example.com/hold")
    assert _find(validate(new, old), "metadata.finalizers").type is ErrorType.FORBIDDEN


def test_unregistered_message_raises() -> None:
    with pytest.raises(TypeError):
        validate(v1.PodSpec())
    with pytest.raises(TypeError):
        validate(make_pod(), v1.Node())


# ---------------------------------------------------------------- pods


def test_bad_cpu_quantity_path() -> None:
    pod = make_pod(lambda p: p.spec.containers[0].resources.requests.__setitem__("cpu", "abc"))
    err = _find(validate(pod), "spec.containers[0].resources.requests[cpu]")
    assert err.type is ErrorType.INVALID
    assert err.value == "abc"
    assert err.detail.startswith("quantities must match the regular expression")


def test_restart_policy_not_supported() -> None:
    pod = make_pod(lambda p: setattr(p.spec, "restart_policy", "Sometimes"))
    err = _find(validate(pod), "spec.restartPolicy")
    assert err.type is ErrorType.NOT_SUPPORTED
    assert str(err) == (
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always",'
        ' "OnFailure", "Never"'
    )


def test_negative_period_seconds() -> None:
    pod = make_pod(lambda p: setattr(p.spec.containers[0].liveness_probe, "period_seconds", -1))
    err = _find(validate(pod), "spec.containers[0].livenessProbe.periodSeconds")
    assert err.type is ErrorType.INVALID
    assert err.detail == "must be greater than or equal to 0"
    assert len(validate(pod)) == 1


def test_negative_initial_delay_and_thresholds() -> None:
    def mutate(p: v1.Pod) -> None:
        probe = p.spec.containers[0].readiness_probe
        probe.initial_delay_seconds = -5
        probe.failure_threshold = -1
        probe.timeout_seconds = -2

    assert _fields(validate(make_pod(mutate))) == {
        (ErrorType.INVALID, "spec.containers[0].readinessProbe.initialDelaySeconds"),
        (ErrorType.INVALID, "spec.containers[0].readinessProbe.failureThreshold"),
        (ErrorType.INVALID, "spec.containers[0].readinessProbe.timeoutSeconds"),
    }


def test_probe_named_port_must_exist() -> None:
    pod = make_pod(
        lambda p: setattr(p.spec.containers[0].liveness_probe.http_get.port, "str_val", "metrics")
    )
    err = _find(validate(pod), "spec.containers[0].livenessProbe.httpGet.port")
    assert err.type is ErrorType.INVALID
    assert err.value == "metrics"
    # The same for tcpSocket, and a name that is not even a valid port name.
    pod = make_pod(
        lambda p: setattr(p.spec.containers[0].readiness_probe.tcp_socket.port, "str_val", "NOPE")
    )
    err = _find(validate(pod), "spec.containers[0].readinessProbe.tcpSocket.port")
    assert "alpha-numeric" in err.detail


def test_probe_port_number_range() -> None:
    pod = make_pod(
        lambda p: setattr(p.spec.containers[0].readiness_probe.tcp_socket.port, "int_val", 70000)
    )
    err = _find(validate(pod), "spec.containers[0].readinessProbe.tcpSocket.port")
    assert err.detail == "must be between 1 and 65535, inclusive"


def test_probe_handler_count() -> None:
    def two(p: v1.Pod) -> None:
        p.spec.containers[0].liveness_probe.exec.command.append("true")

    assert _fields(validate(make_pod(two))) == {
        (ErrorType.FORBIDDEN, "spec.containers[0].livenessProbe.httpGet")
    }

    def none(p: v1.Pod) -> None:
        p.spec.containers[0].startup_probe.period_seconds = 5

    err = _find(validate(make_pod(none)), "spec.containers[0].startupProbe")
    assert err.type is ErrorType.REQUIRED
    assert err.detail == "must specify a handler type"


def test_liveness_success_threshold_must_be_one() -> None:
    pod = make_pod(lambda p: setattr(p.spec.containers[0].liveness_probe, "success_threshold", 2))
    err = _find(validate(pod), "spec.containers[0].livenessProbe.successThreshold")
    assert err.detail == "must be 1"


def test_containers_required() -> None:
    pod = make_pod(lambda p: p.spec.ClearField("containers"))
    assert _fields(validate(pod)) == {(ErrorType.REQUIRED, "spec.containers")}


def test_container_names_and_images() -> None:
    def mutate(p: v1.Pod) -> None:
        p.spec.containers.add(name="app", image="")
        p.spec.containers.add(name="Bad_Name", image="x")
        p.spec.init_containers.add(name="app", image="busybox")

    errs = validate(make_pod(mutate))
    assert _fields(errs) == {
        (ErrorType.DUPLICATE, "spec.containers[1].name"),
        (ErrorType.REQUIRED, "spec.containers[1].image"),
        (ErrorType.INVALID, "spec.containers[2].name"),
        (ErrorType.DUPLICATE, "spec.initContainers[0].name"),
    }


def test_container_ports() -> None:
    def mutate(p: v1.Pod) -> None:
        ports = p.spec.containers[0].ports
        ports.add(name="http", container_port=8081)
        ports.add(name="UPPER", container_port=0)
        ports.add(container_port=65536, protocol="HTTP")

    errs = validate(make_pod(mutate))
    assert _fields(errs) == {
        (ErrorType.DUPLICATE, "spec.containers[0].ports[1].name"),
        (ErrorType.INVALID, "spec.containers[0].ports[2].name"),
        (ErrorType.REQUIRED, "spec.containers[0].ports[2].containerPort"),
        (ErrorType.INVALID, "spec.containers[0].ports[3].containerPort"),
        (ErrorType.NOT_SUPPORTED, "spec.containers[0].ports[3].protocol"),
    }


def test_duplicate_host_ports() -> None:
    def mutate(p: v1.Pod) -> None:
        p.spec.containers[0].ports[0].host_port = 80
        p.spec.containers.add(name="b", image="x").ports.add(container_port=81, host_port=80)

    errs = validate(make_pod(mutate))
    assert _fields(errs) == {(ErrorType.DUPLICATE, "spec.containers[1].ports[0].hostPort")}


def test_resources() -> None:
    def mutate(p: v1.Pod) -> None:
        res = p.spec.containers[0].resources
        res.requests["cpu"] = "1"
        res.requests["gpu"] = "1"
        res.limits["memory"] = "-1Mi"
        res.requests["example.com/dongle"] = "1"
        res.limits["example.com/dongle"] = "2"

    errs = validate(make_pod(mutate))
    cpu = _find(errs, "spec.containers[0].resources.requests[cpu]")
    assert cpu.detail == "must be less than or equal to cpu limit of 500m"
    assert _find(errs, "spec.containers[0].resources.requests[gpu]").detail == (
        "must be a standard resource for containers"
    )
    assert _find(errs, "spec.containers[0].resources.limits[memory]").detail == (
        "must be greater than or equal to 0"
    )
    assert _find(errs, "spec.containers[0].resources.requests[example.com/dongle]").detail == (
        "must be equal to example.com/dongle limit of 2"
    )


def test_hugepages_and_extended_are_known_resource_names() -> None:
    def mutate(p: v1.Pod) -> None:
        res = p.spec.containers[0].resources
        res.limits["hugepages-2Mi"] = "4Mi"
        res.requests["hugepages-2Mi"] = "4Mi"
        res.limits["example.com/fpga"] = "1"

    assert validate(make_pod(mutate)) == []


def test_volumes_and_mounts() -> None:
    def mutate(p: v1.Pod) -> None:
        p.spec.volumes.add(name="data").empty_dir.SetInParent()
        dup = p.spec.volumes.add(name="data")
        dup.host_path.path = "/tmp"
        two = p.spec.volumes.add(name="two")
        two.empty_dir.SetInParent()
        two.secret.secret_name = "s"
        cm = p.spec.volumes.add(name="cm")
        cm.config_map.SetInParent()
        mounts = p.spec.containers[0].volume_mounts
        mounts.add(name="data", mount_path="/data")
        mounts.add(name="missing", mount_path="/data")
        mounts.add(name="data", mount_path="")

    errs = validate(make_pod(mutate))
    assert _fields(errs) == {
        (ErrorType.DUPLICATE, "spec.volumes[1].name"),
        (ErrorType.FORBIDDEN, "spec.volumes[2].secret"),
        (ErrorType.REQUIRED, "spec.volumes[3].configMap.name"),
        (ErrorType.NOT_FOUND, "spec.containers[0].volumeMounts[1].name"),
        (ErrorType.INVALID, "spec.containers[0].volumeMounts[1].mountPath"),
        (ErrorType.REQUIRED, "spec.containers[0].volumeMounts[2].mountPath"),
    }


def test_env() -> None:
    def mutate(p: v1.Pod) -> None:
        env = p.spec.containers[0].env
        env.add(name="GOOD", value="1")
        env.add(name="1BAD", value="1")
        env.add(name="")
        ref = env.add(name="REF", value="x")
        ref.value_from.field_ref.field_path = "metadata.name"
        unsupported = env.add(name="POD")
        unsupported.value_from.field_ref.field_path = "spec.containers"
        both = env.add(name="BOTH")
        both.value_from.config_map_key_ref.name = "c"
        both.value_from.config_map_key_ref.key = "k"
        both.value_from.secret_key_ref.name = "s"
        both.value_from.secret_key_ref.key = "k"

    errs = validate(make_pod(mutate))
    assert _fields(errs) == {
        (ErrorType.INVALID, "spec.containers[0].env[1].name"),
        (ErrorType.REQUIRED, "spec.containers[0].env[2].name"),
        (ErrorType.INVALID, "spec.containers[0].env[3].valueFrom"),
        (ErrorType.NOT_SUPPORTED, "spec.containers[0].env[4].valueFrom.fieldRef.fieldPath"),
        (ErrorType.INVALID, "spec.containers[0].env[5].valueFrom"),
    }
    assert _find(errs, "spec.containers[0].env[3].valueFrom").detail == (
        "may not be specified when `value` is not empty"
    )


def test_tolerations() -> None:
    def mutate(p: v1.Pod) -> None:
        t = p.spec.tolerations
        t.add(key="k", operator="Exists", effect="NoSchedule")
        t.add(operator="Exists")
        t.add(key="k", operator="Exists", value="v")
        t.add(key="k", operator="Sometimes")
        t.add(key="k", value="v", effect="NoWay")
        t.add(key="k", value="v", effect="NoSchedule", toleration_seconds=5)
        t.add(value="v")

    errs = validate(make_pod(mutate))
    assert _fields(errs) == {
        (ErrorType.INVALID, "spec.tolerations[2].operator"),
        (ErrorType.NOT_SUPPORTED, "spec.tolerations[3].operator"),
        (ErrorType.NOT_SUPPORTED, "spec.tolerations[4].effect"),
        (ErrorType.INVALID, "spec.tolerations[5].effect"),
        (ErrorType.INVALID, "spec.tolerations[6].operator"),
    }
    assert _find(errs, "spec.tolerations[5].effect").detail == (
        "effect must be 'NoExecute' when `tolerationSeconds` is set"
    )


def test_node_affinity_and_node_selector() -> None:
    def mutate(p: v1.Pod) -> None:
        p.spec.node_selector["disk"] = "ssd"
        p.spec.node_selector["bad key!"] = "x"
        req = p.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
        term = req.node_selector_terms.add()
        term.match_expressions.add(key="zone", operator="In", values=["a"])
        term.match_expressions.add(key="cpus", operator="Gt", values=["4"])
        term.match_expressions.add(key="zone", operator="Near", values=["a"])
        term.match_expressions.add(key="zone", operator="In")
        term.match_expressions.add(key="zone", operator="Exists", values=["a"])

    errs = validate(make_pod(mutate))
    base = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    assert _fields(errs) == {
        (ErrorType.INVALID, "spec.nodeSelector"),
        (ErrorType.INVALID, f"{base}.nodeSelectorTerms[0].matchExpressions[2].operator"),
        (ErrorType.REQUIRED, f"{base}.nodeSelectorTerms[0].matchExpressions[3].values"),
        (ErrorType.FORBIDDEN, f"{base}.nodeSelectorTerms[0].matchExpressions[4].values"),
    }


def test_termination_grace_period_and_dns_policy() -> None:
    def mutate(p: v1.Pod) -> None:
        p.spec.termination_grace_period_seconds = -1
        p.spec.dns_policy = "Google"

    errs = validate(make_pod(mutate))
    assert _fields(errs) == {
        (ErrorType.INVALID, "spec.terminationGracePeriodSeconds"),
        (ErrorType.NOT_SUPPORTED, "spec.dnsPolicy"),
    }


def test_init_container_rules() -> None:
    def mutate(p: v1.Pod) -> None:
        init = p.spec.init_containers.add(name="init", image="busybox")
        init.readiness_probe.exec.command.append("true")
        sidecar = p.spec.init_containers.add(
            name="sidecar", image="busybox", restart_policy="Always"
        )
        sidecar.readiness_probe.exec.command.append("true")
        p.spec.init_containers.add(name="odd", image="busybox", restart_policy="Never")

    errs = validate(make_pod(mutate))
    assert _fields(errs) == {
        (ErrorType.FORBIDDEN, "spec.initContainers[0].readinessProbe"),
        (ErrorType.NOT_SUPPORTED, "spec.initContainers[2].restartPolicy"),
    }


def test_pod_update_rules() -> None:
    old = make_pod(
        lambda p: p.spec.tolerations.add(
            key="k", operator="Exists", effect="NoExecute", toleration_seconds=60
        )
    )
    new = v1.Pod()
    new.CopyFrom(old)
    new.spec.containers[0].image = "nginx:1.26"
    new.spec.active_deadline_seconds = 100
    new.spec.tolerations.add(key="other", operator="Exists")
    new.spec.tolerations[0].toleration_seconds = 30
    assert validate(new, old) == []

    changed = v1.Pod()
    changed.CopyFrom(old)
    changed.spec.containers[0].ports[0].container_port = 9090
    errs = validate(changed, old)
    assert _fields(errs) == {(ErrorType.FORBIDDEN, "spec")}
    assert errs[0].detail.startswith(
        "pod updates may not change fields other than `spec.containers[*].image`"
    )

    dropped = v1.Pod()
    dropped.CopyFrom(old)
    dropped.spec.ClearField("tolerations")
    assert (ErrorType.FORBIDDEN, "spec.tolerations") in _fields(validate(dropped, old))


def test_pod_update_active_deadline_may_only_decrease() -> None:
    old = make_pod(lambda p: setattr(p.spec, "active_deadline_seconds", 100))
    new = v1.Pod()
    new.CopyFrom(old)
    new.spec.active_deadline_seconds = 200
    err = _find(validate(new, old), "spec.activeDeadlineSeconds")
    assert err.detail == "must be less than or equal to previous value"


# ---------------------------------------------------------------- workloads


def test_valid_workloads() -> None:
    assert validate(make_deployment()) == []
    rs = v1.ReplicaSet()
    rs.metadata.name, rs.metadata.namespace = "rs", "default"
    rs.spec.selector.match_labels["app"] = "web"
    _template(rs.spec.template)
    assert validate(_defaulted(rs)) == []
    ds = v1.DaemonSet()
    ds.metadata.name, ds.metadata.namespace = "ds", "default"
    ds.spec.selector.match_labels["app"] = "web"
    _template(ds.spec.template)
    assert validate(_defaulted(ds)) == []
    sts = v1.StatefulSet()
    sts.metadata.name, sts.metadata.namespace = "db", "default"
    sts.spec.selector.match_expressions.add(key="app", operator="In", values=["web"])
    _template(sts.spec.template)
    assert sts.spec.service_name == ""  # allowed empty, as Kubernetes does
    assert validate(_defaulted(sts)) == []
    job = v1.Job()
    job.metadata.name, job.metadata.namespace = "pi", "default"
    job.spec.selector.match_labels["app"] = "web"
    _template(job.spec.template, "Never")
    assert validate(_defaulted(job)) == []


def test_selector_required() -> None:
    d = make_deployment()
    d.spec.ClearField("selector")
    assert _fields(validate(d)) == {(ErrorType.REQUIRED, "spec.selector")}


def test_empty_selector_invalid() -> None:
    d = make_deployment()
    d.spec.selector.Clear()
    d.spec.selector.SetInParent()
    err = _find(validate(d), "spec.selector")
    assert err.detail == "empty selector is invalid for deployment"


def test_selector_must_match_template_labels() -> None:
    d = make_deployment()
    d.spec.template.metadata.labels["app"] = "other"
    errs = validate(d)
    assert _fields(errs) == {(ErrorType.INVALID, "spec.template.metadata.labels")}
    assert errs[0].detail == "`selector` does not match template `labels`"


def test_replicas_and_template_restart_policy() -> None:
    d = make_deployment()
    d.spec.replicas = -1
    d.spec.template.spec.restart_policy = "OnFailure"
    errs = validate(d)
    assert _fields(errs) == {
        (ErrorType.INVALID, "spec.replicas"),
        (ErrorType.NOT_SUPPORTED, "spec.template.spec.restartPolicy"),
    }
    assert _find(errs, "spec.replicas").detail == "must be greater than or equal to 0"


def test_template_pod_spec_errors_are_nested() -> None:
    d = make_deployment()
    d.spec.template.spec.containers[0].resources.limits["cpu"] = "lots"
    assert _fields(validate(d)) == {
        (ErrorType.INVALID, "spec.template.spec.containers[0].resources.limits[cpu]")
    }


def test_deployment_rolling_update() -> None:
    d = make_deployment()
    ru = d.spec.strategy.rolling_update
    ru.max_surge.int_val = 0
    ru.max_unavailable.str_val = "0%"
    err = _find(validate(d), "spec.strategy.rollingUpdate.maxUnavailable")
    assert err.detail == "may not be 0 when `maxSurge` is 0"

    d = make_deployment()
    d.spec.strategy.rolling_update.max_unavailable.str_val = "120%"
    d.spec.strategy.rolling_update.max_surge.int_val = -1
    errs = validate(d)
    assert _find(errs, "spec.strategy.rollingUpdate.maxUnavailable").detail == (
        "must not be greater than 100%"
    )
    assert _find(errs, "spec.strategy.rollingUpdate.maxSurge").detail == (
        "must be greater than or equal to 0"
    )

    d = make_deployment()
    d.spec.strategy.rolling_update.max_surge.str_val = "half"
    assert (
        "a valid percent string"
        in _find(validate(d), "spec.strategy.rollingUpdate.maxSurge").detail
    )


def test_deployment_strategy_type() -> None:
    d = make_deployment()
    d.spec.strategy.type = "Recreate"
    assert _fields(validate(d)) == {(ErrorType.FORBIDDEN, "spec.strategy.rollingUpdate")}
    d.spec.strategy.ClearField("rolling_update")
    assert validate(d) == []
    d.spec.strategy.type = "BlueGreen"
    assert _fields(validate(d)) == {(ErrorType.NOT_SUPPORTED, "spec.strategy.type")}


def test_deployment_progress_deadline() -> None:
    d = make_deployment()
    d.spec.min_ready_seconds = 700
    assert _find(validate(d), "spec.progressDeadlineSeconds").detail == (
        "must be greater than minReadySeconds"
    )


def test_deployment_selector_immutable() -> None:
    old = make_deployment()
    new = v1.Deployment()
    new.CopyFrom(old)
    new.spec.replicas = 5
    assert validate(new, old) == []
    new.spec.selector.match_labels["tier"] = "fe"
    new.spec.template.metadata.labels["tier"] = "fe"
    assert _fields(validate(new, old)) == {(ErrorType.INVALID, "spec.selector")}


def test_daemon_set_update_strategy() -> None:
    ds = v1.DaemonSet()
    ds.metadata.name, ds.metadata.namespace = "ds", "default"
    ds.spec.selector.match_labels["app"] = "web"
    _template(ds.spec.template)
    ds.spec.update_strategy.rolling_update.max_unavailable.int_val = 0
    apply_defaults(ds)
    err = _find(validate(ds), "spec.updateStrategy.rollingUpdate.maxUnavailable")
    assert err.type is ErrorType.REQUIRED


def test_stateful_set_rules() -> None:
    sts = v1.StatefulSet()
    sts.metadata.name, sts.metadata.namespace = "db", "default"
    sts.spec.selector.match_labels["app"] = "web"
    _template(sts.spec.template)
    sts.spec.pod_management_policy = "Random"
    apply_defaults(sts)
    err = _find(validate(sts), "spec.podManagementPolicy")
    assert err.detail == "must be 'OrderedReady' or 'Parallel'"

    sts.spec.pod_management_policy = "Parallel"
    assert validate(sts) == []
    new = v1.StatefulSet()
    new.CopyFrom(sts)
    new.spec.replicas = 3
    new.spec.template.spec.containers[0].image = "nginx:2"
    assert validate(new, sts) == []
    new.spec.service_name = "changed"
    assert _fields(validate(new, sts)) == {(ErrorType.FORBIDDEN, "spec")}


MANIFESTS = Path(__file__).parent / "manifests"


def _manifest(name: str) -> Message:
    path = MANIFESTS / name
    (doc,) = load_documents(path.read_text(), str(path))
    _, obj = from_dict(doc)
    m.meta(obj).namespace = m.meta(obj).namespace or "default"
    return _defaulted(obj)


def test_canonical_stateful_set_mounts_its_claim_template() -> None:
    # The Kubernetes docs' StatefulSet "web": volumeMounts name "www", a volumeClaimTemplate.
    sts = _manifest("statefulset.yaml")
    assert isinstance(sts, v1.StatefulSet)
    assert validate(sts) == []
    mount = sts.spec.template.spec.containers[0].volume_mounts[0]
    mount.name = "wwww"  # neither a volume nor a claim template
    err = _find(validate(sts), "spec.template.spec.containers[0].volumeMounts[0].name")
    assert err.type is ErrorType.NOT_FOUND
    # A claim template counts only in a StatefulSet: its pod template alone is refused.
    mount.name = "www"
    d = make_deployment()
    d.spec.template.CopyFrom(sts.spec.template)
    d.spec.selector.CopyFrom(sts.spec.selector)
    assert _fields(validate(d)) == {
        (ErrorType.NOT_FOUND, "spec.template.spec.containers[0].volumeMounts[0].name")}


def _pvc_volume(spec: v1.PodSpec) -> None:
    spec.volumes.add(name="data").persistent_volume_claim.claim_name = "data"
    spec.containers[0].volume_mounts.add(name="data", mount_path="/data")


def test_persistent_volume_claim_volumes_are_unsupported() -> None:
    pod = make_pod(lambda p: _pvc_volume(p.spec))
    err = _find(validate(pod), "spec.volumes[0].persistentVolumeClaim")
    assert err.type is ErrorType.NOT_SUPPORTED
    assert str(err).startswith("spec.volumes[0].persistentVolumeClaim: Unsupported value:"
                               " persistentVolumeClaim volumes are not supported")
    d = make_deployment()
    _pvc_volume(d.spec.template.spec)
    assert _fields(validate(d)) == {
        (ErrorType.NOT_SUPPORTED, "spec.template.spec.volumes[0].persistentVolumeClaim")}
    cj = v1.CronJob()
    cj.metadata.name, cj.metadata.namespace = "nightly", "default"
    cj.spec.schedule = "0 0 * * *"
    _template(cj.spec.job_template.spec.template, "Never")
    _pvc_volume(cj.spec.job_template.spec.template.spec)
    apply_defaults(cj)
    assert _fields(validate(cj)) == {(
        ErrorType.NOT_SUPPORTED,
        "spec.jobTemplate.spec.template.spec.volumes[0].persistentVolumeClaim")}


def test_stored_persistent_volume_claim_volumes_stay_updatable() -> None:
    # An object stored before the rule keeps its volume through updates (status, labels).
    old = make_pod(lambda p: _pvc_volume(p.spec))
    new = v1.Pod()
    new.CopyFrom(old)
    new.metadata.labels["touched"] = "yes"
    assert validate(new, old) == []


def _job() -> v1.Job:
    job = v1.Job()
    job.metadata.name, job.metadata.namespace = "pi", "default"
    job.spec.selector.match_labels["app"] = "web"
    _template(job.spec.template, "Never")
    apply_defaults(job)
    return job


def test_job_rules() -> None:
    job = _job()
    job.spec.template.spec.restart_policy = "Always"
    job.spec.parallelism = -1
    job.spec.backoff_limit = -2
    errs = validate(job)
    assert _fields(errs) == {
        (ErrorType.NOT_SUPPORTED, "spec.template.spec.restartPolicy"),
        (ErrorType.INVALID, "spec.parallelism"),
        (ErrorType.INVALID, "spec.backoffLimit"),
    }
    assert _find(errs, "spec.template.spec.restartPolicy").detail == (
        'supported values: "OnFailure", "Never"'
    )


def test_indexed_job_rules() -> None:
    job = _job()
    job.spec.completion_mode = "Indexed"
    job.spec.completions, job.spec.parallelism = 3, 3
    assert validate(job) == []
    job.ClearField("spec")
    job.spec.CopyFrom(_job().spec)
    job.spec.completion_mode = "Indexed"
    job.spec.ClearField("completions")
    assert _find(validate(job), "spec.completions").detail == "when completion mode is Indexed"
    job.spec.completions, job.spec.parallelism = 10, 100_001
    err = _find(validate(job), "spec.parallelism")
    assert err.detail == "must be less than or equal to 100000 when completion mode is Indexed"
    job.spec.completions, job.spec.parallelism = 100_001, 10_001
    err = _find(validate(job), "spec.parallelism")
    assert err.detail == ("must be less than or equal to 10000 when completion mode is Indexed"
                          " and completions is greater than 100000")
    job.spec.parallelism = 10_000
    assert validate(job) == []


def test_job_selector_required_and_update() -> None:
    job = _job()
    job.spec.ClearField("selector")
    assert _fields(validate(job)) == {(ErrorType.REQUIRED, "spec.selector")}
    old = _job()
    new = v1.Job()
    new.CopyFrom(old)
    new.spec.parallelism = 4  # parallelism may change
    assert validate(new, old) == []
    new.spec.template.spec.containers[0].image = "other"
    assert _fields(validate(new, old)) == {(ErrorType.INVALID, "spec.template")}


def _cron_job(schedule: str = "*/5 * * * *") -> v1.CronJob:
    cj = v1.CronJob()
    cj.metadata.name, cj.metadata.namespace = "tick", "default"
    cj.spec.schedule = schedule
    _template(cj.spec.job_template.spec.template, "OnFailure")
    apply_defaults(cj)
    return cj


def test_cron_job_valid_and_schedules() -> None:
    assert validate(_cron_job()) == []
    assert validate(_cron_job("@daily")) == []
    for bad in ("* * * *", "61 * * * *", "@every 1h", "@fortnightly"):
        errs = validate(_cron_job(bad))
        assert _fields(errs) == {(ErrorType.INVALID, "spec.schedule")}, bad
    assert _find(validate(_cron_job("")), "spec.schedule").type is ErrorType.REQUIRED
    tz_in_schedule = validate(_cron_job("CRON_TZ=UTC 0 * * * *"))
    assert any(
        e.detail == "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
        for e in tz_in_schedule
    )


def test_cron_job_time_zone_policy_and_name() -> None:
    cj = _cron_job()
    cj.spec.time_zone = "Europe/Paris"
    assert validate(cj) == []
    cj.spec.time_zone = "Mars/Olympus"
    err = _find(validate(cj), "spec.timeZone")
    assert err.detail == "unknown time zone Mars/Olympus"
    cj = _cron_job()
    cj.spec.concurrency_policy = "Sometimes"
    assert _fields(validate(cj)) == {(ErrorType.NOT_SUPPORTED, "spec.concurrencyPolicy")}
    cj = _cron_job()
    cj.metadata.name = "a" * 53
    assert _find(validate(cj), "metadata.name").detail == "must be no more than 52 characters"
    cj = _cron_job()
    cj.spec.job_template.spec.template.spec.restart_policy = "Always"
    assert _fields(validate(cj)) == {
        (ErrorType.NOT_SUPPORTED, "spec.jobTemplate.spec.template.spec.restartPolicy")
    }


# ---------------------------------------------------------------- services and others


def _service(mutate: Callable[[v1.Service], object] | None = None) -> v1.Service:
    svc = v1.Service()
    svc.metadata.name, svc.metadata.namespace = "web", "default"
    svc.spec.selector["app"] = "web"
    svc.spec.ports.add(name="http", port=80, target_port=v1.IntOrString(str_val="http"))
    if mutate is not None:
        mutate(svc)
    apply_defaults(svc)
    return svc


def test_valid_services() -> None:
    assert validate(_service()) == []

    def headless(s: v1.Service) -> None:
        s.spec.ClearField("ports")
        s.spec.cluster_ip = "None"

    def external(s: v1.Service) -> None:
        s.spec.type = "ExternalName"
        s.spec.external_name = "db.example.com."

    def node_port(s: v1.Service) -> None:
        s.spec.type = "NodePort"
        s.spec.ports[0].node_port = 30080

    for mutate in (headless, external, node_port):
        assert validate(_service(mutate)) == [], mutate.__name__


def test_service_ports_required() -> None:
    errs = validate(_service(lambda s: s.spec.ClearField("ports")))
    assert _fields(errs) == {(ErrorType.REQUIRED, "spec.ports")}


def test_service_port_rules() -> None:
    def mutate(s: v1.Service) -> None:
        s.spec.ports.add(port=0, protocol="ICMP")
        s.spec.ports.add(name="http", port=81, target_port=v1.IntOrString(str_val="Not_A_Name"))
        s.spec.ports.add(name="x", port=82, node_port=30001)

    errs = validate(_service(mutate))
    assert _fields(errs) == {
        (ErrorType.REQUIRED, "spec.ports[1].name"),
        (ErrorType.INVALID, "spec.ports[1].port"),
        (ErrorType.INVALID, "spec.ports[1].targetPort"),  # defaulted from the bad port
        (ErrorType.NOT_SUPPORTED, "spec.ports[1].protocol"),
        (ErrorType.DUPLICATE, "spec.ports[2].name"),
        (ErrorType.INVALID, "spec.ports[2].targetPort"),
        (ErrorType.FORBIDDEN, "spec.ports[3].nodePort"),
    }
    assert _find(errs, "spec.ports[1].port").detail == "must be between 1 and 65535, inclusive"
    assert _find(errs, "spec.ports[3].nodePort").detail == (
        "may not be used when `type` is 'ClusterIP'"
    )


def test_service_target_port_int_range() -> None:
    errs = validate(_service(lambda s: s.spec.ports[0].target_port.__setattr__("int_val", 70000)))
    assert _fields(errs) == {(ErrorType.INVALID, "spec.ports[0].targetPort")}


def test_service_type_affinity_and_cluster_ip() -> None:
    errs = validate(_service(lambda s: setattr(s.spec, "type", "Internal")))
    assert _fields(errs) == {(ErrorType.NOT_SUPPORTED, "spec.type")}
    errs = validate(_service(lambda s: setattr(s.spec, "session_affinity", "Cookie")))
    assert _fields(errs) == {(ErrorType.NOT_SUPPORTED, "spec.sessionAffinity")}

    def client_ip(s: v1.Service) -> None:
        s.spec.session_affinity = "ClientIP"
        s.spec.session_affinity_config.client_ip.timeout_seconds = 86401

    err = _find(validate(_service(client_ip)), "spec.sessionAffinityConfig.clientIP.timeoutSeconds")
    assert err.detail == "must be greater than 0 and less than 86400"
    errs = validate(_service(lambda s: setattr(s.spec, "cluster_ip", "10.0.0.300")))
    assert _fields(errs) == {(ErrorType.INVALID, "spec.clusterIP")}
    assert validate(_service(lambda s: setattr(s.spec, "cluster_ip", "fd00::10"))) == []
    assert validate(_service(lambda s: setattr(s.spec, "cluster_ip", "127.96.0.10"))) == []
    errs = validate(_service(lambda s: setattr(s.spec, "type", "ExternalName")))
    assert (ErrorType.REQUIRED, "spec.externalName") in _fields(errs)


def test_service_cluster_ip_immutable() -> None:
    old = _service(lambda s: setattr(s.spec, "cluster_ip", "127.96.0.10"))
    new = v1.Service()
    new.CopyFrom(old)
    new.spec.cluster_ip = "127.96.0.11"
    assert _fields(validate(new, old)) == {(ErrorType.INVALID, "spec.clusterIP")}


def test_config_map_and_secret_keys() -> None:
    cm = v1.ConfigMap()
    cm.metadata.name, cm.metadata.namespace = "cfg", "default"
    cm.data["good.key_1"] = "v"
    cm.data["bad/key"] = "v"
    cm.binary_data["good.key_1"] = b"x"
    errs = validate(cm)
    assert [(e.field, e.detail.split(" (")[0]) for e in errs] == [
        ("data[bad/key]", CONFIG_KEY_MSG),
        ("data[good.key_1]", "duplicate of key present in binaryData"),
    ]
    secret = v1.Secret()
    secret.metadata.name, secret.metadata.namespace = "s", "default"
    secret.data["big"] = b"x" * (1024 * 1024 + 1)
    apply_defaults(secret)
    err = _find(validate(secret), "data")
    assert err.type is ErrorType.TOO_LONG


def test_secret_types() -> None:
    secret = v1.Secret(type="kubernetes.io/tls")
    secret.metadata.name, secret.metadata.namespace = "tls", "default"
    secret.data["tls.crt"] = b"c"
    assert _fields(validate(secret)) == {(ErrorType.REQUIRED, "data[tls.key]")}


def test_immutable_config_map() -> None:
    old = v1.ConfigMap(immutable=True)
    old.metadata.name, old.metadata.namespace = "cfg", "default"
    old.data["a"] = "1"
    new = v1.ConfigMap()
    new.CopyFrom(old)
    new.data["a"] = "2"
    assert _fields(validate(new, old)) == {(ErrorType.FORBIDDEN, "data")}


def test_endpoints() -> None:
    ep = v1.Endpoints()
    ep.metadata.name, ep.metadata.namespace = "web", "default"
    subset = ep.subsets.add()
    subset.addresses.add(ip="127.0.0.2")  # loopback is how the process runtime addresses pods
    subset.addresses.add(ip="not-an-ip")
    subset.ports.add(port=70000, protocol="TCP")
    errs = validate(ep)
    assert _fields(errs) == {
        (ErrorType.INVALID, "subsets[0].addresses[1].ip"),
        (ErrorType.INVALID, "subsets[0].ports[0].port"),
    }
    empty = v1.Endpoints()
    empty.metadata.name, empty.metadata.namespace = "web", "default"
    empty.subsets.add()
    assert _fields(validate(empty)) == {(ErrorType.REQUIRED, "subsets[0]")}


def test_node_lease_event_namespace() -> None:
    node = v1.Node()
    node.metadata.name = "node-1"
    node.spec.taints.add(key="dedicated", value="gpu", effect="NoSchedule")
    node.spec.taints.add(key="dedicated", value="x", effect="NoSchedule")
    node.spec.taints.add(key="k", effect="Sometimes")
    errs = validate(node)
    assert _fields(errs) == {
        (ErrorType.DUPLICATE, "spec.taints[1]"),
        (ErrorType.NOT_SUPPORTED, "spec.taints[2].effect"),
    }

    lease = v1.Lease()
    lease.metadata.name, lease.metadata.namespace = "kube-scheduler", "kube-system"
    lease.spec.lease_duration_seconds = 0
    assert _find(validate(lease), "spec.leaseDurationSeconds").detail == "must be greater than 0"

    ev = v1.Event()
    ev.metadata.name, ev.metadata.namespace = "web.1", "default"
    ev.involved_object.namespace = "other"
    assert _fields(validate(ev)) == {(ErrorType.INVALID, "involvedObject.namespace")}
    ev.involved_object.namespace = "default"
    assert validate(ev) == []

    ns = v1.Namespace()
    ns.metadata.name = "team-a"
    assert validate(_defaulted(ns)) == []
