"""Image garbage collection: past the high threshold, unused images go, least recently used
first, until usage is at the low threshold; images in use and pinned ones stay."""

from __future__ import annotations

from typing import Any

import pytest

from kubelet.image_gc import ImageGarbageCollector, ImageGCSettings
from kubelet.runtime.interface import (
    ContainerState,
    ContainerStatus,
    ImageFsUsage,
    ImageInfo,
)

MB = 1024 * 1024


class FakeImageRuntime:
    """The image side of a runtime: images on a disk of 1000 MB, some of them in use."""

    def __init__(self, images: list[ImageInfo], other_used: int, in_use: list[str]) -> None:
        self.images = {i.id: i for i in images}
        self.other_used = other_used
        self.in_use = in_use
        self.removed: list[str] = []

    async def image_fs_usage(self) -> ImageFsUsage | None:
        images = sum(i.size_bytes for i in self.images.values())
        return ImageFsUsage(used_bytes=self.other_used + images, capacity_bytes=1000 * MB,
                            images_bytes=images)

    async def list_images(self) -> list[ImageInfo]:
        return list(self.images.values())

    async def remove_image(self, image_id: str) -> None:
        self.removed.append(image_id)
        del self.images[image_id]

    async def list_containers(self, pod_uid: str | None = None) -> list[ContainerStatus]:
        return [ContainerStatus(id=f"c{n}", name="c", pod_uid="u", attempt=0,
                                state=ContainerState.EXITED, image=ref)
                for n, ref in enumerate(self.in_use)]


def image(name: str, size_mb: int, pinned: bool = False) -> ImageInfo:
    return ImageInfo(id=f"sha256:{name}", tags=(f"docker.io/library/{name}:latest",),
                     size_bytes=size_mb * MB, pinned=pinned)


def collector(runtime: Any, high: int = 85, low: int = 80) -> ImageGarbageCollector:
    return ImageGarbageCollector(runtime, ImageGCSettings(high_threshold_percent=high,
                                                          low_threshold_percent=low))


async def test_below_the_high_threshold_nothing_is_removed() -> None:
    runtime = FakeImageRuntime([image("a", 100)], other_used=700 * MB, in_use=[])
    result = await collector(runtime).collect()
    assert (round(result.usage_percent), runtime.removed) == (80, [])


async def test_unused_images_go_until_the_low_threshold_and_used_or_pinned_stay() -> None:
    runtime = FakeImageRuntime(
        [image("used", 50), image("pause", 10, pinned=True), image("old", 60),
         image("older", 60), image("spare", 60)],
        other_used=700 * MB, in_use=["docker.io/library/used:latest"])
    result = await collector(runtime).collect()  # 94% > 85%; down to 80% wants 140 MB
    assert result.wanted_bytes == 140 * MB
    assert set(runtime.removed) == {"sha256:old", "sha256:older", "sha256:spare"}
    assert "sha256:used" in runtime.images and "sha256:pause" in runtime.images


async def test_the_least_recently_used_go_first() -> None:
    runtime = FakeImageRuntime([image("a", 100), image("b", 100), image("c", 100)],
                               other_used=500 * MB, in_use=["docker.io/library/b:latest"])
    gc = collector(runtime, high=90)
    await gc.collect()  # 80%: below 90%, but b is seen in use (its last use is now)
    runtime.in_use = []
    runtime.other_used = 680 * MB  # 98%: 180 MB must go, two of the three
    result = await gc.collect()
    assert result.removed == ("docker.io/library/a:latest", "docker.io/library/c:latest")


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="low"):
        ImageGCSettings(high_threshold_percent=50, low_threshold_percent=60)
