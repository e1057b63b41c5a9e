"""Import structure of the data packages: no import cycles inside `dataset_scripts`, one-way layering.

Read from the source (the AST of every file), not by importing it, so a cycle hidden in a function body (a "lazy"
import that only runs later) counts as much as one at module level. Importing `a.b.c` also runs the packages
`a` and `a.b` (their `__init__`), so those are edges too, except the importing module's own parent packages,
which are already initialised before its body runs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ImportEdge:
    source: str
    target: str
    line: int
    lazy: bool  # inside a function (runs when the function is called, not when the module is imported)

    def __str__(self) -> str:
        return f"{self.source}:{self.line} imports {self.target}{' (in a function)' if self.lazy else ''}"


def package_modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file of every module of `package` (a folder under `root`); `pkg.sub` is
    `pkg/sub/__init__.py`."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported_names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    """Every dotted name an import statement loads (the module, each `from` name that may be a submodule)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    yield prefix
    for alias in node.names:
        yield f"{prefix}.{alias.name}"


def _lazy_lines(tree: ast.AST) -> set[int]:
    """Line numbers of import statements inside a function body."""
    lines = set()
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    lines.add(node.lineno)
    return lines


def import_edges(root: Path, package: str) -> list[ImportEdge]:
    """Module-level and function-level imports between the modules of `package`."""
    modules = package_modules(root, package)
    edges = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        lazy = _lazy_lines(tree)
        own_parents = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            targets: set[str] = set()
            for name in _imported_names(node, module, path.name == "__init__.py"):
                parts = name.split(".")
                # `a.b.c` runs a, a.b and a.b.c; a `from` name that is not a module is an attribute, skipped.
                targets.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
            for target in sorted(targets & set(modules) - own_parents - {module}):
                edges.append(ImportEdge(module, target, node.lineno, node.lineno in lazy))
    return edges


def find_cycles(edges: list[ImportEdge]) -> list[list[ImportEdge]]:
    """The import cycles: for every strongly connected set of modules, the edges between its members."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graphs here are a few dozen modules deep at most
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [
        [edge for edge in edges if edge.source in component and edge.target in component]
        for component in sorted(components, key=sorted)
    ]


def format_cycles(cycles: list[list[ImportEdge]]) -> str:
    if not cycles:
        return "no import cycles"
    return "\n".join(
        f"cycle {number}: " + "; ".join(str(edge) for edge in cycle) for number, cycle in enumerate(cycles, 1)
    )


def test_dataset_scripts_has_no_import_cycles() -> None:
    cycles = find_cycles(import_edges(REPO_ROOT, "dataset_scripts"))
    assert not cycles, format_cycles(cycles)


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("dataset_scripts", ("trainers", "robot_data")), ("robot_data", ("trainers",))],
)
def test_layering_is_one_way(package: str, forbidden: tuple[str, ...]) -> None:
    """modeling_jala <- dataset_scripts <- robot_data <- trainers: a package never imports one above it."""
    modules = package_modules(REPO_ROOT, package)
    offending = []
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom) and not getattr(node, "level", 0):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                offending += [f"{module}:{node.lineno} {name}" for name in names if name.split(".")[0] in forbidden]
    assert not offending, offending


def test_the_check_sees_lazy_and_package_cycles(tmp_path: Path) -> None:
    """The check itself: a cycle closed by an import inside a function, and one through a package `__init__`."""
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import thing\n",
        "pkg/b.py": "def thing():\n    from pkg import a\n    return a\n",
        "pkg/sub/__init__.py": "from pkg import c  # registration side effect\n",
        "pkg/sub/base.py": "BASE = 1\n",
        "pkg/sub/own.py": "from .base import BASE\n",  # a sibling through its own package: no cycle
        "pkg/c.py": "from pkg.sub.base import BASE\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    cycles = find_cycles(import_edges(tmp_path, "pkg"))
    assert [sorted({edge.source for edge in cycle}) for cycle in cycles] == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.sub"]]
    assert any(edge.lazy for edge in cycles[0])


if __name__ == "__main__":  # python tests/test_dataset_package_imports.py [ROOT]: print the cycles of a checkout
    import sys

    root = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT
    print(format_cycles(find_cycles(import_edges(root, "dataset_scripts"))))
