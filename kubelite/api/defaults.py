"""Kubernetes' defaulting (the SetDefaults_* functions of core/v1, apps/v1, batch/v1).

Each kind's strategy (kubelite.api.strategies) defaults its objects with the functions here;
``apply_defaults(obj)`` fills unset fields in place through it, and is idempotent. It runs
before validation, so validation only ever sees explicit values or Kubernetes' defaults.
"""

from __future__ import annotations

from google.protobuf.message import Message

from protos.v1 import objects_pb2 as v1

DEFAULT_SCHEDULER_NAME = "default-scheduler"
DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = 30
DEFAULT_CLIENT_IP_AFFINITY_SECONDS = 10800
DEFAULT_VOLUME_MODE = 0o644
LABEL_METADATA_NAME = "kubernetes.io/metadata.name"
JOB_CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_JOB_CONTROLLER_UID_LABEL = "controller-uid"
LEGACY_JOB_NAME_LABEL = "job-name"


def image_tag(image: str) -> str:
    """The image's tag as Kubernetes' ParseImageName sees it ("latest" when neither tag nor
    digest is given, "" for a digest-only reference)."""
    if not image:
        return ""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return "" if digest else "latest"


def _default_http_get(action: v1.HTTPGetAction) -> None:
    if not action.path:
        action.path = "/"
    if not action.scheme:
        action.scheme = "HTTP"


def _default_probe(probe: v1.Probe) -> None:
    if probe.timeout_seconds == 0:
        probe.timeout_seconds = 1
    if probe.period_seconds == 0:
        probe.period_seconds = 10
    if probe.success_threshold == 0:
        probe.success_threshold = 1
    if probe.failure_threshold == 0:
        probe.failure_threshold = 3
    if probe.HasField("http_get"):
        _default_http_get(probe.http_get)


def _default_container(ctr: v1.Container) -> None:
    if not ctr.image_pull_policy:
        ctr.image_pull_policy = "Always" if image_tag(ctr.image) == "latest" else "IfNotPresent"
    if not ctr.termination_message_path:
        ctr.termination_message_path = "/dev/termination-log"
    if not ctr.termination_message_policy:
        ctr.termination_message_policy = "File"
    for port in ctr.ports:
        if not port.protocol:
            port.protocol = "TCP"
    for probe_field in ("liveness_probe", "readiness_probe", "startup_probe"):
        if ctr.HasField(probe_field):
            _default_probe(getattr(ctr, probe_field))
    if ctr.HasField("lifecycle"):
        for hook in ("post_start", "pre_stop"):
            if ctr.lifecycle.HasField(hook):
                handler: v1.LifecycleHandler = getattr(ctr.lifecycle, hook)
                if handler.HasField("http_get"):
                    _default_http_get(handler.http_get)
    for env in ctr.env:
        if (
            env.HasField("value_from")
            and env.value_from.HasField("field_ref")
            and not env.value_from.field_ref.api_version
        ):
            env.value_from.field_ref.api_version = "v1"


def _has_volume_source(vol: v1.Volume) -> bool:
    return any(
        vol.HasField(f)
        for f in (
            "host_path",
            "empty_dir",
            "config_map",
            "secret",
            "downward_api",
            "persistent_volume_claim",
            "projected",
        )
    )


DEFAULT_TOKEN_EXPIRATION_SECONDS = 3600
"""A projected ServiceAccount token's lifetime unless the pod says, an hour as upstream."""


def _default_projected(source: v1.ProjectedVolumeSource) -> None:
    if not source.HasField("default_mode"):
        source.default_mode = DEFAULT_VOLUME_MODE
    for projection in source.sources:
        token = projection.service_account_token
        if projection.HasField("service_account_token") and not token.HasField(
            "expiration_seconds"
        ):
            token.expiration_seconds = DEFAULT_TOKEN_EXPIRATION_SECONDS
        for item in projection.downward_api.items:
            if item.HasField("field_ref") and not item.field_ref.api_version:
                item.field_ref.api_version = "v1"


def _default_volume(vol: v1.Volume) -> None:
    if not _has_volume_source(vol):
        vol.empty_dir.SetInParent()  # a volume with no source is an emptyDir
    if vol.HasField("config_map") and not vol.config_map.HasField("default_mode"):
        vol.config_map.default_mode = DEFAULT_VOLUME_MODE
    if vol.HasField("secret") and not vol.secret.HasField("default_mode"):
        vol.secret.default_mode = DEFAULT_VOLUME_MODE
    if vol.HasField("downward_api"):
        if not vol.downward_api.HasField("default_mode"):
            vol.downward_api.default_mode = DEFAULT_VOLUME_MODE
        for item in vol.downward_api.items:
            if item.HasField("field_ref") and not item.field_ref.api_version:
                item.field_ref.api_version = "v1"
    if vol.HasField("host_path") and not vol.host_path.HasField("type"):
        vol.host_path.type = ""
    if vol.HasField("projected"):
        _default_projected(vol.projected)


