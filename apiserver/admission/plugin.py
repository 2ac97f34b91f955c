"""What an admission plugin sees of a request and what it may do about it (Kubernetes'
k8s.io/apiserver/pkg/admission: Attributes, MutationInterface, ValidationInterface)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.errors import Forbidden
from kubelite.api.registry import ResourceType
from kubelite.auth.user import UserInfo

CREATE = "CREATE"
UPDATE = "UPDATE"
DELETE = "DELETE"


@dataclass
class Attributes:
    """One write, as admission sees it."""

    operation: str
    """CREATE, UPDATE or DELETE."""
    rtype: ResourceType
    namespace: str
    name: str
    obj: Message | None
    """The object to be stored (create, update); mutating plugins change it in place."""
    old: Message | None = None
    """The stored object (update, delete)."""
    subresource: str = ""
    """``status`` for a status update, ``token`` for a TokenRequest, ...; "" for the object."""
    user: UserInfo | None = None
    """Who asks; None in-process and on an insecure server (plugins that need a user skip)."""
    dry_run: bool = False
    """Nothing is stored: plugins must not change anything beside the object (a quota is
    checked, not charged)."""

    @property
    def resource(self) -> str:
        """``pods``, ``deployments.apps``: the resource as Kubernetes names it in messages."""
        rtype = self.rtype
        return f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural

    def forbidden(self, why: str) -> Forbidden:
        """Kubernetes' admission.NewForbidden: ``pods "web" is forbidden: <why>``."""
        name = self.name
        if not name and self.obj is not None:
            meta = m.meta(self.obj)
            name = meta.name or meta.generate_name
        return Forbidden(f'{self.resource} "{name or "Unknown"}" is forbidden: {why}')


class Plugin:
    """An admission plugin: ``admit`` may change the object (mutating phase, before the object
    is validated); ``validate`` only accepts or refuses (validating phase, after validation,
    just before the write). Either raises an ApiError to refuse. Both do nothing here."""

    name: ClassVar[str] = ""
    needs_user: ClassVar[bool] = False
    """Skipped for requests without a user (in-process, insecure server)."""

    async def start(self) -> None:
        """Before the first request: start what the plugin keeps up to date."""

    async def stop(self) -> None:
        """After the last request."""

    async def admit(self, a: Attributes) -> None:
        """Mutating phase."""

    async def validate(self, a: Attributes) -> None:
        """Validating phase."""
