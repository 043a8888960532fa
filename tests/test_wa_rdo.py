"""Wrapper-aware RDO: importance weights, QP offsets inside x265, gains at packing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fcmcore.bitstream import decode_features, encode_features, qp_map_for
from fcmcore.codecs import get_codec
from fcmcore.errors import ParameterError
from fcmcore.packing import pack_tensor
from fcmcore.wrappers.fitted import FittedWrapper
from fcmcore.wrappers.importance import hutchinson_weights
from fcmcore.coding.rdo import bits_per_channel, qp_offsets_from_weights

K, H = 9, 24  # 3 x 3 tiles of 24 x 24: a 72 x 72 frame


class _AffinePost(FittedWrapper):
    """A known affine per-pixel post-wrapper x = A z + b (A: C x k, columns of different norms)."""

    method = "affine-test"

    def __init__(self, a: torch.Tensor):
        super().__init__({"tensor": "t", "channels_in": a.shape[0], "k": a.shape[1], "model": "m", "split": "s"})
        self.a = a
        self.b = torch.linspace(-1, 1, a.shape[0])

    def decode(self, z):
        return torch.einsum("ck,nkhw->nchw", self.a, z) + self.b.view(1, -1, 1, 1)

    def post_is_linear(self):
        return True

    def column_norms2(self):
        return self.a.double().pow(2).sum(0).numpy()


def test_weights_of_a_linear_post_wrapper_are_squared_column_norms():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(32, 6, generator=g) * torch.tensor([0.1, 0.5, 1.0, 2.0, 4.0, 8.0])
    wrapper = _AffinePost(a)
    zs = [torch.randn(1, 6, 19, 19, generator=g) for _ in range(4)]
    est = hutchinson_weights(wrapper.decode, zs, probes=8, seed=1)
    exact = wrapper.column_norms2()
    np.testing.assert_allclose(est, exact, rtol=0.05)
    # the spread is real: from 0.01-ish to 64-ish times the base norm
    assert exact.max() / exact.min() > 1000
    # the fixed "post" weights of an affine wrapper use the exact norms (normalised to mean 1)
    w = wrapper.channel_weights({"t": zs[0]})["t"]
    np.testing.assert_allclose(w, exact / exact.mean())


def test_weights_of_a_nonlinear_post_follow_its_local_jacobian():
    # post(z) = relu(z) * s: channel c's Jacobian is s_c where z > 0, else 0
    s = torch.tensor([1.0, 2.0, 3.0])
    z = torch.stack([torch.ones(8, 8), -torch.ones(8, 8), torch.ones(8, 8)])[None]
    est = hutchinson_weights(lambda t: torch.relu(t) * s.view(1, -1, 1, 1), [z], probes=2)
    np.testing.assert_allclose(est, [1.0, 0.0, 9.0], atol=1e-9)


def test_qp_offsets_from_weights():
    np.testing.assert_allclose(qp_offsets_from_weights([1.0, 4.0, 0.25]), [0.0, -6.0, 6.0], atol=1e-9)
    off = qp_offsets_from_weights([1e-12, 1.0, 1.0])
    assert off[0] == 12.0  # clipped
    with pytest.raises(ParameterError):
        qp_offsets_from_weights([0.0, 0.0])


def _tile_frame(seed: int = 0) -> np.ndarray:
    """(K, H, H) smooth random features, all tiles alike in statistics."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.avg_pool2d(torch.randn(1, K, H + 2, H + 2, generator=g), 3, 1)
    return x


def _tile_mse(frame_a, frame_b, p) -> np.ndarray:
    out = []
    for c in range(K):
        y, x, h, w = p.tile_rect(c)
        out.append(float(((frame_a[y:y + h, x:x + w].astype(float) - frame_b[y:y + h, x:x + w]) ** 2).mean()))
    return np.array(out)


def test_qp_offsets_reach_x265():
    """-6 QP on tile 0 and +6 on tile 4: tile 0 gets finer (more bits, less error), tile 4
    coarser, the others stay about where they were."""
    hevc = get_codec("hevc")
    p = pack_tensor(_tile_frame(), "t", 10)
    offsets = np.zeros(K)
    offsets[0], offsets[4] = -6.0, 6.0
    flat = hevc.encode_qp_map(p.frame, 10, 32, qp_map_for(p, np.zeros(K)))
    roi = hevc.encode_qp_map(p.frame, 10, 32, qp_map_for(p, offsets))
    shape = p.frame.shape
    e_flat = _tile_mse(hevc.decode(flat, 10, shape), p.frame, p)
    e_roi = _tile_mse(hevc.decode(roi, 10, shape), p.frame, p)
    assert e_roi[0] < 0.6 * e_flat[0]
    assert e_roi[4] > 1.6 * e_flat[4]
    others = [1, 2, 3, 5, 6, 7, 8]
    assert np.all(np.abs(np.log(e_roi[others] / e_flat[others])) < 0.5)
    # a zero map codes at the slice QP: same distortion as the plain constant-QP encoder
    plain = hevc.decode(hevc.encode(p.frame, 10, 32), 10, shape)
    assert abs(np.log(_tile_mse(plain, p.frame, p).mean() / e_flat.mean())) < 0.2