def default_pod_spec(spec: v1.PodSpec) -> None:
    """SetDefaults_PodSpec and the defaults of everything nested in a pod spec."""
    if not spec.dns_policy:
        spec.dns_policy = "ClusterFirst"
    if not spec.restart_policy:
        spec.restart_policy = "Always"
    if not spec.HasField("termination_grace_period_seconds"):
        spec.termination_grace_period_seconds = DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
    if not spec.scheduler_name:
        spec.scheduler_name = DEFAULT_SCHEDULER_NAME
    if not spec.HasField("security_context"):
        spec.security_context.SetInParent()
    if spec.host_network:
        # With the host's network the container port is the host port.
        for ctr in (*spec.init_containers, *spec.containers):
            for port in ctr.ports:
                if port.host_port == 0:
                    port.host_port = port.container_port
    for vol in spec.volumes:
        _default_volume(vol)
    for ctr in (*spec.init_containers, *spec.containers):
        _default_container(ctr)


def _default_template(template: v1.PodTemplateSpec) -> None:
    default_pod_spec(template.spec)


def default_pod(pod: v1.Pod) -> None:
    # Pod-only (not templates): requests default to limits, service links on.
    for ctr in (*pod.spec.init_containers, *pod.spec.containers):
        for name, value in ctr.resources.limits.items():
            if name not in ctr.resources.requests:
                ctr.resources.requests[name] = value
    if not pod.spec.HasField("enable_service_links"):
        pod.spec.enable_service_links = True
    default_pod_spec(pod.spec)


def default_replica_set(rs: v1.ReplicaSet) -> None:
    if not rs.spec.HasField("replicas"):
        rs.spec.replicas = 1
    _default_template(rs.spec.template)


def default_deployment(d: v1.Deployment) -> None:
    spec = d.spec
    if not spec.HasField("replicas"):
        spec.replicas = 1
    strategy = spec.strategy
    if not strategy.type:
        strategy.type = "RollingUpdate"
    if strategy.type == "RollingUpdate":
        ru = strategy.rolling_update
        if not ru.HasField("max_unavailable") or ru.max_unavailable.WhichOneof("value") is None:
            ru.max_unavailable.str_val = "25%"
        if not ru.HasField("max_surge") or ru.max_surge.WhichOneof("value") is None:
            ru.max_surge.str_val = "25%"
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = 10
    if not spec.HasField("progress_deadline_seconds"):
        spec.progress_deadline_seconds = 600
    _default_template(spec.template)


def default_daemon_set(ds: v1.DaemonSet) -> None:
    spec = ds.spec
    strategy = spec.update_strategy
    if not strategy.type:
        strategy.type = "RollingUpdate"
    if strategy.type == "RollingUpdate":
        ru = strategy.rolling_update
        if ru.max_unavailable.WhichOneof("value") is None:
            ru.max_unavailable.int_val = 1
        if ru.max_surge.WhichOneof("value") is None:
            ru.max_surge.int_val = 0
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = 10
    _default_template(spec.template)


def _default_pvc_spec(spec: v1.PersistentVolumeClaimSpec) -> None:
    if not spec.HasField("volume_mode"):
        spec.volume_mode = "Filesystem"


def default_stateful_set(sts: v1.StatefulSet) -> None:
    spec = sts.spec
    if not spec.pod_management_policy:
        spec.pod_management_policy = "OrderedReady"
    strategy = spec.update_strategy
    if not strategy.type:
        strategy.type = "RollingUpdate"
        strategy.rolling_update.SetInParent()
    if (
        strategy.type == "RollingUpdate"
        and strategy.HasField("rolling_update")
        and not strategy.rolling_update.HasField("partition")
    ):
        strategy.rolling_update.partition = 0
    policy = spec.persistent_volume_claim_retention_policy
    if not policy.when_deleted:
        policy.when_deleted = "Retain"
    if not policy.when_scaled:
        policy.when_scaled = "Retain"
    if not spec.HasField("replicas"):
        spec.replicas = 1
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = 10
    for claim in spec.volume_claim_templates:
        _default_pvc_spec(claim.spec)
    _default_template(spec.template)


def default_job(job: v1.Job) -> None:
    spec = job.spec
    # Both unset: a non-parallel job. Only parallelism unset: it alone defaults to 1.
    if not spec.HasField("completions") and not spec.HasField("parallelism"):
        spec.completions = 1
        spec.parallelism = 1
    if not spec.HasField("parallelism"):
        spec.parallelism = 1
    if not spec.HasField("backoff_limit"):
        spec.backoff_limit = 6
    if spec.template.metadata.labels and not job.metadata.labels:
        job.metadata.labels.update(spec.template.metadata.labels)
    if not spec.HasField("completion_mode"):
        spec.completion_mode = "NonIndexed"
    if not spec.HasField("suspend"):
        spec.suspend = False
    _default_template(spec.template)


