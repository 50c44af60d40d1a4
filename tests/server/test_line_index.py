"""One signed index per line (issue 12, finding 2) and taking things back (issue 15, item 9).

A teacher limited to one bundle once published 2,683 locale lines with 500-character titles:
the one shared index grew past its 8 MiB limit and every sync of every bundle failed, with no
command to remove the lines; before that, syncing a 677-byte bundle cost 4.2 MB of index. Now
each line has its own small index, a bundle's locales and a role's titles are bounded, an admin
can remove a line, and a teacher can withdraw a version; both are signed and recorded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from satchel.content.errors import ForbiddenError, NotFoundError, UsageError
from satchel.content.index import MAX_INDEX_BYTES, parse_index
from satchel.server.app import create_app
from satchel.server.publishing import LocalTarget
from satchel.server.repository import Repository
from satchel.sync.local import LocalStore
from satchel.sync.publish import Publisher
from satchel.sync.updater import Updater

from harness.http import TestClient
from harness.repo import (
    RepoFetcher,
    index_entry,
    make_repository,
    publish,
    sample_files,
    write_tree,
)


def as_token(repo: Repository, role: str, **grant: str) -> LocalTarget:
    return LocalTarget(repo.publishing, repo.tokens.authenticate(repo.tokens.create(role, **grant)))


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    repo = make_repository(tmp_path / "srv")
    publish(repo, write_tree(tmp_path / "course", {"a.txt": b"a small course"}))
    return repo


def test_what_a_laptop_downloads_does_not_grow_with_other_lines(
    repo: Repository, tmp_path: Path
) -> None:
    before = repo.source.index("course", "en")[0]
    teacher = as_token(repo, "teacher", bundle="bx")
    src = write_tree(tmp_path / "bx", {"x.txt": b"x"})
    title = "T" * 200  # the most a teacher may give
    for n in range(40):
        Publisher(teacher).publish(src, bundle="bx", locale=f"en-l{n:03d}", title=title)
    after = repo.source.index("course", "en")[0]
    assert after == before  # another bundle's forty lines changed nothing of this line's index
    assert len(after) < 2048 < MAX_INDEX_BYTES
    store = LocalStore(tmp_path / "laptop", durable=False)
    fetcher = RepoFetcher(repo)
    Updater(store, fetcher).sync("course", "en")
    assert fetcher.index_calls and len(before) < 2048


def test_a_bundles_locales_and_a_roles_titles_are_bounded(repo: Repository, tmp_path: Path) -> None:
    teacher = as_token(repo, "teacher", bundle="bx")
    src = write_tree(tmp_path / "bx", {"x.txt": b"x"})
    with pytest.raises(UsageError, match="over the 200 a teacher may give"):
        Publisher(teacher).publish(src, bundle="bx", locale="en", title="T" * 201)
    from satchel.server import publishing

    for n in range(publishing.MAX_LOCALES_PER_BUNDLE):
        Publisher(teacher).publish(src, bundle="bx", locale=f"en-l{n:03d}", title="ok")
    with pytest.raises(UsageError, match="the most one bundle may have"):
        Publisher(teacher).publish(src, bundle="bx", locale="zz", title="ok")
    Publisher(teacher).publish(
        src, bundle="bx", locale="en-l000", title="still ok"
    )  # not a new line
    assert repo.reads.catalog("course")  # and the other bundle is untouched


def _laptop(repo: Repository, tmp_path: Path, name: str) -> tuple[LocalStore, Updater]:
    store = LocalStore(tmp_path / name, durable=False)
    return store, Updater(store, RepoFetcher(repo))


def test_a_withdrawn_version_is_skipped_by_those_without_it_and_kept_by_those_with_it(
    repo: Repository, tmp_path: Path
) -> None:
    files = sample_files(2)
    on_v1, sync_v1 = _laptop(repo, tmp_path, "on-v1")
    publish(repo, write_tree(tmp_path / "v1", files))  # v2 of course/en
    sync_v1.sync("course", "en")
    on_v3, sync_v3 = _laptop(repo, tmp_path, "on-v3")
    publish(repo, write_tree(tmp_path / "v2", {**files, "oops.txt": b"a mistake"}))  # v3
    assert sync_v3.sync("course", "en").version == 3

    teacher = repo.tokens.authenticate(repo.tokens.create("teacher", bundle="course"))
    done = repo.lines.withdraw(teacher, "course", "en", 3, "published by mistake")
    assert (done.version, done.serving) == (3, 2)
    entry = index_entry(repo, "course", "en")
    assert (entry.version, entry.withdrawn) == (2, (3,))

    assert sync_v1.sync("course", "en").version == 2  # already on 2: nothing to skip to
    new, sync_new = _laptop(repo, tmp_path, "new")
    assert sync_new.sync("course", "en").version == 2  # a new laptop skips 3
    kept = sync_v3.sync("course", "en")
    assert kept.withdrawn and kept.version == 3 and not kept.changed  # keeps 3, no step back
    ref = on_v3.ref("course", "en")
    assert ref is not None and ref.version == 3

    publish(repo, write_tree(tmp_path / "v4", {**files, "fixed.txt": b"fixed"}))  # v4
    for _store, updater in ((on_v1, sync_v1), (on_v3, sync_v3), (new, sync_new)):
        assert updater.sync("course", "en").version == 4
    (latest, *_older, first) = repo.reads.history("course", "en")
    withdrawn = next(h for h in repo.reads.history("course", "en") if h.version == 3)
    assert withdrawn.withdrawn and withdrawn.withdrawn_notes == "published by mistake"
    assert withdrawn.withdrawn_by == "teacher" and latest.version == 4 and first.version == 1


def test_withdrawing_needs_the_right_to_publish_and_keeps_one_version(
    repo: Repository, tmp_path: Path
) -> None:
    other = repo.tokens.authenticate(repo.tokens.create("teacher", bundle="other"))
    with pytest.raises(ForbiddenError):
        repo.lines.withdraw(other, "course", "en", 1)
    admin = repo.tokens.authenticate(repo.tokens.create("admin"))
    with pytest.raises(UsageError, match="only one"):
        repo.lines.withdraw(admin, "course", "en", 1)
    with pytest.raises(NotFoundError):
        repo.lines.withdraw(admin, "course", "en", 9)


def test_a_removed_line_is_dropped_by_laptops_and_refused_to_new_ones(
    repo: Repository, tmp_path: Path
) -> None:
    holder, sync_holder = _laptop(repo, tmp_path, "holder")
    sync_holder.sync("course", "en")
    teacher = repo.tokens.authenticate(repo.tokens.create("teacher", bundle="course"))
    with pytest.raises(ForbiddenError):
        repo.lines.remove(teacher, "course", "en", "a test")
    admin = repo.tokens.authenticate(repo.tokens.create("admin", label="Ada"))
    repo.lines.remove(admin, "course", "en", "a test bundle")
    entry = index_entry(repo, "course", "en")
    assert entry.removed and entry.version == 1
    result = sync_holder.sync("course", "en")
    assert result.removed and holder.ref("course", "en") is None
    _new, sync_new = _laptop(repo, tmp_path, "new")
    with pytest.raises(NotFoundError, match="removed by its publisher"):
        sync_new.sync("course", "en")
    line = repo.reads.line("course", "en")
    assert line.removed
    # A later publish brings the line back.
    publish(repo, write_tree(tmp_path / "again", {"a.txt": b"a real course now"}))
    assert not index_entry(repo, "course", "en").removed
    assert sync_new.sync("course", "en").version == 2


def test_withdraw_and_remove_over_http_reach_caches_as_a_new_index(
    repo: Repository, tmp_path: Path
) -> None:
    publish(repo, write_tree(tmp_path / "v2", {"a.txt": b"second"}))
    teacher = repo.tokens.create("teacher", bundle="course")
    admin = repo.tokens.create("admin")
    with TestClient(create_app(repo)) as client:
        first = client.get("/v1/index/course/en")
        etag = first.headers["etag"]
        r = client.post(
            "/v1/lines/course/en/versions/2/withdraw",
            json={"notes": "typo"},
            headers={"Authorization": f"Bearer {teacher}"},
        )
        assert r.status_code == 200 and r.json()["serving"] == 1
        again = client.get("/v1/index/course/en", headers={"If-None-Match": etag})
        assert again.status_code == 200 and again.headers["etag"] != etag  # caches revalidate
        assert parse_index(again.content)[1].line.withdrawn == (2,)
        refused = client.post(
            "/v1/lines/course/en/remove", json={}, headers={"Authorization": f"Bearer {teacher}"}
        )
        assert refused.status_code == 403
        gone = client.post(
            "/v1/lines/course/en/remove", json={}, headers={"Authorization": f"Bearer {admin}"}
        )
        assert gone.status_code == 200
        assert parse_index(client.get("/v1/index/course/en").content)[1].line.removed
        missing = client.get("/v1/index/nothing/en")
        assert missing.status_code == 404 and "course/en" not in missing.json()["error"]
