"""The feature-coder stage: one interface for packed frames, learned codecs and the
uncompressed reference; sequences; extra consumers of the decoded features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fcmcore.bitstream import decode_features, encode_features
from fcmcore.codecs import get_codec
from fcmcore.coding import (FEATURES, PackedFrameCoder, RawFeatureCoder, coder_for, packing_bit_depth)
from fcmcore.errors import BitstreamError, ParameterError
from fcmcore.paths import ASSETS_DIR
from fcmcore.pipeline import PipelineConfig, run


def _features(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"t": torch.rand(1, 6, 9, 7, generator=g) * 4 - 1}


def test_packed_frame_coder_is_the_container_plus_codec():
    coder = coder_for("png", bit_depth=10, quant="channel")
    assert isinstance(coder, PackedFrameCoder) and coder.consumes == FEATURES and coder.bit_depth == 10
    f = _features()
    enc = coder.encode(f, 6)
    ref = encode_features(f, get_codec("png"), 6, bit_depth=10, mode="channel")
    assert enc.bitstream == ref.data and enc.bits == len(ref.data) * 8
    assert enc.header_bytes == ref.header_bytes and enc.bit_depth == 10 and enc.quality == 6
    dec = coder.decode(enc.bitstream)
    assert torch.equal(dec.features["t"], decode_features(ref.data, get_codec("png")).features["t"])
    assert set(dec.frames) == {"t"} and np.array_equal(dec.frames["t"], enc.frames["t"])  # png is lossless


def test_packing_options_are_checked_once():
    assert packing_bit_depth("hevc", None) == 10 and packing_bit_depth("jpeg", None) == 8
    with pytest.raises(ParameterError, match="10-bit"):
        coder_for("jpeg", bit_depth=10)
    with pytest.raises(ParameterError, match="per-region QP"):
        coder_for("jpeg", rdo="wa-qp")
    with pytest.raises(ParameterError, match="importance weights"):
        coder_for("jpeg", rdo="wa").encode(_features(), 50)


def test_learned_codecs_carry_no_bit_depth():
    pytest.importorskip("compressai")
    for name in ("factorized", "hyperprior", "context", "direct"):
        codec = get_codec(name)
        assert codec.bit_depths == () and packing_bit_depth(name, None) is None
        assert coder_for(name) is codec  # a learned codec is a FeatureCoder itself
        with pytest.raises(ParameterError, match="no bit depth"):
            coder_for(name, bit_depth=8)
        with pytest.raises(ParameterError, match="no bit depth"):
            packing_bit_depth(name, 8)


def test_resolved_learned_config_has_no_bit_depth():
    pytest.importorskip("compressai")
    from fcmcore.evaluate.sweep import resolve_config

    config, _ = resolve_config(PipelineConfig(codec="hyperprior"))
    assert config.bit_depth is None
    config, _ = resolve_config(PipelineConfig(codec="hevc"))
    assert config.bit_depth == 10


def test_raw_coder_is_float32_exactly():
    f = {"a": torch.randn(1, 3, 4, 5), "b": torch.randn(1, 2, 2, 2)}
    coder = RawFeatureCoder.for_features(f)
    enc = coder.encode(f)
    assert enc.bits == 32 * (60 + 8) and enc.quality is None and enc.header_bytes == 0
    dec = coder.decode(enc.bitstream)
    assert list(dec.features) == ["a", "b"] and all(torch.equal(dec.features[k], f[k]) for k in f)
    with pytest.raises(BitstreamError):
        coder.decode(enc.bitstream[:-1])
    with pytest.raises(ParameterError, match="no quality"):
        coder.encode(f, 5)


def test_default_sequence_is_independent_items_in_one_stream():
    coder = coder_for("png", bit_depth=8)
    items = [_features(i) for i in range(3)]
    seq = coder.encode_sequence(items, 6, gop=8)
    singles = [coder.encode(f, 6) for f in items]
    assert [it.bitstream for it in seq.items] == [s.bitstream for s in singles]
    assert seq.bits == len(seq.bitstream) * 8 > sum(s.bits for s in singles)  # + the lengths
    decoded = coder.decode_sequence(seq.bitstream)
    for d, s in zip(decoded, singles):
        assert torch.equal(d.features["t"], coder.decode(s.bitstream).features["t"])
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        coder.decode_sequence(seq.bitstream + b"\0")
    with pytest.raises(BitstreamError, match="truncated"):
        coder.decode_sequence(seq.bitstream[:-5])
    with pytest.raises(ParameterError):
        coder.encode_sequence([], 6)


def test_extra_consumers_get_the_decoded_features():
    image = Image.open(ASSETS_DIR / "samples" / "coffee.jpg")
    seen = {}

    def energy(features, split, meta):
        seen["features"] = features
        return {k: float(v.pow(2).mean()) for k, v in features.items()}

    config = PipelineConfig(codec="jpeg", quality=50)
    plain = run(image, config)
    result = run(image, config, consumers={"energy": energy})
    assert result.bits == plain.bits and result.detections == plain.detections
    assert seen["features"] is result.decoded_features
    assert result.extra["task_outputs"]["energy"]["expanded_conv_9"] > 0
    assert "consumer:energy" in result.timings_ms
    with pytest.raises(ParameterError, match="full-input"):
        run(image, PipelineConfig(split=None, codec="jpeg"), consumers={"energy": energy})
