"""A cgroup per running command, for memory and process limits across its whole tree.

Where the host lets this process make cgroups (root on a v1 host, as the CI machines
are; a delegated v2 subtree), the sandbox makes one directory of its own beneath the
cgroup it runs in (``hk-<pid>-<random>``) and in it a pool of command cgroups
(``c0``, ``c1``, ...): one per command running at the same time, reused by the next
command once empty, so a command pays a few file reads rather than a mkdir and an
rmdir. Limits are written when they change. Counters (OOM kills, forks refused at
``pids.max``) cannot be reset, so a command's verdict compares them with what they
were before it started.

Nested beneath the host's own cgroup on purpose: a command never escapes a limit the
operator put on the host process.

These calls are cheap in-kernel file operations on cgroupfs (no disk), so they run on
the event loop.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import weakref
from collections.abc import Iterator

import attrs

__all__ = ["CgroupPool", "CgroupSlot", "Hierarchy", "detect"]

CONTROLLERS = ("memory", "pids")


@attrs.frozen
class Hierarchy:
    """A mounted cgroup hierarchy that serves ``controllers``, and this process's place in it."""

    version: int
    controllers: frozenset[str]
    directory: str
    """The cgroup directory this process belongs to (v2: or the operator's parent)."""


def _mounts() -> Iterator[tuple[str, str, str, str]]:
    """(mount root, mount point, fs type, super options) of each cgroup mount."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError:
        return
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        yield fields[3], fields[4].replace("\\040", " "), tail[0], tail[2]


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per hierarchy key (v1: its controllers; v2: ``""``)."""
    paths: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as file:
            for line in file.read().splitlines():
                _, controllers, path = line.split(":", 2)
                paths[controllers] = path
    except (OSError, ValueError):
        pass
    return paths


def _inside(mount_root: str, mount_point: str, path: str) -> str | None:
    if mount_root == "/":
        relative = path.lstrip("/")
    elif path == mount_root or path.startswith(mount_root.rstrip("/") + "/"):
        relative = path[len(mount_root) :].lstrip("/")
    else:
        return None  # our cgroup is outside what this mount shows
    return os.path.join(mount_point, relative) if relative else mount_point


def _read(path: str) -> str:
    with open(path, encoding="ascii") as file:
        return file.read()


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode("ascii"))
    finally:
        os.close(fd)


def detect(parent: str | None = None) -> list[Hierarchy]:
    """Where memory and pids cgroups can be made for commands, or ``[]``.

    ``parent``: a v2 cgroup directory the operator delegated to the sandbox (it must
    list ``memory`` and ``pids`` in ``cgroup.controllers``). Without it, v1 hierarchies
    mounted with those controllers, or the v2 hierarchy when this process's own cgroup
    already passes them to its children (``cgroup.subtree_control``; on a v2 host that
    is the root, as v2 forbids enabling controllers in a cgroup that holds processes).
    Whether the directories are writable is found out by ``CgroupPool.open``.
    """
    if parent is not None:
        try:
            available = set(_read(os.path.join(parent, "cgroup.controllers")).split())
        except OSError:
            return []
        wanted = frozenset(available & set(CONTROLLERS))
        return [Hierarchy(2, wanted, parent)] if wanted else []
    own = _own_cgroups()
    found: list[Hierarchy] = []
    served: set[str] = set()
    for mount_root, mount_point, fstype, options in _mounts():
        if fstype == "cgroup":
            controllers = frozenset(set(options.split(",")) & set(CONTROLLERS)) - served
            if not controllers:
                continue
            path = next((p for key, p in own.items() if controllers & set(key.split(","))), None)
            version = 1
        else:
            path = own.get("")
            if path is None:
                continue
            directory = _inside(mount_root, mount_point, path)
            try:
                enabled = set(_read(os.path.join(directory, "cgroup.subtree_control")).split()) if directory else set()
            except OSError:
                continue
            controllers = frozenset(enabled & set(CONTROLLERS)) - served
            if not controllers:
                continue
            version = 2
        if path is None:
            continue
        directory = _inside(mount_root, mount_point, path)
        if directory is None or not os.path.isdir(directory):
            continue
        found.append(Hierarchy(version, controllers, directory))
        served |= controllers
    return found


