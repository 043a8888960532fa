"""Rate-accuracy sweeps over a clip or a folder of clips, in the results format ``fcm bdrate``
and ``fcm plot`` read (``{"version": 1, "curves": [{"name", "results": {"bpp", ...}}]}``).

Per curve ``results`` holds, per quality: ``bpp`` (total bits / total decoded pixels),
``kbps`` (total bits / total duration at the clips' rates, after ``--stride``), ``f1``
(agreement with the uncompressed run, counts pooled over frames), ``mAP_vs_ref`` / ``mAP50_vs_ref``
(the uncompressed detections as pseudo ground truth), ``mAP`` / ``mAP50`` (against the
annotation file when given, else the pseudo-GT figures, as the image sweep does) and
``quality``. Each point keeps its per-clip frame bits and per-frame match counts, so that
:func:`bd_rate_interval` can bootstrap BD-rates over frame blocks without re-running.

Heads run once per clip and split; the uncompressed reference once per clip. Points are
cached (SQLite, ``fcmcore.evaluate.cache.ResultCache``) by clip content, frame selection,
configuration and a hash of the code they depend on (core sources + ``fcmcore/video``).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import FCMError, InputError, ParameterError
from ..evaluate.bdrate import bd_compare, monotone_front
from ..evaluate.cache import ResultCache
from ..evaluate.metrics import REFERENCE_SCORE_THRESHOLD, agreement, map_vs_reference
from ..evaluate.result_key import code_version
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
    parts = {"clip": clip_sha, "selection": selection, "config": config.to_json(),
             "code": code_version(("video",))}
    return "video:" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _record(result) -> dict[str, Any]:
    return {"frame_bits": list(result.frame_bits), "intra": list(result.intra), "bits": int(result.bits),
            "header_bytes": int(result.header_bytes), "timings_ms": dict(result.timings_ms),
            "detections": [[[int(d.category_id), float(d.score), *(float(v) for v in d.box), d.label]
                            for d in dets] for dets in result.detections]}


def _dets(rows) -> list:
    return [Detection(label=r[6], category_id=int(r[0]), score=float(r[1]), box=tuple(r[2:6])) for r in rows]


def video_sweep(path: str | Path, curves: Sequence[tuple[VideoConfig, Sequence[float], str | None]], *,
                start: int = 0, frames: int | None = None, stride: int = 1, annotations: str | None = None,
                cache: bool = True, progress: bool = True,
                progress_callback: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Every curve (config at each quality) over the clip(s) at ``path``; the results document."""
    if not curves:
        raise ParameterError("nothing to sweep")
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
    done = cached = 0
    t_start = time.perf_counter()
    clip_docs, refs, per_point = [], [], {}  # per_point[(curve idx, point idx)] = [record per clip]
    for ci, clip_path in enumerate(clips):
        clip = read_clip(clip_path, start=start, frames=frames, stride=stride)
        sha = _clip_hash(clip_path)
        clip_docs.append(dict(clip.info.to_json(), file=clip_path.name, start=start, stride=stride,
                              num_frames=len(clip.frames), sha256=sha))
        heads_by_split: dict[tuple, Any] = {}

        def heads_for(cfg: VideoConfig):
            k = (cfg.model, cfg.split)
            if k not in heads_by_split:
                heads_by_split[k] = compute_heads(clip, cfg.model, cfg.split)
            return heads_by_split[k]

        ref_cfg = next((b for _, b, _ in plan if b.split is not None), plan[0][1])
        ref_key = _key(sha, selection, VideoConfig(model=ref_cfg.model, split=ref_cfg.split, codec="none"))
        hit = store.get(ref_key) if store is not None else None
        if hit is None:
            hit = {"detections": [[[int(d.category_id), float(d.score), *(float(v) for v in d.box), d.label]
                                   for d in dets] for dets in reference_detections(clip, heads_for(ref_cfg))]}
            if store is not None:
                store.put(ref_key, hit)
        refs.append([_dets(r) for r in hit["detections"]])
        for k, (_, _, points) in enumerate(plan):
            for j, cfg in enumerate(points):
                key = _key(sha, selection, cfg)
                rec = store.get(key) if store is not None else None
                if rec is None:
                    rec = _record(run_video(clip, cfg, heads=heads_for(cfg)))
                    if store is not None:
                        store.put(key, rec)
                else:
                    cached += 1
                rec = dict(rec, fps=clip.fps, width=clip.width, height=clip.height, indices=list(clip.indices))
                per_point.setdefault((k, j), []).append(rec)
                done += 1
                if progress:
                    print(f"\rsweep: {done}/{total_runs} runs ({cached} cached)", end="", file=sys.stderr)
                if progress_callback:
                    progress_callback("sweep", done, total_runs)
        heads_by_split.clear()
    if progress:
        print(file=sys.stderr)
    elapsed = time.perf_counter() - t_start
    n_frames = sum(len(r) for r in refs)
    ref_pool = [d for r in refs for d in r]
    fps0 = clip_docs[0]["fps"] / stride
    out_curves = []
    for k, (label, base, points) in enumerate(plan):
        pts = [_summarise(cfg, per_point[(k, j)], ref_pool, gt, fps0) for j, cfg in enumerate(points)]
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
