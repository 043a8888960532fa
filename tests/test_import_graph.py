"""fcmcore's import graph (read with ast, nothing imported): no cycle between modules and
no arrow from a lower stage to a higher one. Lower stages are what higher ones build on:

    0 foundations   errors, registry, byteio, paths, datasplit, imageio, checkpoints
    1 stages        models, codecs, packing
    2 container     bitstream
    3 coding        coding (the feature-coder stage)
  3.5 training      training (feature banks, augmentation, proxy codec, resumable state)
    4 learned       learned (learned codecs: FeatureCoders)
    5 wrappers      wrappers
  5.5 tasks         secondary-task connectors beside the tail (train on wrappers' proxy codec)
    6 pipeline      pipeline
    7 evaluate      evaluate
  7.5 on evaluate   video (sequences), inspect (measurements the app shows)
    8 entry points  cli (the fcm command: one module per group of sub-commands), builtins (fills the registries)
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fcmcore"
RANKS = {
    "errors": 0, "registry": 0, "byteio": 0, "paths": 0, "datasplit": 0, "imageio": 0, "checkpoints": 0,
    "__init__": 0,
    "models": 1, "codecs": 1, "packing": 1,
    "bitstream": 2,
    "coding": 3, "training": 3.5,
    "learned": 4,
    "wrappers": 5, "tasks": 5.5,
    "pipeline": 6,
    "evaluate": 7, "video": 7.5, "inspect": 7.5,
    "cli": 8, "builtins": 8,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """fcmcore modules ``path`` imports (anywhere in it), resolved to module names."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "fcmcore"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "fcmcore":
                continue
            for a in node.names:  # `from .x import y`: y may be a module itself
                out.add(target + "." + a.name if _exists(target + "." + a.name) else target)
    return out


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) - {_module_name(p)} for p in PACKAGE.rglob("*.py")}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_stage_has_a_rank():
    assert {_stage(m) for m in _graph()} <= set(RANKS)


def test_no_arrow_from_a_lower_stage_to_a_higher_one():
    bad = []
    for module, targets in _graph().items():
        for target in targets:
            a, b = _stage(module), _stage(target)
            if a != b and RANKS[a] < RANKS[b]:
                bad.append(f"{module} -> {target}")
            elif a != b and RANKS[a] == RANKS[b] and RANKS[a] not in (0, 8):
                bad.append(f"{module} -> {target} (same rank)")
    assert sorted(bad) == []


def test_no_import_cycle():
    graph = _graph()
    # packages import their own modules and modules import their package's __init__: the
    # cycle that matters is between modules, so a package's __init__ counts as the package
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):  # a package importing its own submodules
                continue
            if state.get(nxt) == 1 and not node.startswith(nxt + "."):
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_the_graph_reader_sees_real_arrows():
    graph = _graph()
    assert "fcmcore.coding.base" in graph["fcmcore.learned.codec"]
    assert "fcmcore.wrappers.importance" in graph["fcmcore.wrappers.fitted"]
    assert "fcmcore.coding" in graph["fcmcore.pipeline"]
