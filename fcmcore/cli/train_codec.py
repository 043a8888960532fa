"""``fcm train-codec`` and ``fcm train-direct``: train the learned codecs (see ``train``/``direct``)."""

from __future__ import annotations

import argparse

from ..errors import ParameterError


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ParameterError(f"--lambdas must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ParameterError("--lambdas is empty")
    return values


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ParameterError(f"expected comma-separated integers, got {text!r}") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="COCO folder (images/ + instances.json); train part only is used")
    p.add_argument("--model", default="ssd_mobilenet_v2")
    p.add_argument("--split", default="expanded_conv_9", help="split point (single-tensor splits)")
    p.add_argument("--lambdas", required=True, help="comma-separated rate-distortion trade-offs, one model each")
    p.add_argument("--epochs", type=int, default=None, help="epochs from scratch (first model)")
    p.add_argument("--finetune-epochs", type=int, default=None, help="epochs of each warm-started model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", type=int, default=12, help="augmented copies of each train image in the bank")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", required=True, help="output folder (weights, manifest, checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-codec", help="train a learned feature codec (factorized, hyperprior, context)",
                       description="Train one CompressAI feature codec per lambda on a split's features "
                                   "(loss: bits per feature value + lambda * MSE).")
    _common(p)
    p.add_argument("--arch", required=True, choices=["factorized", "hyperprior", "context", "scar"])
    p.add_argument("--loss", default="feature", choices=["feature", "deep", "task"],
                   help="MSE at the split (feature), at --deep-layer through the frozen remainder (deep), or the "
                        "detector's outputs distilled: class-score KL + box smooth-L1 vs the uncompressed run "
                        "+ 0.1 feature MSE (task, the wrappers' task distortion)")
    p.add_argument("--deep-layer", default="expanded_conv_12", help="layer for --loss deep (a stage name or map0)")
    p.add_argument("--lambda-scale", type=float, default=None,
                   help="distortion weight = lambda * this (default per loss, so that the same lambdas give "
                        "about the same rates: see fcmcore/learned/train.py LAMBDA_SCALE)")
    p.add_argument("--channels", default=None, help="N,M,Nh transform/latent/hyper widths (default 64,64,64)")
    p.add_argument("--groups", default=None, help="context channel groups, summing to M (default 8,8,16,32)")
    p.add_argument("--down", type=int, default=1, choices=[1, 2], help="spatial downsampling of the analysis transform")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate (warm-started models use half)")
    p.add_argument("--init", default=None,
                   help="trained codec folder: each lambda starts from its model of the same lambda (parameters "
                        "with matching names; context -> scar shares hyperprior, transforms and LRP) and is "
                        "trained --epochs at half the learning rate")
    p.add_argument("--max-steps", type=int, default=None, help="cap on the optimiser steps of each lambda")
    p.add_argument("--init-new-lr", type=float, default=1.0,
                   help="with --init: learning-rate factor of the parameters the init codec does not have "
                        "(scar's transformer context)")
    p.add_argument("--init-freeze-steps", type=int, default=0,
                   help="with --init: optimiser steps during which the copied parameters (transforms, "
                        "hyperprior, LRP, gains) stay fixed while the new ones train")
    p.add_argument("--init-heads", action="store_true",
                   help="with --init --arch scar: start the new heads at the init codec's per-channel latent "
                        "Gaussian instead of scale 1, mean 0")
    p.set_defaults(func=cmd_train_codec)

    d = sub.add_parser("train-direct", help="train the direct-coding student (image -> coded split latent)",
                       description="Distil a light student (image -> split tensor), then fine-tune its "
                                   "latent and entropy model per lambda, starting from a trained hyperprior codec.")
    _common(d)
    d.add_argument("--init", default=None,
                   help="hyperprior codec folder to start each lambda from (default assets/learned/hyperprior)")
    d.add_argument("--distill-epochs", type=int, default=None,
                   help="epochs of the student distillation (default 10; 0 for --student full: it is the head)")
    d.add_argument("--student", default="thin", choices=["thin", "full", "light"],
                   help="thin: the detector's blocks with thinned expansions (default); full: the detector's "
                        "blocks with their own weights and widths (= the head: model splitting + a learned codec); "
                        "light: a depthwise stack from scratch")
    d.add_argument("--keep", type=float, default=0.5,
                   help="thin student: fraction of expansion channels kept, in (0, 1] (1.0 = --student full)")
    d.add_argument("--distill-layer", default=None,
                   help="take the distillation loss and the codec's distortion at this later layer (a stage "
                        "name or map0) through the frozen detector remainder, instead of at the split")
    d.add_argument("--joint", action="store_true",
                   help="per lambda, fine-tune the student together with the codec (rate + lambda x distortion); "
                        "each quality gets its own student")
    d.add_argument("--max-steps", type=int, default=None, help="cap on the optimiser steps of each lambda")
    d.add_argument("--init-student", default=None,
                   help="direct weights folder whose student (same architecture) starts the distillation")
    d.add_argument("--loss", default=None, choices=["feature", "deep", "task"],
                   help="the codec's distortion while it is fine-tuned (and with --joint, the student's): as "
                        "train-codec --loss, against the teacher's split features (default: the distillation's, "
                        "at --distill-layer or the split)")
    d.add_argument("--deep-layer", default=None,
                   help="layer for --loss deep (default --distill-layer, else expanded_conv_12)")
    d.add_argument("--lambda-scale", type=float, default=None,
                   help="with --loss: distortion weight = lambda * this (default per loss, as train-codec)")
    d.set_defaults(func=cmd_train_direct)


