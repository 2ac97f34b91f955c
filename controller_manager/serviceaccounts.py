"""Every namespace's ServiceAccount and cluster CA, as Kubernetes' serviceaccount controller
(pkg/controller/serviceaccount) and root-ca-cert-publisher (pkg/controller/certificates/
rootcacertpublisher) keep them:

- ServiceAccountsController: a ``default`` ServiceAccount in every active namespace, made again
  when it is deleted (pods need one: the ServiceAccount admission plugin refuses pods whose
  ServiceAccount does not exist).
- RootCACertPublisher: a ConfigMap ``kube-root-ca.crt`` with key ``ca.crt`` holding the cluster
  CA (``--root-ca-file``, else the CA this controller manager trusts the API server with) in
  every active namespace, put back when it is changed or deleted; pods mount it with their
  token to verify the API server.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from controller_manager.context import ControllerContext
from kubelite.api.errors import AlreadyExists, Forbidden, NotFound
from kubelite.client.controller import Controller
from kubelite.client.informer import Informer
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

DEFAULT_SERVICE_ACCOUNTS = ("default",)
ROOT_CA_CONFIG_MAP = "kube-root-ca.crt"
ROOT_CA_KEY = "ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal"
    " endpoints such as the internal service IP or kubernetes.default.svc. No other usage is"
    " guaranteed across distributions of Kubernetes clusters."
)


def active(namespace: v1.Namespace | None) -> bool:
    return namespace is not None and not namespace.metadata.deletion_timestamp and (
        namespace.status.phase != "Terminating"
    )


def terminating_refusal(error: Forbidden) -> bool:
    """The API refused a create because the namespace is being deleted (nothing to do)."""
    return "because it is being terminated" in error.message


def read_root_ca(path: str) -> str:
    """The PEM of ``--root-ca-file``; ValueError naming the file when it is not one."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--root-ca-file: cannot read {path}: {e}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(f"--root-ca-file: {path} holds no PEM certificate")
    return text


class ServiceAccountsController(Controller):
    name = "serviceaccount-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client = ctx.client
        self.namespaces: Informer[v1.Namespace] = ctx.informers.informer(v1.Namespace)
        self.service_accounts: Informer[v1.ServiceAccount] = ctx.informers.informer(
            v1.ServiceAccount
        )
        self.namespaces.add_handlers(on_add=self.enqueue,
                                     on_update=lambda _old, new: self.enqueue(new))
        self.service_accounts.add_handlers(on_delete=self._service_account_deleted)

    def _service_account_deleted(self, sa: v1.ServiceAccount) -> None:
        if sa.metadata.name in DEFAULT_SERVICE_ACCOUNTS:
            self.queue.add(sa.metadata.namespace)

    async def reconcile(self, key: str) -> None:
        if not active(self.namespaces.store.get(key)):
            return
        for name in DEFAULT_SERVICE_ACCOUNTS:
            if self.service_accounts.store.get_by_name(key, name) is not None:
                continue
            sa = v1.ServiceAccount(metadata=v1.ObjectMeta(name=name, namespace=key))
            try:
                await self.client.create(sa)
            except AlreadyExists:
                continue  # the informer has not seen it yet
            except NotFound:
                return  # the namespace went
            except Forbidden as e:
                if terminating_refusal(e):
                    return
                raise
            log.info("service account created", namespace=key, name=name)


class RootCACertPublisher(Controller):
    name = "root-ca-cert-publisher"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client = ctx.client
        self.root_ca = self._root_ca(ctx)
        self.namespaces: Informer[v1.Namespace] = ctx.informers.informer(v1.Namespace)
        self.config_maps: Informer[v1.ConfigMap] = ctx.informers.informer(
            v1.ConfigMap, field_selector=f"metadata.name={ROOT_CA_CONFIG_MAP}"
        )
        if not self.root_ca:
            log.warning("no --root-ca-file and no CA for the API server: kube-root-ca.crt is"
                        " not published")
            return
        self.namespaces.add_handlers(on_add=self.enqueue,
                                     on_update=lambda _old, new: self.enqueue(new))
        self.config_maps.add_handlers(
            on_update=lambda _old, new: self._config_map_changed(new),
            on_delete=self._config_map_changed,
        )

    @staticmethod
    def _root_ca(ctx: ControllerContext) -> str:
        if ctx.settings.root_ca_file:
            return read_root_ca(ctx.settings.root_ca_file)
        config = getattr(ctx.client, "config", None)
        ca = getattr(config, "ca_pem", None)
        return ca.decode() if isinstance(ca, bytes) else ""

    def _config_map_changed(self, cm: v1.ConfigMap) -> None:
        if cm.metadata.name == ROOT_CA_CONFIG_MAP:
            self.queue.add(cm.metadata.namespace)

    async def reconcile(self, key: str) -> None:
        if not self.root_ca or not active(self.namespaces.store.get(key)):
            return
        data = {ROOT_CA_KEY: self.root_ca}
        current = self.config_maps.store.get_by_name(key, ROOT_CA_CONFIG_MAP)
        if current is None:
            cm = v1.ConfigMap(
                metadata=v1.ObjectMeta(name=ROOT_CA_CONFIG_MAP, namespace=key,
                                       annotations={DESCRIPTION_ANNOTATION: DESCRIPTION}),
                data=data,
            )
            try:
                await self.client.create(cm)
            except (AlreadyExists, NotFound):
                return  # not seen yet (its event comes), or the namespace went
            except Forbidden as e:
                if terminating_refusal(e):
                    return
                raise
            return
        if dict(current.data) == data and current.metadata.annotations.get(
            DESCRIPTION_ANNOTATION
        ):
            return
        updated = v1.ConfigMap()
        updated.CopyFrom(current)
        updated.ClearField("data")
        updated.ClearField("binary_data")
        updated.data.update(data)
        updated.metadata.annotations[DESCRIPTION_ANNOTATION] = DESCRIPTION
        try:
            await self.client.update(updated)
        except NotFound:
            self.queue.add(key)  # deleted meanwhile: make it again
