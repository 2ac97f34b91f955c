"""PersistentVolumeClaims, not served: their defaults for the claims a StatefulSet's
volumeClaimTemplates carry."""

from __future__ import annotations

from kubelite.api import defaults
from kubelite.api.strategies.base import Strategy
from protos.v1 import objects_pb2 as v1


class PersistentVolumeClaimStrategy(Strategy[v1.PersistentVolumeClaim]):
    def default(self, obj: v1.PersistentVolumeClaim) -> None:
        defaults.default_pvc(obj)
