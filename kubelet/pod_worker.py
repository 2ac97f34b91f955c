"""One worker per pod on this node: it makes the containers match the pod, level-triggered.

``sync()`` re-reads what the runtime runs for the pod and converges: init containers in
order, then the containers, restarted per restartPolicy with Kubernetes' crash-loop back-off;
probes are started per running container; the status is written when it changes. A pod with a
deletionTimestamp is terminated gracefully (preStop, SIGTERM, SIGKILL after the grace period)
and then its deletion is confirmed. The worker is woken by pod updates, by its probes, by
container exits (housekeeping) and by timers for back-offs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from kubelet.dns_config import dns_for_pod, pod_domain
from kubelet.env import EnvResolver, pod_hostname
from kubelet.errors import ContainerStartError
from kubelet.linux_config import resources_for, security_for, verify_run_as_non_root
from kubelet.pod_ips import PodIPAllocator, PodIPsExhausted
from kubelet.prober import ProbeKind, ProbeWorker, run_handler
from kubelet.pull_secrets import matching, pull_credentials
from kubelet.runtime.images import expand
from kubelet.runtime.interface import (
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    HostAlias,
    ImagePull,
    PodSandboxConfig,
    PortMapping,
    Runtime,
    RuntimeError_,
)
from kubelet.settings import KubeletSettings
from kubelet.status import (
    MAX_CONTAINER_MESSAGE_BYTES,
    MAX_EVENT_MESSAGE_BYTES,
    ContainerView,
    build_status,
    same_status,
    truncate_message,
)
from kubelet.volumes import VolumeManager, container_mounts, read_only_volumes
from kubelite.api import convert, pods
from kubelite.api import meta as m
from kubelite.api.errors import ApiError, NotFound
from kubelite.api.registry import by_kind
from kubelite.client.client import ApiClient
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from protos.v1 import objects_pb2 as v1

if TYPE_CHECKING:
    from collections.abc import Callable

log = structlog.get_logger(__name__)

POD_TYPE = by_kind("Pod")


@dataclass
class NodeContext:
    """What every pod worker of this kubelet shares."""

    settings: KubeletSettings
    client: ApiClient
    runtime: Runtime
    recorder: EventRecorder
    env: EnvResolver
    volumes: VolumeManager
    service_env: Callable[[v1.Pod], Mapping[str, str]] = field(default=lambda pod: {})
    """Service environment variables for a pod (empty when enableServiceLinks is false)."""
    pod_ips: PodIPAllocator | None = None
    """Each pod's own IP from the node's podCIDR; None: pods share the node's IP."""

    @property
    def node_ip(self) -> str:
        return self.settings.address


def _labels(pod: v1.Pod, container: str, attempt: int, init: bool) -> dict[str, str]:
    return {
        "io.kubernetes.pod.uid": pod.metadata.uid,
        "io.kubernetes.pod.name": pod.metadata.name,
        "io.kubernetes.pod.namespace": pod.metadata.namespace,
        "io.kubernetes.container.name": container,
        "io.kubernetes.container.attempt": str(attempt),
        "io.kubernetes.container.init": "true" if init else "false",
    }


def sandbox_config(pod: v1.Pod, settings: KubeletSettings) -> PodSandboxConfig:
    """The pod's sandbox: its identity, hostname, namespaces shared with the node, the
    hostPorts of its containers, and its DNS: its resolver configuration by its dnsPolicy and
    this kubelet's cluster DNS settings, its domain and host aliases (for its /etc/hosts).
    Raises RuntimeError_ when the node's resolver configuration cannot be read."""
    spec = pod.spec
    return PodSandboxConfig(
        uid=pod.metadata.uid,
        name=pod.metadata.name,
        namespace=pod.metadata.namespace,
        labels=dict(pod.metadata.labels),
        hostname=pod_hostname(pod),
        dns=dns_for_pod(pod, settings),
        domain=pod_domain(pod, settings.cluster_domain),
        host_aliases=tuple(HostAlias(a.ip, tuple(a.hostnames)) for a in spec.host_aliases),
        host_network=spec.host_network,
        host_pid=spec.host_pid,
        host_ipc=spec.host_ipc,
        privileged=any(
            c.security_context.privileged
            for c in (*spec.init_containers, *spec.containers)
        ),
        port_mappings=tuple(
            PortMapping(
                container_port=port.container_port,
                host_port=port.host_port,
                protocol=port.protocol or "TCP",
                host_ip=port.host_ip,
            )
            for container in spec.containers
            for port in container.ports
            if port.host_port
        ),
    )


