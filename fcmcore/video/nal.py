"""Annex-B elementary streams: NAL units and access units of HEVC and VVC.

Per-frame bits are measured on the stream a decoder reads: the stream is cut at its start
codes (``00 00 01``, with any leading ``00`` of a 4-byte start code counted with the unit
that follows), each NAL unit's type read from its header, and units grouped into access
units (one coded picture each) by the rules of the standards:

* HEVC (H.265 7.4.2.4.4): a new access unit starts at the first of VPS, SPS, PPS, AUD,
  prefix SEI (types 32-35, 39, 41-44, 48-55) or a slice with ``first_slice_segment_in_pic_flag``
  that follows a slice of the current one. Suffix SEI, EOS, EOB, filler stay with the current.
* VVC (H.266 7.4.2.4.3): a new picture unit starts at the first of OPI, DCI, VPS, SPS, PPS,
  prefix APS, picture header, AUD, prefix SEI (types 12-17, 19, 20, 23, 26-29) or a slice
  with ``sh_picture_header_in_slice_header_flag`` (a picture coded as one slice) after a slice.

Every byte belongs to exactly one unit, so ``sum(sizes) == len(stream)``. Access units come
in *decoding* order; the decoder (:mod:`fcmcore.video.sequence`) maps them to display order.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BitstreamError, ParameterError

_HEVC_STARTS_AU = {32, 33, 34, 35, 39, 41, 42, 43, 44, *range(48, 56)}
_VVC_STARTS_PU = {12, 13, 14, 15, 16, 17, 19, 20, 23, 26, 27, 28, 29}


@dataclass(frozen=True)
class NalUnit:
    offset: int  # first byte (start code included)
    size: int  # bytes, start code included
    type: int
    vcl: bool
    first_in_picture: bool  # VCL only: starts a picture (see the module docstring)


def nal_units(data: bytes, codec: str) -> list[NalUnit]:
    """The NAL units of an Annex-B ``hevc`` or ``vvc`` stream, in stream order."""
    if codec not in ("hevc", "vvc"):
        raise ParameterError(f"NAL parsing knows hevc and vvc, not {codec!r}")
    data = bytes(data)
    starts = []  # (span start, header position)
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        span = i - 1 if i > 0 and data[i - 1] == 0 else i
        starts.append((span, i + 3))
        i = data.find(b"\x00\x00\x01", i + 3)
    if not starts:
        raise BitstreamError(f"{codec}: no start code: not an Annex-B elementary stream")
    if starts[0][0] != 0 and any(data[: starts[0][0]]):
        raise BitstreamError(f"{codec}: {starts[0][0]} bytes of garbage before the first start code")
    units = []
    for k, (span, head) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(data)
        begin = 0 if k == 0 else span
        if head + 2 >= end:
            raise BitstreamError(f"{codec}: NAL unit at byte {span} is cut short")
        b0, b1 = data[head], data[head + 1]
        if b0 & 0x80:
            raise BitstreamError(f"{codec}: forbidden_zero_bit set in the NAL unit at byte {span}")
        first_payload = data[head + 2] if head + 2 < end else 0
        if codec == "hevc":
            t = (b0 >> 1) & 0x3F
            vcl = t < 32
        else:
            t = (b1 >> 3) & 0x1F
            vcl = t < 12
        units.append(NalUnit(begin, end - begin, t, vcl, bool(vcl and first_payload & 0x80)))
    return units


def access_units(data: bytes, codec: str) -> list[list[NalUnit]]:
    """NAL units grouped into access units (pictures), in decoding order. Units before the
    first picture's slices (parameter sets) belong to the first access unit."""
    groups: list[list[NalUnit]] = []
    current: list[NalUnit] = []
    has_vcl = False
    starts = _HEVC_STARTS_AU if codec == "hevc" else _VVC_STARTS_PU
    for u in nal_units(data, codec):
        new = has_vcl and ((not u.vcl and u.type in starts) or (u.vcl and u.first_in_picture))
        if new:
            groups.append(current)
            current, has_vcl = [], False
        current.append(u)
        has_vcl = has_vcl or u.vcl
    if current:
        if not has_vcl and groups:
            groups[-1].extend(current)  # trailing non-VCL units (EOS, suffix SEI) stay with the last
        else:
            groups.append(current)
    if not any(u.vcl for g in groups for u in g):
        raise BitstreamError(f"{codec}: stream has no coded picture")
    return groups


def access_unit_sizes(data: bytes, codec: str) -> list[int]:
    """Bytes of each access unit in decoding order (they sum to ``len(data)``)."""
    return [sum(u.size for u in g) for g in access_units(data, codec)]


def split_access_units(data: bytes, codec: str) -> list[bytes]:
    """The stream cut into one byte string per access unit, in decoding order."""
    out = []
    for g in access_units(data, codec):
        a, b = g[0].offset, g[-1].offset + g[-1].size
        out.append(data[a:b])
    return out
