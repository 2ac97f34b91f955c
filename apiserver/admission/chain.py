"""The admission chain: which plugins run (kube-apiserver's --enable-admission-plugins and
--disable-admission-plugins over its default set), in Kubernetes' order, each write going
through every plugin's mutating phase and then every plugin's validating phase."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from apiserver.admission.limit_ranger import LimitRanger
from apiserver.admission.node_restriction import NodeRestriction
from apiserver.admission.objects import Sources
from apiserver.admission.plugin import CREATE, DELETE, UPDATE, Attributes, Plugin
from apiserver.admission.pod_security import PodSecurity
from apiserver.admission.resource_quota import ResourceQuotaAdmission
from apiserver.admission.service_account import ServiceAccountAdmission
from apiserver.request_context import request_user
from apiserver.storage import Storage
from apiserver.watch_cache import ResourceWatchCache
from kubelite.api import meta as m
from kubelite.api.registry import ResourceType

PluginFactory = Callable[[Sources], Plugin]

ORDER = ("NamespaceLifecycle", "LimitRanger", "ServiceAccount", "NodeRestriction", "PodSecurity",
         "DefaultTolerationSeconds", "ResourceQuota")
"""Every plugin known, in the order they run (Kubernetes' AllOrderedPlugins)."""
PLUGINS: dict[str, PluginFactory] = {
    "LimitRanger": LimitRanger,
    "ServiceAccount": ServiceAccountAdmission,
    "NodeRestriction": NodeRestriction,
    "PodSecurity": PodSecurity,
    "ResourceQuota": ResourceQuotaAdmission,
}
BUILT_IN = ("NamespaceLifecycle", "DefaultTolerationSeconds")
"""Plugins the API applies itself, always (Api._check_namespace, kind_hooks.PodHooks): named
here so they may be listed, not turned off."""
DEFAULT_ON = ("NamespaceLifecycle", "LimitRanger", "ServiceAccount", "PodSecurity",
              "DefaultTolerationSeconds", "ResourceQuota")
"""Kubernetes' default set, of the plugins there are here."""
NEEDS_SECURED = ("ServiceAccount",)
"""Default plugins that are off unless the server authenticates its callers (or they are
enabled by name): pods created in-process or on an insecure server run without
ServiceAccounts."""


@dataclass(frozen=True)
class AdmissionSettings:
    enable_plugins: tuple[str, ...] = ()
    """--enable-admission-plugins: plugins on beside the default set (NodeRestriction, or
    ServiceAccount on a server that is not secured)."""
    disable_plugins: tuple[str, ...] = ()
    """--disable-admission-plugins: plugins of the default set turned off."""
    secured: bool = False
    """The server authenticates its callers: the default set then has ServiceAccount too.
    False in-process and on an insecure server."""
    live_lookup_ttl: float = 30.0
    """Seconds a namespace's LimitRanges or ResourceQuotas read from etcd (because the
    plugins' copy had none) are used before they are read again, unless the copy gets one."""

    def __post_init__(self) -> None:
        for flag, names in (("--enable-admission-plugins", self.enable_plugins),
                            ("--disable-admission-plugins", self.disable_plugins)):
            unknown = [n for n in names if n not in ORDER]
            if unknown:
                raise ValueError(f"{flag}: unknown admission plugin(s) {', '.join(unknown)};"
                                 f" known: {', '.join(sorted(ORDER))}")
        for name in BUILT_IN:
            if name in self.disable_plugins:
                raise ValueError(f"--disable-admission-plugins: {name} cannot be turned off"
                                 " here (the API server applies it itself)")

    def enabled(self) -> list[str]:
        """The plugins that run, in order."""
        on = set(DEFAULT_ON) | set(self.enable_plugins)
        if not self.secured:
            on -= set(NEEDS_SECURED) - set(self.enable_plugins)
        on -= set(self.disable_plugins)
        return [name for name in ORDER if name in on]


class Admission:
    """The enabled plugins, and the calls the API makes at its write paths. The request's user
    is the one set for the call (apiserver.request_context); plugins that need a user skip
    requests without one."""

    def __init__(
        self, settings: AdmissionSettings, storage: Storage,
        caches: dict[str, ResourceWatchCache],
    ) -> None:
        self.settings = settings
        self.sources = Sources(storage, caches, settings.live_lookup_ttl)
        self.plugins: list[Plugin] = [
            PLUGINS[name](self.sources) for name in settings.enabled() if name in PLUGINS
        ]

    async def start(self) -> None:
        for store in self.sources.stores.values():
            await store.start()
        for plugin in self.plugins:
            await plugin.start()

    async def stop(self) -> None:
        for plugin in self.plugins:
            await plugin.stop()
        for store in self.sources.stores.values():
            await store.stop()

    def _applicable(self) -> list[Plugin]:
        user = request_user()
        return [p for p in self.plugins if user is not None or not p.needs_user]

    async def mutate(self, a: Attributes) -> None:
        a.user = request_user()
        for plugin in self._applicable():
            await plugin.admit(a)

    async def validate(self, a: Attributes) -> None:
        a.user = request_user()
        for plugin in self._applicable():
            await plugin.validate(a)

    async def admit(self, a: Attributes) -> None:
        """Both phases, for a write whose object admission may no longer change."""
        await self.mutate(a)
        await self.validate(a)

    # ------------------------------------------------------------ the API's write paths

    async def admit_create(self, rtype: ResourceType, obj: Message, dry_run: bool) -> Attributes:
        """The mutating phase of a create (the object is then validated); returns what
        ``validate`` takes after validation."""
        meta = m.meta(obj)
        a = Attributes(CREATE, rtype, meta.namespace, meta.name, obj, dry_run=dry_run)
        await self.mutate(a)
        return a

    async def update(
        self, rtype: ResourceType, old: Message, new: Message, subresource: str, dry_run: bool
    ) -> None:
        """An update (or a status update) about to be written. Both phases run after the
        object was validated: no plugin here changes an object on update."""
        meta = m.meta(new)
        await self.admit(Attributes(UPDATE, rtype, meta.namespace, meta.name, new, old,
                                    subresource, dry_run=dry_run))

    async def delete(self, rtype: ResourceType, old: Message) -> None:
        meta = m.meta(old)
        await self.admit(Attributes(DELETE, rtype, meta.namespace, meta.name, None, old))

    async def create_subresource(
        self, rtype: ResourceType, namespace: str, name: str, subresource: str, obj: Message,
    ) -> None:
        """A create of a subresource (``serviceaccounts/token``: a TokenRequest for ``name``)."""
        await self.admit(Attributes(CREATE, rtype, namespace, name, obj, None, subresource))
