"""Every registered codec: round trips, rate monotonicity, validation, garbage, availability."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fcmcore.codecs import CODECS, frame_codec_names, get_codec, list_codecs
from fcmcore.codecs import _video, hevc, jpegxl, pillow_codecs, vvc
from fcmcore.errors import BitstreamError, CodecUnavailableError, ParameterError, UnknownNameError
from fcmcore.packing import tile_channels

NAMES = CODECS.names()
FRAME_NAMES = frame_codec_names()  # learned codecs have their own tests (test_learned_codecs.py)

# three qualities from fewest to most bits, and a PSNR floor (dB) at the best of them
QUALITIES = {
    "jpeg": ((30, 60, 90), 35),
    "webp": ((30, 60, 90), 38),
    "avif": ((30, 60, 90), 40),
    "png": ((9, 6, 1), None),  # lossless
    "jpeg2000": ((0.5, 1.0, 2.0), 30),
    "jpegxl": ((50, 75, 90), 38),
    "hevc": ((42, 32, 22), 39),
    "vvc": ((42, 32, 22), 39),
}


def feature_frame(bit_depth: int, c: int = 64, h: int = 16, w: int = 16, seed: int = 0) -> np.ndarray:
    """A packed-feature-like frame: 8x8 tiles of smooth, ReLU'd random fields."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((c, h + 4, w + 4))
    k = np.ones(5) / 5
    x = np.apply_along_axis(np.convolve, 1, x, k, "valid")
    x = np.apply_along_axis(np.convolve, 2, x, k, "valid")
    x = np.maximum(x, 0) * rng.uniform(0.3, 1.0, (c, 1, 1))
    levels = (1 << bit_depth) - 1
    q = np.rint(x / x.max() * levels).astype(np.uint16)
    return tile_channels(q, fill=1 << (bit_depth - 1))


