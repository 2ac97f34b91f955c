"""The process runtime's image catalogue: which images it can run, and as which command.

The process runtime has no image store: an image is a name for a program on the node. A few
images are known (busybox is a real busybox, the node's static one, whose applets are the
container's /bin; kubelite/agnhost is the built-in test server, kubelite/pause sleeps,
kubelite/dns is the cluster DNS server); any
other image runs only when the container names its own command, which is then looked up on
the node's PATH.

Command and args follow Kubernetes: ``command`` replaces the image's entrypoint and drops its
default args, ``args`` replaces the default args. ``$(VAR)`` references in the container's
command and args are expanded from its environment exactly as Kubernetes does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kubelet.runtime.interface import RuntimeError_

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH of a container whose spec sets none, as in most images."""

BUSYBOX_BIN = "/bin"
"""Where the busybox image's applets are in the container (as in the real image)."""
BUSYBOX_PATH = f"{BUSYBOX_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin"
"""PATH of busybox containers: its applets first, so ``sh`` is busybox's and not the node's."""

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
"""The directory holding the ``kubelet`` package, so agnhost imports wherever the kubelet runs."""


@dataclass(frozen=True)
class Builtins:
    """Where the built-in Python images (kubelite/agnhost, kubelite/pause, kubelite/dns) come
    from."""

    python: str = sys.executable
    """The interpreter they run with (it needs only the standard library)."""
    source_root: str = SOURCE_ROOT
    """The directory holding the ``kubelet`` package they run (``kubelet.images.agnhost``)."""

    def node_paths(self) -> tuple[str, ...]:
        """Directories of the node these images need inside the container: the interpreter's
        prefix (a venv, or the installation the interpreter links to) and the package's."""
        paths = []
        for python in (os.path.abspath(self.python), os.path.realpath(self.python)):
            directory = os.path.dirname(python)
            prefix = os.path.dirname(directory) if os.path.basename(directory) == "bin" else (
                directory)
            paths.append(prefix)
        paths.append(os.path.abspath(self.source_root))
        return tuple(dict.fromkeys(paths))


BUILTINS = Builtins()


@dataclass(frozen=True)
class Image:
    """What the process runtime knows about one catalogued image."""

    name: str
    """Its canonical name, as shown in messages."""
    entrypoint: tuple[str, ...]
    """The image's ENTRYPOINT; empty when its CMD is the whole command line."""
    cmd: tuple[str, ...]
    """The image's CMD: default args (or the default command without an entrypoint)."""
    env: tuple[tuple[str, str], ...] = ()
    """The image's ENV, overridden by the container's own env."""
    busybox: bool = False
    """Runs the node's busybox: the runtime makes its applets the container's BUSYBOX_BIN."""
    node_paths: tuple[str, ...] = ()
    """Directories of the node its program needs, seen in the container at the same path
    even where the container's private /tmp would hide them."""


def _catalogue(builtins: Builtins = BUILTINS) -> dict[str, Image]:
    python, env, needs = (builtins.python, (("PYTHONPATH", builtins.source_root),),
                          builtins.node_paths())
    return {
        "busybox": Image("busybox", entrypoint=(), cmd=("sh",),
                         env=(("PATH", BUSYBOX_PATH),), busybox=True),
        "kubelite/agnhost": Image(
            "kubelite/agnhost",
            entrypoint=(python, "-m", "kubelet.images.agnhost"),
            cmd=("serve-hostname",),
            env=env,
            node_paths=needs,
        ),
        "kubelite/pause": Image(
            "kubelite/pause",
            entrypoint=(python, "-m", "kubelet.images.agnhost", "pause"),
            cmd=(),
            env=env,
            node_paths=needs,
        ),
        "kubelite/dns": Image(
            "kubelite/dns",
            entrypoint=(python, "-m", "clusterdns"),
            cmd=(),
            env=env,
            node_paths=needs,
        ),
    }


# Other spellings of the catalogued repositories (registry prefixes Kubernetes manifests use).
_ALIASES = {
    "docker.io/library/busybox": "busybox",
    "docker.io/busybox": "busybox",
    "library/busybox": "busybox",
    "registry.k8s.io/busybox": "busybox",
    "gcr.io/google-containers/busybox": "busybox",
    "registry.k8s.io/e2e-test-images/agnhost": "kubelite/agnhost",
    "docker.io/kubelite/agnhost": "kubelite/agnhost",
    "docker.io/kubelite/pause": "kubelite/pause",
    "docker.io/kubelite/dns": "kubelite/dns",
    "registry.k8s.io/pause": "kubelite/pause",
}


def repository(image: str) -> str:
    """The image reference without its tag or digest: ``busybox:1.36`` -> ``busybox``."""
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:  # a colon before the last slash is a registry port, not a tag
        name = name[:colon]
    return name


def lookup(image: str, builtins: Builtins = BUILTINS) -> Image | None:
    """The catalogued image ``image`` names (any tag), or None."""
    repo = repository(image.strip())
    return _catalogue(builtins).get(_ALIASES.get(repo, repo))


def catalogue_names() -> list[str]:
    return list(_catalogue())


def resolve(
    image: str, command: Sequence[str], args: Sequence[str], builtins: Builtins = BUILTINS
) -> list[str]:
    """The argv a container runs, by Kubernetes' rules for command and args.

    Raises RuntimeError_("ErrImagePull") when the image is not catalogued and the container
    gives no command, since there is then nothing on the node to run.
    """
    known = lookup(image, builtins)
    if known is None:
        if not command:
            raise RuntimeError_(
                "ErrImagePull",
                f'image "{image}" cannot run on the process runtime: it is not in the catalogue '
                f"({', '.join(catalogue_names())}) and the container has no command",
            )
        return [*command, *args]
    if command:
        return [*command, *args]
    argv = [*known.entrypoint, *(args if args else known.cmd)]
    if not argv:
        raise RuntimeError_(
            "ErrImagePull", f'image "{image}" has no default command; give the container one'
        )
    return argv


def image_env(image: str, builtins: Builtins = BUILTINS) -> dict[str, str]:
    """The image's ENV (PATH for every image); the container's env goes on top."""
    env = {"PATH": DEFAULT_PATH}
    known = lookup(image, builtins)
    if known is not None:
        env.update(known.env)
    return env


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion (third_party/forked/golang/expansion).

    ``$(NAME)`` becomes the value of NAME when defined and stays as written otherwise; ``$$``
    is a literal ``$``; a ``$`` before anything else, or an unclosed ``$(``, stays as written.
    """
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            nxt = text[cursor + 1]
            if nxt == "$":
                out.append("$")
                advance = 1
            elif nxt == "(":
                close = text.find(")", cursor + 2)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    name = text[cursor + 2 : close]
                    out.append(env.get(name, f"$({name})"))
                    advance = close - cursor
            else:
                out.append("$" + nxt)
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)