def test_bits_per_channel_follow_the_qp_offsets():
    from fcmcore.bitstream import EncodedFeatures

    hevc = get_codec("hevc")
    feats = {"t": _tile_frame(1)}
    offsets = np.zeros(K)
    offsets[0], offsets[4] = -6.0, 6.0
    enc0 = encode_features(feats, hevc, 32, bit_depth=10, qp_offsets={"t": np.zeros(K)})
    enc1 = encode_features(feats, hevc, 32, bit_depth=10, qp_offsets={"t": offsets})
    assert isinstance(enc1, EncodedFeatures)
    b0 = np.array(bits_per_channel(enc0, hevc, 32, {"t": np.zeros(K)})["t"])
    b1 = np.array(bits_per_channel(enc1, hevc, 32, {"t": offsets})["t"])
    assert b1[0] > 1.3 * b0[0] and b1[4] < 0.75 * b0[4]
    assert b0.min() > 0 and abs(b0.sum() / (enc0.payload_bytes["t"] * 8) - 1) < 0.35
    # the decoder needs nothing new: the offsets live inside the HEVC stream
    dec = decode_features(enc1.data, hevc)
    assert dec.features["t"].shape == feats["t"].shape


def test_qp_offsets_need_a_codec_with_region_qp():
    with pytest.raises(ParameterError, match="per-region QP"):
        encode_features({"t": _tile_frame()}, get_codec("vvc"), 32, qp_offsets={"t": np.zeros(K)})


@pytest.mark.parametrize("codec", ["hevc", pytest.param("vvc", marks=pytest.mark.slow)])
def test_gains_move_the_per_channel_error(codec):
    """Weights 16 on channel 0, 1/16 on channel 4, 1 elsewhere -> gains (relative to the
    largest) 1, 1/16 and 1/4: at the same QP channel 0 keeps its error, the others' error
    grows (channel 4 most), and the stream shrinks; the weighted error ratio follows w."""
    c = get_codec(codec)
    feats = {"t": _tile_frame(2)}
    w = np.ones(K)
    w[0], w[4] = 16.0, 1.0 / 16
    enc_plain = encode_features(feats, c, 32, bit_depth=10)
    enc_gain = encode_features(feats, c, 32, bit_depth=10, gains={"t": np.sqrt(w)})
    plain = decode_features(enc_plain.data, c).features["t"]
    gained = decode_features(enc_gain.data, c).features["t"]
    x = feats["t"]
    e_plain = (plain - x).pow(2).mean(dim=(0, 2, 3)).numpy()
    e_gain = (gained - x).pow(2).mean(dim=(0, 2, 3)).numpy()
    assert e_gain[0] < 1.5 * e_plain[0]
    others = [1, 2, 3, 5, 6, 7, 8]
    assert np.all(e_gain[others] > 3 * e_plain[others])
    assert e_gain[4] > 3 * e_gain[others].mean()
    assert len(enc_gain.data) < 0.8 * len(enc_plain.data)


def test_pipeline_wa_modes_and_bits_per_channel():
    from dataclasses import replace

    from PIL import Image

    from fcmcore.paths import ASSETS_DIR
    from fcmcore.pipeline import PipelineConfig, run

    image = Image.open(ASSETS_DIR / "samples" / "chelsea.jpg")
    base = PipelineConfig(split="expanded_conv_9", codec="hevc", quality=32, wrapper="pca")
    sse = run(image, base)
    wa = run(image, replace(base, rdo="wa", bits_per_channel=True))
    waqp = run(image, replace(base, rdo="wa-qp"))
    assert wa.bits != sse.bits and waqp.bits != sse.bits
    bpc = wa.to_json()["bits_per_channel"]["expanded_conv_9"]
    assert len(bpc) == 24 and all(isinstance(b, int) for b in bpc)
    assert wa.to_json()["rdo"] == "wa" and wa.to_json()["wrapper"] == "pca"
    assert "bits_per_channel" not in sse.to_json()
    with pytest.raises(ParameterError, match="per-region QP"):
        run(image, PipelineConfig(split="expanded_conv_9", codec="vvc", quality=32, wrapper="pca", rdo="wa-qp"))


def test_per_image_weights_inside_the_pipeline(tmp_path):
    """``image-post`` weights are re-estimated from each image's reduced tensor with autograd,
    although the pipeline runs under inference mode."""
    from dataclasses import replace

    from PIL import Image

    from fcmcore.paths import ASSETS_DIR
    from fcmcore.pipeline import PipelineConfig, run
    from fcmcore.wrappers import load_wrapper

    from fcmcore.wrappers import default_path
    from fcmcore.wrappers.fitted import copy_with_rdo_weights

    src = default_path("learned", "ssd_mobilenet_v2", "expanded_conv_9")
    path = copy_with_rdo_weights(src, tmp_path / "img.safetensors", "image-post")
    image = Image.open(ASSETS_DIR / "samples" / "chelsea.jpg")
    cfg = PipelineConfig(split="expanded_conv_9", codec="hevc", quality=37, wrapper=f"learned:{path}", rdo="wa")
    res = run(image, cfg)
    sse = run(image, replace(cfg, rdo="sse"))
    assert res.bits != sse.bits and res.detections is not None
    w = load_wrapper(f"learned:{path}", "ssd_mobilenet_v2", "expanded_conv_9")
    with torch.inference_mode():
        red = w.pre({"expanded_conv_9": sse.features["expanded_conv_9"]})
        weights = w.channel_weights(red)["expanded_conv_9"]
    assert weights.shape == (24,) and abs(weights.mean() - 1) < 1e-9 and weights.std() > 0.01
