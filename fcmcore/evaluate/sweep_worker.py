"""The per-image work of a sweep (runs in a worker process, or in the main one when serial).

An ``ImageTask`` holds every run of one image that shares an edge part (same model and split):
the head runs once, then each spec (a resolved config, or a config + target rate found by
bisection) is coded and detected. A run that fails (codec error, timeout, anything the codec
library raises) is reported in ``failed`` with its quality and message and the others go on:
one bad point never sinks a sweep. What one run leaves is a *record* (also what the cache
stores): bits, bpp, size, timings, detections.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from .. import pipeline  # called as pipeline.run_*: one place to patch (tests count the runs)
from ..errors import FCMError, InputError
from ..imageio import MAX_BYTES, decode_image_bytes, read_regular_file
from ..models.base import Detection
from ..pipeline import PipelineConfig
from ..tasks.evaluation import record_tasks
from .cache import ResultCache
from .equal_rate import bisect_quality
from .result_key import result_key


@dataclass(frozen=True)
class RunSpec:
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
    specs: list[RunSpec]
    keys: list[str | None]  # cache key per fixed spec (None for target specs)
    cache_path: str | None = None  # read by workers during bisection
    quality_specs: dict[str, Any] = field(default_factory=dict)  # codec -> QualitySpec (bisection)


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
    return record_tasks(result)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def valid_record(record: Any) -> bool:
    """Whether a cached record has the layout ``record_from_result`` writes (types, finite
    numbers, 7-field detections). The cache's checksum catches damage; this catches records
    of another layout, so a cached value can never raise KeyError/TypeError later."""
    try:
        return (isinstance(record, dict)
                and all(isinstance(record[k], int) and not isinstance(record[k], bool) and record[k] >= 0
                        for k in ("image_id", "bits", "width", "height", "header_bytes"))
                and _number(record["bpp"]) and record["bpp"] >= 0
                and (record["quality"] is None or _number(record["quality"]))
                and (record["bits_estimated"] is None or _number(record["bits_estimated"]))
                and isinstance(record["timings_ms"], dict) and all(map(_number, record["timings_ms"].values()))
                and isinstance(record["detections"], list)
                and all(isinstance(d, list) and len(d) == 7 and all(map(_number, d[:6])) and isinstance(d[6], str)
                        for d in record["detections"]))
    except KeyError:
        return False


def record_detections(record: dict[str, Any]) -> list:
    """The record's detections as ``Detection`` objects."""
    return [Detection(label=row[6], category_id=int(row[0]), score=float(row[1]), box=tuple(row[2:6]))
            for row in record["detections"]]


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def init_worker() -> None:
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, FCMError) else f"{type(exc).__name__}: {text}"


def process_image(task: ImageTask) -> dict[str, Any]:
    """Run every spec of ``task`` on its image. Returns {"task_id", "image_id", "error" (the
    image could not be read), "results": [record or None per spec], "failed": [{"spec",
    "quality", "target_bpp", "error"}], "new": [(key, record)] freshly computed (for the cache)}."""
    out: dict[str, Any] = {"task_id": task.task_id, "image_id": task.image_id, "error": None,
                           "results": [], "failed": [], "new": []}
    try:
        data = read_regular_file(task.path, MAX_BYTES, label=task.file_name)
        image = decode_image_bytes(data, task.file_name)
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

    def compute(cfg: dict[str, Any], key: str | None) -> dict[str, Any]:
        if cache is not None and key is not None:
            hit = cache.get(key)
            if hit is not None and valid_record(hit):
                return dict(hit, cached=True)
        config = PipelineConfig(**{k: v for k, v in cfg.items() if k != "paradigm"})
        hk = (config.model, config.split)
        if hk not in heads:
            heads[hk] = pipeline.run_head(image, config.model, config.split)
        record = record_from_result(pipeline.run_from_head(heads[hk], config), task.image_id)
        if key is not None:
            out["new"].append((key, record))
        return dict(record, cached=False)

    with torch_threads(1):
        for n, (spec, key) in enumerate(zip(task.specs, task.keys)):
            try:
                if spec.target_bpp is None:
                    out["results"].append(compute(spec.config, key))
                    continue
                tried: dict[float, dict[str, Any]] = {}

                def bpp_of(q: float, spec: RunSpec = spec, tried=tried) -> float:
                    cfg = dict(spec.config, quality=float(q))
                    tried[q] = compute(cfg, result_key(task.image_sha256, cfg))
                    return tried[q]["bpp"]

                q = bisect_quality(task.quality_specs[spec.config["codec"]], bpp_of, spec.target_bpp)
                if q not in tried:
                    bpp_of(q)
                out["results"].append(dict(tried[q], target_bpp=spec.target_bpp))
            except Exception as exc:  # one failing run (codec error, timeout) must not sink the sweep
                out["results"].append(None)
                out["failed"].append({"spec": n, "quality": spec.config.get("quality"),
                                      "target_bpp": spec.target_bpp, "error": _message(exc)})
    if cache is not None:
        cache.close()
    return out
