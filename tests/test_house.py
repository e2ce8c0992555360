"""The package's house rules, checked on its source: imports at the top of
each module (one deliberate exception), methods apart from experiments, and
each public name defined in one module only."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import helpers

PACKAGE = Path(helpers.__file__).resolve().parent
MODULES = sorted(p for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
# The one import inside a function: torchvision, loaded only where it is needed
# (see _util.import_torchvision for why).
LAZY_IMPORTS = {("_util.py", "import_torchvision")}
# Method modules: they hold methods only, never the recipes, caches or figures.
METHODS = ("models", "training", "pruning", "distillation", "quantization", "metrics", "stats")
ABOVE_METHODS = ("checkpoints", "experiments", "compare", "plots", "widgets", "article")


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def imports_inside_functions(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree(path)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    found.append((node.name, inner.lineno))
    return found


def local_imports(path: Path) -> set[str]:
    """The sibling modules ``path`` imports (``from . import x``, ``from .x import y``)."""
    out = set()
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module)
            else:
                out.update(a.name for a in node.names)
    return out


def test_the_module_list_is_what_this_file_knows():
    assert {p.stem for p in MODULES} == set(METHODS) | set(ABOVE_METHODS) | {
        "_util", "data", "exercises"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_import_inside_a_function(path):
    found = [(fn, line) for fn, line in imports_inside_functions(path)
             if (path.name, fn) not in LAZY_IMPORTS]
    assert found == [], f"{path.name}: imports inside functions at {found}"


def test_the_detector_finds_an_import_inside_a_function(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import os\n\ndef f():\n    if True:\n        from json import dumps\n")
    assert imports_inside_functions(src) == [("f", 5)]


@pytest.mark.parametrize("name", METHODS)
def test_method_modules_never_reach_up(name):
    reached = local_imports(PACKAGE / f"{name}.py") & set(ABOVE_METHODS)
    assert reached == set(), f"{name} imports {sorted(reached)}"


def test_each_public_name_is_defined_in_one_module():
    homes: dict[str, list[str]] = {}
    for path in MODULES:
        for node in tree(path).body:
            names = []
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            for n in names:
                if not n.startswith("_"):
                    homes.setdefault(n, []).append(path.stem)
    twice = {n: where for n, where in homes.items() if len(where) > 1}
    assert twice == {}


def test_the_package_exposes_its_modules_only():
    public = {n for n in vars(helpers) if not n.startswith("_")}
    assert public == set(helpers.__all__) == {p.stem for p in MODULES if p.stem != "_util"}
