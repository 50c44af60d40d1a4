"""``satchel share``: a laptop's store served read-only to the classroom, found by mDNS.

One route writes: ``POST /v1/records`` keeps the learning records laptops hand the relay (sealed:
the relay cannot read them) in ``STORE/inbox``, to forward on the relay's next sync, and hands
each laptop the receipt the relay holds for it.

The HTTP side is the server's own read router (index, manifests, chunks with Range,
ready-made and dynamic packs) over the store, so ``satchel sync --server http://PEER`` needs
nothing new; the client verifies everything against the publisher's key, never trusting the
peer. The store may be synced while it is shared: a sync writes objects before it switches a
ref, and a relay reads refs and manifests afresh for every request.

With ``viewer`` (``satchel share --viewer``) the relay is also a classroom hub: the offline
viewer (:mod:`satchel.clients.view`) is mounted at ``/`` for any browser on the LAN (phones,
borrowed devices), and what its learners do is recorded in the hub's own outbox, to travel
back like a laptop's. Still nothing of the write side of the protocol is offered.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from satchel.edge.hosts import LOCAL_NAMES, HostGuard
from satchel.edge.http import install_error_handlers
from satchel.edge.read_routes import read_router
from satchel.edge.records_route import records_router
from satchel.sync.local import LocalStore
from satchel.sync.records_exchange import InboxSink
from satchel.sync.relay import StoreSource

SERVICE_TYPE = "_satchel._tcp.local."
DEFAULT_SHARE_PORT = 8001


def create_share_app(
    store: LocalStore, *, viewer: bool = False, names: tuple[str, ...] = ()
) -> FastAPI:
    """The relay; with ``viewer``, a hub. ``names``: more names it answers to (the one people
    type, when it is not this machine's host name)."""
    source = StoreSource(store)
    app = FastAPI(
        title="Satchel relay",
        summary="A laptop's store, served read-only with the server's protocol.",
        version="1",
    )
    install_error_handlers(app)
    # DNS rebinding: answer only to this laptop's addresses (the one a connection came in on)
    # and names (its host name, and that name on mDNS, as `satchel peers` shows it).
    # A hub's viewer is guarded by the same rule: a rebinding page is stopped by its name.
    own = (*LOCAL_NAMES, *own_names(), *(n.lower() for n in names))
    app.add_middleware(HostGuard, names=own, same_port=False)
    app.include_router(read_router(source))
    app.include_router(records_router(InboxSink(store)))  # records to forward on its next sync

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "role": "hub" if viewer else "relay"}

    @app.get("/v1/catalog")
    def catalog() -> dict[str, object]:
        return {"bundles": source.catalog(), "relay": True}

    if viewer:
        from .view import create_app as create_viewer

        # Last: the protocol's routes above answer first, the viewer everything else.
        app.mount("/", create_viewer(store, hub=True))
    return app


def own_names() -> tuple[str, ...]:
    name = socket.gethostname().lower()
    return (name, f"{name}.local") if name else ()


# -- mDNS --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    url: str
    publisher: str  # fingerprint of the key the relay's store trusts (a hint, not trust)
    bundles: str  # "bundle/locale vN, ..." as the relay announced it


def _addresses(host: str) -> list[str]:
    """The IPv4 addresses to announce: the one bound, or every non-loopback one."""
    if host not in ("0.0.0.0", ""):
        return [host]
    import ifaddr  # zeroconf's own dependency for listing interfaces

    found = [
        str(ip.ip)
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if isinstance(ip.ip, str) and not ip.ip.startswith("127.")
    ]
    return found or ["127.0.0.1"]


@contextmanager
def announce(store: LocalStore, host: str, port: int, name: str | None = None) -> Iterator[str]:
    """Announce the relay on the LAN with mDNS for as long as the block runs."""
    from zeroconf import ServiceInfo, Zeroconf

    source = StoreSource(store)
    key = store.pinned_key()
    offered = ", ".join(f"{e['bundle']}/{e['locale']} v{e['version']}" for e in source.offered())
    label = name or f"satchel on {socket.gethostname()}"
    addresses = _addresses(host)
    info = ServiceInfo(
        SERVICE_TYPE,
        f"{label}.{SERVICE_TYPE}",
        parsed_addresses=addresses,
        port=port,
        properties={
            "proto": "1",
            "publisher": key.fingerprint if key else "",
            "bundles": offered[:200],
        },
        server=f"{socket.gethostname()}.local.",
    )
    zc = Zeroconf(interfaces=addresses)
    try:
        zc.register_service(info, allow_name_change=True)
        yield info.name
    finally:
        zc.unregister_service(info)
        zc.close()


def find_peers(timeout: float) -> list[Peer]:
    """Relays announcing themselves on the LAN, found within ``timeout`` seconds."""
    import time

    from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf

    names: set[str] = set()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is not ServiceStateChange.Removed:
            names.add(name)

    zc = Zeroconf()
    try:
        ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change])
        time.sleep(timeout)
        peers = []
        for name in sorted(names):
            info = zc.get_service_info(SERVICE_TYPE, name, timeout=int(timeout * 1000) or 1000)
            if info is None or not info.parsed_addresses():
                continue
            props = {
                k.decode(): (v or b"").decode("utf-8", "replace")
                for k, v in info.properties.items()
            }
            address = info.parsed_addresses()[0]
            host = f"[{address}]" if ":" in address else address
            peers.append(
                Peer(
                    name=name.removesuffix("." + SERVICE_TYPE),
                    url=f"http://{host}:{info.port}",
                    publisher=props.get("publisher", ""),
                    bundles=props.get("bundles", ""),
                )
            )
        return peers
    finally:
        zc.close()
