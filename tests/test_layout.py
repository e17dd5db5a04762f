"""The package's shape: folders by role with arrows that only point down, no import circles, files and functions a
reader can hold in mind (ARCHITECTURE.md draws it)."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "human_motion"
FOUNDATION = {"config", "schema", "types", "media", "orientation", "devices", "metrics", "console", "untrusted",
              "__init__"}
# What each folder may import from the package, besides the foundation modules above.
ALLOWED = {
    "sources": set(),
    "backends": set(),
    "stages": {"backends"},
    "engine": {"sources", "stages", "backends"},
    "dataset": {"stages"},
    "model": {"backends", "stages"},
    "eval": {"backends", "stages", "model"},
}
MAX_FILE_LINES = 420
MAX_FUNCTION_LINES = 80


def _module(path: pathlib.Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def _from_module(path: pathlib.Path, node: ast.ImportFrom) -> str | None:
    """The module an ``import from`` names, a relative one (``from ..eval import x``) made absolute."""
    if not node.level:
        return node.module
    package = _module(path).split(".")[: None if path.name == "__init__.py" else -1]
    return ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))


def _is_module(name: str) -> bool:
    """A module or a package of ours (``from human_motion import engine`` imports the package)."""
    where = PACKAGE.parent / name.replace(".", "/")
    return where.with_suffix(".py").exists() or (where / "__init__.py").exists()


def _imports(path: pathlib.Path) -> set[str]:
    """human_motion modules a file imports, at module level or inside functions (TYPE_CHECKING blocks aside),
    relative imports included."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        module = _from_module(path, node) if isinstance(node, ast.ImportFrom) else None
        if module and module.startswith("human_motion"):
            out.add(module)
            out.update(f"{module}.{a.name}" for a in node.names if _is_module(f"{module}.{a.name}"))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("human_motion"))
    return out


def _files() -> list[pathlib.Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_arrows_point_down():
    wrong = []
    for path in _files():
        parts = path.relative_to(PACKAGE).parts
        if len(parts) < 2:
            continue  # cli.py and the foundation modules
        folder = parts[0]
        for target in _imports(path):
            t = target.split(".")
            if len(t) < 2 or t[1] in FOUNDATION or t[1] == folder:
                continue
            if t[1] not in ALLOWED.get(folder, set()):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_circles():
    graph = {_module(p): {m for m in _imports(p) if m != _module(p)} for p in _files()}
    graph = {k: {m for m in v if m in graph} for k, v in graph.items()}
    done, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in done:
            return
        stack.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        stack.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    # A package's __init__ importing its own modules is how packages work, not a circle.
    cycles = [c for c in cycles if not any(m == c[0].rsplit(".", 1)[0] for m in c[1:])]
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_files_and_functions_stay_small():
    big_files = [f"{p.relative_to(PACKAGE)}: {n} lines" for p in _files()
                 if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]
    long_functions = []
    for path in _files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {n} lines")
    assert not big_files and not long_functions, "\n".join(big_files + long_functions)
