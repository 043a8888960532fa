"""What every trainer shares: feature banks, augmentation, the proxy codec, resumable state.

The three trainers (``learned.train``: learned codecs, ``wrappers.training``: wrappers,
``tasks.training``: connectors) all learn from the same kind of data:

    dataset --(datasplit: sorted by id, every 4th image val)--> train / val images
    train image --augment(recipe, seeded rng)--> plain view + N random views
    each view --extractor (the model's public API: preprocess + head)--> bank tensors
    bank --(trainer-specific layout, loss, optimiser)--> weights
    epoch end --save_train_state (checkpoints.py, weights_only)--> resumable checkpoint

This package holds the shared steps; each trainer keeps only its own layout, loss and
optimiser. It builds on ``models`` (the public ``SplitModel`` API) and the foundations,
never on learned/wrappers/tasks/evaluate.
"""

from .augment import RECIPES, augment
from .bank import cached_bank, collect_views, feature_extractor, log_every, single_tensor, train_val_records
from .proxy import BITS_RANGE, proxy_noise, proxy_step, random_bits
from .state import restore_train_state, save_train_state

__all__ = [
    "RECIPES", "augment", "cached_bank", "collect_views", "feature_extractor", "log_every", "single_tensor",
    "train_val_records", "BITS_RANGE", "proxy_noise", "proxy_step", "random_bits",
    "restore_train_state", "save_train_state",
]
