"""The package's plan holds: imports only run down the path of a call, never in a circle.

Read from the code's own imports (module level and inside functions alike), so a new
module that reaches back up fails here, not in a newcomer's head.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"

# Lowest first. A module may import its own package and any lower layer; packages
# that share a layer (the fronts, the agent services) do not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__",),
    ("core",),
    ("rating",),
    ("configkit",),
    ("config_fronts", "config_jobs"),
    ("config",),
    ("db",),
    ("balance",),
    ("settlement",),
    ("authz",),
    ("calls",),
    ("radius", "sip", "agents"),
    ("runtime",),
    ("api",),
    ("loadgen",),
    ("cli",),
    ("__main__",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# What the package root may hold besides its sub-packages: entry points and config.
ROOT_MODULES = {"__init__", "__main__", "cli", "config", "config_fronts", "config_jobs", "configkit"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py")}


def _imports(module: str) -> set[str]:
    """The gateway modules ``module`` imports (a package where no module is named)."""
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "gateway":
                continue
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "gateway")
    return found - {module}


GRAPH = {module: _imports(module) for module in MODULES}


def _room(module: str) -> str:
    """The top-level package or root module a module lives in."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_room_has_a_layer() -> None:
    assert {_room(m) for m in MODULES} <= set(RANK)


def test_the_root_holds_only_entry_points_and_config() -> None:
    loose = {p.stem for p in PACKAGE.glob("*.py")}
    assert loose <= ROOT_MODULES, sorted(loose - ROOT_MODULES)


def test_no_import_runs_back_up_or_sideways() -> None:
    wrong = sorted(
        f"{source} -> {target}"
        for source, targets in GRAPH.items()
        for target in targets
        if _room(target) != _room(source) and RANK[_room(target)] >= RANK[_room(source)]
    )
    assert not wrong, "\n".join(wrong)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH.get(node, ()):
            if nxt not in MODULES:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(MODULES):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_in_a_circle() -> None:
    assert _cycles() == []


@pytest.mark.parametrize(
    ("source", "target"),
    [("gateway.config", "gateway.authz"), ("gateway.authz.directory", "gateway.balance")],
)
def test_the_imports_the_layout_step_removed_stay_gone(source: str, target: str) -> None:
    assert not any(t == target or t.startswith(target + ".") for t in GRAPH[source])


def test_the_exception_tree_at_the_top_of_core_errors_names_every_gateway_error() -> None:
    import importlib

    from gateway.core import errors

    for module in MODULES:
        if not module.endswith("__main__"):
            importlib.import_module(module)
    pending, seen = [errors.GatewayError], set()
    while pending:
        cls = pending.pop()
        seen.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    doc = errors.__doc__ or ""
    assert sorted(name for name in seen if name not in doc) == []