def by_container(statuses: list[ContainerStatus]) -> dict[str, list[ContainerStatus]]:
    """Each container's instances, newest attempt first."""
    result: dict[str, list[ContainerStatus]] = {}
    for s in statuses:
        result.setdefault(s.name, []).append(s)
    for instances in result.values():
        instances.sort(key=lambda s: s.attempt, reverse=True)
    return result


class PodWorker:
    def __init__(self, ctx: NodeContext, pod: v1.Pod) -> None:
        self.ctx = ctx
        self.uid = pod.metadata.uid
        self.pod = pod
        self.removed = False
        self.finished = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._probes: dict[tuple[str, ProbeKind], ProbeWorker] = {}
        self._waiting: dict[str, tuple[str, str]] = {}
        self._create_failures: dict[str, int] = {}
        """Failed attempts in a row to create each container (image, config, mounts)."""
        self._create_not_before: dict[str, float] = {}
        """When each container whose create failed may be tried again (its back-off)."""
        self._timers: list[asyncio.TimerHandle] = []
        self._terminated = False
        self._confirmed = False
        self._start_time = ""
        self._last_status: v1.PodStatus | None = None
        self._ip = ""
        """The pod's own IP once known (from the node's podCIDR)."""
        self._sandbox_ip = ""
        """The IP the runtime gave the pod's sandbox (its network namespace), if it does."""
        self._sandbox_failures = 0
        """Failed attempts in a row to make the pod's sandbox."""
        self._sandbox_not_before = 0.0
        """When the sandbox may be tried again after a failure."""
        self.log = log.bind(pod=f"{pod.metadata.namespace}/{pod.metadata.name}", uid=self.uid)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pod-{self.pod.metadata.name}")

    def update(self, pod: v1.Pod) -> None:
        self.pod = pod
        self.wake()

    def remove(self) -> None:
        self.removed = True
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def wake_at(self, when: float) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._timers = [t for t in self._timers if not t.cancelled() and t.when() > now]
        self._timers.append(loop.call_later(max(0.0, when - time.time()), self.wake))

    async def stop(self, kill: bool) -> None:
        """Stops the worker; with ``kill``, stops the pod's containers first."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._stop_probes()
        for timer in self._timers:
            timer.cancel()
        if kill:
            await self._kill_all(grace=float(self._grace()))

    async def _run(self) -> None:
        interval = self.ctx.settings.housekeeping_interval
        while not self.finished.is_set():
            self._wake.clear()
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                self.log.warning("pod sync failed; will retry", error=str(e))
            except Exception:
                self.log.exception("pod sync failed; will retry")
            if self.finished.is_set():
                return
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
            except TimeoutError:
                pass

    # ------------------------------------------------------------ sync

    async def sync(self) -> None:
        pod = self.pod
        if self.removed:
            await self._kill_all(grace=0)
            await self._cleanup()
            self.finished.set()
            return
        if pod.metadata.deletion_timestamp:
            await self._sync_deleting(pod)
            return
        instances = by_container(await self.ctx.runtime.list_containers(self.uid))
        if pods.is_terminal(pod):
            # Finished pods keep their exited containers (for logs) and run nothing; their
            # IP goes back to the node's block (the status keeps showing it, as Kubernetes').
            await self._stop_running(instances, grace=0)
            await self._stop_probes()
            self._release_ip()
            return
        if self._active_deadline_exceeded(pod):
            await self._fail_for_deadline(pod, instances)
            return
        if not self._start_time:
            self._start_time = pod.status.start_time or m.now_rfc3339()
        if time.time() < self._sandbox_not_before:
            return  # backing off a failed sandbox; its timer wakes the worker
        try:
            sandbox = await self.ctx.runtime.run_pod_sandbox(
                sandbox_config(pod, self.ctx.settings))
        except RuntimeError_ as e:
            # Retried with a doubling back-off, so a network that is not ready yet (or a
            # broken one) costs an event per attempt, not a storm of them.
            s = self.ctx.settings
            self._sandbox_failures += 1
            delay = min(s.backoff_initial * 2 ** (self._sandbox_failures - 1), s.backoff_max)
            self._sandbox_not_before = time.time() + delay
            message = truncate_message(f"Failed to create pod sandbox: {e.message}",
                                       MAX_EVENT_MESSAGE_BYTES)
            self.ctx.recorder.record(pod, WARNING, "FailedCreatePodSandBox", message)
            self._set_waiting_all(pod, "ContainerCreating", message)
            await self._write_status(pod, instances)
            self.wake_at(self._sandbox_not_before)
            return
        self._sandbox_failures = 0
        self._sandbox_ip = sandbox.ip
        if not await self._allocate_ip(pod, instances):
            return
        try:
            volume_paths = await self.ctx.volumes.prepare(pod)
        except ContainerStartError as e:
            self._set_waiting_all(pod, e.reason, e.message)
            self.ctx.recorder.record(pod, WARNING, "FailedMount", e.message)
            await self._write_status(pod, instances)
            return
        initialized = await self._sync_init_containers(pod, instances, volume_paths)
        if initialized:
            await self._sync_containers(pod, instances, volume_paths)
        instances = by_container(await self.ctx.runtime.list_containers(self.uid))
        await self._sync_probes(pod, instances)
        await self._kill_unhealthy(pod, instances)
        await self._write_status(pod, instances)
        await self._collect_garbage(instances)

    @property
    def pod_ip(self) -> str:
        """The pod's IP: the one its sandbox got (CNI), else its own from the node's podCIDR,
        else the node's (hostNetwork, or no podCIDR)."""
        if self._sandbox_ip:
            return self._sandbox_ip
        if self.pod.spec.host_network:
            return self.ctx.node_ip
        if self.ctx.settings.runtime != "process":
            return ""  # none until its sandbox has one
        if self.ctx.pod_ips is None:
            return self.ctx.node_ip
        return self._ip or self.ctx.pod_ips.ip_of(self.uid) or self.pod.status.pod_ip

    async def _allocate_ip(
        self, pod: v1.Pod, instances: dict[str, list[ContainerStatus]]
    ) -> bool:
        """Gives the pod its own IP (kept across kubelet restarts); False, with the pod
        waiting and an event, when the node's block is full."""
        if self.ctx.pod_ips is None or self._ip or self._sandbox_ip or pod.spec.host_network:
            return True
        try:
            self._ip = self.ctx.pod_ips.allocate(self.uid)
        except PodIPsExhausted as e:
            message = f"Failed to create pod sandbox: {e}"
            if self._waiting.get(pod.spec.containers[0].name, ("", ""))[1] != message:
                self.ctx.recorder.record(pod, WARNING, "FailedCreatePodSandBox", message)
            self._set_waiting_all(pod, "ContainerCreating", message)
            await self._write_status(pod, instances)
            return False
        return True

    def _release_ip(self) -> None:
        if self.ctx.pod_ips is not None:
            self.ctx.pod_ips.release(self.uid)

    def _restart_delay(self, latest: ContainerStatus) -> float:
        """Kubernetes' crash-loop back-off before starting attempt latest.attempt + 1."""
        s = self.ctx.settings
        restarts = latest.attempt + 1
        # A container that never started (a start failure) ran for no time at all.
        ran = latest.finished_at - latest.started_at if latest.started_at else 0.0
        if restarts <= 1 or ran >= s.backoff_reset:
            return 0.0
        return float(min(s.backoff_initial * 2 ** (restarts - 2), s.backoff_max))

    def _should_restart(self, latest: ContainerStatus, init: bool) -> bool:
        policy = self.pod.spec.restart_policy or "Always"
        if init:
            return latest.exit_code != 0 and policy != "Never"
        return policy == "Always" or (policy == "OnFailure" and latest.exit_code != 0)

    async def _sync_init_containers(
        self,
        pod: v1.Pod,
        instances: dict[str, list[ContainerStatus]],
        volume_paths: Mapping[str, str],
    ) -> bool:
        """Runs init containers one at a time; True once all have succeeded."""
        for container in pod.spec.init_containers:
            history = instances.get(container.name, [])
            latest = history[0] if history else None
            if latest is None:
                await self._start(pod, container, 0, volume_paths, init=True)
                return False
            if latest.state == ContainerState.RUNNING:
                return False
            if latest.state == ContainerState.EXITED and latest.exit_code == 0:
                continue
            if latest.state == ContainerState.EXITED and self._should_restart(latest, True):
                await self._restart_or_wait(pod, container, latest, volume_paths, init=True)
            return False
        return True

    async def _sync_containers(
        self,
        pod: v1.Pod,
        instances: dict[str, list[ContainerStatus]],
        volume_paths: Mapping[str, str],
    ) -> None:
        for container in pod.spec.containers:
            history = instances.get(container.name, [])
            latest = history[0] if history else None
            if latest is None:
                await self._start(pod, container, 0, volume_paths, init=False)
            elif latest.state == ContainerState.EXITED and self._should_restart(latest, False):
                await self._restart_or_wait(pod, container, latest, volume_paths, init=False)
            elif latest.state == ContainerState.CREATED:
                await self.ctx.runtime.start_container(latest.id)

    async def _restart_or_wait(
        self,
        pod: v1.Pod,
        container: v1.Container,
        latest: ContainerStatus,
        volume_paths: Mapping[str, str],
        init: bool,
    ) -> None:
        delay = self._restart_delay(latest)
        not_before = latest.finished_at + delay
        if time.time() < not_before:
            message = (
                f"back-off {delay:g}s restarting failed container={container.name}"
                f" pod={pod.metadata.name}_{pod.metadata.namespace}({self.uid})"
            )
            if self._waiting.get(container.name, ("",))[0] != "CrashLoopBackOff":
                self.ctx.recorder.record(
                    pod,
                    WARNING,
                    "BackOff",
                    "Back-off restarting failed container "
                    f"{container.name} in pod {pod.metadata.name}",
                )
            self._waiting[container.name] = ("CrashLoopBackOff", message)
            self.wake_at(not_before)
            return
        await self._start(pod, container, latest.attempt + 1, volume_paths, init=init)

    async def _start(
        self,
        pod: v1.Pod,
        container: v1.Container,
        attempt: int,
        volume_paths: Mapping[str, str],
        init: bool,
    ) -> None:
        ctx = self.ctx
        not_before = self._create_not_before.get(container.name, 0.0)
        if time.time() < not_before:
            return  # backing off a failed create; its timer wakes the worker
        # The pod has its IP before its containers start (downward API, KUBELITE_POD_IP).
        pod = m.copy(pod)
        pod.status.host_ip = ctx.node_ip
        pod.status.pod_ip = self.pod_ip
        del pod.status.pod_ips[:]
        if self.pod_ip:
            pod.status.pod_ips.add(ip=self.pod_ip)
        try:
            image = await self._ensure_image(pod, container)
            security = security_for(pod, container)
            refused = verify_run_as_non_root(security, image.uid, image.user)
            if refused:
                raise ContainerStartError(
                    "CreateContainerConfigError",
                    f'{refused} (pod: "{pod.metadata.name}_{pod.metadata.namespace}'
                    f'({self.uid})", container: {container.name})',
                )
            env = await ctx.env.resolve(pod, container, ctx.service_env(pod))
            mounts = container_mounts(container, volume_paths, read_only_volumes(pod))
            config = ContainerConfig(
                name=container.name,
                image=container.image,
                # $(VAR) references expand from the container's env, as the kubelet does.
                command=[expand(c, env) for c in container.command],
                args=[expand(a, env) for a in container.args],
                env=env,
                working_dir=container.working_dir,
                mounts=mounts,
                attempt=attempt,
                labels=_labels(pod, container.name, attempt, init),
                resources=resources_for(container),
                security=security,
                tty=container.tty,
                stdin=container.stdin,
            )
            container_id = await ctx.runtime.create_container(self.uid, config)
        except (ContainerStartError, RuntimeError_) as e:
            self._create_failed(pod, container, e)
            return
        self._create_failures.pop(container.name, None)
        self._create_not_before.pop(container.name, None)
        try:
            await ctx.runtime.start_container(container_id)
        except RuntimeError_ as e:
            # The runtime keeps the container, exited (StartError, 128): the next restart backs
            # off from its record exactly as after a crash.
            message = truncate_message(e.message, MAX_CONTAINER_MESSAGE_BYTES)
            if self._waiting.get(container.name) != (e.reason, message):
                ctx.recorder.record(
                    pod, WARNING, "Failed", truncate_message(e.message, MAX_EVENT_MESSAGE_BYTES)
                )
            self._waiting[container.name] = (e.reason, message)
            self.log.info("container failed to start", container=container.name,
                          attempt=attempt, reason=e.reason)
            return
        self._waiting.pop(container.name, None)
        ctx.recorder.record(pod, NORMAL, "Created", f"Created container {container.name}")
        ctx.recorder.record(pod, NORMAL, "Started", f"Started container {container.name}")
        self.log.info("started container", container=container.name, attempt=attempt)
        if container.lifecycle.HasField("post_start"):
            outcome = await run_handler(
                container.lifecycle.post_start,
                container,
                container_id,
                ctx.runtime,
                self.pod_ip,
                timeout=30,
            )
            if not outcome.success:
                ctx.recorder.record(pod, WARNING, "FailedPostStartHook", outcome.message)
                await ctx.runtime.stop_container(container_id, 0)

    async def _ensure_image(self, pod: v1.Pod, container: v1.Container) -> ImagePull:
        """Pulls the container's image by its imagePullPolicy, with Kubernetes' events, and
        says what it did and whom the image runs as; raises
        RuntimeError_ (ErrImagePull) or ContainerStartError (ErrImageNeverPull) when it cannot
        be had (the caller backs off: ImagePullBackOff)."""
        ctx = self.ctx
        image = container.image
        policy = container.image_pull_policy or "IfNotPresent"
        auths, warning = await pull_credentials(ctx.client, pod)
        if warning:
            ctx.recorder.record(pod, WARNING, "FailedToRetrieveImagePullSecret", warning)

        def pulling() -> None:
            ctx.recorder.record(pod, NORMAL, "Pulling", f'Pulling image "{image}"')

        try:
            pull = await ctx.runtime.ensure_image(
                image, policy, matching(auths, image), on_pull=pulling
            )
        except RuntimeError_ as e:
            if e.reason == "ErrImageNeverPull":
                raise ContainerStartError(e.reason, e.message) from e
            raise RuntimeError_(e.reason, f'Failed to pull image "{image}": {e.message}') from e
        if pull.pulled:
            size = f" Image size: {pull.size_bytes} bytes." if pull.size_bytes else ""
            ctx.recorder.record(
                pod, NORMAL, "Pulled",
                f'Successfully pulled image "{image}" in {pull.seconds:.3f}s.{size}',
            )
        else:
            ctx.recorder.record(
                pod, NORMAL, "Pulled", f'Container image "{image}" already present on machine'
            )
        return pull

    def _create_failed(
        self, pod: v1.Pod, container: v1.Container, e: ContainerStartError | RuntimeError_
    ) -> None:
        """A container could not be created: wait with its reason, and retry after a back-off
        (doubling from backoff_initial to backoff_max for image and runtime errors, as image
        pulls do; a fixed backoff_initial for config errors, as the kubelet's pod worker)."""
        s = self.ctx.settings
        reason = e.reason
        failures = self._create_failures.get(container.name, 0) + 1
        self._create_failures[container.name] = failures
        if reason == "ErrImagePull" and failures > 1:
            reason = "ImagePullBackOff"
        message = truncate_message(e.message, MAX_CONTAINER_MESSAGE_BYTES)
        if self._waiting.get(container.name, ("",))[0] != reason:
            event = "Failed" if reason != "ContainerCreating" else "FailedMount"
            self.ctx.recorder.record(
                pod, WARNING, event, truncate_message(e.message, MAX_EVENT_MESSAGE_BYTES)
            )
        self._waiting[container.name] = (reason, message)
        if reason == "CreateContainerConfigError":
            delay = s.backoff_initial
        else:
            delay = min(s.backoff_initial * 2 ** (failures - 1), s.backoff_max)
        not_before = time.time() + delay
        self._create_not_before[container.name] = not_before
        self.wake_at(not_before)

    # ------------------------------------------------------------ probes

    async def _sync_probes(self, pod: v1.Pod, instances: dict[str, list[ContainerStatus]]) -> None:
        wanted: set[tuple[str, ProbeKind]] = set()
        for container in pod.spec.containers:
            history = instances.get(container.name, [])
            if not history or history[0].state != ContainerState.RUNNING:
                continue
            cid = history[0].id
            for kind, probe in (
                (ProbeKind.STARTUP, container.startup_probe),
                (ProbeKind.LIVENESS, container.liveness_probe),
                (ProbeKind.READINESS, container.readiness_probe),
            ):
                if not container.HasField(_PROBE_FIELDS[kind]):
                    continue
                key = (cid, kind)
                wanted.add(key)
                if key not in self._probes:
                    worker = ProbeWorker(
                        kind,
                        probe,
                        container,
                        cid,
                        self.ctx.runtime,
                        self.pod_ip,
                        self.wake,
                        gate=self._startup_gate(cid, kind),
                    )
                    self._probes[key] = worker
                    worker.start()
        for key in list(self._probes):
            if key not in wanted:
                await self._probes.pop(key).stop()

    def _startup_gate(self, cid: str, kind: ProbeKind) -> Callable[[], bool]:
        if kind == ProbeKind.STARTUP:
            return lambda: True

        def started() -> bool:
            startup = self._probes.get((cid, ProbeKind.STARTUP))
            return startup is None or startup.result

        return started

    async def _stop_probes(self) -> None:
        probes, self._probes = self._probes, {}
        for worker in probes.values():
            await worker.stop()

    async def _kill_unhealthy(
        self, pod: v1.Pod, instances: dict[str, list[ContainerStatus]]
    ) -> None:
        for container in pod.spec.containers:
            history = instances.get(container.name, [])
            if not history or history[0].state != ContainerState.RUNNING:
                continue
            cid = history[0].id
            for kind in (ProbeKind.STARTUP, ProbeKind.LIVENESS):
                worker = self._probes.get((cid, kind))
                if worker is None or not worker.failed:
                    continue
                self.ctx.recorder.record(
                    pod, WARNING, "Unhealthy", f"{kind.value} probe failed: {worker.last_message}"
                )
                self.ctx.recorder.record(
                    pod,
                    NORMAL,
                    "Killing",
                    f"Container {container.name} failed {kind.value.lower()} probe, will be"
                    " restarted",
                )
                self.log.info(
                    "killing unhealthy container", container=container.name, probe=kind.value
                )
                await self._stop_container(pod, container, cid, self._grace(), hooks=True)
                await self._probes.pop((cid, kind)).stop()
                break

    # ------------------------------------------------------------ status

    def _views(
        self,
        specs: list[v1.Container],
        instances: dict[str, list[ContainerStatus]],
        init: bool = False,
    ) -> dict[str, ContainerView]:
        views = {}
        for container in specs:
            history = instances.get(container.name, [])
            latest = history[0] if history else None
            previous = history[1] if len(history) > 1 else None
            reason, message = self._waiting.get(container.name, ("", ""))
            if latest is not None and latest.state == ContainerState.RUNNING:
                reason, message = "", ""
                self._waiting.pop(container.name, None)
            ready = started = False
            if latest is not None and latest.state == ContainerState.RUNNING:
                startup = self._probes.get((latest.id, ProbeKind.STARTUP))
                started = startup is None or startup.result
                readiness = self._probes.get((latest.id, ProbeKind.READINESS))
                has_readiness = container.HasField("readiness_probe")
                ready = started and (
                    not has_readiness or (readiness is not None and readiness.result)
                )
            elif latest is not None and latest.state == ContainerState.EXITED:
                if not self._should_restart(latest, init) or pods.is_terminal(self.pod):
                    # It stays exited (a start failure included): show it terminated.
                    reason, message = "", ""
                elif not reason:
                    reason = "ContainerCreating"
            views[container.name] = ContainerView(latest, previous, reason, message, ready, started)
        return views

    async def _write_status(self, pod: v1.Pod, instances: dict[str, list[ContainerStatus]]) -> None:
        status = build_status(
            pod,
            self._views(list(pod.spec.init_containers), instances, init=True),
            self._views(list(pod.spec.containers), instances),
            self.ctx.node_ip,
            self._start_time or m.now_rfc3339(),
            self.pod_ip,
        )
        if same_status(status, pod.status) or (
            self._last_status is not None
            and same_status(status, self._last_status)
            and same_status(pod.status, self._last_status)
        ):
            return
        body = {"status": convert.message_to_dict(status)}
        updated = await self.ctx.client.patch(
            v1.Pod, pod.metadata.name, body, pod.metadata.namespace, subresource="status"
        )
        self._last_status = updated.status
        if updated.status.phase != pod.status.phase:
            self.log.info("pod phase", phase=updated.status.phase)

    def _set_waiting_all(self, pod: v1.Pod, reason: str, message: str) -> None:
        for container in [*pod.spec.init_containers, *pod.spec.containers]:
            self._waiting[container.name] = (reason, message)
        self.wake_at(time.time() + self.ctx.settings.backoff_initial)

    # ------------------------------------------------------------ termination

    def _grace(self) -> int:
        meta = self.pod.metadata
        if meta.HasField("deletion_grace_period_seconds") and meta.deletion_timestamp:
            return int(meta.deletion_grace_period_seconds)
        if self.pod.spec.HasField("termination_grace_period_seconds"):
            return int(self.pod.spec.termination_grace_period_seconds)
        return self.ctx.settings.default_grace_seconds

    async def _sync_deleting(self, pod: v1.Pod) -> None:
        if not self._terminated:
            self.log.info("terminating pod", grace=self._grace())
            await self._stop_probes()
            await self._kill_all(grace=float(self._grace()))
            self._terminated = True
        instances = by_container(await self.ctx.runtime.list_containers(self.uid))
        try:
            await self._write_status(pod, instances)
        except NotFound:
            pass
        if not self._confirmed:
            try:
                await self.ctx.client.delete(
                    v1.Pod,
                    pod.metadata.name,
                    pod.metadata.namespace,
                    grace_period_seconds=0,
                    uid=self.uid,
                )
            except NotFound:
                pass
            self._confirmed = True

    async def _kill_all(self, grace: float) -> None:
        instances = by_container(await self.ctx.runtime.list_containers(self.uid))
        specs = {c.name: c for c in [*self.pod.spec.init_containers, *self.pod.spec.containers]}
        stops = []
        for name, history in instances.items():
            latest = history[0]
            if latest.state == ContainerState.RUNNING:
                spec = specs.get(name)
                stops.append(
                    self._stop_container(self.pod, spec, latest.id, grace, hooks=spec is not None)
                )
        await asyncio.gather(*stops)

    async def _stop_container(
        self,
        pod: v1.Pod,
        spec: v1.Container | None,
        container_id: str,
        grace: float,
        hooks: bool,
    ) -> None:
        deadline = time.monotonic() + grace
        if spec is not None:
            self.ctx.recorder.record(pod, NORMAL, "Killing", f"Stopping container {spec.name}")
        if hooks and spec is not None and spec.lifecycle.HasField("pre_stop") and grace > 0:
            try:
                outcome = await asyncio.wait_for(
                    run_handler(
                        spec.lifecycle.pre_stop,
                        spec,
                        container_id,
                        self.ctx.runtime,
                        self.pod_ip,
                        timeout=grace,
                    ),
                    grace,
                )
                if not outcome.success:
                    self.ctx.recorder.record(pod, WARNING, "FailedPreStopHook", outcome.message)
            except TimeoutError:
                self.ctx.recorder.record(
                    pod, WARNING, "FailedPreStopHook", f"PreStopHook did not finish in {grace:g}s"
                )
            # As Kubernetes: a preStop hook that used up the grace period gets 2 s more.
            remaining = max(deadline - time.monotonic(), 2.0)
        else:
            remaining = max(deadline - time.monotonic(), 0.0)
        await self.ctx.runtime.stop_container(container_id, remaining)

    async def _stop_running(
        self, instances: dict[str, list[ContainerStatus]], grace: float
    ) -> None:
        for history in instances.values():
            if history[0].state == ContainerState.RUNNING:
                await self.ctx.runtime.stop_container(history[0].id, grace)

    async def _cleanup(self) -> None:
        await self._stop_probes()
        for status in await self.ctx.runtime.list_containers(self.uid):
            await self.ctx.runtime.remove_container(status.id)
        await self.ctx.runtime.remove_pod_sandbox(self.uid)
        self._release_ip()
        self.log.info("pod cleaned up")

    async def _collect_garbage(self, instances: dict[str, list[ContainerStatus]]) -> None:
        """Keeps the newest two instances of each container (current and --previous)."""
        for history in instances.values():
            for old in history[2:]:
                if old.state == ContainerState.EXITED:
                    await self.ctx.runtime.remove_container(old.id)

    # ------------------------------------------------------------ activeDeadlineSeconds

    def _active_deadline_exceeded(self, pod: v1.Pod) -> bool:
        if not pod.spec.HasField("active_deadline_seconds") or not self._start_time:
            return False
        started = m.parse_time(self._start_time).timestamp()
        return time.time() - started >= pod.spec.active_deadline_seconds

    async def _fail_for_deadline(
        self, pod: v1.Pod, instances: dict[str, list[ContainerStatus]]
    ) -> None:
        await self._stop_probes()
        await self._kill_all(grace=float(self._grace()))
        instances = by_container(await self.ctx.runtime.list_containers(self.uid))
        status = build_status(
            pod,
            self._views(list(pod.spec.init_containers), instances, init=True),
            self._views(list(pod.spec.containers), instances),
            self.ctx.node_ip,
            self._start_time,
            self.pod_ip,
        )
        status.phase = "Failed"
        status.reason = "DeadlineExceeded"
        status.message = "Pod was active on the node longer than the specified deadline"
        self.ctx.recorder.record(pod, NORMAL, "DeadlineExceeded", status.message)
        await self.ctx.client.patch(
            v1.Pod,
            pod.metadata.name,
            {"status": convert.message_to_dict(status)},
            pod.metadata.namespace,
            subresource="status",
        )


_PROBE_FIELDS = {
    ProbeKind.STARTUP: "startup_probe",
    ProbeKind.LIVENESS: "liveness_probe",
    ProbeKind.READINESS: "readiness_probe",
}
