"""Deltas over HTTP, in process: manifest deltas, ready-made update packs, packs with a base.

Three features cut what an update costs on a thin link, and all three are judged here by what
a client or an HTTP cache sees through FastAPI's TestClient:

* ``GET /v1/manifests/{new}?from={old}``: the manifest as a ``0x04`` delta against the old
  manifest envelope, when that is smaller;
* ``GET /v1/deltas/{from}/{to}``: a pack built at commit time for the last K versions, with
  immutable caching headers, so a school proxy can serve it to a whole classroom;
* ``POST /v1/pack`` with ``"base"``: changed chunks as ``0x03`` range deltas against files of
  the version the client holds.

Every delta is decoded here with the client-side code (``content.delta``, ``sync.delta``)
from objects fetched over HTTP, never from the server's own store, and checked against the
SHA-256 the signed manifest names. Trees are small, text-heavy and generated from fixed seeds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import zstandard
from satchel.content import canonical
from satchel.content.chunking import Chunker, ChunkerParams
from satchel.content.delta import (
    DELTA_OF,
    DELTA_RANGE,
    MAX_REFERENCE,
    decode_delta,
    object_ref,
    range_ref,
)
from satchel.content.errors import FormatError, IntegrityError, UsageError
from satchel.content.index import IndexEntry, ReleaseIndex, parse_index
from satchel.content.manifest import Manifest, parse_manifest
from satchel.content.objects import RAW, ZSTD, decode_object, verify_object
from satchel.content.signing import verify_envelope
from satchel.server.app import create_app
from satchel.server.repository import Repository
from satchel.sync import delta as sync_delta
from satchel.sync.delta import FileReader
from satchel.sync.pack import MAGIC, PACK_MEDIA_TYPE, PackFrame, pack_bytes, read_pack
from satchel.sync.plan import encode_want
from satchel.sync.receive import receive_frames
from satchel.sync.serving import etag as etag_of
from satchel.sync.store import FolderChunkStore, MemoryChunkStore, store_lookup

from harness.http import IMMUTABLE, TestClient
from harness.repo import admin_target, publish, text_bytes, write_tree

CHUNKER = Chunker(ChunkerParams(min_size=2048, avg_size=8192, max_size=32768))
LEVEL = 3


# -- trees and versions ------------------------------------------------------------------------
def tree_v1() -> dict[str, bytes]:
    rng = random.Random(41)
    return {
        "README.md": text_bytes(rng, 3_000),
        "chapters/01-intro.html": text_bytes(rng, 40_000),
        "chapters/02-data.html": text_bytes(rng, 40_000),
        "chapters/03-more.html": text_bytes(rng, 30_000),
        "media/photo.bin": rng.randbytes(12_000),
        "tools/run.sh": b"#!/bin/sh\necho hello\n",
    }


def edit(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new) :]


def tree_v2() -> dict[str, bytes]:
    files = tree_v1()
    files["chapters/02-data.html"] = edit(files["chapters/02-data.html"], 20_000, b"FIXED TYPO")
    files["README.md"] += b"Now with a second chapter fix.\n"
    return files


def tree_v3() -> dict[str, bytes]:
    files = tree_v2()
    files["chapters/01-intro.html"] = edit(files["chapters/01-intro.html"], 9_000, b"One word.")
    return files


@dataclass(frozen=True)
class Version:
    number: int
    manifest_id: str
    size: int  # envelope length
    files: dict[str, bytes]


@dataclass(frozen=True)
class Line:
    """One line (course/en) published three times into one repository."""

    srv: Repository
    versions: dict[int, Version]
    index_after_v2: bytes
    index_after_v3: bytes
    secrets: tuple[bytes, ...]


def entry_of(index_bytes: bytes, bundle: str = "course", locale: str = "en") -> IndexEntry:
    _env, index = parse_index(index_bytes)
    entry = index.entry(bundle, locale)
    assert entry is not None
    return entry


def publish_version(srv: Repository, root: Path, files: dict[str, bytes]) -> Version:
    write_tree(root, files)
    result = publish(srv, root, chunker=CHUNKER, level=LEVEL)
    entry = entry_of(srv.source.index("course", "en")[0])
    assert entry.version == result.version
    return Version(result.version, entry.manifest, entry.size, files)


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Line:
    base = tmp_path_factory.mktemp("delta-line")
    data = base / "srv"
    srv = Repository(data, store=FolderChunkStore(data / "objects", durable=False))
    v1 = publish_version(srv, base / "v1", tree_v1())
    v2 = publish_version(srv, base / "v2", tree_v2())
    after_v2 = srv.source.index("course", "en")[0]
    v3 = publish_version(srv, base / "v3", tree_v3())
    secrets = (
        (data / "signing-key.pem").read_bytes(),
        (data / "objects" / "store.json").read_bytes(),
    )
    return Line(srv, {1: v1, 2: v2, 3: v3}, after_v2, srv.source.index("course", "en")[0], secrets)


@pytest.fixture(scope="module")
def client(line: Line) -> Iterator[TestClient]:
    # Server exceptions become 500 responses, so "never 500" is an assertion, not a crash.
    with TestClient(create_app(line.srv), raise_server_exceptions=False) as c:
        yield c


def random_id(seed: int) -> str:
    return hashlib.sha256(f"absent-{seed}".encode()).hexdigest()


def assert_error(r: httpx.Response, *statuses: int) -> None:
    assert r.status_code in statuses, (r.status_code, r.text)
    assert isinstance(r.json().get("error"), str), r.text


# -- client-side helpers (everything fetched over HTTP and verified) ----------------------------
def fetch_manifest(client: TestClient, line: Line, v: Version) -> Manifest:
    r = client.get(f"/v1/manifests/{v.manifest_id}")
    assert r.status_code == 200, r.text
    envelope = decode_object(r.content, v.size)
    assert hashlib.sha256(envelope).hexdigest() == v.manifest_id
    env, manifest = parse_manifest(envelope)
    verify_envelope(env, line.srv.key.public, what="manifest")
    return manifest


def envelope_bytes(client: TestClient, v: Version) -> bytes:
    r = client.get(f"/v1/manifests/{v.manifest_id}")
    assert r.status_code == 200, r.text
    return decode_object(r.content, v.size)


def holding(client: TestClient, manifest: Manifest) -> MemoryChunkStore:
    """A client store holding every object of ``manifest``, fetched and verified one by one."""
    store = MemoryChunkStore()
    lookup = store_lookup(store, dict(manifest.dictionaries))
    for cid, length in manifest.distinct_chunks():
        r = client.get(f"/v1/chunks/{cid}")
        assert r.status_code == 200, r.text
        verify_object(r.content, cid, length, lookup)
        store.put(cid, r.content)
    return store


def reader_over(manifest: Manifest, store: MemoryChunkStore) -> FileReader:
    return FileReader(manifest, store, store_lookup(store, dict(manifest.dictionaries)))


def rebuild(manifest: Manifest, store: MemoryChunkStore) -> dict[str, bytes]:
    lookup = store_lookup(store, dict(manifest.dictionaries))
    return {
        f.path: b"".join(decode_object(store.get(cid), n, lookup) for cid, n in f.chunks)
        for f in manifest.files
    }


def missing_from(new: Manifest, old: Manifest) -> list[tuple[str, int]]:
    held = {cid for cid, _ in old.distinct_chunks()}
    return [(cid, n) for cid, n in new.distinct_chunks() if cid not in held]


def want_body(new: Manifest, new_id: str, wanted: list[tuple[str, int]]) -> dict[str, str]:
    bitmap = encode_want(new.distinct_chunks(), {cid for cid, _ in wanted})
    return {"manifest": new_id, "want": base64.b64encode(bitmap).decode("ascii")}


def frames_of(body: bytes) -> list[PackFrame]:
    return list(read_pack([body]))


def with_range(obj: bytes, *, file: int, offset: int, length: int) -> bytes:
    """A range delta with another reference header and the same zstd frame."""
    assert obj[0] == DELTA_RANGE
    return bytes([DELTA_RANGE]) + struct.pack(">IQI", file, offset, length) + obj[17:]


# -- GET /v1/manifests/{new}?from={old} --------------------------------------------------------
@pytest.mark.parametrize(("old", "new"), [(1, 2), (2, 3), (1, 3)])
def test_a_manifest_from_an_older_one_is_a_smaller_delta_that_decodes(
    client: TestClient, line: Line, old: int, new: int
) -> None:
    o, n = line.versions[old], line.versions[new]
    plain = client.get(f"/v1/manifests/{n.manifest_id}")
    assert plain.status_code == 200
    url = f"/v1/manifests/{n.manifest_id}?from={o.manifest_id}"
    r = client.get(url, headers={"Accept-Encoding": "gzip, br, zstd"})
    assert r.status_code == 200, r.text
    obj = r.content
    assert obj[0] == DELTA_OF
    assert object_ref(obj) == o.manifest_id
    assert len(obj) < len(plain.content)
    assert len(obj) * 2 < len(plain.content), (len(obj), len(plain.content))

    envelope = decode_delta(obj, envelope_bytes(client, o), n.size)
    assert hashlib.sha256(envelope).hexdigest() == n.manifest_id
    env, manifest = parse_manifest(envelope)
    verify_envelope(env, line.srv.key.public, what="manifest")
    assert manifest.version == new

    etag = etag_of(n.manifest_id, "from", o.manifest_id)
    assert r.headers["etag"] == etag
    assert r.headers["cache-control"] == IMMUTABLE
    assert r.headers["accept-ranges"] == "bytes"
    assert "content-encoding" not in r.headers
    assert int(r.headers["content-length"]) == len(obj)

    for tag in (etag, f"W/{etag}", f'"{random_id(0)}", {etag}'):
        cached = client.get(url, headers={"If-None-Match": tag})
        assert cached.status_code == 304, tag
        assert cached.content == b""
        assert cached.headers["etag"] == etag
        assert cached.headers["cache-control"] == IMMUTABLE
    # The plain object's tag does not validate the delta: they are different bytes.
    other = client.get(url, headers={"If-None-Match": etag_of(n.manifest_id)})
    assert other.status_code == 200 and other.content == obj

    part = client.get(url, headers={"Range": "bytes=0-32"})
    assert part.status_code == 206
    assert part.content == obj[:33]
    assert part.headers["content-range"] == f"bytes 0-32/{len(obj)}"
    gone = client.get(url, headers={"Range": f"bytes={len(obj)}-"})
    assert gone.status_code == 416
    assert gone.headers["content-range"] == f"bytes */{len(obj)}"


def test_a_delta_from_a_newer_or_the_same_manifest_still_decodes(
    client: TestClient, line: Line
) -> None:
    # A client never asks this, but whatever the server answers must be right.
    for old, new in [(3, 1), (2, 1), (2, 2)]:
        o, n = line.versions[old], line.versions[new]
        r = client.get(f"/v1/manifests/{n.manifest_id}?from={o.manifest_id}")
        assert r.status_code == 200, (old, new, r.text)
        if r.content[0] == DELTA_OF:
            data = decode_delta(r.content, envelope_bytes(client, o), n.size)
        else:
            data = decode_object(r.content, n.size)
        assert hashlib.sha256(data).hexdigest() == n.manifest_id, (old, new)


def test_a_manifest_from_an_unknown_base_is_the_plain_object(
    client: TestClient, line: Line
) -> None:
    v2 = line.versions[2]
    plain = line.srv.store.get(v2.manifest_id)
    v1_manifest = fetch_manifest(client, line, line.versions[1])
    chunk = v1_manifest.distinct_chunks()[0][0]
    for base in (random_id(1), chunk):
        r = client.get(f"/v1/manifests/{v2.manifest_id}?from={base}")
        # A chunk id is not a manifest: plain object, or 404; never a delta, never a 500.
        assert r.status_code in (200, 404), (base, r.status_code, r.text)
        if r.status_code == 404:
            assert_error(r, 404)
            continue
        assert r.content == plain
        assert r.headers["etag"] == etag_of(v2.manifest_id)
        assert r.headers["cache-control"] == IMMUTABLE
        assert decode_object(r.content, v2.size)

    # A base that is not an id at all is the client's mistake, not the server's.
    for bad in ("xyz", "A" * 64, "a" * 63, "..%2F..%2Fsigning-key.pem", ""):
        r = client.get(f"/v1/manifests/{v2.manifest_id}?from={bad}")
        assert 400 <= r.status_code < 500 or r.content == plain, (bad, r.status_code)
        assert all(s not in r.content for s in line.secrets), bad

    # An unknown new manifest stays 404 whatever the base.
    r = client.get(f"/v1/manifests/{random_id(2)}?from={v2.manifest_id}")
    assert_error(r, 404)


# -- GET /v1/deltas/{from}/{to} ------------------------------------------------------------------
def test_the_index_lists_the_ready_made_deltas_newest_first(client: TestClient, line: Line) -> None:
    assert entry_of(line.index_after_v2).delta_from == (1,)
    assert entry_of(line.index_after_v3).delta_from == (2, 1)
    r = client.get("/v1/index/course/en")
    assert r.status_code == 200
    env, index = parse_index(r.content)
    verify_envelope(env, line.srv.key.public, what="release index")
    entry = index.entry("course", "en")
    assert entry is not None
    assert (entry.version, entry.manifest) == (3, line.versions[3].manifest_id)
    assert entry.delta_from == (2, 1)
    raw = json.loads(r.content)["signed"]["entries"][0]
    assert raw["delta_from"] == [2, 1]


@pytest.mark.parametrize(("old", "new"), [(1, 2), (1, 3), (2, 3)])
def test_a_ready_made_delta_rebuilds_the_new_version(
    client: TestClient, line: Line, old: int, new: int
) -> None:
    o, n = line.versions[old], line.versions[new]
    old_m, new_m = fetch_manifest(client, line, o), fetch_manifest(client, line, n)
    url = f"/v1/deltas/{o.manifest_id}/{n.manifest_id}"
    r = client.get(url, headers={"Accept-Encoding": "gzip, br, zstd"})
    assert r.status_code == 200, r.text
    body = r.content
    etag = etag_of(o.manifest_id, "to", n.manifest_id)
    assert r.headers["etag"] == etag  # strong: no W/ prefix
    assert r.headers["cache-control"] == IMMUTABLE
    assert r.headers["accept-ranges"] == "bytes"
    assert "content-encoding" not in r.headers
    assert int(r.headers["content-length"]) == len(body)
    cached = client.get(url, headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    assert client.get(url).content == body  # the same bytes every time: cacheable

    wanted = missing_from(new_m, old_m)
    assert wanted, "the edit must change some chunks"
    frames = frames_of(body)
    assert [f.chunk_id for f in frames] == [cid for cid, _ in wanted]
    assert any(f.obj[0] == DELTA_RANGE for f in frames), "edited text should travel as deltas"

    store = holding(client, old_m)
    base = reader_over(old_m, store)
    lengths = dict(wanted)
    lookup = store_lookup(store, dict(new_m.dictionaries))
    decoded: dict[str, bytes] = {}
    for f in frames:
        length = lengths[f.chunk_id]
        if f.obj[0] == DELTA_RANGE:
            ref = range_ref(f.obj)
            assert ref.file < len(old_m.files)
            data = decode_delta(f.obj, base.read(ref), length)
        else:
            data = verify_object(f.obj, f.chunk_id, length, lookup)
        assert hashlib.sha256(data).hexdigest() == f.chunk_id
        decoded[f.chunk_id] = data
    for cid, data in decoded.items():
        store.put(cid, bytes([RAW]) + data)
    assert rebuild(new_m, store) == n.files

    # Far smaller than the same objects sent whole.
    plain = client.post("/v1/pack", json=want_body(new_m, n.manifest_id, wanted))
    assert plain.status_code == 200
    assert len(body) * 3 < len(plain.content), (len(body), len(plain.content))


def test_a_ready_made_delta_serves_single_ranges(client: TestClient, line: Line) -> None:
    o, n = line.versions[1], line.versions[2]
    url = f"/v1/deltas/{o.manifest_id}/{n.manifest_id}"
    body = client.get(url).content
    size = len(body)
    etag = etag_of(o.manifest_id, "to", n.manifest_id)
    cases = {
        "bytes=0-7": (0, 7),
        "bytes=-36": (size - 36, size - 1),
        "bytes=8-": (8, size - 1),
        f"bytes=3-{size + 1000}": (3, size - 1),
    }
    for spec, (start, end) in cases.items():
        r = client.get(url, headers={"Range": spec})
        assert r.status_code == 206, (spec, r.text)
        assert r.headers["content-range"] == f"bytes {start}-{end}/{size}", spec
        assert r.content == body[start : end + 1]
        assert r.headers["etag"] == etag
    assert client.get(url, headers={"Range": "bytes=0-7"}).content == MAGIC
    frames = len(frames_of(body))
    assert client.get(url, headers={"Range": "bytes=-4"}).content == frames.to_bytes(4, "big")
    for spec in (f"bytes={size}-", f"bytes={size + 5}-{size + 9}", "bytes=-0"):
        r = client.get(url, headers={"Range": spec})
        assert r.status_code == 416, spec
        assert r.headers["content-range"] == f"bytes */{size}", spec
    invalid = client.get(url, headers={"Range": "bytes=9-3"})  # last before first: ignored
    assert invalid.status_code == 200 and invalid.content == body
    r = client.get(url, headers={"Range": "bytes=0-7", "If-None-Match": etag})
    assert r.status_code == 304


def test_unknown_pairs_and_malformed_ids_have_no_ready_made_delta(
    client: TestClient, line: Line
) -> None:
    v1, v2, v3 = (line.versions[i].manifest_id for i in (1, 2, 3))
    chunk = fetch_manifest(client, line, line.versions[1]).distinct_chunks()[0][0]
    for a, b in [(v2, v1), (v3, v1), (v1, v1), (random_id(3), v2), (v1, random_id(4)), (chunk, v2)]:
        assert_error(client.get(f"/v1/deltas/{a}/{b}"), 404)
    for bad in ("A" * 64, "g" * 64, "a" * 63, "a" * 65, "..", "..%2F..%2Fsigning-key.pem"):
        for url in (f"/v1/deltas/{bad}/{v2}", f"/v1/deltas/{v1}/{bad}"):
            r = client.get(url)
            # 404 like an absent delta, or 422 like a malformed chunk id; never a 500.
            assert r.status_code in (404, 422), (url, r.status_code, r.text)
            assert all(s not in r.content for s in line.secrets), url


@pytest.mark.parametrize("k", [0, 1])
def test_static_deltas_setting_limits_what_is_built(tmp_path: Path, k: int) -> None:
    data = tmp_path / "srv"
    srv = Repository(data, store=FolderChunkStore(data / "objects", durable=False), static_deltas=k)
    versions = [
        publish_version(srv, tmp_path / f"v{i}", files)
        for i, files in enumerate((tree_v1(), tree_v2(), tree_v3()), 1)
    ]
    ids = [v.manifest_id for v in versions]
    with TestClient(create_app(srv), raise_server_exceptions=False) as client:
        r = client.get("/v1/index/course/en")
        entry = entry_of(r.content)
        raw = json.loads(r.content)["signed"]["entries"][0]
        if k == 0:
            assert entry.delta_from == ()
            assert "delta_from" not in raw
            pairs_absent = [(0, 1), (0, 2), (1, 2)]
        else:
            # Each commit built the delta from the one version before it, and no other.
            assert entry.delta_from == (2,)
            pairs_absent = [(0, 2)]
            for a, b in [(0, 1), (1, 2)]:
                assert client.get(f"/v1/deltas/{ids[a]}/{ids[b]}").status_code == 200
        for a, b in pairs_absent:
            assert_error(client.get(f"/v1/deltas/{ids[a]}/{ids[b]}"), 404)
        # Manifest deltas and packs with a base do not depend on the setting.
        r = client.get(f"/v1/manifests/{ids[2]}?from={ids[1]}")
        assert r.status_code == 200 and r.content[0] == DELTA_OF


# -- POST /v1/pack with "base" --------------------------------------------------------------------
def test_a_pack_with_a_base_sends_edited_chunks_as_range_deltas(
    client: TestClient, line: Line
) -> None:
    o, n = line.versions[1], line.versions[2]
    old_m, new_m = fetch_manifest(client, line, o), fetch_manifest(client, line, n)
    wanted = missing_from(new_m, old_m)
    request = want_body(new_m, n.manifest_id, wanted)

    plain = client.post("/v1/pack", json=request)
    assert plain.status_code == 200
    assert int(plain.headers["content-length"]) == len(plain.content)
    r = client.post("/v1/pack", json={**request, "base": o.manifest_id})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].split(";")[0] == PACK_MEDIA_TYPE
    assert r.headers["cache-control"] == "no-store"
    assert "content-length" not in r.headers  # deltas are sized as they are made
    assert "content-encoding" not in r.headers
    assert len(r.content) * 3 < len(plain.content), (len(r.content), len(plain.content))

    frames = frames_of(r.content)
    assert [f.chunk_id for f in frames] == [cid for cid, _ in wanted]
    plain_objects = {f.chunk_id: f.obj for f in frames_of(plain.content)}
    deltas = [f for f in frames if f.obj[0] == DELTA_RANGE]
    assert deltas, "the edited text chunks should come as range deltas"
    for f in frames:
        if f.obj[0] != DELTA_RANGE:
            assert f.obj == plain_objects[f.chunk_id]  # not smaller as a delta: sent as stored
        else:
            assert len(f.obj) < len(plain_objects[f.chunk_id])

    # The real receiving code: every frame verified and kept, the new version complete.
    store = holding(client, old_m)
    count = receive_frames(
        frames,
        dict(wanted),
        store,
        dictionaries=dict(new_m.dictionaries),
        base=reader_over(old_m, store),
    )
    assert count == len(wanted)
    assert all(store.has(cid) for cid, _ in new_m.distinct_chunks())
    assert rebuild(new_m, store) == n.files


def test_a_pack_with_a_base_builds_each_delta_once(
    client: TestClient, line: Line, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many laptops on the same old version ask for the same deltas: the server builds each
    once (goal 4 of issue 16) and sends the same bytes every time."""
    o, n = line.versions[1], line.versions[3]
    old_m, new_m = fetch_manifest(client, line, o), fetch_manifest(client, line, n)
    request = {
        **want_body(new_m, n.manifest_id, missing_from(new_m, old_m)),
        "base": o.manifest_id,
    }
    built: list[int] = []
    real = sync_delta.encode_range_delta

    def counting(*args: Any) -> bytes:
        built.append(1)
        return real(*args)

    monkeypatch.setattr(sync_delta, "encode_range_delta", counting)
    first = client.post("/v1/pack", json=request)
    assert first.status_code == 200 and built
    once = len(built)
    again = client.post("/v1/pack", json=request)
    assert again.content == first.content and len(built) == once
    assert any(f.obj[0] == DELTA_RANGE for f in frames_of(again.content))


