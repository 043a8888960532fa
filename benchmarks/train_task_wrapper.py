"""Train a wrapper from random weights on the task loss (``fcmcore.wrappers.task_training``).

    python benchmarks/train_task_wrapper.py [--split expanded_conv_9] [--channels 24] [--epochs 10]
        [--augment 2] [--seed 0] --out assets/wrappers/ssd_mobilenet_v2/expanded_conv_9/task.safetensors

The file is a ``learned`` wrapper: use it as ``--wrapper learned:PATH``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fcmcore.errors import FCMError  # noqa: E402
from fcmcore.evaluate import load_dataset  # noqa: E402
from fcmcore.paths import shared_dir  # noqa: E402
from fcmcore.wrappers.task_training import train_task_wrapper  # noqa: E402
from fcmcore.wrappers.wa_loop import WAInLoop  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=str(shared_dir() / "datasets" / "coco96"))
    ap.add_argument("--split", default="expanded_conv_9")
    ap.add_argument("--channels", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--augment", type=int, default=2)
    ap.add_argument("--lam", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wa-in-loop", action="store_true",
                    help="proxy codec with WA-RDO's per-block steps (fcmcore.wrappers.wa_loop), weights per epoch")
    ap.add_argument("--wa-weights", default="spatial", choices=["channel", "spatial", "both"])
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    command = "python benchmarks/train_task_wrapper.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("/"))
    try:
        wa = WAInLoop(weights=args.wa_weights) if args.wa_in_loop else None
        c0 = time.process_time()
        w = train_task_wrapper(load_dataset(Path(args.dataset)), "ssd_mobilenet_v2", args.split, args.channels,
                               epochs=args.epochs, augment=args.augment, lam=args.lam, seed=args.seed,
                               command=command, wa_in_loop=wa)
        w.meta["total_cpu_seconds"] = round(time.process_time() - c0, 1)
        w.save(args.out)
    except FCMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} (CPU {w.meta['total_cpu_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
