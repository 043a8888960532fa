"""Packing: quantisation bounds, float16 side info, tiling, gains."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fcmcore.errors import ParameterError
from fcmcore.packing import (
    BIT_DEPTHS,
    f16_ceil,
    f16_floor,
    grid_for,
    pack_tensor,
    tile_channels,
    tile_rect,
    unpack_tensor,
    untile_channels,
)

F32_EPS = 2.0**-23


def feature_tensor(c=16, h=9, w=7, seed=0, scale=3.0, offset=0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, c, h, w, generator=g) * scale + offset
    return torch.relu(x) * torch.rand(1, c, 1, 1, generator=g) + offset  # ReLU-like, per-channel scales


def spans(p):
    return p.maxs.astype(np.float64) - p.mins.astype(np.float64)


def error_bound(p, x: torch.Tensor) -> np.ndarray:
    """Per-channel bound: half a quantisation step, plus float32 output rounding."""
    c = p.chw[0]
    levels = (1 << p.bit_depth) - 1
    g = np.ones(c) if p.gains is None else p.gains.astype(np.float64)
    span = np.broadcast_to(spans(p), (c,))
    return span / (g * levels) / 2 * (1 + 1e-9) + 2 * F32_EPS * float(x.abs().max())


@pytest.mark.parametrize("mode", ["tensor", "channel"])
def test_16bit_round_trip_within_half_step(mode):
    x = feature_tensor(c=24, offset=-1.5)
    p = pack_tensor(x, "f", 16, mode)
    y = unpack_tensor(p)
    assert y.shape == x.shape and y.dtype == torch.float32
    err = (y - x).abs().double().numpy()[0].reshape(24, -1).max(axis=1)
    assert np.all(err <= error_bound(p, x))
    # and the bound is not vacuous: the error really is of the order of a 16-bit step
    assert err.max() <= float(np.max(spans(p))) / 65535


@settings(max_examples=40, deadline=None)
@given(
    c=st.integers(1, 10),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    bit_depth=st.sampled_from(BIT_DEPTHS),
    mode=st.sampled_from(["tensor", "channel"]),
    scale=st.floats(1e-3, 1e3),
    offset=st.floats(-1e3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_round_trip_bound_any_tensor(c, h, w, bit_depth, mode, scale, offset, seed):
    x = feature_tensor(c, h, w, seed, scale, offset)
    p = pack_tensor(x, "f", bit_depth, mode)
    assert p.frame.dtype == np.uint16 and int(p.frame.max()) < (1 << bit_depth)
    err = (unpack_tensor(p) - x).abs().double().numpy()[0].reshape(c, -1).max(axis=1)
    assert np.all(err <= error_bound(p, x))


@pytest.mark.parametrize("mode", ["tensor", "channel"])
def test_float16_ranges_contain_values(mode):
    x = feature_tensor(c=12, scale=7.3, offset=0.123456)
    p = pack_tensor(x, "f", 10, mode)
    assert p.mins.dtype == np.float16 and p.maxs.dtype == np.float16
    assert p.mins.shape == p.maxs.shape == ((1,) if mode == "tensor" else (12,))
    flat = x.double().numpy()[0].reshape(12, -1)
    lo = flat.min() if mode == "tensor" else flat.min(axis=1)
    hi = flat.max() if mode == "tensor" else flat.max(axis=1)
    assert np.all(p.mins.astype(np.float64) <= lo) and np.all(p.maxs.astype(np.float64) >= hi)
    # tight: the next float16 inwards would cut a value off
    assert np.all(np.nextafter(p.mins, np.float16(np.inf)).astype(np.float64) > lo)
    assert np.all(np.nextafter(p.maxs, np.float16(-np.inf)).astype(np.float64) < hi)


@settings(max_examples=200, deadline=None)
@given(st.floats(-60000, 60000, allow_nan=False))
def test_f16_rounding_directions(v):
    assert float(f16_floor(np.array([v]))[0]) <= v <= float(f16_ceil(np.array([v]))[0])


def test_constant_and_zero_range_tensors_are_exact():
    x = torch.full((1, 5, 4, 4), 0.75)
    for mode in ("tensor", "channel"):
        assert torch.equal(unpack_tensor(pack_tensor(x, "c", 8, mode)), x)
    x = torch.zeros(1, 3, 2, 2)
    x[0, 1] = 2.0  # channel mode: two channels with zero range, one with a range
    y = unpack_tensor(pack_tensor(x, "c", 8, "channel"))
    assert torch.equal(y, x)


@pytest.mark.parametrize("c", [1, 2, 3, 5, 10, 16, 17, 64, 65])
def test_tiling_round_trip_and_grid(c):
    rng = np.random.default_rng(c)
    arr = rng.integers(0, 1024, (c, 3, 5), dtype=np.uint16)
    rows, cols = grid_for(c)
    assert cols == int(np.ceil(np.sqrt(c))) and rows == int(np.ceil(c / cols))
    frame = tile_channels(arr, fill=512)
    assert frame.shape == (rows * 3, cols * 5) and frame.dtype == np.uint16
    assert np.array_equal(untile_channels(frame, c, 3, 5), arr)
    for ch in range(c):
        y, x, h, w = tile_rect(ch, arr.shape, (rows, cols))
        assert np.array_equal(frame[y : y + h, x : x + w], arr[ch])
    unused = np.ones(frame.shape, bool)
    for ch in range(c):
        y, x, h, w = tile_rect(ch, (1, c, 3, 5))
        unused[y : y + h, x : x + w] = False
    assert np.all(frame[unused] == 512)


def test_packed_frame_uses_mid_grey_for_unused_tiles():
    p = pack_tensor(feature_tensor(c=5), "f", 10)
    assert p.grid == (2, 3)
    y, x, h, w = tile_rect(5, (6, 9, 7), p.grid)  # the sixth (unused) tile
    assert np.all(p.frame[y : y + h, x : x + w] == 512)
    assert p.tile_rect(4) == (9, 7, 9, 7)


def test_gains_shrink_levels_and_round_trip():
    c = 8
    x = feature_tensor(c=c, h=16, w=16, scale=2.0)
    gains = np.linspace(0.25, 2.0, c)  # relative: normalised by the largest
    p = pack_tensor(x, "f", 10, "channel", gains=gains)
    expect = (gains / gains.max()).astype(np.float16)
    assert p.gains.dtype == np.float16 and np.array_equal(p.gains, expect)
    y = unpack_tensor(p)
    err = (y - x).abs().double().numpy()[0].reshape(c, -1).max(axis=1)
    assert np.all(err <= error_bound(p, x))
    # the channel with gain g really uses about g * L code levels (its range spans the band)
    q = untile_channels(p.frame, c, 16, 16).reshape(c, -1).astype(int)
    used = q.max(axis=1) - q.min(axis=1)
    assert np.all(np.abs(used - p.gains.astype(float) * 1023) <= 1.5)
    assert used[0] < used[-1] / 4  # gain 1/8 vs 1
    # error grows as 1/g: the low-gain channel is coarser than the full-gain one
    assert err[0] > err[-1]


def test_gains_edge_cases():
    x = feature_tensor(c=4)
    # zero gain -> floored (channel kept, nearly no levels), not an error
    p = pack_tensor(x, "f", 8, "channel", gains=[0.0, 1.0, 1.0, 1.0])
    assert 0 < float(p.gains[0]) < 1e-3
    for bad in ([1, 1, 1], [-1, 1, 1, 1], [0, 0, 0, 0], [np.nan, 1, 1, 1], [np.inf, 1, 1, 1]):
        with pytest.raises(ParameterError):
            pack_tensor(x, "f", 8, "channel", gains=bad)
    # tensor-valued gains are accepted too
    p = pack_tensor(x, "f", 8, "tensor", gains=torch.tensor([1.0, 0.5, 0.5, 1.0]))
    assert np.array_equal(p.gains, np.array([1, 0.5, 0.5, 1], np.float16))


def test_shapes_and_errors():
    x3 = feature_tensor(c=3)[0]
    p = pack_tensor(x3, "f", 8)
    assert p.shape == (3, 9, 7) and unpack_tensor(p).shape == (3, 9, 7)
    with pytest.raises(ParameterError):
        pack_tensor(torch.zeros(2, 3, 4, 4), "f", 8)  # batch of two
    with pytest.raises(ParameterError):
        pack_tensor(torch.zeros(4, 4), "f", 8)
    with pytest.raises(ParameterError):
        pack_tensor(torch.zeros(1, 3, 4, 4), "f", 9)
    with pytest.raises(ParameterError):
        pack_tensor(torch.zeros(1, 3, 4, 4), "f", 8, mode="pixel")
    bad = torch.zeros(1, 3, 4, 4)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ParameterError):
        pack_tensor(bad, "f", 8)
    with pytest.raises(ParameterError):
        pack_tensor(torch.full((1, 1, 2, 2), 1e6), "f", 8)  # beyond float16 ranges
    with pytest.raises(ParameterError):
        tile_rect(3, (3, 4, 4))
    with pytest.raises(ParameterError):
        untile_channels(np.zeros((8, 9), np.uint16), 4, 4, 4)
