"""Rate-accuracy sweeps over a clip or a folder of clips, in the results format ``fcm bdrate``
and ``fcm plot`` read (``{"version": 1, "curves": [{"name", "results": {"bpp", ...}}]}``).

Per curve ``results`` holds, per quality: ``bpp`` (total bits / total decoded pixels),
``kbps`` (total bits / total duration at the clips' rates, after ``--stride``), ``f1``
(agreement with the uncompressed run, counts pooled over frames), ``mAP_vs_ref`` / ``mAP50_vs_ref``
(the uncompressed detections as pseudo ground truth), ``mAP`` / ``mAP50`` (against the
annotation file when given, else the pseudo-GT figures, as the image sweep does) and
``quality``. Each point keeps its per-clip frame bits and per-frame match counts, so that
:func:`bd_rate_interval` can bootstrap BD-rates over frame blocks without re-running.

The unit of work is one (clip, quality) point, plus the uncompressed reference once per
clip (``PointTask``, ``process_point``); units run serially, on local processes or on Dask
(``fcmcore.evaluate.executors``, ``--workers`` / ``--scheduler``), each on one torch thread,
so the results are the same whichever way they ran. A process keeps the clip and heads of
the last clip it worked on, so heads run once per clip and split serially (and once per
worker that gets points of that clip otherwise). Points are
cached (SQLite, ``fcmcore.evaluate.cache.ResultCache``) by clip content, frame selection,
configuration and a hash of the code they depend on (core sources + ``fcmcore/video``).
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import FCMError, InputError, ParameterError
from ..evaluate.bdrate import bd_compare, monotone_front
from ..evaluate.cache import ResultCache
from ..evaluate.executors import run_tasks
from ..evaluate.metrics import REFERENCE_SCORE_THRESHOLD, agreement, map_vs_reference
from ..evaluate.result_key import code_version, wrapper_identity
from ..evaluate.sweep_worker import torch_threads
from ..models.base import Detection
from .clip import VIDEO_SUFFIXES, read_clip
from .metrics import (annotation_map, block_indices, default_block, f1_interval, f1_of, frame_counts,
                      load_video_annotations)
from .run import VideoConfig, compute_heads, reference_detections, run_video, validate

RESULTS_VERSION = 1


def list_clips(path: str | Path) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        clips = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
        if not clips:
            raise InputError(f"{p}: no video clips ({', '.join(VIDEO_SUFFIXES[:6])}, ...) in this folder")
        return clips
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    return [p]


def _clip_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _key(clip_sha: str, selection: dict, config: VideoConfig) -> str:
    wrapped = config.wrapper not in (None, "", "none")
    parts = {"clip": clip_sha, "selection": selection, "config": config.to_json(),
             "wrapper": wrapper_identity(config.wrapper, config.model, config.split) if wrapped else "none",
             "code": code_version(("video", "wrappers") if wrapped else ("video",))}
    return "video:" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _record(result) -> dict[str, Any]:
    return {"frame_bits": list(result.frame_bits), "intra": list(result.intra), "bits": int(result.bits),
            "header_bytes": int(result.header_bytes), "timings_ms": dict(result.timings_ms),
            "detections": [_det_rows(dets) for dets in result.detections]}


def _dets(rows) -> list:
    return [Detection(label=r[6], category_id=int(r[0]), score=float(r[1]), box=tuple(r[2:6])) for r in rows]


@dataclass(frozen=True)
class PointTask:
    """One unit of work: the uncompressed reference of a clip (``config`` None) or one
    (clip, configuration at one quality) point. Picklable: it runs in a worker process or on
    a Dask worker as well as in the main one."""

    task_id: int
    path: str
    clip_sha: str
    start: int
    frames: int | None
    stride: int
    config: VideoConfig | None
    reference: VideoConfig  # whose model and split give the uncompressed run


# The clip and heads of the last clip a worker thread worked on: serial sweeps and workers that
# get several points of one clip decode it and run the heads once, not once per point
# (thread-local: in-process Dask workers are threads of one process).
_MEMO = threading.local()


def _clip_and_heads(task: PointTask, cfg: VideoConfig):
    ident = (task.path, task.clip_sha, task.start, task.frames, task.stride)
    if getattr(_MEMO, "ident", None) != ident:
        _MEMO.ident, _MEMO.clip, _MEMO.heads = None, None, None  # drop the old clip before decoding the next
        _MEMO.clip = read_clip(task.path, start=task.start, frames=task.frames, stride=task.stride)
        _MEMO.heads, _MEMO.ident = {}, ident
    clip, heads = _MEMO.clip, _MEMO.heads
    k = (cfg.model, cfg.split)
    if k not in heads:
        heads[k] = compute_heads(clip, cfg.model, cfg.split)
    return clip, heads[k]


def _det_rows(dets) -> list:
    return [[int(d.category_id), float(d.score), *(float(v) for v in d.box), d.label] for d in dets]


def process_point(task: PointTask) -> dict[str, Any]:
    """Run one unit (see ``PointTask``); {"task_id", "record"} (the record the cache stores)."""
    with torch_threads(1):  # every run on one torch thread: the same numbers serial, local or on Dask
        if task.config is None:
            clip, heads = _clip_and_heads(task, task.reference)
            return {"task_id": task.task_id, "record": {"detections": [_det_rows(d) for d in
                                                                       reference_detections(clip, heads)]}}
        clip, heads = _clip_and_heads(task, task.config)
        return {"task_id": task.task_id, "record": _record(run_video(clip, task.config, heads=heads))}


def video_sweep(path: str | Path, curves: Sequence[tuple[VideoConfig, Sequence[float], str | None]], *,
                start: int = 0, frames: int | None = None, stride: int = 1, annotations: str | None = None,
                cache: bool = True, progress: bool = True, workers: int | None = None, scheduler: Any = None,
                progress_callback: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Every curve (config at each quality) over the clip(s) at ``path``; the results document.
    The unit of work is one (clip, quality) point (plus one reference per clip): serial
    (``workers`` 1, the default), on ``workers`` local processes, or on a Dask ``scheduler``
    (an address or a ``distributed.Client``), as image sweeps run (``evaluate.executors``)."""
    if not curves:
        raise ParameterError("nothing to sweep")
    workers = 1 if workers is None else int(workers)
    if workers < 1:
        raise ParameterError(f"--workers must be at least 1, got {workers}")
    plan = []
    names = set()
    for config, qualities, name in curves:
        base = validate(config.with_quality(None))
        points = []
        for q in qualities:
            cfg = validate(config.with_quality(q))
            if cfg not in points:
                points.append(cfg)
        if not points:
            raise ParameterError("give at least one quality")
        label = name or base.with_quality(None).label()
        if label in names:
            raise ParameterError(f"two curves named {label!r}; give them distinct names")
        names.add(label)
        plan.append((label, base, points))
    clips = list_clips(path)
    if annotations and len(clips) > 1:
        raise ParameterError("--annotations describes one clip; give a single clip with it")
    gt = load_video_annotations(annotations) if annotations else None
    store = None
    if cache:
        try:
            store = ResultCache()
        except FCMError as exc:
            print(f"warning: {exc}; running without the cache", file=sys.stderr)
    selection = {"start": start, "frames": frames, "stride": stride}
    total_runs = len(clips) * sum(len(p) for _, _, p in plan)
    t_start = time.perf_counter()
    ref_cfg = next((b for _, b, _ in plan if b.split is not None), plan[0][1])
    clip_docs, clip_info = [], []
    refs: list[Any] = [None] * len(clips)
    per_point: dict[tuple[int, int, int], dict] = {}  # (clip, curve, point) -> record
    tasks, slots, new_keys = [], {}, {}
    cached = 0
    for ci, clip_path in enumerate(clips):
        sha = _clip_hash(clip_path)
        probe = PointTask(-1, str(clip_path), sha, start, frames, stride, None, ref_cfg)
        clip, _ = _clip_and_heads(probe, VideoConfig(model=ref_cfg.model, split=None))  # frames only
        clip_docs.append(dict(clip.info.to_json(), file=clip_path.name, start=start, stride=stride,
                              num_frames=len(clip.frames), sha256=sha))
        clip_info.append(dict(fps=clip.fps, width=clip.width, height=clip.height, indices=list(clip.indices)))
        ref_key = _key(sha, selection, VideoConfig(model=ref_cfg.model, split=ref_cfg.split, codec="none"))
        hit = store.get(ref_key) if store is not None else None
        if hit is not None:
            refs[ci] = hit
        else:
            slots[len(tasks)] = ("ref", ci)
            new_keys[len(tasks)] = ref_key
            tasks.append(PointTask(len(tasks), str(clip_path), sha, start, frames, stride, None, ref_cfg))
        for k, (_, _, points) in enumerate(plan):
            for j, cfg in enumerate(points):
                key = _key(sha, selection, cfg)
                rec = store.get(key) if store is not None else None
                if rec is not None:
                    per_point[(ci, k, j)] = rec
                    cached += 1
                    continue
                slots[len(tasks)] = ("point", (ci, k, j))
                new_keys[len(tasks)] = key
                tasks.append(PointTask(len(tasks), str(clip_path), sha, start, frames, stride, cfg, ref_cfg))
    done = cached

    def on_done(out: dict[str, Any]) -> None:
        nonlocal done
        kind, where = slots[out["task_id"]]
        if store is not None:
            store.put(new_keys[out["task_id"]], out["record"])
        if kind == "ref":
            refs[where] = out["record"]
            return
        per_point[where] = out["record"]
        done += 1
        if progress:
            print(f"\rsweep: {done}/{total_runs} runs ({cached} cached)", end="", file=sys.stderr)
        if progress_callback:
            progress_callback("sweep", done, total_runs)

    try:
        run_tasks(tasks, workers=workers, scheduler=scheduler, on_done=on_done, fn=process_point)
    finally:
        _MEMO.ident = _MEMO.clip = _MEMO.heads = None
    if progress:
        print(file=sys.stderr)
    elapsed = time.perf_counter() - t_start
    ref_dets = [[_dets(r) for r in refs[ci]["detections"]] for ci in range(len(clips))]
    n_frames = sum(len(r) for r in ref_dets)
    ref_pool = [d for r in ref_dets for d in r]
    fps0 = clip_docs[0]["fps"] / stride
    out_curves = []
    for k, (label, base, points) in enumerate(plan):
        pts = []
        for j, cfg in enumerate(points):
            recs = [dict(per_point[(ci, k, j)], **clip_info[ci]) for ci in range(len(clips))]
            pts.append(_summarise(cfg, recs, ref_pool, gt, fps0))
        results = {m: [p[m] for p in pts] for m in ("bpp", "kbps", "f1", "mAP", "mAP50", "mAP_vs_ref",
                                                     "mAP50_vs_ref", "quality")}
        out_curves.append({"name": label, "config": base.to_json(), "mode": "quality", "results": results,
                           "reference": {"name": "uncompressed", "mAP": 1.0 if gt is None else None,
                                         "mAP50": 1.0 if gt is None else None, "f1": 1.0},
                           "points": pts})
    return {
        "version": RESULTS_VERSION,
        "kind": "video",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "clips": clip_docs,
        "num_frames": n_frames,
        "ground_truth": "annotations" if gt is not None else "uncompressed",
        "settings": {"reference_score_threshold": REFERENCE_SCORE_THRESHOLD, "runs": total_runs,
                     "cached_runs": cached, "elapsed_s": round(elapsed, 2),
                     "workers": workers if scheduler is None else None,
                     "scheduler": None if scheduler is None else str(getattr(scheduler, "scheduler_address",
                                                                             scheduler)),
                     "interval": "95 % circular moving-block bootstrap over frames (1 s blocks)"},
        "reference": out_curves[0]["reference"],
        "curves": out_curves,
    }


