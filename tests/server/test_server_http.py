"""The server over HTTP, in process: headers, conditional and range GETs, packs, publishing.

Every request goes through FastAPI's TestClient (``create_app(repo)``), so these tests see
what a client or an HTTP cache sees: status codes, ETags, Cache-Control, Content-Length and
the bytes. Objects live in a real folder store, so a path-traversal attempt has real files to
reach. Hostile requests must get a 4xx with a JSON ``{"error": ...}``, never a 500.

Trees are small and generated from fixed seeds; compression runs at a low level.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import zstandard
from satchel.clients.http import HttpClient
from satchel.content import canonical
from satchel.content.chunking import Chunker, ChunkerParams
from satchel.content.index import ReleaseIndex, parse_index
from satchel.content.manifest import Manifest, parse_manifest
from satchel.content.objects import (
    DICTIONARY_MAGIC,
    RAW,
    ZSTD,
    ZSTD_DICT,
    decode_object,
    encode_object,
    verify_object,
)
from satchel.content.signing import verify_envelope
from satchel.content.tree import scan_tree
from satchel.server.app import create_app
from satchel.server.repository import Repository
from satchel.sync.pack import MAGIC, PACK_MEDIA_TYPE, PackFrame, frame, pack_bytes, read_pack
from satchel.sync.plan import encode_want
from satchel.sync.publish import Publisher
from satchel.sync.serving import etag as etag_of
from satchel.sync.store import FolderChunkStore

from harness.http import IMMUTABLE, TestClient

SMALL = Chunker(ChunkerParams(min_size=256, avg_size=1024, max_size=4096))
LEVEL = 3
MiB = 1024 * 1024


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def admin(srv: Repository) -> str:
    return srv.tokens.create("admin", label="tests")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def text_bytes(rng: random.Random, size: int) -> bytes:
    """Compressible, word-like text of exactly ``size`` bytes."""
    words = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(300)
    ]
    out = bytearray()
    while len(out) < size:
        out += (rng.choice(words) + rng.choice((" ", " ", ", ", ".\n"))).encode()
    return bytes(out[:size])


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o755 if rel.endswith(".sh") else 0o644)
    return root


def course_files(seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {
        "README.md": text_bytes(rng, 3000),
        "chapters/01-intro.html": text_bytes(rng, 6000),
        "media/figure.bin": rng.randbytes(9000),
        "media/empty.txt": b"",
        "tools/run.sh": b"#!/bin/sh\necho hello\n",
    }


def make_course(tmp_path: Path, seed: int, name: str | None = None) -> Path:
    return write_tree(tmp_path / (name or f"course-{seed}"), course_files(seed))


def random_id(seed: int) -> str:
    return hashlib.sha256(f"absent-{seed}".encode()).hexdigest()


def http_client(client: TestClient, token: str) -> HttpClient:
    """The real HTTP client, speaking to the in-process app through TestClient's transport."""
    return HttpClient("http://testserver", token=token, transport=client._transport)


def current_index(
    client: TestClient, srv: Repository, bundle: str = "course", locale: str = "en"
) -> tuple[httpx.Response, ReleaseIndex]:
    r = client.get(f"/v1/index/{bundle}/{locale}")
    assert r.status_code == 200, r.text
    env, index = parse_index(r.content)
    verify_envelope(env, srv.key.public, what="release index")
    return r, index


def served_manifest(
    client: TestClient, srv: Repository, bundle: str, locale: str
) -> tuple[str, Manifest]:
    _r, index = current_index(client, srv, bundle, locale)
    entry = index.line
    r = client.get(f"/v1/manifests/{entry.manifest}")
    assert r.status_code == 200, r.text
    envelope = decode_object(r.content, entry.size)
    assert hashlib.sha256(envelope).hexdigest() == entry.manifest
    env, manifest = parse_manifest(envelope)
    verify_envelope(env, srv.key.public, what="manifest")
    return entry.manifest, manifest


@dataclass
class Prepared:
    """A folder chunked and encoded the way a publisher would send it."""

    draft: bytes
    distinct: list[tuple[str, int]]
    data: dict[str, bytes]
    objects: dict[str, bytes]

    def pack(self, ids: list[str] | None = None) -> bytes:
        chosen = [cid for cid, _ in self.distinct] if ids is None else ids
        return pack_bytes((cid, self.objects[cid]) for cid in chosen)


def prepare(root: Path, title: str = "Course") -> Prepared:
    scan = scan_tree(root, title=title, chunker=SMALL)
    distinct = scan.draft.distinct_chunks()
    data = {cid: scan.sources[cid].read() for cid, _ in distinct}
    objects = {cid: encode_object(raw, level=LEVEL) for cid, raw in data.items()}
    return Prepared(canonical.encode(scan.draft.to_json()), distinct, data, objects)


def begin(
    client: TestClient, token: str | None, draft: bytes, bundle: str = "course", locale: str = "en"
) -> httpx.Response:
    headers = auth(token) if token is not None else {}
    return client.post(f"/v1/publish/{bundle}/{locale}", content=draft, headers=headers)


def upload(client: TestClient, token: str, upload_id: str, body: bytes) -> httpx.Response:
    return client.post(
        f"/v1/uploads/{upload_id}/pack",
        content=body,
        headers={**auth(token), "Content-Type": PACK_MEDIA_TYPE},
    )


def commit(client: TestClient, token: str, upload_id: str) -> httpx.Response:
    return client.post(f"/v1/uploads/{upload_id}/commit", json={"notes": "t"}, headers=auth(token))


