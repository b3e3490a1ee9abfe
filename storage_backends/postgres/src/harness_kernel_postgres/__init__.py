"""harness-kernel-postgres: session storage in PostgreSQL (plugin name ``postgres``).

::

    create_session_store(agent=agent, storage="postgres",
                         storage_options={"dsn": os.environ["DATABASE_URL"]})

psycopg 3's synchronous API in trio worker threads, with a connection pool as large as
the thread limiter. ``append`` and ``save`` compare and write in one statement, fenced
across hosts; events are keyed by ``(session_id, seq)``; the plugin creates its tables
and migrates them forward; ``watch`` announces appends through ``LISTEN``/``NOTIFY``.
See docs/storage/postgres.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from harness_kernel import hookimpl, lazy_exports
from harness_kernel.hookspecs import Register

from ._names import channel_name, valid_schema

if TYPE_CHECKING:
    from ._schema import MIGRATIONS, SCHEMA_VERSION, migrate, schema_version
    from ._storage import PostgresStorage

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "PostgresOptions",
    "PostgresStorage",
    "build",
    "channel_name",
    "migrate",
    "schema_version",
]


def _schema(instance: object, attribute: object, value: str) -> None:
    valid_schema(value)


@attrs.define
class PostgresOptions:
    """Options of the ``postgres`` storage plugin."""

    dsn: str = attrs.field(metadata={"secret": True})
    """libpq connection string or URL; in ``harness.toml`` write ``"${DATABASE_URL}"``."""
    schema: str = attrs.field(default="harness_kernel", validator=_schema)
    """Schema holding the tables (created if missing); several stores may share a
    database under different schemas."""
    pool_size: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    """Connections in the pool, and worker threads running statements at once."""
    statement_timeout_ms: int = attrs.field(default=30_000, validator=attrs.validators.ge(0))
    """PostgreSQL ``statement_timeout`` of every connection (0: none)."""
    connect_timeout_s: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    """How long a call waits for a connection (a new one, or one from the pool)."""
    retry_attempts: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    """Tries per call, the first included, when the connection is lost under it."""
    retry_base_delay_ms: int = attrs.field(default=50, validator=attrs.validators.ge(0))
    retry_max_delay_ms: int = attrs.field(default=2000, validator=attrs.validators.ge(0))
    max_watches: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    """Worker threads that watches use at once to connect and catch up."""


# psycopg loads when a storage is built (or one of these names is used), not when the
# plugin is imported: every command imports every installed plugin to list it.
_MODULE_OF = {
    "MIGRATIONS": "._schema",
    "SCHEMA_VERSION": "._schema",
    "PostgresStorage": "._storage",
    "migrate": "._schema",
    "schema_version": "._schema",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)


def build(options: PostgresOptions) -> PostgresStorage:
    from ._storage import PostgresStorage

    return PostgresStorage(
        options.dsn,
        schema=options.schema,
        pool_size=options.pool_size,
        statement_timeout_ms=options.statement_timeout_ms,
        connect_timeout_s=options.connect_timeout_s,
        retry_attempts=options.retry_attempts,
        retry_base_delay_ms=options.retry_base_delay_ms,
        retry_max_delay_ms=options.retry_max_delay_ms,
        max_watches=options.max_watches,
    )


@hookimpl
def harness_kernel_storage(register: Register) -> None:
    register("postgres", build, options=PostgresOptions)