def cmd_train_codec(args: argparse.Namespace) -> int:
    # why: on use (fcm --help stays light)
    from ..evaluate.datasets import load_dataset
    from ..learned.train import TrainConfig, command_line, train_codec  # why: needs CompressAI (optional)

    kw = {}
    if args.channels:
        n, m, nh = _ints(args.channels)
        kw.update(N=n, M=m, Nh=nh)
    if args.groups:
        kw["groups"] = _ints(args.groups)
    if args.epochs is not None:
        kw["epochs"] = args.epochs
    if args.finetune_epochs is not None:
        kw["finetune_epochs"] = args.finetune_epochs
    cfg = TrainConfig(dataset=args.dataset, split=args.split, arch=args.arch, lambdas=_floats(args.lambdas),
                      out=args.out, loss=args.loss, deep_layer=args.deep_layer, seed=args.seed, model=args.model,
                      variants=args.variants, batch_size=args.batch_size, resume=args.resume, threads=args.threads,
                      down=args.down, lr=args.lr, init=args.init, max_steps=args.max_steps,
                      lambda_scale=args.lambda_scale, init_new_lr=args.init_new_lr, init_freeze_steps=args.init_freeze_steps,
                      init_heads=args.init_heads, **kw)
    manifest = train_codec(cfg, load_dataset(args.dataset), progress=not args.quiet, command=command_line())
    _print_summary(manifest)
    return 0


def cmd_train_direct(args: argparse.Namespace) -> int:
    # why: on use (fcm --help stays light)
    from ..evaluate.datasets import load_dataset
    from ..learned.direct_training import DirectTrainConfig, train_direct  # why: needs CompressAI (optional)
    from ..learned.train import command_line  # why: needs CompressAI (optional)

    kw = {}
    for name in ("epochs", "finetune_epochs", "distill_epochs"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    cfg = DirectTrainConfig(dataset=args.dataset, split=args.split, lambdas=_floats(args.lambdas), out=args.out,
                            init=args.init, seed=args.seed, model=args.model, variants=args.variants,
                            batch_size=args.batch_size, resume=args.resume, threads=args.threads,
                            student=args.student, keep=args.keep, distill_layer=args.distill_layer,
                            joint=args.joint, max_steps=args.max_steps, init_student=args.init_student,
                            loss=args.loss, deep_layer=args.deep_layer, lambda_scale=args.lambda_scale, **kw)
    manifest = train_direct(cfg, load_dataset(args.dataset), progress=not args.quiet, command=command_line())
    _print_summary(manifest)
    return 0


def _print_summary(manifest: dict) -> None:
    print(f"{manifest['arch']} @ {manifest['model']}:{manifest['split']}  "
          f"train CPU {manifest['train_cpu_s']:.0f} s")
    for q in manifest["qualities"]:
        val = q.get("val") or {}
        print(f"  q{q['quality']}  lambda={q['lambda']:<8g} {q['size_bytes'] / 1e6:.2f} MB  "
              f"val {val.get('bits_per_value', float('nan')):.3f} bits/value  "
              f"mse {val.get('mse_norm', float('nan')):.4f}")
