"""The package's layering, read from the sources with ``ast`` (nothing is imported).

Layers, bottom to top; a module imports from its own layer and the layers below, never from
a layer above, and the members of the two middle layers do not import each other:

- bottom: ``cdul`` (the package itself), ``cdul.data``, ``cdul.limits``, ``cdul.metrics``, ``cdul.labels``
- kernels and store: ``cdul.kernels``, ``cdul.store`` (not each other)
- parts: ``cdul.extractor``, ``cdul.trainer``, ``cdul.index`` (not each other)
- application: ``cdul.cli``, ``cdul.demo``, ``cdul.report``, ``cdul.reproduce``, ``cdul.sample``,
  ``cdul.benchmarks``, ``cdul.readout``, ``cdul.api``, ``cdul.serve``

and no two modules import each other, directly or through others (imports inside
functions count too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("kernels", "extractor", "store", "trainer", "benchmarks")
LAYERS = [
    {"cdul", "cdul.data", "cdul.limits", "cdul.metrics", "cdul.labels"},
    {"cdul.kernels", "cdul.store"},
    {"cdul.extractor", "cdul.trainer", "cdul.index"},
    {
        "cdul.cli",
        "cdul.demo",
        "cdul.report",
        "cdul.reproduce",
        "cdul.sample",
        "cdul.benchmarks",
        "cdul.readout",
        "cdul.api",
        "cdul.serve",
    },
]
SEPARATE = (1, 2)  # the layers whose members must not import each other
MAX_LINES = 400


def source_files() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package's __init__) for cdul/ and the part folders."""
    found = {}
    for top, prefix in [("cdul", "cdul")] + [(p, f"cdul.{p}") for p in PARTS]:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT / top).with_suffix("")
            if "__pycache__" in rel.parts:
                continue
            is_pkg = rel.name == "__init__"
            parts = rel.parts[:-1] if is_pkg else rel.parts
            found[".".join((prefix, *parts))] = (path, is_pkg)
    return found


def imports(name: str, path: Path, is_pkg: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` one file imports, anywhere in it (absolute and relative imports)."""
    package = name if is_pkg else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import mod` needs the submodule; `from pkg import name`, the package
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def graph() -> dict[str, set[str]]:
    """Module -> the modules of cdul it imports."""
    files = source_files()
    return {name: imports(name, path, is_pkg, set(files)) for name, (path, is_pkg) in files.items()}


def area(module: str) -> str:
    """The unit the layers speak of: cdul itself, or cdul.<first component>."""
    return ".".join(module.split(".")[:2])


def layer(module: str) -> int:
    a = area(module)
    for i, members in enumerate(LAYERS):
        if a in members:
            return i
    raise AssertionError(f"{module} is in no layer: add {a} to LAYERS")


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in edges.items():
        for dst in targets:
            if area(src) == area(dst):
                continue
            if layer(dst) > layer(src):
                bad.append(f"{src} -> {dst} (a lower layer imports a higher one)")
            elif layer(dst) == layer(src) and layer(src) in SEPARATE:
                bad.append(f"{src} -> {dst} (parts of one layer import each other)")
    return sorted(bad)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_every_module_has_a_layer():
    for name in source_files():
        layer(name)


def test_layers_only_look_down():
    assert layer_violations(graph()) == []


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_checks_catch_violations():
    """The checks themselves: an upward import and a cycle are reported."""
    edges = {"cdul.store.zstore": {"cdul.extractor.job"}, "cdul.extractor.job": set()}
    assert layer_violations(edges) == ["cdul.store.zstore -> cdul.extractor.job (a lower layer imports a higher one)"]
    edges = {"cdul.kernels.a": {"cdul.store.b"}, "cdul.store.b": set()}
    assert "parts of one layer" in layer_violations(edges)[0]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


@pytest.mark.parametrize("folder", ["cdul", *PARTS, "tests"])
def test_no_source_file_over_the_limit(folder):
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((ROOT / folder).rglob("*.py"))
        if "__pycache__" not in p.parts and (n := _lines(p)) > MAX_LINES
    }
    assert long == {}, f"files over {MAX_LINES} lines (split them): {long}"
