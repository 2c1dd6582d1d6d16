"""No import cycle in the facesense package.

Every module of ``src/facesense`` is parsed (not imported) and its imports of other
facesense modules become edges of a graph, which must have no cycle. What counts:

* every import a module runs when it is imported (module level, also inside ``if``,
  ``try`` and class bodies) **and** those under ``if TYPE_CHECKING:``: a cycle of type
  hints is still two modules that cannot be understood, tested or replaced apart
  (``pipeline`` and ``sinks.base`` used to be one);
* importing ``a.b.c`` also runs the package ``a.b``'s ``__init__``, so it depends on
  that too; the root package is the exception: it is lazy (``tests/test_imports.py``)
  and its only imports are its re-exports under ``TYPE_CHECKING``;
* imports inside functions are left out: they are how heavy or optional dependencies
  are deferred (OpenCV, ONNX Runtime, the web server) and run after every module is
  loaded.
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import pytest

import facesense

ROOT = "facesense"
PACKAGE_DIR = Path(facesense.__file__).resolve().parent


def package_modules(directory: Path = PACKAGE_DIR, prefix: str = ROOT) -> dict[str, Path]:
    """Every module under ``directory``: dotted name -> source file.

    ``pkgutil.walk_packages`` would import each subpackage to find its children;
    ``iter_modules`` per folder lists them without running any of their code.
    """
    out = {prefix: directory / "__init__.py"}
    for info in pkgutil.iter_modules([str(directory)]):
        name = f"{prefix}.{info.name}"
        if info.ispkg:
            out.update(package_modules(directory / info.name, name))
        else:
            out[name] = directory / f"{info.name}.py"
    return out


def _import_nodes(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported (or type-checked)."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue  # runs when called, not when imported
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    found.extend(_import_nodes([c for c in children if isinstance(c, ast.stmt)]))
                    for handler in children:
                        if isinstance(handler, ast.ExceptHandler):
                            found.extend(_import_nodes(handler.body))
            if isinstance(node, ast.Match):
                for case in node.cases:
                    found.extend(_import_nodes(case.body))
    return found


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of dotted ``name`` that is a facesense module."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, modules: dict[str, Path]) -> set[str]:
    """The facesense modules ``module`` imports (see the module docstring for what counts)."""
    path = modules[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in _import_nodes(tree.body):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            # ``from facesense import geometry`` imports the module facesense.geometry.
            sub = f"{base}.{alias.name}"
            targets.add(sub if sub in modules else base)
    deps: set[str] = set()
    for target in targets:
        owner = _owner(target, modules)
        if owner is None or owner == module:
            continue
        deps.add(owner)
        # Importing a.b.c runs a.b's __init__ first (unless a.b is our own package).
        parts = owner.split(".")
        for end in range(2, len(parts)):
            parent = ".".join(parts[:end])
            if not (module == parent or module.startswith(parent + ".")):
                deps.add(parent)
    return deps


def import_graph() -> dict[str, set[str]]:
    """``module -> modules it imports`` for the whole package."""
    modules = package_modules()
    return {m: imports_of(m, modules) for m in sorted(modules)}


def tangles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with a cycle (Tarjan), sorted by first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the package's module count
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components, key=min)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle per tangle, each as ``[a, b, ..., a]``."""
    return [_cycle_in(c, graph) for c in tangles(graph)]


def describe_cycles(graph: dict[str, set[str]]) -> str:
    """Each tangle's shortest cycle and every module caught in it, one per line."""
    return "\n".join(f"{' -> '.join(_cycle_in(c, graph))}   (tangled: {', '.join(sorted(c))})" for c in tangles(graph))


def _cycle_in(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first)."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # a component always has one


# --------------------------------------------------------------------------- the checker


def _in_packages(path: Path) -> bool:
    folder = path.parent
    while (folder / "__init__.py").is_file():
        if folder == PACKAGE_DIR:
            return True
        folder = folder.parent
    return False


def test_the_walk_finds_every_module() -> None:
    modules = package_modules()
    # Every .py file whose folders up to the package are all packages (have an __init__.py).
    files = {p for p in PACKAGE_DIR.rglob("*.py") if _in_packages(p)}
    assert set(modules.values()) == files
    assert {"facesense", "facesense.pipeline", "facesense.sinks", "facesense.sinks.base", "facesense.types"} <= set(
        modules
    )


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_sees_type_checking_and_package_cycles(tmp_path: Path) -> None:
    pkg = tmp_path / "facesense"
    _write(
        pkg,
        {
            "__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from facesense.pipe import P\n",
            "pipe.py": "from facesense.sinks.base import Sink\n",
            "types.py": "",
            "sinks/__init__.py": "from facesense.sinks.base import Sink\nfrom facesense.sinks.video import V\n",
            "sinks/base.py": "from facesense import types\n",
            # Only under TYPE_CHECKING, and only through the package __init__: still a cycle.
            "sinks/video.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..pipe import P\n",
            # A lazy import inside a function does not count.
            "lazy.py": "def f():\n    from facesense.pipe import P\n",
        },
    )
    modules = package_modules(pkg)
    graph = {m: imports_of(m, modules) for m in modules}
    assert graph["facesense.pipe"] == {"facesense.sinks.base", "facesense.sinks"}
    assert graph["facesense.sinks.base"] == {"facesense.types"}
    assert graph["facesense.sinks.video"] == {"facesense.pipe"}
    assert graph["facesense.lazy"] == set()
    assert find_cycles(graph) == [["facesense.pipe", "facesense.sinks", "facesense.sinks.video", "facesense.pipe"]]
    graph["facesense.sinks.video"] = set()
    assert find_cycles(graph) == []


# --------------------------------------------------------------------------- the package


def test_sinks_base_imports_only_types() -> None:
    graph = import_graph()
    assert graph["facesense.sinks.base"] <= {"facesense.types"}
    assert graph["facesense.types"] <= {"facesense.errors"}


@pytest.mark.parametrize(
    "module", ["facesense.pipeline", "facesense.sinks.base", "facesense.identity", "facesense.track"]
)
def test_no_cycle_through_the_pipeline_stages(module: str) -> None:
    graph = import_graph()
    assert not [c for c in tangles(graph) if module in c], describe_cycles(graph)


def test_no_import_cycle_anywhere() -> None:
    graph = import_graph()
    assert find_cycles(graph) == [], "import cycles:\n" + describe_cycles(graph)
