import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))  # tests import helpers such as bad_inputs

from fcmcore.paths import shared_dir  # noqa: E402


@pytest.fixture(scope="session")
def bad_corpus(tmp_path_factory):
    from bad_inputs import make_corpus

    folder = tmp_path_factory.mktemp("bad_inputs")
    return folder, make_corpus(folder)


@pytest.fixture(scope="session")
def coco96_dir() -> Path:
    path = shared_dir() / "datasets" / "coco96"
    if not (path / "instances.json").exists():
        pytest.fail(f"shared dataset missing at {path} (set FCM_SHARED)")
    return path
