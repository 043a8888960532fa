"""A test that cannot fail is a defect: scan every test module's syntax tree for the shapes of
assertions that always pass.

* ``assert a == b if c else d`` parses as ``assert (a == b) if c else d``: when ``c`` is false the
  assertion is on ``d``, which is usually truthy (it was a tuple in tests/test_wrappers.py). A
  conditional whose two branches are both real checks (``p > 1 if c else q < 2``) is fine;
* ``assert (x, "message")``: a non-empty tuple is always true;
* ``assert`` on anything else always truthy: a non-empty literal, a lambda, a generator expression
  (``assert (x for x in xs)`` instead of ``all(...)``), an f-string, ``x or True``;
* a comparison as a statement (``x == y`` without ``assert``): its result is thrown away;
* ``for x in []`` (or another empty literal): the loop's assertions never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
ALWAYS_TRUE = (ast.Lambda, ast.GeneratorExp, ast.JoinedStr)
LITERALS = (ast.Tuple, ast.List, ast.Set, ast.Dict)


def _always_true(node: ast.expr) -> str | None:
    if isinstance(node, ast.IfExp):  # `assert (p if c else q)` is fine when both p and q can fail
        for branch in (node.body, node.orelse):
            why = _always_true(branch)
            if why:
                return f"a conditional expression with a branch that is {why} (write `a == (b if c else d)`)"
        return None
    if isinstance(node, LITERALS):
        size = len(node.keys) if isinstance(node, ast.Dict) else len(node.elts)
        return f"a non-empty {type(node).__name__.lower()} (always true)" if size else None
    if isinstance(node, ALWAYS_TRUE):
        return f"a {type(node).__name__} (always true)"
    if isinstance(node, ast.Constant) and node.value and node.value is not Ellipsis:
        return "a true constant"
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        if any(isinstance(v, ast.Constant) and v.value for v in node.values):
            return "`... or <true constant>` (always true)"
    return None


def find_problems(source: str, filename: str = "<test>") -> list[str]:
    """``file:line: what`` for each assertion that cannot fail in ``source``."""
    problems = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Assert):
            why = _always_true(node.test)
            if why:
                problems.append(f"{where}: assert on {why}")
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Compare):
            problems.append(f"{where}: comparison whose result is discarded (missing `assert`?)")
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            it = node.iter
            if isinstance(it, LITERALS) and not (it.keys if isinstance(it, ast.Dict) else it.elts):
                problems.append(f"{where}: loop over an empty literal never runs")
    return problems


@pytest.mark.parametrize("path", sorted(TESTS_DIR.rglob("*.py")), ids=lambda p: str(p.relative_to(TESTS_DIR)))
def test_no_assertion_that_cannot_fail(path):
    assert find_problems(path.read_text(encoding="utf-8"), str(path.relative_to(TESTS_DIR))) == []


@pytest.mark.parametrize("source, found", [
    ("assert z.shape == (2, 6) if down == 2 else (2, 6, 19)", "conditional expression"),
    ("assert (x == 1, 'x is one')", "non-empty tuple"),
    ("assert (v > 0 for v in values)", "GeneratorExp"),
    ("assert f'{x}'", "JoinedStr"),
    ("assert ok or True", "or <true constant>"),
    ("assert 'message'", "true constant"),
    ("x == 1", "discarded"),
    ("for x in []:\n    assert x", "empty literal"),
    ("ys = [y for y in ()]", "empty literal"),
])
def test_the_scanner_finds_each_shape(source, found):
    (problem,) = find_problems(source)
    assert found in problem


@pytest.mark.parametrize("source", [
    "assert z.shape == ((2, 6) if down == 2 else (2, 6, 19))",
    "assert x == 1, 'x is one'",
    "assert all(v > 0 for v in values)",
    "assert score == inf if lossless else score > 28",
    "assert not ()",
    "y = x == 1",
    "for x in [1]:\n    assert x",
])
def test_the_scanner_passes_real_assertions(source):
    assert find_problems(source) == []
