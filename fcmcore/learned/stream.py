"""The learned codecs' bitstream container (the format is in ``codec``'s docstring):
``pack_stream`` writes the header, the rANS strings and the CRC; ``parse_stream`` checks
every field and returns the ``StreamHeader``; ``_safe_padding`` bounds the rANS decoder's
reads; ``learned_encoded`` wraps a stream as the ``Encoded`` a ``FeatureCoder`` returns."""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ..byteio import ByteReader, encode_varint
from ..coding.base import Encoded
from ..errors import BitstreamError


MAGIC = 0xFC
VERSION = 1
CODEC_IDS = {"factorized": 1, "hyperprior": 2, "context": 3, "direct": 4, "scar": 5}


@dataclass
class StreamHeader:
    codec_id: int
    quality: int
    fingerprint: int
    shape: tuple[int, int, int]
    strings: list[bytes]
    header_bytes: int


def pack_stream(codec_id: int, quality: int, fingerprint: int, shape: tuple[int, int, int],
                strings: list[bytes]) -> tuple[bytes, int]:
    """(bitstream, header bytes)."""
    head = bytearray([MAGIC, (VERSION << 4) | codec_id, quality])
    head += struct.pack("<H", fingerprint)
    for s in shape:
        head += encode_varint(int(s))
    head += encode_varint(len(strings))
    for s in strings:
        head += encode_varint(len(s))
    body = bytes(head) + b"".join(strings)
    crc = struct.pack("<H", zlib.crc32(body) & 0xFFFF)
    return body + crc, len(head) + len(crc)


def parse_stream(data: bytes, name: str, codec_id: int, max_strings: int = 16) -> StreamHeader:
    if len(data) < 10:
        raise BitstreamError(f"{name}: bitstream too short ({len(data)} bytes)")
    if zlib.crc32(data[:-2]) & 0xFFFF != struct.unpack("<H", data[-2:])[0]:
        raise BitstreamError(f"{name}: checksum mismatch (bitstream truncated or corrupted)")
    r = ByteReader(data[:-2], name)
    if r.u8("magic") != MAGIC:
        raise BitstreamError(f"{name}: not a learned-codec bitstream (bad magic byte)")
    vb = r.u8("version")
    if vb >> 4 != VERSION:
        raise BitstreamError(f"{name}: unsupported bitstream version {vb >> 4}")
    if vb & 0x0F != codec_id:
        other = {v: k for k, v in CODEC_IDS.items()}.get(vb & 0x0F, f"id {vb & 0x0F}")
        raise BitstreamError(f"{name}: bitstream was made by codec {other}, not {name}")
    quality = r.u8("quality")
    fingerprint = struct.unpack("<H", r.take(2, "fingerprint"))[0]
    shape = tuple(r.varint(what, 1 << 16) for what in ("channels", "height", "width"))
    n = r.varint("string count", max_strings)
    lengths = [r.varint("string length", len(data)) for _ in range(n)]
    header_bytes = r.pos + 2
    strings = [r.take(k, "payload") for k in lengths]
    if r.pos != len(r.data):
        raise BitstreamError(f"{name}: {len(r.data) - r.pos} unexpected bytes after the payload")
    return StreamHeader(vb & 0x0F, quality, fingerprint, shape, strings, header_bytes)


def _safe_padding(stream: bytes, num_symbols: int) -> bytes:
    """The stream plus zero bytes past which the rANS decoder cannot read.

    CompressAI's decoder reads one 32-bit word per renormalisation and has no end check.
    Per symbol: one decode step, and in bypass mode one get-bits, a run of get-bits while
    they return 15, then n_bypass get-bits. Every call reads at most one word; zero words
    only ever yield 0 nibbles, so the runs of 15 and n_bypass are bounded by the stream's
    own nibbles (2 per byte, plus 16 left in the 64-bit state) and the symbol count S:
    calls <= 17 S + 32 L + 256 for an L-byte stream. Pad that many words (plus the two
    the initialisation reads): memory only, never transmitted."""
    words = 17 * num_symbols + 32 * len(stream) + 260
    return stream + bytes(4 * words)


class LazyFeatures(Mapping):
    """{tensor: encoder-side reconstruction}, synthesised on first access: the pipeline
    reads the decoder's, so the encoder no longer runs the synthesis transform on every
    encode (it was 5-10 % of a learned codec's pipeline)."""

    def __init__(self, name: str, make: Callable[[], torch.Tensor]):
        self._name, self._make, self._value = name, make, None
        self._lock = threading.Lock()

    def __getitem__(self, key: str) -> torch.Tensor:
        if key != self._name:
            raise KeyError(key)
        with self._lock:
            if self._value is None:
                self._value = self._make()
            return self._value

    def __iter__(self) -> Iterator[str]:
        return iter((self._name,))

    def __len__(self) -> int:
        return 1


def learned_encoded(data: bytes, header_bytes: int, quality: int, payload_bits_estimated: float,
                    features_hat: Mapping[str, torch.Tensor], y_hat: torch.Tensor) -> Encoded:
    """The ``Encoded`` of a learned codec: ``bits_estimated`` = likelihood estimate of the
    payload + the exact header bits; ``extra`` keeps the payload estimate alone, the
    encoder-side reconstruction ``features_hat`` and the quantised latent ``y_hat``."""
    return Encoded(bitstream=data, quality=quality, header_bytes=header_bytes,
                   bits_estimated=payload_bits_estimated + 8 * header_bytes,
                   extra={"payload_bits_estimated": payload_bits_estimated, "features_hat": features_hat,
                          "y_hat": y_hat})
