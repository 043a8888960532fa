"""Cached calls into fcmcore. Nothing here computes anything fcmcore does not.

Shared across sessions (immutable values): models (``st.cache_resource``), the head output of
each (image, model, split) and the result of each (image, configuration). Moving a quality
slider therefore re-runs only the codec and the tail of that one column.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import streamlit as st
from PIL import Image

from fcmcore.errors import FCMError
from fcmcore.imageio import load_image
from fcmcore.models import list_models, load_model
from fcmcore.pipeline import HeadOutput, PipelineConfig, PipelineResult, run_from_head, run_head
from fcmcore.tasks import connectors
from fcmcore.tasks.secondary import overlay
from fcmcore.wrappers import list_wrappers


# -- catalog: what can be picked ------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def model_names() -> list[str]:
    return list_models()


@st.cache_resource(show_spinner="Loading the detector…")
def model(name: str):
    return load_model(name)


def split_points(model_name: str) -> list[dict[str, Any]]:
    """The model's split points (``SplitPoint.to_json``); raises FCMError if the model cannot load."""
    return [sp.to_json() for sp in model(model_name).split_points()]


@st.cache_resource(show_spinner=False)
def codec_table() -> dict[str, dict[str, Any]]:
    """name -> ``FrameCodec.to_json()`` (availability checked once per process)."""
    from fcmcore.codecs import list_codecs

    return {c.name: c.to_json() for c in list_codecs()}


@st.cache_resource(show_spinner=False)
def wrapper_names() -> list[str]:
    return list_wrappers()


def wrappers_with_weights(model_name: str, split: str | None) -> list[str]:
    """The wrappers usable at ``split``: ``none``, plus those with a bundled weights file there."""
    from fcmcore.wrappers import default_path

    names = wrapper_names()
    if split is None:
        return ["none"]
    return [n for n in names if n == "none" or default_path(n, model_name, split).is_file()]


@st.cache_resource(max_entries=8, show_spinner=False)
@st.cache_data(show_spinner=False)
def connector_available(task: str, model_name: str, split: str | None) -> bool:
    return split is not None and connectors.available(task, model_name, split)


def wrapper(name: str, model_name: str, split: str):
    from fcmcore.wrappers import load_wrapper

    return load_wrapper(name, model_name, split)


# -- images ---------------------------------------------------------------------------------
@st.cache_resource(max_entries=32, show_spinner=False)
def decoded_image(sha: str, name: str, _data: bytes) -> Image.Image:
    """``load_image`` of the bytes (InputError for anything unusable; errors are not cached)."""
    return load_image(_data, name=name)


# -- the pipeline ---------------------------------------------------------------------------
@st.cache_resource(max_entries=24, show_spinner=False)
def head(sha: str, model_name: str, split: str | None, _image: Image.Image) -> HeadOutput:
    """The edge part up to the split, once per (image, model, split)."""
    model(model_name)  # the model through the resource cache (spinner on first load)
    return run_head(_image, model_name, split)


def config_key(config: PipelineConfig) -> tuple:
    return dataclasses.astuple(config)


@st.cache_resource(max_entries=128, show_spinner=False)
def _result(sha: str, key: tuple, _head: HeadOutput, _config: PipelineConfig) -> PipelineResult:
    return run_from_head(_head, _config)


def result(sha: str, image: Image.Image, config: PipelineConfig) -> PipelineResult:
    """Codec + tail for ``config`` on top of the cached head output."""
    h = head(sha, config.model, config.split, image)
    return _result(sha, config_key(config), h, config)


def wa_mode(config: PipelineConfig) -> str:
    """The wrapper-aware mode compared with SSE in the bit-allocation view (spatial weights:
    per-block QP offsets, ``wa-qp``)."""
    if config.wa_weights != "channel":
        return "wa-qp"
    return config.rdo if config.rdo in ("wa", "wa-qp") else "wa"


def anchor_mode(config: PipelineConfig) -> str:
    """SSE through the same encoder path as ``wa_mode``: ``sse-qp`` for ``wa-qp``."""
    return "sse-qp" if wa_mode(config) == "wa-qp" else "sse"


