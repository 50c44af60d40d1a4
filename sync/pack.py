"""The pack stream: many stored objects in one response, verifiable one by one as they arrive.

Byte format (all integers big-endian)::

    pack    = magic frame* trailer
    magic   = "SATPACK" 0x01                      (8 bytes)
    frame   = id:32 length:u32 object:length      (id = raw SHA-256 of the chunk's bytes)
    trailer = 0x00*32 count:u32                   (count = number of frames before it)

A reader never needs more than one frame in memory; it knows a pack was cut short because
the trailer is missing, and a frame is refused before it is buffered if its length exceeds
the limit. :class:`PackReader` is sans-IO: feed it bytes, take complete frames out.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from satchel.content.errors import FormatError, TruncatedError
from satchel.content.objects import MAX_OBJECT_LENGTH

MAGIC = b"SATPACK\x01"
_HEAD = struct.Struct(">32sI")
HEAD_SIZE = _HEAD.size
END_ID = bytes(32)
MAX_FRAME = MAX_OBJECT_LENGTH + 64
PACK_MEDIA_TYPE = "application/vnd.satchel.pack"


@dataclass(frozen=True, slots=True)
class PackFrame:
    chunk_id: str
    obj: bytes


@dataclass(frozen=True, slots=True)
class PartialFrame:
    """The frame a pack stopped inside: its id, declared object length and the bytes so far."""

    chunk_id: str
    length: int
    data: bytes


@dataclass(frozen=True, slots=True)
class PendingHead:
    """The frame begun: id, declared object length, object bytes so far, first object byte."""

    chunk_id: str
    length: int
    have: int
    format: int | None


def frame_head(cid: str, length: int) -> bytes:
    """A frame's head alone, for writers that send the object after it without a copy."""
    return _HEAD.pack(bytes.fromhex(cid), length)


def frame(cid: str, obj: bytes) -> bytes:
    return frame_head(cid, len(obj)) + obj


def trailer(count: int) -> bytes:
    return _HEAD.pack(END_ID, count)


def write_pack(items: Iterable[tuple[str, bytes]]) -> Iterator[bytes]:
    """Yield a whole pack, one frame at a time, for streaming responses."""
    yield MAGIC
    count = 0
    for cid, obj in items:
        yield frame(cid, obj)
        count += 1
    yield trailer(count)


def pack_bytes(items: Iterable[tuple[str, bytes]]) -> bytes:
    return b"".join(write_pack(items))


class PackReader:
    """Incremental pack parser: ``feed()`` bytes, get the frames completed so far."""

    def __init__(self, *, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame
        self._magic_seen = False
        self._count = 0
        self.done = False
        self.bytes_read = 0

    def feed(self, data: bytes) -> list[PackFrame]:
        if self.done:
            if data:
                raise FormatError("pack has data after its trailer")
            return []
        self.bytes_read += len(data)
        self._buf += data
        out: list[PackFrame] = []
        if not self._magic_seen:
            if len(self._buf) < len(MAGIC):
                if not MAGIC.startswith(bytes(self._buf)):
                    raise FormatError("not a Satchel pack (bad magic bytes)")
                return out
            if bytes(self._buf[: len(MAGIC)]) != MAGIC:
                raise FormatError("not a Satchel pack (bad magic bytes)")
            del self._buf[: len(MAGIC)]
            self._magic_seen = True
        pos = 0
        buf = self._buf
        while len(buf) - pos >= HEAD_SIZE:
            raw_id, length = _HEAD.unpack_from(buf, pos)
            if raw_id == END_ID:
                if length != self._count:
                    raise FormatError(
                        f"pack trailer counts {length} frames but {self._count} arrived"
                    )
                if len(buf) - pos > HEAD_SIZE:
                    raise FormatError("pack has data after its trailer")
                self.done = True
                pos += HEAD_SIZE
                break
            if length > self._max:
                raise FormatError(f"pack frame of {length:,} bytes exceeds the {self._max:,} limit")
            if len(buf) - pos - HEAD_SIZE < length:
                break
            start = pos + HEAD_SIZE
            out.append(PackFrame(raw_id.hex(), bytes(buf[start : start + length])))
            self._count += 1
            pos = start + length
        del buf[:pos]
        return out

    def close(self) -> None:
        """Raise TruncatedError if the pack ended before its trailer (a cut connection)."""
        if not self.done:
            raise TruncatedError(
                f"pack was cut short after {self._count} complete frames"
                f" ({self.bytes_read:,} bytes); the complete ones are kept"
            )

    @property
    def frames(self) -> int:
        return self._count

    @property
    def pending(self) -> PartialFrame | None:
        """The frame begun but not complete (its head has arrived), or None.

        After a cut this is what a client may keep to finish later with a Range request; the
        reader itself never hands out a partial frame as a frame.
        """
        head = self.pending_head
        if head is None:
            return None
        return PartialFrame(head.chunk_id, head.length, bytes(self._buf[HEAD_SIZE:]))

    @property
    def pending_head(self) -> PendingHead | None:
        """Like :attr:`pending` without copying the bytes: cheap enough to ask after each feed."""
        if self.done or not self._magic_seen or len(self._buf) < HEAD_SIZE:
            return None
        raw_id, length = _HEAD.unpack_from(self._buf, 0)
        if raw_id == END_ID or length > self._max:
            return None
        have = len(self._buf) - HEAD_SIZE
        return PendingHead(raw_id.hex(), length, have, self._buf[HEAD_SIZE] if have else None)


def read_pack(chunks: Iterable[bytes]) -> Iterator[PackFrame]:
    """Parse a whole pack from an iterable of byte pieces, raising if it is truncated."""
    reader = PackReader()
    for piece in chunks:
        yield from reader.feed(piece)
    reader.close()