def test_a_pack_with_an_unknown_base_sends_plain_objects(client: TestClient, line: Line) -> None:
    o, n = line.versions[1], line.versions[3]
    old_m, new_m = fetch_manifest(client, line, o), fetch_manifest(client, line, n)
    request = want_body(new_m, n.manifest_id, missing_from(new_m, old_m))
    plain = client.post("/v1/pack", json=request)
    assert plain.status_code == 200
    chunk = old_m.distinct_chunks()[0][0]
    for base in (random_id(5), chunk):
        r = client.post("/v1/pack", json={**request, "base": base})
        assert r.status_code == 200, (base, r.text)
        assert r.content == plain.content
        assert all(f.obj[0] in (0x00, 0x01, 0x02) for f in frames_of(r.content))
    for bad in ("A" * 64, "xyz", 7, None, ["a" * 64]):
        r = client.post("/v1/pack", json={**request, "base": bad})
        # A base that is not an id: refused as a client error, or ignored; never a 500.
        assert r.status_code in (200, 400, 422), (bad, r.status_code, r.text)
        if r.status_code == 200:
            assert r.content == plain.content


def test_a_range_delta_with_a_bad_reference_is_refused_by_the_client(
    client: TestClient, line: Line
) -> None:
    o, n = line.versions[1], line.versions[2]
    old_m, new_m = fetch_manifest(client, line, o), fetch_manifest(client, line, n)
    wanted = missing_from(new_m, old_m)
    r = client.post(
        "/v1/pack", json={**want_body(new_m, n.manifest_id, wanted), "base": o.manifest_id}
    )
    good = next(f for f in frames_of(r.content) if f.obj[0] == DELTA_RANGE)
    ref = range_ref(good.obj)
    entry = old_m.files[ref.file]
    other = next(
        i for i, f in enumerate(old_m.files) if i != ref.file and 0 < f.size <= MAX_REFERENCE
    )

    def receive(obj: bytes, *, base: bool = True) -> MemoryChunkStore:
        store = holding(client, old_m)
        reader = reader_over(old_m, store) if base else None
        receive_frames([PackFrame(good.chunk_id, obj)], dict(wanted), store, base=reader)
        return store

    assert receive(good.obj).has(good.chunk_id)  # the untouched frame is fine

    refused = {
        "file index past the end": with_range(
            good.obj, file=len(old_m.files), offset=0, length=ref.length
        ),
        "file index 2**32-1": with_range(good.obj, file=2**32 - 1, offset=0, length=ref.length),
        "range past the file end": with_range(good.obj, file=ref.file, offset=1, length=entry.size),
        "offset past the file end": with_range(
            good.obj, file=ref.file, offset=entry.size, length=1
        ),
        "offset near 2**64": with_range(good.obj, file=ref.file, offset=2**64 - 1, length=1),
        "empty reference": with_range(good.obj, file=ref.file, offset=0, length=0),
        "reference over 1 MiB": with_range(
            good.obj, file=ref.file, offset=0, length=MAX_REFERENCE + 1
        ),
        "header cut short": good.obj[:10],
    }
    for why, obj in refused.items():
        store = holding(client, old_m)
        with pytest.raises(FormatError):
            receive_frames(
                [PackFrame(good.chunk_id, obj)],
                dict(wanted),
                store,
                base=reader_over(old_m, store),
            )
        assert not store.has(good.chunk_id), why

    # No base named: a delta cannot be undone.
    with pytest.raises(FormatError):
        receive(good.obj, base=False)
    # A reference to another file of the base decodes to the wrong bytes (or not at all).
    wrong = with_range(good.obj, file=other, offset=0, length=old_m.files[other].size)
    store = holding(client, old_m)
    with pytest.raises((FormatError, IntegrityError)):
        receive_frames(
            [PackFrame(good.chunk_id, wrong)], dict(wanted), store, base=reader_over(old_m, store)
        )
    assert not store.has(good.chunk_id)


