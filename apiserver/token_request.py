"""TokenRequest (``create serviceaccounts/token``): a signed, expiring JWT for a
ServiceAccount, optionally bound to a pod so that it dies with the pod.

As upstream: the ServiceAccount must exist; a bound pod must exist, run as that
ServiceAccount and have the uid the request names (when it names one); expiration defaults to
3600 s and may not be under 600 s nor over 2^32 s (nor over
--service-account-max-token-expiration when set); audiences default to the API's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from apiserver.api import Api
from kubelite.api import meta as m
from kubelite.api.errors import BadRequest, Conflict, Invalid, NotFound
from kubelite.api.field_errors import FieldError, FieldPath
from kubelite.api.registry import by_kind
from kubelite.auth import jwt, tokens
from protos.v1 import objects_pb2 as v1

SERVICE_ACCOUNTS = by_kind("ServiceAccount")
PODS = by_kind("Pod")


@dataclass(frozen=True)
class TokenRequestSettings:
    signing_key_file: str = ""
    """--service-account-signing-key-file: the RSA private key (PEM) tokens are signed with;
    empty: the server issues no tokens."""
    max_expiration_seconds: int = 0
    """--service-account-max-token-expiration: the longest lifetime granted (a longer request
    gets this); 0: up to 2^32 s."""


def load_signing_key(path: str) -> rsa.RSAPrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"--service-account-signing-key-file: cannot read {path}: {e}") from e
    try:
        return jwt.load_private_key(data, f"--service-account-signing-key-file {path}")
    except jwt.JwtError as e:
        raise ValueError(str(e)) from e


class TokenIssuer:
    def __init__(self, api: Api, signing_key: rsa.RSAPrivateKey | None, issuer: str,
                 audiences: tuple[str, ...], max_expiration_seconds: int = 0) -> None:
        self.api = api
        self.signing_key = signing_key
        self.issuer = issuer
        self.audiences = audiences
        self.max_expiration_seconds = max_expiration_seconds

    async def create(self, namespace: str, name: str, request: v1.TokenRequest
                     ) -> v1.TokenRequest:
        """The request with ``status.token`` and ``status.expirationTimestamp`` filled."""
        if self.signing_key is None:
            raise NotFound("serviceaccounts/token is not served: this API server has no"
                           " --service-account-signing-key-file")
        if request.metadata.name and request.metadata.name != name:
            raise BadRequest("the name of the TokenRequest does not match the ServiceAccount"
                             " on the request")
        spec = request.spec
        expiration = (spec.expiration_seconds if spec.HasField("expiration_seconds")
                      else tokens.DEFAULT_EXPIRATION_SECONDS)
        if expiration < tokens.MIN_EXPIRATION_SECONDS:
            raise self._invalid(name, FieldPath("spec.expirationSeconds").invalid(
                expiration, "may not specify a duration less than 10 minutes"))
        if expiration > tokens.MAX_EXPIRATION_SECONDS:
            raise self._invalid(name, FieldPath("spec.expirationSeconds").invalid(
                expiration, "may not specify a duration larger than 2^32 seconds"))
        if self.max_expiration_seconds:
            expiration = min(expiration, self.max_expiration_seconds)
        account = await self.api.get(SERVICE_ACCOUNTS, namespace, name)
        assert isinstance(account, v1.ServiceAccount)
        pod = await self._bound_pod(namespace, name, spec.bound_object_ref)
        audiences = list(spec.audiences) or list(self.audiences)
        now = m.now()
        claims = tokens.service_account_claims(
            issuer=self.issuer, audiences=audiences, namespace=namespace, name=name,
            uid=account.metadata.uid, pod=pod, now=now, expiration_seconds=expiration,
        )
        answer = v1.TokenRequest()
        answer.CopyFrom(request)
        answer.metadata.name = name
        answer.metadata.namespace = namespace
        answer.metadata.creation_timestamp = m.format_time(now)
        answer.spec.audiences[:] = audiences
        answer.spec.expiration_seconds = expiration
        if pod is not None:
            ref = answer.spec.bound_object_ref
            ref.uid = pod.uid
            ref.api_version = ref.api_version or "v1"
        answer.status.token = jwt.sign(claims, self.signing_key)
        answer.status.expiration_timestamp = m.format_time(
            dt.datetime.fromtimestamp(claims["exp"], dt.UTC))
        return answer

    async def _bound_pod(self, namespace: str, account: str, ref: v1.BoundObjectReference
                         ) -> tokens.BoundObject | None:
        if not ref.kind and not ref.name:
            return None
        if ref.kind != "Pod":
            raise self._invalid(account, FieldPath("spec.boundObjectRef.kind").
                                not_supported(ref.kind, ["Pod"]))
        if ref.api_version not in ("", "v1"):
            raise self._invalid(account, FieldPath("spec.boundObjectRef.apiVersion").
                                not_supported(ref.api_version, ["v1"]))
        if not ref.name:
            raise self._invalid(account, FieldPath("spec.boundObjectRef.name").required())
        pod = await self.api.get(PODS, namespace, ref.name)
        assert isinstance(pod, v1.Pod)
        if ref.uid and ref.uid != pod.metadata.uid:
            raise Conflict(
                f"the UID in the bound object reference ({ref.uid}) does not match the UID in"
                f" record ({pod.metadata.uid}). The object might have been deleted and then"
                " recreated")
        pod_account = pod.spec.service_account_name or pod.spec.service_account or "default"
        if pod_account != account:
            raise BadRequest(f'cannot bind token for serviceaccount "{account}" to pod running'
                             f' with different serviceaccount name.')
        return tokens.BoundObject(pod.metadata.name, pod.metadata.uid)

    @staticmethod
    def _invalid(name: str, error: FieldError) -> Invalid:
        return Invalid.from_field_errors("TokenRequest.authentication.k8s.io", name, [error])
