"""Docs that cannot drift: every command and option is in README's table, every HTTP route in
docs/protocol.md's endpoint lists, and nothing is documented that does not exist."""

from __future__ import annotations

import contextlib
import re
import shlex
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi import FastAPI
from satchel.cli import app as cli_app
from satchel.cli import command as satchel_command
from satchel.clients.share import create_share_app
from satchel.server.app import create_app
from satchel.server.repository import Repository
from satchel.sync.local import LocalStore
from satchel.sync.store import MemoryChunkStore

from harness.e2e import run_cli
from harness.http import walk_routes
from harness.paths import REPO

README = (REPO / "README.md").read_text("utf-8")
PROTOCOL = (REPO / "docs" / "protocol.md").read_text("utf-8")
UNDOCUMENTED_ROUTES = {"/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"}


# -- commands ----------------------------------------------------------------------------------
def cli_commands() -> dict[str, set[str]]:
    """``{"token create": {"--data", ...}, "sync": {...}}`` from the real command."""
    root = typer.main.get_command(cli_app)
    found: dict[str, set[str]] = {}

    def walk(cmd: Any, path: list[str]) -> None:
        if hasattr(cmd, "commands"):  # a group
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
            return
        options = set()
        for param in cmd.params:
            if param.param_type_name == "option":
                options.update(o for o in param.opts + param.secondary_opts if o.startswith("--"))
        options.discard("--help")
        found[" ".join(path)] = options

    walk(root, [])
    return found


def readme_commands() -> dict[str, set[str]]:
    """Commands and options as README's command table shows them."""
    table = README[README.index("## Commands") :]
    table = table[: table.index("\n## ", 3)]
    found: dict[str, set[str]] = {}
    names = set(cli_commands())
    for row in table.splitlines():
        if not row.startswith("| `satchel "):
            continue
        first_cell = row.split(" | ")[0]
        for form in re.findall(r"`(satchel [^`]+)`", first_cell):
            words = form.split()[1:]
            command = next(
                (" ".join(words[:n]) for n in (2, 1) if " ".join(words[:n]) in names),
                words[0],
            )
            options = {
                o.split("=")[0]
                for o in re.findall(r"--[a-z][a-z0-9-]*(?:/--[a-z][a-z0-9-]*)?", form)
                for o in o.split("/")
            }
            found.setdefault(command, set()).update(options)
    return found


def test_every_command_and_option_is_in_the_readme_table() -> None:
    real, shown = cli_commands(), readme_commands()
    missing_commands = sorted(set(real) - set(shown))
    assert missing_commands == [], f"commands missing from README's table: {missing_commands}"
    missing = {c: sorted(real[c] - shown[c]) for c in real if real[c] - shown[c]}
    assert missing == {}, f"options missing from README's table: {missing}"


def test_the_readme_table_names_only_what_exists() -> None:
    real, shown = cli_commands(), readme_commands()
    assert sorted(set(shown) - set(real)) == []
    extra = {c: sorted(shown[c] - real[c]) for c in shown if shown[c] - real[c]}
    assert extra == {}, f"README documents options that do not exist: {extra}"


def test_the_readme_parser_sees_a_missing_option() -> None:
    real = cli_commands()
    assert "--json" in real["sync"] and "--data" in real["token create"]
    assert readme_commands()["sync"] <= real["sync"]


# -- routes ------------------------------------------------------------------------------------
def _shape(path: str) -> str:
    """``/v1/manifests/{manifest_id}`` and ``/v1/manifests/{id}?from=`` are one route."""
    path = path.split("?")[0].split("[")[0]
    return re.sub(r"\{[^}]*\}", "{}", path)


def app_routes(app: FastAPI) -> set[str]:
    return {
        f"{method} {_shape(path)}"
        for method, path in walk_routes(app.routes)
        if path not in UNDOCUMENTED_ROUTES
    }


def documented_routes() -> set[str]:
    """Every ``| `METHOD /path` |`` row of protocol.md's endpoint tables (§11, §11a, §12b)."""
    rows = re.findall(r"^\| `(GET|HEAD|POST|PUT|DELETE) (/[^` ]*)`", PROTOCOL, re.M)
    return {f"{method} {_shape(path)}" for method, path in rows}


