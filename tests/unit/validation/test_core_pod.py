"""The pod spec: containers, probes, resources, volumes, env, placement; pod updates."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.protobuf.message import Message

from kubelite.api import convert
from kubelite.api import meta as m
from kubelite.api.defaults import apply_defaults
from kubelite.api.field_errors import ErrorType
from kubelite.api.validation import validate
from protos.v1 import objects_pb2 as v1
from tests.unit.validation.support import (
    VALID,
    At,
    Expect,
    exactly,
    find,
    make_deployment,
    make_pod,
    only_at,
    pvc_volume,
    template,
)

INVALID, REQUIRED, FORBIDDEN = ErrorType.INVALID, ErrorType.REQUIRED, ErrorType.FORBIDDEN
NOT_SUPPORTED, DUPLICATE, NOT_FOUND = (
    ErrorType.NOT_SUPPORTED, ErrorType.DUPLICATE, ErrorType.NOT_FOUND
)
CTR = "spec.containers[0]"


def _bad_cpu_quantity(p: v1.Pod) -> None:
    p.spec.containers[0].resources.requests["cpu"] = "abc"


def _restart_sometimes(p: v1.Pod) -> None:
    p.spec.restart_policy = "Sometimes"


def _negative_period(p: v1.Pod) -> None:
    p.spec.containers[0].liveness_probe.period_seconds = -1


def _negative_delay_and_thresholds(p: v1.Pod) -> None:
    probe = p.spec.containers[0].readiness_probe
    probe.initial_delay_seconds = -5
    probe.failure_threshold = -1
    probe.timeout_seconds = -2


def _http_get_unknown_port_name(p: v1.Pod) -> None:
    p.spec.containers[0].liveness_probe.http_get.port.str_val = "metrics"


def _tcp_socket_invalid_port_name(p: v1.Pod) -> None:
    p.spec.containers[0].readiness_probe.tcp_socket.port.str_val = "NOPE"


def _probe_port_out_of_range(p: v1.Pod) -> None:
    p.spec.containers[0].readiness_probe.tcp_socket.port.int_val = 70000


def _two_probe_handlers(p: v1.Pod) -> None:
    p.spec.containers[0].liveness_probe.exec.command.append("true")


def _no_probe_handler(p: v1.Pod) -> None:
    p.spec.containers[0].startup_probe.period_seconds = 5


def _liveness_success_threshold(p: v1.Pod) -> None:
    p.spec.containers[0].liveness_probe.success_threshold = 2


def _no_containers(p: v1.Pod) -> None:
    p.spec.ClearField("containers")


def _container_names_and_images(p: v1.Pod) -> None:
    p.spec.containers.add(name="app", image="")
    p.spec.containers.add(name="Bad_Name", image="x")
    p.spec.init_containers.add(name="app", image="busybox")


def _container_ports(p: v1.Pod) -> None:
    ports = p.spec.containers[0].ports
    ports.add(name="http", container_port=8081)
    ports.add(name="UPPER", container_port=0)
    ports.add(container_port=65536, protocol="HTTP")


def _duplicate_host_ports(p: v1.Pod) -> None:
    p.spec.containers[0].ports[0].host_port = 80
    p.spec.containers.add(name="b", image="x").ports.add(container_port=81, host_port=80)


def _resources(p: v1.Pod) -> None:
    res = p.spec.containers[0].resources
    res.requests["cpu"] = "1"
    res.requests["gpu"] = "1"
    res.limits["memory"] = "-1Mi"
    res.requests["example.com/dongle"] = "1"
    res.limits["example.com/dongle"] = "2"


def _hugepages_and_extended(p: v1.Pod) -> None:
    res = p.spec.containers[0].resources
    res.limits["hugepages-2Mi"] = "4Mi"
    res.requests["hugepages-2Mi"] = "4Mi"
    res.limits["example.com/fpga"] = "1"


def _volumes_and_mounts(p: v1.Pod) -> None:
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


def _env(p: v1.Pod) -> None:
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


def _tolerations(p: v1.Pod) -> None:
    t = p.spec.tolerations
    t.add(key="k", operator="Exists", effect="NoSchedule")
    t.add(operator="Exists")
    t.add(key="k", operator="Exists", value="v")
    t.add(key="k", operator="Sometimes")
    t.add(key="k", value="v", effect="NoWay")
    t.add(key="k", value="v", effect="NoSchedule", toleration_seconds=5)
    t.add(value="v")


def _node_affinity_and_node_selector(p: v1.Pod) -> None:
    p.spec.node_selector["disk"] = "ssd"
    p.spec.node_selector["bad key!"] = "x"
    req = p.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    term = req.node_selector_terms.add()
    term.match_expressions.add(key="zone", operator="In", values=["a"])
    term.match_expressions.add(key="cpus", operator="Gt", values=["4"])
    term.match_expressions.add(key="zone", operator="Near", values=["a"])
    term.match_expressions.add(key="zone", operator="In")
    term.match_expressions.add(key="zone", operator="Exists", values=["a"])


def _grace_period_and_dns_policy(p: v1.Pod) -> None:
    p.spec.termination_grace_period_seconds = -1
    p.spec.dns_policy = "Google"


def _dns_none_without_config(p: v1.Pod) -> None:
    p.spec.dns_policy = "None"


def _dns_none_without_nameservers(p: v1.Pod) -> None:
    p.spec.dns_policy = "None"
    p.spec.dns_config.searches.append("example.com")


def _dns_none_with_a_nameserver(p: v1.Pod) -> None:
    p.spec.dns_policy = "None"
    p.spec.dns_config.nameservers.append("192.0.2.53")
    p.spec.dns_config.searches.extend(["example.com", "fqdn.example."])
    p.spec.dns_config.options.add(name="ndots", value="2")
    p.spec.dns_config.options.add(name="edns0")


def _dns_config_too_many_and_bad_values(p: v1.Pod) -> None:
    config = p.spec.dns_config
    config.nameservers.extend(["192.0.2.1", "2001:db8::1", "192.0.2.3", "not-an-ip"])
    config.searches.extend(["ok.example", "Bad_Domain"])
    config.options.add(name="ndots", value="5")
    config.options.add(value="1")


def _dns_config_too_many_searches(p: v1.Pod) -> None:
    p.spec.dns_config.searches.extend(f"d{i}.example" for i in range(33))


def _dns_config_search_list_too_long(p: v1.Pod) -> None:
    # 9 domains of 249 characters and their spaces: 2249 characters, 9 paths.
    p.spec.dns_config.searches.extend(
        ".".join(["a" * 61, "b" * 61, "c" * 61, f"d{i}" + "x" * 61]) for i in range(9))


def _init_containers(p: v1.Pod) -> None:
    init = p.spec.init_containers.add(name="init", image="busybox")
    init.readiness_probe.exec.command.append("true")
    sidecar = p.spec.init_containers.add(name="sidecar", image="busybox", restart_policy="Always")
    sidecar.readiness_probe.exec.command.append("true")
    p.spec.init_containers.add(name="odd", image="busybox", restart_policy="Never")


AFFINITY = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
TERM = f"{AFFINITY}.nodeSelectorTerms[0].matchExpressions"

POD_SPEC_CASES = [
    pytest.param(_bad_cpu_quantity, only_at(At(
        f"{CTR}.resources.requests[cpu]", type=INVALID, value="abc",
        detail_start="quantities must match the regular expression",
    )), id="bad-cpu-quantity-path"),
    pytest.param(_restart_sometimes, only_at(At(
        "spec.restartPolicy", type=NOT_SUPPORTED,
        text='spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always",'
             ' "OnFailure", "Never"',
    )), id="restart-policy-not-supported"),
    pytest.param(_negative_period, only_at(At(
        f"{CTR}.livenessProbe.periodSeconds", type=INVALID,
        detail="must be greater than or equal to 0",
    ), count=1), id="negative-period-seconds"),
    pytest.param(_negative_delay_and_thresholds, exactly(
        (INVALID, f"{CTR}.readinessProbe.initialDelaySeconds"),
        (INVALID, f"{CTR}.readinessProbe.failureThreshold"),
        (INVALID, f"{CTR}.readinessProbe.timeoutSeconds"),
    ), id="negative-initial-delay-and-thresholds"),
    pytest.param(_http_get_unknown_port_name, only_at(At(
        f"{CTR}.livenessProbe.httpGet.port", type=INVALID, value="metrics",
    )), id="probe-named-port-must-exist"),
    pytest.param(_tcp_socket_invalid_port_name, only_at(At(
        f"{CTR}.readinessProbe.tcpSocket.port", detail_has="alpha-numeric",
    )), id="probe-port-name-invalid"),
    pytest.param(_probe_port_out_of_range, only_at(At(
        f"{CTR}.readinessProbe.tcpSocket.port", detail="must be between 1 and 65535, inclusive",
    )), id="probe-port-number-range"),
    pytest.param(_two_probe_handlers, exactly((FORBIDDEN, f"{CTR}.livenessProbe.httpGet")),
                 id="probe-two-handlers"),
    pytest.param(_no_probe_handler, only_at(At(
        f"{CTR}.startupProbe", type=REQUIRED, detail="must specify a handler type",
    )), id="probe-no-handler"),
    pytest.param(_liveness_success_threshold, only_at(At(
        f"{CTR}.livenessProbe.successThreshold", detail="must be 1",
    )), id="liveness-success-threshold-must-be-one"),
    pytest.param(_no_containers, exactly((REQUIRED, "spec.containers")),
                 id="containers-required"),
    pytest.param(_container_names_and_images, exactly(
        (DUPLICATE, "spec.containers[1].name"),
        (REQUIRED, "spec.containers[1].image"),
        (INVALID, "spec.containers[2].name"),
        (DUPLICATE, "spec.initContainers[0].name"),
    ), id="container-names-and-images"),
    pytest.param(_container_ports, exactly(
        (DUPLICATE, f"{CTR}.ports[1].name"),
        (INVALID, f"{CTR}.ports[2].name"),
        (REQUIRED, f"{CTR}.ports[2].containerPort"),
        (INVALID, f"{CTR}.ports[3].containerPort"),
        (NOT_SUPPORTED, f"{CTR}.ports[3].protocol"),
    ), id="container-ports"),
    pytest.param(_duplicate_host_ports,
                 exactly((DUPLICATE, "spec.containers[1].ports[0].hostPort")),
                 id="duplicate-host-ports"),
    pytest.param(_resources, only_at(
        At(f"{CTR}.resources.requests[cpu]",
           detail="must be less than or equal to cpu limit of 500m"),
        At(f"{CTR}.resources.requests[gpu]", detail="must be a standard resource for containers"),
        At(f"{CTR}.resources.limits[memory]", detail="must be greater than or equal to 0"),
        At(f"{CTR}.resources.requests[example.com/dongle]",
           detail="must be equal to example.com/dongle limit of 2"),
    ), id="resources"),
    pytest.param(_hugepages_and_extended, VALID,
                 id="hugepages-and-extended-are-known-resource-names"),
    pytest.param(_volumes_and_mounts, exactly(
        (DUPLICATE, "spec.volumes[1].name"),
        (FORBIDDEN, "spec.volumes[2].secret"),
        (REQUIRED, "spec.volumes[3].configMap.name"),
        (NOT_FOUND, f"{CTR}.volumeMounts[1].name"),
        (INVALID, f"{CTR}.volumeMounts[1].mountPath"),
        (REQUIRED, f"{CTR}.volumeMounts[2].mountPath"),
    ), id="volumes-and-mounts"),
    pytest.param(_env, exactly(
        (INVALID, f"{CTR}.env[1].name"),
        (REQUIRED, f"{CTR}.env[2].name"),
        (INVALID, f"{CTR}.env[3].valueFrom"),
        (NOT_SUPPORTED, f"{CTR}.env[4].valueFrom.fieldRef.fieldPath"),
        (INVALID, f"{CTR}.env[5].valueFrom"),
        at=(At(f"{CTR}.env[3].valueFrom",
               detail="may not be specified when `value` is not empty"),),
    ), id="env"),
    pytest.param(_tolerations, exactly(
        (INVALID, "spec.tolerations[2].operator"),
        (NOT_SUPPORTED, "spec.tolerations[3].operator"),
        (NOT_SUPPORTED, "spec.tolerations[4].effect"),
        (INVALID, "spec.tolerations[5].effect"),
        (INVALID, "spec.tolerations[6].operator"),
        at=(At("spec.tolerations[5].effect",
               detail="effect must be 'NoExecute' when `tolerationSeconds` is set"),),
    ), id="tolerations"),
    pytest.param(_node_affinity_and_node_selector, exactly(
        (INVALID, "spec.nodeSelector"),
        (INVALID, f"{TERM}[2].operator"),
        (REQUIRED, f"{TERM}[3].values"),
        (FORBIDDEN, f"{TERM}[4].values"),
    ), id="node-affinity-and-node-selector"),
    pytest.param(_grace_period_and_dns_policy, exactly(
        (INVALID, "spec.terminationGracePeriodSeconds"),
        (NOT_SUPPORTED, "spec.dnsPolicy"),
    ), id="termination-grace-period-and-dns-policy"),
    pytest.param(_dns_none_without_config, exactly(
        (REQUIRED, "spec.dnsConfig"),
        at=(At("spec.dnsConfig", text="spec.dnsConfig: Required value: must provide"
                                      " `dnsConfig` when `dnsPolicy` is None"),),
    ), id="dns-none-needs-dns-config"),
    pytest.param(_dns_none_without_nameservers, exactly(
        (REQUIRED, "spec.dnsConfig.nameservers"),
        at=(At("spec.dnsConfig.nameservers",
               detail="must provide at least one DNS nameserver when `dnsPolicy` is None"),),
    ), id="dns-none-needs-a-nameserver"),
    pytest.param(_dns_none_with_a_nameserver, VALID, id="dns-none-with-config"),
    pytest.param(_dns_config_too_many_and_bad_values, exactly(
        (INVALID, "spec.dnsConfig.nameservers"),
        (INVALID, "spec.dnsConfig.nameservers[3]"),
        (INVALID, "spec.dnsConfig.searches[1]"),
        (REQUIRED, "spec.dnsConfig.options[1]"),
        at=(At("spec.dnsConfig.nameservers", detail="must not have more than 3 nameservers"),
            At("spec.dnsConfig.nameservers[3]", value="not-an-ip",
               detail_start="must be a valid IP address"),
            At("spec.dnsConfig.searches[1]", value="Bad_Domain",
               detail_start="a lowercase RFC 1123 subdomain"),
            At("spec.dnsConfig.options[1]", detail="must not be empty")),
    ), id="dns-config-limits-ips-domains-option-names"),
    pytest.param(_dns_config_too_many_searches, exactly(
        (INVALID, "spec.dnsConfig.searches"),
        at=(At("spec.dnsConfig.searches", detail="must not have more than 32 search paths"),),
    ), id="dns-config-32-search-paths"),
    pytest.param(_dns_config_search_list_too_long, exactly(
        (INVALID, "spec.dnsConfig.searches"),
        at=(At("spec.dnsConfig.searches", detail="must not have more than 2048 characters"
                                                 " (including spaces) in the search list"),),
    ), id="dns-config-2048-characters"),
    pytest.param(_init_containers, exactly(
        (FORBIDDEN, "spec.initContainers[0].readinessProbe"),
        (NOT_SUPPORTED, "spec.initContainers[2].restartPolicy"),
    ), id="init-container-rules"),
]


@pytest.mark.parametrize(("mutate", "expect"), POD_SPEC_CASES)
def test_pod_spec_rules(mutate: Callable[[v1.Pod], None], expect: Expect) -> None:
    expect.check(validate(make_pod(mutate)))


# ---------------------------------------------------------------- pod updates


def _allowed_update(new: v1.Pod) -> None:
    new.spec.containers[0].image = "nginx:1.26"
    new.spec.active_deadline_seconds = 100
    new.spec.tolerations.add(key="other", operator="Exists")
    new.spec.tolerations[0].toleration_seconds = 30


def _container_port_changed(new: v1.Pod) -> None:
    new.spec.containers[0].ports[0].container_port = 9090


def _tolerations_dropped(new: v1.Pod) -> None:
    new.spec.ClearField("tolerations")


@pytest.mark.parametrize(("change", "expect"), [
    pytest.param(_allowed_update, VALID, id="image-deadline-added-tolerations"),
    pytest.param(_container_port_changed, exactly((FORBIDDEN, "spec"), at=(At(
        "spec", detail_start="pod updates may not change fields other than"
                             " `spec.containers[*].image`",
    ),)), id="other-spec-fields-forbidden"),
    pytest.param(_tolerations_dropped, Expect(has=((FORBIDDEN, "spec.tolerations"),)),
                 id="tolerations-may-not-be-dropped"),
])
def test_pod_update_rules(change: Callable[[v1.Pod], None], expect: Expect) -> None:
    old = make_pod(
        lambda p: p.spec.tolerations.add(
            key="k", operator="Exists", effect="NoExecute", toleration_seconds=60
        )
    )
    new = m.copy(old)
    change(new)
    expect.check(validate(new, old))


def test_pod_update_active_deadline_may_only_decrease() -> None:
    old = make_pod(lambda p: setattr(p.spec, "active_deadline_seconds", 100))
    new = m.copy(old)
    new.spec.active_deadline_seconds = 200
    only_at(At("spec.activeDeadlineSeconds",
               detail="must be less than or equal to previous value")).check(validate(new, old))


# ---------------------------------------------------------------- persistentVolumeClaim volumes


def _pod_with_claim() -> Message:
    return make_pod(lambda p: pvc_volume(p.spec))


def _deployment_with_claim() -> Message:
    d = make_deployment()
    pvc_volume(d.spec.template.spec)
    return d


def _cron_job_with_claim() -> Message:
    cj = v1.CronJob()
    cj.metadata.name, cj.metadata.namespace = "nightly", "default"
    cj.spec.schedule = "0 0 * * *"
    template(cj.spec.job_template.spec.template, "Never")
    pvc_volume(cj.spec.job_template.spec.template.spec)
    apply_defaults(cj)
    return cj


@pytest.mark.parametrize(("build", "expect"), [
    pytest.param(_pod_with_claim, only_at(At(
        "spec.volumes[0].persistentVolumeClaim", type=NOT_SUPPORTED,
    )), id="pod"),
    pytest.param(_deployment_with_claim, exactly(
        (NOT_SUPPORTED, "spec.template.spec.volumes[0].persistentVolumeClaim"),
    ), id="deployment"),
    pytest.param(_cron_job_with_claim, exactly(
        (NOT_SUPPORTED, "spec.jobTemplate.spec.template.spec.volumes[0].persistentVolumeClaim"),
    ), id="cronjob"),
])
def test_persistent_volume_claim_volumes_are_unsupported(
    build: Callable[[], Message], expect: Expect
) -> None:
    expect.check(validate(build()))


def test_persistent_volume_claim_volume_message() -> None:
    err = find(validate(_pod_with_claim()), "spec.volumes[0].persistentVolumeClaim")
    assert str(err).startswith("spec.volumes[0].persistentVolumeClaim: Unsupported value:"
                               " persistentVolumeClaim volumes are not supported")


def test_stored_persistent_volume_claim_volumes_stay_updatable() -> None:
    # An object stored before the rule keeps its volume through updates (status, labels).
    old = make_pod(lambda p: pvc_volume(p.spec))
    new = m.copy(old)
    new.metadata.labels["touched"] = "yes"
    assert validate(new, old) == []


def test_a_kubernetes_dns_config_loads_with_its_json_names() -> None:
    _, pod = convert.from_dict({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dns", "namespace": "default"},
        "spec": {
            "containers": [{"name": "app", "image": "busybox"}],
            "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["192.0.2.53"], "searches": ["ns1.svc.example"],
                          "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]},
        },
    })
    assert isinstance(pod, v1.Pod)
    apply_defaults(pod)
    assert validate(pod) == []
    assert convert.message_to_dict(pod)["spec"]["dnsConfig"] == {
        "nameservers": ["192.0.2.53"], "searches": ["ns1.svc.example"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
    }
