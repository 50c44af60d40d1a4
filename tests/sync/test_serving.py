"""What the read side's answers are named by: short, distinct ETags."""

from __future__ import annotations

import hashlib

from satchel.sync.serving import body_etag, etag


def test_etags_are_128_bits_and_each_names_one_thing() -> None:
    a, b = (hashlib.sha256(x).hexdigest() for x in (b"a", b"b"))
    tags = [etag(a), etag(b), etag(a, "from", b), etag(b, "from", a), etag(a, "to", b)]
    tags.append(body_etag(b"an index"))
    assert len(set(tags)) == len(tags)
    assert all(len(t) == 34 and t[0] == t[-1] == '"' for t in tags)
    assert etag(a) == f'"{a[:32]}"'  # an id's tag is its prefix: a log line still finds it
    assert etag(a, "from", b) == etag(a, "from", b)  # every replica and relay says the same
