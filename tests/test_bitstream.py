"""The feature container: bits accounting, round trips, and hostile input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcmcore.bitstream import VERSION, decode_features, encode_features, read_header
from fcmcore.codecs import CODECS, frame_codec_names, get_codec
from fcmcore.errors import BitstreamError, ParameterError


def smooth(g, c, h, w) -> torch.Tensor:
    """Spatially correlated fields, like real feature maps."""
    coarse = torch.randn(1, c, (h + 2) // 3, (w + 2) // 3, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=True)


def features(seed=0, c=16, hw=(9, 11)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "p3": torch.relu(smooth(g, c, *hw)) * 4.0,
        "p4": smooth(g, c // 2, hw[0] // 2 + 1, hw[1] // 2 + 1)[0] - 0.5,  # 3-D, negative values
    }


def available(name):
    c = get_codec(name)
    if not c.available()[0]:
        pytest.skip(f"{name} unavailable: {c.available()[1]}")
    return c


@pytest.fixture(scope="module")
def png_stream():
    c = available("png")
    feats = features()
    return c, feats, encode_features(feats, c, 6, bit_depth=10, mode="channel", gains={"p3": np.linspace(0.2, 1, 16)})


@pytest.mark.parametrize("name", frame_codec_names())
def test_bits_accounting_and_round_trip(name):
    c = available(name)
    feats = features(seed=1)
    enc = encode_features(feats, c)  # default quality and bit depth
    assert enc.bit_depth == c.default_bit_depth()
    assert enc.bits == len(enc.data) * 8
    assert len(enc.data) == enc.header_bytes + sum(enc.payload_bytes.values())
    assert list(enc.payload_bytes) == list(feats) == list(enc.frames)
    for n, p in enc.packed.items():
        assert enc.frames[n].shape == p.frame.shape and enc.frames[n].dtype == np.uint16
        assert enc.payload_bytes[n] > 0
    dec = decode_features(enc.data, c)
    assert list(dec.features) == list(feats)
    for n, t in feats.items():
        assert dec.features[n].shape == t.shape and dec.features[n].dtype == torch.float32
        assert dec.frames[n].shape == enc.frames[n].shape
        span = float(t.max() - t.min())
        err = float((dec.features[n] - t).abs().mean())
        assert err < 0.1 * span, f"{name}/{n}: mean error {err:.3g} vs range {span:.3g}"
        if c.lossless:
            assert np.array_equal(dec.frames[n], enc.frames[n])


def test_lossless_container_error_bound(png_stream):
    c, feats, enc = png_stream
    dec = decode_features(enc.data, c)
    for n, t in feats.items():
        p = enc.packed[n]
        x = t.double().numpy().reshape(t.shape[-3], -1)
        y = dec.features[n].double().numpy().reshape(t.shape[-3], -1)
        g = np.ones(x.shape[0]) if p.gains is None else p.gains.astype(np.float64)
        bound = (p.maxs.astype(np.float64) - p.mins.astype(np.float64)) / (g * 1023) / 2 + 1e-6
        assert np.all(np.abs(x - y).max(axis=1) <= bound)


def test_header_contents(png_stream):
    _, feats, enc = png_stream
    h = read_header(enc.data)
    assert (h.version, h.bit_depth, h.mode, h.header_bytes) == (VERSION, 10, "channel", enc.header_bytes)
    assert [t.name for t in h.tensors] == ["p3", "p4"]
    assert [t.shape for t in h.tensors] == [tuple(v.shape) for v in feats.values()]
    assert [t.payload_bytes for t in h.tensors] == list(enc.payload_bytes.values())
    assert np.array_equal(h.tensors[0].gains, enc.packed["p3"].gains) and h.tensors[1].gains is None
    assert np.array_equal(h.tensors[0].mins, enc.packed["p3"].mins)
    # channel mode costs 4 bytes of ranges per channel; tensor mode 4 bytes per tensor
    enc_t = encode_features(feats, get_codec("png"), 6, bit_depth=10, mode="tensor")
    assert enc.header_bytes - enc_t.header_bytes == 4 * (16 - 1) + 4 * (8 - 1) + 2 * 16


def test_truncations_and_trailing_bytes(png_stream):
    c, _, enc = png_stream
    data = enc.data
    cuts = list(range(enc.header_bytes + 2)) + list(range(enc.header_bytes + 2, len(data), 97)) + [len(data) - 1]
    for n in cuts:
        with pytest.raises(BitstreamError):
            decode_features(data[:n], c)
    for extra in (b"\x00", b"junk"):
        with pytest.raises(BitstreamError, match="trailing"):
            decode_features(data + extra, c)


def test_header_corruptions(png_stream):
    c, _, enc = png_stream
    data = bytearray(enc.data)
    cases = {
        0: VERSION + 1,  # version
        1: 0x4A,  # reserved bit set
    }
    for pos, val in cases.items():
        bad = bytearray(data)
        bad[pos] = val
        with pytest.raises(BitstreamError):
            decode_features(bytes(bad), c)
    bad = bytearray(data)
    bad[1] = 9 | 32  # 9-bit frames do not exist
    with pytest.raises(BitstreamError):
        decode_features(bytes(bad), c)
    # NaN ranges
    name_len = data[3]
    flags_at = 4 + name_len
    bad = bytearray(data)
    bad[flags_at] |= 0x80
    with pytest.raises(BitstreamError, match="reserved"):
        decode_features(bytes(bad), c)
    ranges_at = flags_at + 1 + 3  # C, H, W fit one byte each here
    bad = bytearray(data)
    bad[ranges_at : ranges_at + 2] = np.float16(np.nan).tobytes()
    with pytest.raises(BitstreamError, match="range"):
        decode_features(bytes(bad), c)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=0, max_size=400))
def test_random_bytes_never_crash(png_stream, blob):
    c = png_stream[0]
    with pytest.raises(BitstreamError):
        decode_features(blob, c)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_bit_flips_are_errors_or_decodes(png_stream, data):
    """A flipped bit anywhere: BitstreamError, or (payload damage a codec tolerates) a result."""
    c, _, enc = png_stream
    pos = data.draw(st.integers(0, len(enc.data) - 1))
    bit = data.draw(st.integers(0, 7))
    bad = bytearray(enc.data)
    bad[pos] ^= 1 << bit
    try:
        out = decode_features(bytes(bad), c)
    except BitstreamError:
        return
    assert len(out.features) == 2  # a flipped name byte may rename a tensor


def test_wrong_codec_is_a_bitstream_error():
    hevc, jpeg, png = (get_codec(n) for n in ("hevc", "jpeg", "png"))
    feats = features()
    if hevc.available()[0]:
        with pytest.raises(BitstreamError, match="wrong codec"):
            decode_features(encode_features(feats, hevc, 32).data, jpeg)  # 10-bit stream, 8-bit codec
    with pytest.raises(BitstreamError):
        decode_features(encode_features(feats, png, 6, bit_depth=8).data, jpeg)


def test_bad_parameters():
    png = get_codec("png")
    jpeg = get_codec("jpeg")
    feats = features()
    with pytest.raises(ParameterError):
        encode_features({}, png)
    with pytest.raises(ParameterError):
        encode_features(feats, jpeg, bit_depth=10)
    with pytest.raises(ParameterError):
        encode_features(feats, png, bit_depth=9)
    with pytest.raises(ParameterError):
        encode_features(feats, png, mode="row")
    with pytest.raises(ParameterError):
        encode_features(feats, png, quality=10)
    with pytest.raises(ParameterError, match="unknown"):
        encode_features(feats, png, gains={"p5": np.ones(16)})
    with pytest.raises(ParameterError):
        encode_features({"x" * 256: feats["p3"]}, png)
    with pytest.raises(ParameterError):
        decode_features("not bytes", png)


def test_channel_mode_and_gains_improve_weighted_error():
    """Gains steer a lossy codec's error towards the low-gain channels."""
    c = available("hevc")
    g = torch.Generator().manual_seed(5)
    t = torch.randn(1, 16, 16, 16, generator=g)
    gains = np.ones(16)
    gains[:8] = 0.25
    plain = decode_features(encode_features({"f": t}, c, 34).data, c).features["f"]
    steered = decode_features(encode_features({"f": t}, c, 34, gains={"f": gains}).data, c).features["f"]

    def mse(a, sl):
        return float(((a - t)[0, sl] ** 2).mean())

    # high-gain channels get better, low-gain channels worse
    assert mse(steered, slice(8, 16)) < mse(plain, slice(8, 16))
    assert mse(steered, slice(0, 8)) > mse(plain, slice(0, 8))
