"""Listening for ``serve``, ``share`` and ``view``: bind first, announce after, then serve.

The socket is bound before a command says where it serves, and handed to uvicorn as it is,
so a port that is already taken fails at once with one line, the exit code of a machine
problem (7) and a hint to pick another ``--port``, instead of a banner followed by uvicorn's
own error; and no other process can take the port between the check and the start.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from satchel.content.errors import MachineError, UsageError


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port), or one line saying what to change."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port (0-65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        raise UsageError(f"cannot listen on {host!r}: not an address of this machine") from None
    family, _type, _proto, _name, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not a live listener's port
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise MachineError(
                f"port {port} on {host} is already in use (another satchel serve, share or view?);"
                " pick a free one with --port"
            ) from None
        if exc.errno == errno.EACCES:
            raise MachineError(
                f"not allowed to listen on port {port}; use --port 1024 or above"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"cannot listen on {host}: not an address of this machine") from None
        raise MachineError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve(app: Any, sock: socket.socket, **config: Any) -> None:
    """Run ``app`` with uvicorn on the socket :func:`bind` returned (uvicorn's options as
    keywords: log_level, log_config, access_log, timeout_keep_alive...)."""
    import uvicorn

    # No "server: uvicorn" on every answer: 17 bytes a response on a 2G link, and it tells a
    # prober which software to aim at.
    config.setdefault("server_header", False)
    server = uvicorn.Server(uvicorn.Config(app, **config))
    with sock:
        server.run(sockets=[sock])