@attrs.define
class CgroupSlot:
    """One command cgroup (a directory per hierarchy) and the limits last written to it."""

    directories: dict[str, str]
    """Directory per controller (v1: two directories; v2: the same one twice)."""
    versions: dict[str, int]
    """cgroup version per controller."""
    written: dict[str, int | None] = attrs.field(factory=dict)
    """The limit last written per controller (absent: never written)."""

    @property
    def procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in sorted(set(self.directories.values()))]

    def configure(self, memory: int | None, processes: int | None) -> None:
        """Write the limits (``None``: no limit) where they differ from the last ones."""
        memory_dir = self.directories.get("memory")
        if memory_dir is not None and ("memory" not in self.written or self.written["memory"] != memory):
            if self.versions["memory"] == 1:
                swap = os.path.join(memory_dir, "memory.memsw.limit_in_bytes")
                has_swap = os.path.exists(swap)
                if has_swap:  # memory+swap must stay >= memory: lift it, set memory, lower it
                    _write(swap, "-1")
                _write(os.path.join(memory_dir, "memory.limit_in_bytes"), "-1" if memory is None else str(memory))
                if has_swap and memory is not None:
                    _write(swap, str(memory))
            else:
                _write(os.path.join(memory_dir, "memory.max"), "max" if memory is None else str(memory))
                swap = os.path.join(memory_dir, "memory.swap.max")
                if os.path.exists(swap):
                    _write(swap, "max" if memory is None else "0")
            self.written["memory"] = memory
        pids_dir = self.directories.get("pids")
        if pids_dir is not None and ("pids" not in self.written or self.written["pids"] != processes):
            _write(os.path.join(pids_dir, "pids.max"), "max" if processes is None else str(processes))
            self.written["pids"] = processes

    def counters(self) -> tuple[int, int]:
        """(OOM kills, forks refused at ``pids.max``) since the cgroup was made."""
        oom = refused = 0
        memory_dir = self.directories.get("memory")
        if memory_dir is not None:
            name = "memory.oom_control" if self.versions["memory"] == 1 else "memory.events"
            oom = _counter(_read(os.path.join(memory_dir, name)), "oom_kill")
        pids_dir = self.directories.get("pids")
        if pids_dir is not None:
            refused = _counter(_read(os.path.join(pids_dir, "pids.events")), "max")
        return oom, refused

    def pids(self) -> list[int]:
        """The live processes in the cgroup. Every process of the command joins every
        hierarchy, so one ``cgroup.procs`` tells them all."""
        try:
            return [int(p) for p in _read(self.procs_files[0]).split()]
        except OSError:
            return []

    def occupied(self) -> bool:
        """Whether live processes are still in the cgroup (the next command must not share it)."""
        return bool(self.pids())

    def lingering(self) -> int:
        """Dead processes still counted by ``pids.current`` because nobody reaped them yet.

        An orphan is reaped by the host's init, which some (a container's, a VM agent)
        do late; bubblewrap leaves one such orphan per command. They hold no memory,
        only a slot under ``pids.max``, which the next command gets on top of its limit.
        """
        pids_dir = self.directories.get("pids")
        if pids_dir is None:
            return 0
        try:  # called on a slot just acquired, so without live processes
            return int(_read(os.path.join(pids_dir, "pids.current")))
        except (OSError, ValueError):
            return 0

    def kill(self) -> None:
        """``SIGKILL`` every process in the cgroup (one pass; new forks need another)."""
        listed = self.pids()
        if not listed:
            return
        for controller, directory in self.directories.items():
            kill_file = os.path.join(directory, "cgroup.kill")
            if self.versions[controller] == 2 and os.path.exists(kill_file):
                with contextlib.suppress(OSError):
                    _write(kill_file, "1")
                    return
        # No cgroup.kill: signal through pidfds, and only processes still listed after
        # their pidfd was opened, so a pid reused by an unrelated process is never hit.
        pidfds: dict[int, int] = {}
        try:
            for pid in listed:
                with contextlib.suppress(OSError):
                    pidfds[pid] = os.pidfd_open(pid)
            still = set(self.pids())
            for pid, fd in pidfds.items():
                if pid in still:
                    with contextlib.suppress(OSError):
                        signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            for fd in pidfds.values():
                os.close(fd)

    def remove(self) -> bool:
        removed = True
        for directory in set(self.directories.values()):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError:
                removed = False
        return removed


def _remove_dirs(directories: list[str]) -> None:
    for directory in reversed(directories):
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def _counter(text: str, key: str) -> int:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


