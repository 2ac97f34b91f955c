"""Reading CRI-format container logs: joining partial records, interleaving streams, tail,
follow, and lines that are not records."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubelet.runtime import cri_logs
from kubelet.runtime.cri_logs import CriRecord, parse_cri_line, read_cri_log

DEADLINE = 5.0
TS = "2024-05-01T10:00:00.123456789Z"


class Container:
    """is_running for a container the test stops by setting an event."""

    def __init__(self) -> None:
        self.stopped = asyncio.Event()
        self.asked = asyncio.Event()
        """Set once a reader has asked whether the container runs (it is waiting)."""

    async def is_running(self) -> bool:
        self.asked.set()
        return not self.stopped.is_set()


def rec(stream: str, tag: str, content: str, ts: str = TS) -> str:
    return f"{ts} {stream} {tag} {content}\n"


def append(path: Path, text: str | bytes) -> None:
    with open(path, "ab") as f:
        f.write(text.encode() if isinstance(text, str) else text)


async def read_all(path: Path, tail: int = -1, timestamps: bool = False) -> bytes:
    container = Container()
    container.stopped.set()
    chunks = [
        chunk
        async for chunk in read_cri_log(
            str(path), follow=False, tail=tail, is_running=container.is_running,
            timestamps=timestamps,
        )
    ]
    return b"".join(chunks)


async def next_chunk(stream: AsyncIterator[bytes]) -> bytes:
    return await asyncio.wait_for(anext(stream), DEADLINE)


async def rest_of(stream: AsyncIterator[bytes]) -> bytes:
    async def collect() -> bytes:
        return b"".join([chunk async for chunk in stream])

    return await asyncio.wait_for(collect(), DEADLINE)


def test_parse_cri_line() -> None:
    assert parse_cri_line(b"2016-10-06T00:17:09.669794202Z stdout F hello world\n") == CriRecord(
        timestamp="2016-10-06T00:17:09.669794202Z", stream="stdout", partial=False,
        content=b"hello world",
    )
    assert parse_cri_line(b"2016-10-06T00:17:09+02:00 stderr P  two  spaces") == CriRecord(
        timestamp="2016-10-06T00:17:09+02:00", stream="stderr", partial=True,
        content=b" two  spaces",
    )
    # An empty line of output, and a tag with an extension after ':'.
    assert parse_cri_line(f"{TS} stdout F \n".encode()) == CriRecord(TS, "stdout", False, b"")
    assert parse_cri_line(f"{TS} stdout P:x y".encode()) == CriRecord(TS, "stdout", True, b"y")
    for bad in [
        b"",
        b"hello world",
        f"{TS} stdout F".encode(),  # three fields
        f"{TS} stdin F x".encode(),
        f"{TS} stdout X x".encode(),
        f"{TS} stdout FF x".encode(),
        b"yesterday stdout F x",
    ]:
        assert parse_cri_line(bad) is None, bad


async def test_partial_records_are_joined(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    append(log, rec("stdout", "P", "hel") + rec("stdout", "P", "lo ") + rec("stdout", "F", "world")
           + rec("stdout", "F", "") + rec("stdout", "F", "next"))
    assert await read_all(log) == b"hello world\n\nnext\n"


async def test_stdout_and_stderr_keep_file_order(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    append(log, rec("stdout", "F", "out 1") + rec("stderr", "F", "err 1")
           + rec("stdout", "F", "out 2") + rec("stderr", "F", "err 2"))
    assert await read_all(log) == b"out 1\nerr 1\nout 2\nerr 2\n"


async def test_timestamps_start_each_line(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    t1, t2, t3 = (f"2024-05-01T10:00:0{i}.5Z" for i in (1, 2, 3))
    append(log, rec("stdout", "P", "a", t1) + rec("stdout", "F", "b", t2)
           + rec("stderr", "F", "c", t3))
    assert await read_all(log, timestamps=True) == f"{t1} ab\n{t3} c\n".encode()


async def test_lines_that_are_not_records_are_kept(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    append(log, rec("stdout", "F", "first") + "not a record\n" + f"{TS} stdin F x\n"
           + rec("stderr", "F", "last") + "no newline at the end")
    assert await read_all(log) == (
        f"first\nnot a record\n{TS} stdin F x\nlast\nno newline at the end".encode()
    )


async def test_tail_counts_joined_lines_and_reads_backwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "0.log"
    with open(log, "w") as f:
        for i in range(20000):
            # Every other line is split over two records, one of them on the other stream.
            if i % 2:
                f.write(rec("stdout", "P", f"line {i} ") + rec("stderr", "F", "joined"))
            else:
                f.write(rec("stdout", "F", f"line {i}"))
    size = log.stat().st_size
    assert size > 100 * cri_logs.TAIL_BLOCK_SIZE

    read_backwards = 0
    pread = os.pread

    def counting_pread(fd: int, n: int, offset: int) -> bytes:
        nonlocal read_backwards
        read_backwards += n
        return pread(fd, n, offset)

    monkeypatch.setattr(os, "pread", counting_pread)
    assert await read_all(log, tail=3) == b"line 19997 joined\nline 19998\nline 19999 joined\n"
    assert read_backwards < 4 * cri_logs.TAIL_BLOCK_SIZE
    monkeypatch.undo()

    assert await read_all(log, tail=0) == b""
    assert await read_all(log, tail=1) == b"line 19999 joined\n"
    everything = await read_all(log)
    assert await read_all(log, tail=20000) == everything
    assert await read_all(log, tail=50000) == everything
    assert everything.count(b"\n") == 20000


async def test_tail_edge_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny blocks so records and their headers straddle block boundaries.
    monkeypatch.setattr(cri_logs, "TAIL_BLOCK_SIZE", 7)
    log = tmp_path / "0.log"
    log.write_bytes(b"")
    assert await read_all(log, tail=2) == b""
    # A line still growing (partial records at the end) counts as a line.
    log.write_text(rec("stdout", "F", "a") + "raw\n" + rec("stdout", "F", "b")
                   + rec("stdout", "P", "c") + rec("stderr", "P", "d"))
    assert await read_all(log, tail=1) == b"cd"
    assert await read_all(log, tail=2) == b"b\ncd"
    assert await read_all(log, tail=3) == b"raw\nb\ncd"
    assert await read_all(log, tail=4) == b"a\nraw\nb\ncd"
    # Empty lines and a first line that is not a record.
    log.write_text("\n\n" + rec("stdout", "F", "x") + "\n")
    assert await read_all(log, tail=1) == b"\n"
    assert await read_all(log, tail=2) == b"x\n\n"
    assert await read_all(log, tail=4) == b"\n\nx\n\n"


async def test_tail_rejects_negative_counts(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    log.write_text(rec("stdout", "F", "a"))
    with pytest.raises(ValueError, match="tail: must be -1"):
        await read_all(log, tail=-2)


async def test_long_lines_are_passed_on_as_they_come(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    big = "x" * (3 * cri_logs.READ_SIZE)
    append(log, rec("stdout", "F", big) + rec("stdout", "P", big) + rec("stdout", "F", "!")
           + "r" * (2 * cri_logs.READ_SIZE) + "\n" + rec("stderr", "F", "end"))
    expected = f"{big}\n{big}!\n{'r' * (2 * cri_logs.READ_SIZE)}\nend\n".encode()
    assert await read_all(log) == expected
    with_ts = await read_all(log, timestamps=True)
    raw = "r" * (2 * cri_logs.READ_SIZE)
    assert with_ts == f"{TS} {big}\n{TS} {big}!\n{raw}\n{TS} end\n".encode()


async def test_follow_reads_appended_records_until_the_container_stops(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    append(log, rec("stdout", "F", "one") + rec("stdout", "F", "two"))
    container = Container()
    stream = read_cri_log(str(log), follow=True, tail=1, is_running=container.is_running,
                          poll_interval=0.01)
    try:
        assert await next_chunk(stream) == b"two\n"
        append(log, rec("stderr", "F", "three"))
        assert await next_chunk(stream) == b"three\n"
        # A partial record is passed on before the rest of its line arrives.
        append(log, rec("stdout", "P", "fo"))
        assert await next_chunk(stream) == b"fo"
        # Written just before it stopped: still read.
        append(log, rec("stdout", "F", "ur") + rec("stdout", "F", "five"))
        container.stopped.set()
        assert await rest_of(stream) == b"ur\nfive\n"
    finally:
        await stream.aclose()


async def test_follow_waits_for_the_file_to_appear(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    container = Container()
    stream = read_cri_log(str(log), follow=True, tail=-1, is_running=container.is_running,
                          poll_interval=0.01)
    try:
        first = asyncio.ensure_future(next_chunk(stream))
        await asyncio.wait_for(container.asked.wait(), DEADLINE)  # found no file yet
        assert not first.done()
        append(log, rec("stdout", "F", "hello"))
        assert await first == b"hello\n"
        container.stopped.set()
        assert await rest_of(stream) == b""
    finally:
        await stream.aclose()


async def test_follow_ends_when_the_container_stops_without_a_file(tmp_path: Path) -> None:
    container = Container()
    container.stopped.set()
    stream = read_cri_log(str(tmp_path / "0.log"), follow=True, tail=-1,
                          is_running=container.is_running, poll_interval=0.01)
    assert await rest_of(stream) == b""


async def test_missing_file_without_follow_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await read_all(tmp_path / "0.log")


@pytest.mark.parametrize("seed", range(20))
async def test_tail_matches_the_end_of_the_whole_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    monkeypatch.setattr(cri_logs, "TAIL_BLOCK_SIZE", rng.randint(1, 40))
    parts = []
    for _ in range(rng.randint(0, 30)):
        kind = rng.choice(["F", "F", "P", "raw", "empty"])
        if kind == "raw":
            parts.append("raw " * rng.randint(0, 3) + "\n")
        elif kind == "empty":
            parts.append("\n")
        else:
            stream = rng.choice(["stdout", "stderr"])
            parts.append(rec(stream, kind, "w" * rng.randint(kind == "P", 12)))
    text = "".join(parts)
    if rng.random() < 0.3:
        text += "unterminated"
    log = tmp_path / "0.log"
    log.write_text(text)
    lines = (await read_all(log)).splitlines(keepends=True)
    for n in range(len(lines) + 2):
        expected = b"".join(lines[max(0, len(lines) - n):] if n else [])
        assert await read_all(log, tail=n) == expected, n
