"""Byte-level helpers shared by the bitstream containers (standard and learned codecs):
unsigned LEB128 varints and a bounds-checked reader that raises BitstreamError, never
IndexError, on truncated or corrupt input."""

from __future__ import annotations

from .errors import BitstreamError


def encode_varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if not n:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


class ByteReader:
    """Reads ``data`` front to back; ``name`` prefixes error messages (e.g. the codec)."""

    def __init__(self, data: bytes, name: str = ""):
        self.data, self.pos = data, 0
        self.prefix = f"{name}: " if name else ""

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise BitstreamError(f"{self.prefix}bitstream truncated while reading {what}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str, limit: int) -> int:
        """A varint of at most 5 bytes whose value must not exceed ``limit``."""
        n = shift = 0
        for _ in range(5):
            b = self.u8(what)
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if n > limit:
                    raise BitstreamError(f"{self.prefix}{what} {n} is out of range (corrupt header)")
                return n
        raise BitstreamError(f"{self.prefix}{what}: malformed varint (corrupt header)")
