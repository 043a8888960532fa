"""Rate-accuracy sweeps over a dataset, and the results file they write.

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
      "skipped": [{"image_id", "file_name", "error"}],      # unreadable images, left out everywhere
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
                  "precision", "recall", "f1"}, "dropped_detections", "timings_ms": {stage: mean ms},
                  "num_images", "cached_images",
                  "images": [{"image_id", "quality", "bits", "bpp", "num_detections", "cached"}]}, ...]
    }
    <reference> = {"name", "config", "bpp", "bits_mean", "mAP", "mAP50", "timings_ms",
                   "num_images", "cached_images", "images": [...]}

In equal-rate mode, a point's "quality" is the mean of the per-image qualities (each image's
own is in its row). Results are the same whichever way the work is spread (serial, local
processes, Dask): every run uses one torch thread, and points are assembled in image-id order.
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..paths import portable
from ..errors import CodecUnavailableError, FCMError, InputError, ParameterError
from .cache import ResultCache, code_version, result_key
from .datasets import Dataset, ImageRecord, detections_to_coco
from .metrics import MATCH_IOU, REFERENCE_SCORE_THRESHOLD, agreement, coco_map, map_vs_reference

RESULTS_VERSION = 1
_TASK_METRICS = ("pose_oks", "cls_top1", "cls_top5")  # fcmcore.tasks.evaluation.TASK_METRICS


# -- what to run --------------------------------------------------------------------------

@dataclass
class CurveSpec:
    """One RD curve: a configuration at several qualities, or at several target rates."""

    config: Any  # PipelineConfig (quality ignored)
    qualities: Sequence[float] = ()
    target_bpp: Sequence[float] = ()
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.config.with_quality(None).label()


@dataclass(frozen=True)
class _Spec:
    """One run per image: a resolved config, or a config + target rate (bisection)."""

    config: dict[str, Any]
    target_bpp: float | None = None


@dataclass
class ImageTask:
    """The runs of one image that share an edge part (same model and split)."""

    task_id: int
    image_id: int
    path: str
    file_name: str
    image_sha256: str
    specs: list[_Spec]
    keys: list[str | None]  # cache key per fixed spec (None for target specs)
    cache_path: str | None = None  # read by workers during bisection
    quality_specs: dict[str, Any] = field(default_factory=dict)  # codec -> QualitySpec (bisection)


# -- records: what one run on one image leaves (also what the cache stores) ----------------

def record_from_result(result, image_id: int) -> dict[str, Any]:
    return {
        "image_id": int(image_id),
        "quality": result.quality,
        "bits": int(result.bits),
        "bpp": float(result.bpp),
        "width": int(result.image_size[0]),
        "height": int(result.image_size[1]),
        "header_bytes": int(result.header_bytes),
        "bits_estimated": result.bits_estimated,
        "timings_ms": {k: float(v) for k, v in result.timings_ms.items()},
        "detections": [[int(d.category_id), float(d.score), *(float(v) for v in d.box), d.label]
                       for d in result.detections],
        **_task_record(result),
    }


def _task_record(result) -> dict[str, Any]:
    """Secondary-task agreement of one run (fcmcore.tasks), {} for detection only."""
    from ..tasks.evaluation import record_tasks

    return record_tasks(result)


def record_detections(record: dict[str, Any]) -> list:
    """The record's detections as ``Detection`` objects."""
    from ..models.base import Detection

    return [Detection(label=row[6], category_id=int(row[0]), score=float(row[1]), box=tuple(row[2:6]))
            for row in record["detections"]]


# -- the per-image work (runs in a worker) -------------------------------------------------