# -- product bugs ----------------------------------------------------------------------------------
def publish_one_object(srv: Repository, bundle: str, data: bytes, obj: bytes) -> None:
    """Publish a one-file version whose single chunk is uploaded as the stored object ``obj``."""
    cid = hashlib.sha256(data).hexdigest()
    draft = {
        "title": "One file",
        "chunker": Chunker(
            ChunkerParams(min_size=1 << 20, avg_size=1 << 21, max_size=1 << 23)
        ).params.to_json(),
        "files": [
            {
                "path": "pack.bin",
                "size": len(data),
                "mode": 0o644,
                "media_type": "application/octet-stream",
                "chunks": [[cid, len(data)]],
            }
        ],
    }
    target = admin_target(srv)
    begun = target.begin(bundle, "en", canonical.encode(draft))
    target.upload(begun.upload_id, iter([pack_bytes([(cid, obj)])]), None)
    target.commit(begun.upload_id, "")


def test_a_ready_made_delta_survives_a_chunk_with_the_same_bytes(tmp_path: Path) -> None:
    # Learn the delta's bytes from one server (they depend only on the two trees) ...
    first = Repository(tmp_path / "a", store=MemoryChunkStore())
    a1 = publish_version(first, tmp_path / "a1", tree_v1())
    a2 = publish_version(first, tmp_path / "a2", tree_v2())
    delta = first.source.static_delta(a1.manifest_id, a2.manifest_id)
    assert delta.startswith(MAGIC)

    # ... then, on another, some teacher publishes a file with those bytes first (zstd-encoded,
    # a valid encoding the server accepts) before the course's two versions.
    srv = Repository(tmp_path / "b", store=MemoryChunkStore())
    frame = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(delta)
    publish_one_object(srv, "other", delta, bytes([ZSTD]) + frame)
    b1 = publish_version(srv, tmp_path / "b1", tree_v1())
    b2 = publish_version(srv, tmp_path / "b2", tree_v2())
    with TestClient(create_app(srv), raise_server_exceptions=False) as client:
        r = client.get(f"/v1/deltas/{b1.manifest_id}/{b2.manifest_id}")
    assert r.status_code == 200
    assert r.content == delta


