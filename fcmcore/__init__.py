"""fcmcore: feature coding for machines — split a detector, code its features, measure."""

__version__ = "0.1.0"

import warnings as _warnings

# CompressAI decorates functions with torch.jit.script, which torch 2.14 flags as deprecated
# on every import; the warning is about CompressAI's code, not anything a user can act on.
_warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