@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def process_image(task: ImageTask) -> dict[str, Any]:
    """Run every spec of ``task`` on its image. Returns {"image_id", "error", "results":
    [record per spec], "new": [(key, record)] freshly computed (for the cache)}."""
    from ..imageio import decode_image_bytes
    from ..pipeline import PipelineConfig, run_from_head, run_head
    from .equal_rate import bisect_quality

    out: dict[str, Any] = {"task_id": task.task_id, "image_id": task.image_id, "error": None,
                           "results": [], "new": []}
    try:
        data = Path(task.path).read_bytes()
        image = decode_image_bytes(data, task.file_name)
    except OSError as exc:
        out["error"] = f"{task.file_name}: cannot read ({exc.strerror or exc})"
        return out
    except InputError as exc:
        out["error"] = str(exc)
        return out

    cache = None
    if task.cache_path and any(s.target_bpp is not None for s in task.specs):
        try:
            cache = ResultCache(task.cache_path)
        except FCMError:
            cache = None
    heads: dict[tuple[str, str | None], Any] = {}
    with _torch_threads(1):
        def compute(cfg: dict[str, Any], key: str | None) -> dict[str, Any]:
            if cache is not None and key is not None:
                hit = cache.get(key)
                if hit is not None:
                    return dict(hit, cached=True)
            config = PipelineConfig(**{k: v for k, v in cfg.items() if k != "paradigm"})
            hk = (config.model, config.split)
            if hk not in heads:
                heads[hk] = run_head(image, config.model, config.split)
            record = record_from_result(run_from_head(heads[hk], config), task.image_id)
            if key is not None:
                out["new"].append((key, record))
            return dict(record, cached=False)

        for spec, key in zip(task.specs, task.keys):
            if spec.target_bpp is None:
                out["results"].append(compute(spec.config, key))
                continue
            tried: dict[float, dict[str, Any]] = {}

            def bpp_of(q: float, spec: _Spec = spec, tried=tried) -> float:
                cfg = dict(spec.config, quality=float(q))
                tried[q] = compute(cfg, result_key(task.image_sha256, cfg))
                return tried[q]["bpp"]

            qspec = task.quality_specs[spec.config["codec"]]
            q = bisect_quality(qspec, bpp_of, spec.target_bpp)
            if q not in tried:
                bpp_of(q)
            out["results"].append(dict(tried[q], target_bpp=spec.target_bpp))
    if cache is not None:
        cache.close()
    return out


# -- resolving and validating configs (main process, before any work) ---------------------

def resolve_config(config) -> tuple[Any, Any]:
    """Check a config can run here and fill in the codec's defaults (quality, bit depth).
    Returns (resolved config, codec or None). Raises FCMError subclasses."""
    from ..models import load_model
    from ..wrappers import load_wrapper

    model = load_model(config.model)
    if config.split is not None:
        model.split_point(config.split)
        load_wrapper(config.wrapper, config.model, config.split)
    elif config.wrapper not in (None, "", "none"):
        raise ParameterError("wrappers work on split features; full-input (split none) takes no wrapper")
    codec = None
    if config.codec is not None:
        from ..codecs import get_codec

        codec = get_codec(config.codec)
        ok, reason = codec.available()
        if not ok:
            raise CodecUnavailableError(f"codec {config.codec} is not available here: {reason}")
        if config.split is None and not codec.supports_images:
            raise ParameterError(f"{config.codec} codes feature frames only; it cannot code images (full-input)")
        quality = codec.check_quality(config.quality) if config.quality is not None else None
        bit_depth = (config.bit_depth or codec.default_bit_depth()) if config.split is not None else None
        if bit_depth is not None and bit_depth not in codec.bit_depths:
            raise ParameterError(f"{config.codec} codes {', '.join(map(str, codec.bit_depths))}-bit frames, not {bit_depth}-bit")
        config = replace(config, quality=quality, bit_depth=bit_depth)
    else:
        config = replace(config, quality=None, bit_depth=None)
    if config.split is None:
        config = replace(config, quant="tensor", rdo="sse")
    return config, codec


def reference_config(config):
    """The uncompressed reference of a config: same model, split and wrapper, no codec."""
    return replace(config, codec=None, quality=None, bit_depth=None, rdo="sse")


def _config_dict(config) -> dict[str, Any]:
    d = config.to_json()
    d.pop("paradigm", None)
    return d


# -- the engine ---------------------------------------------------------------------------

def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


ProgressFn = Callable[[int, int], None]


def _run_tasks(tasks: list[ImageTask], *, workers: int, scheduler: Any, progress_bar, on_done) -> None:
    """Run tasks serially, on local processes, or on a Dask cluster; ``on_done(output)`` is
    called in the main process as each finishes."""
    if not tasks:
        return
    if scheduler is not None:
        _run_dask(tasks, scheduler, on_done)
    elif workers <= 1 or len(tasks) == 1:
        for task in tasks:
            on_done(process_image(task))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        ctx = multiprocessing.get_context("spawn")  # fork after torch/OpenMP start can hang
        pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker)
        try:
            futures = [pool.submit(process_image, t) for t in tasks]
            for fut in as_completed(futures):
                try:
                    output = fut.result()  # re-raises a worker's error here
                except BrokenProcessPool:
                    raise FCMError("a sweep worker process died (out of memory?); "
                                   "retry with fewer --workers") from None
                on_done(output)
        finally:
            # on an error or Ctrl-C: drop queued tasks; running ones end within one image
            pool.shutdown(wait=True, cancel_futures=True)


