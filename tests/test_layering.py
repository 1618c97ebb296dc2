"""The library never imports kfp; components/ and pipelines/ import only stdlib + kfp at module
level (heavy imports go inside component bodies, so compiling never loads TensorFlow)."""

import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)


def _imports(tree: ast.AST, module_level_only: bool):
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno
        elif module_level_only and isinstance(node, ast.If | ast.Try):
            # conditional module-level imports count as module level
            yield from _imports(ast.Module(body=list(ast.iter_child_nodes(node)),
                                           type_ignores=[]), True)


def _py_files(folder):
    return sorted((ROOT / folder).rglob("*.py"))


def offending_library_imports(text: str):
    return [(m, line) for m, line in _imports(ast.parse(text), False) if m == "kfp"]


def offending_wrapper_imports(text: str):
    return [(m, line) for m, line in _imports(ast.parse(text), True)
            if m not in STDLIB and m not in ("kfp", "__future__")
            and m not in ("components", "pipelines")]


@pytest.mark.parametrize("path", _py_files("mu2net"), ids=str)
def test_library_never_imports_kfp(path):
    assert offending_library_imports(path.read_text()) == []


@pytest.mark.parametrize("path", _py_files("components") + _py_files("pipelines"), ids=str)
def test_wrappers_import_only_stdlib_and_kfp_at_module_level(path):
    assert offending_wrapper_imports(path.read_text()) == []


def test_checks_can_fail():
    assert offending_library_imports("def f():\n    from kfp import dsl\n") == [("kfp", 2)]
    assert offending_wrapper_imports("import numpy\nimport json\nfrom kfp import dsl\n") == [
        ("numpy", 1)]
    assert offending_wrapper_imports("def f():\n    import tensorflow\n") == []
