"""Spatial WA-RDO: tile padding to the QP block grid, per-block QP offsets inside x265,
importance kinds and their place in the config and the cache key."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fcmcore.bitstream import decode_features, encode_features, qp_map_for, read_header
from fcmcore.codecs import get_codec
from fcmcore.coding.rdo import block_qp_offsets
from fcmcore.errors import BitstreamError, ParameterError
from fcmcore.packing import pack_tensor, unpack_tensor
from fcmcore.wrappers.importance import spread, weights_of_kind

K, H = 9, 19  # 19 x 19 tiles, as SSD's expanded_conv_9: padded to 24 x 24 on an 8-grid


def _features(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.randn(1, K, H + 2, H + 2, generator=g), 3, 1)


def test_padded_tiles_round_trip_and_align_to_the_block_grid():
    x = _features()
    p = pack_tensor(x, "t", 16, pad=8)
    assert p.frame.shape == (3 * 24, 3 * 24) and p.tile_hw == (24, 24)
    assert p.tile_rect(4) == (24, 24, 24, 24)
    plain = pack_tensor(x, "t", 16)
    np.testing.assert_array_equal(unpack_tensor(p).numpy(), unpack_tensor(plain).numpy())
    # the margin is the tile's mean code (flat: cheaper than edge replication)
    y, xx, _, _ = p.tile_rect(2)
    margin = p.frame[y + 19:y + 24, xx:xx + 24]
    assert margin.min() == margin.max()


def test_padded_container_round_trip_and_header_checks():
    png = get_codec("png")
    x = _features(1)
    enc = encode_features({"t": x}, png, None, bit_depth=16, pad=8)
    head = read_header(enc.data)
    assert head.tensors[0].pad == 8 and head.tensors[0].frame_shape == (72, 72)
    dec = decode_features(enc.data, png)
    np.testing.assert_allclose(dec.features["t"].numpy(), x.numpy(), atol=float(x.max() - x.min()) / 65535)
    assert enc.bits > encode_features({"t": x}, png, None, bit_depth=16).bits - 8 * 64  # not free, not absurd
    # flag bit 3 is still reserved; a padding byte outside 2..64 is refused
    data = bytearray(enc.data)
    flags_at = 3 + 1 + 1  # version, depth, count, name length, "t"
    assert data[flags_at] & 4
    import struct
    import zlib

    for bad in (data[:flags_at] + bytes([data[flags_at] | 8]) + data[flags_at + 1:],):
        body = bytes(bad[:-4])
        with pytest.raises(BitstreamError, match="reserved flag"):
            read_header(body + struct.pack("<I", zlib.crc32(body)))
    pad_at = flags_at + 1 + 3  # C, H, W varints (one byte each here)
    bad = data[:pad_at] + bytes([1]) + data[pad_at + 1:]
    body = bytes(bad[:-4])
    with pytest.raises(BitstreamError, match="tile padding"):
        read_header(body + struct.pack("<I", zlib.crc32(body)))


def test_block_offsets_are_constant_per_block_and_follow_the_weights():
    w = np.ones((K, H, H))
    w[0, :8, :8] = 16.0  # one block of tile 0 matters 16x more
    off = block_qp_offsets(w, pad=8, block=8)
    assert off.shape == (K, H, H)
    assert np.allclose(off[0, :8, :8], off[0, 0, 0]) and off[0, 0, 0] < -11
    # every other block: the same small positive offset (centred on the geometric mean)
    rest = np.delete(off.reshape(K, -1), 0, axis=0)
    assert np.allclose(rest, rest.flat[0]) and 0 < rest.flat[0] < 0.5
    np.testing.assert_allclose(block_qp_offsets(np.ones((K, H, H)), 8, 8), 0.0)
    # the frame map: padding samples carry their block's offset, unused tiles 0
    p = pack_tensor(_features(), "t", 10, pad=8)
    m = qp_map_for(p, off)
    assert m.shape == p.frame.shape and np.allclose(m[:8, :8], m[0, 0])
    assert np.allclose(m[16:24, 16:24], m[16, 16]) and m[16, 16] == m[8, 8] != m[0, 0]
    with pytest.raises(ParameterError):
        qp_map_for(p, np.zeros((K, 5, 5)))


def test_per_block_offsets_reach_x265_and_a_zero_map_changes_nothing():
    hevc = get_codec("hevc")
    p = pack_tensor(_features(2), "t", 10, pad=8)
    zero = hevc.encode_qp_map(p.frame, 10, 34, np.zeros(p.frame.shape))
    # an explicit ROI of offset 0 over the whole frame: x265 gets quantOffsets of 0,
    # and the stream is the same bytes as with no side data at all
    from fcmcore.codecs import hevc as hevc_mod

    av = hevc_mod._video.load_av()
    vf, fmt, h, w = hevc._video_frame(p.frame, 10)
    vf0 = hevc_mod._with_rois(av, vf, [(0, 0, w, h, 0)], fmt, 63)
    params = ":".join(f"{k}={v}" for k, v in hevc.x265_roi_params(34).items())
    explicit = bytes(hevc_mod._video.av_encode("libx265", vf0, w, h, fmt, {"preset": hevc.preset, "x265-params": params}))
    assert explicit == zero
    # -9 QP on the top-left 8x8 block of tile 4 only: that block's error drops, the rest of
    # the tile stays about where it was
    wts = np.ones((K, H, H))
    wts[4, :8, :8] = 8.0
    off = block_qp_offsets(wts, pad=8, block=8)
    roi = hevc.encode_qp_map(p.frame, 10, 34, qp_map_for(p, off))
    assert roi != zero
    y, x, _, _ = p.tile_rect(4)

    def err(data, sl):
        d = hevc.decode(data, 10, p.frame.shape).astype(float) - p.frame
        return float((d[sl] ** 2).mean())

    blk = (slice(y, y + 8), slice(x, x + 8))
    rest = (slice(y + 8, y + 19), slice(x + 8, x + 19))
    assert err(roi, blk) < 0.5 * err(zero, blk)
    assert abs(np.log(err(roi, rest) / err(zero, rest))) < 0.5
    assert len(roi) > len(zero)


def test_weight_kinds_and_spread():
    m = np.ones((K, 4, 4))
    m[2] *= 4.0
    m[:, 0, 0] *= 2.0
    assert weights_of_kind(m, "channel").shape == (K,)
    assert weights_of_kind(m, "spatial").shape == (4, 4)
    both = weights_of_kind(m, "both")
    assert both.shape == (K, 4, 4) and abs(both.mean() - 1) < 1e-12
    s = weights_of_kind(m, "spatial")
    assert s[0, 0] == pytest.approx(2 * s[1, 1])
    assert spread(np.ones(5)) == {"max_over_min": 1.0, "cv": 0.0, "am_gm_db": 0.0}
    assert spread([1.0, 4.0])["am_gm_db"] == pytest.approx(10 * np.log10(2.5 / 2.0))
    with pytest.raises(ParameterError):
        weights_of_kind(m, "pixel")


def test_weight_options_enter_the_config_and_the_cache_key():
    from dataclasses import replace

    from fcmcore.evaluate.cache import result_key
    from fcmcore.pipeline import PipelineConfig, _validate

    base = PipelineConfig(codec="hevc", quality=32, bit_depth=10, wrapper="pca", rdo="wa-qp")
    keys = {result_key("0" * 64, replace(base, wa_weights=k, wa_source=s, tile_pad=p))
            for k in ("channel", "spatial") for s in ("wrapper", "image") for p in (0, 8)}
    assert len(keys) == 8
    # the defaults keep the key a config without these options had
    d = base.to_json()
    for name in ("wa_weights", "wa_source", "tile_pad"):
        d.pop(name)
    assert result_key("0" * 64, d) == result_key("0" * 64, base)
    with pytest.raises(ParameterError, match="wa-qp"):
        _validate(replace(base, rdo="wa", wa_weights="spatial"))
    with pytest.raises(ParameterError, match="tile-pad"):
        _validate(replace(base, tile_pad=5))


def test_sse_qp_codes_with_zero_offsets_through_the_region_path():
    from fcmcore.coding.frames import PackedFrameCoder

    hevc = get_codec("hevc")
    feats = {"t": _features(3)}
    a = PackedFrameCoder(hevc, bit_depth=10, rdo="sse-qp", tile_pad=8).encode(feats, 32)
    b = encode_features(feats, hevc, 32, bit_depth=10, pad=8, qp_offsets={"t": np.zeros(K)})
    assert a.bitstream == b.data
    assert a.bitstream != PackedFrameCoder(hevc, bit_depth=10, tile_pad=8).encode(feats, 32).bitstream
    with pytest.raises(ParameterError, match="per-region QP"):
        PackedFrameCoder(get_codec("vvc"), bit_depth=10, rdo="sse-qp")
