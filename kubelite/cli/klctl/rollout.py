"""``rollout``: status, history, undo, pause, resume and restart of a Deployment."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from typing import Any

from kubelite.api import convert, podtemplate
from kubelite.api import meta as m
from kubelite.api.errors import Conflict, Expired, Unavailable
from kubelite.api.registry import ResourceType
from kubelite.cli.klctl.context import Context
from kubelite.cli.klctl.errors import CliError
from kubelite.cli.klctl.flags import Commands, add_namespace, parse_bool, parse_duration
from kubelite.cli.klctl.output import out
from kubelite.cli.klctl.resources import namespace_of, one_target
from kubelite.cli.printers.formats import LAST_APPLIED, resource_name
from kubelite.cli.printers.serialize import to_yaml
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1

_REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
_CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
_RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
# A Deployment's own annotations, never copied back from a ReplicaSet on rollback.
_ROLLBACK_SKIPPED_ANNOTATIONS = frozenset({
    LAST_APPLIED, _REVISION_ANNOTATION, "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas", "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
})


def _require_deployment(rtype: ResourceType, verb: str) -> None:
    if rtype.kind != "Deployment":
        raise CliError(f"no {verb} has been implemented for {rtype.qualified_kind!r}")


def _revision_of(obj: v1.ReplicaSet | v1.Deployment) -> int:
    try:
        return int(obj.metadata.annotations.get(_REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


def rollout_status_line(d: v1.Deployment) -> tuple[str, bool]:
    """kubectl's DeploymentStatusViewer: the line to print and whether the rollout is done."""
    name = d.metadata.name
    status = d.status
    if d.metadata.generation > status.observed_generation:
        return "Waiting for deployment spec update to be observed...", False
    for condition in status.conditions:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            raise CliError(f'deployment "{name}" exceeded its progress deadline')
    replicas = d.spec.replicas
    if status.updated_replicas < replicas:
        return (f'Waiting for deployment "{name}" rollout to finish: {status.updated_replicas}'
                f" out of {replicas} new replicas have been updated..."), False
    if status.replicas > status.updated_replicas:
        return (f'Waiting for deployment "{name}" rollout to finish:'
                f" {status.replicas - status.updated_replicas} old replicas are pending"
                " termination..."), False
    if status.available_replicas < status.updated_replicas:
        return (f'Waiting for deployment "{name}" rollout to finish:'
                f" {status.available_replicas} of {status.updated_replicas} updated replicas"
                " are available..."), False
    return f'deployment "{name}" successfully rolled out', True


async def _rollout_status(args: argparse.Namespace, client: ApiClient, ctx: Context,
                          rtype: ResourceType, name: str, namespace: str) -> int:
    _require_deployment(rtype, "status viewer")
    watch_changes = parse_bool(args.watch, "--watch")
    timeout = parse_duration(args.timeout, "--timeout") if args.timeout else 0.0
    last = ""

    def show(d: v1.Deployment) -> bool:
        nonlocal last
        if args.revision:
            running = _revision_of(d)
            if running != args.revision:
                raise CliError(f"desired revision ({args.revision}) is different from the"
                               f" running revision ({running})")
        line, done = rollout_status_line(d)
        if line != last:
            out(line)
            last = line
        return done

    async def follow() -> None:
        failures = 0
        while True:
            d = await client.get(v1.Deployment, name, namespace)
            if show(d) or not watch_changes:
                return
            try:
                async for event in client.watch(v1.Deployment, namespace,
                                                field_selector=f"metadata.name={name}",
                                                resource_version=d.metadata.resource_version):
                    failures = 0
                    if event.object is None:
                        continue
                    if event.type == "DELETED":
                        raise CliError(f'deployment "{name}" was deleted')
                    if show(event.object):
                        return
            except (Expired, Unavailable):
                failures += 1
                if failures > 5:
                    raise
                await asyncio.sleep(min(0.2 * 2 ** failures, 2.0))

    if timeout > 0:
        try:
            await asyncio.wait_for(follow(), timeout)
        except TimeoutError:
            raise CliError("timed out waiting for the condition") from None
    else:
        await follow()
    return 0


async def _owned_replica_sets(client: ApiClient, d: v1.Deployment) -> list[v1.ReplicaSet]:
    result = await client.list(v1.ReplicaSet, d.metadata.namespace)
    return [rs for rs in result.items if m.is_controlled_by(rs, d)]


async def _rollout_history(args: argparse.Namespace, client: ApiClient, ctx: Context,
                           rtype: ResourceType, name: str, namespace: str) -> int:
    _require_deployment(rtype, "history viewer")
    d = await client.get(v1.Deployment, name, namespace)
    history = {_revision_of(rs): rs for rs in await _owned_replica_sets(client, d)}
    history.pop(0, None)
    label = resource_name(rtype, name)
    if args.revision:
        rs = history.get(args.revision)
        if rs is None:
            raise CliError(f"unable to find the specified revision {args.revision}")
        out(f"{label} with revision #{args.revision}")
        out("Pod Template:")
        template = convert.message_to_dict(rs.spec.template)
        for line in to_yaml(template).splitlines():
            out(f"  {line}")
        return 0
    out(f"{label} ")
    rows = [("REVISION", "CHANGE-CAUSE")]
    for revision in sorted(history):
        cause = history[revision].metadata.annotations.get(_CHANGE_CAUSE_ANNOTATION, "")
        rows.append((str(revision), cause or "<none>"))
    width = max(len(r[0]) for r in rows) + 2  # kubectl's tabwriter: two spaces of padding
    for revision_text, cause in rows:
        out(f"{revision_text:<{width}}{cause}")
    out()
    return 0