def publish_http(
    client: TestClient, token: str, prep: Prepared, bundle: str = "course", locale: str = "en"
) -> int:
    r = begin(client, token, prep.draft, bundle, locale)
    assert r.status_code == 200, r.text
    up = r.json()["upload"]
    r = upload(client, token, up, prep.pack())
    assert r.status_code == 200, r.text
    r = commit(client, token, up)
    assert r.status_code == 200, r.text
    return int(r.json()["version"])


def assert_error(r: httpx.Response, *statuses: int) -> None:
    assert r.status_code in statuses, (r.status_code, r.text)
    assert isinstance(r.json().get("error"), str), r.text


def draft_doc(files: list[dict[str, object]]) -> dict[str, object]:
    return {"title": "Hostile", "chunker": SMALL.params.to_json(), "files": files}


def file_doc(path: str, data: bytes, *, mode: int = 0o644) -> dict[str, object]:
    return {
        "path": path,
        "size": len(data),
        "mode": mode,
        "media_type": "text/plain",
        "chunks": [[hashlib.sha256(data).hexdigest(), len(data)]] if data else [],
    }


def one_chunk_draft(data: bytes) -> bytes:
    return canonical.encode(draft_doc([file_doc("a.txt", data)]))


def zstd_declaring(size: int) -> bytes:
    """A zstd object whose single-segment frame header claims ``size`` bytes of content."""
    return bytes([ZSTD]) + b"\x28\xb5\x2f\xfd\xe0" + size.to_bytes(8, "little") + b"\x01\x00\x00"


