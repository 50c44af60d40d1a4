"""A loopback TCP proxy that measures, slows down and cuts HTTP/1.1 traffic.

Tests and benchmarks put :class:`LoopbackProxy` between an HTTP client and a
server, both on this machine, to check protocol promises that only show on
the wire: how many bytes and how many request/response turns a sync costs,
what happens when the link drops at an exact byte, and how a flow behaves on a
slow, high-latency link.

    with LoopbackProxy("127.0.0.1", server_port, latency=0.3) as proxy:
        client = httpx.Client(base_url=proxy.url)
        ...
        assert proxy.stats().requests == 3

The proxy runs its own asyncio loop in a daemon thread so that synchronous
tests can drive it; every public method may be called from any thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import ipaddress
import re
import socket
import struct
import sys
import threading
import types
from typing import Final, Self

__all__ = ["HttpRequestScanner", "LoopbackProxy", "ProxyStats"]

_READ_SIZE: Final = 64 * 1024
# Bounds the data held between reading and delivering, per direction and
# connection, the way a TCP window would: without it a fast sender behind a
# slow or high-latency link would make the proxy buffer without limit.
_IN_FLIGHT_LIMIT: Final = 4 * 1024 * 1024
# A rate-limited link sends in slices this long so that delivery is smooth and
# two connections sharing the link interleave instead of taking turns.
_PACING_INTERVAL: Final = 0.01
# Time a cut connection gets to hand its last bytes to the peer before the
# reset, which would otherwise discard data still queued in the kernel.
_CUT_FLUSH_TIMEOUT: Final = 1.0

_MAX_HEAD: Final = 64 * 1024
_MAX_LINE: Final = 8 * 1024
_MAX_TRAILERS: Final = 64 * 1024
_TCHAR: Final = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_REQUEST_LINE: Final = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/1\.[0-9]")
_HEADER: Final = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*?)[ \t]*")
_CHUNK_SIZE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")


@dataclasses.dataclass(frozen=True, slots=True)
class ProxyStats:
    """Counters since the proxy started or was last :meth:`~LoopbackProxy.reset`.

    ``bytes_up`` and ``bytes_down`` count payload bytes forwarded client to
    server and server to client; ``connections`` counts accepted client
    connections; ``requests`` counts HTTP requests whose head was forwarded in
    full, and ``request_lines`` lists their request lines in order.
    """

    bytes_up: int
    bytes_down: int
    connections: int
    requests: int
    request_lines: tuple[str, ...]
    cuts: int


class _ScanState(enum.Enum):
    HEAD = enum.auto()
    BODY = enum.auto()
    CHUNK_SIZE = enum.auto()
    CHUNK_DATA = enum.auto()
    CHUNK_END = enum.auto()
    TRAILERS = enum.auto()
    STOPPED = enum.auto()


class HttpRequestScanner:
    """Finds the HTTP/1.x requests in one client-to-server byte stream.

    Push bytes as they are seen with :meth:`feed`, split anywhere; it returns
    the request line of each request whose head (request line and header
    fields) completed. Bodies are skipped using ``Content-Length`` or chunked
    framing, so keep-alive and pipelined requests are all found. A request is
    reported when its head completes rather than its body, so that an upload
    cut mid-body still counts as the exchange it started.

    On anything that is not HTTP/1.x the scanner stops for good (:attr:`active`
    turns false): guessing where the next request starts would miscount. It
    also stops after ``CONNECT`` or a request with ``Upgrade``, since it cannot
    see whether the server switched protocols.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = _ScanState.HEAD
        self._remaining = 0
        self._trailer_bytes = 0
        self._stop_after_message = False

    @property
    def active(self) -> bool:
        return self._state is not _ScanState.STOPPED

    def feed(self, data: bytes) -> list[str]:
        if self._state is _ScanState.STOPPED:
            return []
        self._buf += data
        found: list[str] = []
        while self._step(found):
            pass
        return found

    def _stop(self) -> bool:
        self._state = _ScanState.STOPPED
        self._buf.clear()
        return False

    def _end_message(self) -> None:
        if self._stop_after_message:
            self._stop()
        else:
            self._state = _ScanState.HEAD

    def _step(self, found: list[str]) -> bool:
        """Advances by one parsing step; returns whether it made progress."""
        buf = self._buf
        state = self._state
        if state is _ScanState.HEAD:
            return self._step_head(found)
        if state is _ScanState.BODY or state is _ScanState.CHUNK_DATA:
            if not buf:
                return False
            taken = min(self._remaining, len(buf))
            del buf[:taken]
            self._remaining -= taken
            if self._remaining == 0:
                if state is _ScanState.BODY:
                    self._end_message()
                else:
                    self._state = _ScanState.CHUNK_END
            return True
        if state is _ScanState.CHUNK_END:
            if len(buf) < 2:
                return False
            if buf[:2] != b"\r\n":
                return self._stop()
            del buf[:2]
            self._state = _ScanState.CHUNK_SIZE
            return True
        if state is _ScanState.CHUNK_SIZE:
            line = self._take_line(_MAX_LINE)
            if line is None:
                return False
            match = _CHUNK_SIZE.fullmatch(line)
            if match is None:
                return self._stop()
            size = int(match.group(1), 16)
            if size == 0:
                self._state = _ScanState.TRAILERS
                self._trailer_bytes = 0
            else:
                self._remaining = size
                self._state = _ScanState.CHUNK_DATA
            return True
        if state is _ScanState.TRAILERS:
            line = self._take_line(_MAX_LINE)
            if line is None:
                return False
            if not line:
                self._end_message()
                return self._state is not _ScanState.STOPPED
            self._trailer_bytes += len(line) + 2
            if _HEADER.fullmatch(line) is None or self._trailer_bytes > _MAX_TRAILERS:
                return self._stop()
            return True
        return False

    def _take_line(self, limit: int) -> bytes | None:
        """Removes and returns one CRLF-terminated line, or None if incomplete.

        Stops the scanner when no line ends within ``limit`` bytes.
        """
        end = self._buf.find(b"\r\n", 0, limit + 2)
        if end < 0:
            if len(self._buf) > limit + 1:
                self._stop()
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def _step_head(self, found: list[str]) -> bool:
        buf = self._buf
        # RFC 9112 section 2.2: a server ignores empty lines before a request.
        while buf[:2] == b"\r\n":
            del buf[:2]
        if not buf or buf == b"\r":
            return False
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD or not _plausible_request_start(buf):
                return self._stop()
            return False
        if end > _MAX_HEAD:
            return self._stop()
        lines = bytes(buf[:end]).split(b"\r\n")
        del buf[: end + 4]
        request_line = _REQUEST_LINE.fullmatch(lines[0])
        if request_line is None:
            return self._stop()
        lengths: set[bytes] = set()
        codings: list[bytes] = []
        upgrade = False
        for field in lines[1:]:
            header = _HEADER.fullmatch(field)
            if header is None:
                # Also rejects obsolete line folding, which RFC 9112 lets a
                # server refuse; following it is not worth the ambiguity.
                return self._stop()
            name = header.group(1).lower()
            value = header.group(2)
            if name == b"content-length":
                lengths.update(v.strip() for v in value.split(b","))
            elif name == b"transfer-encoding":
                codings.extend(v.strip().lower() for v in value.split(b","))
            elif name == b"upgrade":
                upgrade = True
        if codings:
            # Transfer-Encoding overrides Content-Length (RFC 9112 6.3); a
            # request whose final coding is not chunked has no knowable end.
            if codings[-1] != b"chunked":
                return self._stop()
            self._state = _ScanState.CHUNK_SIZE
        elif lengths:
            if len(lengths) != 1:
                return self._stop()
            (length,) = lengths
            if not length.isdigit() or len(length) > 18:
                return self._stop()
            self._remaining = int(length)
            self._state = _ScanState.BODY if self._remaining else _ScanState.HEAD
        found.append(lines[0].decode("ascii"))
        self._stop_after_message = upgrade or request_line.group(1) == b"CONNECT"
        if self._state is _ScanState.HEAD:
            self._end_message()
        return self._state is not _ScanState.STOPPED


