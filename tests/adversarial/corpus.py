"""Hostile inputs for the adversarial tests, all made at test time (nothing binary is checked in).

Each maker writes into a folder the test gives it and returns what the test needs:
a weights file that runs code when unpickled, forged and mutated feature bitstreams,
damaged result caches, special files (FIFO, devices, /proc) and hostile COCO datasets.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from fcmcore.byteio import encode_varint


# -- weights ------------------------------------------------------------------------------

class _WritesMarker:
    """Unpickling this object runs ``exec``: the classic pickle payload."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def plant_pickle_weights(path: Path, marker: Path) -> Path:
    """A ``.pth`` that looks like a state dict but writes ``marker`` if it is unpickled."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"backbone.weight": torch.zeros(2), "evil": _WritesMarker(marker)}, path)
    return path


# -- feature bitstreams -------------------------------------------------------------------

def forged_stream(c: int, h: int, w: int, payload: bytes, *, version: int, name: str = "x",
                  bit_depth: int = 8) -> bytes:
    """A feature container declaring one (1, c, h, w) tensor coded as ``payload``, sealed
    with a correct checksum from version 2 on: what a deliberate forger sends."""
    nb = name.encode()
    head = bytes([version, bit_depth]) + encode_varint(1) + bytes([len(nb)]) + nb + bytes([2])
    head += encode_varint(c) + encode_varint(h) + encode_varint(w)
    head += np.array([0.0, 1.0], dtype="<f2").tobytes() + encode_varint(len(payload))
    body = head + payload
    if version >= 2:
        import zlib

        body += struct.pack("<I", zlib.crc32(body))
    return body


def reseal(data: bytes) -> bytes:
    """``data`` with its trailing CRC-32 recomputed (a forged header that passes the checksum)."""
    import zlib

    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def big_flat_png(side: int) -> bytes:
    """A PNG of one flat ``side`` x ``side`` 8-bit plane: tiny on disk, huge decoded."""
    buf = io.BytesIO()
    Image.new("L", (side, side), 7).save(buf, "PNG", optimize=True)
    return buf.getvalue()


# -- result caches ------------------------------------------------------------------------

def overwrite_pages(path: Path, first_page: int = 1, pages: int = 3, page_size: int = 4096) -> None:
    """Overwrite whole database pages with junk, as a failing disk or a stray write would."""
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for p in range(first_page, min(first_page + pages, len(data) // page_size)):
        data[p * page_size:(p + 1) * page_size] = rng.integers(0, 256, page_size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def wrong_columns_cache(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE results (key TEXT PRIMARY KEY, answer INTEGER)")
    con.execute("INSERT INTO results VALUES ('k', 42)")
    con.commit()
    con.close()


def poison_records(path: Path, mutate) -> int:
    """Rewrite every stored record with ``mutate(record)`` (recompressing it as the cache
    does, but without knowing any checksum). Returns the number of records changed."""
    import zlib

    con = sqlite3.connect(path)
    rows = con.execute("SELECT key, value FROM results").fetchall()
    for key, value in rows:
        rec = json.loads(zlib.decompress(value))
        con.execute("UPDATE results SET value = ? WHERE key = ?",
                    (zlib.compress(json.dumps(mutate(rec)).encode()), key))
    con.commit()
    con.close()
    return len(rows)


def set_raw_records(path: Path, raw: bytes) -> None:
    con = sqlite3.connect(path)
    con.execute("UPDATE results SET value = ?", (raw,))
    con.commit()
    con.close()


# -- special files ------------------------------------------------------------------------

def special_files(folder: Path) -> dict[str, Path]:
    """Paths that are not regular files (or lie about their size), by what they are."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    fifo = folder / "fifo.jpg"
    os.mkfifo(fifo)
    out["fifo"] = fifo
    out["dev_zero"] = Path("/dev/zero")
    out["dev_urandom"] = Path("/dev/urandom")
    out["proc_mem"] = Path("/proc/self/mem")
    zero_link = folder / "zero.jpg"
    zero_link.symlink_to("/dev/zero")
    out["symlink_to_dev_zero"] = zero_link
    loop = folder / "loop.jpg"
    loop.symlink_to(loop)
    out["symlink_loop"] = loop
    sparse = folder / "sparse.jpg"
    with open(sparse, "wb") as f:
        f.truncate(300 * 1024 * 1024)  # 300 MB of holes: refused by size, not read
    out["sparse_300mb"] = sparse
    out["folder"] = folder
    return out


# -- datasets -----------------------------------------------------------------------------

def _jpeg(path: Path) -> None:
    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(path, "JPEG")


def coco_dataset(root: Path, *, images=None, annotations=None, extra_files=()) -> Path:
    """A small COCO folder (images/ + instances.json) with the given entries."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    _jpeg(root / "images" / "a.jpg")
    for name in extra_files:
        _jpeg(root / "images" / name)
    data = {
        "images": images if images is not None else [{"id": 1, "file_name": "a.jpg", "width": 48, "height": 40}],
        "annotations": annotations if annotations is not None else
        [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 12], "area": 120, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "person"}],
    }
    (root / "instances.json").write_text(json.dumps(data))  # json writes NaN / Infinity literals
    return root


def hostile_datasets(base: Path) -> dict[str, Path]:
    """One COCO folder per defect; every one must be refused with one clear line."""
    base.mkdir(parents=True, exist_ok=True)
    outside = base / "outside.jpg"
    _jpeg(outside)
    ann = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 12]}]
    out = {
        "width_wide": coco_dataset(base / "width_wide", images=[{"id": 1, "file_name": "a.jpg", "width": "wide", "height": 40}]),
        "height_negative": coco_dataset(base / "height_negative", images=[{"id": 1, "file_name": "a.jpg", "width": 48, "height": -4}]),
        "bbox_nan": coco_dataset(base / "bbox_nan", annotations=[dict(ann[0], bbox=[float("nan"), 2, 10, 12])]),
        "bbox_inf": coco_dataset(base / "bbox_inf", annotations=[dict(ann[0], bbox=[1, 2, float("inf"), 12])]),
        "area_nan": coco_dataset(base / "area_nan", annotations=[dict(ann[0], area=float("nan"))]),
        "bbox_negative": coco_dataset(base / "bbox_negative", annotations=[dict(ann[0], bbox=[1, 2, -10, 12])]),
        "dotdot": coco_dataset(base / "dotdot", images=[{"id": 1, "file_name": "../../outside.jpg"}]),
        "etc_hostname": coco_dataset(base / "etc_hostname", images=[{"id": 1, "file_name": "../../../../../../../../etc/hostname"}]),
        "absolute": coco_dataset(base / "absolute", images=[{"id": 1, "file_name": str(outside)}]),
    }
    link_root = coco_dataset(base / "symlink_out", images=[{"id": 1, "file_name": "b.jpg"}])
    (link_root / "images" / "b.jpg").symlink_to(outside)
    out["symlink_out"] = link_root
    plain = base / "plain_symlink_out"
    plain.mkdir()
    _jpeg(plain / "a.jpg")
    (plain / "b.jpg").symlink_to(outside)
    out["plain_symlink_out"] = plain
    fifo_ds = coco_dataset(base / "fifo_image", images=[{"id": 1, "file_name": "f.jpg"}])
    os.mkfifo(fifo_ds / "images" / "f.jpg")
    out["fifo_image"] = fifo_ds
    ann_fifo = coco_dataset(base / "fifo_annotations")
    (ann_fifo / "instances.json").unlink()
    os.mkfifo(ann_fifo / "instances.json")
    out["fifo_annotations"] = ann_fifo
    return out
