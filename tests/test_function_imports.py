"""Imports inside functions are kept only for a reason (an optional or heavy dependency, or
keeping ``fcm --help`` light), and that reason is written beside them: a ``# why:`` comment
on the import or on the comment line that opens its group of imports. Read with ast."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fcmcore"


def function_level_imports(path: Path) -> list[tuple[int, bool]]:
    """(line, has a why comment) of every import inside a function of ``path``."""
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    seen: dict[int, bool] = {}
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node.lineno not in seen:
                i = node.lineno - 1
                while i > 0 and lines[i - 1].strip().startswith(("from ", "import ")):
                    i -= 1  # the first import of this group
                above = lines[i - 1].strip() if i > 0 else ""
                own = " ".join(lines[node.lineno - 1:node.end_lineno])
                seen[node.lineno] = "why" in own.split("#", 1)[-1] if "#" in own else above.startswith("# why")
    return sorted(seen.items())


def test_every_function_level_import_says_why():
    missing = [f"{p.relative_to(PACKAGE.parent)}:{line}" for p in sorted(PACKAGE.rglob("*.py"))
               for line, ok in function_level_imports(p) if not ok]
    assert missing == []


def test_the_reader_finds_function_level_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef a():\n    import json\n    # why: heavy\n    import av\n"
                 "    from x import y  # why: optional\n")
    assert function_level_imports(f) == [(4, False), (6, True), (7, True)]
