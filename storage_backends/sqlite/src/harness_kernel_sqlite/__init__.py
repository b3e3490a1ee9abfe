"""harness-kernel-sqlite: session storage in one SQLite database (plugin name ``sqlite``).

::

    create_session_store(agent=agent, storage="sqlite", storage_options={"path": "sessions.db"})

WAL mode; ``append`` and ``save`` compare and write inside one ``BEGIN IMMEDIATE``
transaction, so they are fenced between processes sharing the file; listing and label
filters are served by indexes; ``path=":memory:"`` gives a private in-memory database for
tests. See docs/storage/sqlite.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from harness_kernel import hookimpl, lazy_exports
from harness_kernel.hookspecs import Register

from ._schema import MIGRATIONS, SCHEMA_VERSION, Synchronous

if TYPE_CHECKING:
    from ._storage import SqliteStorage

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteOptions", "SqliteStorage", "Synchronous"]


@attrs.define
class SqliteOptions:
    """Options of the ``sqlite`` storage plugin."""

    path: str
    """Database file (parent directories are created), or ``":memory:"``."""
    busy_timeout_ms: int = attrs.field(default=5000, validator=attrs.validators.ge(0))
    """How long a writer waits for another process's write transaction."""
    synchronous: Synchronous = "full"
    """SQLite ``PRAGMA synchronous``: ``full`` makes every commit durable before it returns."""
    max_connections: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    """Worker threads (each with its own connection) running queries at once."""


# The storage (and the codec it uses) loads when one is built, not when the plugin is
# imported: every command imports every installed plugin to list it.
_MODULE_OF = {"SqliteStorage": "._storage"}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)


def build(options: SqliteOptions) -> SqliteStorage:
    from ._storage import SqliteStorage

    return SqliteStorage(
        options.path,
        busy_timeout_ms=options.busy_timeout_ms,
        synchronous=options.synchronous,
        max_connections=options.max_connections,
    )


@hookimpl
def harness_kernel_storage(register: Register) -> None:
    register("sqlite", build, options=SqliteOptions)
