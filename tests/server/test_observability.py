"""Operations: /readyz, Prometheus /metrics, structured logs that never carry a secret.

In-process tests (TestClient) check exact numbers: bytes counted per route equal the bytes the
client received, 304s and static vs dynamic packs are told apart, unknown paths share one
label. One end-to-end test runs ``satchel serve --log-format json`` with the real CLI publishing
and syncing through it, then reads the server's stderr: every line is one JSON object, and
the publishing token appears nowhere.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from satchel.server.app import create_app
from satchel.server.observability import (
    ACCESS_LOGGER,
    JsonFormatter,
    configure_logging,
)
from satchel.server.repository import Repository
from satchel.sync.plan import encode_want
from satchel.sync.store import MemoryChunkStore
from sqlmodel import create_engine

from harness.e2e import SatchelServer, publish, run_cli, sync_json
from harness.http import TestClient
from harness.repo import FAST_LEVEL, SMALL_CHUNKER, text_bytes, write_tree
from harness.repo import publish as publish_in_process

BUNDLE = "course"


def tree(seed: int, edit: bool = False) -> dict[str, bytes]:
    rng = random.Random(seed)
    files = {
        "README.md": text_bytes(rng, 2_000),
        "lessons/a.html": text_bytes(rng, 30_000),
        "media/b.bin": rng.randbytes(10_000),
    }
    if edit:
        page = files["lessons/a.html"]
        files["lessons/a.html"] = page[:12_000] + b"A corrected line. " + page[12_000:]
    return files


class Published:
    def __init__(self, repo: Repository, m1: str, m2: str) -> None:
        self.repo, self.m1, self.m2 = repo, m1, m2


@pytest.fixture
def published(tmp_path: Path) -> Published:
    repo = Repository(tmp_path / "srv", store=MemoryChunkStore())
    for n, edit in ((1, False), (2, True)):
        src = write_tree(tmp_path / f"v{n}", tree(3, edit))
        publish_in_process(repo, src, bundle=BUNDLE, chunker=SMALL_CHUNKER, level=FAST_LEVEL)
    catalog = repo.reads.catalog()[0].versions
    return Published(repo, catalog[0].manifest, catalog[1].manifest)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(
    page: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return page.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def client(published: Published) -> Iterator[TestClient]:
    with TestClient(create_app(published.repo), raise_server_exceptions=False) as c:
        yield c


# -- /metrics -----------------------------------------------------------------------------------
def test_metrics_count_requests_bytes_and_cache_friendly_answers(
    client: TestClient, published: Published
) -> None:
    index = client.get("/v1/index/course/en")
    again = client.get("/v1/index/course/en", headers={"If-None-Match": index.headers["etag"]})
    assert again.status_code == 304
    manifest = client.get(f"/v1/manifests/{published.m2}")
    delta = client.get(f"/v1/deltas/{published.m1}/{published.m2}")
    assert delta.status_code == 200 and len(delta.content) > 0
    cached = client.get(
        f"/v1/deltas/{published.m1}/{published.m2}",
        headers={"If-None-Match": delta.headers["etag"]},
    )
    assert cached.status_code == 304
    distinct = published.repo.source.manifest(published.m2).distinct_chunks()
    want = base64.b64encode(encode_want(distinct, {cid for cid, _ in distinct})).decode()
    pack = client.post("/v1/pack", json={"manifest": published.m2, "want": want})
    assert pack.status_code == 200 and len(pack.content) > 10_000
    chunk = client.get(f"/v1/chunks/{distinct[0][0]}")
    assert client.get("/v1/chunks/not-an-id").status_code in (400, 422)

    page = samples(client.get("/metrics").text)
    req = "satchel_http_requests_total"
    assert value(page, req, method="GET", route="/v1/index/{bundle}/{locale}", status="200") == 1
    assert value(page, req, method="GET", route="/v1/index/{bundle}/{locale}", status="304") == 1
    assert value(page, req, method="POST", route="/v1/pack", status="200") == 1
    assert value(page, req, method="GET", route="/v1/chunks/{chunk_id}", status="200") == 1
    # Bytes per route are exactly what the client received.
    sent = "satchel_http_response_bytes_total"
    assert value(page, sent, route="/v1/index/{bundle}/{locale}") == len(index.content)
    assert value(page, sent, route="/v1/manifests/{manifest_id}") == len(manifest.content)
    assert value(page, sent, route="/v1/pack") == len(pack.content)
    assert value(page, sent, route="/v1/chunks/{chunk_id}") >= len(chunk.content)
    delta_route = "/v1/deltas/{from_manifest}/{to_manifest}"
    assert value(page, sent, route=delta_route) == len(delta.content)
    # Cache-friendly answers: 304s by route, static (cacheable) vs dynamic packs.
    nm = "satchel_not_modified_responses_total"
    assert value(page, nm, route="/v1/index/{bundle}/{locale}") == 1
    assert value(page, nm, route=delta_route) == 1
    assert value(page, "satchel_update_packs_total", kind="static") == 1
    assert value(page, "satchel_update_packs_total", kind="dynamic") == 1
    assert value(page, "satchel_pack_stream_bytes_total", kind="static") == len(delta.content)
    assert value(page, "satchel_pack_stream_bytes_total", kind="dynamic") == len(pack.content)
    assert value(page, "satchel_pack_stream_duration_seconds_count", kind="dynamic") == 1
    assert value(page, "satchel_pack_stream_duration_seconds_count", kind="static") == 1


def test_metrics_labels_stay_bounded_under_scanning(client: TestClient) -> None:
    """Hostile paths (a scanner, ids that do not exist) never become label values."""
    rng = random.Random(7)
    for i in range(40):
        junk = "".join(rng.choice("abcdef0123456789/._-%") for _ in range(rng.randint(1, 60)))
        client.get(f"/{junk}?token=sat_secret{i}")
        client.get(f"/v1/chunks/{i:064x}")  # well-formed, absent: one route label
    text = client.get("/metrics").text
    assert "sat_secret" not in text
    routes = {
        s.labels["route"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if "route" in s.labels
    }
    assert routes <= {"<unmatched>", "/v1/chunks/{chunk_id}", "/metrics"}, routes
    page = samples(text)
    unmatched = sum(
        v
        for (name, labels), v in page.items()
        if name == "satchel_http_requests_total" and ("route", "<unmatched>") in labels
    )
    assert unmatched >= 40 - 1  # a junk path may happen to be "/" or end up matching nothing else
    assert (
        value(
            page,
            "satchel_http_requests_total",
            method="GET",
            route="/v1/chunks/{chunk_id}",
            status="404",
        )
        == 40
    )


def test_metrics_page_is_prometheus_text_and_not_cached(client: TestClient) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["cache-control"] == "no-store"
    names = {f.name for f in text_string_to_metric_families(r.text)}
    assert {
        "satchel_http_requests",
        "satchel_http_response_bytes",
        "satchel_pack_stream_duration_seconds",
        "satchel_publish_commit_duration_seconds",
        "satchel_update_packs",
        "satchel_not_modified_responses",
    } <= names


# -- /readyz ------------------------------------------------------------------------------------
def test_ready_when_database_and_store_answer(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready"}
    assert r.headers["cache-control"] == "no-store"


def test_not_ready_when_the_store_lacks_published_objects(
    client: TestClient, published: Published
) -> None:
    # The wrong bucket or an unmounted volume looks like this: the store answers, holds nothing.
    published.repo.store = MemoryChunkStore()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert "object store lacks published manifest" in r.json()["reason"]
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_not_ready_when_the_store_fails(client: TestClient, published: Published) -> None:
    class Broken(MemoryChunkStore):
        def has(self, cid: str) -> bool:
            raise OSError("connection refused")

    published.repo.store = Broken()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["reason"].startswith("object store does not answer: OSError")


def test_not_ready_when_the_database_fails(
    client: TestClient, published: Published, tmp_path: Path
) -> None:
    published.repo.engine = create_engine(f"sqlite:///{tmp_path}/no/such/folder/x.db")
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["reason"].startswith("database does not answer")


# -- logs ---------------------------------------------------------------------------------------
@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("json", stream=stream)
    try:
        yield stream
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        logging.getLogger("satchel").setLevel(logging.NOTSET)
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.NOTSET)


def test_json_access_log_fields_and_no_secrets(
    client: TestClient, published: Published, captured: io.StringIO
) -> None:
    token = published.repo.tokens.create("teacher", label="log test")
    secret_query = "sat_query_secret_123"
    client.get("/v1/index/course/en", headers={"Authorization": f"Bearer {token}"})
    client.get(f"/v1/manifests/{published.m2}?token={secret_query}&from={published.m1}")
    client.post(
        f"/v1/publish/{BUNDLE}/en", content=b"{}", headers={"Authorization": f"Bearer {token}"}
    )
    client.post(
        f"/v1/uploads/{'a' * 32}/commit",
        json={},
        headers={"Authorization": "Bearer wrong-" + token},
    )
    client.get(f"/v1/chunks/{token}")  # a token pasted into a path is not logged either

    out = captured.getvalue()
    assert token not in out and secret_query not in out
    assert "Bearer" not in out and "authorization" not in out.lower()
    records = [json.loads(line) for line in out.splitlines()]
    requests = [r for r in records if r["event"] == "request"]
    assert len(requests) == 5, records
    first = requests[0]
    assert set(first) >= {
        "time",
        "level",
        "event",
        "method",
        "path",
        "status",
        "bytes",
        "duration_ms",
        "client",
    }
    assert (
        first["method"] == "GET"
        and first["path"] == "/v1/index/{bundle}/{locale}"
        and first["status"] == 200
    )
    assert first["level"] == "info" and first["time"].endswith("+00:00")
    assert isinstance(first["bytes"], int) and first["bytes"] > 0
    assert requests[1]["path"] == "/v1/manifests/{manifest_id}"
    assert [r["status"] for r in requests[2:]] == [422, 401, 422]


def test_json_formatter_renders_warnings_and_errors_as_one_line() -> None:
    fmt = JsonFormatter()
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "satchel.x", logging.ERROR, "f.py", 1, "failed: %s", ("x",), sys.exc_info()
        )
    line = fmt.format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["event"] == "failed: x" and data["level"] == "error"
    assert "ValueError: boom" in data["error"]


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        configure_logging("yaml")
    res = run_cli("serve", "--data", "/nonexistent-satchel", "--log-format", "xml")
    assert res.code == 2, res.describe()
    assert res.error_lines() == ["error: --log-format must be one of text, json, not 'xml'"]


# -- end to end ---------------------------------------------------------------------------------
def test_serve_json_logs_and_metrics_over_the_wire(tmp_path: Path) -> None:
    with SatchelServer(tmp_path / "srv", extra=("--log-format", "json")) as server:
        token = server.token("teacher")
        src = write_tree(tmp_path / "v1", tree(9))
        res = publish(server.url, token, src, BUNDLE)
        assert res.code == 0, res.describe()
        store = tmp_path / "client"
        assert sync_json(server.url, BUNDLE, store)["version"] == 1
        assert sync_json(server.url, BUNDLE, store)["version"] == 1  # index answers 304
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 200, ready.text
        page = samples(httpx.get(f"{server.url}/metrics").text)
        log = server.log()

    commit = "satchel_publish_commit_duration_seconds_count"
    assert value(page, commit) == 1
    assert (
        value(page, "satchel_not_modified_responses_total", route="/v1/index/{bundle}/{locale}")
        >= 1
    )
    assert value(page, "satchel_update_packs_total", kind="dynamic") == 1
    assert token not in log
    lines = [line for line in log.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    paths = {r.get("path") for r in records}
    assert "/v1/uploads/{upload_id}/commit" in paths and "/v1/pack" in paths
    assert any("publisher key fingerprint" in r["event"] for r in records)
