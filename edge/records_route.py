"""``POST /v1/records``, defined once for every :class:`~satchel.sync.records_exchange.RecordsSink`.

``satchel serve`` mounts it over its ingest (records stored once, receipts and an answer signed),
``satchel share`` over the relay's inbox (batches kept to forward, the held receipt handed
back), so a laptop sends its records to either the same way. The body is bounded before it is
kept and split into whole sealed batches, each refused from its header when too large.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from satchel.content.batch import SEALED_MEDIA_TYPE
from satchel.sync.records_exchange import (
    MAX_RECORDS_REQUEST,
    RECORDS_PATH,
    RecordsSink,
    check_device,
    split_batches,
)

from .http import read_body

RECORDS_DOC = {
    "requestBody": {
        "content": {SEALED_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
}


def records_router(sink: RecordsSink) -> APIRouter:
    router = APIRouter()

    @router.post(
        RECORDS_PATH,
        summary="Learning records: sealed batches in, signed receipts (and answer) out",
        openapi_extra=RECORDS_DOC,
    )
    async def records(
        request: Request,
        device: str | None = Query(
            None, description="The sending laptop's device id: its receipt comes back"
        ),
    ) -> Response:
        asking = check_device(device)
        body = await read_body(request, MAX_RECORDS_REQUEST)
        batches = await run_in_threadpool(split_batches, body)
        reply = await run_in_threadpool(sink.receive, batches, asking)
        return Response(
            reply.encode(), media_type="application/json", headers={"Cache-Control": "no-store"}
        )

    return router
