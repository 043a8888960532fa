"""Sequence coding: one HEVC/VVC stream per sequence, per-frame bits from its NAL units,
the feature-sequence container, and the structures' relative costs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fcmcore.errors import BitstreamError, ParameterError
from fcmcore.video.features import decode_feature_sequence, encode_feature_sequence
from fcmcore.video.nal import access_unit_sizes, nal_units
from fcmcore.video.sequence import sequence_coder


def moving_frames(n=16, h=64, w=80, seed=0):
    """Smooth 10-bit texture moving 2 samples right per frame (inter prediction can follow it)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(h // 4 + 2, (w + 2 * n) // 4 + 2))
    from scipy.ndimage import zoom

    tex = zoom(base, 4, order=3)[: h, : w + 2 * n]
    tex = (tex - tex.min()) / (tex.max() - tex.min()) * 1000 + 10
    return [np.ascontiguousarray(tex[:, 2 * i: 2 * i + w]).astype(np.uint16) for i in range(n)]


@pytest.mark.parametrize("gop", ["intra", "ldp", "ra"])
def test_hevc_sequence_round_trip_and_bits(gop):
    coder = sequence_coder("hevc")
    frames = moving_frames()
    seq = coder.encode(frames, 10, 27, gop, intra_period=8 if gop != "intra" else None)
    assert sum(seq.frame_bytes) == len(seq.data)  # every byte belongs to one picture
    assert sorted(seq.decode_order) == list(range(len(frames)))
    expected_intra = [True] * 16 if gop == "intra" else [i % 8 == 0 for i in range(16)]
    assert seq.intra == expected_intra
    decoded = coder.decode(seq.data, 10, frames[0].shape, len(frames))
    assert len(decoded) == len(frames)
    for a, b in zip(decoded, frames):  # display order: each decoded frame is close to its own source
        assert np.abs(a.astype(int) - b).mean() < 8
    if gop == "ra":
        assert seq.decode_order != list(range(16))  # B pictures reorder


def test_nal_access_units_match_encoder_packets():
    import av
    from fractions import Fraction

    cc = av.CodecContext.create("libx265", "w")
    cc.width, cc.height, cc.pix_fmt, cc.time_base = 80, 64, "gray10le", Fraction(1, 1)
    cc.options = {"x265-params": "qp=30:keyint=8:bframes=3:info=0:log-level=error"}
    packets = []
    for i, f in enumerate(moving_frames()):
        vf = av.VideoFrame.from_ndarray(f, format="gray10le")
        vf.pts = i
        packets += cc.encode(vf)
    packets += cc.encode(None)
    data = b"".join(bytes(p) for p in packets)
    assert access_unit_sizes(data, "hevc") == [p.size for p in packets]
    assert {u.type for u in nal_units(data, "hevc")} >= {32, 33, 34}  # VPS, SPS, PPS in band


def test_nal_rejects_garbage():
    with pytest.raises(BitstreamError):
        access_unit_sizes(b"\x12\x34" * 50, "hevc")
    with pytest.raises(BitstreamError):
        access_unit_sizes(b"\x00\x00\x01\x40\x01\x0c" + b"\x00" * 4, "hevc")  # only a VPS: no picture


def test_inter_costs_fewer_bits_than_intra_at_equal_qp():
    coder = sequence_coder("hevc")
    frames = moving_frames()
    intra = coder.encode(frames, 10, 32, "intra").bits
    ldp = coder.encode(frames, 10, 32, "ldp").bits
    ra = coder.encode(frames, 10, 32, "ra").bits
    assert ldp < 0.6 * intra and ra < 0.6 * intra


@pytest.mark.parametrize("gop", ["intra", "ldp", "ra"])
def test_vvc_sequence(gop):
    coder = sequence_coder("vvc")
    ok, reason = coder.available()
    if not ok:
        pytest.skip(reason)
    frames = moving_frames(10)
    seq = coder.encode(frames, 10, 32, gop, intra_period=None)
    assert sum(seq.frame_bytes) == len(seq.data)
    assert sum(seq.intra) >= 1 and (gop != "intra" or all(seq.intra))
    decoded = coder.decode(seq.data, 10, frames[0].shape, len(frames))
    errs = [[np.abs(a.astype(int) - b).mean() for b in frames] for a in decoded]
    assert [int(np.argmin(e)) for e in errs] == list(range(10))  # display order is the source order


def test_sequence_parameters_checked():
    coder = sequence_coder("hevc")
    with pytest.raises(ParameterError):
        coder.encode(moving_frames(2), 10, 27, "lowdelay")
    with pytest.raises(ParameterError):
        coder.encode(moving_frames(2), 10, 60, "ldp")
    with pytest.raises(ParameterError):
        coder.encode(moving_frames(2), 10, 27, "intra", intra_period=8)
    with pytest.raises(ParameterError):
        sequence_coder("jpeg")


def _features(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, 16, 12, 12, generator=g)
    return [{"x": base + 0.05 * i + 0.01 * torch.randn(1, 16, 12, 12, generator=g)} for i in range(n)]


@pytest.mark.parametrize("quant, ranges", [("tensor", "sequence"), ("channel", "frame")])
def test_feature_sequence_container(quant, ranges):
    coder = sequence_coder("hevc")
    feats = _features()
    enc = encode_feature_sequence(feats, coder, 12, gop="ldp", quant=quant, ranges=ranges)
    assert sum(enc.frame_bits) == enc.bits == len(enc.data) * 8
    dec = decode_feature_sequence(enc.data, coder)
    assert len(dec) == len(feats)
    for a, b in zip(dec, feats):
        assert a["x"].shape == b["x"].shape
        assert (a["x"] - b["x"]).abs().max() < 0.1 * float(b["x"].abs().max())
    # side information is counted: ranges per frame and per channel cost bytes in every frame
    if ranges == "frame":
        assert enc.header_bytes >= len(feats) * 16 * 2 * 2


def test_feature_sequence_rejects_damage():
    coder = sequence_coder("hevc")
    enc = encode_feature_sequence(_features(3), coder, 30, gop="ldp")
    for bad in (enc.data[:10], enc.data[:-5], b"XXXX" + enc.data[4:], enc.data + b"\x00"):
        with pytest.raises(BitstreamError):
            decode_feature_sequence(bad, coder)


def test_feature_coder_sequence_hook():
    from fcmcore.coding.base import FeatureCoder
    from fcmcore.video.coder import VideoFeatureCoder

    coder = VideoFeatureCoder("hevc", structure="ldp")
    assert isinstance(coder, FeatureCoder)
    feats = _features(5)
    seq = coder.encode_sequence(feats, 27, gop=4)
    assert sum(it.extra["bits"] for it in seq.items) == seq.bits
    assert [it.extra["intra"] for it in seq.items] == [True, False, False, False, True]
    decoded = coder.decode_sequence(seq.bitstream)
    assert len(decoded) == 5 and decoded[2].features["x"].shape == feats[2]["x"].shape
    one = coder.encode(feats[0], 27)
    assert coder.decode(one.bitstream).features["x"].shape == feats[0]["x"].shape
