import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the tests import corpus.py

from fcmcore.paths import REPO_DIR  # noqa: E402


def run_cli(*args: str, env: dict | None = None, timeout: float = 120, limit_memory_mb: int | None = None):
    """``fcm ARGS`` in a fresh interpreter (so a hang or a blow-up cannot take pytest with it).
    Returns the CompletedProcess; raises subprocess.TimeoutExpired on a hang."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_DIR))
    full_env.update(env or {})
    preexec = None
    if limit_memory_mb:
        def preexec():
            import resource

            resource.setrlimit(resource.RLIMIT_DATA, (limit_memory_mb << 20, limit_memory_mb << 20))
    return subprocess.run([sys.executable, "-m", "fcmcore.cli", *args], env=full_env, cwd=REPO_DIR,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)


def assert_clean_error(proc, *needles: str):
    """Exit 2 with one ``error: ...`` line naming the problem, and no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-500:], proc.stderr[-1000:])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle.lower() in errors[0].lower(), errors[0]


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    import torch

    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would win over TORCH_HOME
    return home