def served_routes(tmp_path: Path) -> set[str]:
    repo = Repository(tmp_path / "srv", store=MemoryChunkStore())
    served = app_routes(create_app(repo))
    hub = create_share_app(LocalStore(tmp_path / "relay", durable=False), viewer=True)
    served |= app_routes(hub)  # the relay's routes, and the viewer a hub mounts
    return {r for r in served if not r.startswith("HEAD ") or "/deltas/" in r}


def test_every_route_is_in_the_protocol_endpoint_lists(tmp_path: Path) -> None:
    missing = sorted(served_routes(tmp_path) - documented_routes())
    assert missing == [], f"routes missing from docs/protocol.md's endpoint tables: {missing}"


def test_the_protocol_documents_only_routes_that_exist(tmp_path: Path) -> None:
    extra = sorted(documented_routes() - served_routes(tmp_path))
    assert extra == [], f"docs/protocol.md documents routes that do not exist: {extra}"


# -- help --------------------------------------------------------------------------------------
TYPE_PLACEHOLDER = re.compile(r"<[a-z][a-z_\[\], |.]*>|\{[a-z_]+\}")


def help_text(words: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What ``satchel WORDS --help`` prints, through the same command object as the script."""
    try:
        satchel_command().main(args=[*words, "--help"], prog_name="satchel")
    except SystemExit as exc:
        assert exc.code == 0
    return capsys.readouterr().out


def test_help_names_what_options_take_never_a_type(capsys: pytest.CaptureFixture[str]) -> None:
    pages = [[], ["token"], *(name.split() for name in cli_commands())]
    for words in pages:
        text = help_text(words, capsys)
        assert "Usage: satchel" in text, words
        found = TYPE_PLACEHOLDER.findall(text)
        assert found == [], f"'satchel {' '.join(words)} --help' shows type names: {found}"
    sync_help = help_text(["sync"], capsys)
    assert "--server" in sync_help and "URL" in sync_help and "DIR" in sync_help
    assert "SRC" in help_text(["publish"], capsys).splitlines()[1]  # the usage line
    roles = help_text(["token", "create"], capsys)
    assert all(role in roles for role in ("admin", "teacher", "curator"))


def test_the_placeholder_check_sees_typers_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    # Without plain_help the same page shows typer's type names: the check above can fail.
    with contextlib.suppress(SystemExit):
        typer.main.get_command(cli_app).main(args=["sync", "--help"], prog_name="satchel")
    assert TYPE_PLACEHOLDER.search(capsys.readouterr().out)


def test_version_is_the_installed_one() -> None:
    res = run_cli("--version")
    assert res.code == 0, res.describe()
    assert res.stdout.strip() == f"satchel {metadata.version('satchel')}"


# -- README's first commands, as a newcomer types them ---------------------------------------
def readme_first_commands() -> list[list[str]]:
    """Every ``satchel`` command in README's shell blocks before the command table: the
    server's start, the tests, and "Try it by hand" (words after ``.venv/bin/satchel``)."""
    head = README[: README.index("## Commands")]
    found = []
    for block in re.findall(r"```sh\n(.*?)```", head, re.S):
        for line in block.splitlines():
            for call in re.findall(r"\.venv/bin/satchel ([^)&\n]*)", line):
                found.append(shlex.split(call, comments=True))
    return found


def test_readme_first_commands_exist_and_their_options_parse() -> None:
    commands = readme_first_commands()
    names = [" ".join(words[:2]) if words[0] == "token" else words[0] for words in commands]
    # The first hour: start the server, sync, check out, view, make a token, publish, sync all.
    assert {"serve", "sync", "checkout", "view", "token create", "publish"} <= set(names)
    root = satchel_command()
    for words in commands:
        command, rest, path = root, list(words), ["satchel"]
        while hasattr(command, "commands") and rest and rest[0] in command.commands:
            path.append(rest[0])
            command = command.commands[rest.pop(0)]
        assert not hasattr(command, "commands"), f"README: {' '.join(words)!r} names no command"
        # Parses exactly as the real command would (unknown options, missing required ones and
        # bad values raise here); nothing runs.
        command.make_context(" ".join(path), rest)


def test_the_readme_check_sees_a_wrong_option() -> None:
    sync = satchel_command().commands["sync"]
    with pytest.raises(typer.exceptions.TyperException, match="--stor"):
        sync.make_context("satchel sync", ["--server", "http://x", "--stor", "s"])