# -- /v1/index -----------------------------------------------------------------------------
def test_index_etag_conditional_get_signature_and_serial(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    srv.publishing.publish_folder(
        make_course(tmp_path, 1), bundle="course", locale="en", title="Course"
    )
    r, index = current_index(client, srv)
    etag = r.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) == 34
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["content-type"].startswith("application/json")
    assert index.publisher == srv.key.public
    entry = index.entry("course", "en")
    assert entry is not None and entry.version == 1 and entry.title == "Course"
    assert index.expires > index.issued

    again = client.get("/v1/index/course/en", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    listed = client.get("/v1/index/course/en", headers={"If-None-Match": f'"{"0" * 64}", {etag}'})
    assert listed.status_code == 304
    assert (
        client.get("/v1/index/course/en", headers={"If-None-Match": '"stale"'}).status_code == 200
    )

    serials = [index.serial]
    etags = [etag]
    for seed in (2, 3):
        srv.publishing.publish_folder(
            make_course(tmp_path, seed), bundle="course", locale="en", title="Course"
        )
        r, index = current_index(client, srv)
        serials.append(index.serial)
        etags.append(r.headers["etag"])
        entry = index.entry("course", "en")
        assert entry is not None and entry.version == seed
    assert serials == sorted(set(serials)), serials
    assert len(set(etags)) == 3
    assert client.get("/v1/index/course/en", headers={"If-None-Match": etags[0]}).status_code == 200
    assert (
        client.get("/v1/index/course/en", headers={"If-None-Match": etags[-1]}).status_code == 304
    )


def test_index_is_resigned_with_a_higher_serial_after_half_its_validity(tmp_path: Path) -> None:
    now = [datetime(2026, 3, 1, 12, tzinfo=UTC)]
    data = tmp_path / "srv"
    repo = Repository(
        data, store=FolderChunkStore(data / "objects", durable=False), clock=lambda: now[0]
    )
    with TestClient(create_app(repo), raise_server_exceptions=False) as client:
        repo.publishing.publish_folder(
            make_course(tmp_path, 1), bundle="course", locale="en", title="C"
        )
        first, index1 = current_index(client, repo)
        now[0] += timedelta(days=1)
        same, _ = current_index(client, repo)
        assert same.headers["etag"] == first.headers["etag"]
        now[0] += timedelta(days=40)
        fresh, index2 = current_index(client, repo)
        assert fresh.headers["etag"] != first.headers["etag"]
        assert index2.serial > index1.serial
        assert index2.issued == now[0] and index2.expires > now[0]
        assert index2.entries == index1.entries


# -- /v1/chunks and /v1/manifests ------------------------------------------------------------
@pytest.fixture
def published(client: TestClient, srv: Repository, tmp_path: Path) -> tuple[str, Manifest]:
    srv.publishing.publish_folder(
        make_course(tmp_path, 7), bundle="course", locale="en", title="Course"
    )
    return served_manifest(client, srv, "course", "en")


def test_objects_are_immutable_with_strong_etags(
    client: TestClient, srv: Repository, published: tuple[str, Manifest]
) -> None:
    manifest_id, manifest = published
    targets = [(f"/v1/manifests/{manifest_id}", manifest_id)]
    targets += [(f"/v1/chunks/{cid}", cid) for cid, _ in manifest.distinct_chunks()]
    assert len(targets) >= 4
    for url, oid in targets:
        r = client.get(url, headers={"Accept-Encoding": "gzip, br, zstd"})
        assert r.status_code == 200, (url, r.text)
        assert r.headers["etag"] == etag_of(oid)
        assert r.headers["cache-control"] == IMMUTABLE
        assert r.headers["accept-ranges"] == "bytes"
        assert r.headers["content-type"] == "application/octet-stream"
        assert "content-encoding" not in r.headers
        assert int(r.headers["content-length"]) == len(r.content)
        assert r.content == srv.store.get(oid)

        cached = client.get(url, headers={"If-None-Match": etag_of(oid)})
        assert cached.status_code == 304
        assert cached.content == b""
        assert cached.headers["etag"] == etag_of(oid)
        assert cached.headers["cache-control"] == IMMUTABLE
        other = client.get(url, headers={"If-None-Match": f'"{random_id(0)}"'})
        assert other.status_code == 200 and other.content == r.content

    for cid, length in manifest.distinct_chunks():
        verify_object(client.get(f"/v1/chunks/{cid}").content, cid, length)


@pytest.mark.parametrize("kind", ["manifests", "chunks"])
def test_single_ranges(
    client: TestClient, srv: Repository, published: tuple[str, Manifest], kind: str
) -> None:
    manifest_id, manifest = published
    if kind == "manifests":
        oid = manifest_id
    else:
        oid = max(manifest.distinct_chunks(), key=lambda item: srv.store.stored_size(item[0]))[0]
    url = f"/v1/{kind}/{oid}"
    data = srv.store.get(oid)
    n = len(data)
    assert n > 40

    cases = {
        "bytes=0-9": (0, 9),
        "bytes=-5": (n - 5, n - 1),
        "bytes=10-": (10, n - 1),
        f"bytes=3-{n + 1000}": (3, n - 1),
        f"bytes=-{n + 1000}": (0, n - 1),
        f"bytes={n - 1}-{n - 1}": (n - 1, n - 1),
    }
    for spec, (start, end) in cases.items():
        r = client.get(url, headers={"Range": spec})
        assert r.status_code == 206, (spec, r.text)
        assert r.headers["content-range"] == f"bytes {start}-{end}/{n}", spec
        assert r.content == data[start : end + 1], spec
        assert int(r.headers["content-length"]) == end - start + 1
        assert r.headers["etag"] == etag_of(oid)
        assert r.headers["content-type"] == "application/octet-stream"
        assert "content-encoding" not in r.headers

    for spec in (f"bytes={n}-", f"bytes={n + 5}-{n + 9}", "bytes=-0"):
        r = client.get(url, headers={"Range": spec})
        assert r.status_code == 416, (spec, r.status_code)
        assert r.headers["content-range"] == f"bytes */{n}", spec

    # A range this server does not support, or an invalid one (last before first), is
    # ignored: the whole object, as RFC 9110 allows.
    for spec in ("bytes=0-1,4-5", "lines=1-2", "bytes=x-y", "bytes=9-3"):
        r = client.get(url, headers={"Range": spec})
        assert r.status_code == 200 and r.content == data, spec

    assert (
        client.get(url, headers={"Range": "bytes=0-9", "If-None-Match": etag_of(oid)}).status_code
        == 304
    )


def test_unknown_ids_are_404_with_a_json_error(
    client: TestClient, published: tuple[str, Manifest]
) -> None:
    manifest_id, manifest = published
    chunk = manifest.distinct_chunks()[0][0]
    assert_error(client.get(f"/v1/chunks/{random_id(1)}"), 404)
    assert_error(client.get(f"/v1/manifests/{random_id(2)}"), 404)
    # A chunk is not a manifest, even though it is a stored object.
    assert_error(client.get(f"/v1/manifests/{chunk}"), 404)
    assert client.get(f"/v1/chunks/{manifest_id}").status_code == 200


BAD_IDS = [
    "..%2F..%2Fetc%2Fpasswd",
    "..%2F..%2Fsigning-key.pem",
    "..%2F..%2Fsatchel.db",
    "%2e%2e%2f%2e%2e%2fsigning-key.pem",
    "..%252F..%252Fsigning-key.pem",
    "..%5C..%5Csigning-key.pem",
    "..",
    "%2e%2e",
    "store.json",
    "A" * 64,
    "g" * 64,
    "a" * 63,
    "a" * 65,
    "a" * 64 + "%00",
    "a" * 64 + "%2F..",
    " " + "a" * 63,
]


@pytest.mark.parametrize("kind", ["chunks", "manifests"])
def test_malformed_ids_never_reach_outside_the_store(
    client: TestClient, srv: Repository, published: tuple[str, Manifest], kind: str
) -> None:
    secrets = [
        (srv.data / "signing-key.pem").read_bytes(),
        (srv.data / "objects" / "store.json").read_bytes(),
    ]
    for bad in BAD_IDS:
        r = client.get(f"/v1/{kind}/{bad}")
        assert r.status_code in (404, 422), (bad, r.status_code, r.text)
        assert b"PRIVATE KEY" not in r.content
        assert b"SQLite format" not in r.content
        assert all(s not in r.content for s in secrets), bad


# -- /v1/pack ------------------------------------------------------------------------------
@pytest.fixture
def dict_version(
    client: TestClient, srv: Repository, tmp_path: Path
) -> tuple[dict[str, bytes], str]:
    """A text-heavy version published by the real client, so it carries a zstd dictionary."""
    rng = random.Random(11)
    files = {f"text/ch{i}.html": text_bytes(rng, 100_000) for i in range(6)}
    files["media/photo.bin"] = rng.randbytes(20_000)
    root = write_tree(tmp_path / "texts", files)
    chunker = Chunker(ChunkerParams(min_size=2048, avg_size=8192, max_size=32768))
    with http_client(client, srv.tokens.create("teacher", bundle="texts")) as hc:
        result = Publisher(hc, chunker=chunker, level=LEVEL).publish(
            root, bundle="texts", locale="en", title="Texts"
        )
    assert result.version == 1 and result.objects_uploaded == result.objects_total
    manifest_id, _ = served_manifest(client, srv, "texts", "en")
    return files, manifest_id


def pack_frames(r: httpx.Response) -> list[PackFrame]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].split(";")[0] == PACK_MEDIA_TYPE
    assert r.headers["cache-control"] == "no-store"
    assert "content-encoding" not in r.headers
    assert int(r.headers["content-length"]) == len(r.content)
    return list(read_pack([r.content]))


