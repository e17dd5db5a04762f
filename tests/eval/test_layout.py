"""The arrows between packages: ``eval/`` may import ``model/`` (the pipeline for ``--protocol``), never the reverse."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2] / "human_motion"


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):  # function-level imports count too
        if isinstance(node, ast.ImportFrom) and node.level:  # from ..eval import x, from .. import eval
            package = ["human_motion", *path.relative_to(ROOT).parent.parts]
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            names.update({base} | {f"{base}.{a.name}" for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update({node.module} | {f"{node.module}.{a.name}" for a in node.names})  # import eval by name
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_model_never_imports_eval():
    offenders = {p.name: sorted(m for m in imported_modules(p) if m.startswith("human_motion.eval"))
                 for p in (ROOT / "model").glob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}
    from human_motion.cli import COMMANDS

    assert COMMANDS["eval"][0] == "human_motion.eval.command"
