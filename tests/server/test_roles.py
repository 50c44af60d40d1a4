"""Roles and tokens: admin token API and CLI, revocation, publish history, the auth limiter."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

import pytest
from satchel.content.errors import NotFoundError, RateLimitedError, UsageError
from satchel.server.app import create_app
from satchel.server.ratelimit import FailureLimiter
from satchel.server.repository import Repository
from satchel.server.tokens import hash_token
from satchel.sync.store import FolderChunkStore, MemoryChunkStore

from harness.e2e import run_cli
from harness.http import TestClient


def course(root: Path, seed: int = 1, extra: bytes = b"") -> Path:
    rng = random.Random(seed)
    for rel, data in {
        "one/index.html": b"<title>One</title>" + rng.randbytes(2000) + extra,
        "two/index.md": b"# Two\n" + rng.randbytes(1000),
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- token API ---------------------------------------------------------------------------------
def test_admin_creates_lists_and_revokes_tokens_over_http(
    client: TestClient, srv: Repository
) -> None:
    admin = srv.tokens.create("admin", label="root")
    r = client.post(
        "/v1/tokens",
        json={"role": "curator", "bundle": "course", "locale": "es", "label": "Ana"},
        headers=auth(admin),
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["token"].startswith("sat_") and made["role"] == "curator"
    assert (made["bundle"], made["locale"], made["label"]) == ("course", "es", "Ana")
    assert r.headers["cache-control"] == "no-store"
    assert srv.tokens.authenticate(made["token"]).token_id == made["id"]

    listed = client.get("/v1/tokens", headers=auth(admin))
    assert listed.status_code == 200
    # Never a secret nor its hash in a listing.
    assert made["token"] not in listed.text and hash_token(made["token"]) not in listed.text
    assert hash_token(admin) not in listed.text
    rows = {t["id"]: t for t in listed.json()["tokens"]}
    assert set(rows[made["id"]]) == {
        "id",
        "role",
        "bundle",
        "locale",
        "label",
        "created",
        "revoked",
        "revoked_at",
    }
    assert rows[made["id"]]["revoked"] is False

    # Revocation takes effect on the very next request.
    assert client.get("/v1/tokens", headers=auth(made["token"])).status_code == 403
    gone = client.delete(f"/v1/tokens/{made['id']}", headers=auth(admin))
    assert gone.status_code == 200 and gone.json()["revoked"] is True
    assert gone.json()["revoked_at"]
    assert client.get("/v1/tokens", headers=auth(made["token"])).status_code == 401
    r = client.post(
        "/v1/publish/course/es?from_locale=en", content=b"{}", headers=auth(made["token"])
    )
    assert r.status_code == 401
    # Revoking twice is harmless; an admin may revoke its own token, after which it is dead.
    assert client.delete(f"/v1/tokens/{made['id']}", headers=auth(admin)).status_code == 200
    me = srv.tokens.authenticate(admin).token_id
    assert client.delete(f"/v1/tokens/{me}", headers=auth(admin)).status_code == 200
    assert client.get("/v1/tokens", headers=auth(admin)).status_code == 401


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"role": "root"}, 400),
        ({"role": "curator", "bundle": "course"}, 400),  # a curator needs bundle and locale
        ({"role": "teacher", "bundle": "../etc"}, 400),
        ({"role": "teacher", "locale": "english please"}, 400),
        ({"role": "teacher", "label": "x" * 201}, 400),
        ({"role": "teacher", "label": 5}, 400),
        ({"role": "teacher", "bundle": ["a"]}, 400),
        ({"role": "teacher", "admin": True}, 400),
        ({}, 400),
        ([], 400),
        ("teacher", 400),
    ],
)
def test_token_requests_that_make_no_sense_are_refused(
    client: TestClient, srv: Repository, body: object, status: int
) -> None:
    admin = srv.tokens.create("admin")
    before = len(srv.tokens.list())
    r = client.post("/v1/tokens", json=body, headers=auth(admin))
    assert r.status_code == status, r.text
    assert isinstance(r.json()["error"], str)
    assert len(srv.tokens.list()) == before


def test_token_request_bodies_that_are_not_json_or_too_large(
    client: TestClient, srv: Repository
) -> None:
    admin = srv.tokens.create("admin")
    assert client.post("/v1/tokens", content=b"{", headers=auth(admin)).status_code == 400
    big = b'{"role": "teacher", "label": "' + b"x" * 70_000 + b'"}'
    assert client.post("/v1/tokens", content=big, headers=auth(admin)).status_code == 413


@pytest.mark.parametrize("token_id", ["999", "0", "-1", "abc", "1e3", "99999999999999999999", "１"])
def test_revoking_an_unknown_token_is_404(
    client: TestClient, srv: Repository, token_id: str
) -> None:
    admin = srv.tokens.create("admin")
    r = client.delete(f"/v1/tokens/{token_id}", headers=auth(admin))
    assert r.status_code == 404, r.text
    assert srv.tokens.authenticate(admin).role == "admin"


def test_repository_token_rules(srv: Repository) -> None:
    with pytest.raises(NotFoundError):
        srv.tokens.revoke(12345)
    with pytest.raises(UsageError):
        srv.tokens.issue("curator", bundle="course")
    made = srv.tokens.issue("teacher", bundle="course", label="Bo")
    assert srv.tokens.list()[-1].id == made.info.id
    assert "token" not in asdict(srv.tokens.list()[-1])
    from satchel.content.errors import AuthError

    with pytest.raises(AuthError):
        srv.tokens.authenticate("sat_" + "y" * 5000)  # an absurdly long guess is refused cheaply


# -- CLI -----------------------------------------------------------------------------------------
def test_token_commands_never_create_or_use_a_signing_key(tmp_path: Path) -> None:
    """An admin's data folder beside a shared database: listing and revoking tokens must not
    make up a key there, nor re-sign the index the servers publish with theirs."""
    data = tmp_path / "srv"
    repo = Repository(data, store=FolderChunkStore(data / "objects", durable=False))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_bytes(b"a lesson")
    repo.publishing.publish_folder(tmp_path / "src", bundle="course", locale="en", title="Course")
    index = repo.source.index("course", "en")[0]
    assert repo.tokens.list() == []  # publishing in-process mints no stored token
    token_id = repo.tokens.issue("teacher").info.id
    repo.engine.dispose()
    admin, url = tmp_path / "admin", f"sqlite:///{data / 'satchel.db'}"
    for args in (("list",), ("revoke", str(token_id))):
        res = run_cli("token", *args, "--data", admin, "--database-url", url)
        assert res.code == 0, res.describe()
    assert not (admin / "signing-key.pem").exists()
    assert Repository(data, store=repo.store).source.index("course", "en")[0] == index


def test_cli_token_create_list_revoke(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    Repository(data, store=MemoryChunkStore())  # what 'satchel serve' makes on its first start
    made = run_cli(
        "token",
        "create",
        "--data",
        data,
        "--role",
        "teacher",
        "--bundle",
        "course",
        "--label",
        "Bo",
    )
    assert made.code == 0, made.describe()
    secret = made.stdout.strip()
    assert secret.startswith("sat_") and "\n" not in secret

    listed = run_cli("token", "list", "--data", data, "--json")
    assert listed.code == 0, listed.describe()
    rows = json.loads(listed.stdout)
    assert [(r["role"], r["bundle"], r["label"], r["revoked"]) for r in rows] == [
        ("teacher", "course", "Bo", False)
    ]
    assert secret not in listed.stdout and hash_token(secret) not in listed.stdout
    text = run_cli("token", "list", "--data", data)
    assert text.code == 0 and "teacher" in text.stdout and "course/*" in text.stdout
    assert secret not in text.stdout

    revoked = run_cli("token", "revoke", str(rows[0]["id"]), "--data", data)
    assert revoked.code == 0, revoked.describe()
    rows = json.loads(run_cli("token", "list", "--data", data, "--json").stdout)
    assert rows[0]["revoked"] is True
    assert Repository(data).tokens.list()[0].revoked is True

    missing = run_cli("token", "revoke", "77", "--data", data)
    assert missing.code == 6 and missing.error_lines() == [missing.error_lines()[0]]
    assert "no token 77" in missing.stderr
    bad = run_cli("token", "revoke", "seven", "--data", data)
    assert bad.code == 2


# -- history -----------------------------------------------------------------------------------
def test_history_records_who_when_notes_and_base(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    en = course(tmp_path / "en")
    srv.publishing.publish_folder(
        en, bundle="course", locale="en", title="Course", notes="first cut"
    )
    course(tmp_path / "en", extra=b"fix")
    srv.publishing.publish_folder(
        en, bundle="course", locale="en", title="Course", notes="typo fixed"
    )
    es = course(tmp_path / "es", extra=b"es")
    srv.publishing.publish_folder(
        es, bundle="course", locale="es", title="Curso", from_locale="en", notes="traducción"
    )

    assert client.get("/v1/history/course/en").status_code == 401  # names people: token first
    client.headers["Authorization"] = (
        f"Bearer {srv.tokens.create('curator', bundle='x', locale='es')}"
    )
    r = client.get("/v1/history/course/en")
    assert r.status_code == 200
    versions = r.json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]  # newest first
    assert [v["notes"] for v in versions] == ["typo fixed", "first cut"]
    for v in versions:  # published in-process: by the server itself, as no stored token
        assert v["role"] == "admin" and v["token_label"] == "in-process publish"
        assert v["token_id"] is None and v["created"].endswith("+00:00")
        assert v["base_locale"] is None and v["base_version"] is None
    (variant,) = client.get("/v1/history/course/es").json()["versions"]
    assert (variant["base_locale"], variant["base_version"], variant["notes"]) == (
        "en",
        2,
        "traducción",
    )
    assert asdict(srv.reads.history("course", "es")[0]) == variant

    assert client.get("/v1/history/course/fr").status_code == 404
    assert client.get("/v1/history/nothing/en").status_code == 404
    assert client.get("/v1/history/BAD NAME/en").status_code == 400
    assert client.get("/v1/history/course/xx_YY!").status_code == 400


def test_history_keeps_the_publisher_after_revocation(
    client: TestClient, srv: Repository, tmp_path: Path
) -> None:
    from satchel.server.publishing import LocalTarget
    from satchel.sync.publish import Publisher

    made = srv.tokens.issue("teacher", bundle="course", label="Carla")
    target = LocalTarget(srv.publishing, srv.tokens.authenticate(made.token))
    Publisher(target).publish(
        course(tmp_path / "c"), bundle="course", locale="en", title="C", notes="hello"
    )
    srv.tokens.revoke(made.info.id)
    (entry,) = srv.reads.history("course", "en")
    assert (entry.token_id, entry.token_label, entry.role, entry.notes) == (
        made.info.id,
        "Carla",
        "teacher",
        "hello",
    )


def test_notes_are_bounded(client: TestClient, srv: Repository, tmp_path: Path) -> None:
    from satchel.server.publishing import LocalTarget
    from satchel.sync.publish import Publisher

    target = LocalTarget(srv.publishing, srv.tokens.authenticate(srv.tokens.create("admin")))
    with pytest.raises(UsageError):
        Publisher(target).publish(
            course(tmp_path / "c"), bundle="course", locale="en", title="C", notes="n" * 2001
        )
    with pytest.raises(NotFoundError):
        srv.reads.history("course", "en")  # nothing was committed


# -- the failed-authentication limiter -------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_allows_a_burst_then_refuses_until_it_refills() -> None:
    clock = Clock()
    limiter = FailureLimiter(burst=10, period=60, clock=clock)
    for _ in range(10):
        limiter.check("10.0.0.1")
        limiter.failure("10.0.0.1")
    with pytest.raises(RateLimitedError) as caught:
        limiter.check("10.0.0.1")
    assert caught.value.retry_after == 6  # one failure is forgiven every 6 s
    limiter.check("10.0.0.2")  # another address is unaffected
    clock.now += 5.9
    with pytest.raises(RateLimitedError):
        limiter.check("10.0.0.1")
    clock.now += 0.1
    limiter.check("10.0.0.1")
    limiter.failure("10.0.0.1")
    with pytest.raises(RateLimitedError):
        limiter.check("10.0.0.1")
    clock.now += 600  # a full bucket again, and never more than full
    for _ in range(10):
        limiter.check("10.0.0.1")
        limiter.failure("10.0.0.1")
    with pytest.raises(RateLimitedError):
        limiter.check("10.0.0.1")


def test_limiter_memory_is_bounded() -> None:
    clock = Clock()
    limiter = FailureLimiter(burst=1, period=60, max_addresses=3, clock=clock)
    for n in range(5):
        limiter.failure(f"a{n}")
    assert len(limiter._buckets) == 3
    limiter.check("a0")  # forgotten, so its one failure no longer counts
    with pytest.raises(RateLimitedError):
        limiter.check("a4")
    with pytest.raises(ValueError):
        FailureLimiter(burst=0)


def test_token_guessing_gets_429_with_retry_after(srv: Repository) -> None:
    clock = Clock()
    app = create_app(srv, auth_limiter=FailureLimiter(burst=10, period=60, clock=clock))
    admin = srv.tokens.create("admin")
    with TestClient(app, raise_server_exceptions=False) as client:
        # Requests without any token are not guesses: they do not use up the budget.
        for _ in range(20):
            assert client.get("/v1/tokens").status_code == 401
        for n in range(10):
            r = client.get("/v1/tokens", headers=auth(f"sat_guess{n}"))
            assert r.status_code == 401
        r = client.get("/v1/tokens", headers=auth("sat_guess-again"))
        assert r.status_code == 429
        assert r.headers["retry-after"] == "6" and "retry" in r.json()["error"]
        # Even a right token from that address waits: the brake is per address, not per token.
        assert client.get("/v1/tokens", headers=auth(admin)).status_code == 429
        # Public reads are never limited.
        assert client.get("/v1/catalog").status_code == 200
        clock.now += 6
        assert client.get("/v1/tokens", headers=auth(admin)).status_code == 200
        # Successes cost nothing.
        for _ in range(30):
            assert client.get("/v1/tokens", headers=auth(admin)).status_code == 200
