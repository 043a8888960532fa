"""``fcm sweep --folds K`` flags (the driver: ``fcmcore.evaluate.kfold``). Kept apart from it so
that building the parser imports no evaluation code."""

from __future__ import annotations

import argparse


def add_kfold_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("k-fold (trained wrappers and learned codecs)")
    g.add_argument("--folds", type=int, default=None, metavar="K",
                   help="retrain the configuration's trained part (fitted wrapper or learned codec) K times, each "
                        "time without one of K seeded folds of the images, and score every image with the model "
                        "that did not see it: one curve over all images (weights in the cache dir)")
    g.add_argument("--fold-seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    g.add_argument("--fold-epochs", type=int, default=None,
                   help="training budget per fold: epochs (learned wrapper; learned codec: its first model)")
    g.add_argument("--fold-finetune-epochs", type=int, default=None,
                   help="learned codec: epochs of each warm-started model, per fold")
    g.add_argument("--fold-max-steps", type=int, default=None, help="learned codec: optimiser steps cap per model")
