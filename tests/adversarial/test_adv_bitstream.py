"""The feature container detects damage and caps sizes before allocating.

Mutations (flips, cuts, inserts) of real frame-codec streams must all be refused (the
CRC-32 covers header and payloads); a forged stream with a correct checksum declaring a
huge frame must be refused from its header alone, before any codec or numpy allocation;
a stream whose tensors are not the model split's is refused when the decoder says what it
expects."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from corpus import big_flat_png, forged_stream, reseal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcmcore import bitstream
from fcmcore.bitstream import decode_features, encode_features
from fcmcore.codecs import get_codec
from fcmcore.errors import BitstreamError

MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 1 << 20), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.integers(0, 255)),
)


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for kind, pos, val in ops:
        pos %= len(buf) + (kind == "insert")
        if kind == "flip" and pos < len(buf):
            buf[pos] ^= val
        elif kind == "cut":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = bytes([val])
        if not buf:
            break
    return bytes(buf)


def _features():
    g = torch.Generator().manual_seed(0)
    return {"expanded_conv_9": torch.randn(1, 16, 10, 10, generator=g).cumsum(-1)}


@pytest.fixture(scope="module", params=["png", "jpeg", "hevc"])
def stream(request):
    codec = get_codec(request.param)
    if not codec.available()[0]:
        pytest.skip(f"{request.param} unavailable")
    return codec, encode_features(_features(), codec, codec.quality.default).data


def test_renamed_tensor_is_refused(stream):
    codec, data = stream
    name_at = data.index(b"expanded_conv_9")
    bad = bytearray(data)
    bad[name_at + 10] ^= ord("o") ^ ord("j")  # expanded_cjnv_9
    with pytest.raises(BitstreamError, match="checksum"):
        decode_features(bytes(bad), codec)


@pytest.mark.timeout(600)
def test_every_mutation_that_changes_the_stream_is_refused(stream):
    codec, data = stream
    outcome = {"refused": 0, "unchanged": 0}

    @settings(max_examples=80, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(ops=st.lists(MUTATION, min_size=1, max_size=3))
    def check(ops):
        bad = mutate(data, ops)
        if bad == data:
            outcome["unchanged"] += 1
            return
        with pytest.raises(BitstreamError):
            decode_features(bad, codec)
        outcome["refused"] += 1

    check()
    assert outcome["refused"] >= 60


def _no_codec_decode(monkeypatch, codec):
    def refuse(*args, **kwargs):
        raise AssertionError("the codec was asked to decode a frame the header should have refused")

    monkeypatch.setattr(codec, "decode", refuse)


@pytest.mark.parametrize("side", [8000, 20000])
def test_forged_huge_frame_refused_from_the_header(monkeypatch, side):
    """A 62 KB stream (a real flat PNG) declaring an 8000x8000 frame, checksum correct."""
    codec = get_codec("png")
    payload = big_flat_png(8000)
    data = forged_stream(1, side, side, payload, version=bitstream.VERSION)
    assert len(data) < 100_000
    _no_codec_decode(monkeypatch, codec)
    with pytest.raises(BitstreamError, match="limit|too large|impossible"):
        decode_features(data, codec)


def test_stream_not_matching_the_split_is_refused(monkeypatch):
    codec = get_codec("png")
    feats = _features()
    data = encode_features(feats, codec, 6).data
    expect = {n: tuple(t.shape) for n, t in feats.items()}
    assert decode_features(data, codec, expect=expect).features["expanded_conv_9"].shape == (1, 16, 10, 10)
    # free spatial size (None): channels must still match
    assert decode_features(data, codec, expect={"expanded_conv_9": (1, 16, None, None)}).features
    _no_codec_decode(monkeypatch, codec)
    with pytest.raises(BitstreamError, match="expected"):
        decode_features(data, codec, expect={"expanded_conv_9": (1, 16, 10, 11)})
    with pytest.raises(BitstreamError, match="expected"):
        decode_features(data, codec, expect={"expanded_conv_5": (1, 16, 10, 10)})
    with pytest.raises(BitstreamError, match="expected"):
        decode_features(data, codec, expect={"expanded_conv_9": (1, 16, 10, 10), "other": (1, 4, 4, 4)})
    with pytest.raises(BitstreamError, match="expected"):
        decode_features(data, codec, expect={"expanded_conv_9": (1, 32, None, None)})


def test_forged_header_with_fixed_checksum_still_checked():
    """Resealing does not make a bad header acceptable: the parse checks stay."""
    codec = get_codec("png")
    data = bytearray(encode_features(_features(), codec, 6).data)
    data[1] |= 0x40  # reserved bit
    with pytest.raises(BitstreamError, match="corrupt header"):
        decode_features(reseal(bytes(data)), codec)


def test_old_version_is_refused_clearly():
    codec = get_codec("png")
    old = forged_stream(1, 4, 4, b"\x89PNG", version=1)
    with pytest.raises(BitstreamError, match="version 1"):
        decode_features(old, codec)


def test_round_trip_still_exact_for_lossless():
    codec = get_codec("png")
    feats = _features()
    enc = encode_features(feats, codec, 6, bit_depth=16)
    dec = decode_features(enc.data, codec)
    assert len(enc.data) == enc.header_bytes + sum(enc.payload_bytes.values())
    assert np.array_equal(dec.frames["expanded_conv_9"], enc.frames["expanded_conv_9"])
