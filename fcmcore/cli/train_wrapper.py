"""``fcm train-wrapper``: fit (pca, truncate) or train (learned) a wrapper on a dataset's
training images and save it as one safetensors file (+ a readable ``.json`` copy of its
metadata)."""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from ..errors import ParameterError
from ..paths import portable
from ..wrappers.fitted import RDO_WEIGHT_MODES
from ..wrappers.importance import WEIGHT_KINDS, WEIGHT_TARGETS
from ..wrappers.training import LOSSES, METHODS, train_wrapper
from ..wrappers.wa_loop import WAInLoop

_WA_DEFAULTS = {"wa_weights": "spatial", "wa_target": "task", "wa_strength": 1.0, "wa_tile_pad": 8, "wa_probes": 1,
                "wa_images": 24}


def wa_in_loop_of(args: argparse.Namespace) -> WAInLoop | None:
    """The ``--wa-in-loop`` options as a ``WAInLoop`` (validated), None without the flag;
    a ``--wa-*`` option given without ``--wa-in-loop`` is an error, not silently ignored."""
    if not getattr(args, "wa_in_loop", False):
        given = [k for k, v in _WA_DEFAULTS.items() if getattr(args, k, v) != v]
        if given:
            raise ParameterError(f"--{given[0].replace('_', '-')} applies only with --wa-in-loop")
        return None
    return WAInLoop(weights=args.wa_weights, target=args.wa_target, strength=args.wa_strength,
                    tile_pad=args.wa_tile_pad, probes=args.wa_probes, images=args.wa_images)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-wrapper",
        help="fit or train a wrapper (learned, pca, truncate) on a dataset's training images",
        description="Fit a wrapper on the training images of DATASET (every 4th image by id is held out "
        "for validation), estimate its WA-RDO importance weights and save it to OUT (.safetensors). "
        "Use it with --wrapper METHOD:OUT.",
    )
    p.add_argument("--dataset", required=True, help="COCO-style folder (images/ + instances.json) or an image folder")
    p.add_argument("--model", default="ssd_mobilenet_v2", help="detector (default ssd_mobilenet_v2)")
    p.add_argument("--split", required=True, help="split point (a single-tensor split, e.g. expanded_conv_9)")
    p.add_argument("--channels", "-k", dest="k", type=int, required=True, help="coded channels k")
    p.add_argument("--method", default="learned", choices=METHODS, help="wrapper kind (default learned)")
    p.add_argument("--loss", default="deep", choices=LOSSES,
                   help="learned only: distortion at the split, at prediction map 0, or on detector outputs")
    p.add_argument("--seed", type=int, default=0, help="random seed (augmentation, init, probes)")
    p.add_argument("--epochs", type=int, default=12, help="learned only: training epochs (default 12)")
    p.add_argument("--augment", type=int, default=4, help="learned only: augmented views per training image")
    p.add_argument("--down", type=int, default=1, choices=[1, 2], help="learned only: spatial down-sampling")
    p.add_argument("--hidden", type=int, default=64, help="learned only: hidden channels")
    p.add_argument("--lam", type=float, default=0.01, help="learned only: rate weight lambda")
    p.add_argument("--rdo-weights", default="task", choices=RDO_WEIGHT_MODES,
                   help="importance weights --rdo wa uses: fixed (saved) per target, or image-<target> per image")
    g = p.add_argument_group("WA-RDO in the training loop (learned only)")
    g.add_argument("--wa-in-loop", action="store_true",
                   help="train through a proxy codec that allocates its quantisation as --rdo wa-qp will: each "
                   "block's step scaled by 2^(dQP/6), dQP = -3 S log2(w/GM), with the weights re-estimated from the "
                   "current post-wrapper every epoch (recorded in the wrapper's meta as wa_in_loop)")
    g.add_argument("--wa-weights", default="spatial", choices=WEIGHT_KINDS,
                   help="with --wa-in-loop: the weight kind the encoder will use (default spatial)")
    g.add_argument("--wa-target", default="task", choices=WEIGHT_TARGETS,
                   help="with --wa-in-loop: where importance is measured (default task)")
    g.add_argument("--wa-strength", type=float, default=1.0, help="with --wa-in-loop: offset strength S (default 1)")
    g.add_argument("--wa-tile-pad", type=int, default=8, help="with --wa-in-loop: --tile-pad at coding time (8 or 16)")
    g.add_argument("--wa-probes", type=int, default=1, help="with --wa-in-loop: Hutchinson probes per re-estimate")
    g.add_argument("--wa-images", type=int, default=24,
                   help="with --wa-in-loop: training images per re-estimate (a new subset every epoch)")
    p.add_argument("--out", required=True, help="output file (.safetensors)")
    p.set_defaults(func=cmd_train_wrapper)


def cmd_train_wrapper(args: argparse.Namespace) -> int:
    # why: on use (fcm --help stays light)
    from ..evaluate.datasets import load_dataset

    if not args.out.endswith(".safetensors"):
        raise ParameterError("--out must end with .safetensors")
    wa = wa_in_loop_of(args)  # why: before the features are extracted, so a bad value fails at once
    if wa is not None and args.method != "learned":
        raise ParameterError(f"--wa-in-loop trains a learned wrapper; --method {args.method} is fitted in closed form")
    torch.set_num_threads(1)
    # Recorded with the weights; paths made portable so no machine's location is stored.
    command = "fcm " + shlex.join(portable(a) for a in sys.argv[1:]) if sys.argv and "train-wrapper" in sys.argv else ""
    wrapper = train_wrapper(load_dataset(args.dataset), args.model, args.split, args.k, method=args.method, loss=args.loss,
                            seed=args.seed, epochs=args.epochs, augment=args.augment, down=args.down,
                            hidden=args.hidden, lam=args.lam, rdo_weights=args.rdo_weights, command=command,
                            log=lambda m: print(m, file=sys.stderr, flush=True), wa_in_loop=wa)
    path = wrapper.save(args.out)
    print(f"saved {args.method} wrapper ({args.k} of {wrapper.channels_in} channels) to {path}; "
          f"use --wrapper {args.method}:{path}")
    return 0
