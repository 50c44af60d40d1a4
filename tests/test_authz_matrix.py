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

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from satchel.content import canonical
from satchel.content.chunking import Chunker, ChunkerParams
from satchel.content.objects import encode_object
from satchel.content.tree import scan_tree
from satchel.server.app import create_app
from satchel.server.ratelimit import FailureLimiter
from satchel.server.service import Repository
from satchel.sync.pack import PACK_MEDIA_TYPE, pack_bytes
from satchel.sync.store import FolderChunkStore
from starlette.routing import Route

from tests.support.http import TestClient

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
    repo.publish_folder(en, bundle="course", locale="en", title="Course", notes="first")
    (en / "lesson-2" / "index.html").write_bytes(b"<title>Two</title> changed")
    repo.publish_folder(en, bundle="course", locale="en", title="Course", notes="second")
    es = write(tmp / "es", {**files(1), "lesson-1/index.html": b"<title>Uno</title>"})
    repo.publish_folder(es, bundle="course", locale="es", title="Curso", from_locale="en")
    tokens = {
        "bad": "sat_" + "x" * 43,
        "revoked": repo.create_token("teacher", bundle="course"),
        "admin": repo.create_token("admin", label="admin"),
        "teacher": repo.create_token("teacher", bundle="course", label="t"),
        "teacher_other": repo.create_token("teacher", bundle="other"),
        "curator": repo.create_token("curator", bundle="course", locale="es"),
        "curator_base": repo.create_token("curator", bundle="course", locale="en"),
    }
    repo.revoke_token(next(t["id"] for t in repo.list_tokens() if t["role"] == "teacher"))
    scan = scan_tree(es, title="Curso", chunker=SMALL)
    objects = [
        (cid, encode_object(scan.sources[cid].read(), level=3))
        for cid, _ in scan.draft.distinct_chunks()
    ]
    history = repo.history("course", "en")
    manifests = (history[1]["manifest"], history[0]["manifest"])
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
    victim = w.repo.issue_token("teacher", label=f"victim of {caller}")
    return w.client.delete(f"/v1/tokens/{victim['id']}", headers=w.headers(caller))


def _head_delta(w: World, caller: str) -> httpx.Response:
    a, b = w.manifests
    return w.client.head(f"/v1/deltas/{a}/{b}", headers=w.headers(caller))


MATRIX: dict[tuple[str, str], tuple[Call, dict[str, int]]] = {
    ("GET", "/healthz"): (_get(lambda w: "/healthz"), PUBLIC),
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
    ("GET", "/v1/index"): (_get(lambda w: "/v1/index"), PUBLIC),
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
    ("GET", "/v1/history/{bundle}/{locale}"): (_get(lambda w: "/v1/history/course/en"), PUBLIC),
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
}


def app_routes(world: World) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in world.client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, APIRoute | Route):
            for method in route.methods or ():
                found.add((method, route.path))
    return found


def test_every_route_has_a_matrix_row(world: World) -> None:
    missing = sorted(app_routes(world) - set(MATRIX))
    assert missing == [], f"routes without an authorization matrix row: {missing}"
    stale = sorted(set(MATRIX) - app_routes(world))
    assert stale == [], f"matrix rows for routes that no longer exist: {stale}"


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
def test_authorization_matrix(world: World, route: tuple[str, str]) -> None:
    call, expected = MATRIX[route]
    assert set(expected) == set(CALLERS)
    got = {caller: call(world, caller).status_code for caller in CALLERS}
    assert got == expected


def test_refusals_say_why_and_publish_nothing(world: World) -> None:
    before = world.repo.history("course", "en")[0]["version"]
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
    assert world.repo.history("course", "en")[0]["version"] == before
