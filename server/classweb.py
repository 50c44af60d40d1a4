"""The web page's Class page (``/web/b/{bundle}/{locale}/class``) for teachers of the bundle
and admins: create a class (its join code shown large), the learners and laptops with when
each last reported, revoke either with a reason, and the report (per learner and lesson, the
questions most often missed) with CSV and xAPI downloads.

Mounted on the web router by :func:`add_class_pages`; sessions, CSRF, the CSP and error
pages are :mod:`satchel.server.web`'s. Forms post and redirect (303) back to the page.
"""

from __future__ import annotations

import json
import urllib.parse

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse
from satchel.content.errors import SatchelError, UsageError, http_status
from satchel.content.joincode import check_join_code

from .reports import report_csv
from .web import Web, WebSession, check_csrf, page_headers, read_form


def add_class_pages(router: APIRouter, web: Web) -> None:
    repo = web.repo

    def base(bundle: str, locale: str) -> str:
        return f"/web/b/{urllib.parse.quote(bundle)}/{urllib.parse.quote(locale)}/class"

    @router.get("/b/{bundle}/{locale}/class")
    def class_page(bundle: str, locale: str, request: Request) -> Response:
        created = request.query_params.get("created")
        done = request.query_params.get("done", "")

        def build(sess: WebSession) -> Response:
            report = repo.reports.report(sess.who, bundle, locale)
            try:
                shown = check_join_code(created, "created") if created else None
            except SatchelError:
                shown = None
            return web.render(
                request,
                "class.html",
                sess,
                bundle=bundle,
                locale=locale,
                report=report,
                learners=repo.classes.learners(sess.who, bundle, locale),
                created=shown,
                done=done[:200],
                base=base(bundle, locale),
            )

        return web.page(request, build)

    async def posted(request: Request, bundle: str, locale: str, act: str) -> Response:
        """A form post: session, CSRF, the action, then back to the page (303)."""
        try:
            sess = await run_in_threadpool(web.session, request)
        except SatchelError as exc:
            return web.render(request, "error.html", None, status=exc.status, message=str(exc))
        if sess is None:
            return RedirectResponse(f"/web/signin?next={base(bundle, locale)}", status_code=303)
        try:
            form = await read_form(request)
            check_csrf(request, sess, form.get("csrf"))
            query = await run_in_threadpool(_act, web, sess, bundle, locale, act, form)
        except SatchelError as exc:
            return web.render(
                request, "error.html", sess, status=http_status(exc), message=str(exc)
            )
        return RedirectResponse(f"{base(bundle, locale)}?{query}", status_code=303)

    @router.post("/b/{bundle}/{locale}/class")
    async def create_class(bundle: str, locale: str, request: Request) -> Response:
        return await posted(request, bundle, locale, "create")

    @router.post("/b/{bundle}/{locale}/class/revoke")
    async def revoke(bundle: str, locale: str, request: Request) -> Response:
        return await posted(request, bundle, locale, "revoke")

    @router.get("/b/{bundle}/{locale}/class/report.csv")
    def report_csv_download(bundle: str, locale: str, request: Request) -> Response:
        def build(sess: WebSession) -> Response:
            body = report_csv(repo.reports.report(sess.who, bundle, locale))
            return _download(body.encode("utf-8"), "text/csv; charset=utf-8", bundle, locale, "csv")

        return web.page(request, build)

    @router.get("/b/{bundle}/{locale}/class/xapi.json")
    def report_xapi_download(bundle: str, locale: str, request: Request) -> Response:
        def build(sess: WebSession) -> Response:
            server = str(request.base_url).rstrip("/")
            statements = repo.reports.statements(sess.who, bundle, locale, server)
            body = json.dumps(statements, ensure_ascii=False, indent=1).encode()
            return _download(body, "application/json", bundle, locale, "xapi.json")

        return web.page(request, build)


def _act(
    web: Web, sess: WebSession, bundle: str, locale: str, act: str, form: dict[str, str]
) -> str:
    """Carry out a form's action; the query string the page is shown with afterwards."""
    classes = web.repo.classes
    if act == "create":
        made = classes.create(sess.who, bundle, locale, form.get("name", ""))
        return urllib.parse.urlencode({"created": made.code})
    kind, target, reason = form.get("kind"), form.get("id", ""), form.get("reason", "")
    if kind == "device":
        device = classes.revoke_device(sess.who, target, reason)
        said = f"Laptop {device.device[:16]}... is revoked: {device.revoked_reason}"
    elif kind == "learner":
        learner = classes.revoke_learner(sess.who, target, reason)
        said = f"{learner.name} is revoked: {learner.revoked_reason}"
    else:
        raise UsageError("say whether a laptop or a learner is revoked")
    return urllib.parse.urlencode({"done": said})


def _download(body: bytes, media: str, bundle: str, locale: str, ext: str) -> Response:
    name = f"report-{bundle}-{locale}.{ext}"
    headers = {**page_headers(), "Content-Disposition": f'attachment; filename="{name}"'}
    return Response(body, media_type=media, headers=headers)
