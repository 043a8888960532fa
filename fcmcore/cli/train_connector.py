"""``fcm train-connector``: distil a connector from the detector's split to a task network."""

from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
import time
from pathlib import Path

import torch

from ..errors import ParameterError
from ..paths import cache_dir, portable
from ..training import cached_bank as cached


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-connector",
        help="train a connector from the detector's split tensor to a pose / classification network",
        description="Distil a small connector (target network frozen, its features and outputs on the "
        "original image as teachers, proxy-codec noise on the input) on the dataset's train images.",
    )
    p.add_argument("--dataset", required=True, help="COCO-style dataset folder (train images: datasplit)")
    p.add_argument("--split", default="expanded_conv_9", help="detector split the connector reads")
    p.add_argument("--task", required=True, choices=["pose", "classification"])
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.add_argument("--model", default="ssd_mobilenet_v2", help="detector")
    p.add_argument("--target", default=None, help="task network layer to feed (default: fpn / blocks_11)")
    p.add_argument("--kind", default="conv", choices=["conv", "linear"],
                   help="conv: the trained connector; linear: resize + least-squares 1x1 map (the naive baseline)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--augment", type=int, default=3, help="random views per train image")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--hidden", type=int, default=96, help="connector channels before the resize")
    p.add_argument("--mid", type=int, default=None, help="connector channels after the resize (default: hidden)")
    p.add_argument("--blocks", type=int, default=0,
                   help="inverted-residual blocks on the input grid before the resize (a deeper connector)")
    p.add_argument("--no-skip", action="store_true",
                   help="no least-squares linear path (the connector learns the whole map)")
    p.add_argument("--extra", action="append", default=[], metavar="PATH",
                   help="unlabelled training images: an image, a folder of images or a video (repeatable)")
    p.add_argument("--extra-views", type=int, default=1, help="random views per unlabelled image")
    p.add_argument("--frame-step", type=int, default=10, help="every N-th frame of an --extra video")
    p.add_argument("--output-weight", type=float, default=1.0,
                   help="weight of the output-distillation term against the feature term (0: features only)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train_connector)


def cached_bank(args: argparse.Namespace, target: str):
    """The training bank, kept in the result cache: the conv connector and the linear
    baseline are fitted on the very same views, and a re-run skips the slow part."""
    # why: on use (fcm --help stays light)
    from ..tasks.training import TaskBank, build_bank

    parts = [Path(args.dataset).resolve(), args.task, target, args.model, args.split, args.augment, args.seed, 1]
    if args.extra:  # banks without unlabelled images keep their old key
        parts += [*(Path(e).resolve() for e in args.extra), args.extra_views, args.frame_step]
    key = "|".join(map(str, parts))
    path = cache_dir() / "connector-banks" / (hashlib.sha256(key.encode()).hexdigest()[:20] + ".pt")

    def build() -> dict:
        # why: on use (fcm --help stays light)
        from ..evaluate.datasets import load_dataset

        bank = build_bank(load_dataset(args.dataset), args.task, target, args.model, args.split, args.augment,
                          args.seed, log=lambda m: print(m, file=sys.stderr), extra=args.extra,
                          extra_views=args.extra_views, frame_step=args.frame_step)
        return vars(bank)

    # tensors and plain data only: a cached bank never unpickles code; damaged or of another layout: rebuilt
    state, hit = cached(path, build, accept=lambda st: set(st) == set(TaskBank.__dataclass_fields__),
                        on_stale=lambda why: print(f"warning: cached bank {path.name} not usable ({why}); rebuilding",
                                                   file=sys.stderr))
    if hit:
        print(f"bank: cached {path.name}", file=sys.stderr)
    return TaskBank(**state)


def cmd_train_connector(args: argparse.Namespace) -> int:
    # why: on use (fcm --help stays light)
    from ..tasks import connectors
    from ..tasks.training import default_target, meta_for, train_connector

    for name in ("epochs", "augment", "batch", "hidden", "blocks", "extra_views", "frame_step"):
        if getattr(args, name) < (0 if name in ("augment", "blocks", "extra_views") else 1):
            raise ParameterError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    target = args.target or default_target(args.task)
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    print(f"bank: {args.dataset} train images + {args.augment} views each, {args.model} @ {args.split} -> "
          f"{args.task} @ {target}", file=sys.stderr)
    bank = cached_bank(args, target)
    module, info = train_connector(bank, args.task, target, kind=args.kind, epochs=args.epochs, batch=args.batch,
                                   lr=args.lr, hidden=args.hidden, mid=args.mid, blocks=args.blocks,
                                   skip=not args.no_skip, output_weight=args.output_weight,
                                   seed=args.seed,
                                   log=lambda m: print(m, file=sys.stderr))
    argv = ["fcm", "train-connector", "--dataset", portable(args.dataset), "--split", args.split, "--task", args.task,
            "--out", portable(args.out), "--kind", args.kind, "--target", target, "--epochs", str(args.epochs),
            "--augment", str(args.augment), "--hidden", str(args.hidden)]
    if args.mid:
        argv += ["--mid", str(args.mid)]
    if args.blocks:
        argv += ["--blocks", str(args.blocks)]
    if args.no_skip:
        argv += ["--no-skip"]
    for e in args.extra:
        argv += ["--extra", portable(e)]
    if args.extra:
        argv += ["--extra-views", str(args.extra_views), "--frame-step", str(args.frame_step)]
    argv += ["--batch", str(args.batch), "--lr", f"{args.lr:g}"]
    argv += ["--output-weight", f"{args.output_weight:g}", "--seed", str(args.seed)]
    extra = {"cpu_seconds": round(time.process_time() - cpu0, 1), "wall_seconds": round(time.perf_counter() - wall0, 1),
             "torch_threads": torch.get_num_threads(), "size_bytes": connectors.size_bytes(module), **info}
    meta = meta_for(args.task, target, args.model, args.split, args.kind, bank, args.seed, shlex.join(argv),
                    args.dataset, extra)
    path = connectors.save(module, meta, args.out)
    print(f"saved {path} ({extra['size_bytes']:,} bytes, {extra['cpu_seconds']:.0f} CPU s)")
    return 0
