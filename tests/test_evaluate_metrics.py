"""COCO mAP and agreement metrics on known inputs (no model needed)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from fcmcore.evaluate.datasets import Dataset, detections_to_coco, load_dataset
from fcmcore.evaluate.metrics import agreement, box_iou, coco_map, map_vs_reference, match_detections


@dataclass(frozen=True)
class Box:
    category_id: int
    score: float
    box: tuple[float, float, float, float]
    label: str = ""


def _gt_as_results(gt, shift=0.0, score=1.0):
    out = []
    for a in gt["annotations"]:
        if a["iscrowd"]:
            continue
        x, y, w, h = a["bbox"]
        out.append({"image_id": a["image_id"], "category_id": a["category_id"],
                    "bbox": [x + shift * w, y + shift * h, w, h], "score": score})
    return out


@pytest.fixture(scope="module")
def tiny8(tiny_dataset):
    return load_dataset(tiny_dataset)


def test_ground_truth_as_detections_scores_one(tiny8):
    gt = tiny8.ground_truth()
    m = coco_map(gt, _gt_as_results(gt), tiny8.image_ids)
    assert m.mAP == pytest.approx(1.0)
    assert m.mAP50 == pytest.approx(1.0)


def test_perturbed_boxes_score_lower(tiny8):
    gt = tiny8.ground_truth()
    # shifted by 10% of width and height: IoU 0.81 / 1.19 = 0.68 for every box, so each box matches
    # at the IoU thresholds .50 .. .65 and none at .70 .. .95: mAP50 = 1 and mAP = 4 / 10
    shifted = coco_map(gt, _gt_as_results(gt, shift=0.1), tiny8.image_ids)
    assert shifted.mAP50 == pytest.approx(1.0)
    assert shifted.mAP == pytest.approx(0.4)
    # shifted by 20%: IoU 0.64 / 1.36 = 0.47, below every threshold
    assert coco_map(gt, _gt_as_results(gt, shift=0.2), tiny8.image_ids).mAP50 == 0.0
    # half the boxes removed: recall halves, mAP drops well below 1
    half = _gt_as_results(gt)[::2]
    assert coco_map(gt, half, tiny8.image_ids).mAP < 0.8


def test_prints_are_silenced(tiny8, capsys):
    gt = tiny8.ground_truth()
    coco_map(gt, _gt_as_results(gt), tiny8.image_ids)
    assert capsys.readouterr().out == ""


def test_no_detections_and_no_ground_truth():
    gt = {"images": [{"id": 1}, {"id": 2}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0}],
          "categories": [{"id": 3, "name": "car"}]}
    assert coco_map(gt, []).mAP == 0.0
    # an image without annotations: its detection is a false positive, mAP stays defined
    m = coco_map(gt, [{"image_id": 2, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.9},
                      {"image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.5}])
    assert 0 < m.mAP < 1
    # restricted to the unannotated image: nothing to measure
    assert coco_map(gt, [], image_ids=[2]).mAP is None


def test_box_iou():
    iou = box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert iou[0].tolist() == pytest.approx([1.0, 1 / 3, 0.0])


def test_match_detections_counts():
    ref = [Box(1, 0.9, (0, 0, 100, 100)), Box(3, 0.8, (200, 200, 300, 300)), Box(18, 0.7, (0, 300, 50, 350)),
           Box(1, 0.2, (500, 500, 600, 600))]  # below the reference threshold: not a target
    dets = [
        Box(1, 0.95, (2, 2, 100, 100)),  # matches ref 0
        Box(1, 0.85, (0, 0, 100, 100)),  # duplicate of ref 0: false
        Box(4, 0.8, (200, 200, 300, 300)),  # right place, wrong class: false; ref 1 missed
        Box(18, 0.6, (30, 300, 80, 350)),  # IoU 0.25 with ref 2: false; ref 2 missed
        Box(1, 0.1, (0, 0, 100, 100)),  # below the display threshold: ignored
    ]
    res = match_detections(dets, ref)
    assert res.counts == {"matched": 1, "missed": 2, "false": 3}
    assert res.matched[0][0] is dets[0] and res.matched[0][1] is ref[0]
    assert set(map(id, res.missed)) == {id(ref[1]), id(ref[2])}
    # identical lists agree fully
    same = match_detections(ref, ref)
    assert same.counts == {"matched": 3, "missed": 0, "false": 0}


def test_match_prefers_highest_iou_same_class():
    ref = [Box(1, 1.0, (0, 0, 10, 10)), Box(1, 1.0, (4, 0, 14, 10))]
    dets = [Box(1, 0.9, (4, 0, 14, 10)), Box(1, 0.8, (0, 0, 10, 10))]
    res = match_detections(dets, ref)
    assert [(d is dets[0], r is ref[1]) for d, r, _ in res.matched][0] == (True, True)
    assert res.counts["matched"] == 2


def test_agreement_and_map_vs_reference():
    ref = {1: [Box(1, 0.9, (0, 0, 100, 100)), Box(3, 0.8, (200, 200, 300, 300))], 2: [Box(17, 0.95, (10, 10, 60, 60))]}
    a = agreement(ref, ref)
    assert (a["matched"], a["missed"], a["false"], a["f1"]) == (3, 0, 0, 1.0)
    assert map_vs_reference(ref, ref).mAP == pytest.approx(1.0)
    degraded = {1: [Box(1, 0.9, (0, 0, 100, 100))], 2: [Box(17, 0.95, (30, 30, 80, 80))]}
    a = agreement(degraded, ref)
    assert (a["matched"], a["missed"], a["false"]) == (1, 2, 1)
    assert a["recall"] == pytest.approx(1 / 3)
    m = map_vs_reference(degraded, ref)
    assert m.mAP < 0.7


def test_detections_map_to_dataset_categories(tmp_path):
    cats = [{"id": 1, "name": "person"}, {"id": 7, "name": "dog"}]  # own numbering for dog
    ds = Dataset("t", tmp_path, [], categories=cats, annotations=[])
    dets = [Box(1, 0.9, (0, 0, 10, 20), "person"), Box(18, 0.8, (0, 0, 5, 5), "dog"), Box(3, 0.7, (0, 0, 5, 5), "car")]
    entries, dropped = detections_to_coco(ds, 5, dets)
    assert dropped == 1
    assert [(e["category_id"], e["bbox"]) for e in entries] == [(1, [0.0, 0.0, 10.0, 20.0]), (7, [0.0, 0.0, 5.0, 5.0])]
    json.dumps(entries)  # plain JSON types
