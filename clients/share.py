"""``satchel share``: a laptop's store served read-only to the classroom, found by mDNS.

The HTTP side speaks the server's read protocol (index, manifests, chunks with Range,
ready-made and dynamic packs), so ``satchel sync --server http://PEER`` needs nothing new;
the client verifies everything against the publisher's key, never trusting the peer. The
store may be synced while it is shared: a sync writes objects before it switches a ref, and
a relay reads refs and manifests afresh for every request.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from satchel.content.errors import FormatError, SatchelError
from satchel.server.app import IMMUTABLE, MAX_PACK_REQUEST, error_status, object_response
from satchel.sync.local import LocalStore
from satchel.sync.pack import PACK_MEDIA_TYPE
from satchel.sync.relay import StoreSource
from satchel.sync.serving import parse_pack_request

SERVICE_TYPE = "_satchel._tcp.local."
DEFAULT_SHARE_PORT = 8001
OCTETS = "application/octet-stream"


def create_share_app(store: LocalStore) -> FastAPI:
    source = StoreSource(store)
    app = FastAPI(
        title="Satchel relay",
        summary="A laptop's store, served read-only with the server's protocol.",
        version="1",
    )

    @app.exception_handler(SatchelError)
    async def _errors(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=error_status(exc))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "role": "relay"}

    @app.get("/v1/index")
    def index(request: Request) -> Response:
        body, etag = source.index()
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag in _if_none_match(request):
            return Response(status_code=304, headers=headers)
        return Response(body, headers=headers, media_type="application/json")

    @app.get("/v1/catalog")
    def catalog() -> dict[str, object]:
        return {"bundles": source.catalog(), "relay": True}

    @app.get("/v1/manifests/{manifest_id}")
    def manifest(manifest_id: str, request: Request) -> Response:
        body, etag = source.manifest_response(manifest_id, request.query_params.get("from"))
        return object_response(request, body, etag)

    @app.get("/v1/chunks/{chunk_id}")
    def chunk(chunk_id: str, request: Request) -> Response:
        return object_response(request, source.get_object(chunk_id), f'"{chunk_id}"')

    @app.get("/v1/deltas/{from_manifest}/{to_manifest}")
    def static_delta(from_manifest: str, to_manifest: str, request: Request) -> Response:
        body = source.static_delta(from_manifest, to_manifest)
        return object_response(request, body, f'"{from_manifest}-to-{to_manifest}"')

    @app.head("/v1/deltas/{from_manifest}/{to_manifest}", include_in_schema=False)
    def static_delta_head(from_manifest: str, to_manifest: str) -> Response:
        size = len(source.static_delta(from_manifest, to_manifest))
        headers = {
            "ETag": f'"{from_manifest}-to-{to_manifest}"',
            "Cache-Control": IMMUTABLE,
            "Accept-Ranges": "bytes",
            "Content-Length": str(size),
        }
        return Response(headers=headers, media_type=OCTETS)

    @app.post("/v1/pack")
    async def pack(request: Request) -> Response:
        body = await request.body() if _small(request) else b""
        if not body or len(body) > MAX_PACK_REQUEST:
            raise FormatError(f"pack request must be JSON of at most {MAX_PACK_REQUEST:,} bytes")
        try:
            parsed = parse_pack_request(json.loads(body))
        except (ValueError, RecursionError):
            raise FormatError("pack request is not valid JSON") from None
        if parsed.dry_run:
            size = await run_in_threadpool(source.pack_size, parsed)
            return JSONResponse({"bytes": size}, headers={"Cache-Control": "no-store"})
        answer = await run_in_threadpool(source.pack, parsed)
        headers = {"Cache-Control": "no-store"}
        if answer.length is not None:
            headers["Content-Length"] = str(answer.length)
        return StreamingResponse(answer.pieces, media_type=PACK_MEDIA_TYPE, headers=headers)

    return app


def _small(request: Request) -> bool:
    declared = request.headers.get("content-length")
    return declared is None or not declared.isdigit() or int(declared) <= MAX_PACK_REQUEST


def _if_none_match(request: Request) -> list[str]:
    header = request.headers.get("if-none-match", "")
    return [t.strip().removeprefix("W/") for t in header.split(",") if t.strip()]


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
