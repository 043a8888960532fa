"""Full-image PSNR and bits of two codecs at equal QP: does "QP" mean the same distortion?

    python benchmarks/psnr_equal_qp.py DATASET --codecs hevc,vvc --qualities 51,46,40,32 --limit 6

Per codec and QP: mean bpp (bits = bytes x 8 / pixels) and mean RGB PSNR (8-bit scale) of the
decoded images vs the originals, over the first LIMIT images of DATASET (sorted by id, as
`fcm sweep --limit`). Explains a BD-rate on detection mAP by the plain rate-distortion
behaviour of the encoders: fewer bits at equal QP with lower PSNR means the QP scales differ.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fcmcore.codecs import get_codec  # noqa: E402
from fcmcore.evaluate.datasets import load_dataset  # noqa: E402
from fcmcore.imageio import decode_image_bytes  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--codecs", default="hevc,vvc")
    p.add_argument("--qualities", default="51,46,40,32")
    p.add_argument("--limit", type=int, default=6)
    a = p.parse_args()
    ds = load_dataset(a.dataset, None, a.limit)
    images = [np.asarray(decode_image_bytes(im.path.read_bytes(), im.file_name).convert("RGB")) for im in ds.images]
    qs = [int(q) for q in a.qualities.split(",")]
    rows = []
    start = time.perf_counter()
    for name in a.codecs.split(","):
        codec = get_codec(name)
        for q in qs:
            bpp, ps = [], []
            for img in images:
                data = codec.encode_image(img, q)
                out = codec.decode_image(data, img.shape[:2])
                bpp.append(len(data) * 8 / (img.shape[0] * img.shape[1]))
                ps.append(psnr(img, out))
            rows.append({"codec": name, "qp": q, "bpp": float(np.mean(bpp)), "psnr_rgb": float(np.mean(ps))})
            print(f"{name:10s} QP {q:3d}: {rows[-1]['bpp']:.4f} bpp, PSNR {rows[-1]['psnr_rgb']:.2f} dB")
    print(f"{len(images)} images, {time.perf_counter() - start:.1f} s")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
