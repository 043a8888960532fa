"""Shared fixtures, and how tests that need data outside the repository are handled.

Two datasets:

* ``tiny_dataset``: tests/data/tinycoco, 8 CC0 / public-domain images with hand-drawn COCO boxes,
  shipped in the repository. End-to-end paths (sweeps, caches, Dask, CLI commands, training smoke
  runs, the app's dataset tab) run on it, so a fresh clone exercises them.
* ``coco96_dir``: ../shared/datasets/coco96 (or $FCM_SHARED/datasets/coco96). Only for tests whose
  figures are measured on coco96. When it is absent such tests SKIP with the reason; every test
  that uses the fixture (directly or through another fixture) is marked ``needs_shared``
  automatically, so ``-m "not needs_shared"`` selects what runs anywhere.

``FCM_REQUIRE_SHARED=1`` (set by .ci/run where ../shared exists) turns that skip into a failure,
so CI cannot silently stop running the coco96 tests.
"""

import os
import sys
from collections import Counter
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))  # tests import helpers such as bad_inputs

from fcmcore.paths import shared_dir  # noqa: E402

TINY_DATASET_DIR = TESTS_DIR / "data" / "tinycoco"
SHARED_FIXTURES = {"coco96_dir": "coco96"}  # fixture -> the shared dataset it needs


def shared_dataset_reason(name: str) -> str:
    return f"needs ../shared/datasets/{name} (set FCM_SHARED)"


def shared_dataset(name: str) -> Path:
    """The shared dataset folder ``name``, or skip the test (fail when FCM_REQUIRE_SHARED=1)."""
    path = shared_dir() / "datasets" / name
    if not (path / "instances.json").is_file():
        if os.environ.get("FCM_REQUIRE_SHARED") == "1":
            pytest.fail(f"FCM_REQUIRE_SHARED=1 but {path} is missing: {shared_dataset_reason(name)}")
        pytest.skip(shared_dataset_reason(name))
    return path


def pytest_report_header(config):
    import fcmcore

    shared = shared_dir() / "datasets" / "coco96"
    return [f"fcmcore: {Path(fcmcore.__file__).parent}",
            f"coco96: {shared if (shared / 'instances.json').is_file() else 'absent, ' + shared_dataset_reason('coco96')}"]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "needs_shared(name='coco96'): needs ../shared/datasets/<name>; skipped with the reason "
        "when absent (added automatically to tests using coco96_dir)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, name in SHARED_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()) and not item.get_closest_marker("needs_shared"):
                item.add_marker(pytest.mark.needs_shared(name))


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("needs_shared")
    if marker is not None:
        shared_dataset(marker.args[0] if marker.args else marker.kwargs.get("name", "coco96"))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One short block: how many tests were skipped and why (``-ra`` lists each one)."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    total = sum(reasons.values())
    terminalreporter.write_sep("-", f"skipped: {total} test(s)")
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"{count:4d}  {reason}")


@pytest.fixture(scope="session")
def bad_corpus(tmp_path_factory):
    from bad_inputs import make_corpus

    folder = tmp_path_factory.mktemp("bad_inputs")
    return folder, make_corpus(folder)


@pytest.fixture(scope="session")
def tiny_dataset() -> Path:
    """The folder of the bundled COCO-format fixture dataset (images/ + instances.json, 8 images,
    12 boxes; see tests/data/tinycoco/LICENSES.md). Read-only: copy it to change it."""
    return TINY_DATASET_DIR


@pytest.fixture
def tiny_shared(tmp_path, monkeypatch, tiny_dataset) -> Path:
    """A shared folder ($FCM_SHARED) whose only dataset is tinycoco, for code that lists
    ``shared_dir()/datasets`` (the app's server datasets)."""
    root = tmp_path / "shared"
    (root / "datasets").mkdir(parents=True)
    (root / "datasets" / "tinycoco").symlink_to(tiny_dataset, target_is_directory=True)
    monkeypatch.setenv("FCM_SHARED", str(root))
    return root


@pytest.fixture(scope="session")
def coco96_dir() -> Path:
    """../shared/datasets/coco96 (96 COCO val images); tests using it skip when it is absent."""
    return shared_dataset("coco96")
