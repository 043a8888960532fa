import os
import subprocess
import sys
from dataclasses import dataclass
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


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def run_main(*args: str, env: dict | None = None, timeout: float = 300) -> Outcome:
    """``fcm ARGS`` through ``fcmcore.cli.main`` in this process (fast), in a thread so a
    hang fails the test instead of blocking it. ``env`` is set for the call only."""
    import contextlib
    import io
    import threading

    import torch

    from fcmcore import cli, models

    out, err, result = io.StringIO(), io.StringIO(), {}
    saved = {k: os.environ.get(k) for k in (env or {})}
    saved_models = dict(models._cache)
    os.environ.update(env or {})
    torch.hub._hub_dir = None  # TORCH_HOME is read again
    models._cache.clear()  # a model loaded earlier must not hide the weights file under test

    def target():
        try:
            result["rc"] = cli.main(list(args))
        except SystemExit as exc:
            result["rc"] = exc.code
        except BaseException as exc:  # noqa: BLE001 - reported as a traceback would be
            import traceback

            err.write("Traceback (in-process)\n" + "".join(traceback.format_exception(exc)))
            result["rc"] = 1

    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            t.join(timeout)
        assert not t.is_alive(), f"fcm {' '.join(args)} hung for {timeout} s"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        models._cache.clear()
        models._cache.update(saved_models)
    return Outcome(int(result.get("rc", 1)), out.getvalue(), err.getvalue())


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
    """In-process CLI (the fast suite); ``run_cli`` is the child-process variant (slow tests)."""
    return run_main


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    import torch

    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would win over TORCH_HOME
    return home
