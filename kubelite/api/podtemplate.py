"""The pod-template-hash: a short, stable name for a pod template (Kubernetes' ComputeHash).

Controllers that keep several generations of a template apart (Deployment -> ReplicaSets,
and later DaemonSet and StatefulSet revisions) label what they create with this hash, so
that equal templates give equal names and any change gives a new one.
"""

from __future__ import annotations

from protos.v1 import objects_pb2 as v1

POD_TEMPLATE_HASH_LABEL = "pod-template-hash"

# Kubernetes' rand.SafeEncodeString alphabet: no vowels (no words), no confusable characters.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


def fnv32a(data: bytes, h: int = _FNV32_OFFSET) -> int:
    for byte in data:
        h = ((h ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """Maps each character onto the safe alphabet, as rand.SafeEncodeString."""
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in text)


def compute_hash(template: v1.PodTemplateSpec, collision_count: int | None = None) -> str:
    """FNV-1a over the template's deterministic encoding (plus the collision count, which
    moves the hash when two templates collide), rendered as the decimal digits of the hash
    mapped onto the safe alphabet (Kubernetes' ComputeHash)."""
    h = fnv32a(template.SerializeToString(deterministic=True))
    if collision_count is not None:
        h = fnv32a(collision_count.to_bytes(4, "little", signed=False), h)
    return safe_encode(str(h))


def without_hash(template: v1.PodTemplateSpec) -> v1.PodTemplateSpec:
    """A copy of ``template`` without the pod-template-hash label."""
    result = v1.PodTemplateSpec()
    result.CopyFrom(template)
    result.metadata.labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return result


def equal_ignore_hash(a: v1.PodTemplateSpec, b: v1.PodTemplateSpec) -> bool:
    """Whether two templates are the same but for the pod-template-hash label."""
    return bool(without_hash(a) == without_hash(b))