def _plausible_request_start(buf: bytearray) -> bool:
    """Tells early whether an incomplete head can still become a request.

    Lets the scanner give up on TLS or binary protocols at once instead of
    after buffering a maximum-size head.
    """
    space = buf.find(b" ", 0, 33)
    method = buf[:space] if space >= 0 else buf[:33]
    if space < 0 and len(buf) > 32:
        return False
    return all(byte in _TCHAR for byte in method)


class _Direction(enum.IntEnum):
    UP = 0
    DOWN = 1


class _Marker(enum.Enum):
    EOF = enum.auto()
    RESET = enum.auto()


_Item = tuple[float, bytes | _Marker]


class _InFlight:
    """An ordered queue of timestamped data, bounded in bytes."""

    def __init__(self) -> None:
        self._items: collections.deque[_Item] = collections.deque()
        self._bytes = 0
        self._changed = asyncio.Condition()

    async def put(self, item: _Item) -> None:
        async with self._changed:
            # Admit one item even if it alone exceeds the limit.
            await self._changed.wait_for(lambda: self._bytes < _IN_FLIGHT_LIMIT)
            self._items.append(item)
            self._bytes += _size(item)
            self._changed.notify_all()

    async def get(self) -> _Item:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items))
            item = self._items.popleft()
            self._bytes -= _size(item)
            self._changed.notify_all()
            return item


