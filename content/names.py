"""Bundle names and locale codes: they become folder names, so they are checked strictly."""

from __future__ import annotations

import re

from .errors import FormatError, UsageError

_BUNDLE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# A BCP 47-shaped tag: language, then optional script/region/variant subtags ("en", "pt-BR",
# "sr-Latn", "es-419").
_LOCALE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}")

DEFAULT_LOCALE = "en"


def check_bundle(name: str) -> str:
    """Return ``name`` if it is a valid bundle name, else raise UsageError."""
    if not _BUNDLE.fullmatch(name) or ".." in name:
        raise UsageError(
            f"invalid bundle name {name!r}: use 1-64 lowercase letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return name


def check_locale(code: str) -> str:
    """Return ``code`` if it is a valid locale tag such as 'en', 'uk' or 'pt-BR'."""
    if not _LOCALE.fullmatch(code):
        raise UsageError(
            f"invalid locale {code!r}: use a language tag such as 'en', 'uk' or 'pt-BR'"
        )
    return code


def parse_bundle_locale(raw: dict[str, object], what: str) -> tuple[str, str]:
    """The bundle and locale fields of a signed document, or FormatError naming ``what``."""
    bundle, locale = raw.get("bundle"), raw.get("locale")
    if not isinstance(bundle, str) or not isinstance(locale, str):
        raise FormatError(f"{what} bundle and locale must be strings")
    try:
        return check_bundle(bundle), check_locale(locale)
    except UsageError as exc:
        raise FormatError(f"{what}: {exc}") from None
