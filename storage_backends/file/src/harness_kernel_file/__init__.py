"""harness-kernel-file: session storage in plain files (plugin name ``file``).

::

    create_session_store(agent=agent, storage="file", storage_options={"root": "sessions"})

A directory per session under ``root``; the event log is append-only JSON lines fsynced
before ``append`` returns; the record is replaced atomically; writers from several
processes are fenced with ``fcntl.flock``. See docs/storage/file.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from harness_kernel import hookimpl, lazy_exports
from harness_kernel.hookspecs import Register

from ._names import decode_id, encode_id

if TYPE_CHECKING:
    from ._storage import LAYOUT_VERSION, FileStorage

__all__ = ["LAYOUT_VERSION", "FileOptions", "FileStorage", "decode_id", "encode_id"]


@attrs.define
class FileOptions:
    """Options of the ``file`` storage plugin."""

    root: str
    """Directory holding every session (created if missing)."""
    fsync: bool = True
    """fsync the log and records before returning. ``False`` only for throwaway data."""
    max_threads: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    """Worker threads doing file I/O at once."""


# The storage (and the codec it uses) loads when one is built, not when the plugin is
# imported: every command imports every installed plugin to list it.
_MODULE_OF = {"FileStorage": "._storage", "LAYOUT_VERSION": "._storage"}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)


def build(options: FileOptions) -> FileStorage:
    from ._storage import FileStorage

    return FileStorage(options.root, fsync=options.fsync, max_threads=options.max_threads)


@hookimpl
def harness_kernel_storage(register: Register) -> None:
    register("file", build, options=FileOptions)