class CgroupPool:
    """The sandbox's own cgroup directories and its pool of command cgroups."""

    def __init__(self, hierarchies: list[Hierarchy], parents: dict[str, str]) -> None:
        self.hierarchies = hierarchies
        self._parents = parents  # controller -> our hk-... directory
        self._free: list[CgroupSlot] = []
        self._busy: set[int] = set()
        self._leftover: list[CgroupSlot] = []
        self._next = 0
        self._closed = False
        # Every directory made, parents first: removed at close, or when the pool is
        # collected or the interpreter exits without a close (a test, a crashing host).
        self._made: list[str] = sorted(set(parents.values()))
        self._finalizer = weakref.finalize(self, _remove_dirs, self._made)

    @property
    def controllers(self) -> dict[str, int]:
        """Controller -> cgroup version in use."""
        return {c: h.version for h in self.hierarchies for c in h.controllers}

    @classmethod
    def open(cls, hierarchies: list[Hierarchy]) -> tuple[CgroupPool | None, str]:
        """Make the sandbox's directories; ``(None, why)`` when the host does not allow it."""
        name = f"hk-{os.getpid()}-{secrets.token_hex(4)}"
        parents: dict[str, str] = {}
        made: list[str] = []
        usable: list[Hierarchy] = []
        problems: list[str] = []
        for hierarchy in hierarchies:
            directory = os.path.join(hierarchy.directory, name)
            try:
                os.mkdir(directory, 0o755)
                made.append(directory)
                if hierarchy.version == 2:
                    wanted = " ".join(f"+{c}" for c in sorted(hierarchy.controllers))
                    if hierarchy.directory != directory:
                        enabled = set(_read(os.path.join(hierarchy.directory, "cgroup.subtree_control")).split())
                        if not hierarchy.controllers <= enabled:
                            _write(os.path.join(hierarchy.directory, "cgroup.subtree_control"), wanted)
                    _write(os.path.join(directory, "cgroup.subtree_control"), wanted)
            except OSError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                problems.append(f"cgroup v{hierarchy.version} {'+'.join(sorted(hierarchy.controllers))} "
                                f"at {hierarchy.directory}: {reason}")
                continue
            usable.append(hierarchy)
            for controller in hierarchy.controllers:
                parents[controller] = directory
        if not usable:
            for directory in reversed(made):
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
            return None, "; ".join(problems) or "no cgroup hierarchy with memory or pids controllers"
        pool = cls(usable, parents)
        try:  # one slot up front: proves the limits files can be written
            slot = pool.acquire()
            slot.configure(64 << 20, 64)
            pool.release(slot)
        except OSError as exc:
            pool.close()
            return None, f"cannot set cgroup limits: {exc.strerror or exc}"
        return pool, ""

    def acquire(self) -> CgroupSlot:
        """A free command cgroup (made when none is free). Raises ``OSError``."""
        for slot in list(self._leftover):
            if not slot.occupied():
                self._leftover.remove(slot)
                self._free.append(slot)
        if self._free:
            slot = self._free.pop()
        else:
            index, self._next = self._next, self._next + 1
            directories: dict[str, str] = {}
            made: list[str] = []
            try:
                for controller, parent in self._parents.items():
                    directory = os.path.join(parent, f"c{index}")
                    if directory not in made:
                        try:
                            os.mkdir(directory, 0o755)
                        except FileExistsError:
                            pass
                        made.append(directory)
                        self._made.append(directory)
                    directories[controller] = directory
            except OSError:
                for directory in made:
                    with contextlib.suppress(OSError):
                        os.rmdir(directory)
                raise
            slot = CgroupSlot(directories, self.controllers)
        self._busy.add(id(slot))
        return slot

    def release(self, slot: CgroupSlot) -> None:
        """Return an empty slot to the pool; one that still holds processes is set aside."""
        self._busy.discard(id(slot))
        if self._closed:
            slot.kill()
            slot.remove()
            self._remove_parents()
        elif slot.occupied():
            self._leftover.append(slot)
        else:
            self._free.append(slot)

    def close(self) -> None:
        """Remove every directory the pool made (a busy or non-empty one is killed first)."""
        for slot in [*self._free, *self._leftover]:
            slot.kill()
            slot.remove()
        self._free.clear()
        self._leftover.clear()
        self._closed = True
        self._remove_parents()

    def _remove_parents(self) -> None:
        if self._busy:
            return  # a command still unwinding removes them when it releases its slot
        _remove_dirs(self._made)  # best effort: a cgroup still dying is left to the finalizer