def _run_dask(tasks: list[ImageTask], scheduler: Any, on_done) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise FCMError("--scheduler needs dask.distributed: pip install 'dask[distributed]'") from None
    own = not isinstance(scheduler, Client)
    if own:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise FCMError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    else:
        client = scheduler
    try:
        futures = client.map(process_image, tasks, pure=False)
        try:
            for fut in as_completed(futures):
                on_done(fut.result())
        finally:
            client.cancel(futures)
    finally:
        if own:
            client.close()


def evaluate(dataset: Dataset, curves: Sequence[CurveSpec], *, cache: ResultCache | bool | None = True,
             workers: int | None = None, scheduler: Any = None, progress: bool = True,
             progress_callback: ProgressFn | None = None) -> dict[str, Any]:
    """Run ``curves`` (and each one's uncompressed reference) over ``dataset``; return the
    results document described in the module docstring."""
    if not curves:
        raise ParameterError("nothing to sweep: give at least one curve")
    if cache is True:
        try:
            cache = ResultCache()
        except FCMError as exc:
            print(f"warning: {exc}; running without the cache", file=sys.stderr)
            cache = None
    if cache is False:
        cache = None
    version = code_version()  # the core sources as this sweep starts (the cache keys use it too)
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ParameterError(f"--workers must be at least 1, got {workers}")

    # Resolve every curve's points into specs shared across curves (a reference shared by
    # several curves, e.g. same split, runs once).
    specs: list[_Spec] = []
    spec_index: dict[tuple, int] = {}
    quality_specs: dict[str, Any] = {}

    def add(spec: _Spec) -> int:
        k = (tuple(sorted(spec.config.items())), spec.target_bpp)
        if k not in spec_index:
            spec_index[k] = len(specs)
            specs.append(spec)
        return spec_index[k]

    plan = []  # per curve: (name, base config, mode, [(point label, spec idx)], ref idx)
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
                points.append(add(_Spec(_config_dict(cfg))))
            mode = "quality"
        else:
            quality_specs[base.codec] = codec.quality
            for t in curve.target_bpp:
                if not (float(t) > 0):
                    raise ParameterError(f"target bpp must be positive, got {t}")
                points.append(add(_Spec(_config_dict(base), target_bpp=float(t))))
            mode = "target_bpp"
        ref_cfg, _ = resolve_config(reference_config(base))
        plan.append((name, base, mode, points, add(_Spec(_config_dict(ref_cfg)))))

    # Cache look-ups for fixed specs; the rest becomes one task per image.
    hashes: dict[int, str] = {}
    unreadable: dict[int, str] = {}
    for im in dataset.images:
        try:
            hashes[im.id] = im.sha256()
        except InputError as exc:
            unreadable[im.id] = str(exc)
    keys = {(im_id, i): result_key(h, s.config) for im_id, h in hashes.items()
            for i, s in enumerate(specs) if s.target_bpp is None}
    hits = cache.get_many(keys.values()) if cache is not None else {}
    records: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)  # spec idx -> image id -> record
    tasks: list[ImageTask] = []
    task_specs: dict[int, list[int]] = {}  # task id -> spec indices it runs, in order
    cached_runs = 0
    for im in dataset.images:
        if im.id not in hashes:
            continue
        todo = []
        for i, s in enumerate(specs):
            key = keys.get((im.id, i))
            if key is not None and key in hits:
                records[i][im.id] = dict(hits[key], cached=True)
                cached_runs += 1
            else:
                todo.append(i)
        groups: dict[tuple, list[int]] = defaultdict(list)  # one task per edge part
        for i in todo:
            groups[(specs[i].config["model"], specs[i].config["split"])].append(i)
        for group in groups.values():
            task_specs[len(tasks)] = group
            tasks.append(ImageTask(
                task_id=len(tasks), image_id=im.id, path=str(im.path), file_name=im.file_name,
                image_sha256=hashes[im.id], specs=[specs[i] for i in group], keys=[keys.get((im.id, i)) for i in group],
                cache_path=str(cache.path) if cache is not None else None, quality_specs=quality_specs,
            ))

    total = len(hashes) * len(specs)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=cached_runs, desc=f"sweep {dataset.name}", unit="run",
                   file=sys.stderr, dynamic_ncols=True)
    done_runs = cached_runs
    start = time.perf_counter()

    def on_done(out: dict[str, Any]) -> None:
        nonlocal done_runs
        image_id = out["image_id"]
        if out["error"]:
            if image_id not in unreadable:
                msg = f"skipped image {image_id}: {out['error']}"
                (bar.write(msg, file=sys.stderr) if bar else print(msg, file=sys.stderr))
            unreadable[image_id] = out["error"]
        else:
            for i, rec in zip(task_specs[out["task_id"]], out["results"]):
                records[i][image_id] = rec
            if cache is not None and out["new"]:
                cache.put_many(out["new"])
        n = len(task_specs[out["task_id"]])
        done_runs += n
        if bar:
            bar.update(n)
        if progress_callback:
            progress_callback(done_runs, total)

    try:
        _run_tasks(tasks, workers=workers, scheduler=scheduler, progress_bar=bar, on_done=on_done)
    finally:
        if bar:
            bar.close()
    elapsed = time.perf_counter() - start

    image_ids = [im.id for im in dataset.images if im.id not in unreadable]
    if not image_ids:
        raise InputError(f"dataset {dataset.name}: none of its {len(dataset.images)} images could be read")
    # a record of an image that turned out unreadable (other spec from cache) is dropped
    for i in records:
        for bad in unreadable:
            records[i].pop(bad, None)

    summaries: dict[int, dict[str, Any]] = {}
    ref_dets_cache: dict[int, dict[int, list]] = {}

    def ref_detections(ref_idx: int) -> dict[int, list]:
        if ref_idx not in ref_dets_cache:
            ref_dets_cache[ref_idx] = {i: record_detections(records[ref_idx][i]) for i in image_ids}
        return ref_dets_cache[ref_idx]

    def summary(idx: int, ref_idx: int | None) -> dict[str, Any]:
        key = (idx, ref_idx)
        if key in summaries:
            return summaries[key]
        summaries[key] = s = _summarise(dataset, image_ids, specs[idx], records[idx],
                                        ref_detections(ref_idx) if ref_idx is not None else None)
        return s

    out_curves = []
    for name, base, mode, points, ref_idx in plan:
        ref = summary(ref_idx, None)
        ref_doc = {"name": _label(specs[ref_idx].config), **ref}
        pts = [summary(i, ref_idx) for i in points]
        results: dict[str, list] = {
            "bpp": [p["bpp"] for p in pts],
            "mAP": [p["mAP"] for p in pts],
            "mAP50": [p["mAP50"] for p in pts],
            "quality": [p["quality"] for p in pts],
            "mAP_vs_ref": [p["mAP_vs_ref"] for p in pts],
        }
        if mode == "target_bpp":
            results["target_bpp"] = [p["target_bpp"] for p in pts]
        for key in _TASK_METRICS:
            if pts and key in pts[0]:
                results[key] = [p.get(key) for p in pts]
        base_json = base.to_json()
        out_curves.append({"name": name, "config": base_json, "mode": mode, "results": results,
                           "reference": ref_doc, "points": pts})

    from .. import __version__

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
            "runs": total, "cached_runs": cached_runs, "elapsed_s": round(elapsed, 2),
        },
        "skipped": [{"image_id": i, "file_name": dataset.image(i).file_name, "error": e}
                    for i, e in sorted(unreadable.items())],
        "reference": out_curves[0]["reference"],
        "curves": out_curves,
    }


