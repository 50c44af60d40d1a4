"""HTTP routes for classes, learners, devices and reports (teachers of the bundle and admins),
and the one public lookup a laptop may make at ``join``: a code's bundle and locale.

A thin adapter over :mod:`satchel.server.classes` and :mod:`satchel.server.reports`;
``POST /v1/records`` itself is the shared route of :mod:`satchel.edge.records_route`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from satchel.content.errors import UsageError
from satchel.content.names import DEFAULT_LOCALE
from satchel.edge.http import json_body

from .reports import FORMATS, report_csv
from .repository import Repository
from .tokens import Principal

MAX_CLASS_BODY = 16 * 1024
NO_STORE = {"Cache-Control": "no-store"}
CLASS_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "bundle": {"type": "string"},
                        "locale": {"type": "string"},
                        "name": {"type": "string"},
                    },
                }
            }
        },
    }
}
REVOKE_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"reason": {"type": "string"}}}
            }
        },
    }
}


async def _fields(request: Request, allowed: set[str]) -> dict[str, object]:
    body = await json_body(request, MAX_CLASS_BODY)
    if not isinstance(body, dict):
        raise UsageError("request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise UsageError(f"unknown field {unknown[0][:40]!r}")
    return body


def _str(body: dict[str, object], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise UsageError(f"{key} must be a string")
    return value


def class_router(
    repo: Repository, principal: Callable[[Request], Awaitable[Principal]]
) -> APIRouter:
    router = APIRouter()
    classes, reports = repo.classes, repo.reports

    @router.post("/v1/classes", summary="Create a class; its join code is in the answer")
    async def create_class(request: Request) -> JSONResponse:
        who = await principal(request)
        body = await _fields(request, {"bundle", "locale", "name"})
        made = await run_in_threadpool(
            classes.create,
            who,
            _str(body, "bundle"),
            _str(body, "locale", DEFAULT_LOCALE),
            _str(body, "name"),
        )
        return JSONResponse(asdict(made), status_code=201, headers=NO_STORE)

    @router.get("/v1/classes/{bundle}/{locale}", summary="A line's classes and their codes")
    async def list_classes(bundle: str, locale: str, request: Request) -> JSONResponse:
        who = await principal(request)
        found = await run_in_threadpool(classes.list_classes, who, bundle, locale)
        return JSONResponse({"classes": [asdict(c) for c in found]}, headers=NO_STORE)

    @router.get("/v1/join/{code}", summary="The bundle and locale of the class a code names")
    def join(code: str) -> JSONResponse:
        bundle, locale = classes.line_of(code[:64])
        return JSONResponse({"bundle": bundle, "locale": locale}, headers=NO_STORE)

    @router.get("/v1/learners/{bundle}/{locale}", summary="Learners of a line's classes")
    async def list_learners(bundle: str, locale: str, request: Request) -> JSONResponse:
        who = await principal(request)
        found = await run_in_threadpool(classes.learners, who, bundle, locale)
        return JSONResponse({"learners": [asdict(x) for x in found]}, headers=NO_STORE)

    @router.post(
        "/v1/learners/{learner}/revoke",
        summary="Revoke a learner: later records are kept aside",
        openapi_extra=REVOKE_DOC,
    )
    async def revoke_learner(learner: str, request: Request) -> JSONResponse:
        who = await principal(request)
        reason = _str(await _fields(request, {"reason"}), "reason")
        done = await run_in_threadpool(classes.revoke_learner, who, learner, reason)
        return JSONResponse(asdict(done), headers=NO_STORE)

    @router.get("/v1/devices/{bundle}/{locale}", summary="Laptops that report a line's learners")
    async def list_devices(bundle: str, locale: str, request: Request) -> JSONResponse:
        who = await principal(request)
        found = await run_in_threadpool(classes.devices, who, bundle, locale)
        return JSONResponse({"devices": [asdict(x) for x in found]}, headers=NO_STORE)

    @router.post(
        "/v1/devices/{device}/revoke",
        summary="Revoke a laptop: its later batches are refused",
        openapi_extra=REVOKE_DOC,
    )
    async def revoke_device(device: str, request: Request) -> JSONResponse:
        who = await principal(request)
        reason = _str(await _fields(request, {"reason"}), "reason")
        done = await run_in_threadpool(classes.revoke_device, who, device, reason)
        return JSONResponse(asdict(done), headers=NO_STORE)

    @router.get("/v1/report/{bundle}/{locale}", summary="What a line's classes did (JSON/CSV/xAPI)")
    async def report(
        bundle: str,
        locale: str,
        request: Request,
        format: str = Query("json", description="json, csv or xapi (statements)"),
    ) -> Response:
        who = await principal(request)
        if format not in FORMATS:
            raise UsageError(f"format must be one of {', '.join(FORMATS)}")
        if format == "xapi":
            base = str(request.base_url).rstrip("/")
            statements = await run_in_threadpool(reports.statements, who, bundle, locale, base)
            return Response(
                json.dumps(statements, ensure_ascii=False).encode(),
                media_type="application/json",
                headers=NO_STORE,
            )
        made = await run_in_threadpool(reports.report, who, bundle, locale)
        if format == "csv":
            name = f"report-{made.bundle}-{made.locale}.csv"
            return Response(
                report_csv(made).encode("utf-8"),
                media_type="text/csv; charset=utf-8",
                headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'},
            )
        return JSONResponse(asdict(made), headers=NO_STORE)

    return router
