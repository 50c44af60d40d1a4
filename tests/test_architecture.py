"""Checked rules about the code itself: layering and static types."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from harness.paths import REPO

# content <- sync <- edge <- server / clients <- cli: a layer never imports one above it, and
# the two sides (server, clients) never import each other; only the cli root sees both.
WEB = ("fastapi", "starlette", "uvicorn")
DATABASE = ("sqlmodel", "sqlalchemy", "alembic")
COMMAND_LINE = ("typer", "rich")
ABOVE = {
    "content": ("satchel.sync", "satchel.edge", "satchel.server", "satchel.clients", "satchel.cli"),
    "sync": ("satchel.edge", "satchel.server", "satchel.clients", "satchel.cli"),
    "edge": ("satchel.server", "satchel.clients", "satchel.cli"),
    "server": ("satchel.clients", "satchel.cli"),
    "clients": ("satchel.server", "satchel.cli"),
    "cli": (),
}
FORBIDDEN = {
    "content": ABOVE["content"] + WEB + DATABASE + COMMAND_LINE + ("httpx",),
    "sync": ABOVE["sync"] + WEB + DATABASE + COMMAND_LINE + ("httpx",),
    "edge": ABOVE["edge"] + DATABASE + ("httpx",),
    "server": ABOVE["server"] + ("httpx",),
    "clients": ABOVE["clients"] + DATABASE,
    "cli": (),
}


def module_name(path: Path) -> str:
    """The dotted name a file under one of the layer folders is imported as."""
    rel = path.relative_to(REPO).with_suffix("")
    parts = ["satchel", *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, source: str | None = None) -> set[str]:
    """Every module a file imports, relative imports resolved to absolute names."""
    text = path.read_text("utf-8") if source is None else source
    tree = ast.parse(text, filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            names.add(base)
            # ``from satchel import server`` or ``from .. import server`` names a module too.
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def violations(layer: str) -> list[str]:
    found = []
    for path in sorted((REPO / layer).rglob("*.py")):
        for name in imports(path):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[layer]):
                found.append(f"{path.relative_to(REPO)} imports {name}")
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_downwards(layer: str) -> None:
    assert violations(layer) == []


@pytest.mark.parametrize(("folder", "other"), [("tests", "bench"), ("bench", "tests")])
def test_tests_and_bench_share_only_the_harness(folder: str, other: str) -> None:
    """What both need lives in harness/; neither imports the other (a bench stays a script a
    person reruns, and a test never depends on a bench's private helpers)."""
    found = []
    for path in sorted((REPO / folder).rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            found += [
                f"{path.relative_to(REPO)} imports {n}"
                for n in names
                if n == other or n.startswith(other + ".")
            ]
    assert found == []


def test_layer_rule_sees_absolute_and_relative_imports() -> None:
    probe = REPO / "clients" / "commands" / "probe.py"  # parsed only, never written
    cases = {
        "from satchel.server.app import create_app\n": "satchel.server.app",
        "from ...server import app\n": "satchel.server.app",
        "from ... import server\n": "satchel.server",
        "from ..share import announce\n": "satchel.clients.share",
        "from .common import locked\n": "satchel.clients.commands.common",
    }
    for source, expected in cases.items():
        found = imports(probe, source)
        assert expected in found, (source, found)
    bad = imports(probe, "from ...server.repository import Repository\n")
    assert any(n.startswith("satchel.server") for n in bad)


def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    """Plain mypy over the installed names: the strict editable install makes them real."""
    pytest.importorskip("mypy", reason="mypy comes with the dev extra")
    packages = [f"satchel.{layer}" for layer in FORBIDDEN]
    config = ["--config-file", str(REPO / "pyproject.toml")]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", *config, "--cache-dir", str(REPO / ".mypy_cache")]
        + [arg for p in packages for arg in ("-p", p)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # not the checkout: the names must resolve through the install
    )
    assert result.returncode == 0, result.stdout + result.stderr