def mode_config(config: PipelineConfig, mode: str) -> PipelineConfig:
    """``config`` coded with RDO ``mode``; the strength only applies to the WA modes (the SSE
    anchor is the same encoder with no offsets at all)."""
    return dataclasses.replace(config, rdo=mode, wa_strength=config.wa_strength if mode in ("wa", "wa-qp") else 1.0)


def bit_allocation(sha: str, image: Image.Image, config: PipelineConfig) -> dict[str, Any]:
    """Same configuration with SSE RDO (same encoder path) and with its WA mode, both measuring
    bits per channel (cached like any result), plus the wrapper's importance weights: per
    channel, and per QP block of the packed frame (``blocks``: weight, WA's QP offset and
    each run's squared error per block)."""
    import torch

    from fcmcore.pipeline import weights_for

    runs = {mode: result(sha, image, dataclasses.replace(mode_config(config, mode), bits_per_channel=True))
            for mode in (anchor_mode(config), wa_mode(config))}
    w = wrapper(config.wrapper, config.model, config.split)
    h = head(sha, config.model, config.split, image)
    with torch.no_grad():
        reduced = w.pre(h.features)
    wa_config = mode_config(config, wa_mode(config))
    channel = weights_for(w, reduced, dataclasses.replace(wa_config, wa_weights="channel")) or {}
    full = {}
    if config.wa_weights != "channel":
        full = weights_for(w, reduced, wa_config) or {}
    blocks = _block_maps(runs, reduced, wa_config, channel, full)
    return {"runs": runs, "weights": {k: [float(x) for x in v] for k, v in channel.items()}, "blocks": blocks}


BLOCK = 8  # x265's QP groups (``HEVCCodec.roi_block``)


def _block_maps(runs, reduced, wa_config, channel, full) -> dict[str, dict[str, Any]]:
    """Per tensor: 2-D per-block arrays over the packed frame (weight, QP offset of the WA
    run, squared error of each run)."""
    import numpy as np

    from fcmcore.coding.rdo import block_means
    from fcmcore.packing import pad_tiles, tile_channels

    out: dict[str, dict[str, Any]] = {}
    for tensor, t in reduced.items():
        k = t.shape[-3]
        if tensor in full:
            wmap = np.asarray(full[tensor], dtype=np.float64)
            if wmap.ndim == 2:
                wmap = np.broadcast_to(wmap, (k, *wmap.shape))
        elif tensor in channel:
            wmap = np.repeat(np.asarray(channel[tensor], dtype=np.float64), t.shape[-2] * t.shape[-1]).reshape(
                k, t.shape[-2], t.shape[-1])
        else:
            continue
        frame_w = tile_channels(pad_tiles(wmap, wa_config.tile_pad), fill=np.nan)
        entry: dict[str, Any] = {"weight": block_means(np.nan_to_num(frame_w, nan=0.0), BLOCK), "error": {}}
        wm = entry["weight"]
        used = wm > 0  # unused tiles of the grid carry no weight and keep offset 0
        logw = np.log2(np.where(used, wm, 1.0))
        entry["qp_offset"] = np.where(used, np.clip(-3.0 * wa_config.wa_strength * (logw - logw[used].mean()), -12, 12), 0.0)
        for mode, res in runs.items():
            orig, dec = (res.frames or {}).get(tensor), (res.decoded_frames or {}).get(tensor)
            if orig is not None and dec is not None and orig.shape == dec.shape:
                entry["error"][mode] = block_means((orig.astype(np.float64) - dec) ** 2, BLOCK)
        out[tensor] = entry
    return out


def bits_per_block(sha: str, image: Image.Image, config: PipelineConfig) -> dict[str, dict[str, Any]]:
    """Leave-one-out bits of every 8x8 block of the packed frame, SSE and WA runs (one encode
    per block each: seconds)."""
    import torch

    from fcmcore.pipeline import make_coder, weights_for

    w = wrapper(config.wrapper, config.model, config.split)
    h = head(sha, config.model, config.split, image)
    out: dict[str, dict[str, Any]] = {}
    with torch.no_grad():
        reduced = w.pre(h.features)
    for mode in (anchor_mode(config), wa_mode(config)):
        cfg = mode_config(config, mode)
        coder = make_coder(cfg, reduced)
        weights = weights_for(w, reduced, cfg) if coder.uses_channel_weights else None
        enc = coder.encode(reduced, coder.check_quality(cfg.quality), channel_weights=weights)
        for tensor, bits in coder.measure_bits_per_block(enc, BLOCK).items():
            out.setdefault(tensor, {})[mode] = bits
    return out


