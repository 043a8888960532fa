"""Every benchmark script still starts: its imports resolve and ``--help`` exits 0.

Why: benchmarks run rarely and by hand; an API change in fcmcore once left
benchmarks/learned_bootstrap.py importing a removed name, found only when a measurement
was due."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (REPO / "benchmarks").glob("*.py")
                 if not p.name.startswith("_") and "argparse" in p.read_text())


def test_there_are_benchmark_scripts():
    assert len(SCRIPTS) >= 20, [p.name for p in SCRIPTS]


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_benchmark_script_help_runs(script):
    proc = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage" in proc.stdout.lower(), proc.stdout[:500]
