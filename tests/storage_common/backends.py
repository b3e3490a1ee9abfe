"""Build a storage from a JSON-able spec, so child processes can open the parent's store.

A spec is ``{"plugin": "file" | "sqlite" | "s3", "options": {...}}``, the options being
the plugin's own (what ``storage_options`` would hold).
"""

from __future__ import annotations

import json
from typing import Any

from harness_kernel import SessionStorage


def make_storage(spec: dict[str, Any]) -> SessionStorage:
    plugin, options = spec["plugin"], spec["options"]
    if plugin == "file":
        from harness_kernel_file import FileOptions, FileStorage

        o = FileOptions(**options)
        return FileStorage(o.root, fsync=o.fsync, max_threads=o.max_threads)
    if plugin == "sqlite":
        from harness_kernel_sqlite import SqliteOptions, build

        return build(SqliteOptions(**options))
    if plugin == "s3":
        from harness_kernel_s3 import S3Options
        from harness_kernel_s3 import build as build_s3

        return build_s3(S3Options(**options))
    raise ValueError(f"unknown storage plugin {plugin!r}")


def dump_spec(plugin: str, **options: Any) -> str:
    return json.dumps({"plugin": plugin, "options": options})
