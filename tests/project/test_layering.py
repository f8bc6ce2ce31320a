"""The package's layers, checked on its import statements (module level and inside functions alike).

From the top: the entry points and commands, then training and test-time adaptation, then loading a
trained model (inference), the config check, data, and models; errors at the bottom, importable
from anywhere. A module may import its own package or a lower layer, never a higher one, and no two
modules import each other in a circle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

# Highest first; the packages (or top-level modules) of one row may not import each other.
LAYERS: list[set[str]] = [
    {"rnnlm", "cli"},
    {
        "applications",
        "evaluate",
        "evaluate_translation",
        "generate",
        "translate",
        "export",
        "serve",
    },
    {"training", "adaptation"},
    {"report"},
    {"inference"},
    {"config"},
    {"data"},
    {"models"},
    {"errors", "lazy", "schema", "cpu"},
]
LEVEL = {name: i for i, row in enumerate(LAYERS) for name in row}
# A model is plain PyTorch: anyone can reuse it without the framework.
MODELS_MAY_NOT_IMPORT = ("lightning", "pytorch_lightning", "hydra", "omegaconf")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The modules `path` imports; `from pkg import sub` names the submodule, not the package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in (SRC / "rnnlm").rglob("*.py")}
    return {name: _imports(path, set(paths)) for name, path in paths.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_package_has_a_layer() -> None:
    packages = {_package(m) for m in _graph()}
    assert packages <= set(LEVEL), f"give these a row in LAYERS: {sorted(packages - set(LEVEL))}"


def test_imports_only_go_down() -> None:
    upward = []
    for module, imports in _graph().items():
        for target in imports:
            if not target.startswith("rnnlm") or _package(target) == _package(module):
                continue
            if LEVEL[_package(target)] <= LEVEL[_package(module)]:
                upward.append(f"{module} imports {target}")
    assert not upward, upward


def test_no_import_circle() -> None:
    graph = _graph()
    edges: dict[str, set[str]] = defaultdict(set)
    for module, imports in graph.items():
        for target in imports:
            # `from rnnlm.data import X` reaches rnnlm.data's __init__, which may import its modules
            if target in graph and target != module:
                edges[module].add(target)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [])
            assert cycle is None, " -> ".join(cycle or [])


def test_models_import_no_framework() -> None:
    bad = [
        f"{module} imports {target}"
        for module, imports in _graph().items()
        if module.startswith("rnnlm.models")
        for target in imports
        if target.split(".")[0] in MODELS_MAY_NOT_IMPORT
    ]
    assert not bad, bad


def test_no_lazy_name_is_shadowed_by_a_submodule() -> None:
    """A package that exports names on first use (rnnlm.lazy) must not export a name that is also one
    of its modules: once that module is imported, the package attribute is the module, not the name."""
    import importlib

    clashes = []
    for init in (SRC / "rnnlm").rglob("__init__.py"):
        package = importlib.import_module(_module_name(init))
        for name in getattr(package, "_WHERE", {}):
            if (init.parent / f"{name}.py").exists() or (init.parent / name).is_dir():
                clashes.append(f"{package.__name__}.{name}")
    assert not clashes, clashes
