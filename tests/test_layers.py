"""The layer picture (docs/architecture.md) as a test: `cams/` is plain Python that never imports Dagster
or the code location; the code location's floors import only downwards; no module imports back into
a module that imports it (directly or through others)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHELL = ("assets", "resources", "pipelines")


def _modules() -> dict[str, Path]:
    found = {}
    for top in ("cams", *SHELL):
        for path in (REPO / top).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(path: Path, module: str) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import in the file."""
    tree = ast.parse(path.read_text())
    top_level = {id(n) for n in tree.body}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out += [(f"{base}.{a.name}", id(node) in top_level) for a in node.names]
            out.append((base, id(node) in top_level))
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_cams_never_imports_dagster_or_the_code_location() -> None:
    bad = []
    for module, path in _modules().items():
        if not module.startswith("cams"):
            continue
        for name, at_top in _imports(path, module):
            root = name.split(".")[0]
            if root in ("dagster", "dagster_postgres", "dagster_webserver"):
                bad.append(f"{module} imports {name}")
            elif root in SHELL and not (module == "cams.cli" and root == "pipelines" and not at_top):
                bad.append(f"{module} imports {name}")  # only `cams run`/`cams demo` reach the shell, lazily
    assert bad == []


def test_assets_and_resources_never_import_pipelines() -> None:
    bad = [
        f"{module} imports {name}"
        for module, path in _modules().items()
        if module.split(".")[0] in ("assets", "resources")
        for name, _ in _imports(path, module)
        if name.split(".")[0] == "pipelines"
    ]
    assert bad == []


def test_no_import_cycle() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for name, _ in _imports(path, module):
            target = _resolve(name, modules)
            if target and target != module and not module.startswith(f"{target}."):
                graph[module].add(target)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert [" -> ".join(c) for c in cycles] == []