def _label(cfg: dict[str, Any]) -> str:
    from ..pipeline import PipelineConfig

    return PipelineConfig(**{k: v for k, v in cfg.items() if k != "paradigm"}).label()


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _summarise(dataset: Dataset, image_ids: list[int], spec: _Spec, recs: dict[int, dict[str, Any]],
               reference: dict[int, list] | None) -> dict[str, Any]:
    """Metrics of one point (or of a reference when ``reference`` is None)."""
    rows = [recs[i] for i in image_ids]
    dets = {i: record_detections(recs[i]) for i in image_ids}
    point: dict[str, Any] = {}
    qualities = [r["quality"] for r in rows if r["quality"] is not None]
    point["quality"] = (_mean([float(q) for q in qualities]) if spec.target_bpp is not None
                        else (qualities[0] if qualities else None))
    if spec.target_bpp is not None:
        point["target_bpp"] = spec.target_bpp
    point["config"] = dict(spec.config) if spec.target_bpp is None else dict(spec.config, quality=None)
    point["bpp"] = _mean([r["bpp"] for r in rows])
    point["bits_mean"] = _mean([float(r["bits"]) for r in rows])

    dropped = 0
    if dataset.has_annotations:
        results = []
        for i in image_ids:
            entries, n = detections_to_coco(dataset, i, dets[i])
            results += entries
            dropped += n
        m = coco_map(dataset.ground_truth(), results, image_ids)
        point["mAP"], point["mAP50"] = m.mAP, m.mAP50
    if reference is not None:
        mr = map_vs_reference(dets, reference)
        point["mAP_vs_ref"], point["mAP50_vs_ref"] = mr.mAP, mr.mAP50
        point["agreement"] = agreement(dets, reference)
    else:
        point["mAP_vs_ref"], point["mAP50_vs_ref"] = 1.0, 1.0
    if not dataset.has_annotations:
        point["mAP"], point["mAP50"] = point["mAP_vs_ref"], point["mAP50_vs_ref"]
    point["dropped_detections"] = dropped
    stages: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        for k, v in r["timings_ms"].items():
            stages[k].append(v)
    point["timings_ms"] = {k: round(_mean(v), 3) for k, v in stages.items()}
    point.update(_task_summary(dataset, image_ids, rows))
    point["num_images"] = len(rows)
    point["cached_images"] = sum(1 for r in rows if r.get("cached"))
    point["images"] = [
        {"image_id": r["image_id"], "quality": r["quality"], "bits": r["bits"], "bpp": round(r["bpp"], 7),
         "num_detections": len(r["detections"]),
         "num_shown": sum(1 for d in r["detections"] if d[1] >= REFERENCE_SCORE_THRESHOLD),
         "cached": bool(r.get("cached"))}
        for r in rows
    ]
    return point


