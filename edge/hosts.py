"""Requests must name this server: the DNS-rebinding defence of services on a laptop or a LAN.

A web site can point a name of its own at 127.0.0.1 (or at a classroom relay's address) and
then read the service as same-origin. Browsers send the name they used in ``Host``; a request
whose ``Host`` is neither the address the connection came in on nor one of the service's own
names is answered 421 and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")


def host_allowed(
    host: str, server: tuple[str, int] | None, names: Iterable[str], *, same_port: bool = True
) -> bool:
    """Is ``host`` (a Host header) one of ``names`` or the connection's own address?

    With ``same_port`` the port must be the one the connection came in on too (a service on
    this laptop only); without it, a port forwarded to the service (a LAN relay behind a
    counting proxy or a tunnel) still names it: a rebinding page is stopped by its name.
    """
    if server is None:
        return False
    address, port = server[0], server[1]
    allowed = {n.lower() for n in names} | {f"[{address}]" if ":" in address else address}
    value = host.strip().lower()
    if value.startswith("["):  # [v6] or [v6]:port
        name, _, given = value.partition("]")
        name, given = name + "]", given.removeprefix(":")
    else:
        name, _, given = value.partition(":")
    if name not in allowed:
        return False
    if not same_port:
        return True
    return given == str(port) or (not given and port == 80)


class HostGuard:
    """Pure ASGI middleware: 421 for a request that does not name this server."""

    def __init__(
        self, app: ASGIApp, names: Iterable[str] = LOCAL_NAMES, *, same_port: bool = True
    ) -> None:
        self.app = app
        self.names = tuple(names)
        self.same_port = same_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            server = scope.get("server")
            where = tuple(server) if server else None
            if not host_allowed(host, where, self.names, same_port=self.same_port):
                refused = PlainTextResponse(
                    "This service answers only to its own addresses and names.", status_code=421
                )
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)
