"""One title rule for every way in: given, else kept from the line's last version, else (a new
variant) the base line's, else the bundle's name. The server decides (publishing.line_title),
so the CLI and the web page cannot disagree; an old client that always sends a title is
simply taken at its word."""

from __future__ import annotations

from pathlib import Path

import httpx
from satchel.server.repository import Repository
from satchel.sync.publish import Publisher

from harness.e2e import SatchelServer, publish
from harness.repo import SMALL_CHUNKER, admin_target, make_repository, served_manifest, write_tree
from harness.repo import publish as publish_in_process


def line_title(repo: Repository, bundle: str = "course", locale: str = "en") -> str:
    return next(x.title for x in repo.reads.catalog(bundle) if x.locale == locale)


def test_a_title_is_kept_until_a_new_one_is_given(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "srv")
    one = write_tree(tmp_path / "one", {"a.md": b"# A\n"})
    two = write_tree(tmp_path / "two", {"a.md": b"# A, fixed\n"})
    publish_in_process(repo, one, title="")
    assert line_title(repo) == "course"  # nothing given yet: the bundle's name
    publish_in_process(repo, one, title="Volcanoes")
    publish_in_process(repo, two, title="")
    assert line_title(repo) == "Volcanoes"
    manifest = served_manifest(repo)
    assert manifest.version == 3
    # The signed manifest says the same as the catalog, in both places a viewer looks.
    assert manifest.title == "Volcanoes"
    assert manifest.meta is not None and manifest.meta.title == "Volcanoes"
    publish_in_process(repo, one, title="Volcanoes and lava")
    assert line_title(repo) == "Volcanoes and lava"


def test_satchel_toml_gives_the_title_and_a_new_variant_starts_from_its_base(
    tmp_path: Path,
) -> None:
    repo = make_repository(tmp_path / "srv")
    toml = b'[bundle]\ntitle = "Numbers"\n'
    publish_in_process(repo, write_tree(tmp_path / "en", {"a.md": b"# A\n", "satchel.toml": toml}))
    assert line_title(repo) == "Numbers"
    publish_in_process(repo, write_tree(tmp_path / "en2", {"a.md": b"# B\n"}), title="")
    assert line_title(repo) == "Numbers"
    Publisher(admin_target(repo), chunker=SMALL_CHUNKER).publish(
        write_tree(tmp_path / "es", {"a.md": b"# A (es)\n"}),
        bundle="course",
        locale="es",
        title="",
        from_locale="en",
    )
    assert line_title(repo, locale="es") == "Numbers"


def test_the_command_line_keeps_the_title(tmp_path: Path) -> None:
    v1 = write_tree(tmp_path / "my-folder", {"a.md": b"# A\n"})
    v2 = write_tree(tmp_path / "other-folder", {"a.md": b"# A again\n"})
    with SatchelServer(tmp_path / "data") as srv:
        token = srv.token()
        first = publish(srv.url, token, v1, "course", "--title", "Volcanoes")
        assert first.code == 0, first.describe()
        second = publish(srv.url, token, v2, "course")
        assert second.code == 0, second.describe()
        line = httpx.get(f"{srv.url}/v1/catalog", timeout=10).json()["bundles"][0]
    # Not the folder's name ("other-folder"), which the command line used to send.
    assert line["title"] == "Volcanoes" and line["latest_version"] == 2
