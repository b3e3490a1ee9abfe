"""The tool kits a configuration uses, built to list their tools (``plugins``, ``config check``).

A kit such as ``mcp`` starts servers to learn its tools, so building one can take a
while or fail: each kit is built in a worker thread under ``--tools-timeout``, and
closed again (its servers stopped) once listed. MCP tools carry the category
``mcp:<server>``, so the listing groups a kit's tools by server.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import attrs

from .._plugins import PluginRegistry
from ..config import HarnessConfig
from ._output import print_json, table

__all__ = ["KitListing", "kit_problems", "list_tool_kits", "print_tool_kits"]


@attrs.frozen
class KitListing:
    """One kit's tools as ``(group, name, approval)`` rows, or why it could not be built."""

    kit: str
    tools: tuple[tuple[str, str, str], ...] = ()
    problem: str | None = None


def _approval(tool: Any) -> str:
    approval = getattr(tool, "approval", "auto")
    return approval if isinstance(approval, str) else "policy"


async def _build(registry: PluginRegistry, kit: str, settings: Any, timeout: float) -> KitListing:
    import trio

    factory = registry.get("tools", kit).factory
    built: Any = None
    try:
        with trio.move_on_after(timeout) as scope:
            built = await trio.to_thread.run_sync(
                factory if settings is None else lambda: factory(settings), abandon_on_cancel=True
            )
    except Exception as exc:
        text = str(exc).removeprefix(f"tool kit '{kit}': ") or type(exc).__name__
        return KitListing(kit, problem=text)
    if scope.cancelled_caught:
        return KitListing(kit, problem=f"it did not list its tools within {timeout:g} s")
    try:
        rows = tuple((getattr(t, "category", None) or "-", t.name, _approval(t)) for t in built)
    finally:
        close = getattr(built, "aclose", None)
        if callable(close):
            await close()
    return KitListing(kit, rows)


def list_tool_kits(loaded: HarnessConfig, timeout: float) -> list[KitListing]:
    """Build every tool kit the configuration's agent uses, list its tools, close it."""
    if not loaded.tools:
        return []
    import trio

    # The registry the file was resolved against: the plugins are not loaded again.
    registry = loaded.registry or PluginRegistry(
        plugins=loaded.plugin_objects,
        strict=loaded.strict_plugins,
        autoload=loaded.autoload_plugins,
    )

    async def build_all() -> list[KitListing]:
        return [
            await _build(registry, choice.plugin, choice.settings, timeout)
            for choice in loaded.tools.values()
        ]

    return trio.run(build_all)


def print_tool_kits(listings: list[KitListing], args: argparse.Namespace, out: TextIO) -> None:
    """The kits' tools as a table (``--json``: one object per tool), problems on stderr."""
    if getattr(args, "json", False) and out is sys.stdout:
        for listing in listings:
            for group, name, approval in listing.tools:
                print_json(
                    {
                        "kind": "tool",
                        "kit": listing.kit,
                        "group": group,
                        "name": name,
                        "approval": approval,
                    }
                )
    else:
        rows = [(k.kit, *row) for k in listings for row in k.tools]
        if rows:
            out.write("\n")
            table(("TOOL KIT", "SERVER / CATEGORY", "TOOL", "APPROVAL"), rows, out)


def kit_problems(listings: list[KitListing]) -> list[str]:
    return [f"tool kit '{k.kit}': {k.problem}" for k in listings if k.problem is not None]
