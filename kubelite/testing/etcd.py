"""A real etcd for tests (kubelite.etcd_process), and a throwaway one in a temporary dir."""

from __future__ import annotations

import tempfile
from pathlib import Path

from kubelite.etcd_process import EtcdProcess, find_etcd

__all__ = ["EtcdProcess", "find_etcd", "start_temporary_etcd"]


def start_temporary_etcd() -> tuple[EtcdProcess, tempfile.TemporaryDirectory[str]]:
    tmp = tempfile.TemporaryDirectory(prefix="kubelite-etcd-")
    etcd = EtcdProcess(Path(tmp.name) / "data")
    etcd.start()
    return etcd, tmp
