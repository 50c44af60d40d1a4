"""The server's commands for classes: ``class create|list``, ``device list|revoke`` and
``learner list|revoke``, run on the server's data folder as an admin (like ``token``).

They never sign anything: the repository is opened for administration only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol, TypeVar

import typer
from satchel.content.names import DEFAULT_LOCALE
from satchel.edge.cli import err, run

from .commands import DatabaseUrl, open_repository

if TYPE_CHECKING:  # the token model and the repository pull in SQLModel: 0.3 s at start-up
    from .repository import Repository
    from .tokens import Principal

class_commands = typer.Typer(help="Classes learners join with a code.", no_args_is_help=True)
device_commands = typer.Typer(help="Laptops that report learning records.", no_args_is_help=True)
learner_commands = typer.Typer(help="Learners of the classes.", no_args_is_help=True)

Data = Annotated[Path, typer.Option(help="The server's data folder.")]
Bundle = Annotated[str, typer.Option(help="Bundle name.")]
Locale = Annotated[str, typer.Option("--locale", help="Locale code.")]
AsJson = Annotated[bool, typer.Option("--json", help="One JSON array on stdout.")]
Reason = Annotated[str, typer.Option(help="Why (shown in the report and the server log).")]


def _admin() -> Principal:
    """Whoever holds the data folder administers it (as ``token`` does)."""
    # Imported here: tokens pulls in SQLModel (0.3 s), which every other command would pay
    # at start-up.
    from .tokens import SYSTEM

    return SYSTEM


def _repo(data: Path, database_url: str | None) -> Repository:
    """The server's data, opened for administration: no signing key, no object store."""
    return run(lambda: open_repository(data, database_url, None, None, signs=False))


if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Row = TypeVar("Row", bound="DataclassInstance")


def _show(rows: Sequence[Row], as_json: bool, line: Callable[[Row], str]) -> None:
    """One JSON array of the rows, or one tab-separated line each."""
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows]))
        return
    for r in rows:
        typer.echo(line(r))


@class_commands.command("create")
def class_create(
    data: Data,
    bundle: Bundle,
    name: Annotated[str, typer.Option(help="The class's name, as teachers will see it.")],
    locale: Locale = DEFAULT_LOCALE,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a class and print only its join code (a child types it at satchel join)."""
    repo = _repo(data, database_url)
    made = run(lambda: repo.classes.create(_admin(), bundle, locale, name))
    err.print(f"class {made.name!r} of {bundle}/{locale}")
    typer.echo(made.code)


@class_commands.command("list")
def class_list(
    data: Data,
    bundle: Bundle,
    locale: Locale = DEFAULT_LOCALE,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
) -> None:
    """A line's classes: code, name, learners."""
    repo = _repo(data, database_url)
    found = run(lambda: repo.classes.list_classes(_admin(), bundle, locale))
    _show(found, as_json, lambda c: f"{c.code}\t{c.learners} learners\t{c.created}\t{c.name}")


@device_commands.command("list")
def device_list(
    data: Data,
    bundle: Bundle,
    locale: Locale = DEFAULT_LOCALE,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Laptops that reported learners of a line's classes, last report first."""
    repo = _repo(data, database_url)
    found = run(lambda: repo.classes.devices(_admin(), bundle, locale))
    _show(
        found,
        as_json,
        lambda d: (
            f"{d.device}\t{d.learners} learners\tlast {d.last_seen}"
            f"\tacked {d.acked_through}\t{_state(d)}"
        ),
    )


@device_commands.command("revoke")
def device_revoke(
    device: Annotated[str, typer.Argument(help="The device id (see 'satchel device list').")],
    data: Data,
    reason: Reason,
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a laptop: its later batches are refused, with the reason."""
    repo = _repo(data, database_url)
    done = run(lambda: repo.classes.revoke_device(_admin(), device, reason))
    err.print(f"device {done.device[:16]}... revoked: {done.revoked_reason}")


@learner_commands.command("list")
def learner_list(
    data: Data,
    bundle: Bundle,
    locale: Locale = DEFAULT_LOCALE,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Learners of a line's classes."""
    repo = _repo(data, database_url)
    found = run(lambda: repo.classes.learners(_admin(), bundle, locale))
    _show(
        found,
        as_json,
        lambda x: f"{x.learner}\t{x.class_code}\t{x.records} records\t{_state(x)}\t{x.name}",
    )


@learner_commands.command("revoke")
def learner_revoke(
    learner: Annotated[str, typer.Argument(help="The learner id (see 'satchel learner list').")],
    data: Data,
    reason: Reason,
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a learner: later records are kept aside, never reported."""
    repo = _repo(data, database_url)
    done = run(lambda: repo.classes.revoke_learner(_admin(), learner, reason))
    err.print(f"learner {done.learner} revoked: {done.revoked_reason}")


class _Revocable(Protocol):
    @property
    def revoked(self) -> bool: ...
    @property
    def revoked_reason(self) -> str | None: ...


def _state(row: _Revocable) -> str:
    return f"revoked: {row.revoked_reason}" if row.revoked else "active"