def test_pack_by_want_bitmap_verifies_and_rebuilds_the_files(
    client: TestClient, srv: Repository, dict_version: tuple[dict[str, bytes], str]
) -> None:
    files, manifest_id = dict_version
    _, manifest = served_manifest(client, srv, "texts", "en")
    assert len(manifest.dictionaries) == 1
    distinct = manifest.distinct_chunks()
    want = encode_want(distinct, {cid for cid, _ in distinct})
    body = {"manifest": manifest_id, "want": base64.b64encode(want).decode()}
    frames = pack_frames(client.post("/v1/pack", json=body))
    assert [f.chunk_id for f in frames] == [cid for cid, _ in distinct]

    lengths = dict(distinct)
    got: dict[str, bytes] = {}
    for f in frames:  # dictionaries come first, so each lookup finds what it needs
        got[f.chunk_id] = verify_object(f.obj, f.chunk_id, lengths[f.chunk_id], got.__getitem__)
    assert any(f.obj[0] == ZSTD_DICT for f in frames)
    for entry in manifest.files:
        assert b"".join(got[cid] for cid, _ in entry.chunks) == files[entry.path], entry.path

    # Some bits only: exactly those objects, in manifest order.
    chosen = {distinct[i][0] for i in range(1, len(distinct), 3)}
    want = encode_want(distinct, chosen)
    body = {"manifest": manifest_id, "want": base64.b64encode(want).decode()}
    frames = pack_frames(client.post("/v1/pack", json=body))
    assert [f.chunk_id for f in frames] == [cid for cid, _ in distinct if cid in chosen]

    nothing = base64.b64encode(bytes(len(want))).decode()
    assert (
        pack_frames(client.post("/v1/pack", json={"manifest": manifest_id, "want": nothing})) == []
    )


def test_pack_by_chunk_ids(client: TestClient, published: tuple[str, Manifest]) -> None:
    _, manifest = published
    distinct = manifest.distinct_chunks()
    ids = [cid for cid, _ in reversed(distinct)] + [distinct[0][0]]
    frames = pack_frames(client.post("/v1/pack", json={"chunks": ids}))
    assert [f.chunk_id for f in frames] == ids[:-1]  # an id named twice comes once
    lengths = dict(distinct)
    for f in frames:
        verify_object(f.obj, f.chunk_id, lengths[f.chunk_id])
    empty = client.post("/v1/pack", json={"chunks": []})
    assert pack_frames(empty) == []
    assert len(empty.content) == len(MAGIC) + 36


