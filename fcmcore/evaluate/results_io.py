"""Results files of sweeps: read, write, and check where one will be written before a sweep.

The format is described in ``fcmcore.evaluate.sweep``. Files are written to a temporary name
beside the target and renamed, so a crash never leaves half a file; ``check_output_path`` is
called *before* a sweep so that an unwritable or wrong path fails in a second, not after the
work (and leaves nothing behind).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from ..errors import InputError, ParameterError
from ..imageio import read_regular_file

RESULTS_VERSION = 1


def check_output_path(path: str | Path, what: str = "--out") -> Path:
    """Raise ParameterError unless ``path`` can be written as a file (creating its folder if
    needed). Writes and removes a probe file in the folder when it exists."""
    p = Path(path)
    if str(path).strip() == "":
        raise ParameterError(f"{what}: empty path")
    if p.is_dir():
        raise ParameterError(f"{what} {p}: is a directory; give a file name, e.g. {p / 'results.json'}")
    if p.exists() and not os.access(p, os.W_OK):
        raise ParameterError(f"{what} {p}: exists and is not writable")
    parent = p.parent if str(p.parent) else Path(".")
    existing = parent
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise ParameterError(f"{what} {p}: {existing} is not a directory")
    if existing == parent:
        try:
            fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=parent)
        except OSError as exc:
            raise ParameterError(f"{what} {p}: cannot write in {parent} ({exc.strerror or exc})") from None
        os.close(fd)
        os.unlink(probe)
    elif not os.access(existing, os.W_OK | os.X_OK):
        raise ParameterError(f"{what} {p}: cannot create {parent} ({existing} is not writable)")
    return p


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results file (or a bare CompressAI-style curve / list of curves)."""
    p = Path(path)
    raw = read_regular_file(p, 1 << 30, label=f"results {p}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"results {p}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and "curves" in data:
        if data.get("version") != RESULTS_VERSION:
            raise InputError(f"results {p}: version {data.get('version')!r}, this fcm reads version {RESULTS_VERSION}")
        curves = data["curves"]
    elif isinstance(data, dict) and "results" in data:  # a CompressAI plot file
        curves, data = [data], {"version": RESULTS_VERSION, "curves": [data], "reference": None}
    elif isinstance(data, list):
        curves, data = data, {"version": RESULTS_VERSION, "curves": data, "reference": None}
    else:
        raise InputError(f"results {p}: not an fcm results file (no 'curves')")
    for c in curves:
        if not isinstance(c, dict) or "name" not in c or "bpp" not in c.get("results", {}):
            raise InputError(f"results {p}: a curve lacks 'name' or 'results.bpp'")
    return data


def save_results(doc: dict[str, Any], path: str | Path) -> None:
    p = Path(path)
    text = dumps_results(doc) + "\n"  # before touching the disk: a failure here leaves nothing
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {p} ({exc.strerror or exc})") from None


def dumps_results(doc: dict[str, Any]) -> str:
    """Indented JSON, except per-image rows and plain number lists, one line each (small diffs)."""
    inline: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            if all(not isinstance(v, (dict, list)) for v in node) or all(
                    isinstance(v, dict) and all(not isinstance(x, (dict, list)) for x in v.values()) for v in node):
                if node and all(isinstance(v, dict) for v in node):
                    return [walk_inline(v) for v in node]
                return walk_inline(node)
            return [walk(v) for v in node]
        return node

    def walk_inline(value):
        inline.append(json.dumps(value, separators=(", ", ": ")))
        return f"\x00{len(inline) - 1}\x00"

    text = json.dumps(walk(doc), indent=1)

    return re.sub(r'"\\u0000(\d+)\\u0000"', lambda m: inline[int(m.group(1))], text)
