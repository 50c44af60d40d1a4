"""Locale names from CLDR: in their own language, capitalised, and never a crash."""

from __future__ import annotations

import pytest
from babel import Locale
from satchel.content.locales import locale_name, locale_name_in


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("uk", "Українська"),
        ("ky", "Кыргызча"),
        ("uz", "Oʻzbekcha"),
        ("tg", "Тоҷикӣ"),
        ("es", "Español"),
        ("en", "English"),
        ("ru", "Русский"),
        ("kk", "Қазақ тілі"),
    ],
)
def test_names_in_their_own_language(code: str, name: str) -> None:
    assert locale_name(code) == name


def test_names_come_from_cldr_capitalised_at_the_start_only() -> None:
    for code in ("uk", "es", "ru", "de", "fr", "pt-BR", "en-GB", "kk"):
        own = Locale.parse(code.replace("-", "_")).display_name
        assert own is not None
        assert locale_name(code) == own[0].upper() + own[1:]
        assert locale_name(code, capitalize=False) == own
    assert locale_name("en-GB") == "English (United Kingdom)"  # not "English (united kingdom)"
    assert locale_name("uk", capitalize=False) == "українська"


def test_uzbek_latin_uses_the_letter_and_cyrillic_its_own_script() -> None:
    name = locale_name("uz")
    assert name[1] == "\u02bb"  # MODIFIER LETTER TURNED COMMA, not CLDR's U+2018 quote
    assert "\u2018" not in locale_name("uz-Latn") and locale_name("uz-Latn").startswith(name)
    assert locale_name("uz-Cyrl").startswith("Ўзбекча")
    # Names shown in Uzbek (Latin) use the letter too; in other languages Uzbek is CLDR's.
    assert "\u2018" not in locale_name_in("uz-Cyrl", "uz")
    assert locale_name_in("uz", "en") == "Uzbek"


def test_a_name_in_another_language_for_tooltips() -> None:
    assert locale_name_in("es", "uk") == "Іспанська"
    assert locale_name_in("uk", "es") == "Ucraniano"
    assert locale_name_in("ky", "ru") == "Киргизский"
    assert locale_name_in("es", "uk", capitalize=False) == "іспанська"
    # An unknown display language: the locale's own name.
    assert locale_name_in("uk", "xx") == "Українська"


@pytest.mark.parametrize(
    "code",
    ["xx", "sgn", "", "zz-ZZ", "../../etc", "en\x00", "a" * 10_000, "ук", "en-", "-", "\ud800"],
)
def test_unknown_or_hostile_codes_fall_back_to_the_code(code: str) -> None:
    assert locale_name(code) == code
    assert locale_name_in(code, "uk") == code
    assert locale_name_in("uk", code) == "Українська"


def test_names_are_cached() -> None:
    locale_name.cache_clear()
    locale_name("kk")
    locale_name("kk")
    assert locale_name.cache_info().hits >= 1
