"""The data flow end to end on real images: identity without a codec, lossless coding,
bit accounting and the full-input paradigm."""

import numpy as np
import pytest
from PIL import Image
from skimage import data

from fcmcore.bitstream import encode_features
from fcmcore.codecs import get_codec
from fcmcore.errors import ParameterError, UnknownNameError
from fcmcore.models import load_model
from fcmcore.pipeline import PipelineConfig, run, run_from_head, run_head


@pytest.fixture(scope="module")
def astronaut():
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def model():
    return load_model("ssd_mobilenet_v2")


def _same(a, b, score_tol=0.0):
    assert [d.category_id for d in a] == [d.category_id for d in b]
    for x, y in zip(a, b):
        assert abs(x.score - y.score) <= score_tol
        assert np.allclose(x.box, y.box, atol=max(score_tol * 100, 1e-6))


@pytest.mark.parametrize("split", ["Conv", "expanded_conv_9", "Conv_1"])
def test_uncoded_split_reproduces_the_whole_detector(model, astronaut, split):
    result = run(astronaut, PipelineConfig(split=split, codec=None))
    _same(result.detections, model.detect(astronaut))
    assert result.bits == result.raw_feature_bits  # raw float32 over the wire


def test_sixteen_bit_lossless_round_trip_keeps_detections(model, astronaut):
    result = run(astronaut, PipelineConfig(split="expanded_conv_9", codec="png", bit_depth=16))
    _same(result.detections[:10], model.detect(astronaut)[:10], score_tol=2e-3)
    ref = result.features["expanded_conv_9"]
    err = (result.decoded_features["expanded_conv_9"] - ref).abs().max().item()
    assert err <= (ref.max() - ref.min()).item() / 65535  # quantisation step, nothing more


def test_bits_are_the_bitstream_length(astronaut):
    config = PipelineConfig(split="expanded_conv_9", codec="jpeg", quality=50)
    result = run(astronaut, config)
    encoded = encode_features(result.features, get_codec("jpeg"), 50, bit_depth=8)
    assert result.bits == len(encoded.data) * 8
    assert result.bpp == pytest.approx(result.bits / (512 * 512))
    assert 0 < result.header_bytes * 8 < result.bits


def test_more_quality_more_bits_fewer_errors(astronaut):
    head = run_head(astronaut, "ssd_mobilenet_v2", "expanded_conv_9")
    rates, errors = [], []
    for qp in (42, 32, 22):
        r = run_from_head(head, PipelineConfig(codec="hevc", quality=qp))
        rates.append(r.bits)
        ref = r.features["expanded_conv_9"]
        errors.append(float(((r.decoded_features["expanded_conv_9"] - ref) ** 2).mean()))
    assert rates[0] < rates[1] < rates[2]
    assert errors[0] > errors[1] > errors[2]


def test_hevc_at_expanded_conv_9_keeps_the_person(astronaut):
    result = run(astronaut, PipelineConfig(split="expanded_conv_9", codec="hevc", quality=32))
    people = [d for d in result.shown() if d.label == "person"]
    assert people and people[0].score >= 0.7
    assert result.bpp < 0.5  # ~0.15 bpp measured; far below raw float32 (32 * 64*19*19 / 512^2 = 2.8 bpp)
    for stage in ("head", "encode", "decode", "tail", "total"):
        assert result.timings_ms[stage] >= 0


def test_full_input_lossless_is_the_plain_detector(model, astronaut):
    result = run(astronaut, PipelineConfig(split=None, codec="png"))
    _same(result.detections, model.detect(astronaut))
    assert result.config.paradigm == "full-input"
    assert result.features is None and result.decoded_image.shape == (512, 512, 3)


def test_full_input_lossy_costs_bits(astronaut):
    result = run(astronaut, PipelineConfig(split=None, codec="jpeg", quality=30))
    assert 0.1 < result.bpp < 2.0
    assert any(d.label == "person" for d in result.shown())


def test_bad_parameters_are_clear(astronaut):
    with pytest.raises(UnknownNameError, match="known"):
        run(astronaut, PipelineConfig(split="layer9"))
    with pytest.raises(UnknownNameError, match="codec"):
        run(astronaut, PipelineConfig(codec="mp3"))
    with pytest.raises(ParameterError, match="out of range"):
        run(astronaut, PipelineConfig(codec="hevc", quality=99))
    with pytest.raises(ParameterError, match="bit"):
        run(astronaut, PipelineConfig(codec="jpeg", bit_depth=16))
    with pytest.raises(ParameterError):
        run(astronaut, PipelineConfig(quant="pixel"))
