"""Connector training data and architecture (unlabelled sources, inverted-residual blocks) and
the per-image task values that paired intervals resample."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from fcmcore.errors import InputError
from fcmcore.evaluate.bootstrap import NoPerImageData, point_metric_samples
from fcmcore.tasks import connectors
from fcmcore.tasks.evaluation import per_image_tasks
from fcmcore.training.unlabelled import unlabelled_images


def test_unlabelled_images_read_folders_and_video_frames(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "a_icon.png")  # too small
    (tmp_path / "notes.txt").write_text("not an image")  # ignored in a folder
    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 128))
    for k in range(7):
        w.write(np.full((128, 160, 3), 30 * k, np.uint8))
    w.release()
    names = [n for n, _ in unlabelled_images([tmp_path], frame_step=3)]
    assert names == ["b.png", "clip.avi#0", "clip.avi#3", "clip.avi#6"]
    frames = [im for _, im in unlabelled_images([video], frame_step=3)]
    assert [im.size for im in frames] == [(160, 128)] * 3 and frames[0].mode == "RGB"
    assert np.asarray(frames[2]).mean() > np.asarray(frames[0]).mean() + 100  # frames in order, not one repeated
    with pytest.raises(InputError, match="not found"):
        list(unlabelled_images([tmp_path / "missing"]))
    with pytest.raises(InputError, match="not an image"):
        list(unlabelled_images([tmp_path / "notes.txt"]))


def test_connector_blocks_start_as_identity_and_round_trip(tmp_path):
    torch.manual_seed(0)
    plain = connectors.Connector(8, 4, (10, 10), hidden=16, blocks=0)
    deep = connectors.Connector(8, 4, (10, 10), hidden=16, blocks=2)
    deep.load_state_dict(plain.state_dict(), strict=False)  # same convs; the new blocks keep their init
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(deep(x), plain(x))  # zero projections: the blocks add nothing yet
    for p in deep.body.parameters():
        p.data.add_(0.05)
    assert not torch.allclose(deep(x), plain(x))
    path = connectors.save(deep, {"task": "pose"}, tmp_path / "c.safetensors")
    back, meta = connectors.load(path)
    assert meta["config"]["blocks"] == 2 and back.blocks == 2
    torch.testing.assert_close(back(x), deep(x))
    assert connectors.size_bytes(deep) > connectors.size_bytes(plain)


class _People:
    has_annotations = True

    def annotations_for(self, image_id):
        return [{"category_id": 1}] if image_id in (1, 2) else [{"category_id": 3}]


def test_task_metric_intervals_resample_the_per_image_values():
    rows = [{"tasks": {"pose_oks": 0.9, "cls_top1": 1.0}}, {"tasks": {"pose_oks": 0.5, "cls_top1": 0.0}},
            {"tasks": {"pose_oks": 0.1, "cls_top1": 1.0}}]  # image 3: no person, its OKS does not count
    per_image = per_image_tasks(_People(), [1, 2, 3], rows)
    assert per_image[2]["pose_oks"] is None and per_image[0]["pose_oks"] == 0.9
    point = {"images": [{"image_id": i, "tasks": t} for i, t in zip([1, 2, 3], per_image)]}
    w = np.array([[1, 1, 1], [2, 0, 1], [0, 1, 0], [0, 0, 3]], float)
    oks = point_metric_samples(point, "pose_oks", w, [1, 2, 3])
    np.testing.assert_allclose(oks[:3], [0.7, 0.9, 0.5])
    assert np.isnan(oks[3])  # a resample of images without a person has no OKS
    np.testing.assert_allclose(point_metric_samples(point, "cls_top1", w, [1, 2, 3]), [2 / 3, 1.0, 0.0, 1.0])
    with pytest.raises(NoPerImageData):
        point_metric_samples({"images": [{"image_id": 1}]}, "cls_top1", w[:, :1], [1])
    assert per_image_tasks(_People(), [1], [{"detections": []}]) is None


@pytest.mark.parametrize("task", ["pose", "classification"])
def test_second_split_connectors_are_bundled_and_documented(task):
    for kind in ("conv", "linear"):
        module, meta = connectors.load_default(task, split="expanded_conv_12", kind=kind)
        assert connectors.size_bytes(module) <= connectors.MAX_BYTES
        assert meta["split"] == "expanded_conv_12" and meta["task"] == task and meta["kind"] == kind
        assert module.cin == 96  # expanded_conv_12 carries 96 channels
        assert "--split expanded_conv_12" in meta["command"] and "/tmp/" not in meta["command"]
    assert "expanded_conv_12" in (connectors.CONNECTOR_DIR / "README.md").read_text()
