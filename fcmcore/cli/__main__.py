"""``python -m fcmcore.cli``: the ``fcm`` command."""

from . import main

raise SystemExit(main())
