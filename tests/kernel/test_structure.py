"""The kernel's shape: imports point one way, modules stay small, the public surface is
exactly what the docs name, and every public module's ``__all__`` is complete."""

from __future__ import annotations

import ast
import importlib
import inspect
import types
import typing
from pathlib import Path

import pytest

import harness_kernel
from harness_kernel import Session, SessionStore

KERNEL = Path(harness_kernel.__file__).parent
MAX_LINES = 600

# DESIGN section 3, plus what docs/embedding.md and docs/human-in-the-loop.md name.
SESSION_NAMES = {
    "abort", "approve", "btw", "close", "closed", "current_run", "deny", "display_state", "follow_up",
    "grant_category", "grant_tool", "grants", "history", "id", "is_running", "labels", "last_seq", "mode",
    "model", "model_override", "pending_approvals", "pending_suspensions", "queued_follow_ups", "resume",
    "revoke", "run_events", "runs", "send", "set_model", "state", "steer", "stream", "switch_mode",
    "update_state", "usage",
    # metadata for people (docs/embedding.md, "Titles, tags and pins")
    "pinned", "preview", "set_metadata", "tags", "title",
    # compaction (docs/messages.md, "Compaction")
    "compact",
}
STORE_NAMES = {
    "aclose", "agent", "approve", "clear", "close", "closed", "create", "delete", "deny", "get",
    "get_or_create", "list", "log_sinks", "pending_approvals", "plugins", "resume", "send", "storage",
    "stream", "subscribe",
}
PUBLIC_MODULES = (
    "harness_kernel", "harness_kernel.asyncio", "harness_kernel.codec", "harness_kernel.config",
    "harness_kernel.contracts", "harness_kernel.errors", "harness_kernel.events", "harness_kernel.hookspecs",
    "harness_kernel.http", "harness_kernel.server", "harness_kernel.storage", "harness_kernel.sync", "harness_kernel.testing",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(KERNEL.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every kernel module ``path`` imports, at the top or inside a function."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c.startswith("harness_kernel") and _is_module(c))
    found.discard(name)
    return found


def _is_module(dotted: str) -> bool:
    relative = Path(*dotted.split("."))
    return (KERNEL.parent / relative).with_suffix(".py").exists() or (KERNEL.parent / relative / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in KERNEL.rglob("*.py")}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle through modules other than a package importing its own submodules."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target.startswith(node + "."):  # a package's __init__ re-exporting its submodules
                continue
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_kernel_imports_have_no_cycle() -> None:
    """No kernel module imports one that (directly or not) imports it back, counting
    imports hidden inside functions."""
    assert _cycle(_graph()) is None


def test_the_cycle_check_finds_a_cycle() -> None:
    """The check itself fails on a circle (so the test above can fail)."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_core_imports_point_one_way() -> None:
    """_store -> _session -> _run -> _log -> _runtime, never back."""
    graph = _graph()
    order = ["_store", "_session", "_run", "_end", "_owner", "_step", "_log", "_fold", "_runtime"]
    for index, lower in enumerate(order):
        for upper in order[:index]:
            assert f"harness_kernel.{upper}" not in graph[f"harness_kernel.{lower}"], f"{lower} imports {upper}"


@pytest.mark.parametrize("path", sorted(KERNEL.rglob("*.py")), ids=lambda p: str(p.relative_to(KERNEL)))
def test_every_kernel_module_is_small(path: Path) -> None:
    """A module over ~600 lines is a sign it does more than one thing."""
    assert len(path.read_text().splitlines()) <= MAX_LINES


def _public_names(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_session_exposes_exactly_the_documented_names() -> None:
    """No plumbing on the public handle: a host cannot append raw events."""
    assert _public_names(Session) == SESSION_NAMES


def test_store_exposes_exactly_the_documented_names() -> None:
    assert _public_names(SessionStore) == STORE_NAMES


def _defined_names(module: types.ModuleType) -> set[str]:
    """Public names a module defines: at its top level, or (for a package or facade) in
    its private submodules."""
    source = inspect.getsource(module)
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    prefix = module.__name__ + "._"
    for name, value in vars(module).items():
        if getattr(value, "__module__", "").startswith(prefix) and not isinstance(value, types.ModuleType):
            names.add(name)
    return {
        n for n in names
        if not n.startswith("_") and n != "TYPE_CHECKING" and not isinstance(getattr(module, n, None), typing.TypeVar)
    }


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_complete_and_sorted(name: str) -> None:
    """Every public name a public module defines is in its ``__all__``, sorted."""
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    missing = _defined_names(module) - set(exported)
    assert not missing, f"{name}: defined but not exported: {sorted(missing)}"