async def _rollout_undo(args: argparse.Namespace, client: ApiClient, ctx: Context,
                        rtype: ResourceType, name: str, namespace: str) -> int:
    """Kubernetes 1.x rollback, done client side: the chosen revision's template (and its
    change-cause) goes back into the Deployment, which rolls it out as a new revision."""
    _require_deployment(rtype, "rollbacker")
    label = resource_name(rtype, name)
    for _ in range(5):
        d = await client.get(v1.Deployment, name, namespace)
        if d.spec.paused:
            raise CliError(f"you cannot rollback a paused deployment; resume it first with"
                           f" 'klctl rollout resume {label}' and try again")
        history = {_revision_of(rs): rs for rs in await _owned_replica_sets(client, d)}
        history.pop(0, None)
        to_revision = args.to_revision
        if to_revision == 0:
            revisions = sorted(history, reverse=True)
            if len(revisions) < 2:
                raise CliError(f'no rollout history found for deployment "{name}"')
            to_revision = revisions[1]
        rs = history.get(to_revision)
        if rs is None:
            raise CliError(f"unable to find specified revision {to_revision} in history")
        template = podtemplate.without_hash(rs.spec.template)
        if podtemplate.equal_ignore_hash(template, d.spec.template):
            out(f"{label} skipped rollback (current template already matches revision"
                f" {to_revision})")
            return 0
        updated = m.copy(d)
        updated.spec.template.CopyFrom(template)
        for key, value in rs.metadata.annotations.items():
            if key not in _ROLLBACK_SKIPPED_ANNOTATIONS:
                updated.metadata.annotations[key] = value
        try:
            await client.update(updated)
        except Conflict:
            continue
        out(f"{label} rolled back")
        return 0
    raise CliError(f"could not roll back {label}: it kept changing")


async def _rollout_patch(args: argparse.Namespace, client: ApiClient, ctx: Context,
                         rtype: ResourceType, name: str, namespace: str) -> int:
    """pause, resume and restart: one field of the Deployment."""
    _require_deployment(rtype, args.action)
    label = resource_name(rtype, name)
    d = await client.get(v1.Deployment, name, namespace)
    quoted = f'{rtype.plural}.{rtype.group} "{name}"'
    patch: dict[str, Any]
    if args.action == "pause":
        if d.spec.paused:
            raise CliError(f"{quoted} is already paused")
        patch, done = {"spec": {"paused": True}}, "paused"
    elif args.action == "resume":
        if not d.spec.paused:
            raise CliError(f"{quoted} is not paused")
        patch, done = {"spec": {"paused": None}}, "resumed"
    else:
        if d.spec.paused:
            raise CliError(f"{quoted} can't restart paused deployment (run rollout resume"
                           " first)")
        stamp = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        patch = {"spec": {"template": {"metadata": {"annotations": {
            _RESTARTED_AT_ANNOTATION: stamp}}}}}
        done = "restarted"
    await client.patch(v1.Deployment, name, patch, namespace)
    out(f"{label} {done}")
    return 0


async def cmd_rollout(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    actions = {"status": _rollout_status, "history": _rollout_history, "undo": _rollout_undo,
               "pause": _rollout_patch, "resume": _rollout_patch, "restart": _rollout_patch}
    action = actions.get(args.action)
    if action is None:
        raise CliError(f'unknown command "{args.action}" for "klctl rollout"; one of:'
                       f" {', '.join(actions)}")
    rtype, names = one_target(args.resources, f"rollout {args.action}")
    namespace = namespace_of(args)
    code = 0
    for name in names:
        code = max(code, await action(args, client, ctx, rtype, name, namespace))
    return code


def register(commands: Commands) -> None:
    p = commands.add_parser("rollout", help="manage the rollout of a deployment:"
                            " status, history, undo, pause, resume, restart")
    p.add_argument("action", metavar="ACTION",
                   help="status, history, undo, pause, resume or restart")
    p.add_argument("resources", nargs="*", metavar="KIND NAME | KIND/NAME")
    add_namespace(p, all_namespaces=False)
    p.add_argument("--to-revision", type=int, default=0,
                   help="undo: the revision to roll back to (0: the previous one)")
    p.add_argument("--revision", type=int, default=0,
                   help="history: show this revision's template; status: expect it")
    p.add_argument("-w", "--watch", nargs="?", const="true", default="true",
                   help="status: wait until the rollout is done (default true)")
    p.add_argument("--timeout", default="", help="status: how long to wait (e.g. 2m)")
    p.set_defaults(handler=cmd_rollout)
