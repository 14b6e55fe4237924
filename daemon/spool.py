"""A bounded, ordered spool on disk for InfluxDB points that could not be written yet.

Lines of line protocol are appended to segment files (`seg-000000001.lp`, ...) in a folder;
the oldest segment is read back first, so points go out in the order they came in. Built for a
Pi's SD card:

- appends are buffered and flushed to the OS once per batch; `fsync` runs at most once per
  `fsync_s` and when a segment is closed (a crash of the process loses nothing; a power cut at
  most the last `fsync_s` of points);
- the size is bounded: when an append would pass `max_bytes`, whole segments are dropped, the
  oldest first (a segment is at most 1/16 of the limit, so at most that much goes at once);
  every dropped line is counted in `dropped` and logged;
- after a restart the segments left are picked up again; a line cut short by a power cut is
  skipped and logged. Lines read back but not yet confirmed when the process stopped are sent
  again, which InfluxDB absorbs (a point with the same series and time overwrites itself).

Blocking file I/O: the InfluxDB sink calls it from a worker thread, never on the event loop.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["Spool"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^seg-(\d{9})\.lp$")


@dataclass(slots=True)
class _Segment:
    number: int
    path: Path
    size: int
    lines: int


class Spool:
    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        fsync_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = max(1024, max_bytes // 16)
        self.fsync_s = fsync_s
        self._clock = clock
        self.dropped = 0  # lines dropped to stay under max_bytes, since this object was made
        self.fsyncs = 0
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._segments: deque[_Segment] = deque()
        for path in sorted(directory.iterdir()):
            m = _NAME.match(path.name)
            if m:
                data = path.read_bytes()
                self._segments.append(_Segment(int(m.group(1)), path, len(data), data.count(b"\n")))
        self._bytes = sum(s.size for s in self._segments)
        self._active: IO[bytes] | None = None  # the segment being appended to
        self._head: list[str] | None = None  # the oldest segment's lines, once read
        self._offset = 0  # lines of the head already written to InfluxDB
        self._last_fsync = clock()
        self._dirty = False

    # --- figures -----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Lines waiting to be written."""
        return sum(s.lines for s in self._segments) - self._offset

    @property
    def size_bytes(self) -> int:
        return self._bytes

    # --- writing -----------------------------------------------------------------------------

    def append(self, lines: list[str]) -> int:
        """Add lines at the end; returns how many old lines were dropped to make room."""
        if not lines:
            return 0
        data = "".join(line + "\n" for line in lines).encode()
        dropped = 0
        if len(data) > self.max_bytes:
            # More than the whole spool: only the newest part fits.
            keep = len(lines)
            while keep and len(data) > self.max_bytes:
                keep -= max(1, keep // 8)
                data = "".join(line + "\n" for line in lines[len(lines) - keep :]).encode()
            dropped += len(lines) - keep
            lines = lines[len(lines) - keep :]
            if not lines:
                self._count_dropped(dropped)
                return dropped
        while self._segments and self._bytes + len(data) > self.max_bytes:
            dropped += self._drop_oldest()
        if self._active is None or self._segments[-1].size >= self.segment_bytes:
            self._open_new()
        assert self._active is not None
        self._active.write(data)
        self._active.flush()  # to the OS: survives a crash of this process
        seg = self._segments[-1]
        seg.size += len(data)
        seg.lines += len(lines)
        self._bytes += len(data)
        self._dirty = True
        if self._clock() - self._last_fsync >= self.fsync_s:
            self.sync()
        self._count_dropped(dropped)
        return dropped

    def _count_dropped(self, n: int) -> None:
        if n:
            self.dropped += n
            log.warning(
                "influxdb spool full (%d bytes in %s): dropped the %d oldest point(s) "
                "(%d dropped so far)",
                self.max_bytes,
                self.directory,
                n,
                self.dropped,
            )

    def _open_new(self) -> None:
        self._close_active()
        number = self._segments[-1].number + 1 if self._segments else 1
        path = self.directory / f"seg-{number:09d}.lp"
        self._active = path.open("ab")
        self._segments.append(_Segment(number, path, 0, 0))

    def _close_active(self) -> None:
        if self._active is not None:
            if self._dirty:
                self._fsync(self._active)
            self._active.close()
            self._active = None

    def _fsync(self, f: IO[bytes]) -> None:
        f.flush()
        os.fsync(f.fileno())
        self.fsyncs += 1
        self._last_fsync = self._clock()
        self._dirty = False

    def _drop_oldest(self) -> int:
        seg = self._segments[0]
        if self._active is not None and len(self._segments) == 1:
            self._active.close()
            self._active = None
        self._segments.popleft()
        seg.path.unlink(missing_ok=True)
        self._bytes -= seg.size
        lost = seg.lines - self._offset
        self._head = None
        self._offset = 0
        return lost

    def sync(self) -> None:
        if self._active is not None and self._dirty:
            self._fsync(self._active)

    def close(self) -> None:
        self._close_active()

    # --- reading back ------------------------------------------------------------------------

    def peek(self, n: int) -> list[str]:
        """Up to `n` of the oldest lines, without removing them."""
        if not self._segments:
            return []
        if self._head is None:
            seg = self._segments[0]
            if len(self._segments) == 1:
                # Reading the segment being written: close it, new lines go to a new one.
                self._close_active()
            data = seg.path.read_bytes()
            text = data.decode("utf-8", errors="replace")
            lines = text.split("\n")
            tail = lines.pop()  # "" when the file ends in a newline
            if tail:
                log.warning(
                    "influxdb spool %s: skipping a line cut short (%d bytes), probably by a "
                    "power cut",
                    seg.path,
                    len(tail.encode()),
                )
            seg.lines = len(lines)
            self._head = lines
        return self._head[self._offset : self._offset + n]

    def consume(self, n: int) -> None:
        """The oldest `n` lines (as returned by `peek`) are written: forget them."""
        if self._head is None:
            raise RuntimeError("consume() without peek()")
        self._offset += n
        if self._offset >= len(self._head):
            seg = self._segments.popleft()
            seg.path.unlink(missing_ok=True)
            self._bytes -= seg.size
            self._head = None
            self._offset = 0
