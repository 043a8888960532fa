"""fcmcore.inspect: the measurements the dashboard shows (per-channel error, operating points,
curve look-ups, learned codecs' rates), checked on numbers made here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from fcmcore.errors import ParameterError
from fcmcore.inspect import channel_errors, operating_point, point_at_quality, skipped_points, typical_stream_bytes
from fcmcore.models.base import Detection


def test_channel_errors_per_channel():
    a = np.zeros((3, 2, 2), np.float32)
    b = a.copy()
    b[1] += 2.0  # channel 1: error 2 everywhere -> MSE 4
    b[2, 0, 0] = -1.0  # channel 2: one value off by 1 -> MSE 0.25
    e = channel_errors(a, b)
    assert e.mse.tolist() == [0.0, 4.0, 0.25]
    assert e.worst_channel == 1 and e.largest == 2.0 and e.abs_error.shape == (3, 2, 2)
    with pytest.raises(ParameterError):
        channel_errors(a, b[:2])


def test_channel_errors_takes_torch_tensors():
    torch = pytest.importorskip("torch")
    e = channel_errors(torch.zeros(2, 3, 3), torch.ones(2, 3, 3))
    assert e.mse.tolist() == [1.0, 1.0]


@dataclass
class _Run:
    bpp: float
    detections: list


def _det(box, score=0.9, cid=1):
    return Detection(label="person", category_id=cid, score=score, box=box)


def test_operating_point_matches_the_sweep_measures():
    ref = [_Run(1.0, [_det((0, 0, 10, 10)), _det((20, 20, 30, 30))]), _Run(1.0, [_det((0, 0, 10, 10))])]
    same = operating_point([_Run(0.2, r.detections) for r in ref], ref)
    assert same["bpp"] == pytest.approx(0.2) and same["f1"] == 1.0 and same["mAP_vs_ref"] == pytest.approx(1.0)
    lost = operating_point([_Run(0.1, ref[0].detections[:1]), _Run(0.3, [])], ref)
    assert lost["bpp"] == pytest.approx(0.2)
    assert lost["agreement"]["matched"] == 1 and lost["agreement"]["missed"] == 2
    assert lost["f1"] == pytest.approx(2 / (2 + 2)) and lost["mAP_vs_ref"] < 1.0
    with pytest.raises(ParameterError):
        operating_point([], [])


def test_point_lookup_and_skipped_points():
    curve = {"name": "c", "points": [{"quality": 30.0, "bpp": 0.3}, {"quality": 35.0, "bpp": 0.2}],
             "results": {"bpp": [0.1, 0.2, 0.3, 0.4], "mAP": [0.2, 0.4, 0.4, 0.39]}}
    assert point_at_quality(curve, 35)["bpp"] == 0.2 and point_at_quality(curve, 36) is None
    assert skipped_points(curve, "mAP") == 2, "0.3 bpp (no gain) and 0.4 bpp (a loss) leave the front"


def test_typical_stream_bytes_from_a_manifest():
    class Learned:
        manifest = {"qualities": [{"quality": 1, "val": {"stream_bytes": 217.5}}, {"quality": 2, "val": {}}]}

    assert typical_stream_bytes(Learned()) == {1: 217.5}
    assert typical_stream_bytes(object()) is None, "a frame codec has no manifest"