def _task_summary(dataset: Dataset, image_ids: list[int], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Secondary-task means of one point (pose_oks, cls_top1, cls_top5), {} for detection only."""
    from ..tasks.evaluation import summarise_tasks

    return summarise_tasks(dataset, image_ids, rows)


def run_sweep(dataset: Dataset, config, qualities: Sequence[float] = (), *, target_bpp: Sequence[float] = (),
              name: str | None = None, **kwargs) -> dict[str, Any]:
    """One curve: ``config`` at each quality (or each target rate) plus its reference."""
    return evaluate(dataset, [CurveSpec(config, qualities, target_bpp, name)], **kwargs)


# -- results files ------------------------------------------------------------------------

def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results file (or a bare CompressAI-style curve / list of curves)."""
    import json

    p = Path(path)
    if not p.is_file():
        raise InputError(f"results {p}: no such file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"results {p}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and "curves" in data:
        if data.get("version") != RESULTS_VERSION:
            raise InputError(f"results {p}: version {data.get('version')!r}, this fcm reads version {RESULTS_VERSION}")
        curves = data["curves"]
    elif isinstance(data, dict) and "results" in data:  # a CompressAI plot file
        curves, data = [data], {"version": RESULTS_VERSION, "curves": [data], "reference": None}
    elif isinstance(data, list):
        curves, data = data, {"version": RESULTS_VERSION, "curves": data, "reference": None}
    else:
        raise InputError(f"results {p}: not an fcm results file (no 'curves')")
    for c in curves:
        if not isinstance(c, dict) or "name" not in c or "bpp" not in c.get("results", {}):
            raise InputError(f"results {p}: a curve lacks 'name' or 'results.bpp'")
    return data


def save_results(doc: dict[str, Any], path: str | Path) -> None:
    import json

    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(dumps_results(doc) + "\n", encoding="utf-8")
    tmp.replace(p)


def dumps_results(doc: dict[str, Any]) -> str:
    """Indented JSON, except per-image rows and plain number lists, one line each (small diffs)."""
    import json

    inline: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            if all(not isinstance(v, (dict, list)) for v in node) or all(
                    isinstance(v, dict) and all(not isinstance(x, (dict, list)) for x in v.values()) for v in node):
                if node and all(isinstance(v, dict) for v in node):
                    return [walk_inline(v) for v in node]
                return walk_inline(node)
            return [walk(v) for v in node]
        return node

    def walk_inline(value):
        inline.append(json.dumps(value, separators=(", ", ": ")))
        return f"\x00{len(inline) - 1}\x00"

    text = json.dumps(walk(doc), indent=1)
    import re

    return re.sub(r'"\\u0000(\d+)\\u0000"', lambda m: inline[int(m.group(1))], text)
