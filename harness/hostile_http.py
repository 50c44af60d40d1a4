"""A hostile HTTP server on 127.0.0.1 for client bound tests: huge or endless bodies.

Every request gets the same answer, chosen by ``mode``:

- ``error-small``: 500 with a short JSON error (the baseline);
- ``error-3g``: 500 declaring 3 GiB, then zeros, made lazily as the client reads;
- ``error-endless``: 503, chunked, zeros that never end;
- ``index-3g``: 200 declaring 3 GiB for the release index;
- ``index-endless``: 200, chunked, a release index that never ends.

The server stops sending when the client closes the connection, after ``max_bytes`` or after
``max_seconds``, whichever comes first (so a test against a broken client still ends). It
counts the bytes it managed to send, per connection.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

PIECE = bytes(64 * 1024)
GiB = 1024**3


class HostileServer:
    def __init__(self, mode: str, *, max_bytes: int = 3 * GiB, max_seconds: float = 60.0) -> None:
        self.mode = mode
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.sent: list[int] = []  # body bytes sent, one entry per request
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one answer per request head
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    return
                if b"content-length:" in head.lower():
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    await reader.readexactly(length)
                await self._answer(writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        if mode == "error-small":
            body = b'{"error": "the server is having a bad day"}'
            writer.write(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            self.sent.append(len(body))
            return
        status = {
            "error-3g": b"500 Internal Server Error",
            "error-endless": b"503 Service Unavailable",
            "index-3g": b"200 OK",
            "index-endless": b"200 OK",
        }[mode]
        endless = mode.endswith("endless")
        framing = b"Transfer-Encoding: chunked" if endless else b"Content-Length: %d" % (3 * GiB)
        writer.write(b"HTTP/1.1 " + status + b"\r\n" + framing + b"\r\n\r\n")
        sent = 0
        started = time.monotonic()
        self.sent.append(0)
        try:
            while sent < self.max_bytes and time.monotonic() - started < self.max_seconds:
                piece = PIECE
                if endless:
                    piece = b"%x\r\n" % len(PIECE) + PIECE + b"\r\n"
                writer.write(piece)
                await writer.drain()
                sent += len(PIECE)
                self.sent[-1] = sent
        except ConnectionError:
            pass
        writer.close()
        raise ConnectionResetError  # this connection is done

    def start(self) -> HostileServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextmanager
def hostile_server(mode: str, *, max_seconds: float = 60.0) -> Iterator[HostileServer]:
    server = HostileServer(mode, max_seconds=max_seconds).start()
    try:
        yield server
    finally:
        server.stop()