def reference(sha: str, image: Image.Image, model_name: str) -> PipelineResult:
    """The uncompressed, uncut detector on the original image: what every column is compared with."""
    return result(sha, image, PipelineConfig(model=model_name, split=None, codec=None, wrapper="none"))


def error_message(exc: BaseException) -> str:
    """One line for ``st.error``: the FCMError's own message, else a labelled bug report."""
    if isinstance(exc, FCMError):
        return str(exc)
    return f"Unexpected error ({type(exc).__name__}: {exc}). This is a bug in FCM Studio; the rest of the page still works."


# -- sweeps (rate-accuracy curves) ----------------------------------------------------------
SWEEP_POINTS = 7
HARSH_FRACTION = 0.7  # the second default column: this far from the default towards the worst quality


def harsh_quality(codec: dict[str, Any]) -> float:
    """A quality well towards the low-rate end of the codec's range (from its own spec):
    interpolated linearly on integer scales, geometrically on wide real-valued ones."""
    lo, hi = (float(v) for v in codec["quality_range"])
    default = float(codec["default_quality"])
    worst = lo if codec["higher_is_better"] else hi
    if lo.is_integer() and hi.is_integer() and default.is_integer():
        return float(round(default + HARSH_FRACTION * (worst - default)))
    if lo > 0 and hi / lo > 100:
        return float(f"{default * (worst / default) ** HARSH_FRACTION:.3g}")
    return float(f"{default + HARSH_FRACTION * (worst - default):.3g}")


def sweep_qualities(codec: dict[str, Any], n: int = SWEEP_POINTS) -> tuple[float, ...]:
    """A grid over the codec's range, from a little better than its default to its worst
    setting, where detection falls off, plus the two qualities of the default columns. Geometric spacing for wide real-valued ranges (e.g. a
    target bpp), even spacing otherwise; whole numbers for integer scales."""
    import numpy as np

    lo, hi = (float(v) for v in codec["quality_range"])
    default = float(codec["default_quality"])
    best, worst = (hi, lo) if codec["higher_is_better"] else (lo, hi)
    start = default + 0.4 * (best - default)
    integer = lo.is_integer() and hi.is_integer() and default.is_integer()
    if not integer and lo > 0 and hi / lo > 100:
        grid = np.geomspace(start, worst, n)
    else:
        grid = np.linspace(start, worst, n)
    grid = np.append(grid, [default, harsh_quality(codec)])  # the default columns' points lie on the curve
    if integer:
        return tuple(sorted({float(q) for q in np.round(grid)}))
    return tuple(sorted({float(f"{q:.3g}") for q in grid}))


def images_dataset(items: list[tuple[str, str, bytes, str | None]]):
    """(sha, name, bytes, sample path or None) per image -> an unannotated fcmcore Dataset."""
    from pathlib import Path

    from fcmcore.evaluate.datasets import Dataset, ImageRecord

    from . import uploads

    records = [ImageRecord(id=i + 1, file_name=name, path=Path(sample) if sample else uploads.file_for(sha, name, data))
               for i, (sha, name, data, sample) in enumerate(items)]
    return Dataset(name="selected images", root=records[0].path.parent, images=records)


def _run_curve(dataset, config: PipelineConfig, qualities: tuple[float, ...], what: str) -> dict[str, Any]:
    from fcmcore.evaluate.sweep import CurveSpec, evaluate

    bar = st.progress(0.0, text=f"Sweeping {what}…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Sweeping {what}: {done}/{total} runs")

    try:
        return evaluate(dataset, [CurveSpec(config.with_quality(None), qualities)], cache=True, workers=1,
                        progress=False, progress_callback=progress)
    finally:
        bar.empty()


