"""Starting ``satchel`` loads what every command needs, not what one command needs.

Every command (``status`` on a laptop, ``--help``, a script's ``sync``) pays for the modules
the command line imports before it runs: HTTP, publishing, the records route, progress bars
and the server's web stack each load inside the commands that use them. Checked in a fresh
interpreter, so nothing this test process imported counts.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Modules only some commands use (each was imported by every command before).
LATER = (
    "httpx",
    "satchel.clients.http",
    "satchel.sync.publish",
    "satchel.content.tree",
    "satchel.sync.updater",
    "satchel.sync.records_sync",
    "satchel.sync.outbox",
    "satchel.sync.checkout",
    "markdown_it",
    "rich.progress",
    "fastapi",
    "sqlmodel",
)


def loaded_after(code: str) -> set[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_command_line_loads_no_command_s_own_modules() -> None:
    loaded = loaded_after("import satchel.cli; satchel.cli.command()")
    assert "satchel.clients.commands.store" in loaded  # the probe did load the commands
    assert sorted(m for m in LATER if m in loaded) == []


@pytest.mark.parametrize("command", ["status", "sync", "publish", "import"])
def test_help_of_a_command_loads_nothing_it_would_run(command: str) -> None:
    code = (
        "import satchel.cli\n"
        "try:\n"
        f"    satchel.cli.command()([{command!r}, '--help'], prog_name='satchel')\n"
        "except SystemExit:\n"
        "    pass"
    )
    # Help is drawn by typer's rich formatting, which loads markdown_it itself.
    later = [m for m in LATER if m != "markdown_it"]
    assert sorted(m for m in later if m in loaded_after(code)) == []
