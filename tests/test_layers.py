"""The package's folders are layers: no module imports from a folder above its own (issue 27).

The order, bottom to top, is each folder's docstring's (`Layer i of n`); the modules at the package's
root (the CLI, `__main__`) are above every folder. Every import is read from the source, those inside
functions included, so a lazy import cannot hide a cycle between the layers."""
import ast
import re
from pathlib import Path

import pytest

import ctcoupling

PKG = Path(ctcoupling.__file__).parent


def _layers() -> list[str]:
    found = {}
    for init in PKG.glob("*/__init__.py"):
        m = re.search(r"Layer (\d+) of (\d+)", ast.get_docstring(ast.parse(init.read_text())) or "")
        assert m, f"{init.relative_to(PKG)}: its docstring must say `Layer i of n`"
        found[int(m.group(1))] = init.parent.name
    assert sorted(found) == list(range(1, len(found) + 1)), found
    return [found[i] for i in sorted(found)]


LAYERS = _layers()


def _rank(module: str) -> int:
    """A module's layer: its folder's index; the package's root modules are above every folder."""
    parts = module.split(".")
    if parts[0] != "ctcoupling":
        return -1
    if len(parts) == 1:
        return -1  # the package itself (__version__, the CPU pin): what every import of it runs anyway
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else len(LAYERS)


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str | None = None, source: str | None = None):
    """(line, imported module) for every import in the file, relative ones resolved."""
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source if source is not None else path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            yield from ((node.lineno, f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base) for a in node.names)


def _is_module(dotted: str) -> bool:
    p = PKG.parent.joinpath(*dotted.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


MODULES = sorted(PKG.rglob("*.py"))


def test_every_module_lives_in_a_layer_or_is_the_command_line():
    root = {p.name for p in PKG.glob("*.py")}
    assert root == {"__init__.py", "__main__.py", "cli.py"}, root
    assert len(LAYERS) >= 6 and all((PKG / f).is_dir() for f in LAYERS)
    assert {p.parent.name for p in MODULES if p.parent != PKG} == set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_module_imports_from_a_layer_above_its_own(path):
    name = _module_name(path)
    own = len(LAYERS) if name == "ctcoupling" else _rank(name)  # the package's __init__: the root's
    upward = [f"line {line}: {target} ({LAYERS[_rank(target)] if _rank(target) < len(LAYERS) else 'the root'})"
              for line, target in _imports(path) if _rank(target) > own]
    assert not upward, f"{path.relative_to(PKG)} (layer {LAYERS[own] if own < len(LAYERS) else 'root'}) imports upward: " + "; ".join(upward)


def test_the_walker_sees_an_upward_import_inside_a_function():
    """The test above can fail: lazy upward imports in a core module, absolute and relative, are found."""
    source = "from . import errors\ndef f():\n    from ctcoupling.pipeline import dag\n    from ..results import stats\n"
    name = "ctcoupling.core._probe"
    found = [t for _, t in _imports(PKG / "core" / "_probe.py", name, source) if _rank(t) > _rank(name)]
    assert found == ["ctcoupling.pipeline.dag", "ctcoupling.results.stats"]
