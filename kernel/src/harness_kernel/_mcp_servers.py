"""MCP servers declared on the store: ``mcp_servers`` is the ``mcp`` tool kit's ``servers``.

``create_session_store(mcp_servers=[...])`` and ``harness.toml``'s ``[[mcp_servers]]``
are a shorthand: the servers become the ``servers`` option of the ``mcp`` tool kit
(registered by the ``harness-kernel-mcp`` distribution), and the store's agent gets the
kit's tools as well as its own. The kit validates each entry (a stdio server with
``command``, or an HTTP server with ``url``); its problems are reported under
``mcp_servers[i]`` rather than under the kit's options, and a missing plugin says which
distribution provides it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from ._agent import Agent
from ._choices import PluginChoice
from ._tables import type_name

__all__ = ["KIT", "with_mcp_servers", "renamed"]

KIT: Final = "mcp"
_SERVERS: Final = "servers"
_UNDER_KIT: Final = f"tools.{KIT}.options.{_SERVERS}"
_KIT_PATH: Final = f"agent: tool kit '{KIT}'"


def with_mcp_servers(
    agent: Agent | None, tool_options: Mapping[str, Any] | None, servers: Any, errors: list[str]
) -> tuple[Agent | None, dict[str, Any]]:
    """The agent (with the ``mcp`` kit added) and the tool options (with the servers as
    the kit's ``servers``); unchanged when ``servers`` is empty or ``None``."""
    options = dict(tool_options or {})
    if servers is None or (isinstance(servers, Sequence) and not servers):
        return agent, options
    if isinstance(servers, str | Mapping) or not isinstance(servers, Sequence):
        errors.append(f"mcp_servers: expected an array of tables, got {type_name(servers)}")
        return agent, options
    given = options.get(KIT)
    table = dict(given.options if isinstance(given, PluginChoice) else given or {})
    if _SERVERS in table:
        errors.append(
            f"mcp_servers: the servers are given as {_UNDER_KIT} too; declare them in one place"
        )
        return agent, options
    table[_SERVERS] = list(servers)
    options[KIT] = table
    if agent is not None and KIT not in agent.tools:
        agent = attrs.evolve(agent, tools=(*agent.tools, KIT))
    return agent, options


def renamed(lines: Sequence[str]) -> list[str]:
    """Problems of the kit's ``servers`` as problems of ``mcp_servers``."""
    out = []
    for line in lines:
        if line.startswith(_UNDER_KIT):
            line = "mcp_servers" + line[len(_UNDER_KIT) :]
        elif line.startswith(_KIT_PATH) and "unknown" in line:
            line = (
                f"mcp_servers: no tool kit named '{KIT}' is installed; the harness-kernel-mcp "
                f"distribution provides it ({line[len(_KIT_PATH) + 2 :]})"
            )
        out.append(line)
    return out
