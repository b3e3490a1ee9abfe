"""``harness-kernel plugins``: the plugin listing, on the registry alone.

Without a configuration file it imports no more than the registry and the plugins'
entry points (which import their heavy dependencies only when a component is built), so
it answers as fast as ``--help``. With one, the file is resolved and the registry it was
resolved against is the one listed (the plugins are loaded once), followed by the tools
of the tool kits the agent uses (``_kits``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

import attrs

from .._plugins import PluginRegistry
from ._exit import EXIT_FAILED, EXIT_OK
from ._plain import print_json, table

if TYPE_CHECKING:
    from ..config import HarnessConfig

__all__ = ["plugins"]


def _loaded(args: argparse.Namespace) -> HarnessConfig | None:
    if not args.config_given and not os.path.exists(args.config):
        return None  # no file: the environment's plugins, as load_config would find them
    from ..config import load_config
    from ..errors import ConfigFileError

    try:
        return load_config(args.config)
    except ConfigFileError as exc:
        if args.config_given or "no such file" not in str(exc):
            sys.stderr.write(f"note: listing without the configuration ({exc.errors[0]})\n")
        return None


def plugins(args: argparse.Namespace) -> int:
    loaded = _loaded(args)
    if loaded is None:
        registry, kits, problems = PluginRegistry(), [], []
    else:
        from ._kits import kit_problems, list_tool_kits

        registry = loaded.registry or PluginRegistry(
            plugins=loaded.plugin_objects,
            strict=loaded.strict_plugins,
            autoload=loaded.autoload_plugins,
        )
        kits = [] if args.no_tools else list_tool_kits(loaded, args.tools_timeout)
        problems = kit_problems(kits)
    for problem in problems:
        sys.stderr.write(f"error: {problem}\n")
    rows = registry.listing()
    if args.json:
        for row in rows:
            print_json(attrs.asdict(row))
    else:
        table(
            ("KIND", "NAME", "PLUGIN", "DISTRIBUTION", "VERSION", "STATUS", "ERROR"),
            [
                (
                    r.kind,
                    r.name,
                    r.plugin,
                    r.distribution or "-",
                    r.version or "-",
                    r.status,
                    r.error or "",
                )
                for r in rows
            ],
            sys.stdout,
        )
    if kits:
        from ._kits import print_tool_kits

        print_tool_kits(kits, args, sys.stdout)
    return EXIT_FAILED if problems else EXIT_OK