def test_pack_requests_that_are_refused(
    client: TestClient, published: tuple[str, Manifest]
) -> None:
    manifest_id, manifest = published
    distinct = manifest.distinct_chunks()
    n = len(distinct)
    assert n % 8, "the tree must give a bitmap with spare bits"
    nbytes = (n + 7) // 8
    stray = bytearray(nbytes)
    stray[-1] = 0x01

    def want(bits: bytes) -> dict[str, str]:
        return {"manifest": manifest_id, "want": base64.b64encode(bits).decode()}

    json_cases: list[tuple[object, int]] = [
        ([1, 2], 422),
        ("manifest", 422),
        (None, 422),
        ({}, 422),
        ({"want": "AA=="}, 422),
        (want(bytes(nbytes + 1)), 422),
        (want(b""), 422),
        (want(bytes(stray)), 422),
        ({"manifest": manifest_id, "want": "not base64!"}, 422),
        ({"manifest": manifest_id, "want": 5}, 422),
        ({"manifest": manifest_id}, 422),
        ({"manifest": "../../etc/passwd", "want": "AA=="}, 422),
        ({"manifest": random_id(3), "want": "AA=="}, 404),
        ({"manifest": distinct[0][0], "want": "AA=="}, 404),
        ({"chunks": [distinct[0][0], random_id(4)]}, 404),
        ({"chunks": ["../objects/store.json"]}, 422),
        ({"chunks": [7]}, 422),
        ({"chunks": distinct[0][0]}, 422),
    ]
    for body, status in json_cases:
        r = client.post("/v1/pack", content=json.dumps(body).encode())
        assert_error(r, status)

    assert_error(client.post("/v1/pack", content=b"{not json"), 400)
    assert_error(client.post("/v1/pack", content=b"\xff\xfe"), 400)
    assert_error(client.post("/v1/pack", content=b""), 422)

    huge = json.dumps({"chunks": [distinct[0][0]] * (8 * MiB // 66 + 1)}).encode()
    assert len(huge) > 8 * MiB
    assert_error(client.post("/v1/pack", content=huge), 413)

    def streamed() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        for start in range(0, len(huge), MiB):
            yield huge[start : start + MiB]

    assert_error(client.post("/v1/pack", content=streamed()), 413)


# -- publishing: authorization and visibility ------------------------------------------------
def test_publishing_needs_a_known_token(
    client: TestClient, srv: Repository, admin: str, tmp_path: Path
) -> None:
    prep = prepare(make_course(tmp_path, 1))
    assert_error(begin(client, None, prep.draft), 401)
    assert_error(begin(client, "sat_not-a-real-token", prep.draft), 401)
    r = client.post(
        "/v1/publish/course/en", content=prep.draft, headers={"Authorization": "Bearer "}
    )
    assert_error(r, 401)
    r = client.post(
        "/v1/publish/course/en", content=prep.draft, headers={"Authorization": f"Basic {admin}"}
    )
    assert_error(r, 401)

    up = begin(client, admin, prep.draft).json()["upload"]
    assert_error(client.post(f"/v1/uploads/{up}/pack", content=prep.pack()), 401)
    assert_error(client.post(f"/v1/uploads/{up}/commit", json={}), 401)
    assert_error(upload(client, "sat_wrong", up, prep.pack()), 401)
    assert_error(commit(client, "sat_wrong", up), 401)
    assert client.get("/v1/catalog").json()["bundles"] == []


@pytest.mark.parametrize(
    ("role", "scope", "target", "status"),
    [
        ("admin", {}, ("course", "en"), 200),
        ("teacher", {}, ("course", "en"), 200),
        ("teacher", {"bundle": "course"}, ("course", "uk"), 200),
        ("teacher", {"bundle": "other"}, ("course", "en"), 403),
        # A curator publishes locale variants only, never a base line (issue 4).
        ("curator", {"bundle": "course", "locale": "en"}, ("course", "en"), 403),
        ("curator", {"bundle": "course", "locale": "fr"}, ("course", "en"), 403),
        ("curator", {"bundle": "other", "locale": "en"}, ("course", "en"), 403),
    ],
)
def test_publish_scope_of_tokens(
    client: TestClient,
    srv: Repository,
    tmp_path: Path,
    role: str,
    scope: dict[str, str],
    target: tuple[str, str],
    status: int,
) -> None:
    token = srv.tokens.create(role, **scope)
    prep = prepare(make_course(tmp_path, 4))
    r = begin(client, token, prep.draft, *target)
    if status != 200:
        assert_error(r, status)
        assert client.get("/v1/catalog").json()["bundles"] == []
        return
    assert publish_http(client, token, prep, *target) == 1
    _, index = current_index(client, srv, *target)
    assert index.line.version == 1


def test_an_upload_belongs_to_the_token_that_began_it(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    alice = srv.tokens.create("teacher", bundle="course")
    bob = srv.tokens.create("teacher", bundle="course")
    prep = prepare(make_course(tmp_path, 5))
    up = begin(client, alice, prep.draft).json()["upload"]
    assert_error(upload(client, bob, up, prep.pack()), 403)
    assert (
        client.post(f"/v1/uploads/{up}/pack", content=prep.pack(), headers=auth(alice)).status_code
        == 200
    )
    assert_error(commit(client, bob, up), 403)
    assert client.get("/v1/catalog").json()["bundles"] == []
    admin = srv.tokens.create("admin")
    r = commit(client, admin, up)
    assert r.status_code == 200 and r.json() == {"version": 1}
    for token in (alice, admin):
        assert_error(upload(client, token, random_id(5)[:32], prep.pack()), 404)
        assert_error(commit(client, token, "no-such-upload"), 404)


def test_a_version_is_visible_only_after_a_complete_commit(
    client: TestClient, srv: Repository, admin: str, tmp_path: Path
) -> None:
    prep = prepare(make_course(tmp_path, 6))
    assert client.get("/v1/index/course/en").status_code == 404  # nothing published yet

    r = begin(client, admin, prep.draft)
    assert r.status_code == 200, r.text
    answer = r.json()
    up = answer["upload"]
    want = base64.b64decode(answer["want"])
    n = len(prep.distinct)
    assert n >= 10 and len(want) == (n + 7) // 8
    assert want == encode_want(prep.distinct, {cid for cid, _ in prep.distinct})
    assert answer["dictionary"] is None

    ids = [cid for cid, _ in prep.distinct]
    r = upload(client, admin, up, prep.pack(ids[: n // 2]))
    assert r.status_code == 200 and r.json() == {"stored": n // 2}
    assert client.get("/v1/index/course/en").status_code == 404

    # Half the chunks: refused, and nothing becomes visible.
    assert_error(commit(client, admin, up), 422)
    assert client.get("/v1/index/course/en").status_code == 404
    assert client.get("/v1/catalog").json()["bundles"] == []

    r = upload(client, admin, up, prep.pack(ids[n // 2 :]))
    assert r.status_code == 200, r.text
    assert client.get("/v1/index/course/en").status_code == 404
    r = commit(client, admin, up)
    assert r.status_code == 200 and r.json() == {"version": 1}

    _after, index1 = current_index(client, srv)
    assert index1.serial == 1  # signed once, in the commit
    manifest_id, manifest = served_manifest(client, srv, "course", "en")
    assert manifest.version == 1 and manifest.parent_version is None
    assert manifest.distinct_chunks() == prep.distinct

    # The upload is gone once committed.
    assert_error(commit(client, admin, up), 404)
    assert_error(upload(client, admin, up, prep.pack(ids[:1])), 404)

    # The same content again: nothing to send, and the next version number.
    r = begin(client, admin, prep.draft)
    assert r.status_code == 200
    again = base64.b64decode(r.json()["want"])
    assert again == bytes(len(want))
    r = commit(client, admin, r.json()["upload"])
    assert r.status_code == 200 and r.json() == {"version": 2}
    manifest_id2, manifest2 = served_manifest(client, srv, "course", "en")
    assert manifest_id2 != manifest_id
    assert manifest2.version == 2 and manifest2.parent_version == 1
    assert manifest2.files == manifest.files
    catalog = client.get("/v1/catalog").json()["bundles"]
    assert [v["version"] for v in catalog[0]["versions"]] == [1, 2]


# -- hostile uploads -------------------------------------------------------------------------
@pytest.fixture
def begun(client: TestClient, admin: str, tmp_path: Path) -> tuple[Prepared, str]:
    prep = prepare(make_course(tmp_path, 8))
    r = begin(client, admin, prep.draft)
    assert r.status_code == 200, r.text
    return prep, r.json()["upload"]


def test_frames_that_do_not_match_their_id_are_refused_and_not_stored(
    client: TestClient, srv: Repository, admin: str, begun: tuple[Prepared, str]
) -> None:
    prep, up = begun
    (a, a_len), (b, b_len) = prep.distinct[0], prep.distinct[1]
    raw_a = prep.data[a]
    forged = [
        bytes([RAW]) + raw_a[:-1] + bytes([raw_a[-1] ^ 1]),  # same length, other bytes
        bytes([RAW]) + raw_a[:-1],  # one byte short
        prep.objects[b],  # another chunk's object
        encode_object(raw_a[::-1], level=LEVEL),
        b"",  # no format byte
        bytes([0x07]) + raw_a,  # unknown format
        bytes([ZSTD]) + b"\x28\xb5\x2f\xfd" + b"junk" * 8,  # corrupt zstd
        bytes([ZSTD_DICT]) + bytes(10),  # too short for a dictionary id
        bytes([ZSTD_DICT]) + bytes.fromhex(random_id(6)) + b"\x28\xb5\x2f\xfd",  # unknown dict
    ]
    for obj in forged:
        assert_error(upload(client, admin, up, pack_bytes([(a, obj)])), 422)
        assert not srv.store.has(a)
    assert_error(upload(client, admin, up, pack_bytes([(b, bytes([RAW]) + raw_a)])), 422)
    assert not srv.store.has(b)
    # A frame that is not listed and does not hash to its id either.
    stranger = random_id(7)
    assert_error(
        upload(client, admin, up, pack_bytes([(stranger, bytes([RAW]) + b"x" * 1024)])), 422
    )
    assert not srv.store.has(stranger)
    assert_error(commit(client, admin, up), 422)

    # The upload is still usable with honest objects.
    assert upload(client, admin, up, prep.pack()).status_code == 200
    assert commit(client, admin, up).json() == {"version": 1}
    assert srv.store.has(a) and srv.store.has(b) and a_len > 0 and b_len > 0


def test_objects_the_draft_does_not_list_are_bounded(
    client: TestClient, srv: Repository, admin: str, begun: tuple[Prepared, str]
) -> None:
    _prep, up = begun
    rng = random.Random(9)
    big = rng.randbytes(MiB + 1)
    big_id = hashlib.sha256(big).hexdigest()
    assert_error(upload(client, admin, up, pack_bytes([(big_id, bytes([RAW]) + big)])), 422)
    assert not srv.store.has(big_id)

    packed_big = encode_object(bytes(2 * MiB), level=LEVEL)
    zero_id = hashlib.sha256(bytes(2 * MiB)).hexdigest()
    assert_error(upload(client, admin, up, pack_bytes([(zero_id, packed_big)])), 422)
    assert not srv.store.has(zero_id)

    not_a_dictionary = rng.randbytes(1024)
    r = upload(
        client,
        admin,
        up,
        pack_bytes(
            [(hashlib.sha256(not_a_dictionary).hexdigest(), bytes([RAW]) + not_a_dictionary)]
        ),
    )
    assert_error(r, 422)
    assert "only zstd dictionaries" in r.json()["error"]

    # Dictionary-shaped extras are bounded per upload, across requests too.
    extras = [DICTIONARY_MAGIC + rng.randbytes(1020) for _ in range(9)]
    for x in extras[:4]:
        body = pack_bytes([(hashlib.sha256(x).hexdigest(), bytes([RAW]) + x)])
        assert upload(client, admin, up, body).status_code == 200
    body = pack_bytes((hashlib.sha256(x).hexdigest(), bytes([RAW]) + x) for x in extras[4:])
    r = upload(client, admin, up, body)
    assert_error(r, 422)
    assert "does not list" in r.json()["error"]


def test_zstd_objects_declaring_a_huge_size_are_refused(
    client: TestClient, srv: Repository, admin: str, begun: tuple[Prepared, str]
) -> None:
    prep, up = begun
    listed = prep.distinct[0][0]
    for size in (2**40, 2**63, MiB + 1):
        bomb = zstd_declaring(size)
        assert_error(upload(client, admin, up, pack_bytes([(listed, bomb)])), 422)
        assert not srv.store.has(listed)
        unlisted = random_id(size % 1000)
        assert_error(upload(client, admin, up, pack_bytes([(unlisted, bomb)])), 422)
        assert not srv.store.has(unlisted)


def test_malformed_pack_bodies_are_refused(
    client: TestClient, admin: str, begun: tuple[Prepared, str]
) -> None:
    prep, up = begun
    good = prep.pack()
    first = prep.distinct[0][0]
    frame_one = frame(first, prep.objects[first])
    cases = {
        "truncated": (good[:-10], "cut short"),
        "no trailer": (good[:-36], "cut short"),
        "empty body": (b"", "cut short"),
        "magic only": (MAGIC, "cut short"),
        "bad magic": (b"SATPACK\x02" + good[8:], "magic"),
        "not a pack": (b"PK\x03\x04" + bytes(60), "magic"),
        "data after trailer": (good + b"x", "after its trailer"),
        "trailer count": (MAGIC + frame_one + bytes(32) + (5).to_bytes(4, "big"), "trailer"),
        "huge frame": (MAGIC + bytes.fromhex(first) + (2**32 - 1).to_bytes(4, "big"), "exceeds"),
    }
    for name, (body, message) in cases.items():
        r = upload(client, admin, up, body)
        assert_error(r, 422)
        assert message in r.json()["error"], name


HOSTILE_DRAFTS: dict[str, bytes] = {
    "not canonical: spaces": json.dumps(
        draft_doc([file_doc("a.txt", b"hello")]), sort_keys=True, indent=1
    ).encode(),
    "not canonical: key order": json.dumps(
        {"title": "T", "files": [], "chunker": SMALL.params.to_json()}, separators=(",", ":")
    ).encode(),
    "duplicate key": b'{"chunker":{},"files":[],"title":"a","title":"b"}',
    "not json": b"\x00\x01 not json",
    "not an object": canonical.encode([1, 2, 3]),
    "dot-dot path": canonical.encode(draft_doc([file_doc("a/../b.txt", b"hello")])),
    "escaping path": canonical.encode(draft_doc([file_doc("../escape.txt", b"hello")])),
    "absolute path": canonical.encode(draft_doc([file_doc("/etc/passwd", b"hello")])),
    "backslash path": canonical.encode(draft_doc([file_doc("..\\evil.txt", b"hello")])),
    "symlink mode": canonical.encode(
        draft_doc([file_doc("link", b"hello", mode=0o120777)])
    ),  # 41471
    "setuid mode": canonical.encode(draft_doc([file_doc("run", b"hello", mode=0o4755)])),
    "lengths do not sum": canonical.encode(draft_doc([{**file_doc("a.txt", b"hello"), "size": 6}])),
    "duplicate path": canonical.encode(
        draft_doc([file_doc("a.txt", b"hello"), file_doc("a.txt", b"hello")])
    ),
    "float": b'{"chunker":{},"files":[],"title":1.5}',
    "bad chunk id": canonical.encode(
        draft_doc([{**file_doc("a.txt", b"hello"), "chunks": [["../../x", 5]]}])
    ),
}


# Why each draft must be refused (a substring of the error), so no case passes by accident.
DRAFT_REASONS = {
    "not canonical: spaces": "canonical form",
    "not canonical: key order": "canonical form",
    "duplicate key": "duplicate key",
    "not json": "not valid JSON",
    "not an object": "must be an object",
    "dot-dot path": "'..' component",
    "escaping path": "'..' component",
    "absolute path": "absolute path",
    "backslash path": "backslash",
    "symlink mode": "mode 41471",
    "setuid mode": "mode 2541",
    "lengths do not sum": "add up to 5, not its size 6",
    "duplicate path": "appears twice",
    "float": "floating-point",
    "bad chunk id": "64 lowercase hex",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_DRAFTS))
def test_hostile_drafts_are_refused(client: TestClient, admin: str, name: str) -> None:
    r = begin(client, admin, HOSTILE_DRAFTS[name])
    assert_error(r, 422)
    assert DRAFT_REASONS[name] in r.json()["error"]
    assert client.get("/v1/catalog").json()["bundles"] == []


def test_a_draft_over_the_manifest_limit_is_refused_unread(client: TestClient, admin: str) -> None:
    body = one_chunk_draft(b"hello")
    headers = {**auth(admin), "Content-Length": str(64 * MiB + 1)}
    r = client.post("/v1/publish/course/en", content=body, headers=headers)
    assert_error(r, 413)


@pytest.mark.parametrize(
    ("bundle", "locale"),
    [
        ("UPPER", "en"),
        ("..%2Fx", "en"),
        ("%2E%2E", "en"),
        ("a..b", "en"),
        ("-dash", "en"),
        ("x" * 65, "en"),
        ("course", "EN"),
        ("course", "en_US"),
        ("course", "english"),
        ("course", "..%2F..%2Fetc"),
        ("a%00b", "en"),
    ],
)
def test_invalid_bundle_or_locale_is_refused(
    client: TestClient, admin: str, bundle: str, locale: str
) -> None:
    r = client.post(
        f"/v1/publish/{bundle}/{locale}", content=one_chunk_draft(b"hi"), headers=auth(admin)
    )
    assert r.status_code in (400, 404, 422), (r.status_code, r.text)
    if bundle == "UPPER" or locale == "EN":
        assert_error(r, 400)
    assert client.get("/v1/catalog").json()["bundles"] == []


# -- catalog, key, health --------------------------------------------------------------------
def test_catalog_key_and_health(client: TestClient, srv: Repository, tmp_path: Path) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    empty = client.get("/v1/catalog").json()
    assert empty == {"bundles": [], "publisher": srv.key.public.to_json()}

    srv.publishing.publish_folder(
        make_course(tmp_path, 1), bundle="course", locale="en", title="Course"
    )
    srv.publishing.publish_folder(
        make_course(tmp_path, 2), bundle="course", locale="en", title="Course 2"
    )
    srv.publishing.publish_folder(
        make_course(tmp_path, 3), bundle="course", locale="uk", title="Курс"
    )
    srv.publishing.publish_folder(
        make_course(tmp_path, 4), bundle="algebra", locale="en", title="Algebra"
    )

    catalog = client.get("/v1/catalog").json()
    assert catalog["publisher"] == srv.key.public.to_json()
    lines = [(b["bundle"], b["locale"]) for b in catalog["bundles"]]
    assert lines == [("algebra", "en"), ("course", "en"), ("course", "uk")]
    for line in catalog["bundles"]:
        entry = current_index(client, srv, line["bundle"], line["locale"])[1].line
        assert line["latest_version"] == entry.version == len(line["versions"])
        assert [v["version"] for v in line["versions"]] == list(range(1, entry.version + 1))
        assert line["versions"][-1]["manifest"] == entry.manifest
        assert line["title"] == entry.title
        for v in line["versions"]:
            assert client.get(f"/v1/manifests/{v['manifest']}").status_code == 200
            assert v["files"] == 5 and v["size"] == sum(len(d) for d in course_files(1).values())
    assert catalog["bundles"][2]["title"] == "Курс"

    key = client.get("/v1/key").json()
    assert key["keyid"] == srv.key.public.keyid
    assert key["fingerprint"] == srv.key.public.fingerprint
    assert key["scheme"] == "ed25519"
    assert base64.b64decode(key["public_key"]) == srv.key.public.raw
    assert key["fingerprint"].replace(":", "") == hashlib.sha256(srv.key.public.raw).hexdigest()


# -- regressions (each once a bug) ----------------------------------------------------------
def test_pack_length_stays_exact_after_a_refused_batch_and_a_reupload(
    client: TestClient, srv: Repository, admin: str, tmp_path: Path
) -> None:
    prep = prepare(make_course(tmp_path, 12))
    up = begin(client, admin, prep.draft).json()["upload"]
    (a, _), (b, _) = prep.distinct[0], prep.distinct[1]
    raw_a = bytes([RAW]) + prep.data[a]
    zstd_a = encode_object(prep.data[a], level=LEVEL)
    assert zstd_a[0] == ZSTD and len(zstd_a) != len(raw_a)

    # One batch: a good frame for A, then a corrupt frame for B. Refused as a whole.
    assert_error(upload(client, admin, up, pack_bytes([(a, zstd_a), (b, raw_a)])), 422)
    # The client retries with A stored raw this time (any other honest encoding will do).
    objects = [(cid, raw_a if cid == a else prep.objects[cid]) for cid, _ in prep.distinct]
    assert upload(client, admin, up, pack_bytes(objects)).status_code == 200
    assert commit(client, admin, up).json() == {"version": 1}

    r = client.post("/v1/pack", json={"chunks": [a]})
    assert r.status_code == 200
    assert int(r.headers["content-length"]) == len(r.content)


def test_concurrent_commits_of_one_upload_publish_one_version(
    client: TestClient,
    srv: Repository,
    admin: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prep = prepare(make_course(tmp_path, 13))
    up = begin(client, admin, prep.draft).json()["upload"]
    assert upload(client, admin, up, prep.pack()).status_code == 200

    # Make the interleaving deterministic: the first commit to write its manifest waits
    # until both requests have looked their upload up.
    lookups = [0]
    both_looked = threading.Event()
    lock = threading.Lock()
    real_upload, real_put = srv.publishing._upload, srv.store.put

    def counted_upload(who: object, upload_id: str) -> object:
        result = real_upload(who, upload_id)
        with lock:
            lookups[0] += 1
            if lookups[0] >= 2:
                both_looked.set()
        return result

    def waiting_put(cid: str, obj: bytes) -> bool:
        both_looked.wait(timeout=5)
        return real_put(cid, obj)

    monkeypatch.setattr(srv.publishing, "_upload", counted_upload)
    monkeypatch.setattr(srv.store, "put", waiting_put)

    results: list[int] = []

    def go() -> None:
        results.append(commit(client, admin, up).status_code)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [200, 404], results
    catalog = client.get("/v1/catalog").json()["bundles"]
    assert [v["version"] for v in catalog[0]["versions"]] == [1]


_DEEP = b"[" * 100_000


@pytest.mark.parametrize(
    ("url", "body", "token"),
    [
        pytest.param(
            "/v1/pack",
            _DEEP,
            False,
            id="pack-deep-nesting",
        ),
        pytest.param(
            "/v1/uploads/x/commit",
            b"[" * 60_000,
            True,
            id="commit-deep-nesting",
        ),
        pytest.param(
            "/v1/publish/course/en",
            _DEEP,
            True,
            id="draft-deep-nesting",
        ),
        pytest.param(
            "/v1/publish/course/en",
            b'{"title":' + b"1" * 5000 + b"}",
            True,
            id="draft-huge-integer",
        ),
        pytest.param(
            "/v1/publish/course/en",
            b'{"title":"\\ud800"}',
            True,
            id="draft-lone-surrogate",
        ),
        pytest.param("/v1/pack", b'{"chunks":' + b"1" * 5000 + b"}", False, id="pack-huge-integer"),
        pytest.param("/v1/publish/course/en", b'{"title":NaN}', True, id="draft-nan"),
    ],
)
def test_pathological_json_is_a_client_error(
    client: TestClient, admin: str, url: str, body: bytes, token: bool
) -> None:
    r = client.post(url, content=body, headers=auth(admin) if token else {})
    assert r.status_code in (400, 422), (r.status_code, r.text[:200])


def test_an_object_naming_a_broken_dictionary_is_a_client_error(
    client: TestClient, srv: Repository, admin: str
) -> None:
    data = b"hello world, hello dictionary. " * 8
    cid = hashlib.sha256(data).hexdigest()
    up = begin(client, admin, one_chunk_draft(data)).json()["upload"]
    # Starts with the zstd dictionary magic, so zstd parses it as a (broken) full dictionary.
    broken = b"\x37\xa4\x30\xec" + random.Random(14).randbytes(2000)
    broken_id = hashlib.sha256(broken).hexdigest()
    compressed = zstandard.ZstdCompressor(write_content_size=True).compress(data)
    obj = bytes([ZSTD_DICT]) + bytes.fromhex(broken_id) + compressed
    r = upload(client, admin, up, pack_bytes([(broken_id, bytes([RAW]) + broken), (cid, obj)]))
    assert r.status_code == 422, (r.status_code, r.text[:200])
    assert not srv.store.has(cid)
