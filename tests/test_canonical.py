"""Canonical JSON: one byte string per value, and nothing else parses."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from satchel.content import canonical
from satchel.content.errors import FormatError

LIMIT = 1 << 20

keys = st.text(max_size=8)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)
objects = st.dictionaries(keys, json_values, min_size=1, max_size=6)


def decode(data: bytes) -> object:
    return canonical.decode(data, what="doc", max_bytes=LIMIT)


def test_encoding_is_sorted_compact_utf8() -> None:
    value = {"b": [1, True, None], "a": "é\n\"x\"", "ä": {"z": 0, "y": -5}}
    expected = '{"a":"é\\n\\"x\\"","b":[1,true,null],"ä":{"y":-5,"z":0}}'.encode()
    assert canonical.encode(value) == expected
    assert decode(expected) == value


def test_keys_sort_by_code_point_not_by_utf16_or_locale() -> None:
    # U+FF5E sorts before U+1F600 by code point, after it in UTF-16 code units.
    value = {"\U0001f600": 1, "\uff5e": 2, "B": 3, "a": 4}
    assert canonical.encode(value) == '{"B":3,"a":4,"～":2,"😀":1}'.encode()


@given(json_values)
def test_round_trip(value: object) -> None:
    data = canonical.encode(value)
    assert decode(data) == value
    assert canonical.encode(decode(data)) == data


@given(objects)
def test_spaces_are_refused(value: dict[str, object]) -> None:
    spaced = json.dumps(value, sort_keys=True, ensure_ascii=False).encode()  # ", " and ": "
    assert spaced != canonical.encode(value)
    with pytest.raises(FormatError, match="canonical"):
        decode(spaced)


@given(st.dictionaries(keys, json_values, min_size=2, max_size=6))
def test_unsorted_keys_are_refused(value: dict[str, object]) -> None:
    reordered = sorted(value.items(), reverse=True)
    body = ",".join(
        f"{json.dumps(k, ensure_ascii=False)}:{canonical.encode(v).decode()}" for k, v in reordered
    )
    with pytest.raises(FormatError, match="canonical"):
        decode(("{" + body + "}").encode())


@given(objects, st.data())
def test_duplicate_keys_are_refused(value: dict[str, object], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(value)))
    doc = canonical.encode(value)
    # Put a second copy of `key` first: {"k":dup,...rest including "k"...}
    dup = json.dumps(key, ensure_ascii=False).encode() + b":0,"
    with pytest.raises(FormatError, match="duplicate key"):
        decode(b"{" + dup + doc[1:])


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_are_refused_both_ways(number: float) -> None:
    with pytest.raises(FormatError):
        canonical.encode({"x": [number]})
    with pytest.raises(FormatError):
        decode(b'{"x":' + repr(number).encode() + b"}")


@pytest.mark.parametrize(
    "data",
    [
        b"1.0",
        b"1e3",
        b"-0",
        b"01",
        b'{"a":1} ',
        b' {"a":1}',
        b'{"a":1}\n',
        b'{"a" :1}',
        b'"\\u0041"',  # escaped where the canonical form writes the character
        b'"\\/"',
        '"é"'.encode().replace(b"\xc3\xa9", b"\\u00e9"),
        b"NaN",
        b"[Infinity]",
        b'{"a":true,"a":true}',
        b"\xef\xbb\xbf{}",  # BOM
        b'"\xff"',  # not UTF-8
        b'{"a":1',  # truncated
        b"",
        b"[1,]",
    ],
)
def test_non_canonical_or_invalid_documents_are_refused(data: bytes) -> None:
    with pytest.raises(FormatError):
        decode(data)


def test_size_limit_is_checked_before_parsing() -> None:
    doc = canonical.encode({"k": "x" * 100})
    assert decode(doc) == {"k": "x" * 100}
    with pytest.raises(FormatError, match="limit"):
        canonical.decode(doc, what="doc", max_bytes=len(doc) - 1)


def test_escaped_control_characters_are_canonical() -> None:
    value = "\x00\x1f\t\u2028"
    data = canonical.encode(value)
    assert data == b'"\\u0000\\u001f\\t\xe2\x80\xa8"'
    assert decode(data) == value


@pytest.mark.xfail(
    strict=True,
    reason="BUG: canonical.decode lets json's ValueError for >4300-digit integers escape"
    " instead of raising FormatError",
)
def test_huge_integer_is_a_format_error() -> None:
    with pytest.raises(FormatError):
        decode(b"1" * 5000)


@pytest.mark.xfail(
    strict=True,
    reason="BUG: canonical.decode raises UnicodeEncodeError (not FormatError) for a string"
    " holding an escaped lone surrogate such as \\ud800",
)
def test_lone_surrogate_escape_is_a_format_error() -> None:
    with pytest.raises(FormatError):
        decode(b'{"a":"\\ud800"}')


@pytest.mark.xfail(
    strict=True,
    reason="BUG: canonical.decode raises RecursionError (not FormatError) for deeply nested"
    " arrays, e.g. 100,000 '[' (well under the index's 8 MiB limit)",
)
def test_deep_nesting_is_a_format_error() -> None:
    with pytest.raises(FormatError):
        decode(b"[" * 100_000 + b"]" * 100_000)