def test_more_static_deltas_than_an_index_may_list_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"0\.\.16"):
        Repository(tmp_path / "bad", store=MemoryChunkStore(), static_deltas=17)


def test_many_static_deltas_still_give_an_index_clients_accept(tmp_path: Path) -> None:
    srv = Repository(tmp_path / "srv", store=MemoryChunkStore(), static_deltas=16)
    root = tmp_path / "tree"
    for i in range(18):
        write_tree(root, {"a.txt": f"version {i}\n".encode() * 50})
        publish(srv, root, chunker=CHUNKER, level=LEVEL)
    with TestClient(create_app(srv), raise_server_exceptions=False) as client:
        body = client.get("/v1/index/course/en").content
    index: ReleaseIndex = parse_index(body)[1]
    assert index.entries[0].version == 18


def test_a_publish_succeeds_even_when_its_ready_made_deltas_cannot_be_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = Repository(tmp_path / "srv", store=MemoryChunkStore())
    root = tmp_path / "tree"
    write_tree(root, {"a.txt": b"first version\n" * 100})
    publish(srv, root, chunker=CHUNKER, level=LEVEL)

    def broken(*_args: object, **_kwargs: object) -> tuple[bytes, int]:
        raise FormatError("simulated failure while building a delta")

    monkeypatch.setattr("satchel.server.publishing.static_pack", broken)
    write_tree(root, {"a.txt": b"second version\n" * 100})
    assert publish(srv, root, chunker=CHUNKER, level=LEVEL).version == 2
    index: ReleaseIndex = parse_index(srv.source.index("course", "en")[0])[1]
    assert (index.entries[0].version, index.entries[0].delta_from) == (2, ())
