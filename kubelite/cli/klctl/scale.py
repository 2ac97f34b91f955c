"""``scale`` and ``set image``: the replicas and images of workloads."""

from __future__ import annotations

import argparse
from typing import Any

from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.errors import Conflict
from kubelite.cli.klctl.batch import for_each_object
from kubelite.cli.klctl.context import Context
from kubelite.cli.klctl.errors import CliError
from kubelite.cli.klctl.flags import Commands, add_namespace
from kubelite.cli.klctl.resources import namespace_of, one_target
from kubelite.cli.printers.formats import resource_name
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1

_SCALABLE_KINDS = ("Deployment", "ReplicaSet", "StatefulSet")


async def cmd_scale(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    if args.replicas is None:
        raise CliError("required flag(s) \"replicas\" not set")
    if args.replicas < 0:
        raise CliError("The --replicas=COUNT flag is required, and COUNT must be greater than"
                       " or equal to 0")
    rtype, names = one_target(args.resources, "scale")
    if rtype.kind not in _SCALABLE_KINDS:
        raise CliError(f"cannot scale {rtype.plural}: only deployments, replicasets and"
                       " statefulsets have a scale")
    namespace = namespace_of(args)

    async def scale(name: str) -> str:
        patch: dict[str, Any] = {"spec": {"replicas": args.replicas}}
        if args.current_replicas is not None:
            current = await client.get(rtype.message, name, namespace)
            have = current.spec.replicas  # type: ignore[attr-defined]
            if have != args.current_replicas:
                raise CliError(f"Expected replicas to be {args.current_replicas}, was {have}")
            patch["metadata"] = {"resourceVersion": m.meta(current).resource_version}
        await client.patch(rtype.message, name, patch, namespace)
        return f"{resource_name(rtype, name)} scaled"

    return await for_each_object(names, ctx, scale)


def _pod_spec_of(obj: Message) -> v1.PodSpec | None:
    if isinstance(obj, v1.Pod):
        return obj.spec
    if isinstance(obj, v1.CronJob):
        return obj.spec.job_template.spec.template.spec
    spec = getattr(obj, "spec", None)
    template = getattr(spec, "template", None)
    if isinstance(template, v1.PodTemplateSpec):
        return template.spec
    return None


def set_images(spec: v1.PodSpec, images: dict[str, str]) -> list[str]:
    """Sets container images by name (``*`` for all); returns the names not found."""
    containers = [*spec.init_containers, *spec.containers]
    missing = []
    for wanted, image in images.items():
        found = False
        for container in containers:
            if wanted in ("*", container.name):
                container.image = image
                found = True
        if not found:
            missing.append(wanted)
    return missing


async def cmd_set(args: argparse.Namespace, client: ApiClient, ctx: Context) -> int:
    if args.what != "image":
        raise CliError(f'unknown command "{args.what}" for "klctl set"; supported: image')
    resources = [w for w in args.words if "=" not in w]
    images: dict[str, str] = {}
    for word in args.words:
        if "=" in word:
            container, _, image = word.partition("=")
            if not container or not image:
                raise CliError(f"invalid image update {word!r}: expected CONTAINER=IMAGE")
            images[container] = image
    if not images:
        raise CliError("at least one image update is required")
    rtype, names = one_target(resources, "set image")
    namespace = namespace_of(args)

    async def set_image(name: str) -> str:
        for _ in range(5):
            obj = await client.get(rtype.message, name, namespace)
            spec = _pod_spec_of(obj)
            if spec is None:
                raise CliError(f"{rtype.plural} have no pod template to set an image in")
            missing = set_images(spec, images)
            if missing:
                raise CliError(f'unable to find container named "{missing[0]}"')
            try:
                await client.update(obj)
            except Conflict:
                continue
            return f"{resource_name(rtype, name)} image updated"
        raise CliError(f"could not update {resource_name(rtype, name)}: it kept changing")

    return await for_each_object(names, ctx, set_image)


def register(commands: Commands) -> None:
    p = commands.add_parser("scale", help="set the replicas of a deployment, replicaset or"
                            " statefulset")
    p.add_argument("resources", nargs="*", metavar="KIND NAME | KIND/NAME")
    add_namespace(p, all_namespaces=False)
    p.add_argument("--replicas", type=int, help="the new number of replicas")
    p.add_argument("--current-replicas", type=int,
                   help="only scale if the object has this many replicas now")
    p.set_defaults(handler=cmd_scale)

    p = commands.add_parser("set", help="update fields of objects: set image KIND/NAME C=IMAGE")
    p.add_argument("what", metavar="image")
    p.add_argument("words", nargs="*", metavar="KIND/NAME CONTAINER=IMAGE...")
    add_namespace(p, all_namespaces=False)
    p.set_defaults(handler=cmd_set)