def default_cron_job(cj: v1.CronJob) -> None:
    spec = cj.spec
    if not spec.concurrency_policy:
        spec.concurrency_policy = "Allow"
    if not spec.HasField("suspend"):
        spec.suspend = False
    if not spec.HasField("successful_jobs_history_limit"):
        spec.successful_jobs_history_limit = 3
    if not spec.HasField("failed_jobs_history_limit"):
        spec.failed_jobs_history_limit = 1
    # Job-level defaults (parallelism...) are not applied to templates, pod defaults are.
    _default_template(spec.job_template.spec.template)


def default_service(svc: v1.Service) -> None:
    spec = svc.spec
    if not spec.session_affinity:
        spec.session_affinity = "None"
    if spec.session_affinity == "None":
        spec.ClearField("session_affinity_config")
    elif (
        spec.session_affinity == "ClientIP"
        and not spec.session_affinity_config.client_ip.HasField("timeout_seconds")
    ):
        spec.session_affinity_config.client_ip.timeout_seconds = DEFAULT_CLIENT_IP_AFFINITY_SECONDS
    if not spec.type:
        spec.type = "ClusterIP"
    for port in spec.ports:
        if not port.protocol:
            port.protocol = "TCP"
        which = port.target_port.WhichOneof("value")
        if (
            which is None
            or (which == "int_val" and port.target_port.int_val == 0)
            or (which == "str_val" and not port.target_port.str_val)
        ):
            port.target_port.int_val = port.port
    externally_accessible = spec.type in ("LoadBalancer", "NodePort") or (
        spec.type == "ClusterIP" and len(spec.external_ips) > 0
    )
    if externally_accessible and not spec.external_traffic_policy:
        spec.external_traffic_policy = "Cluster"
    if not spec.HasField("internal_traffic_policy") and spec.type in (
        "ClusterIP",
        "NodePort",
        "LoadBalancer",
    ):
        spec.internal_traffic_policy = "Cluster"
    if spec.type == "LoadBalancer" and not spec.HasField("allocate_load_balancer_node_ports"):
        spec.allocate_load_balancer_node_ports = True


def default_endpoints(ep: v1.Endpoints) -> None:
    for subset in ep.subsets:
        for port in subset.ports:
            if not port.protocol:
                port.protocol = "TCP"


def default_secret(secret: v1.Secret) -> None:
    if not secret.type:
        secret.type = "Opaque"
    # stringData is write-only: it is merged into data (winning over it), as Kubernetes'
    # conversion does, and never stored.
    for key, value in secret.string_data.items():
        secret.data[key] = value.encode()
    secret.ClearField("string_data")


def default_namespace(ns: v1.Namespace) -> None:
    if ns.metadata.name:
        ns.metadata.labels[LABEL_METADATA_NAME] = ns.metadata.name
    if not ns.status.phase:
        ns.status.phase = "Active"


def default_node(node: v1.Node) -> None:
    # Allocatable defaults to capacity when the kubelet reports none.
    if not node.status.allocatable and node.status.capacity:
        node.status.allocatable.update(node.status.capacity)


def default_pvc(pvc: v1.PersistentVolumeClaim) -> None:
    _default_pvc_spec(pvc.spec)


def apply_defaults(obj: Message) -> None:
    """Fill Kubernetes' defaults into ``obj`` in place (a no-op for kinds without any): its
    kind's strategy does, with the functions here."""
    # The registry holds the strategies, which use this module: imported when first needed.
    from kubelite.api.registry import strategy_for

    if isinstance(obj, v1.PodTemplateSpec):  # not a kind: the defaults of every template
        _default_template(obj)
        return
    strategy = strategy_for(type(obj))
    if strategy is not None:
        strategy.default(obj)


def generate_job_selector(job: v1.Job) -> None:
    """What the Job strategy does on create unless ``manualSelector`` is true: select the job's
    pods by its uid and label the template accordingly. Needs ``metadata.uid`` to be set."""
    if job.spec.manual_selector:
        return
    uid = job.metadata.uid
    labels = job.spec.template.metadata.labels
    labels[JOB_CONTROLLER_UID_LABEL] = uid
    labels[LEGACY_JOB_CONTROLLER_UID_LABEL] = uid
    labels[JOB_NAME_LABEL] = job.metadata.name
    labels[LEGACY_JOB_NAME_LABEL] = job.metadata.name
    job.spec.selector.Clear()
    job.spec.selector.match_labels[JOB_CONTROLLER_UID_LABEL] = uid
