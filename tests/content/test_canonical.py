"""Canonical JSON: one byte string per value, and nothing else parses."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
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
    value = {"b": [1, True, None], "a": 'é\n"x"', "ä": {"z": 0, "y": -5}}
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


@settings(max_examples=50)
@given(objects)
def test_spaces_are_refused(value: dict[str, object]) -> None:
    spaced = json.dumps(value, sort_keys=True, ensure_ascii=False).encode()  # ", " and ": "
    assert spaced != canonical.encode(value)
    with pytest.raises(FormatError, match="canonical"):
        decode(spaced)


@settings(max_examples=50)
@given(st.dictionaries(keys, json_values, min_size=2, max_size=6))
def test_unsorted_keys_are_refused(value: dict[str, object]) -> None:
    reordered = sorted(value.items(), reverse=True)
    body = ",".join(
        f"{json.dumps(k, ensure_ascii=False)}:{canonical.encode(v).decode()}" for k, v in reordered
    )
    with pytest.raises(FormatError, match="canonical"):
        decode(("{" + body + "}").encode())


@settings(max_examples=50)
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


# Found by this suite as bugs (json's ValueError, UnicodeEncodeError and RecursionError
# escaped); fixed in canonical.decode since. Hostile documents must give FormatError only.
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"1" * 5000, id="integer-of-5000-digits"),
        pytest.param(b'{"a":"\\ud800"}', id="lone-surrogate-escape"),
        pytest.param(b'["\\udc00\\ud800"]', id="reversed-surrogate-pair"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deep-nesting"),
        pytest.param(b'{"a":' * 50_000 + b"1" + b"}" * 50_000, id="deep-objects"),
    ],
)
def test_pathological_documents_are_format_errors(data: bytes) -> None:
    with pytest.raises(FormatError):
        decode(data)


def test_escaped_surrogate_pair_is_not_canonical() -> None:
    assert decode('"😀"'.encode()) == "😀"
    with pytest.raises(FormatError):
        decode(b'"\\ud83d\\ude00"')  # same character, escaped: not the canonical spelling
