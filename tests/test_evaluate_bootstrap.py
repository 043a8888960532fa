"""Bootstrap intervals: the re-done COCO accumulation equals pycocotools, weights equal
duplicated images, and intervals cover a known BD-rate on synthetic curves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fcmcore.evaluate.bootstrap import bd_with_ci, point_intervals, resample_weights
from fcmcore.evaluate.coco_eval import PerImageEval, _recall_thresholds, _thresholds_at_most
from fcmcore.evaluate.metrics import coco_map


def synthetic_coco(seed: int, n_img: int = 40, n_cat: int = 6):
    """COCO ground truth (with crowd boxes) and jittered detections plus false positives."""
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": 640, "height": 480} for i in range(n_img)]
    anns, res = [], []
    for im in images:
        for _ in range(rng.integers(0, 8)):
            x, y = rng.uniform(0, 500), rng.uniform(0, 380)
            w, h = rng.uniform(5, 140, 2)
            c = int(rng.integers(1, n_cat + 1))
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": c, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": int(rng.random() < 0.05)})
            for _ in range(rng.integers(0, 3)):
                j = rng.normal(0, 8, 4)
                res.append({"image_id": im["id"], "category_id": c if rng.random() < .8 else int(rng.integers(1, n_cat + 1)),
                            "bbox": [x + j[0], y + j[1], max(1, w + j[2]), max(1, h + j[3])],
                            "score": float(np.float32(rng.random()))})
        for _ in range(rng.integers(0, 30)):
            res.append({"image_id": im["id"], "category_id": int(rng.integers(1, n_cat + 1)),
                        "bbox": list(rng.uniform(0, 300, 4) + [0, 0, 5, 5]), "score": float(np.float32(rng.random() * 0.5))})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": str(c)} for c in range(1, n_cat + 2)]}
    return gt, res


@pytest.mark.parametrize("seed", range(4))
def test_no_resample_equals_pycocotools_exactly(seed):
    gt, res = synthetic_coco(seed)
    m = coco_map(gt, res, per_image=True)
    assert m.mAP is not None and 0 < m.mAP < m.mAP50 < 1
    ev = PerImageEval.from_json(json.loads(json.dumps(m.per_image.to_json())))  # through a results file
    assert ev.map() == (m.mAP, m.mAP50)  # bit for bit, as summarize() prints them
    prec = ev.precision_for_weights(np.ones((1, len(ev.image_ids))))
    assert prec.shape[1:3] == (10, 101)


def test_no_detections_and_no_ground_truth():
    gt, _ = synthetic_coco(0)
    m = coco_map(gt, [], per_image=True)
    assert m.per_image.map() == (0.0, 0.0) == (m.mAP, m.mAP50)
    empty = coco_map({"images": gt["images"], "annotations": [], "categories": gt["categories"]}, [], per_image=True)
    assert empty.mAP is None and empty.per_image.map() == (None, None)


def test_weights_equal_duplicated_images():
    """A resample weighting an image by k is pycocotools on a dataset holding k copies of it."""
    gt, res = synthetic_coco(1, n_img=30)
    ev = coco_map(gt, res, per_image=True).per_image
    counts = np.random.default_rng(5).multinomial(30, np.ones(30) / 30)
    images, anns, dets = [], [], []
    for i, c in enumerate(counts):
        for _ in range(c):
            new = 1000 + len(images)
            images.append({"id": new, "width": 640, "height": 480})
            anns += [dict(a, id=len(anns) + 1 + n, image_id=new)
                     for n, a in enumerate(a for a in gt["annotations"] if a["image_id"] == i + 1)]
            dets += [dict(d, image_id=new) for d in res if d["image_id"] == i + 1]
    for k, a in enumerate(anns):
        a["id"] = k + 1
    dup = coco_map({"images": images, "annotations": anns, "categories": gt["categories"]}, dets)
    m, m50 = ev.map_for_weights(counts[None].astype(float))
    assert m[0] == pytest.approx(dup.mAP, abs=1e-12) and m50[0] == pytest.approx(dup.mAP50, abs=1e-12)


def test_many_resamples_path_equals_exact_path():
    gt, res = synthetic_coco(2, n_img=30)
    ev = coco_map(gt, res, per_image=True).per_image
    w = resample_weights(30, 12, seed=3)
    exact = [ev.map_for_weights(w[i:i + 1]) for i in range(12)]
    fast_m, fast_m50 = ev.map_for_weights(w)
    assert fast_m == pytest.approx([e[0][0] for e in exact], abs=1e-12)
    assert fast_m50 == pytest.approx([e[1][0] for e in exact], abs=1e-12)


def test_recall_threshold_count_is_searchsorted():
    rec = _recall_thresholds()
    v = np.concatenate([rec, np.nextafter(rec, 2), np.nextafter(rec, -1),
                        np.random.default_rng(0).random(20000), [0.0, 1.0]])
    v = v[(v >= 0) & (v <= 1)]
    assert np.array_equal(_thresholds_at_most(rec, v), np.searchsorted(rec, v, side="right"))


def test_resample_weights_seeded():
    a, b = resample_weights(10, 50, seed=1), resample_weights(10, 50, seed=1)
    assert np.array_equal(a, b) and (a.sum(axis=1) == 10).all()
    assert not np.array_equal(a, resample_weights(10, 50, seed=2))


# -- synthetic RD curves with a known BD-rate --------------------------------------------------

LEVELS = np.array([0.15, 0.3, 0.45, 0.6, 0.75, 0.9])  # "quality" of the six points


def synthetic_curve(name: str, rate_factor: float, seed: int, n_img: int = 60, image_seed: int = 0):
    """A results-file curve: per image, ground-truth boxes found with a probability and IoU
    that grow with the point's level; rate = image complexity x level**2 x ``rate_factor``.
    Two curves from the same generator with rate factors f1 and f2 differ by BD-rate
    (f2 / f1 - 1) x 100 in expectation; ``seed`` draws the detections (the noise)."""
    img_rng = np.random.default_rng(image_seed)  # the images: same for every curve (paired)
    n_gt = img_rng.integers(1, 6, size=n_img)
    cats = [img_rng.integers(1, 4, size=n) for n in n_gt]
    complexity = img_rng.uniform(0.5, 2.0, size=n_img)
    rng = np.random.default_rng(seed)
    points, bpp_curve, map_curve = [], [], []
    for level in LEVELS:
        rows = {}
        for i in range(n_img):
            entries = {}
            for c in cats[i]:
                e = entries.setdefault(int(c), [int(c), 0, [], [], []])
                e[1] += 1
                if rng.random() < 0.35 + 0.6 * level:  # found
                    depth = rng.binomial(10, level)  # matched at the first `depth` IoU thresholds
                    e[2].append(float(np.float32(rng.uniform(0.3, 1.0))))
                    e[3].append((1 << depth) - 1 if depth else 0)
                    e[4].append(0)
            for _ in range(rng.poisson(3 * (1.2 - level))):  # false positives
                c = int(rng.integers(1, 4))
                e = entries.setdefault(c, [c, 0, [], [], []])
                e[2].append(float(np.float32(rng.uniform(0.0, 0.6))))
                e[3].append(0)
                e[4].append(0)
            for e in entries.values():  # evaluateImg order: by descending score
                order = np.argsort(-np.array(e[2]), kind="mergesort")
                e[2], e[3], e[4] = ([e[j][k] for k in order] for j in (2, 3, 4))
            rows[i + 1] = [tuple(e) for e in entries.values()]
        ev = PerImageEval(list(range(1, n_img + 1)), rows)
        bpp = complexity * level ** 2 * rate_factor
        m, _ = ev.map()
        points.append({"images": [{"image_id": i + 1, "bpp": float(b)} for i, b in enumerate(bpp)],
                       "coco_eval": ev.to_json(), "mAP": m})
        bpp_curve.append(float(bpp.mean()))
        map_curve.append(m)
    return {"name": name, "results": {"bpp": bpp_curve, "mAP": map_curve}, "points": points}


def test_interval_contains_known_bd_rate_and_excludes_zero():
    anchor = synthetic_curve("anchor", 1.0, seed=1)
    test = synthetic_curve("test", 0.7, seed=2)  # needs 30 % fewer bits at equal accuracy
    r = bd_with_ci(anchor, test, n_resamples=300, seed=0)
    assert r.n_images == 60 and r.bd_rate is not None and r.bd_rate_ci is not None
    lo, hi = r.bd_rate_ci
    assert lo < -30.0 < hi
    assert hi < 0 and r.significant and r.verdict() == "significant"
    assert r.overlap > 0.8
    assert r.bd_map_ci[0] > 0  # and more accurate at equal rate
    assert r.to_json()["bd_rate_ci"] == [lo, hi]


def test_same_codec_twice_is_not_significant():
    a = synthetic_curve("a", 1.0, seed=3)
    b = synthetic_curve("b", 1.0, seed=4)  # same codec, other noise
    r = bd_with_ci(a, b, n_resamples=300, seed=0)
    lo, hi = r.bd_rate_ci
    assert lo < 0 < hi and r.significant is False
    assert r.verdict() == "not significant on 60 images"


def test_point_intervals_cover_the_point():
    c = synthetic_curve("c", 1.0, seed=5)
    cis = point_intervals(c, n_resamples=200)
    for ci, m in zip(cis, c["results"]["mAP"]):
        assert ci[0] < m < ci[1]


def test_unpaired_curves_get_no_interval():
    a = synthetic_curve("a", 1.0, seed=3)
    b = synthetic_curve("b", 0.8, seed=4, n_img=50)
    r = bd_with_ci(a, b, n_resamples=100)
    assert r.bd_rate is not None and r.bd_rate_ci is None
    assert any("different images" in n for n in r.notes)


def test_little_overlap_is_refused():
    a = synthetic_curve("a", 1.0, seed=3)
    b = synthetic_curve("b", 1.0, seed=4)
    # keep only b's two best points: its mAP range then covers < 50 % of the union
    for key in ("bpp", "mAP"):
        b["results"][key] = b["results"][key][-2:]
    b["points"] = b["points"][-2:]
    r = bd_with_ci(a, b, n_resamples=100)
    assert r.bd_rate is None and any("no BD-rate" in n for n in r.notes)


@pytest.mark.slow
def test_interval_coverage_over_trials():
    """Over independent trials, the 95 % interval holds the true BD-rate (-20 %) in most."""
    hits = 0
    trials = 16
    for t in range(trials):
        anchor = synthetic_curve("anchor", 1.0, seed=100 + t, image_seed=t)
        test = synthetic_curve("test", 0.8, seed=200 + t, image_seed=t)
        lo, hi = bd_with_ci(anchor, test, n_resamples=400, seed=t).bd_rate_ci
        hits += lo <= -20.0 <= hi
    assert hits >= 13  # P(fewer than 13 of 16 | true coverage 0.95) < 1 %
