"""The read protocol's routes, defined once for every :class:`~satchel.sync.serving.ReadSource`.

``satchel serve`` mounts them over the server's database and store, ``satchel share`` over a
laptop's store. The release index is the one changing document: ``no-cache`` with an ETag, so
a client that is up to date pays one 304. Everything else is content-addressed and immutable.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from satchel.content.names import check_bundle, check_locale
from satchel.sync.pack import PACK_MEDIA_TYPE
from satchel.sync.serving import MAX_PACK_REQUEST, ReadSource, etag, parse_pack_request

from .http import IMMUTABLE, OCTETS, json_body, not_modified, object_response

_ID = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
# The pack route reads its body itself (bounded); this describes it in the OpenAPI schema for
# people, client generators and schema-driven fuzzing.
PACK_REQUEST_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "manifest": _ID,
                        "want": {"type": "string", "description": "base64 bitmap"},
                        "base": _ID,
                        "chunks": {"type": "array", "items": _ID},
                        "dry_run": {"type": "boolean"},
                    },
                }
            }
        },
    }
}


def read_router(source: ReadSource) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/v1/index/{bundle}/{locale}", summary="The signed release index of one bundle and locale"
    )
    def index(bundle: str, locale: str, request: Request) -> Response:
        body, etag = source.index(check_bundle(bundle), check_locale(locale))
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        return Response(body, headers=headers, media_type="application/json")

    @router.get("/v1/manifests/{manifest_id}", summary="A signed manifest as a stored object")
    def manifest(
        manifest_id: str,
        request: Request,
        base: str | None = Query(None, alias="from"),
        long: bool = Query(False),
    ) -> Response:
        """With ``?from=OLD`` (a manifest the client holds) the answer may be a delta (0x04);
        ``&long=1``: the client decodes a delta whose window spans both manifests."""
        body, etag = source.manifest_response(manifest_id, base, long=long)
        return object_response(request, body, etag)

    @router.get(
        "/v1/deltas/{from_manifest}/{to_manifest}", summary="A ready-made, cacheable update pack"
    )
    def static_delta(from_manifest: str, to_manifest: str, request: Request) -> Response:
        body = source.static_delta(from_manifest, to_manifest)
        return object_response(request, body, etag(from_manifest, "to", to_manifest))

    @router.head("/v1/deltas/{from_manifest}/{to_manifest}", include_in_schema=False)
    def static_delta_head(from_manifest: str, to_manifest: str) -> Response:
        """The ready-made pack's Content-Length without its body (for ``sync --dry-run``)."""
        size = source.static_delta_size(from_manifest, to_manifest)
        headers = {
            "ETag": etag(from_manifest, "to", to_manifest),
            "Cache-Control": IMMUTABLE,
            "Accept-Ranges": "bytes",
            "Content-Length": str(size),
        }
        return Response(headers=headers, media_type=OCTETS)

    @router.get("/v1/chunks/{chunk_id}", summary="One stored object by chunk id")
    def chunk(chunk_id: str, request: Request) -> Response:
        return object_response(request, source.get_object(chunk_id), etag(chunk_id))

    @router.post(
        "/v1/pack",
        summary="Many stored objects in one framed stream",
        openapi_extra=PACK_REQUEST_DOC,
    )
    async def pack(request: Request) -> Response:
        parsed = parse_pack_request(await json_body(request, MAX_PACK_REQUEST))
        no_store = {"Cache-Control": "no-store"}
        if parsed.dry_run:  # only the size: {"objects": n, "bytes": exact length}
            size = await run_in_threadpool(source.pack_size, parsed)
            return JSONResponse({"objects": size.objects, "bytes": size.bytes}, headers=no_store)
        answer = await run_in_threadpool(source.pack, parsed)
        headers = dict(no_store)
        if answer.length is not None:
            headers["Content-Length"] = str(answer.length)
        return StreamingResponse(answer.pieces, media_type=PACK_MEDIA_TYPE, headers=headers)

    return router
