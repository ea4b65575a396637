"""The package layout: no import cycle between spyderd's packages, few top-level modules.

Imports are read with `ast` (every `import` anywhere in a module, lazy ones included), so a
cycle hidden inside a function body fails here too.
"""

from __future__ import annotations

import ast
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "spyderd"
MAX_TOP_LEVEL_MODULES = 6


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, name: str) -> set[str]:
    """Absolute names of the spyderd modules `path` imports (relative imports resolved)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join([*pkg, base] if base else pkg)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m == "spyderd" or m.startswith("spyderd.")}


def package_of(module: str) -> str | None:
    """`spyderd.graph.index` -> `graph`; a top-level module is its own unit."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def package_graph() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the modules whose imports make that edge."""
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, dict[str, list[str]]] = {}
    for name, path in modules.items():
        src = package_of(name)
        for target in imported(path, name):
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]  # `from pkg.mod import func`
            dst = package_of(target)
            if src and dst and dst != src:
                edges.setdefault(src, {}).setdefault(dst, []).append(name)
    return edges


def find_cycle(edges: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle as a list of packages (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(edges.get(n, {})):
            if state.get(m) == 1:
                return [*path[path.index(m):], m]
            if m not in state and (c := visit(m)):
                return c
        path.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_import_cycle_between_packages():
    edges = package_graph()
    cycle = find_cycle(edges)
    if cycle:
        why = [f"{a} -> {b} (in {', '.join(sorted(set(edges[a][b])))})"
               for a, b in pairwise(cycle)]
        raise AssertionError("import cycle between packages:\n  " + "\n  ".join(why))


def test_cycle_finder_sees_a_cycle():
    edges = {"a": {"b": ["spyderd.a.x"]}, "b": {"c": ["spyderd.b.y"]}, "c": {"a": ["spyderd.c"]}}
    assert find_cycle(edges) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": ["spyderd.a"]}, "b": {}}) is None


def test_relative_and_lazy_imports_are_seen(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("from . import sib\ndef f():\n    from spyderd.graph import Store\n")
    got = imported(mod, "spyderd.ctl.m")
    assert {"spyderd.ctl.sib", "spyderd.graph", "spyderd.graph.Store"} <= got


def test_few_top_level_modules():
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
