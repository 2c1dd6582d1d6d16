"""Importing facesense must stay cheap (no OpenCV, no ONNX Runtime, no model loads), and
its public API must be one list, said three times the same way: the lazy ``_EXPORTS``
table, ``__all__``, and the ``TYPE_CHECKING`` imports type checkers read."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import facesense

INIT = Path(facesense.__file__)


def test_import_does_not_load_heavy_modules() -> None:
    code = (
        "import sys, facesense, facesense.cli;"
        "heavy = [m for m in ('cv2', 'onnxruntime', 'onnx', 'sklearn', 'torch') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _init_tree() -> ast.Module:
    return ast.parse(INIT.read_text(encoding="utf-8"))


def _assigned(tree: ast.Module, name: str) -> ast.expr:
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == [name]:
            return node.value
    raise AssertionError(f"facesense/__init__.py assigns no {name}")


def test_all_is_written_sorted_in_the_source() -> None:
    # __all__ must be a literal list in the file (what readers and linters see),
    # written in sorted order; not a sorted() of something else.
    value = _assigned(_init_tree(), "__all__")
    assert isinstance(value, ast.List), "__all__ should be a literal list"
    names = [ast.literal_eval(e) for e in value.elts]
    assert names == sorted(names), [a for a, b in zip(names, sorted(names), strict=True) if a != b]
    assert len(set(names)) == len(names)
    assert names == facesense.__all__


def test_the_lazy_table_and_the_type_checking_imports_say_the_same() -> None:
    tree = _init_tree()
    table = ast.literal_eval(_assigned(tree, "_EXPORTS"))
    assert list(table) == sorted(table), "keep _EXPORTS sorted like __all__"
    assert list(table) == facesense.__all__
    checked: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module is not None
                for alias in stmt.names:
                    assert alias.asname is None, f"{alias.name} is imported under another name"
                    checked[alias.name] = stmt.module
    assert checked == table


@pytest.mark.parametrize("name", facesense.__all__)
def test_every_public_name_resolves_to_what_it_is_called(name: str) -> None:
    value = getattr(facesense, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        # An export is the thing itself, not an alias of something else.
        assert value.__name__ == name
        assert value.__module__.startswith("facesense.")


def test_the_new_data_contract_is_public() -> None:
    from facesense import types

    assert facesense.FrameResult is types.FrameResult
    assert facesense.Event is types.Event
    assert facesense.IdentityState.UNKNOWN is types.IdentityState.UNKNOWN
    assert "WatchEvent" not in facesense.__all__  # replaced by Event


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        facesense.no_such_thing  # noqa: B018
