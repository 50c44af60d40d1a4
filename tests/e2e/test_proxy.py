"""Tests for the loopback proxy that tests and benchmarks measure the wire with."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from harness.proxy import HttpRequestScanner, LoopbackProxy
else:
    try:
        from harness.proxy import HttpRequestScanner, LoopbackProxy
    except ModuleNotFoundError:
        # Plain `pytest` puts only tests/ on sys.path until the project puts
        # its root there (pytest's `pythonpath` setting or a root conftest.py).
        from support.proxy import HttpRequestScanner, LoopbackProxy

FIXED_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello satchel"
)


def pattern(size: int) -> bytes:
    """Bytes whose position shows, so reordered or lost data cannot go unseen."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # cut connections would otherwise fill the test output

    def do_GET(self) -> None:
        if self.path == "/fixed":
            self.wfile.write(FIXED_RESPONSE)
        elif self.path.startswith("/bytes/"):
            self._reply(pattern(int(self.path.removeprefix("/bytes/"))))
        else:
            self._reply(self.path.encode())

    def do_POST(self) -> None:
        self._reply(self._read_body())

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self) -> bytes:
        # http.server leaves request bodies to the handler, chunked ones too.
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = bytearray()
        while size := int(self.rfile.readline().split(b";")[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        return bytes(body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # resets from cut connections are the point of several tests


@pytest.fixture(scope="module")
def server_port() -> Iterator[int]:
    server = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def proxy(server_port: int) -> Iterator[LoopbackProxy]:
    with LoopbackProxy("127.0.0.1", server_port) as proxy:
        yield proxy


def client_for(proxy: LoopbackProxy) -> httpx.Client:
    # trust_env=False: a proxy set in the environment must not be used.
    return httpx.Client(base_url=proxy.url, trust_env=False, timeout=5.0)


def connect(proxy: LoopbackProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Reads until EOF or reset; a reset still keeps what arrived before it."""
    received = bytearray()
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        received += data
    return bytes(received)


# Counting bytes and requests


def test_counts_exact_bytes_of_a_raw_exchange(proxy: LoopbackProxy) -> None:
    request = b"GET /fixed HTTP/1.1\r\nHost: satchel\r\nConnection: close\r\n\r\n"
    with connect(proxy) as sock:
        sock.sendall(request)
        response = read_until_closed(sock)

    assert response == FIXED_RESPONSE
    stats = proxy.stats()
    assert (stats.bytes_up, stats.bytes_down) == (len(request), len(FIXED_RESPONSE))
    assert stats.connections == 1
    assert stats.requests == 1
    assert stats.request_lines == ("GET /fixed HTTP/1.1",)
    assert stats.cuts == 0


def test_counts_httpx_traffic(proxy: LoopbackProxy) -> None:
    with client_for(proxy) as client:
        assert client.get("/fixed").content == FIXED_RESPONSE.split(b"\r\n\r\n")[1]
        assert proxy.stats().bytes_down == len(FIXED_RESPONSE)
        assert client.get("/bytes/10000").content == pattern(10000)

    stats = proxy.stats()
    assert stats.bytes_down >= len(FIXED_RESPONSE) + 10000
    assert stats.bytes_up > len("GET /bytes/10000 HTTP/1.1\r\n\r\n")


def test_counts_requests_on_one_keep_alive_connection(proxy: LoopbackProxy) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"first chunk;"
        yield b""  # an empty piece must not end the chunked body early
        yield b"second chunk"

    with client_for(proxy) as client:
        for path in ("/a", "/b?x=1", "/c"):
            assert client.get(path).content == path.encode()
        assert client.post("/echo", content=b"x" * 5000).content == b"x" * 5000
        response = client.post("/echo-chunked", content=chunks())
        assert response.request.headers["Transfer-Encoding"] == "chunked"
        assert response.content == b"first chunk;second chunk"

    stats = proxy.stats()
    assert stats.connections == 1
    assert stats.requests == 5
    assert stats.request_lines == (
        "GET /a HTTP/1.1",
        "GET /b?x=1 HTTP/1.1",
        "GET /c HTTP/1.1",
        "POST /echo HTTP/1.1",
        "POST /echo-chunked HTTP/1.1",
    )


def test_counts_a_request_written_one_byte_at_a_time(proxy: LoopbackProxy) -> None:
    request = (
        b"POST /echo HTTP/1.1\r\nHost: satchel\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    )
    with connect(proxy) as sock:
        for i in range(len(request)):
            sock.send(request[i : i + 1])
            time.sleep(0.001)  # lets the proxy read most bytes on their own
        response = read_until_closed(sock)

    assert response.endswith(b"\r\n\r\nabc")
    stats = proxy.stats()
    assert stats.requests == 1
    assert stats.request_lines == ("POST /echo HTTP/1.1",)
    assert stats.bytes_up == len(request)


def test_stops_counting_but_keeps_forwarding_non_http(proxy: LoopbackProxy) -> None:
    garbage = b"\x16\x03\x01\x02\x00 not http\r\n\r\nGET / HTTP/1.1\r\n\r\n"
    with connect(proxy) as sock:
        sock.sendall(garbage)
        response = read_until_closed(sock)

    # http.server answers a request line it cannot read in HTTP/0.9 style.
    assert b"400" in response
    stats = proxy.stats()
    assert stats.bytes_up == len(garbage)
    assert stats.bytes_down == len(response)
    assert stats.requests == 0


def test_reset_zeroes_counters(proxy: LoopbackProxy) -> None:
    with client_for(proxy) as client:
        client.get("/fixed")
    proxy.reset()

    stats = proxy.stats()
    assert (stats.bytes_up, stats.bytes_down, stats.connections) == (0, 0, 0)
    assert (stats.requests, stats.request_lines, stats.cuts) == (0, (), 0)


# The request scanner on its own

PIPELINED = (
    b"\r\nGET /one HTTP/1.1\r\nHost: a\r\n\r\n"
    b"POST /two HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello\r\n\r\n\r\n"
    b"PUT /three HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    b"5;name=value\r\n\r\n\r\n\r\r\n"
    b"0\r\nChecksum: abc\r\n\r\n"
    b"DELETE /four HTTP/1.0\r\nContent-Length: 0\r\n\r\n"
    b"POST /five HTTP/1.1\r\nContent-Length: 10\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
    b"A\r\n0123456789\r\n0\r\n\r\n"
    b"GET /six HTTP/1.1\r\n\r\n"
)
PIPELINED_LINES = [
    "GET /one HTTP/1.1",
    "POST /two HTTP/1.1",
    "PUT /three HTTP/1.1",
    "DELETE /four HTTP/1.0",
    "POST /five HTTP/1.1",
    "GET /six HTTP/1.1",
]


def scan(pieces: list[bytes]) -> tuple[list[str], bool]:
    scanner = HttpRequestScanner()
    found = [line for piece in pieces for line in scanner.feed(piece)]
    return found, scanner.active


def test_scanner_finds_pipelined_requests() -> None:
    assert scan([PIPELINED]) == (PIPELINED_LINES, True)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(PIPELINED)), max_size=40))
def test_scanner_is_indifferent_to_how_the_stream_is_split(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(PIPELINED)]
    pieces = [PIPELINED[a:b] for a, b in itertools.pairwise(bounds)]
    assert scan(pieces) == (PIPELINED_LINES, True)


def test_scanner_reports_a_request_once_its_head_is_complete() -> None:
    scanner = HttpRequestScanner()
    assert scanner.feed(b"POST /up HTTP/1.1\r\nContent-Length: 100\r\n\r") == []
    assert scanner.feed(b"\n" + b"x" * 99) == ["POST /up HTTP/1.1"]
    assert scanner.feed(b"xGET /next HTTP/1.1\r\n\r\n") == ["GET /next HTTP/1.1"]


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(b"\x16\x03\x01\x00\xa5\x01", id="tls"),
        pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", id="http2"),
        pytest.param(b"GET / HTTP/1.1\r\n folded\r\n\r\n", id="obs-fold"),
        pytest.param(b"POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n", id="bad-cl"),
        pytest.param(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", id="te"),
        pytest.param(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", id="size"),
        pytest.param(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc0\r\n\r\n",
            id="chunk-end",
        ),
        pytest.param(b"A" * 70_000, id="endless-head"),
    ],
)
def test_scanner_stops_on_what_is_not_http(stream: bytes) -> None:
    scanner = HttpRequestScanner()
    scanner.feed(stream)
    assert not scanner.active
    assert scanner.feed(b"GET / HTTP/1.1\r\n\r\n") == []


def test_scanner_stops_after_a_protocol_switch() -> None:
    found, active = scan([b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\n\r\n"])
    assert (found, active) == (["GET /ws HTTP/1.1"], False)


# Cutting connections


def test_cut_down_truncates_one_response_and_spares_the_next(
    proxy: LoopbackProxy,
) -> None:
    with client_for(proxy) as client:
        client.get("/fixed")
        before = proxy.stats().bytes_down
        proxy.cut_down_after(1000)
        try:
            response = client.get("/bytes/102400")
        except httpx.TransportError:
            pass
        else:
            assert len(response.content) < 102400
        after_cut = proxy.stats()
        assert after_cut.bytes_down - before == 1000
        assert after_cut.cuts == 1

        assert client.get("/bytes/102400").content == pattern(102400)

    stats = proxy.stats()
    assert stats.connections == 2
    assert stats.cuts == 1


def test_cut_down_delivers_exactly_up_to_the_cut(proxy: LoopbackProxy) -> None:
    proxy.cut_down_after(1000)
    with connect(proxy) as sock:
        sock.sendall(b"GET /bytes/102400 HTTP/1.1\r\nHost: satchel\r\n\r\n")
        received = read_until_closed(sock)

    assert received.startswith(b"HTTP/1.1 200 ")
    assert len(received) == 1000
    assert proxy.stats().bytes_down == 1000


def test_cut_down_delivers_everything_before_the_cut_to_a_slow_reader(
    proxy: LoopbackProxy,
) -> None:
    proxy.cut_down_after(300_000)
    with socket.socket() as sock:
        # A small receive window makes data queue up in the proxy's socket,
        # which the reset would discard unless the proxy waits for it to go.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5.0)
        sock.connect(("127.0.0.1", proxy.port))
        sock.sendall(b"GET /bytes/1000000 HTTP/1.1\r\nHost: satchel\r\n\r\n")
        time.sleep(0.1)
        received = read_until_closed(sock)

    assert len(received) == 300_000
    assert proxy.stats().cuts == 1


def test_cut_fires_on_the_last_byte_of_a_read(proxy: LoopbackProxy) -> None:
    proxy.cut_down_after(len(FIXED_RESPONSE))
    with connect(proxy) as sock:
        sock.sendall(b"GET /fixed HTTP/1.1\r\nHost: satchel\r\n\r\n")
        assert read_until_closed(sock) == FIXED_RESPONSE

    assert proxy.stats().cuts == 1


def test_cut_up_truncates_the_request(proxy: LoopbackProxy) -> None:
    request = b"POST /echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000
    proxy.cut_up_after(20)
    with connect(proxy) as sock:
        sock.sendall(request)
        assert read_until_closed(sock) == b""

    stats = proxy.stats()
    assert (stats.bytes_up, stats.bytes_down, stats.cuts) == (20, 0, 1)
    assert stats.requests == 0  # the head never got through

    with client_for(proxy) as client:
        assert client.post("/echo", content=b"y" * 5000).content == b"y" * 5000
    assert proxy.stats().cuts == 1


def test_disarmed_cut_does_not_fire(proxy: LoopbackProxy) -> None:
    proxy.cut_down_after(10)
    proxy.cut_down_after(None)
    with client_for(proxy) as client:
        assert client.get("/bytes/5000").content == pattern(5000)
    assert proxy.stats().cuts == 0


# Slow links


def test_down_rate_limits_a_download(server_port: int) -> None:
    with (
        LoopbackProxy("127.0.0.1", server_port, down_rate=256 * 1024) as proxy,
        client_for(proxy) as client,
    ):
        start = time.monotonic()
        body = client.get("/bytes/65536").content
        elapsed = time.monotonic() - start

    assert body == pattern(65536)
    assert elapsed >= 0.2  # 64 KiB at 256 KiB/s needs 0.25 s


def test_down_rate_is_shared_by_concurrent_connections(server_port: int) -> None:
    bodies: list[bytes] = []

    def download(client: httpx.Client) -> None:
        bodies.append(client.get("/bytes/49152").content)

    with LoopbackProxy("127.0.0.1", server_port, down_rate=256 * 1024) as proxy:
        # Clients are made before the clock starts: making one takes a while.
        clients = [client_for(proxy) for _ in range(2)]
        threads = [threading.Thread(target=download, args=(c,)) for c in clients]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - start
        for client in clients:
            client.close()

    assert bodies == [pattern(49152)] * 2
    assert proxy.stats().connections == 2
    # Each download alone needs 0.19 s; sharing one link, both need 0.38 s.
    assert elapsed >= 0.3


def test_up_rate_limits_an_upload(server_port: int) -> None:
    with (
        LoopbackProxy("127.0.0.1", server_port, up_rate=64 * 1024) as proxy,
        client_for(proxy) as client,
    ):
        start = time.monotonic()
        echoed = client.post("/echo", content=pattern(16384)).content
        elapsed = time.monotonic() - start

    assert echoed == pattern(16384)
    assert elapsed >= 0.2  # 16 KiB at 64 KiB/s needs 0.25 s


def test_latency_delays_each_direction(server_port: int) -> None:
    with (
        LoopbackProxy("127.0.0.1", server_port, latency=0.1) as proxy,
        client_for(proxy) as client,
    ):
        start = time.monotonic()
        body = client.get("/bytes/200000").content
        elapsed = time.monotonic() - start

    assert body == pattern(200000)
    assert elapsed >= 0.2


# Lifecycle and safety


def test_stop_closes_open_connections(server_port: int) -> None:
    proxy = LoopbackProxy("127.0.0.1", server_port)
    proxy.start()
    sock = connect(proxy)
    try:
        sock.sendall(b"GET /fixed HTTP/1.1\r\nHost: satchel\r\n\r\n")
        assert sock.recv(65536) == FIXED_RESPONSE
        proxy.stop()
        assert read_until_closed(sock) == b""
    finally:
        sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5.0).close()


def test_unreachable_target_closes_the_client() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        free_port = placeholder.getsockname()[1]
    with LoopbackProxy("127.0.0.1", free_port) as proxy:
        try:
            sock = connect(proxy)
        except ConnectionResetError:
            pass  # the reset can beat connect() to reporting success
        else:
            with sock:
                assert read_until_closed(sock) == b""
    assert proxy.stats().connections == 1


@pytest.mark.parametrize(
    ("target", "listen"),
    [("10.0.0.1", "127.0.0.1"), ("example.org", "127.0.0.1"), ("127.0.0.1", "0.0.0.0")],
)
def test_refuses_addresses_off_loopback(target: str, listen: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        LoopbackProxy(target, 80, listen_host=listen)


def test_url_names_the_listening_port(proxy: LoopbackProxy) -> None:
    assert proxy.url == f"http://127.0.0.1:{proxy.port}"
    assert proxy.port != 0
