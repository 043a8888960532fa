"""Evaluation: datasets, COCO mAP, sweeps, BD-rate, charts, a result cache.

    from fcmcore.evaluate import load_dataset, run_sweep
    from fcmcore.pipeline import PipelineConfig

    ds = load_dataset("../shared/datasets/coco96", limit=8)
    doc = run_sweep(ds, PipelineConfig(split="expanded_conv_9", codec="hevc"), [27, 37, 47])
    doc["curves"][0]["results"]  # {"bpp": [...], "mAP": [...], "mAP50": [...], "quality": [...]}

Modules: ``datasets`` (COCO folders, image folders), ``metrics`` (pycocotools mAP, per-image
box matching, agreement with the uncompressed run), ``sweep`` (the engine: serial, local
processes or Dask; the results-file format), ``equal_rate`` (quality per image for a target
rate), ``bdrate`` (Bjøntegaard deltas on mAP), ``cache`` (SQLite result cache), ``charts``
(Altair; imported on first use). Its commands are ``fcmcore.cli.evaluate`` (``fcm sweep/layers``) and ``fcmcore.cli.compare`` (``fcm bdrate/plot``).
"""

from __future__ import annotations

from .bdrate import BDResult, bd_table, monotone_front
from .cache import ResultCache
from .result_key import result_key
from .datasets import Dataset, ImageRecord, detections_to_coco, load_dataset
from .equal_rate import bisect_quality, quality_for_rate
from .metrics import MapResult, MatchResult, agreement, box_iou, coco_map, map_vs_reference, match_detections
from .sweep import (CurveSpec, evaluate, load_results, record_detections, reference_config, run_sweep,
                    save_results)

_CHARTS = {"rd_chart", "bd_chart", "layers_chart", "save_chart"}


def __getattr__(name: str):  # charts pull in altair/pandas: only when asked for
    if name in _CHARTS:
        from . import charts  # why: Altair and pandas are heavy; charts load on first use

        return getattr(charts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BDResult", "CurveSpec", "Dataset", "ImageRecord", "MapResult", "MatchResult", "ResultCache",
    "agreement", "bd_table", "bisect_quality", "box_iou", "coco_map", "detections_to_coco", "evaluate",
    "load_dataset", "load_results", "map_vs_reference", "match_detections", "monotone_front",
    "quality_for_rate", "record_detections", "reference_config", "result_key", "run_sweep", "save_results",
    *sorted(_CHARTS),
]
