"""protos/cri/v1 is the container runtime interface as Kubernetes publishes it: same package,
services, field numbers and enum values, so a real runtime understands what the stubs send."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor

from protos.cri.v1 import api_pb2, api_pb2_grpc


def test_package_and_service_names() -> None:
    assert api_pb2.DESCRIPTOR.package == "runtime.v1"
    services = api_pb2.DESCRIPTOR.services_by_name
    assert services["RuntimeService"].full_name == "runtime.v1.RuntimeService"
    assert services["ImageService"].full_name == "runtime.v1.ImageService"
    # The stubs call the methods by these paths, as runtimes serve them.
    assert services["RuntimeService"].methods_by_name["Version"].full_name == (
        "runtime.v1.RuntimeService.Version"
    )


RUNTIME_METHODS = [
    "Version", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus",
    "ListPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
    "ListContainers", "ContainerStatus", "UpdateContainerResources", "ReopenContainerLog",
    "ExecSync", "Exec", "Attach", "PortForward", "ContainerStats", "ListContainerStats",
    "UpdateRuntimeConfig", "Status",
]
IMAGE_METHODS = ["ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"]


def test_the_kubelets_methods_are_there_with_stubs() -> None:
    services = api_pb2.DESCRIPTOR.services_by_name
    assert set(RUNTIME_METHODS) <= set(services["RuntimeService"].methods_by_name)
    assert set(IMAGE_METHODS) <= set(services["ImageService"].methods_by_name)
    # A channel connects lazily: building stubs on one sends nothing.
    with grpc.insecure_channel("unix:///nonexistent/cri.sock") as channel:
        runtime = api_pb2_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]
        images = api_pb2_grpc.ImageServiceStub(channel)  # type: ignore[no-untyped-call]
        assert all(callable(getattr(runtime, name)) for name in RUNTIME_METHODS)
        assert all(callable(getattr(images, name)) for name in IMAGE_METHODS)


# (message, field, number, type) as in k8s.io/cri-api/pkg/apis/runtime/v1/api.proto.
F = FieldDescriptor
PUBLISHED_FIELDS = [
    ("VersionResponse", "runtime_api_version", 4, F.TYPE_STRING),
    ("PodSandboxConfig", "linux", 8, F.TYPE_MESSAGE),
    ("PodSandboxConfig", "annotations", 7, F.TYPE_MESSAGE),  # a map is a repeated entry message
    ("LinuxSandboxSecurityContext", "run_as_group", 8, F.TYPE_MESSAGE),
    ("LinuxSandboxSecurityContext", "seccomp", 9, F.TYPE_MESSAGE),
    ("ContainerConfig", "linux", 15, F.TYPE_MESSAGE),
    ("ContainerConfig", "CDI_devices", 17, F.TYPE_MESSAGE),
    ("LinuxContainerResources", "memory_limit_in_bytes", 4, F.TYPE_INT64),
    ("LinuxContainerResources", "hugepage_limits", 8, F.TYPE_MESSAGE),
    ("LinuxContainerResources", "unified", 9, F.TYPE_MESSAGE),
    ("LinuxContainerResources", "memory_swap_limit_in_bytes", 10, F.TYPE_INT64),
    ("ContainerStatus", "reason", 10, F.TYPE_STRING),
    ("ContainerStatus", "message", 11, F.TYPE_STRING),
    ("ContainerStatus", "image_id", 17, F.TYPE_STRING),
    ("LinuxContainerSecurityContext", "run_as_user", 5, F.TYPE_MESSAGE),
    ("LinuxContainerSecurityContext", "run_as_group", 12, F.TYPE_MESSAGE),
    ("LinuxContainerSecurityContext", "seccomp", 15, F.TYPE_MESSAGE),
    ("Mount", "uidMappings", 6, F.TYPE_MESSAGE),
    ("ImageSpec", "user_specified_image", 18, F.TYPE_STRING),
    ("ImageSpec", "runtime_handler", 19, F.TYPE_STRING),
    ("ExecSyncResponse", "stdout", 1, F.TYPE_BYTES),
    ("Image", "size", 4, F.TYPE_UINT64),
    ("HugepageLimit", "limit", 2, F.TYPE_UINT64),
    ("StatusResponse", "runtime_handlers", 3, F.TYPE_MESSAGE),
]


@pytest.mark.parametrize(("message", "field", "number", "kind"), PUBLISHED_FIELDS)
def test_field_numbers_and_types_match_the_published_api(
    message: str, field: str, number: int, kind: int
) -> None:
    descriptor = api_pb2.DESCRIPTOR.message_types_by_name[message].fields_by_name[field]
    assert (descriptor.number, descriptor.type) == (number, kind)


def test_map_fields_are_maps_of_strings() -> None:
    unified = api_pb2.LinuxContainerResources.DESCRIPTOR.fields_by_name["unified"]
    entry = unified.message_type
    assert entry is not None
    assert entry.GetOptions().map_entry
    assert [f.type for f in entry.fields] == [F.TYPE_STRING, F.TYPE_STRING]


@pytest.mark.parametrize(
    ("enum", "values"),
    [
        ("NamespaceMode", {"POD": 0, "CONTAINER": 1, "NODE": 2, "TARGET": 3}),
        ("MountPropagation", {"PROPAGATION_PRIVATE": 0, "PROPAGATION_HOST_TO_CONTAINER": 1,
                              "PROPAGATION_BIDIRECTIONAL": 2}),
        ("ContainerState", {"CONTAINER_CREATED": 0, "CONTAINER_RUNNING": 1,
                            "CONTAINER_EXITED": 2, "CONTAINER_UNKNOWN": 3}),
        ("PodSandboxState", {"SANDBOX_READY": 0, "SANDBOX_NOTREADY": 1}),
        ("Protocol", {"TCP": 0, "UDP": 1, "SCTP": 2}),
    ],
)
def test_enum_values_match_the_published_api(enum: str, values: dict[str, int]) -> None:
    descriptor = api_pb2.DESCRIPTOR.enum_types_by_name[enum]
    assert {v.name: v.number for v in descriptor.values} == values


def test_nested_security_profile_enum() -> None:
    profile = api_pb2.SecurityProfile.DESCRIPTOR.enum_types_by_name["ProfileType"]
    assert {v.name: v.number for v in profile.values} == {
        "RuntimeDefault": 0, "Unconfined": 1, "Localhost": 2,
    }


def test_no_imports_beyond_the_file_itself() -> None:
    assert list(api_pb2.DESCRIPTOR.dependencies) == []
