"""Rate-accuracy sweeps over a dataset, and the results file they write.

Files: this one plans a sweep and assembles its results document; ``sweep_worker`` (the
per-image work), ``executors`` (serial, local processes, Dask), ``summaries`` (one point's
metrics and intervals), ``results_io`` (reading and writing results files).

A sweep runs one pipeline configuration at several qualities (or at several target rates,
picking the quality per image: equal-rate mode) over every image of a dataset, plus the
*uncompressed reference* (same model, split and wrapper, no codec: raw float32 features,
or the raw image for full-input), and measures each point's rate and accuracy.

Rate: ``bpp`` of a point = mean over images of ``bits / (W * H)`` with W x H the original
image size and bits = ``len(bitstream) * 8`` including side information (the usual
CompressAI convention: a mean of per-image bpp, not total bits over total pixels).

Accuracy: COCO mAP@[.5:.95] ("mAP") and mAP@.5 ("mAP50") of every detection the model keeps,
by pycocotools against the annotations. Each point also records agreement with the
reference (matched / missed / false boxes at IoU 0.5, score >= 0.4) and "mAP vs reference"
(the reference's detections with score >= 0.4 taken as ground truth). On a dataset without
annotations, "mAP"/"mAP50" *are* the mAP vs reference (``"ground_truth": "uncompressed"``).

Results file (JSON, ``version`` 1), read by ``fcm plot`` and ``fcm bdrate``::

    {
      "version": 1,
      "created": "2025-01-01T12:00:00Z", "fcmcore_version": "0.1.0", "code_version": "<hash>",
      "dataset": {"name", "root", "annotations", "num_images", "num_annotations", "image_ids", ...},
      "ground_truth": "annotations" | "uncompressed",
      "settings": {"workers", "scheduler", "cache", "reference_score_threshold", "match_iou"},
      "skipped": [{"image_id", "file_name", "error",        # images left out of every curve:
                   "curve", "quality", "target_bpp"}],     # unreadable, or a run failed (then
                                                           # curve + quality say which)
      "reference": <reference>,                            # the first curve's reference
      "curves": [<curve>, ...]
    }
    <curve> = {
      "name": "ssd_mobilenet_v2 @ expanded_conv_9 + hevc",  # PipelineConfig.label() or --name
      "config": {...PipelineConfig.to_json(), quality null},
      "mode": "quality" | "target_bpp",
      "results": {"bpp": [...], "mAP": [...], "mAP50": [...], "quality": [...],   # CompressAI plot schema
                  "mAP_vs_ref": [...], "target_bpp": [...] (equal-rate mode only)},
      "reference": <reference>,
      "points": [{"quality", "target_bpp", "config", "bpp", "bits_mean", "mAP", "mAP50",
                  "mAP_vs_ref", "mAP50_vs_ref", "agreement": {"matched", "missed", "false",
                  "precision", "recall", "f1", "f1_ci", ...}, "dropped_detections", "timings_ms": {stage: mean ms},
                  "num_images", "cached_images",
                  "mAP_ci", "mAP50_ci", "mAP_vs_ref_ci", "bpp_ci": [lo, hi],  # 95 % bootstrap intervals
                  "images": [{"image_id", "quality", "bits", "bpp", "num_detections", "cached",
                              "agreement": [matched, missed, false]}],
                  "coco_eval", "coco_eval_vs_ref": per-image COCO matching (coco_eval.PerImageEval)
                 }, ...]
    }
    <reference> = {"name", "config", "bpp", "bits_mean", "mAP", "mAP50", "timings_ms",
                   "num_images", "cached_images", "images": [...]}

Intervals are percentile intervals of 1000 paired bootstrap resamples of the images (seeded:
the same resamples for every point of a file; ``bootstrap``). ``coco_eval`` lets ``fcm bdrate``
recompute mAP on resamples without the detections (``coco_eval``).

A run that fails (codec error, timeout) does not stop the sweep: its image is listed in
``skipped`` with curve, quality and message and left out of every curve (so curves stay
paired), the sweep finishes with the others, and a re-run recomputes only what failed (the
rest comes from the cache).

In equal-rate mode, a point's "quality" is the mean of the per-image qualities (each image's
own is in its row). Results are the same whichever way the work is spread (serial, local
processes, Dask): every run uses one torch thread, and points are assembled in image-id order.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from tqdm import tqdm

from .. import __version__
from ..errors import FCMError, InputError, ParameterError
from ..paths import portable
from ..pipeline import PipelineConfig
from .bootstrap import N_RESAMPLES, SEED, resample_weights
from .cache import ResultCache
from .datasets import Dataset
from .executors import default_workers, run_tasks
from .metrics import MATCH_IOU, REFERENCE_SCORE_THRESHOLD
from .resolve import config_dict as _config_dict, reference_config, resolve_config
from .result_key import code_version, result_key
from .results_io import RESULTS_VERSION, check_output_path, dumps_results, load_results, save_results
from .summaries import label_of, summarise
from .sweep_worker import ImageTask, RunSpec, record_detections, record_from_result, valid_record

__all__ = ["CurveSpec", "RESULTS_VERSION", "check_output_path", "default_workers", "dumps_results", "evaluate",
           "load_results", "record_detections", "record_from_result", "reference_config", "resolve_config",
           "run_sweep", "save_results", "valid_record"]

ProgressFn = Callable[[int, int], None]


@dataclass
class CurveSpec:
    """One RD curve: a configuration at several qualities, or at several target rates."""

    config: PipelineConfig  # quality ignored
    qualities: Sequence[float] = ()
    target_bpp: Sequence[float] = ()
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.config.with_quality(None).label()


# -- planning: curves -> specs shared across curves -> one task per image and edge part -----

@dataclass
class _CurvePlan:
    name: str
    base: Any  # resolved PipelineConfig, quality None
    mode: str  # "quality" | "target_bpp"
    points: list[int]  # spec indices
    reference: int  # spec index of its uncompressed reference


@dataclass
class _Plan:
    specs: list[RunSpec] = field(default_factory=list)
    curves: list[_CurvePlan] = field(default_factory=list)
    quality_specs: dict[str, Any] = field(default_factory=dict)  # codec -> QualitySpec (bisection)
    _index: dict[tuple, int] = field(default_factory=dict)

    def add(self, spec: RunSpec) -> int:
        """Index of ``spec``, shared with an equal one already planned (e.g. one reference
        for several curves of the same split runs once)."""
        k = (tuple(sorted(spec.config.items())), spec.target_bpp)
        if k not in self._index:
            self._index[k] = len(self.specs)
            self.specs.append(spec)
        return self._index[k]

    def curve_of(self, spec_index: int) -> str:
        for c in self.curves:
            if spec_index in c.points or spec_index == c.reference:
                return c.name
        return "?"


def plan_curves(curves: Sequence[CurveSpec]) -> _Plan:
    plan = _Plan()
    names = set()
    for curve in curves:
        base, codec = resolve_config(curve.config.with_quality(None))
        name = curve.label
        if name in names:
            raise ParameterError(f"two curves named {name!r}; give them distinct names")
        names.add(name)
        if codec is None:
            raise ParameterError(f"curve {name!r}: a sweep needs a codec (--codec); the uncompressed reference is recorded anyway")
        if bool(curve.qualities) == bool(curve.target_bpp):
            raise ParameterError(f"curve {name!r}: give either qualities or target rates")
        points = []
        if curve.qualities:
            seen_q = set()
            for q in curve.qualities:
                cfg, _ = resolve_config(base.with_quality(q))
                if cfg.quality in seen_q:
                    continue
                seen_q.add(cfg.quality)
                points.append(plan.add(RunSpec(_config_dict(cfg))))
            mode = "quality"
        else:
            plan.quality_specs[base.codec] = codec.quality
            for t in curve.target_bpp:
                if not (float(t) > 0):
                    raise ParameterError(f"target bpp must be positive, got {t}")
                points.append(plan.add(RunSpec(_config_dict(base), target_bpp=float(t))))
            mode = "target_bpp"
        ref_cfg, _ = resolve_config(reference_config(base))
        plan.curves.append(_CurvePlan(name, base, mode, points, plan.add(RunSpec(_config_dict(ref_cfg)))))
    return plan


@dataclass
class _Runs:
    """What the sweep has so far: records per spec and image, and what is left out."""

    records: dict[int, dict[int, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    left_out: dict[int, dict[str, Any]] = field(default_factory=dict)  # image id -> skipped entry
    tasks: list[ImageTask] = field(default_factory=list)
    task_specs: dict[int, list[int]] = field(default_factory=dict)  # task id -> spec indices, in order
    cached_runs: int = 0
    total: int = 0


def _tasks_for(dataset: Dataset, plan: _Plan, cache: ResultCache | None) -> _Runs:
    """Cache look-ups for fixed specs; what is left becomes one task per image and edge part."""
    runs = _Runs()
    hashes: dict[int, str] = {}
    for im in dataset.images:
        try:
            hashes[im.id] = im.sha256()
        except InputError as exc:
            runs.left_out[im.id] = {"image_id": im.id, "file_name": im.file_name, "error": str(exc)}
    specs = plan.specs
    keys = {(im_id, i): result_key(h, s.config) for im_id, h in hashes.items()
            for i, s in enumerate(specs) if s.target_bpp is None}
    hits = cache.get_many(keys.values()) if cache is not None else {}
    for im in dataset.images:
        if im.id not in hashes:
            continue
        todo = []
        for i in range(len(specs)):
            key = keys.get((im.id, i))
            if key is not None and key in hits and valid_record(hits[key]):
                runs.records[i][im.id] = dict(hits[key], cached=True)
                runs.cached_runs += 1
            else:
                todo.append(i)
        groups: dict[tuple, list[int]] = defaultdict(list)  # one task per edge part
        for i in todo:
            groups[(specs[i].config["model"], specs[i].config["split"])].append(i)
        for group in groups.values():
            runs.task_specs[len(runs.tasks)] = group
            runs.tasks.append(ImageTask(
                task_id=len(runs.tasks), image_id=im.id, path=str(im.path), file_name=im.file_name,
                image_sha256=hashes[im.id], specs=[specs[i] for i in group],
                keys=[keys.get((im.id, i)) for i in group],
                cache_path=str(cache.path) if cache is not None else None, quality_specs=plan.quality_specs,
            ))
    runs.total = len(hashes) * len(specs)
    return runs


def _open_cache(cache: ResultCache | bool | None) -> ResultCache | None:
    if cache is True:
        try:
            return ResultCache()
        except FCMError as exc:
            print(f"warning: {exc}; running without the cache", file=sys.stderr)
            return None
    return None if cache is None or cache is False else cache  # (an empty cache is falsy: len 0)


# -- the engine ---------------------------------------------------------------------------

def evaluate(dataset: Dataset, curves: Sequence[CurveSpec], *, cache: ResultCache | bool | None = True,
             workers: int | None = None, scheduler: Any = None, progress: bool = True,
             progress_callback: ProgressFn | None = None, keep_runs: dict | None = None) -> dict[str, Any]:
    """Run ``curves`` (and each one's uncompressed reference) over ``dataset``; return the
    results document described in the module docstring. ``keep_runs``: a dict that gets the
    plan and the per-image records (``kfold`` merges the folds' records)."""
    if not curves:
        raise ParameterError("nothing to sweep: give at least one curve")
    cache = _open_cache(cache)
    version = code_version()  # the core sources as this sweep starts (the cache keys use it too)
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ParameterError(f"--workers must be at least 1, got {workers}")
    plan = plan_curves(curves)
    runs = _tasks_for(dataset, plan, cache)

    bar = None
    if progress:
        bar = tqdm(total=runs.total, initial=runs.cached_runs, desc=f"sweep {dataset.name}", unit="run",
                   file=sys.stderr, dynamic_ncols=True)
    done_runs = runs.cached_runs
    start = time.perf_counter()

    def warn(msg: str) -> None:
        (bar.write(msg, file=sys.stderr) if bar else print(msg, file=sys.stderr))

    def on_done(out: dict[str, Any]) -> None:
        nonlocal done_runs
        image_id = out["image_id"]
        spec_ids = runs.task_specs[out["task_id"]]
        if out["error"]:
            if image_id not in runs.left_out:
                warn(f"skipped image {image_id}: {out['error']}")
            runs.left_out[image_id] = {"image_id": image_id, "file_name": dataset.image(image_id).file_name,
                                       "error": out["error"]}
        else:
            for i, rec in zip(spec_ids, out["results"]):
                if rec is not None:
                    runs.records[i][image_id] = rec
            for fail in out["failed"]:
                spec_index = spec_ids[fail["spec"]]
                entry = {"image_id": image_id, "file_name": dataset.image(image_id).file_name,
                         "error": fail["error"], "curve": plan.curve_of(spec_index), "quality": fail["quality"],
                         "target_bpp": fail["target_bpp"]}
                what = f"quality {fail['quality']}" if fail["target_bpp"] is None else f"target {fail['target_bpp']} bpp"
                warn(f"warning: {entry['curve']} at {what} failed on image {image_id} ({entry['file_name']}): "
                     f"{fail['error']}; image left out of every curve")
                runs.left_out.setdefault(image_id, entry)
            if cache is not None and out["new"]:
                cache.put_many(out["new"])
        done_runs += len(spec_ids)
        if bar:
            bar.update(len(spec_ids))
        if progress_callback:
            progress_callback(done_runs, runs.total)

    try:
        run_tasks(runs.tasks, workers=workers, scheduler=scheduler, on_done=on_done)
    finally:
        if bar:
            bar.close()
    elapsed = time.perf_counter() - start
    if keep_runs is not None:
        keep_runs.update(plan=plan, runs=runs, elapsed_s=elapsed)
    doc = _assemble(dataset, plan, runs)

    return {
        "version": RESULTS_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fcmcore_version": __version__,
        "code_version": version,
        "dataset": dataset.to_json(),
        "ground_truth": "annotations" if dataset.has_annotations else "uncompressed",
        "settings": {
            "workers": workers if scheduler is None else None,
            "scheduler": None if scheduler is None else str(getattr(scheduler, "scheduler_address", scheduler)),
            "cache": portable(cache.path) if cache is not None else None,
            "reference_score_threshold": REFERENCE_SCORE_THRESHOLD,
            "match_iou": MATCH_IOU,
            "runs": runs.total, "cached_runs": runs.cached_runs, "elapsed_s": round(elapsed, 2),
            "failed_runs": sum(1 for e in runs.left_out.values() if "curve" in e),
            "bootstrap": {"resamples": doc["resamples"], "seed": doc["seed"], "confidence": 0.95},
        },
        "skipped": [runs.left_out[i] for i in sorted(runs.left_out)],
        "reference": doc["curves"][0]["reference"],
        "curves": doc["curves"],
    }


def _assemble(dataset: Dataset, plan: _Plan, runs: _Runs) -> dict[str, Any]:
    """The curves of the results document from the records of the images kept."""
    image_ids = [im.id for im in dataset.images if im.id not in runs.left_out]
    if not image_ids:
        failed = [e for e in runs.left_out.values() if "curve" in e]
        hint = f"; first failure: {failed[0]['error']}" if failed else ""
        raise InputError(f"dataset {dataset.name}: none of its {len(dataset.images)} images gave results{hint}")
    records = runs.records
    weights = resample_weights(len(image_ids), N_RESAMPLES, SEED)
    summaries: dict[tuple, dict[str, Any]] = {}
    ref_dets: dict[int, dict[int, list]] = {}

    def summary(idx: int, ref_idx: int | None) -> dict[str, Any]:
        if (idx, ref_idx) not in summaries:
            reference = None
            if ref_idx is not None:
                if ref_idx not in ref_dets:
                    ref_dets[ref_idx] = {i: record_detections(records[ref_idx][i]) for i in image_ids}
                reference = ref_dets[ref_idx]
            summaries[(idx, ref_idx)] = summarise(dataset, image_ids, plan.specs[idx], records[idx], reference, weights)
        return summaries[(idx, ref_idx)]

    out_curves = []
    for c in plan.curves:
        ref = summary(c.reference, None)
        ref_doc = {"name": label_of(plan.specs[c.reference].config), **ref}
        pts = [summary(i, c.reference) for i in c.points]
        results: dict[str, list] = {
            "bpp": [p["bpp"] for p in pts],
            "mAP": [p["mAP"] for p in pts],
            "mAP50": [p["mAP50"] for p in pts],
            "quality": [p["quality"] for p in pts],
            "mAP_vs_ref": [p["mAP_vs_ref"] for p in pts],
            "mAP_ci": [p.get("mAP_ci") for p in pts],
        }
        if c.mode == "target_bpp":
            results["target_bpp"] = [p["target_bpp"] for p in pts]
        for key in ("pose_oks", "cls_top1", "cls_top5"):  # secondary tasks (fcmcore.tasks.evaluation)
            if pts and key in pts[0]:
                results[key] = [p.get(key) for p in pts]
        out_curves.append({"name": c.name, "config": c.base.to_json(), "mode": c.mode, "results": results,
                           "reference": ref_doc, "points": pts})
    return {"curves": out_curves, "resamples": N_RESAMPLES, "seed": SEED}


def run_sweep(dataset: Dataset, config: PipelineConfig, qualities: Sequence[float] = (), *, target_bpp: Sequence[float] = (),
              name: str | None = None, **kwargs) -> dict[str, Any]:
    """One curve: ``config`` at each quality (or each target rate) plus its reference."""
    return evaluate(dataset, [CurveSpec(config, qualities, target_bpp, name)], **kwargs)
