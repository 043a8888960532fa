"""Exports: column results (JSON, CSV), RD curves in the CompressAI plot schema (JSON, CSV),
and the ``fcm detect`` command line that reproduces a column."""

from __future__ import annotations

import csv
import io
import shlex
from typing import Any

from fcmcore.pipeline import PipelineConfig, PipelineResult


def cli_command(config: PipelineConfig, entry, result: PipelineResult | None = None) -> str:
    """``fcm detect`` with every option that shapes the column's result (quality resolved to
    the value actually used when the result is known)."""
    quality = result.quality if result is not None and result.quality is not None else config.quality
    parts = ["fcm", "detect", entry.cli_path, "--model", config.model,
             "--split", config.split if config.split is not None else "none"]
    if config.codec:
        parts += ["--codec", config.codec]
        if quality is not None:
            parts += ["--quality", f"{float(quality):g}"]
    if config.bit_depth is not None:
        parts += ["--bits", str(config.bit_depth)]
    if config.split is not None and config.quant != "tensor":
        parts += ["--quant", config.quant]
    if config.wrapper and config.wrapper != "none":
        parts += ["--wrapper", config.wrapper]
    if config.rdo != "sse":
        parts += ["--rdo", config.rdo]
    return " ".join(shlex.quote(p) for p in parts)


def column_records(outcomes, shown) -> list[dict[str, Any]]:
    """One JSON record per column: ``PipelineResult.to_json()`` plus the column, the image,
    the match against the uncompressed run and the command line."""
    rows = []
    for o in outcomes:
        record = {"column": o.letter, "image": shown.entry.name, "image_sha256": shown.entry.sha,
                  "label": o.config.label()}
        record.update(o.result.to_json())
        if o.match is not None:
            record["vs_uncompressed"] = o.match.counts
        record["command"] = cli_command(o.config, shown.entry, o.result)
        rows.append(record)
    return rows


CSV_FIELDS = ["column", "image", "label", "model", "paradigm", "split", "codec", "quality", "wrapper", "bits", "bpp",
              "compression_ratio", "header_bytes", "matched", "missed", "false", "detections", "total_ms", "command"]


def columns_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        flat = dict(r)
        flat.update(r.get("vs_uncompressed", {}))
        flat["detections"] = "; ".join(f"{d['label']} {d['score']:.2f}" for d in r["detections"])
        flat["total_ms"] = r["timings_ms"].get("total")
        writer.writerow(flat)
    return buf.getvalue()


def compressai_curves(rd_doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The curves as CompressAI's plot schema: ``[{"name", "description", "results": {"bpp": [...], metric: [...]}}]``
    (``fcm plot`` / ``fcm bdrate`` read these too)."""
    source = rd_doc["source"]
    where = source if isinstance(source, str) else ", ".join(source)
    out = []
    for c in rd_doc["curves"]:
        results = {k: v for k, v in c["results"].items() if isinstance(v, list)}
        out.append({"name": c["name"], "description": f"{c['name']} on {where}; accuracy axis {rd_doc['metric']}",
                    "results": results})
    return out


def curves_csv(rd_doc: dict[str, Any]) -> str:
    buf = io.StringIO()
    metrics = ["mAP", "mAP50", "mAP_vs_ref", "f1"]
    writer = csv.writer(buf)
    writer.writerow(["curve", "quality", "bpp", *metrics])
    for c in rd_doc["curves"]:
        res = c["results"]
        for i, bpp in enumerate(res["bpp"]):
            writer.writerow([c["name"], res.get("quality", [None] * len(res["bpp"]))[i], bpp,
                             *[(res.get(m) or [None] * len(res["bpp"]))[i] for m in metrics]])
    return buf.getvalue()