def _summarise(cfg: VideoConfig, recs: list[dict], ref_pool: list, gt, fps: float) -> dict[str, Any]:
    dets = [_dets(rows) for r in recs for rows in r["detections"]]
    bits = sum(r["bits"] for r in recs)
    pixels = sum(len(r["frame_bits"]) * r["width"] * r["height"] for r in recs)
    seconds = sum(len(r["frame_bits"]) / r["fps"] for r in recs)
    counts = frame_counts(dets, ref_pool)
    by = {i: d for i, d in enumerate(dets)}
    ref_by = {i: d for i, d in enumerate(ref_pool)}
    agr = agreement(by, ref_by)
    ci = f1_interval(counts, default_block(fps, len(dets)))
    agr["f1_ci"] = list(ci) if ci else None
    m = map_vs_reference(by, ref_by)
    point = {"quality": cfg.quality, "config": cfg.to_json(), "bits": bits, "bpp": bits / pixels,
             "kbps": bits / seconds / 1000.0, "f1": agr["f1"], "agreement": agr,
             "mAP_vs_ref": m.mAP, "mAP50_vs_ref": m.mAP50}
    if gt is not None:
        a = annotation_map(dets, gt, recs[0]["indices"])
        point["mAP"], point["mAP50"] = a["mAP"], a["mAP50"]
    else:
        point["mAP"], point["mAP50"] = m.mAP, m.mAP50
    tim: dict[str, float] = {}
    for r in recs:
        for s, v in r["timings_ms"].items():
            tim[s] = tim.get(s, 0.0) + v
    point["timings_ms"] = {s: round(v, 1) for s, v in tim.items()}
    point["frame_bits"] = [b for r in recs for b in r["frame_bits"]]
    point["intra_frames"] = sum(sum(r["intra"]) for r in recs)
    point["frame_counts"] = counts.tolist()
    point["pixels_per_frame"] = [r["width"] * r["height"] for r in recs for _ in r["frame_bits"]]
    point["block_frames"] = default_block(fps, len(dets))  # the bootstrap block (fcm bdrate reads it)
    return point


