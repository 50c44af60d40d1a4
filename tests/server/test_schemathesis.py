"""Schema-driven fuzzing of a running server: schemathesis against its own OpenAPI schema.

A real ``satchel serve --sample`` (uvicorn, over loopback) holds the sample bundle; every
operation in ``/openapi.json`` gets generated requests (path parameters, queries, JSON and
binary bodies, valid and invalid), sent with and without an admin token. The promise is the
one datasette and httpx keep too: whatever the input, a 4xx with a reason, never a 5xx, and
an answer within the time limit (no hang). Examples are bounded so the run stays fast.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # third-party import-time deprecation notices
    import schemathesis
    from schemathesis.checks import not_a_server_error

from harness.e2e import SatchelServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# An upload body is opaque bytes to the schema, like application/octet-stream.
schemathesis.serializer.alias("application/vnd.satchel.pack", "application/octet-stream")
schemathesis.serializer.alias("application/vnd.satchel.sealed", "application/octet-stream")

TIMEOUT = 20.0  # seconds for one request: a hang fails the test


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SatchelServer, str]]:
    base: Path = tmp_path_factory.mktemp("schema")
    with SatchelServer(base / "srv", sample=True) as srv:
        yield srv, srv.token("admin")


@pytest.fixture(scope="module")
def api_schema(live: tuple[SatchelServer, str]) -> Any:
    srv, _token = live
    return schemathesis.openapi.from_url(f"{srv.url}/openapi.json")


FUZZ = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _operations(api_schema: Any) -> list[Any]:
    # schemathesis' own pytest integration (from_fixture) does not run under pytest 9, so the
    # operations are driven here with Hypothesis directly: the same strategies, the same check.
    return [result.ok() for result in api_schema.get_all_operations()]


def _fuzz(api_schema: Any, headers: dict[str, str]) -> int:
    operations = _operations(api_schema)
    for operation in operations:

        @FUZZ
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            response = case.call(headers=headers, timeout=TIMEOUT)
            case.validate_response(response, checks=[not_a_server_error])

        run()
    return len(operations)


def test_no_input_from_an_admin_makes_the_server_fail(
    api_schema: Any, live: tuple[SatchelServer, str]
) -> None:
    assert _fuzz(api_schema, {"Authorization": f"Bearer {live[1]}"}) >= 10


def test_no_input_from_anyone_makes_the_server_fail(api_schema: Any) -> None:
    assert _fuzz(api_schema, {}) >= 10


def test_the_schema_describes_every_route(api_schema: Any) -> None:
    """The fuzzing above reaches every public route, bodies included."""
    raw = api_schema.raw_schema
    paths = set(raw["paths"])
    assert {
        "/v1/index/{bundle}/{locale}",
        "/v1/catalog",
        "/v1/key",
        "/v1/manifests/{manifest_id}",
        "/v1/chunks/{chunk_id}",
        "/v1/pack",
        "/v1/publish/{bundle}/{locale}",
        "/v1/uploads/{upload_id}/pack",
        "/v1/uploads/{upload_id}/commit",
    } <= paths
    for path in ("/v1/pack", "/v1/publish/{bundle}/{locale}", "/v1/uploads/{upload_id}/pack"):
        assert "requestBody" in raw["paths"][path]["post"], path
