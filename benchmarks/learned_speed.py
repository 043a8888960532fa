"""Learned codecs' split pipeline vs the plain detector, before/after the fast coders, one run.

    python benchmarks/learned_speed.py [--image PATH] [--repeats 7] [--codecs factorized,hyperprior,context,scar]
        [--clock cpu|wall]

For each learned codec (middle quality): the plain detector, the split pipeline as the
project runs it (``fcmcore.pipeline.run``: head, encode, decode, tail; the fast coders of
``fcmcore.learned.fastcoding``), and the same pipeline with the coding done the way it was
before them (``rans.PlainEncoder``/``PlainDecoder``: CompressAI's looped ``build_indexes``, the
full CDF table handed to rANS on every pass, a second entropy-model pass for the
estimate, and the encoder MACs counted by a hooked encode on every run, as the pipeline
asked for them). Both produce the same bytes (tests/test_learned_scar.py). Medians of
``--repeats`` runs; ratios to the detector's median in the same run. ``--clock cpu``
(default) measures process CPU time, which a machine shared with other jobs distorts less
than wall time; one torch thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _timing  # benchmarks/_timing.py (this script's folder is on sys.path)
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLE = REPO / "assets" / "samples" / "astronaut.jpg"


def main(argv=None) -> int:
    from fcmcore.codecs import get_codec
    from fcmcore.imageio import load_image
    from fcmcore.learned.rans import PlainDecoder, PlainEncoder
    from fcmcore.models import load_model
    from fcmcore.pipeline import PipelineConfig, run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default=str(SAMPLE))
    ap.add_argument("--split", default="expanded_conv_9")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--codecs", default="factorized,hyperprior,context,scar")
    ap.add_argument("--clock", default="cpu", choices=["cpu", "wall"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    def median_ms(fn) -> float:
        return _timing.median_ms(fn, args.repeats, clock=clock)

    image = load_image(args.image)
    model = load_model("ssd_mobilenet_v2")
    with torch.inference_mode():
        plain = median_ms(lambda: model.detect(image))
    print(f"{args.clock} clock, torch threads {torch.get_num_threads()}, repeats {args.repeats}")
    print(f"plain detector: {plain:.1f} ms (1.00x)")

    def before(codec, q):
        """The pre-fastcoding pipeline: head, legacy encode + second estimate pass, legacy decode, tail."""
        with torch.inference_mode():
            x, meta = model.preprocess(image)
            feats = model.head(x, args.split)
            net = codec._net(q)
            f = feats[args.split]
            net.encoder_macs(*f.shape[-2:])  # uncached, as before
            h, w = f.shape[-2:]
            enc = PlainEncoder(net._require_tables())
            y = net.analysis(net.normalize(f))
            net.code(enc, y, h, w)
            net.denormalize(net.synthesis(y, h, w))  # the encoder-side reconstruction it returned
            stream = enc.finish()
            net.estimate_bits(f)
            dec = PlainDecoder(net._require_tables(), stream + bytes(1 << 16))
            y_hat = net.code(dec, None, h, w)
            out = {args.split: net.denormalize(net.synthesis(y_hat, h, w))}
            return model.tail(out, args.split, meta)

    print(f"{'codec':11s} {'before ms':>9s} {'ratio':>6s} {'after ms':>9s} {'ratio':>6s}")
    for name in [c for c in args.codecs.split(",") if c]:
        codec = get_codec(name)
        if not codec.available()[0]:
            print(f"{name:11s} unavailable: {codec.available()[1]}")
            continue
        q = int(codec.quality.default)
        config = PipelineConfig(split=args.split, codec=name, quality=q)
        old = median_ms(lambda: before(codec, q))
        new = median_ms(lambda: run(image, config))
        print(f"{name:11s} {old:9.1f} {old / plain:5.2f}x {new:9.1f} {new / plain:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
