"""Locale codes as names people read: "uk" is "Українська", in its own language, from CLDR.

:func:`locale_name` names a locale in its own language (the catalog, the locale switcher);
:func:`locale_name_in` names it in another one (a tooltip: Spanish in Ukrainian is
"Іспанська"). Names come from the Unicode CLDR through babel, capitalised for the start of a
label (CLDR writes many autonyms in lower case: "українська", "español"). A code babel does
not know, or one that is not a locale tag at all, comes back as itself: a name is a nicety,
never a reason for a page to fail. Results are cached.

Uzbek in the Latin script writes the letters oʻ and gʻ with U+02BB MODIFIER LETTER TURNED
COMMA (and the tutuq belgisi with U+02BC); CLDR uses the quotation marks U+2018 and U+2019 in
their place, which break words for search and screen readers. Names shown in Uzbek (Latin)
use the letters. Uzbek's own name is the form its speakers label a language choice with,
"Oʻzbekcha" (CLDR gives the adjective "o‘zbek"), as CLDR does for Kyrgyz ("кыргызча").
"""

from __future__ import annotations

import functools

from babel import Locale, UnknownLocaleError

# Autonyms where the field's usage differs from CLDR's, by (language, script of the display
# locale); the rest of a name (script, region) still comes from CLDR.
_AUTONYMS = {("uz", "Latn"): "oʻzbekcha"}

# CLDR's stand-ins for the Uzbek Latin letters, and the letters themselves.
_UZBEK_LATIN = str.maketrans({"\u2018": "\u02bb", "\u2019": "\u02bc"})

MAX_CODE = 35  # longest BCP 47 tag worth asking about (satchel's own tags are shorter)


def _locale(code: str) -> Locale | None:
    if not code or len(code) > MAX_CODE or not code.isascii():
        return None
    try:
        return Locale.parse(code.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def _capital(text: str) -> str:
    # Only the first letter: "English (United Kingdom)" must keep its other capitals.
    return text[:1].upper() + text[1:]


def _script(where: Locale) -> str:
    """The script a locale writes in (Uzbek without a script subtag is Latin)."""
    return (where.script or "Latn") if where.language == "uz" else (where.script or "")


@functools.lru_cache(maxsize=1024)
def locale_name_in(code: str, display: str, *, capitalize: bool = True) -> str:
    """The name of locale ``code`` in the language of ``display`` ("es", "uk" -> "Іспанська").

    Falls back to the name in the locale's own language, then to ``code`` itself.
    """
    loc = _locale(code)
    if loc is None:
        return code
    where = _locale(display) or loc
    name = loc.get_display_name(where)
    if not name:
        name = loc.get_display_name(loc)
        where = loc
    if not name:
        return code
    language = loc.get_language_name(where) or ""
    script = _script(where)
    own = _AUTONYMS.get((loc.language, script)) if where.language == loc.language else None
    if own is not None and name.startswith(language):
        name = own + name[len(language) :]  # keep the script or region CLDR adds
    if (where.language, script) == ("uz", "Latn"):
        name = name.translate(_UZBEK_LATIN)
    return _capital(name) if capitalize else name


@functools.lru_cache(maxsize=1024)
def locale_name(code: str, *, capitalize: bool = True) -> str:
    """The name of locale ``code`` in its own language ("uk" -> "Українська"), else ``code``."""
    return locale_name_in(code, code, capitalize=capitalize)
