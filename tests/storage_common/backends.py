"""Build a storage from a JSON-able spec, so child processes can open the parent's store.

A spec is ``{"plugin": "file" | "sqlite" | "s3" | "postgres", "options": {...}}``, the options being
the plugin's own (what ``storage_options`` would hold).

A postgres spec may add ``"settle": "<application_name>"`` (the DSN naming the same
``application_name``): the storage's first call then waits until no other backend of
that name is left. A SIGKILLed client's statement still runs to its end on the server,
so a check made at once could see its commit land between two reads.
"""

from __future__ import annotations

import json
from typing import Any

from harness_kernel import SessionStorage

IMPLEMENTATIONS = {
    "file": ("harness_kernel_file._storage",),
    "sqlite": ("harness_kernel_sqlite._storage",),
    "s3": ("harness_kernel_s3._storage", "harness_kernel_s3._client", "boto3", "botocore.config"),
    "postgres": ("harness_kernel_postgres._storage",),
}
"""The modules a backend's storage loads when it is built (the plugins import them
lazily), for a fork server to import once instead of in every forked child."""


def preload(spec: dict[str, Any]) -> None:
    """Import what ``make_storage(spec)`` will need, building nothing (no thread, no
    connection), so a process that forks afterwards hands it to every child."""
    import importlib

    for module in IMPLEMENTATIONS.get(spec["plugin"], ()):
        importlib.import_module(module)


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
    if plugin == "postgres":
        from harness_kernel_postgres import PostgresOptions
        from harness_kernel_postgres import build as build_postgres

        storage = build_postgres(PostgresOptions(**options))
        if spec.get("settle"):
            return _settled(storage, spec["settle"])
        return storage
    raise ValueError(f"unknown storage plugin {plugin!r}")


def dump_spec(plugin: str, **options: Any) -> str:
    return json.dumps({"plugin": plugin, "options": options})


def _settled(storage: Any, application_name: str) -> SessionStorage:
    """``storage`` whose first call waits for the other backends named ``application_name``
    to end (see the module docstring)."""
    import trio

    settled = False

    async def settle() -> None:
        nonlocal settled
        if settled:
            return
        with trio.fail_after(60):
            while True:
                def others() -> int:
                    with storage.connect() as conn:
                        row = conn.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()",
                            (application_name,),
                        ).fetchone()
                        return int(row[0])

                if await trio.to_thread.run_sync(others) == 0:
                    break
                await trio.sleep(0.01)
        settled = True

    def wrap(name: str) -> Any:
        method = getattr(storage, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            await settle()
            return await method(*args, **kwargs)

        return call

    for name in ("create", "load", "save", "append", "read", "last_seq", "list", "delete"):
        setattr(storage, name, wrap(name))
    return storage  # type: ignore[no-any-return]
