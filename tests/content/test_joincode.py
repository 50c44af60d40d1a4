"""Class join codes: typeable, forgiving spellings, and every single typo caught offline."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from satchel.content.errors import FormatError, UsageError
from satchel.content.joincode import (
    ALPHABET,
    check_join_code,
    generate_join_code,
    is_join_code,
    normalise_join_code,
)

SHOWN = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")
codes = st.binary(min_size=5, max_size=5).map(lambda b: generate_join_code(lambda n: b[:n]))


def test_generated_codes_are_shown_as_two_groups_of_four_and_differ() -> None:
    made = {generate_join_code() for _ in range(200)}
    assert len(made) == 200
    assert all(SHOWN.fullmatch(c) for c in made)
    assert all(normalise_join_code(c) == c for c in made)


def test_the_alphabet_is_crockfords_without_ambiguous_letters() -> None:
    assert len(ALPHABET) == len(set(ALPHABET)) == 32
    assert not set("ILOU") & set(ALPHABET)


def test_the_example_in_error_messages_is_a_real_code() -> None:
    with pytest.raises(UsageError, match=r"like .{4}-.{4}$") as info:
        normalise_join_code("x")
    example = str(info.value).rsplit("like ", 1)[1]
    assert normalise_join_code(example) == example


@given(code=codes)
def test_a_child_may_type_lower_case_spaces_and_confusable_letters(code: str) -> None:
    plain = code.replace("-", "")
    assert normalise_join_code(plain.lower()) == code
    assert normalise_join_code(" ".join(plain)) == code
    assert normalise_join_code(f"  {code.lower()}  ") == code
    typed = plain.replace("0", "o").replace("1", "l")
    assert normalise_join_code(typed) == code


@given(code=codes)
def test_every_single_substitution_and_every_swap_is_caught(code: str) -> None:
    plain = code.replace("-", "")
    for i, ch in itertools.product(range(8), ALPHABET):
        if ch != plain[i]:
            assert not is_join_code(plain[:i] + ch + plain[i + 1 :]), (plain, i, ch)
    for i, j in itertools.combinations(range(8), 2):
        if plain[i] != plain[j]:
            swapped = list(plain)
            swapped[i], swapped[j] = swapped[j], swapped[i]
            assert not is_join_code("".join(swapped)), (plain, i, j)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "0 characters"),
        ("ABCD-EFG", "7 characters"),
        ("ABCD-EFGHJ", "9 characters"),
        ("ABCD-EFGU", "no code uses"),
        ("AB!D-EFGH", "no code uses"),
    ],
)
def test_malformed_codes_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        normalise_join_code(text)


def test_a_typo_is_reported_as_a_typo() -> None:
    code = generate_join_code()
    last = code[-1]
    other = ALPHABET[(ALPHABET.index(last) + 1) % 32]
    with pytest.raises(UsageError, match="typo"):
        normalise_join_code(code[:-1] + other)


def test_documents_carry_codes_only_in_their_shown_form() -> None:
    code = generate_join_code()
    assert check_join_code(code, "record") == code
    for variant in (code.lower(), code.replace("-", ""), f" {code}", 5, None):
        with pytest.raises(FormatError):
            check_join_code(variant, "record")
