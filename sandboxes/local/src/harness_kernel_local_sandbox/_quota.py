"""The per-session disk quota: how much of the disk a work directory takes.

Usage is what ``du`` counts: the blocks allocated to every entry under the work
directory (files, directories, links; a sparse file counts what it really holds). It
is measured by walking the directory (without following links), which costs about a
microsecond or two per entry, after each command and when a write through the file
API would cross the quota; in between, writes through the file API are added to the
last figure. These functions block; the sandbox runs them in worker threads.
"""

from __future__ import annotations

import os
import stat

import attrs

__all__ = ["BLOCK", "Usage", "allocation", "measure"]

BLOCK = 4096
"""The allocation unit assumed for a file written through the file API."""


@attrs.frozen
class Usage:
    """Bytes allocated under the work directory, and the size of its largest file (of
    those changed since the time given to ``measure``)."""

    allocated: int
    largest_file: int


def allocation(size: int) -> int:
    """What a file of ``size`` bytes is assumed to take on disk."""
    return -(-size // BLOCK) * BLOCK


def measure(workdir: str, since: float | None) -> Usage:
    """Walk ``workdir`` and add up what it holds (entries that vanish meanwhile are skipped).

    ``since`` (a ``time.time()``): only files modified from then on count for the largest.
    """
    # File times come from a coarse kernel clock, a tick behind time.time().
    changed_after = -1.0 if since is None else since - 1.0
    allocated = largest = 0
    pending = [workdir]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    allocated += info.st_blocks * 512
                    if stat.S_ISDIR(info.st_mode):
                        pending.append(entry.path)
                    elif (
                        stat.S_ISREG(info.st_mode)
                        and info.st_size > largest
                        and info.st_mtime >= changed_after
                    ):
                        largest = info.st_size
        except OSError:  # removed, or unreadable (a command's chmod): not counted
            continue
    return Usage(allocated, largest)
