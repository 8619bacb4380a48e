"""Report import circles among the modules of ortgpu/, providers/, memory/ and profiling/.

Every import counts, also one written inside a function (a deferred import still ties the
two modules together).  Exit status 1 and one line per circle when there is any; 0 and
"no import circles" otherwise.  ``python scripts/import_cycles.py [--top-level-only]``.
"""
from __future__ import annotations

import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# folder -> the package name it installs as (pyproject's package-dir)
PACKAGES = {"ortgpu": "ortgpu", "providers": "ortgpu.providers", "memory": "ortgpu.memory",
            "profiling": "ortgpu.profiling"}


def module_files() -> dict[str, pathlib.Path]:
    """Module name -> file, for every .py file of the packages."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package] + parts)] = path
    return out


def imported_names(path: pathlib.Path, module: str, top_level_only: bool, modules) -> set[str]:
    """Modules `module` imports: `from a import b` names a.b where that is a module (a package
    importing its submodule is initialization, not a dependency), else a."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    is_package = path.name == "__init__.py"
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".")
                anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                names.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return names


def import_graph(top_level_only: bool = False) -> dict[str, set[str]]:
    files = module_files()
    graph = {}
    for module, path in files.items():
        targets = set()
        for name in imported_names(path, module, top_level_only, files):
            if name in files and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main(argv: list[str]) -> int:
    graph = import_graph(top_level_only="--top-level-only" in argv)
    found = circles(graph)
    for component in found:
        print(f"import circle of {len(component)} modules: {' <-> '.join(component)}")
    if not found:
        print("no import circles")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