def _size(item: _Item) -> int:
    payload = item[1]
    return len(payload) if isinstance(payload, bytes) else 0


class _Link:
    """Serialises transmissions in one direction at ``rate`` bytes per second.

    Each transmission books the link from when it is free, so concurrent
    connections share the rate as they would share one physical link.
    """

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._free_at = 0.0

    def slice_size(self) -> int:
        if self.rate is None:
            return _READ_SIZE
        return max(1, min(_READ_SIZE, int(self.rate * _PACING_INTERVAL)))

    async def transmit(self, size: int) -> None:
        if self.rate is None:
            return
        now = asyncio.get_running_loop().time()
        # Booking from the previous booking, not from when the sleep below
        # wakes, keeps oversleeping from lowering the average rate.
        self._free_at = max(now, self._free_at) + size / self.rate
        await asyncio.sleep(self._free_at - now)


class _Connection:
    """One proxied client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.writers: dict[_Direction, asyncio.StreamWriter] = {
            _Direction.UP: upstream,
            _Direction.DOWN: client,
        }
        self.scanner = HttpRequestScanner()
        self.pumps: list[asyncio.Task[None]] = []
        self.aborted = False

    def stop_pumps(self) -> None:
        current = asyncio.current_task()
        for task in self.pumps:
            if task is not current:
                task.cancel()

    def reset(self) -> None:
        self.aborted = True
        self.stop_pumps()
        for writer in self.writers.values():
            _reset(writer)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Closes abruptly: the peer gets a TCP reset rather than an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _unsent_kernel_bytes(writer: asyncio.StreamWriter) -> int:
    """Bytes the kernel still holds unacknowledged for this socket, 0 if unknown."""
    sock = writer.get_extra_info("socket")
    if sys.platform != "linux" or sock is None:
        return 0
    import fcntl
    import termios

    try:
        out = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    unsent: int = struct.unpack("i", out)[0]
    return unsent


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoopbackProxy:
    """Forwards TCP connections from a loopback port to a loopback target.

    ``up_rate`` and ``down_rate`` cap each direction at that many bytes per
    second, shared by all connections as on one link; ``latency`` delays every
    piece of data by that many seconds in each direction, so a request and its
    response cost at least twice ``latency``.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        down_rate: float | None = None,
        up_rate: float | None = None,
        latency: float = 0.0,
    ) -> None:
        for host in (target_host, listen_host):
            if not _is_loopback(host):
                raise ValueError(f"{host!r} is not a loopback address")
        for rate in (down_rate, up_rate):
            if rate is not None and rate <= 0:
                raise ValueError("rates must be positive or None")
        if latency < 0:
            raise ValueError("latency must not be negative")
        self._target = (target_host, target_port)
        # Binding "localhost" could listen on both 127.0.0.1 and ::1, each
        # on a different port when the OS picks; one address keeps one port.
        self._listen_host = "127.0.0.1" if listen_host == "localhost" else listen_host
        self._latency = latency
        self._links = {_Direction.UP: _Link(up_rate), _Direction.DOWN: _Link(down_rate)}

        # Guards the counters and cut settings below, which both the loop
        # thread and callers' threads touch.
        self._lock = threading.Lock()
        self._bytes = {_Direction.UP: 0, _Direction.DOWN: 0}
        self._connections = 0
        self._request_lines: list[str] = []
        self._cuts = 0
        self._cut_after: dict[_Direction, int | None] = {
            _Direction.UP: None,
            _Direction.DOWN: None,
        }

        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._port: int | None = None
        self._startup_error: OSError | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    # Lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Starts the proxy and returns once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("a proxy can be started only once")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="loopback-proxy", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._port is None:
            self._thread.join()
            raise RuntimeError("proxy failed to start") from self._startup_error

    def stop(self) -> None:
        """Stops listening, resets every open connection and joins the thread."""
        thread, loop, stop_requested = self._thread, self._loop, self._stop_requested
        if thread is None:
            return
        if loop is not None and stop_requested is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop_requested.set)
        thread.join()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("proxy not started")
        return self._port

    @property
    def url(self) -> str:
        host = self._listen_host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    # Counters and cuts

    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(
                bytes_up=self._bytes[_Direction.UP],
                bytes_down=self._bytes[_Direction.DOWN],
                connections=self._connections,
                requests=len(self._request_lines),
                request_lines=tuple(self._request_lines),
                cuts=self._cuts,
            )

    def reset(self) -> None:
        """Zeroes the counters; armed cuts stay armed."""
        with self._lock:
            self._bytes = {_Direction.UP: 0, _Direction.DOWN: 0}
            self._connections = 0
            self._request_lines = []
            self._cuts = 0

    def cut_down_after(self, n: int | None) -> None:
        """Resets the connection that forwards the ``n``-th server-to-client
        byte from now, right after that byte; ``None`` disarms.

        One-shot: the cut disarms itself once it fires.
        """
        self._arm(_Direction.DOWN, n)

    def cut_up_after(self, n: int | None) -> None:
        """Like :meth:`cut_down_after`, for client-to-server bytes."""
        self._arm(_Direction.UP, n)

    def _arm(self, direction: _Direction, n: int | None) -> None:
        if n is not None and n < 0:
            raise ValueError("n must not be negative")
        with self._lock:
            self._cut_after[direction] = n

    def _account(self, direction: _Direction, size: int) -> tuple[int, bool]:
        """Counts bytes about to be forwarded, trimmed to an armed cut.

        Returns how many of ``size`` bytes to forward and whether to cut after.
        """
        with self._lock:
            limit = self._cut_after[direction]
            cut = limit is not None and size >= limit
            if limit is not None:
                if cut:
                    size = limit
                    self._cut_after[direction] = None
                    self._cuts += 1
                else:
                    self._cut_after[direction] = limit - size
            self._bytes[direction] += size
            return size, cut

    # Event loop side

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            # Releases start() even if serving failed before it was ready.
            ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stop_requested = asyncio.Event()
        try:
            server = await asyncio.start_server(self._on_client, self._listen_host, 0)
        except OSError as error:
            self._startup_error = error
            return
        self._port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            await self._stop_requested.wait()
        finally:
            server.close()
            handlers = list(self._handlers)
            for handler in handlers:
                handler.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            # Since Python 3.12 this also waits for closed connections to
            # flush, which a client that stopped reading would never allow.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def _on_client(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        with self._lock:
            self._connections += 1
        try:
            await self._proxy(client_reader, client_writer)
        except asyncio.CancelledError:
            _reset(client_writer)
        finally:
            self._handlers.discard(handler)

    async def _proxy(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            _reset(client_writer)
            return
        conn = _Connection(client_writer, upstream_writer)
        conn.pumps = [
            asyncio.create_task(self._pump(conn, _Direction.UP, client_reader)),
            asyncio.create_task(self._pump(conn, _Direction.DOWN, upstream_reader)),
        ]
        try:
            await asyncio.gather(*conn.pumps, return_exceptions=True)
        except asyncio.CancelledError:
            conn.reset()
            raise
        if not conn.aborted:
            conn.close()

    async def _pump(
        self, conn: _Connection, direction: _Direction, reader: asyncio.StreamReader
    ) -> None:
        in_flight = _InFlight()
        receiver = asyncio.create_task(self._receive(direction, reader, in_flight))
        try:
            await self._deliver(conn, direction, in_flight)
        except (ConnectionError, OSError):
            conn.reset()
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver

    async def _receive(
        self, direction: _Direction, reader: asyncio.StreamReader, in_flight: _InFlight
    ) -> None:
        """Reads one side and passes the data through the link, in order."""
        loop = asyncio.get_running_loop()
        link = self._links[direction]
        while True:
            try:
                data = await reader.read(_READ_SIZE)
            except (ConnectionError, OSError):
                await in_flight.put((loop.time(), _Marker.RESET))
                return
            if not data:
                await in_flight.put((loop.time(), _Marker.EOF))
                return
            step = link.slice_size()
            for start in range(0, len(data), step):
                piece = data[start : start + step]
                await link.transmit(len(piece))
                await in_flight.put((loop.time(), piece))

    async def _deliver(
        self, conn: _Connection, direction: _Direction, in_flight: _InFlight
    ) -> None:
        """Writes data to the other side once its latency has elapsed."""
        loop = asyncio.get_running_loop()
        writer = conn.writers[direction]
        while True:
            sent_at, payload = await in_flight.get()
            # Waiting per piece for its own due time, rather than sleeping a
            # full latency per piece, keeps pieces in flight concurrently.
            delay = sent_at + self._latency - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if payload is _Marker.RESET:
                conn.reset()
                return
            if payload is _Marker.EOF:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            assert isinstance(payload, bytes)
            size, cut = self._account(direction, len(payload))
            if size:
                data = payload[:size]
                if direction is _Direction.UP and conn.scanner.active:
                    found = conn.scanner.feed(data)
                    if found:
                        with self._lock:
                            self._request_lines.extend(found)
                writer.write(data)
            if cut:
                await self._cut(conn, writer)
                return
            await writer.drain()

    async def _cut(self, conn: _Connection, writer: asyncio.StreamWriter) -> None:
        """Delivers what was written to ``writer``, then resets the connection."""
        conn.stop_pumps()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CUT_FLUSH_TIMEOUT
        # A high-water mark of 0 makes drain() wait until asyncio has handed
        # every byte to the kernel, not just until the buffer is small; this
        # is all the flushing there is where the kernel queue cannot be read.
        writer.transport.set_write_buffer_limits(high=0)
        with contextlib.suppress(ConnectionError, OSError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.drain(), _CUT_FLUSH_TIMEOUT)
        # A reset discards what the kernel has not yet sent, so wait for the
        # peer to take it (a peer that stops reading gets cut regardless).
        while _unsent_kernel_bytes(writer) and loop.time() < deadline:
            await asyncio.sleep(0.001)
        conn.reset()
