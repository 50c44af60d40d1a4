"""The read router's bounds, on both apps that mount it (``satchel serve`` and ``satchel share``):

- finding 3: a pack request that names one object many times gets it once (an 8 MB request
  once produced a 14.3 GB answer from the server and priced 13.1 GB on a relay);
- finding 5: a pack request body is read only up to its limit, chunked or not (a relay once
  held a whole 1 GiB body in memory).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from satchel.clients.share import create_share_app
from satchel.server.app import create_app
from satchel.sync.local import LocalStore
from satchel.sync.pack import read_pack
from satchel.sync.serving import MAX_PACK_IDS, MAX_PACK_REQUEST
from satchel.sync.updater import Updater

from harness.http import TestClient
from harness.repo import RepoFetcher, make_repository, publish, sample_files, write_tree


@pytest.fixture(params=["serve", "share"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[FastAPI, str]]:
    repo = make_repository(tmp_path / "srv")
    publish(repo, write_tree(tmp_path / "src", sample_files(4)))
    store = LocalStore(tmp_path / "relay", durable=False)
    Updater(store, RepoFetcher(repo)).sync("course", "en")
    ref = store.ref("course", "en")
    assert ref is not None
    chunk = store.load_manifest(ref.manifest).distinct_chunks()[-1][0]
    yield (create_app(repo) if request.param == "serve" else create_share_app(store)), chunk


def test_an_object_named_again_and_again_comes_once(app: tuple[FastAPI, str]) -> None:
    asgi, chunk = app
    body = {"chunks": [chunk] * MAX_PACK_IDS}  # ~7 MB of JSON, one distinct object
    assert len(json.dumps(body)) < MAX_PACK_REQUEST
    with TestClient(asgi) as client:
        dry = client.post("/v1/pack", json={**body, "dry_run": True})
        pack = client.post("/v1/pack", json=body)
        single = client.post("/v1/pack", json={"chunks": [chunk]})
    assert pack.status_code == 200, pack.text
    assert [f.chunk_id for f in read_pack([pack.content])] == [chunk]
    assert pack.content == single.content
    assert dry.json() == {"objects": 1, "bytes": len(single.content)}


def _post_endless(asgi: FastAPI, piece: int, pieces: int) -> tuple[int, int]:
    """POST /v1/pack with a chunked body of ``pieces`` x ``piece`` bytes, straight into the
    app; returns (status, bytes the app pulled from the body)."""
    pulled = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= piece * pieces:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += piece
        return {"type": "http.request", "body": b" " * piece, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/pack",
        "raw_path": b"/v1/pack",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(asgi(scope, receive, send))  # type: ignore[arg-type]
    return status, pulled


def test_a_chunked_pack_request_is_read_only_to_its_limit(app: tuple[FastAPI, str]) -> None:
    asgi, _chunk = app
    piece = 64 * 1024
    status, pulled = _post_endless(asgi, piece, pieces=16 * 1024)  # 1 GiB offered
    assert status == 413
    assert pulled <= MAX_PACK_REQUEST + piece  # refused the moment it passed the limit
