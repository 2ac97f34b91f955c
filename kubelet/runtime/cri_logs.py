"""Reading container logs in the CRI log format, as containerd's CRI plugin writes them.

Each record is one line of the file::

    2016-10-06T00:17:09.669794202Z stdout F the content
    2016-10-06T00:17:09.669794203Z stderr P half a line that the next record conti
    2016-10-06T00:17:09.669794204Z stderr F nues

Tag ``P`` marks a partial line whose content goes on in the next record; ``F`` a full line,
which ends with a newline. Readers get the content of stdout and stderr interleaved in file
order, as ``kubectl logs`` shows it. A line that is not a record (not four fields, an unknown
stream or tag, a timestamp that is not RFC 3339) is passed on as it is rather than dropped.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO

READ_SIZE = 65536
"""Bytes read from the log file at a time while streaming it forwards."""

TAIL_BLOCK_SIZE = 8192
"""Bytes read at a time while looking backwards from the end of the file for ``tail`` lines."""

_LONG_LINE = 65536
"""A line that has no newline yet after this many bytes is passed on as it arrives instead
of being held until it ends (containerd's max_container_log_line_size may be unlimited)."""

# Timestamp as Go's time.RFC3339Nano writes it (trailing zeros of the fraction dropped), a
# known stream, a known tag with room for ':'-separated extensions (as the kubelet allows),
# then the space before the content. Bounded, so a line's first _HEADER_MAX bytes decide.
_HEADER = re.compile(
    rb"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d))"
    rb" (?P<stream>stdout|stderr)"
    rb" (?P<tag>[PF])(?::[^ \n]{0,128})?"
    rb" "
)
_HEADER_MAX = 256


@dataclass(frozen=True)
class CriRecord:
    """One record of a CRI log file."""

    timestamp: str
    """When the runtime wrote the record, RFC 3339 with nanoseconds, as written in the file."""
    stream: str
    """``stdout`` or ``stderr``."""
    partial: bool
    """True for tag ``P``: the line goes on in the next record, with no newline in between."""
    content: bytes
    """The record's output, without the line's own newline."""


def parse_cri_line(line: bytes) -> CriRecord | None:
    """The record in one line of a CRI log (with or without its newline), or None when the
    line is not a record: fewer than four fields, an unknown stream or tag, or a timestamp
    that is not RFC 3339."""
    if line.endswith(b"\n"):
        line = line[:-1]
    match = _HEADER.match(line)
    if match is None:
        return None
    return CriRecord(
        timestamp=match["ts"].decode("ascii"),
        stream=match["stream"].decode("ascii"),
        partial=match["tag"] == b"P",
        content=line[match.end():],
    )


async def read_cri_log(
    path: str,
    *,
    follow: bool,
    tail: int,
    is_running: Callable[[], Awaitable[bool]],
    poll_interval: float = 0.2,
    timestamps: bool = False,
) -> AsyncGenerator[bytes, None]:
    """The output recorded in the CRI log at ``path``: each record's content, partial records
    joined to the next one, full records ending with a newline.

    ``tail``: -1 for everything, else only the last ``tail`` lines (lines as the reader sees
    them, partial records joined). ``follow``: go on with what is appended, every
    ``poll_interval`` seconds, until ``is_running()`` says the container stopped (asked only
    at the end of the file; the file is read to its end once more after that). A file that
    does not exist yet is waited for while following (and nothing is read if the container
    stops without one); without ``follow`` it is a FileNotFoundError. ``timestamps`` starts
    each line with the timestamp of its first record and a space, as ``kubectl logs
    --timestamps`` does.
    """
    if tail < -1:
        raise ValueError(f"tail: must be -1 (all lines) or a number of lines >= 0, got {tail}")
    f = await _open_log(path, follow, is_running, poll_interval)
    if f is None:
        return
    decoder = _Decoder(timestamps)
    with f:
        if tail >= 0:
            f.seek(_tail_start(f.fileno(), tail, TAIL_BLOCK_SIZE))
        while True:
            data = f.read(READ_SIZE)
            if data:
                out = decoder.feed(data)
                if out:
                    yield out
                continue
            if not follow:
                break
            if not await is_running():
                # It may have written more between our last read and stopping.
                while data := f.read(READ_SIZE):
                    out = decoder.feed(data)
                    if out:
                        yield out
                break
            await asyncio.sleep(poll_interval)
        out = decoder.finish()
        if out:
            yield out


async def _open_log(
    path: str, follow: bool, is_running: Callable[[], Awaitable[bool]], poll_interval: float
) -> BinaryIO | None:
    while True:
        try:
            return open(path, "rb")
        except FileNotFoundError:
            if not follow:
                raise
        if not await is_running():
            try:
                return open(path, "rb")  # created just before it stopped
            except FileNotFoundError:
                return None
        await asyncio.sleep(poll_interval)


def _ends_output_line(head: bytes) -> bool:
    """Whether the file line starting with ``head`` ends a line of output: a full record, or
    a line that is not a record (passed on with its newline)."""
    match = _HEADER.match(head)
    return match is None or match["tag"] == b"F"


def _tail_start(fd: int, lines: int, block_size: int) -> int:
    """Offset of the first record of the last ``lines`` output lines of the log open as
    ``fd``, found by reading backwards from its end ``block_size`` bytes at a time.

    An output line ends with a full record (or a line that is not a record); partial records
    before it belong to it. Partial records at the very end count as a line still growing.
    """
    end = os.fstat(fd).st_size
    if lines == 0 or end == 0:
        return end
    # The file's final newline ends its last line; it does not start another.
    line_end = end - 1 if os.pread(fd, 1, end - 1) == b"\n" else end
    is_last = True
    found = 0
    pos = line_end
    while True:
        block_start = max(0, pos - block_size)
        block = os.pread(fd, pos - block_start, block_start) if pos > 0 else b""
        idx = len(block)
        while True:
            idx = block.rfind(b"\n", 0, idx)
            # The file line [start, line_end) is complete once its start is known.
            start = block_start + idx + 1 if idx >= 0 else 0
            if idx >= 0 or block_start == 0:
                if not is_last:
                    head_end = min(line_end, start + _HEADER_MAX)
                    if head_end <= block_start + len(block):
                        head = block[start - block_start:head_end - block_start]
                    else:
                        head = os.pread(fd, head_end - start, start)
                    # Lines after a line that ends output are the next output line(s).
                    if _ends_output_line(head):
                        found += 1
                        if found == lines:
                            return line_end + 1
                is_last = False
                line_end = start - 1
            if idx < 0:
                break
        if block_start == 0:
            return 0
        pos = block_start


class _Decoder:
    """Turns the bytes of a CRI log, fed in pieces of any size, into the output they record."""

    def __init__(self, timestamps: bool) -> None:
        self._timestamps = timestamps
        self._pending = b""
        """The beginning of a line whose newline has not been read yet."""
        self._open: bytes | None = None
        """Tag (b"P", b"F") or b"" (not a record) of a long line already partly passed on."""
        self._at_line_start = True

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        start = 0
        if self._open is not None:
            newline = data.find(b"\n")
            if newline < 0:
                return data
            out += data[:newline]
            self._close_open(out, terminated=True)
            start = newline + 1
        if self._pending:
            data = self._pending + data[start:]
            start = 0
            self._pending = b""
        while (newline := data.find(b"\n", start)) >= 0:
            self._line(data[start:newline], out, terminated=True)
            start = newline + 1
        rest = data[start:]
        if len(rest) >= _LONG_LINE:
            self._start_open(rest, out)
        else:
            self._pending = rest
        return bytes(out)

    def finish(self) -> bytes:
        """What is left when the file ends without a newline after its last line."""
        out = bytearray()
        if self._open is not None:
            self._close_open(out, terminated=False)
        elif self._pending:
            self._line(self._pending, out, terminated=False)
            self._pending = b""
        return bytes(out)

    def _line(self, line: bytes, out: bytearray, terminated: bool) -> None:
        record = parse_cri_line(line)
        if record is None:
            out += line
            if terminated:
                out += b"\n"
            self._at_line_start = True
            return
        if self._timestamps and self._at_line_start:
            out += record.timestamp.encode("ascii") + b" "
        out += record.content
        if not record.partial:
            out += b"\n"
        self._at_line_start = not record.partial

    def _start_open(self, head: bytes, out: bytearray) -> None:
        match = _HEADER.match(head)
        if match is None:
            out += head
            self._open = b""
            return
        if self._timestamps and self._at_line_start:
            out += match["ts"] + b" "
        out += head[match.end():]
        self._open = match["tag"]

    def _close_open(self, out: bytearray, terminated: bool) -> None:
        if self._open == b"P":
            self._at_line_start = False
        else:
            if terminated or self._open == b"F":
                out += b"\n"
            self._at_line_start = True
        self._open = None
