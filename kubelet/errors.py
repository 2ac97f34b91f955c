"""Why a container cannot start yet, as the waiting reason Kubernetes shows for it."""

from __future__ import annotations

from kubelite.api.errors import KubeliteError


class ContainerStartError(KubeliteError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def config_error(message: str) -> ContainerStartError:
    return ContainerStartError("CreateContainerConfigError", message)
