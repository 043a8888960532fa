"""Fuzzing: mutated images and mutated bitstreams never crash, hang or blow up memory.

Every outcome must be either a valid result or the documented FCMError subclass
(InputError for images, BitstreamError for bitstreams). pytest-timeout bounds hangs;
RSS growth over a whole run bounds memory.
"""

import io
import os

import numpy as np
import psutil
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fcmcore.bitstream import decode_features, encode_features
from fcmcore.codecs import get_codec, is_frame_codec, list_codecs
from fcmcore.errors import BitstreamError, InputError
from fcmcore.imageio import load_image

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def _image_bytes(fmt: str) -> bytes:
    rng = np.random.default_rng(1)
    arr = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


SEEDS = {fmt: _image_bytes(fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP")}

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.integers(0, 255)),
)


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for kind, pos, val in ops:
        if not buf:
            break
        pos %= len(buf)
        if kind == "flip":
            buf[pos] ^= val
        elif kind == "cut":
            del buf[pos:]
        else:
            buf[pos:pos] = bytes([val])
    return bytes(buf)


@pytest.mark.timeout(300)
@FUZZ
@given(fmt=st.sampled_from(sorted(SEEDS)), ops=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_images_load_or_fail_clearly(fmt, ops):
    data = mutate(SEEDS[fmt], ops)
    try:
        img = load_image(data, name="fuzz")
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert img.mode == "RGB" and img.width * img.height <= 10_000_000


def _features() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"x": torch.randn(1, 8, 12, 12, generator=g).cumsum(-1)}


ENCODED = {}


def _encoded(name: str) -> bytes:
    if name not in ENCODED:
        codec = get_codec(name)
        ENCODED[name] = encode_features(_features(), codec, codec.quality.default).data
    return ENCODED[name]


FRAME_CODECS = [c.name for c in list_codecs() if c.available()[0] and is_frame_codec(c)]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("codec_name", FRAME_CODECS)
def test_mutated_bitstreams_decode_or_fail_clearly(codec_name):
    codec = get_codec(codec_name)
    data = _encoded(codec_name)
    process = psutil.Process(os.getpid())
    rss_before = process.memory_info().rss
    examples = 25 if codec_name == "vvc" else 60  # vvc decodes are slower

    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(ops=st.lists(mutation, min_size=1, max_size=3))
    def check(ops):
        mutated = mutate(data, ops)
        try:
            decoded = decode_features(mutated, codec)
        except BitstreamError as exc:
            assert "\n" not in str(exc)
            return
        for t in decoded.features.values():  # a decode that "succeeds" stays within declared bounds
            assert t.numel() <= 1 << 28 and torch.isfinite(t).all()

    check()
    growth_mb = (process.memory_info().rss - rss_before) / 1e6
    assert growth_mb < 300, f"{codec_name}: RSS grew {growth_mb:.0f} MB over the fuzz run"


@pytest.mark.parametrize("junk", [b"", b"\x01", b"\xff" * 64, bytes(range(256))])
def test_garbage_container_is_refused(junk):
    for name in FRAME_CODECS:
        with pytest.raises(BitstreamError):
            decode_features(junk, get_codec(name))
