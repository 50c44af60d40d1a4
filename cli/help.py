"""Help text that names what an option takes, never a Python type.

Typer prints each parameter's annotation in help (``--server <str>``, ``--json <bool>``,
``--only <list[str]>``) and a required argument in braces (``publish [OPTIONS] {src}``), which
reads as noise to a teacher. The composition root passes the built command through
:func:`plain_help`: a value option shows its metavar (declared, else a word for what it takes:
``--server URL``, ``--store DIR``), a flag shows nothing, an argument is named in capitals.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperOption

# What an option takes, by parameter name, when its declaration gives no metavar.
WORDS = {
    "server": "URL",
    "database_url": "URL",
    "storage": "URL",
    "store": "DIR",
    "data": "DIR",
    "to": "PATH",
    "out": "FILE",
    "signing_key": "FILE",
    "bundle": "NAME",
    "name": "NAME",
    "locale": "CODE",
    "from_locale": "CODE",
    "token": "TOKEN",
    "trust": "FINGERPRINT",
    "rate_limit": "RATE",
    "max_bytes": "SIZE",
    "reserve": "SIZE",
    "keep": "N",
    "version": "N",
    "since": "N",
    "retries": "N",
    "base_version": "N",
    "static_deltas": "K",
    "port": "PORT",
    "host": "HOST",
    "title": "TEXT",
    "notes": "TEXT",
    "label": "TEXT",
    "only": "PATH",
    "timeout": "SECONDS",
    "keep_alive": "SECONDS",
    "role": "admin|teacher|curator",
    "log_format": "text|json",
}


class _PlainOption(TyperOption):
    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None
        return self.metavar or WORDS.get(self.name or "", (self.name or "value").upper())


class _PlainArgument(TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the name column already says what it is

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        name = self.display_name_raw + ("..." if self.nargs != 1 else "")
        return [name if self.required else f"[{name}]"]


def plain_help(command: Any) -> Any:
    """``command`` (built by ``typer.main.get_command``) with plain help, everywhere below it."""
    ctx = typer.Context(command)
    help_option = command.get_help_option(ctx)  # made lazily by typer: make it now
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = (param.name or "arg").upper()
            param.__class__ = _PlainArgument
        elif isinstance(param, TyperOption):
            param.__class__ = _PlainOption
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)
    return command
