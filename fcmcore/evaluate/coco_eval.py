"""COCO mAP from per-image evaluations: pycocotools' matching kept, its accumulation re-done
vectorised and weighted, so mAP can be recomputed on many resamples of the images.

pycocotools computes mAP in two steps: ``evaluateImg`` matches each image's detections of one
category to its ground truth at 10 IoU thresholds (the slow, Python part), then ``accumulate``
sorts all detections of a category by score, accumulates true and false positives and reads
precision at 101 recall thresholds. The first step does not depend on which *other* images are
in the set, so it is done once (``PerImageEval.from_cocoeval``: the ``evalImgs`` of an
evaluation pycocotools already ran) and kept (``to_json``: a few hundred kB per point in a
results file). The second step is ``PerImageEval.map_for_weights``: for a matrix of image
weights (one row per resample; a bootstrap resample weights an image by the number of times it
was drawn) it returns mAP and mAP@.5 per row, with pycocotools' arithmetic (same sort order,
same float operations), so that a row of ones gives exactly ``COCOeval.summarize()``'s
numbers (``tests/test_evaluate_bootstrap.py`` checks it).

Two exact shortcuts make it fast: the score order of a category is computed once (weights do
not change it), and detections after a category's last true positive are dropped (they are
false positives at every IoU in every resample: they lower precision only where no recall
threshold is read). Weight w on an image counts its detections and ground truth w times
(pycocotools on an image listed twice would interleave the copies' tied scores; a weight does
not).

Only area "all" and maxDets 100 are kept: what mAP (stats[0]) and mAP@.5 (stats[1]) use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError

FORMAT_VERSION = 1


def _recall_thresholds() -> np.ndarray:
    # exactly pycocotools' Params.setDetParams
    return np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)


def _iou_thresholds() -> np.ndarray:
    return np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)


@dataclass
class _Segment:
    """The true positives of one category at one IoU threshold, in accumulation order."""

    category: int  # index into the sorted categories
    iou: int  # IoU threshold index
    tp_image: np.ndarray  # (M,) image index of each true positive
    columns: slice  # its columns in the false-positive count matrix


class PerImageEval:
    """Per-image COCO matching of one set of detections (one RD point) against ground truth.

    ``rows``: per image, a list of (category id, non-ignored ground-truth count, scores,
    match bits, ignore bits) with bit t of the match/ignore ints = IoU threshold t; scores in
    ``evaluateImg`` order (descending, stable), at most 100 per image and category.
    """

    def __init__(self, image_ids: Sequence[int], rows: Mapping[int, list[tuple[int, int, list[float], list[int], list[int]]]],
                 num_ious: int = 10):
        self.image_ids = [int(i) for i in image_ids]
        self.rows = {int(k): v for k, v in rows.items()}
        self.num_ious = int(num_ious)
        self._prepared: tuple | None = None

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_cocoeval(cls, ev) -> "PerImageEval":
        """From a ``COCOeval`` after ``evaluate()`` (bbox, default parameters)."""
        p = ev.params
        if list(p.areaRng[0]) != [0 ** 2, 1e5 ** 2] or p.maxDets[-1] != 100 or len(p.iouThrs) != 10:
            raise ValueError("PerImageEval needs COCOeval's default parameters")
        img_ids = list(p.imgIds)
        cat_ids = list(p.catIds)
        n_img, n_area = len(img_ids), len(p.areaRng)
        rows: dict[int, list] = {i: [] for i in img_ids}
        for k, cat in enumerate(cat_ids):
            base = k * n_area * n_img  # area index 0 = "all"
            for i, img in enumerate(img_ids):
                e = ev.evalImgs[base + i]
                if e is None:
                    continue
                npig = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
                m = np.asarray(e["dtMatches"]) > 0
                ig = np.asarray(e["dtIgnore"]).astype(bool)
                weights = (1 << np.arange(m.shape[0]))[:, None]
                mbits = (m * weights).sum(axis=0).astype(int).tolist() if m.size else []
                ibits = (ig * weights).sum(axis=0).astype(int).tolist() if ig.size else []
                rows[img].append((int(cat), npig, [float(s) for s in e["dtScores"]], mbits, ibits))
        return cls(img_ids, rows, len(p.iouThrs))

    # -- JSON: one flat list of numbers per image (one line each in a results file) --------------
    def to_json(self) -> dict[str, Any]:
        """Scores that are all float32 values (detector outputs) are written in float32's
        shortest form (8-9 digits, not 17) and read back through float32: exactly the same."""
        all_scores = np.array([s for entries in self.rows.values() for e in entries for s in e[2]], dtype=np.float64)
        f32 = bool(np.all(all_scores.astype(np.float32).astype(np.float64) == all_scores))
        fmt = (lambda s: float(str(np.float32(s)))) if f32 else float
        out = []
        for img in self.image_ids:
            flat: list[Any] = [img]
            for cat, npig, scores, mbits, ibits in self.rows.get(img, []):
                flat += [cat, npig, len(scores), *(fmt(s) for s in scores), *mbits, *ibits]
            out.append(flat)
        return {"version": FORMAT_VERSION, "num_ious": self.num_ious, "scores": "float32" if f32 else "float64",
                "images": out}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "PerImageEval":
        try:
            if doc.get("version") != FORMAT_VERSION:
                raise InputError(f"per-image COCO evaluation version {doc.get('version')!r}, expected {FORMAT_VERSION}")
            dtype = np.float32 if doc.get("scores") == "float32" else np.float64
            image_ids, rows = [], {}
            for flat in doc["images"]:
                img = int(flat[0])
                entries, j = [], 1
                while j < len(flat):
                    cat, npig, n = int(flat[j]), int(flat[j + 1]), int(flat[j + 2])
                    j += 3
                    scores = np.asarray(flat[j:j + n], dtype=dtype).astype(np.float64).tolist()
                    mbits = [int(b) for b in flat[j + n:j + 2 * n]]
                    ibits = [int(b) for b in flat[j + 2 * n:j + 3 * n]]
                    if len(ibits) != n:
                        raise ValueError("truncated entry")
                    entries.append((cat, npig, scores, mbits, ibits))
                    j += 3 * n
                image_ids.append(img)
                rows[img] = entries
            return cls(image_ids, rows, int(doc.get("num_ious", 10)))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InputError(f"malformed per-image COCO evaluation ({exc})") from None

    # -- accumulation ---------------------------------------------------------------------------
    def _prepare(self) -> tuple[list[_Segment], np.ndarray, np.ndarray]:
        """Segments, the (N, S) matrix of false positives of each image ranked before each
        true positive, and the (N, K) non-ignored ground-truth count per image and category."""
        if self._prepared is not None:
            return self._prepared
        n_img = len(self.image_ids)
        index = {img: n for n, img in enumerate(self.image_ids)}
        per_cat: dict[int, list] = {}
        for img in self.image_ids:  # image order = pycocotools' concatenation order
            for cat, npig, scores, mbits, ibits in self.rows.get(img, []):
                per_cat.setdefault(cat, []).append((index[img], npig, scores, mbits, ibits))
        cats = sorted(per_cat)
        gt = np.zeros((n_img, len(cats)))
        segments: list[_Segment] = []
        fp_blocks: list[np.ndarray] = []
        col = 0
        for k, cat in enumerate(cats):
            entries = per_cat[cat]
            for i, npig, *_ in entries:
                gt[i, k] += npig
            scores = np.array([s for e in entries for s in e[2]], dtype=np.float64)
            img_of = np.array([e[0] for e in entries for _ in e[2]], dtype=np.int64)
            mbits = np.array([b for e in entries for b in e[3]], dtype=np.int64)
            ibits = np.array([b for e in entries for b in e[4]], dtype=np.int64)
            order = np.argsort(-scores, kind="mergesort")  # as pycocotools
            img_of, mbits, ibits = img_of[order], mbits[order], ibits[order]
            for t in range(self.num_ious):
                matched = ((mbits >> t) & 1).astype(bool)
                ignored = ((ibits >> t) & 1).astype(bool)
                tp_pos = np.flatnonzero(matched & ~ignored)
                fp = (~matched & ~ignored).astype(np.float64)
                if tp_pos.size:
                    # false positives of each image ranked before each true positive
                    onehot = np.zeros((n_img, img_of.size))
                    onehot[img_of, np.arange(img_of.size)] = fp
                    block = np.cumsum(onehot, axis=1)[:, tp_pos]
                    fp_blocks.append(block)
                segments.append(_Segment(k, t, img_of[tp_pos], slice(col, col + tp_pos.size)))
                col += tp_pos.size
        fp_before = np.concatenate(fp_blocks, axis=1) if fp_blocks else np.zeros((n_img, 0))
        self._prepared = (segments, fp_before, gt)
        return self._prepared

    def _segment_precision(self, w: np.ndarray, seg: _Segment, n_gt: np.ndarray, fp_all: np.ndarray) -> np.ndarray:
        """(B, R) precision of one category at one IoU at each recall threshold; -1 where the
        category has no ground truth in the weighted set.

        Only true positives are visited: precision at a recall threshold is read at the first
        detection reaching it, always a true positive, and the running maximum from the right
        is reached at one too (a false positive only lowers precision). The false positives
        before each true positive come from one matrix product (exact: integer sums)."""
        rec = _recall_thresholds()
        n_b, n_r, m = w.shape[0], len(rec), seg.tp_image.size
        if m == 0:
            q = np.zeros((n_b, n_r))
        else:
            tp = np.cumsum(w[:, seg.tp_image], axis=1)
            fp = fp_all[:, seg.columns]
            rc = tp / np.where(n_gt > 0, n_gt, 1.0)[:, None]
            pr = tp / (fp + tp + np.spacing(1))
            env = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
            below = np.searchsorted(rec, rc, side="right")  # recall thresholds <= rc: 0..R
            rows = np.arange(n_b)[:, None]
            hist = np.bincount((rows * (n_r + 1) + below).ravel(), minlength=n_b * (n_r + 1))
            first = np.cumsum(hist.reshape(n_b, n_r + 1), axis=1)[:, :n_r]  # first index with rc >= r
            q = np.ascontiguousarray(env).ravel()[rows * m + np.minimum(first, m - 1)]
            q[first >= m] = 0.0
        q[n_gt <= 0] = -1.0
        return q

    def _weights(self, weights) -> np.ndarray:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != len(self.image_ids):
            raise ValueError(f"weights must be (resamples, {len(self.image_ids)}), got {w.shape}")
        return w

    def precision_for_weights(self, weights: np.ndarray) -> np.ndarray:
        """(B, T, R, K) precision at each IoU, recall threshold and category present (-1 where
        a category has no ground truth in the weighted set): pycocotools'
        ``eval['precision'][..., area all, maxDets 100]`` for each row of ``weights`` (B, N)."""
        w = self._weights(weights)
        segments, fp_before, gt = self._prepare()
        npig, fp_all = w @ gt, w @ fp_before
        out = -np.ones((w.shape[0], self.num_ious, len(_recall_thresholds()), gt.shape[1]))
        for seg in segments:
            out[:, seg.iou, :, seg.category] = self._segment_precision(w, seg, npig[:, seg.category], fp_all)
        return out

    def map_for_weights(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mAP, mAP@.5) for each row of ``weights`` (B, N): NaN where no ground truth is left.

        A few rows: pycocotools' ``summarize`` (the mean of the valid precision entries, in its
        order: bit-identical). Many rows (bootstrap): the same sums per category, without the
        (B, T, R, K) array (equal to ~1e-16)."""
        w = self._weights(weights)
        n_b = w.shape[0]
        m, m50 = np.full(n_b, np.nan), np.full(n_b, np.nan)
        if n_b <= 4:
            prec = self.precision_for_weights(w)
            for b in range(n_b):
                s = prec[b]
                if (s > -1).any():
                    m[b] = np.mean(s[s > -1])
                if (s[0] > -1).any():
                    m50[b] = np.mean(s[0][s[0] > -1])
            return m, m50
        segments, fp_before, gt = self._prepare()
        npig, fp_all = w @ gt, w @ fp_before
        rec = _recall_thresholds()
        total, total50 = np.zeros(n_b), np.zeros(n_b)
        for seg in segments:
            if seg.tp_image.size == 0:
                continue  # precision 0 at every recall threshold
            n_gt = npig[:, seg.category]
            tp = np.cumsum(w[:, seg.tp_image], axis=1)
            fp = fp_all[:, seg.columns]
            rc = tp / np.where(n_gt > 0, n_gt, 1.0)[:, None]
            pr = tp / (fp + tp + np.spacing(1))
            env = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
            # sum over recall thresholds of the precision read there: the thresholds first
            # reached at true positive j are those in (rc[j-1], rc[j]]
            reached = np.diff(_thresholds_at_most(rec, rc), axis=1, prepend=0)
            part = np.where(n_gt > 0, (env * reached).sum(axis=1), 0.0)
            total += part
            if seg.iou == 0:
                total50 += part
        n_r = len(_recall_thresholds())
        n_cats = (npig > 0).sum(axis=1)
        ok = n_cats > 0
        m[ok] = total[ok] / (n_cats[ok] * n_r * self.num_ious)
        m50[ok] = total50[ok] / (n_cats[ok] * n_r)
        return m, m50

    def map(self) -> tuple[float | None, float | None]:
        """mAP and mAP@.5 on every image (weights 1): equal to ``COCOeval.summarize()``."""
        m, m50 = self.map_for_weights(np.ones((1, len(self.image_ids))))
        return (None if np.isnan(m[0]) else float(m[0])), (None if np.isnan(m50[0]) else float(m50[0]))


def _thresholds_at_most(rec: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``np.searchsorted(rec, values, side="right")`` for pycocotools' 101 evenly spaced recall
    thresholds in [0, 1], by arithmetic (a binary search per element is ~50x slower) with an
    exact correction of the rounding of ``values * 100``."""
    n = len(rec) - 1
    k = np.clip(np.floor(values * n).astype(np.int64), 0, n)  # candidate: rec[k] <= value
    k = np.where(rec[k] > values, k - 1, k)  # k in -1..n with rec[k] <= value (or none)
    up = np.minimum(k + 1, n)
    k = np.where((k < n) & (rec[up] <= values), k + 1, k)
    return k + 1
