"""WA-RDO strength (``--wa-strength S``: dQP = -3 S log2 w, gains w^(S/2)) and the cached ROI
filter graph of x265's QP-offset path (same bytes as a freshly built chain)."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import torch

from fcmcore.bitstream import qp_map_for
from fcmcore.codecs import get_codec
from fcmcore.codecs import hevc as hevc_mod
from fcmcore.coding.frames import PackedFrameCoder
from fcmcore.coding.rdo import block_qp_offsets, qp_offsets_from_weights
from fcmcore.errors import ParameterError
from fcmcore.packing import pack_tensor

K, H = 9, 19


def _features(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.randn(1, K, H + 2, H + 2, generator=g), 3, 1)


def _weights(seed: int = 0) -> np.ndarray:
    return np.exp(np.random.default_rng(seed).normal(0, 0.6, (K, H, H)))


def test_strength_scales_the_offsets_before_the_clip():
    w = np.array([1.0, 2.0, 4.0, 0.5])
    full = qp_offsets_from_weights(w)
    assert np.allclose(qp_offsets_from_weights(w, strength=0.5), full / 2)
    assert np.allclose(qp_offsets_from_weights(w, strength=0.25), full / 4)
    big = np.array([1.0, 2.0 ** 10])  # +-15 QP at S = 1: clipped to 12; at S = 0.5 not
    assert qp_offsets_from_weights(big).max() == 12.0
    assert qp_offsets_from_weights(big, strength=0.5).max() == pytest.approx(7.5)
    wb = _weights(1)
    assert np.allclose(block_qp_offsets(wb, 8, 8, strength=0.5), block_qp_offsets(wb, 8, 8) / 2, atol=1e-12)


def test_strength_reaches_the_coder_gains_and_qp_maps():
    feats = {"t": _features(4)}
    w = {"t": np.exp(np.linspace(-1, 1, K))}
    gains = {s: PackedFrameCoder(get_codec("hevc"), rdo="wa", wa_strength=s)._allocation(feats, w)[0]["t"]
             for s in (1.0, 0.5)}
    assert np.allclose(gains[1.0], np.sqrt(w["t"])) and np.allclose(gains[0.5], w["t"] ** 0.25)
    spatial = {"t": np.exp(np.random.default_rng(2).normal(0, 2.0, (H, H)))}
    streams = {s: PackedFrameCoder(get_codec("hevc"), bit_depth=10, rdo="wa-qp", tile_pad=8, wa_strength=s)
               .encode(feats, 34, channel_weights=spatial).bitstream for s in (1.0, 0.5, 0.25)}
    assert len(set(streams.values())) == 3  # each strength codes differently
    with pytest.raises(ParameterError, match="wa-strength"):
        from fcmcore.coding import coder_for

        coder_for("hyperprior", wa_strength=0.5)


def test_strength_in_config_json_label_and_cache_key():
    from fcmcore.evaluate.cache import result_key
    from fcmcore.evaluate.resolve import resolve_config
    from fcmcore.pipeline import PipelineConfig, _validate

    base = PipelineConfig(codec="hevc", quality=32, bit_depth=10, wrapper="pca", rdo="wa-qp", wa_weights="spatial",
                          wa_source="fixed", tile_pad=8)
    keys = {s: result_key("0" * 64, replace(base, wa_strength=s)) for s in (1.0, 0.5, 0.25)}
    assert len(set(keys.values())) == 3
    d = base.to_json()
    assert d["wa_strength"] == 1.0
    d.pop("wa_strength")  # files written before the option: same key as the default
    assert result_key("0" * 64, d) == keys[1.0]
    assert result_key("0" * 64, dict(base.to_json(), wa_strength=1)) == keys[1.0]
    assert PipelineConfig(wa_strength=1).wa_strength == 1.0 and isinstance(PipelineConfig(wa_strength=1).wa_strength, float)
    assert "s0.5" in replace(base, wa_strength=0.5).label() and " s1" not in base.label()
    for bad in (0.0, -1.0, float("nan"), 5.0):
        with pytest.raises(ParameterError, match="wa-strength"):
            _validate(replace(base, wa_strength=bad))
    # without WA weights the strength means nothing: one identity
    sse = resolve_config(replace(base, rdo="sse-qp", wa_strength=0.5))[0]
    assert sse.wa_strength == 1.0


def test_cli_takes_wa_strength():
    import argparse

    from fcmcore.cli.detect import add_pipeline_arguments, config_from_args

    p = argparse.ArgumentParser()
    add_pipeline_arguments(p)
    args = p.parse_args(["--codec", "hevc", "--wrapper", "pca", "--rdo", "wa-qp", "--wa-strength", "0.5"])
    assert config_from_args(args).wa_strength == 0.5


def _chain_encode(hevc, frame, qmap, q):
    """The reference: a freshly built addroi chain, as before the graph cache."""
    av = hevc_mod._video.load_av()
    vf, fmt, h, w = hevc._video_frame(frame, 10)
    regions = hevc_mod.roi_regions(hevc_mod._video.pad_edge(qmap, 1, hevc.min_side), hevc.roi_block, 63)
    graph = av.filter.Graph()
    last = graph.add_buffer(width=vf.width, height=vf.height, format=fmt, time_base=Fraction(1, 1))
    for x, y, rw, rh, d in regions:
        node = graph.add("addroi", f"x={x}:y={y}:w={rw}:h={rh}:qoffset={d}/63")
        last.link_to(node)
        last = node
    sink = graph.add("buffersink")
    last.link_to(sink)
    graph.configure()
    vf.pts = 0
    graph.push(vf)
    params = ":".join(f"{k}={v}" for k, v in hevc.x265_roi_params(q).items())
    return bytes(hevc_mod._video.av_encode("libx265", graph.pull(), w, h, fmt,
                                           {"preset": hevc.preset, "x265-params": params}))


def test_cached_roi_graph_gives_the_bytes_of_a_fresh_chain():
    hevc = get_codec("hevc")
    pa, pb = (pack_tensor(_features(s), "t", 10, pad=8) for s in (5, 6))
    qmap = qp_map_for(pa, block_qp_offsets(_weights(3), pad=8, block=8))
    hevc_mod._ROI_GRAPHS.clear()
    a1 = hevc.encode_qp_map(pa.frame, 10, 34, qmap)  # builds the graph
    assert len(hevc_mod._ROI_GRAPHS) == 1
    b1 = hevc.encode_qp_map(pb.frame, 10, 34, qmap)  # reuses it (another picture, same map)
    a2 = hevc.encode_qp_map(pa.frame, 10, 30, qmap)  # and at another QP
    assert len(hevc_mod._ROI_GRAPHS) == 1
    assert a1 == _chain_encode(hevc, pa.frame, qmap, 34)
    assert b1 == _chain_encode(hevc, pb.frame, qmap, 34)
    assert a2 == _chain_encode(hevc, pa.frame, qmap, 30)
    assert hevc.encode_qp_map(pa.frame, 10, 34, qmap) == a1  # repeatable
    hevc_mod._ROI_GRAPHS.clear()
    assert hevc.encode_qp_map(pb.frame, 10, 34, qmap) == b1  # fresh cache, same bytes
    # another map: its own graph, other bytes
    other = qp_map_for(pa, block_qp_offsets(_weights(4), pad=8, block=8))
    assert hevc.encode_qp_map(pa.frame, 10, 34, other) != a1
    assert len(hevc_mod._ROI_GRAPHS) == 2
    for s in range(hevc_mod._ROI_GRAPHS_MAX + 3):  # bounded: per-image maps do not pile up
        m = qp_map_for(pa, block_qp_offsets(_weights(10 + s), pad=8, block=8))
        hevc.encode_qp_map(pa.frame, 10, 34, m)
    assert len(hevc_mod._ROI_GRAPHS) == hevc_mod._ROI_GRAPHS_MAX
