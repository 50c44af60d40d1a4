"""Checked rules about the code itself: layering and static types."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# content <- sync <- server / clients: a lower layer never imports a higher one.
FORBIDDEN = {
    "content": (
        "satchel.sync",
        "satchel.server",
        "satchel.clients",
        "fastapi",
        "httpx",
        "sqlmodel",
    ),
    "sync": ("satchel.server", "satchel.clients", "fastapi", "starlette", "httpx", "sqlmodel"),
    "server": ("satchel.clients",),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_downwards(layer: str) -> None:
    offending = []
    for path in sorted((REPO / layer).rglob("*.py")):
        for name in _imports(path):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[layer]):
                offending.append(f"{path.relative_to(REPO)} imports {name}")
    assert offending == []


def test_layer_rule_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("from satchel.server.app import create_app\n")
    assert "satchel.server.app" in _imports(bad)


def test_mypy_strict_is_clean() -> None:
    pytest.importorskip("mypy", reason="mypy comes with the dev extra")
    result = subprocess.run(
        [str(REPO / "scripts" / "typecheck")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert result.returncode == 0, result.stdout + result.stderr
