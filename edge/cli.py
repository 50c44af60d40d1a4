"""The command line's plumbing, shared by the server's and the clients' commands.

A command body runs inside :func:`run`: one of our errors becomes one line on stderr and the
exit code its class carries (:mod:`satchel.content.errors`, one table); an error of the machine
itself (a disk, a permission) becomes one line naming the file and exit code 7; Ctrl-C says
how to resume and exits 130. Output for scripts goes to stdout; everything for people goes to
stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from satchel.content.errors import (
    EXIT_INTERRUPTED,
    EXIT_MACHINE,
    EXIT_OTHER,
    ContentError,
    SatchelError,
    TransportError,
    UnreachableError,
)

err = Console(stderr=True, highlight=False, soft_wrap=True)
T = TypeVar("T")


INTERRUPTED = "interrupted; run the same command to resume"


def fail(message: str, code: int = EXIT_OTHER) -> NoReturn:
    # Plain write: rich would wrap a long reason over several lines.
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    raise typer.Exit(code)


def run(
    action: Callable[[], T],
    *,
    content_note: str = "",
    link_note: Callable[[], str] = lambda: "",
) -> T:
    """Run a command body, turning errors into one line and an exit code.

    ``content_note`` is added to a verification failure (what it did not touch);
    ``link_note`` to a link failure (how many retries were spent). Resuming is suggested only
    for a link that was cut: when nothing answered at all, the message asks whether a server
    runs there instead.
    """
    try:
        return action()
    except ContentError as exc:
        fail(f"{exc}{content_note}", exc.exit_code)
    except UnreachableError as exc:
        note = link_note().removesuffix("; ")
        fail(f"{exc} ({note})" if note else str(exc), exc.exit_code)
    except TransportError as exc:
        fail(f"{exc} ({link_note()}run the same command again to resume)", exc.exit_code)
    except SatchelError as exc:
        fail(str(exc), exc.exit_code)
    except OSError as exc:
        fail(f"{exc.filename or ''}: {exc.strerror or exc}", EXIT_MACHINE)
    except KeyboardInterrupt:
        # Everything verified is already stored and every switch is atomic: nothing to undo.
        sys.stderr.write(f"\n{INTERRUPTED}\n")
        raise typer.Exit(EXIT_INTERRUPTED) from None
