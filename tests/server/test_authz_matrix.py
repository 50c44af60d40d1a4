"""Every route of the app against every kind of caller, with the status each must get.

The routes are enumerated from ``app.routes``: a route added without a row in ``MATRIX``
fails :func:`test_every_route_has_a_matrix_row`, so nobody can add an endpoint and forget to
decide who may call it.

Callers: no token, a token nobody issued, a revoked token, admin, a teacher granted the
bundle, a teacher granted another bundle, a curator granted the ``es`` variant, and a
curator whose grant names the base locale ``en`` (who must never publish the base line).
For the publishing routes each caller attempts its natural action (its own bundle and
locale; curators with ``from_locale=en``); for an upload it cannot begin, it uses one begun
by an admin.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from satchel.content import canonical
from satchel.content.batch import seal_batch
from satchel.content.chunking import Chunker, ChunkerParams
from satchel.content.objects import encode_object
from satchel.content.signing import SigningKey
from satchel.content.tree import scan_tree
from satchel.server.app import create_app
from satchel.server.ratelimit import FailureLimiter
from satchel.server.repository import Repository
from satchel.server.tokens import SYSTEM
from satchel.server.web import COOKIE, csrf_token
from satchel.sync.pack import PACK_MEDIA_TYPE, pack_bytes
from satchel.sync.store import FolderChunkStore

from harness.http import TestClient, walk_routes
from harness.records import learner, record

SMALL = Chunker(ChunkerParams(min_size=256, avg_size=1024, max_size=4096))
CALLERS = (
    "none",
    "bad",
    "revoked",
    "admin",
    "teacher",
    "teacher_other",
    "curator",
    "curator_base",
)
PUBLIC = dict.fromkeys(CALLERS, 200)
AUTHED = {"none": 401, "bad": 401, "revoked": 401}
ADMIN_ONLY = {
    **AUTHED,
    "admin": 200,
    "teacher": 403,
    "teacher_other": 403,
    "curator": 403,
    "curator_base": 403,
}
PUBLISH = {
    **AUTHED,
    "admin": 200,
    "teacher": 200,
    "teacher_other": 403,
    "curator": 200,
    "curator_base": 403,
}
# Who attempts what: (bundle, locale, from_locale) of each caller's publish.
TARGETS: dict[str, tuple[str, str, str | None]] = {
    "none": ("course", "en", None),
    "bad": ("course", "en", None),
    "revoked": ("course", "en", None),
    "admin": ("course", "en", None),
    "teacher": ("course", "en", None),
    "teacher_other": ("course", "en", None),
    "curator": ("course", "es", "en"),
    "curator_base": ("course", "en", None),
}


def files(seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {
        "lesson-1/index.html": b"<title>One</title>" + rng.randbytes(3000),
        "lesson-2/index.html": b"<title>Two</title>" + rng.randbytes(2000),
        "lesson-2/notes.md": b"# Notes\n\nTwo, in Markdown.\n",
        "media/shared.bin": random.Random(99).randbytes(6000),
    }


def write(root: Path, tree: dict[str, bytes]) -> Path:
    for rel, data in tree.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@dataclass
class World:
    repo: Repository
    client: TestClient
    tokens: dict[str, str]
    draft: bytes
    pack: bytes
    manifests: tuple[str, str]  # course/en v1 and v2
    chunk: str
    src: Path  # a small course folder, to publish lines of its own
    class_code: str  # a class of course/en

    def headers(self, caller: str) -> dict[str, str]:
        token = self.tokens.get(caller)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def begun(self, caller: str) -> str:
        """An upload id begun by ``caller`` when it may publish, else by an admin."""
        who = caller if PUBLISH[caller] == 200 else "admin"
        bundle, locale, base = TARGETS[who]
        r = self.client.post(
            f"/v1/publish/{bundle}/{locale}",
            params={"from_locale": base} if base else None,
            content=self.draft,
            headers=self.headers(who),
        )
        assert r.status_code == 200, r.text
        return str(r.json()["upload"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("authz")
    data = tmp / "srv"
    repo = Repository(data, store=FolderChunkStore(data / "objects", durable=False))
    en = write(tmp / "en", files(1))
    repo.publishing.publish_folder(en, bundle="course", locale="en", title="Course", notes="first")
    (en / "lesson-2" / "index.html").write_bytes(b"<title>Two</title> changed")
    repo.publishing.publish_folder(en, bundle="course", locale="en", title="Course", notes="second")
    es = write(tmp / "es", {**files(1), "lesson-1/index.html": b"<title>Uno</title>"})
    repo.publishing.publish_folder(
        es, bundle="course", locale="es", title="Curso", from_locale="en"
    )
    tokens = {
        "bad": "sat_" + "x" * 43,
        "revoked": repo.tokens.create("teacher", bundle="course"),
        "admin": repo.tokens.create("admin", label="admin"),
        "teacher": repo.tokens.create("teacher", bundle="course", label="t"),
        "teacher_other": repo.tokens.create("teacher", bundle="other"),
        "curator": repo.tokens.create("curator", bundle="course", locale="es"),
        "curator_base": repo.tokens.create("curator", bundle="course", locale="en"),
    }
    repo.tokens.revoke(next(t.id for t in repo.tokens.list() if t.role == "teacher"))
    scan = scan_tree(es, title="Curso", chunker=SMALL)
    objects = [
        (cid, encode_object(scan.sources[cid].read(), level=3))
        for cid, _ in scan.draft.distinct_chunks()
    ]
    history = repo.reads.history("course", "en")
    manifests = (history[1].manifest, history[0].manifest)
    # A limiter that never trips: this test makes many failed authentications on purpose.
    app = create_app(repo, auth_limiter=FailureLimiter(burst=100_000))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield World(
            repo,
            client,
            tokens,
            canonical.encode(scan.draft.to_json()),
            pack_bytes(iter(objects)),
            manifests,
            objects[0][0],
            en,
            repo.classes.create(SYSTEM, "course", "en", "Class 5B").code,
        )


Call = Callable[[World, str], httpx.Response]


def _get(path: Callable[[World], str]) -> Call:
    return lambda w, caller: w.client.get(path(w), headers=w.headers(caller))


def _begin(w: World, caller: str) -> httpx.Response:
    bundle, locale, base = TARGETS[caller]
    return w.client.post(
        f"/v1/publish/{bundle}/{locale}",
        params={"from_locale": base} if base else None,
        content=w.draft,
        headers=w.headers(caller),
    )


def _upload(w: World, caller: str) -> httpx.Response:
    up = w.begun(caller)
    headers = {**w.headers(caller), "Content-Type": PACK_MEDIA_TYPE}
    return w.client.post(f"/v1/uploads/{up}/pack", content=w.pack, headers=headers)


def _commit(w: World, caller: str) -> httpx.Response:
    up = w.begun(caller)
    who = caller if PUBLISH[caller] == 200 else "admin"
    headers = {**w.headers(who), "Content-Type": PACK_MEDIA_TYPE}
    assert w.client.post(f"/v1/uploads/{up}/pack", content=w.pack, headers=headers).is_success
    return w.client.post(
        f"/v1/uploads/{up}/commit", json={"notes": f"by {caller}"}, headers=w.headers(caller)
    )


def _pack(w: World, caller: str) -> httpx.Response:
    body = {"chunks": [w.chunk]}
    return w.client.post("/v1/pack", json=body, headers=w.headers(caller))


def _create_token(w: World, caller: str) -> httpx.Response:
    body = {"role": "teacher", "bundle": "course", "label": f"made by {caller}"}
    return w.client.post("/v1/tokens", json=body, headers=w.headers(caller))


def _revoke_token(w: World, caller: str) -> httpx.Response:
    victim = w.repo.tokens.issue("teacher", label=f"victim of {caller}")
    return w.client.delete(f"/v1/tokens/{victim.info.id}", headers=w.headers(caller))


def _head_delta(w: World, caller: str) -> httpx.Response:
    a, b = w.manifests
    return w.client.head(f"/v1/deltas/{a}/{b}", headers=w.headers(caller))


def _withdraw(w: World, caller: str) -> httpx.Response:
    """Withdraw course/en v1 (v2 is still served); undone after, so each caller meets v1."""
    r = w.client.post(
        "/v1/lines/course/en/versions/1/withdraw", json={"notes": "test"}, headers=w.headers(caller)
    )
    w.repo.db.transaction("undo a withdrawal", _unwithdraw)
    return r


def _unwithdraw(s: Any) -> None:
    from satchel.server.db import Version

    row = s.get(Version, ("course", "en", 1))
    row.withdrawn = False
    s.add(row)


def _remove(w: World, caller: str) -> httpx.Response:
    """Remove a line of its own (made for each caller), so the shared lines stay."""
    line = f"r{abs(hash(caller)) % 10_000}"
    w.repo.publishing.publish_folder(w.src, bundle=line, locale="en", title="Removable")
    return w.client.post(f"/v1/lines/{line}/en/remove", json={}, headers=w.headers(caller))


# Classes, learners, devices and reports: admins and teachers of the bundle; never curators.
CLASS = {
    **AUTHED,
    "admin": 200,
    "teacher": 200,
    "teacher_other": 403,
    "curator": 403,
    "curator_base": 403,
}


def _reporting_laptop(w: World, caller: str) -> tuple[str, str]:
    """A new laptop whose learner (of the course/en class) reported: (device, learner)."""
    key = SigningKey.generate()
    who = learner(f"Victim of {caller}", w.class_code, bundle="course")
    sealed = seal_batch(
        [who], [record(1, who, "opened", bundle="course")], key, w.repo.records.records_key.public
    )
    assert w.repo.records.deliver([sealed]).accepted
    return key.public.keyid, who.learner


def _create_class(w: World, caller: str) -> httpx.Response:
    body = {"bundle": "course", "locale": "en", "name": f"made by {caller}"}
    return w.client.post("/v1/classes", json=body, headers=w.headers(caller))


def _revoke_device(w: World, caller: str) -> httpx.Response:
    device, _ = _reporting_laptop(w, caller)
    return w.client.post(
        f"/v1/devices/{device}/revoke", json={"reason": "lost"}, headers=w.headers(caller)
    )


def _revoke_learner(w: World, caller: str) -> httpx.Response:
    _, who = _reporting_laptop(w, caller)
    return w.client.post(
        f"/v1/learners/{who}/revoke", json={"reason": "left"}, headers=w.headers(caller)
    )


def _records(w: World, caller: str) -> httpx.Response:
    # The device signature inside each batch is the authority; a token changes nothing.
    headers = {**w.headers(caller), "Content-Type": "application/vnd.satchel.sealed"}
    return w.client.post("/v1/records", content=b"", headers=headers)


MATRIX: dict[tuple[str, str], tuple[Call, dict[str, int]]] = {
    ("GET", "/"): (  # to /web/, for anyone
        lambda w, caller: w.client.get("/", headers=w.headers(caller), follow_redirects=False),
        dict.fromkeys(CALLERS, 307),
    ),
    ("GET", "/healthz"): (_get(lambda w: "/healthz"), PUBLIC),
    ("GET", "/readyz"): (_get(lambda w: "/readyz"), PUBLIC),
    # Public in the app, like /healthz; deploy/nginx.conf refuses it from outside (403).
    ("GET", "/metrics"): (_get(lambda w: "/metrics"), PUBLIC),
    ("GET", "/openapi.json"): (_get(lambda w: "/openapi.json"), PUBLIC),
    ("GET", "/docs"): (_get(lambda w: "/docs"), PUBLIC),
    ("HEAD", "/docs"): (lambda w, c: w.client.head("/docs", headers=w.headers(c)), PUBLIC),
    ("GET", "/docs/oauth2-redirect"): (_get(lambda w: "/docs/oauth2-redirect"), PUBLIC),
    ("HEAD", "/docs/oauth2-redirect"): (
        lambda w, c: w.client.head("/docs/oauth2-redirect", headers=w.headers(c)),
        PUBLIC,
    ),
    ("GET", "/redoc"): (_get(lambda w: "/redoc"), PUBLIC),
    ("HEAD", "/redoc"): (lambda w, c: w.client.head("/redoc", headers=w.headers(c)), PUBLIC),
    ("HEAD", "/openapi.json"): (
        lambda w, c: w.client.head("/openapi.json", headers=w.headers(c)),
        PUBLIC,
    ),
    ("GET", "/v1/index/{bundle}/{locale}"): (_get(lambda w: "/v1/index/course/en"), PUBLIC),
    ("GET", "/v1/catalog"): (_get(lambda w: "/v1/catalog"), PUBLIC),
    ("GET", "/v1/key"): (_get(lambda w: "/v1/key"), PUBLIC),
    ("GET", "/v1/manifests/{manifest_id}"): (
        _get(lambda w: f"/v1/manifests/{w.manifests[1]}"),
        PUBLIC,
    ),
    ("GET", "/v1/deltas/{from_manifest}/{to_manifest}"): (
        _get(lambda w: f"/v1/deltas/{w.manifests[0]}/{w.manifests[1]}"),
        PUBLIC,
    ),
    ("HEAD", "/v1/deltas/{from_manifest}/{to_manifest}"): (_head_delta, PUBLIC),
    ("GET", "/v1/chunks/{chunk_id}"): (_get(lambda w: f"/v1/chunks/{w.chunk}"), PUBLIC),
    ("POST", "/v1/pack"): (_pack, PUBLIC),
    # Taking back: withdrawing needs the rights to publish to the line; removing, an admin.
    ("POST", "/v1/lines/{bundle}/{locale}/versions/{version}/withdraw"): (
        _withdraw,
        {**PUBLISH, "curator": 403},
    ),
    ("POST", "/v1/lines/{bundle}/{locale}/remove"): (_remove, ADMIN_ONLY),
    # Names who published: any valid token, as the web page needs a sign-in (finding 11).
    ("GET", "/v1/history/{bundle}/{locale}"): (
        _get(lambda w: "/v1/history/course/en"),
        {**PUBLIC, **AUTHED},
    ),
    ("GET", "/v1/translations/{bundle}/{locale}"): (
        _get(lambda w: "/v1/translations/course/es"),
        PUBLIC,
    ),
    ("POST", "/v1/publish/{bundle}/{locale}"): (_begin, PUBLISH),
    ("POST", "/v1/uploads/{upload_id}/pack"): (
        _upload,
        # An upload belongs to the token that began it: others may not add to it.
        PUBLISH,
    ),
    ("POST", "/v1/uploads/{upload_id}/commit"): (_commit, PUBLISH),
    ("POST", "/v1/tokens"): (_create_token, {**ADMIN_ONLY, "admin": 201}),
    ("GET", "/v1/tokens"): (_get(lambda w: "/v1/tokens"), ADMIN_ONLY),
    ("DELETE", "/v1/tokens/{token_id}"): (_revoke_token, ADMIN_ONLY),
    ("POST", "/v1/records"): (_records, PUBLIC),
    ("GET", "/v1/join/{code}"): (_get(lambda w: f"/v1/join/{w.class_code}"), PUBLIC),
    ("POST", "/v1/classes"): (_create_class, {**CLASS, "admin": 201, "teacher": 201}),
    ("GET", "/v1/classes/{bundle}/{locale}"): (_get(lambda w: "/v1/classes/course/en"), CLASS),
    ("GET", "/v1/learners/{bundle}/{locale}"): (_get(lambda w: "/v1/learners/course/en"), CLASS),
    ("POST", "/v1/learners/{learner}/revoke"): (_revoke_learner, CLASS),
    ("GET", "/v1/devices/{bundle}/{locale}"): (_get(lambda w: "/v1/devices/course/en"), CLASS),
    ("POST", "/v1/devices/{device}/revoke"): (_revoke_device, CLASS),
    ("GET", "/v1/report/{bundle}/{locale}"): (_get(lambda w: "/v1/report/course/en"), CLASS),
}


def app_routes(world: World) -> set[tuple[str, str]]:
    return set(walk_routes(world.client.app.routes))  # type: ignore[attr-defined]


def test_route_discovery_sees_included_routers(world: World) -> None:
    # The web page is an included router; a walk that missed it would pass vacuously.
    assert ("POST", "/web/api/publish/{bundle}/{locale}") in app_routes(world)


def test_every_route_has_a_matrix_row(world: World) -> None:
    rows = set(MATRIX) | set(WEB_MATRIX)
    missing = sorted(app_routes(world) - rows)
    assert missing == [], f"routes without an authorization matrix row: {missing}"
    stale = sorted(rows - app_routes(world))
    assert stale == [], f"matrix rows for routes that no longer exist: {stale}"


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
def test_authorization_matrix(world: World, route: tuple[str, str]) -> None:
    call, expected = MATRIX[route]
    assert set(expected) == set(CALLERS)
    got = {caller: call(world, caller).status_code for caller in CALLERS}
    assert got == expected


def test_refusals_say_why_and_publish_nothing(world: World) -> None:
    before = world.repo.reads.history("course", "en")[0].version
    for caller in ("none", "bad", "revoked", "teacher_other", "curator_base"):
        r = _begin(world, caller)
        assert r.status_code in (401, 403)
        assert isinstance(r.json()["error"], str) and r.json()["error"]
    # The base-locale curator is refused even when it asks for a variant of another locale.
    r = world.client.post(
        "/v1/publish/course/en",
        params={"from_locale": "es"},
        content=world.draft,
        headers=world.headers("curator_base"),
    )
    assert r.status_code == 403, r.text
    assert "base line" in r.json()["error"]
    assert world.repo.reads.history("course", "en")[0].version == before


# -- the web page (/web): the same callers, signed in with the token as a session cookie ---------
# Pages need a session (else 303 to the sign-in page); reading is open to every role, as the
# JSON catalog and history are. The two upload APIs need the session, its CSRF token, and the
# same publish rights as POST /v1/publish.
WEB_SIGNED_OUT = {"none": 303, "bad": 303, "revoked": 303}
WEB_PAGE = {**dict.fromkeys(CALLERS, 200), **WEB_SIGNED_OUT}
WEB_PUBLISH = {**PUBLISH, "none": 401, "bad": 401, "revoked": 401}
WEB_ORIGIN = "http://testserver"


def _web(w: World, caller: str, method: str, path: str, **kw: Any) -> httpx.Response:
    w.client.cookies.clear()
    token = w.tokens.get(caller)
    headers = {"Origin": WEB_ORIGIN, **kw.pop("headers", {})}
    if token:
        w.client.cookies.set(COOKIE, token, path="/web")
        headers["X-CSRF-Token"] = csrf_token(token)
    try:
        return w.client.request(method, path, headers=headers, follow_redirects=False, **kw)
    finally:
        w.client.cookies.clear()


def _web_get(path: str) -> Call:
    return lambda w, caller: _web(w, caller, "GET", path)


def _web_target(caller: str) -> tuple[str, dict[str, str]]:
    bundle, locale, base = TARGETS[caller]
    return f"{bundle}/{locale}", ({"from_locale": base} if base else {})


def _web_unchanged(w: World, caller: str) -> httpx.Response:
    where, params = _web_target(caller)
    listing = {"files": [{"path": "lesson-1/index.html", "sha256": "0" * 64, "size": 1}]}
    return _web(w, caller, "POST", f"/web/api/unchanged/{where}", params=params, json=listing)


def _web_publish(w: World, caller: str) -> httpx.Response:
    where, params = _web_target(caller)
    data = b"<title>By the web</title>"
    header = {
        "kind": "folder",
        "title": "Course",
        "notes": f"web by {caller}",
        "from_locale": params.get("from_locale"),
        "files": [
            {
                "path": "lesson-1/index.html",
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "send": True,
            }
        ],
    }
    raw = json.dumps(header).encode()
    return _web(
        w,
        caller,
        "POST",
        f"/web/api/publish/{where}",
        params=params,
        content=struct.pack(">I", len(raw)) + raw + data,
        headers={"Content-Type": "application/octet-stream"},
    )


def _web_signin(w: World, caller: str) -> httpx.Response:
    w.client.cookies.clear()
    form = {"token": w.tokens.get(caller, ""), "next": "/web/"}
    r = w.client.post(
        "/web/signin", data=form, headers={"Origin": WEB_ORIGIN}, follow_redirects=False
    )
    w.client.cookies.clear()
    return r


WEB_CLASS = {**CLASS, **WEB_SIGNED_OUT}
WEB_CLASS_FORM = {**WEB_CLASS, "admin": 303, "teacher": 303}


def _web_form(w: World, caller: str, path: str, fields: dict[str, str]) -> httpx.Response:
    token = w.tokens.get(caller)
    form = {**fields, "csrf": csrf_token(token) if token else ""}
    return _web(w, caller, "POST", path, data=form)


def _web_revoke(w: World, caller: str) -> httpx.Response:
    device, _ = _reporting_laptop(w, caller)
    fields = {"kind": "device", "id": device, "reason": "lost"}
    return _web_form(w, caller, "/web/b/course/en/class/revoke", fields)


WEB_MATRIX: dict[tuple[str, str], tuple[Call, dict[str, int]]] = {
    ("GET", "/web/signin"): (_web_get("/web/signin"), dict.fromkeys(CALLERS, 200)),
    # A token that signs in is sent on to the page (303); others get the form again, saying why.
    ("POST", "/web/signin"): (
        _web_signin,
        {**dict.fromkeys(CALLERS, 303), "none": 401, "bad": 401, "revoked": 401},
    ),
    ("POST", "/web/signout"): (
        lambda w, caller: _web(
            w,
            caller,
            "POST",
            "/web/signout",
            data={"csrf": csrf_token(w.tokens[caller]) if caller in w.tokens else ""},
        ),
        dict.fromkeys(CALLERS, 303),
    ),
    ("GET", "/web/static/{name}"): (_web_get("/web/static/app.css"), dict.fromkeys(CALLERS, 200)),
    ("GET", "/web/"): (_web_get("/web/"), WEB_PAGE),
    ("GET", "/web/b/{bundle}/{locale}"): (_web_get("/web/b/course/en"), WEB_PAGE),
    ("GET", "/web/b/{bundle}/{locale}/v/{version}"): (_web_get("/web/b/course/en/v/1"), WEB_PAGE),
    ("GET", "/web/b/{bundle}/{locale}/v/{version}/preview/{file_path:path}"): (
        _web_get("/web/b/course/en/v/1/preview/lesson-1/index.html"),
        WEB_PAGE,
    ),
    # Published files, like GET /v1/chunks: public. The preview's sandboxed frame loads them
    # with no cookie (an opaque origin), behind a CSP sandbox.
    ("GET", "/web/raw/{bundle}/{locale}/{version}/{file_path:path}"): (
        _web_get("/web/raw/course/en/1/lesson-1/index.html"),
        dict.fromkeys(CALLERS, 200),
    ),
    # A lesson rendered as the viewer shows it: made of the same public bytes as /web/raw.
    ("GET", "/web/rendered/{bundle}/{locale}/{version}/{file_path:path}"): (
        _web_get("/web/rendered/course/en/1/lesson-2/notes.md"),
        dict.fromkeys(CALLERS, 200),
    ),
    ("GET", "/web/b/{bundle}/{locale}/diff"): (
        _web_get("/web/b/course/en/diff?from=1&to=2"),
        WEB_PAGE,
    ),
    ("GET", "/web/b/{bundle}/{locale}/translations"): (
        _web_get("/web/b/course/es/translations"),
        WEB_PAGE,
    ),
    ("GET", "/web/upload"): (_web_get("/web/upload"), WEB_PAGE),
    ("GET", "/web/b/{bundle}/{locale}/class"): (_web_get("/web/b/course/en/class"), WEB_CLASS),
    ("GET", "/web/b/{bundle}/{locale}/class/report.csv"): (
        _web_get("/web/b/course/en/class/report.csv"),
        WEB_CLASS,
    ),
    ("GET", "/web/b/{bundle}/{locale}/class/xapi.json"): (
        _web_get("/web/b/course/en/class/xapi.json"),
        WEB_CLASS,
    ),
    # Forms post and go back to the page (303); signed out, to the sign-in page (303).
    ("POST", "/web/b/{bundle}/{locale}/class"): (
        lambda w, caller: _web_form(w, caller, "/web/b/course/en/class", {"name": "web"}),
        WEB_CLASS_FORM,
    ),
    ("POST", "/web/b/{bundle}/{locale}/class/revoke"): (_web_revoke, WEB_CLASS_FORM),
    ("POST", "/web/api/unchanged/{bundle}/{locale}"): (_web_unchanged, WEB_PUBLISH),
    ("POST", "/web/api/publish/{bundle}/{locale}"): (_web_publish, WEB_PUBLISH),
}


@pytest.mark.parametrize("route", sorted(WEB_MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
def test_web_authorization_matrix(world: World, route: tuple[str, str]) -> None:
    call, expected = WEB_MATRIX[route]
    assert set(expected) == set(CALLERS)
    got = {caller: call(world, caller).status_code for caller in CALLERS}
    assert got == expected