def test_image(h: int = 37, w: int = 53) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(1)
    rgb = np.stack([np.sin(6 * xx) * 80 + 120, yy * 200 + 20, (xx + yy) * 90 + 30], axis=-1)
    rgb += rng.normal(0, 4, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


test_image.__test__ = False  # a helper, not a test


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def qualities(codec):
    if codec.name in QUALITIES:
        return QUALITIES[codec.name]
    s = codec.quality  # a codec registered later: spread over its range, fewest bits first
    qs = [s.lo + f * (s.hi - s.lo) for f in (0.25, 0.5, 0.75)]
    qs = [round(q) if s.integer else q for q in qs]
    return (qs if s.higher_is_better else qs[::-1]), 25


def best_quality(codec):
    s = codec.quality
    return s.hi if s.higher_is_better else s.lo


def working_depth(codec) -> int:
    return 10 if 10 in codec.bit_depths else codec.bit_depths[0]


@pytest.fixture(params=FRAME_NAMES)
def codec(request):
    c = get_codec(request.param)
    ok, reason = c.available()
    if not ok:
        pytest.skip(f"{c.name} unavailable here: {reason}")
    return c


def test_registry():
    assert set(NAMES) >= {"jpeg", "webp", "avif", "png", "jpeg2000", "jpegxl", "hevc", "vvc"}
    assert get_codec("hevc") is get_codec("hevc")  # cached instances
    assert [c.name for c in list_codecs()] == NAMES
    with pytest.raises(UnknownNameError, match="known"):
        get_codec("mpeg1")


@pytest.mark.parametrize("name", NAMES)
def test_to_json(name):
    j = get_codec(name).to_json()
    for key in ("name", "available", "reason", "quality_range", "higher_is_better", "default_quality"):
        assert key in j
    assert j["name"] == name
    lo, hi = j["quality_range"]
    assert lo <= j["default_quality"] <= hi
    assert isinstance(j["available"], bool) and (j["available"] or j["reason"])


def test_round_trip_psnr_and_monotone_bits(codec):
    bd = working_depth(codec)
    frame = feature_frame(bd)
    qs, floor = qualities(codec)
    sizes, scores = [], []
    for q in qs:
        data = codec.encode(frame, bd, q)
        out = codec.decode(data, bd, frame.shape)
        assert out.shape == frame.shape and out.dtype == np.uint16
        sizes.append(len(data))
        scores.append(psnr(frame, out, (1 << bd) - 1))
    if codec.lossless:
        assert all(s == float("inf") for s in scores)
        assert sizes[0] <= sizes[-1]  # more effort never costs more bits here
    else:
        assert sizes[0] < sizes[1] < sizes[2], f"bits not increasing with quality: {sizes} at {qs}"
        assert scores[0] < scores[2]
        assert scores[2] >= floor, f"{codec.name} at {qs[2]}: {scores[2]:.1f} dB < {floor} dB"


def test_deterministic(codec):
    bd = working_depth(codec)
    frame = feature_frame(bd, c=16, seed=3)
    assert codec.encode(frame, bd, None) == codec.encode(frame, bd, None)


@pytest.mark.parametrize("shape", [(5, 7), (19, 33)])
def test_odd_small_frames(codec, shape):
    bd = working_depth(codec)
    frame = feature_frame(bd, c=1, h=shape[0], w=shape[1], seed=2)
    out = codec.decode(codec.encode(frame, bd, best_quality(codec)), bd, shape)
    assert out.shape == shape
    assert psnr(frame, out, (1 << bd) - 1) > 35  # a misplaced crop or pad would ruin it


def test_every_bit_depth(codec):
    for bd in codec.bit_depths:
        frame = feature_frame(bd, c=4, seed=bd)
        out = codec.decode(codec.encode(frame, bd, best_quality(codec)), bd, frame.shape)
        assert int(out.max()) < (1 << bd)
        assert psnr(frame, out, (1 << bd) - 1) > 35
        if codec.lossless:
            assert np.array_equal(out, frame)


def test_quality_out_of_range(codec):
    frame = feature_frame(working_depth(codec), c=4)
    s = codec.quality
    bad = [s.lo - 1, s.hi + 1, float("nan"), "high"]
    if s.integer:
        bad.append(s.lo + 0.5)
    for q in bad:
        with pytest.raises(ParameterError):
            codec.encode(frame, working_depth(codec), q)
        with pytest.raises(ParameterError):
            codec.encode_image(test_image(), q) if codec.supports_images else codec.check_quality(q)


def test_wrong_bit_depth_and_frame(codec):
    bd = working_depth(codec)
    frame = feature_frame(bd, c=4)
    for wrong in (7, 9, 13, 17):
        with pytest.raises(ParameterError):
            codec.encode(frame, wrong, None)
        with pytest.raises(ParameterError):
            codec.decode(b"\x00" * 16, wrong, frame.shape)
    if 16 not in codec.bit_depths:
        with pytest.raises(ParameterError):
            codec.encode(frame, 16, None)
    with pytest.raises(ParameterError):
        codec.encode(frame.astype(np.float32), bd, None)
    with pytest.raises(ParameterError):
        codec.encode(np.full((8, 8), 1 << bd, np.uint16), bd, None)  # sample above the bit depth


def test_garbage_and_truncated_bitstreams(codec):
    bd = working_depth(codec)
    frame = feature_frame(bd, c=16)
    good = codec.encode(frame, bd, None)
    rng = np.random.default_rng(0)
    bad = [
        b"",
        b"\x00",
        rng.integers(0, 256, 64, dtype=np.uint8).tobytes(),
        rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        good[:12],
    ]
    cut = [good[: len(good) // 2], good[: len(good) // 4], good[:-1]]
    start = time.perf_counter()
    for data in bad + (cut if codec.detects_truncation else []):
        with pytest.raises(BitstreamError):
            codec.decode(data, bd, frame.shape)
    if not codec.detects_truncation:  # documented: may conceal, but never another exception
        for data in cut:
            try:
                assert codec.decode(data, bd, frame.shape).shape == frame.shape
            except BitstreamError:
                pass
    with pytest.raises(BitstreamError):  # a valid stream of another size
        codec.decode(good, bd, (frame.shape[0] + 32, frame.shape[1]))
    assert time.perf_counter() - start < 20  # fails fast, never hangs


def test_image_round_trip(codec):
    if not codec.supports_images:
        pytest.skip("feature-only codec")
    rgb = test_image()
    qs, _ = qualities(codec)
    data = codec.encode_image(rgb, qs[-1])
    out = codec.decode_image(data, rgb.shape[:2])
    assert out.shape == rgb.shape and out.dtype == np.uint8
    score = psnr(rgb, out, 255)
    assert score == float("inf") if codec.lossless else score > 28, f"{codec.name}: {score:.1f} dB"
    if codec.detects_truncation:
        with pytest.raises(BitstreamError):
            codec.decode_image(data[: len(data) // 2], rgb.shape[:2])
    with pytest.raises(BitstreamError):
        codec.decode_image(b"\x12" * 300, rgb.shape[:2])


def test_lossless_codecs_exact_16_bit():
    frame = feature_frame(16, c=16)
    for name, q in (("png", 6), ("jpeg2000", 16), ("jpegxl", 100)):
        c = get_codec(name)
        if c.available()[0]:
            assert np.array_equal(c.decode(c.encode(frame, 16, q), 16, frame.shape), frame), name


def test_jpeg2000_rate_target():
    c = get_codec("jpeg2000")
    if not c.available()[0]:
        pytest.skip(c.available()[1])
    frame = feature_frame(10)
    for bpp in (0.5, 2.0):
        got = len(c.encode(frame, 10, bpp)) * 8 / frame.size
        assert 0.8 * bpp <= got <= 1.1 * bpp


# -- video codec specifics -------------------------------------------------------------------------
def test_hevc_has_no_x265_info_sei():
    c = get_codec("hevc")
    if not c.available()[0]:
        pytest.skip(c.available()[1])
    data = c.encode(feature_frame(10, c=4), 10, 32)
    assert b"x265" not in data  # the ~2.2 KB settings SEI is left out


@pytest.mark.parametrize("name", ["hevc", "vvc"])
def test_video_full_range_survives(name):
    """0 and the top code must come back as such (no limited-range squeeze to 64..940)."""
    c = get_codec(name)
    if not c.available()[0]:
        pytest.skip(c.available()[1])
    bd = max(c.bit_depths)
    top = (1 << bd) - 1
    frame = np.zeros((32, 32), np.uint16)
    frame[:, 16:] = top
    out = c.decode(c.encode(frame, bd, 22), bd, frame.shape)
    assert int(out[:, :8].max()) <= top // 200 + 1
    assert int(out[:, 24:].min()) >= top - top // 200 - 1


def test_vvc_subprocess_decoder_matches_pyav(monkeypatch):
    c = get_codec("vvc")
    if not c.available()[0]:
        pytest.skip(c.available()[1])
    frame = feature_frame(10, c=4)
    data = c.encode(frame, 10, 30)
    in_process = c.decode(data, 10, frame.shape)

    def no_av():
        raise ImportError("simulated")

    monkeypatch.setattr(_video, "load_av", no_av)
    assert np.array_equal(c.decode(data, 10, frame.shape), in_process)
    with pytest.raises(BitstreamError):
        c.decode(data[: len(data) // 2], 10, frame.shape)


# -- availability --------------------------------------------------------------------------------
def _missing(*_a, **_k):
    raise ImportError("simulated missing package")


@pytest.mark.parametrize(
    "name, module, attr, replacement, hint",
    [
        ("hevc", _video, "load_av", _missing, "pip install av"),
        ("vvc", vvc, "find_ffmpeg", lambda: None, "pip install imageio-ffmpeg"),
        ("jpegxl", jpegxl, "load_imagecodecs", _missing, "pip install imagecodecs"),
        ("webp", pillow_codecs, "_pil", _missing, "pip install pillow"),
        ("jpeg", pillow_codecs, "_pil", _missing, "pip install pillow"),
    ],
)
def test_unavailable_codec_reports_and_refuses(monkeypatch, name, module, attr, replacement, hint):
    monkeypatch.setattr(module, attr, replacement)
    c = CODECS.create(name)  # a fresh instance: availability is cached per instance
    ok, reason = c.available()
    assert not ok and hint in reason
    assert c.to_json()["available"] is False
    bd = working_depth(c)
    with pytest.raises(CodecUnavailableError, match=hint):
        c.encode(feature_frame(bd, c=4), bd, None)
    with pytest.raises(CodecUnavailableError):
        c.decode(b"\x00" * 100, bd, (32, 32))
    with pytest.raises(CodecUnavailableError):
        c.encode_image(test_image(), None)


def test_pillow_codec_without_format_support(monkeypatch):
    Image, features = pillow_codecs._pil()

    class NoAvif:
        @staticmethod
        def check(name):
            return name != "avif"

    monkeypatch.setattr(pillow_codecs, "_pil", lambda: (Image, NoAvif))
    c = CODECS.create("avif")
    ok, reason = c.available()
    assert not ok and "AVIF" in reason
    assert CODECS.create("jpeg").available() == (True, "")


def test_hevc_without_libx265(monkeypatch):
    monkeypatch.setattr(_video, "av_has", lambda codec, mode: codec != "libx265")
    ok, reason = hevc.HEVCCodec().available()
    assert not ok and "libx265" in reason