def bd_rate_interval(anchor: dict, test: dict, *, block: int, samples: int = 500, seed: int = 0
                     ) -> tuple[float | None, tuple[float, float] | None, int]:
    """BD-rate (%) of ``test`` vs ``anchor`` on pooled F1, with a paired block-bootstrap 95 %
    interval: the same resampled frames for every point of both curves. Returns (estimate,
    interval or None, usable resamples). Curves come from :func:`video_sweep` on the same frames."""
    def curve_at(curve, idx):
        rates, vals = [], []
        for p in curve["points"]:
            fb = np.asarray(p["frame_bits"], dtype=np.float64)
            px = np.asarray(p["pixels_per_frame"], dtype=np.float64)
            c = np.asarray(p["frame_counts"])
            sel = slice(None) if idx is None else idx
            rates.append(float(fb[sel].sum() / px[sel].sum()))
            vals.append(f1_of(c[sel]))
        return monotone_front(curve["name"], rates, vals)

    est = bd_compare(curve_at(anchor, None), curve_at(test, None), "f1").bd_rate
    n = len(anchor["points"][0]["frame_bits"])
    values = []
    for idx in block_indices(n, block, samples, seed):
        r = bd_compare(curve_at(anchor, idx), curve_at(test, idx), "f1").bd_rate
        if r is not None and np.isfinite(r):
            values.append(r)
    if len(values) < samples * 0.5:
        return est, None, len(values)
    return est, (float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))), len(values)