@st.cache_data(show_spinner=False, max_entries=64)
def sweep_images(image_keys: tuple[str, ...], key: tuple, qualities: tuple[float, ...],
                 _items: list, _config: PipelineConfig) -> dict[str, Any]:
    """One RD curve (fcmcore.evaluate's results document) over the selected images.
    Cached per (images, configuration, qualities); fcmcore's result cache makes repeats cheap too."""
    return _run_curve(images_dataset(_items), _config, qualities, f"{_config.label()} on {len(image_keys)} image(s)")


def dataset_choices() -> dict[str, str]:
    """Server-side datasets the browser may pick by name: ``shared_dir()/datasets/*`` folders."""
    from fcmcore.paths import shared_dir

    root = shared_dir() / "datasets"
    if not root.is_dir():
        return {}
    return {p.name: str(p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}


@st.cache_data(show_spinner=False, max_entries=32)
def sweep_dataset(name: str, limit: int, key: tuple, qualities: tuple[float, ...], _config: PipelineConfig) -> dict[str, Any]:
    from fcmcore.evaluate.datasets import load_dataset

    path = dataset_choices().get(name)
    if path is None:
        raise FCMError(f"dataset {name!r} is not one of the server's datasets")
    dataset = load_dataset(path, limit=limit)
    return _run_curve(dataset, _config, qualities, f"{_config.label()} on {name} ({len(dataset)} images)")


# -- warm-up and rates shown beside qualities ------------------------------------------------
@st.cache_resource(show_spinner="Loading the detector and warming it up…")
def warm(model_name: str) -> float:
    """Load the model and run the whole pipeline once on a small image, so the first column's
    timings are warm ones (a cold first run measured 879 ms of head vs 18 ms warm). Returns
    the warm-up time in ms."""
    import time

    import numpy as np

    from fcmcore.pipeline import DEFAULT_CODEC, DEFAULT_SPLIT, run

    start = time.perf_counter()
    model(model_name)
    image = Image.fromarray(np.full((96, 128, 3), 127, np.uint8))
    try:
        run(image, PipelineConfig(model=model_name, split=DEFAULT_SPLIT, codec=DEFAULT_CODEC))
    except FCMError:  # e.g. a model without that split: loading it was the main cost anyway
        pass
    return (time.perf_counter() - start) * 1000


@st.cache_resource(show_spinner=False)
def learned_stream_bytes(codec_name: str) -> dict[int, float] | None:
    """A learned codec's mean stream bytes per model index on its validation images."""
    from fcmcore.codecs import get_codec
    from fcmcore.inspect import typical_stream_bytes

    return typical_stream_bytes(get_codec(codec_name))


@st.cache_data(show_spinner=False, max_entries=256)
def operating_point(image_keys: tuple[str, ...], key: tuple, _images: list, _config: PipelineConfig) -> dict[str, Any]:
    """A column's (bpp, F1, mAP vs reference) on the sidebar's images, against the same
    reference as its curve's sweep; once per (images, configuration)."""
    from fcmcore.evaluate.sweep import reference_config, resolve_config
    from fcmcore.inspect import operating_point as measure

    resolved, _ = resolve_config(_config)
    ref_cfg, _ = resolve_config(reference_config(resolved.with_quality(None)))
    results = [result(sha, image, _config) for sha, image in _images]
    refs = [result(sha, image, ref_cfg) for sha, image in _images]
    point = measure(results, refs)
    return {"bpp": point["bpp"], "f1": point["f1"], "mAP_vs_ref": point["mAP_vs_ref"]}


@st.cache_resource(max_entries=64, show_spinner=False)
def picture(sha: str, key: tuple, threshold: float, columns: int, _image: Image.Image, _res: PipelineResult,
            _match) -> Image.Image:
    """The column's picture with its boxes (drawn once per image, configuration, threshold and
    number of columns: label size follows the column width)."""
    import numpy as np

    from . import draw

    rgb = _res.decoded_image if _res.decoded_image is not None else np.asarray(_image)
    pose = task_overlay(_res).get("pose")
    return draw.detections_image(rgb, [d for d, _, _ in _match.matched], _match.false, _match.missed, columns=columns,
                                 pose=pose)


def task_overlay(res: PipelineResult) -> dict[str, Any]:
    """What to draw and list for the run's secondary tasks (empty when it served none)."""
    outcomes = res.extra.get("tasks") or {}
    return overlay(outcomes) if outcomes else {}
