"""A Modbus RTU slave on a PTY for tests: the pure codecs answer, a thread moves the bytes.

`answer(request) -> reply | None` decides what goes back; `faults` can garble or drop replies
so the link's error paths run over a real serial line, not a mock.
"""

from __future__ import annotations

import os
import pty
import select
import threading
import tty
from collections.abc import Callable

from bankwatch.drivers import modbus_rtu
from bankwatch.drivers.errors import FrameError

__all__ = ["PtyResponder"]


class PtyResponder:
    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.answer = answer
        self.master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self._slave)
        self.requests: list[bytes] = []
        # Per-request fault for the next replies: "garble", "silent" or None.
        self.faults: list[str | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pty-responder", daemon=True)

    def __enter__(self) -> PtyResponder:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self.master)
        os.close(self._slave)

    def _run(self) -> None:
        buf = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                buf = b""  # a silent line ends any partial frame (Modbus t3.5)
                continue
            try:
                buf += os.read(self.master, 4096)
            except OSError:
                continue
            while buf:
                try:
                    n = modbus_rtu.frame_length(buf)
                except FrameError:
                    buf = buf[1:]
                    continue
                if n is None:
                    break
                frame, buf = buf[:n], buf[n:]
                if modbus_rtu.is_request(frame):
                    self._reply(frame)

    def _reply(self, request: bytes) -> None:
        self.requests.append(request)
        fault = self.faults.pop(0) if self.faults else None
        reply = self.answer(request)
        if reply is None or fault == "silent":
            return
        if fault == "garble":
            reply = reply[:3] + bytes([reply[3] ^ 0xFF]) + reply[4:]
        os.write(self.master, reply)
