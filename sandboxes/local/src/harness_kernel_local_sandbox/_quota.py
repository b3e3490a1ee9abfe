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
TICK = 0.005
"""Seconds a file's modification time may lag the clock (a 250 Hz kernel tick)."""


@attrs.frozen
class Usage:
    """Bytes allocated under the work directory, and the files (inode, modification time)
    of exactly the size ``cap`` given to ``measure`` changed since the time given."""

    allocated: int
    at_cap: frozenset[tuple[int, int]] = frozenset()


def allocation(size: int) -> int:
    """What a file of ``size`` bytes is assumed to take on disk."""
    return -(-size // BLOCK) * BLOCK


def measure(workdir: str, since: float | None = None, cap: int | None = None) -> Usage:
    """Walk ``workdir`` and add up what it holds (entries that vanish meanwhile are skipped).

    With ``cap`` and ``since`` (a ``time.time()``): also the regular files of ``cap`` bytes
    modified from then on, the ones a file size limit of ``cap`` may have cut.
    """
    # File times may come from a coarse kernel clock, up to a tick behind time.time().
    changed_after = -1.0 if since is None else since - TICK
    allocated = 0
    at_cap: set[tuple[int, int]] = set()
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
                        cap is not None
                        and info.st_size == cap
                        and stat.S_ISREG(info.st_mode)
                        and info.st_mtime >= changed_after
                    ):
                        at_cap.add((info.st_ino, info.st_mtime_ns))
        except OSError:  # removed, or unreadable (a command's chmod): not counted
            continue
    return Usage(allocated, frozenset(at_cap))
