"""``LocalSandbox``: one work directory per session on this host, commands as subprocesses."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar, final

import trio

from harness_kernel import validate_session_id
from harness_kernel.contracts import (
    DirEntry,
    ExecResult,
    Sandbox,
    SandboxCapabilities,
    SandboxSession,
    SessionInfo,
)
from harness_kernel.errors import ConfigError, SandboxError

from . import _paths, _quota
from ._bwrap import bwrap_argv, probe_bwrap
from ._cgroup import CgroupPool, CgroupSlot, detect
from ._exec import Completed, kill_running, run_process_group
from ._limits import (
    CommandLimits,
    LimitName,
    Rlimits,
    exit_limit,
    nproc_flag,
    user_tasks,
    wrapper_argv,
    wrapper_failed,
)
from ._options import LocalSandboxOptions

__all__ = ["LocalSandbox", "LocalSandboxSession", "workspace_name"]

T = TypeVar("T")
THREADS = 8
"""File operations of one sandbox running at once in worker threads."""
WATCH_INTERVAL = 0.05
"""Seconds between two looks at a running command's cgroup counters."""
DISK_WATCH_MIN = 0.05
"""Seconds at least between two measurements of the work directory while a command runs
(more when measuring is slow: at most a twentieth of the time goes to it)."""
BWRAP_TASKS = 2
"""Processes bubblewrap itself keeps in a command's cgroup (its monitor and the
namespace's init), added to the process limit so that it counts the command's own."""
DRAIN_TRIES = 200

_log = logging.getLogger("harness_kernel_local_sandbox")


def workspace_name(session_id: str) -> str:
    """The work directory's name for ``session_id``: a readable prefix and a hash.

    Only ``[a-z0-9_-]`` appear, so the name never escapes the root, never starts with a
    dot, and two ids differing only in case (or in characters the prefix drops) still get
    different directories, even on a case-insensitive file system.
    """
    digest = hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:24]
    readable = re.sub(r"[^a-z0-9_-]+", "-", session_id.lower()).strip("-_")[:40]
    return f"{readable}-{digest}" if readable else digest


@final
class LocalSandbox(Sandbox):
    """Workspaces in directories under ``root``; commands run as local subprocesses.

    Built by the store from ``sandbox="local"`` and ``sandbox_options``, or directly:
    ``LocalSandbox(LocalSandboxOptions(root="workspaces", isolation="bwrap"))``. The
    constructor creates ``root`` and, for ``isolation = "bwrap"``, checks that
    bubblewrap can create a sandbox here, raising ``ConfigError`` if not: a store with an
    unusable sandbox fails when it starts, not at the first command.
    """

    capabilities: ClassVar[SandboxCapabilities] = SandboxCapabilities(exec=True, files=True)

    def __init__(self, options: LocalSandboxOptions | None = None) -> None:
        options = options if options is not None else LocalSandboxOptions()
        self.options = options
        root = os.path.abspath(os.path.expanduser(options.root))
        try:
            os.makedirs(root, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"sandbox.options.root: cannot create '{root}': {exc.strerror}") from exc
        if not os.path.isdir(root):
            raise ConfigError(f"sandbox.options.root: '{root}' is not a directory")
        self.root = os.path.realpath(root)
        self.bwrap: str | None = None
        if options.isolation == "bwrap":
            self.bwrap = probe_bwrap(
                options.bwrap, self.root, network=options.network, ro_binds=options.ro_binds
            )
        self._limiter = trio.CapacityLimiter(THREADS)
        self._live: dict[str, set[LocalSandboxSession]] = {}
        self.cgroups: CgroupPool | None = None
        cgroup_problem = "turned off (cgroup = 'off')"
        if options.cgroup == "auto":
            hierarchies = detect(options.cgroup_parent)
            if hierarchies:
                self.cgroups, cgroup_problem = CgroupPool.open(hierarchies)
            else:
                cgroup_problem = "no cgroup hierarchy with memory or pids controllers this process may use"
        controllers = self.cgroups.controllers if self.cgroups is not None else {}
        self._root_user = os.geteuid() == 0
        self._nproc_flag = nproc_flag() if "pids" not in controllers else "-u"
        # RLIMIT_NPROC counts every process of the user: allow the command its own on top.
        self._user_tasks = user_tasks() if "pids" not in controllers and not self._root_user else 0
        self.limit_mechanisms = self._describe(controllers, cgroup_problem)
        _log.info(
            "local sandbox limits: %s",
            "; ".join(f"{name}: {how}" for name, how in self.limit_mechanisms.items()),
        )

    def _describe(self, controllers: Mapping[str, int], cgroup_problem: str) -> dict[str, str]:
        memory = (
            f"cgroup v{controllers['memory']} memory (resident memory of the whole tree)"
            if "memory" in controllers
            else f"setrlimit RLIMIT_AS (address space, per process; no cgroup: {cgroup_problem})"
        )
        if "pids" in controllers:
            processes = f"cgroup v{controllers['pids']} pids (processes and threads of the whole tree)"
        elif self._root_user:
            processes = (
                "not enforced: running as root, where RLIMIT_NPROC does not bind, "
                f"and no cgroup ({cgroup_problem})"
            )
        else:
            processes = f"setrlimit RLIMIT_NPROC (all processes of the user; no cgroup: {cgroup_problem})"
        quota = self.options.disk_quota_bytes
        return {
            "cpu": "setrlimit RLIMIT_CPU (CPU seconds per process)",
            "memory": memory,
            "processes": processes,
            "file_size": "setrlimit RLIMIT_FSIZE (per file written)",
            "open_files": "setrlimit RLIMIT_NOFILE (per process)",
            "disk": (
                "off" if quota is None else
                f"{quota} bytes per work directory: checked on write_file; for commands "
                "RLIMIT_FSIZE at the space left, measured while they run and after"
            ),
        }

    def workdir(self, session_id: str) -> str:
        """The absolute path of the session's work directory (it may not exist)."""
        return os.path.join(self.root, workspace_name(session_id))

    async def run_in_thread(self, function: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(function, *args, limiter=self._limiter)

    async def open(self, session: SessionInfo) -> LocalSandboxSession:
        """Create the work directory if needed and return the session's workspace."""
        session_id = validate_session_id(session.session_id)
        workdir = self.workdir(session_id)
        try:
            await self.run_in_thread(_make_workdir, workdir)
        except OSError as exc:
            raise SandboxError(f"cannot create the work directory of session '{session_id}'") from exc
        box = LocalSandboxSession(self, session_id, workdir)
        self._live.setdefault(session_id, set()).add(box)
        return box

    async def destroy(self, session_id: str) -> None:
        """Kill the session's running commands and remove its work directory. Idempotent.

        The directory is first renamed aside, so a concurrent ``open`` gets a fresh one
        rather than a half-deleted one.
        """
        session_id = validate_session_id(session_id)
        for box in list(self._live.get(session_id, ())):
            await box.close("destroy")
        workdir = self.workdir(session_id)
        trash = os.path.join(self.root, f".trash-{workspace_name(session_id)}-{secrets.token_hex(4)}")
        try:
            await self.run_in_thread(os.rename, workdir, trash)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SandboxError(f"cannot remove the work directory of session '{session_id}'") from exc
        try:
            await self.run_in_thread(_remove_tree, trash)
        except OSError as exc:
            raise SandboxError(f"cannot remove the work directory of session '{session_id}'") from exc

    async def aclose(self) -> None:
        """Kill every command still running in any workspace; remove the sandbox's cgroups."""
        for boxes in list(self._live.values()):
            for box in list(boxes):
                await box.close("store_closed")
        if self.cgroups is not None:
            self.cgroups.close()

    def rlimits(self, limits: CommandLimits, file_size: int | None) -> Rlimits:
        """The ``setrlimit`` part of ``limits``: what no cgroup enforces already."""
        controllers = self.cgroups.controllers if self.cgroups is not None else {}
        processes = None
        if limits.processes is not None and "pids" not in controllers and not self._root_user:
            processes = limits.processes + self._user_tasks
        return Rlimits(
            cpu_seconds=limits.cpu_seconds,
            address_space=limits.memory_bytes if "memory" not in controllers else None,
            processes=processes,
            file_size=file_size,
            open_files=limits.open_files,
        )

    def _forget(self, box: LocalSandboxSession) -> None:
        boxes = self._live.get(box.session_id)
        if boxes is not None:
            boxes.discard(box)
            if not boxes:
                del self._live[box.session_id]

    def environment(self, workdir: str, extra: Mapping[str, str] | None) -> dict[str, str]:
        """The minimal environment of a command: never the host's whole environment."""
        options = self.options
        env = {"PATH": options.path, "HOME": workdir, "LANG": options.lang}
        for name in options.env_allow:
            value = os.environ.get(name)
            if value is not None:
                env[name] = value
        env.update(options.env)
        for name, value in (extra or {}).items():
            if not isinstance(name, str) or not name or "=" in name or "\x00" in name:
                raise SandboxError(f"invalid environment variable name {name!r}")
            if not isinstance(value, str) or "\x00" in value:
                raise SandboxError(f"environment variable '{name}' must be a string without NUL bytes")
            env[name] = value
        return env


@final
class LocalSandboxSession(SandboxSession):
    """One session's work directory and the commands running in it."""

    def __init__(self, sandbox: LocalSandbox, session_id: str, workdir: str) -> None:
        self.sandbox = sandbox
        self.session_id = session_id
        self.workdir = workdir
        self._running: set[trio.Process] = set()
        self._closed = False
        self._usage: int | None = None
        """Bytes the work directory takes, as last measured plus writes since."""
        self._at_cap: frozenset[tuple[int, int]] = frozenset()
        """Files at the last command's file size limit, as it left them."""

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxError(f"the workspace of session '{self.session_id}' was closed")

    async def exec(
        self,
        command: Sequence[str] | str,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | str | None = None,
        timeout: float | None = None,
        limits: CommandLimits | Mapping[str, int | None] | None = None,
    ) -> ExecResult:
        """Run an argv list, or a string with ``/bin/sh -c``, in the work directory.

        See ``SandboxSession.exec``. A command killed by a signal has ``exit_code=None``
        and ``signal`` set (under ``bwrap``: exit code ``128 + N``, as a shell reports it,
        except for timeouts, which always report ``SIGKILL``).

        ``limits`` overrides the sandbox's ``limits`` option for this command: a whole
        ``CommandLimits``, or a mapping of some of its fields (``{"cpu_seconds": 5}``).
        A command stopped by a limit returns normally, with ``ExecResult.limit`` naming it.
        """
        self._check_open()
        program = _argv(command)
        sandbox = self.sandbox
        options = sandbox.options
        applied = options.limits.overridden(limits)
        if cwd is None:
            directory = self.workdir
        else:
            directory = await sandbox.run_in_thread(_paths.resolve_dir, self.workdir, cwd)
        environment = sandbox.environment(self.workdir, env)
        data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
        if data is not None and not isinstance(data, bytes | bytearray):
            raise SandboxError(f"stdin must be bytes or str, not {type(stdin).__name__}")
        if timeout is None:
            timeout = options.default_timeout
        if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
            raise SandboxError("timeout must be a positive number of seconds")
        quota = options.disk_quota_bytes
        file_size = applied.file_size_bytes
        size_is_quota = False
        used_before = 0
        if quota is not None:
            used_before = await self._measured_usage()
            left = max(0, quota - used_before)
            if file_size is None or left < file_size:
                file_size, size_is_quota = left, True
        argv = program
        if sandbox.bwrap is not None:
            argv = [
                *bwrap_argv(
                    sandbox.bwrap, workdir=self.workdir, cwd=directory,
                    network=options.network, ro_binds=options.ro_binds,
                ),
                *program,
            ]
        rlimits = sandbox.rlimits(applied, file_size)
        slot = self._cgroup_slot(applied)
        try:
            procs = slot.procs_files if slot is not None else []
            wrapped = wrapper_argv(argv, rlimits=rlimits, cgroup_procs=procs, nproc_flag=sandbox._nproc_flag)
            if wrapped is not argv and sandbox.bwrap is None:
                _check_program(program[0], environment["PATH"], directory)
            before = slot.counters() if slot is not None else (0, 0)
            started = time.time()
            completed = await run_process_group(
                wrapped,
                cwd=directory,
                env=environment,
                stdin=bytes(data) if data is not None else None,
                timeout=timeout,
                limit=options.max_output_bytes,
                running=self._running,
                kill_tree=slot.kill if slot is not None else None,
                watchdog=self._watchdog(slot, before) if slot is not None or quota is not None else None,
            )
            after = before
            if slot is not None:
                await _drain(slot)
                after = slot.counters()
        finally:
            if slot is not None and sandbox.cgroups is not None:
                sandbox.cgroups.release(slot)
        usage = None
        cap = (file_size // 512) * 512 if file_size else None
        seen_at_cap = self._at_cap
        if quota is not None:
            usage = await sandbox.run_in_thread(_quota.measure, self.workdir, started, cap)
            self._usage = usage.allocated
            self._at_cap = usage.at_cap
        stderr = completed.stderr.text()
        code = completed.returncode
        if (
            sandbox.bwrap is not None
            and code == 1
            and not completed.timed_out
            and completed.stdout.total == 0
            and stderr.startswith("bwrap: ")
        ):
            # bubblewrap itself failed (most often: the program does not exist).
            reason = stderr.removeprefix("bwrap: ").strip().splitlines()[0]
            raise SandboxError(f"cannot start command '{program[0]}': {reason}")
        if wrapper_failed(code, stderr):
            raise SandboxError(f"cannot start command '{program[0]}': its limits could not be applied")
        cut = bool(usage.at_cap - seen_at_cap) if usage is not None else False
        limit = _verdict(completed, before, after, usage, used_before, quota, cut, size_is_quota)
        if limit is not None:
            _log.info(
                "command stopped by a sandbox limit",
                extra={"session_id": self.session_id, "limit": limit, "program": program[0]},
            )
        return ExecResult(
            exit_code=code if code >= 0 else None,
            stdout=completed.stdout.text(),
            stderr=stderr,
            signal=-code if code < 0 else None,
            timed_out=completed.timed_out,
            stdout_truncated=completed.stdout.truncated,
            stderr_truncated=completed.stderr.truncated,
            duration_ms=completed.duration_ms,
            limit=limit,
        )

    def _cgroup_slot(self, limits: CommandLimits) -> CgroupSlot | None:
        pool = self.sandbox.cgroups
        if pool is None or (limits.memory_bytes is None and limits.processes is None):
            return None
        processes = limits.processes
        if processes is not None and self.sandbox.bwrap is not None:
            processes += BWRAP_TASKS
        try:
            slot = pool.acquire()
        except OSError as exc:
            raise SandboxError(f"cannot make the command's cgroup: {exc.strerror or exc}") from exc
        try:
            if processes is not None:
                processes += slot.lingering()
            slot.configure(limits.memory_bytes, processes)
        except OSError as exc:
            pool.release(slot)
            raise SandboxError(f"cannot set the command's cgroup limits: {exc.strerror or exc}") from exc
        return slot

    def _watchdog(self, slot: CgroupSlot | None, before: tuple[int, int]) -> Callable[[], Awaitable[str | None]]:
        """Stops a command at a limit it reached while running: processes, memory, disk."""
        quota = self.sandbox.options.disk_quota_bytes

        async def watch() -> str | None:
            next_disk = trio.current_time() + DISK_WATCH_MIN
            while True:
                await trio.sleep(WATCH_INTERVAL)
                if slot is not None:
                    try:
                        oom, refused = slot.counters()
                    except OSError:
                        oom, refused = before
                    if refused > before[1]:
                        return "processes"
                    if oom > before[0]:
                        return "memory"
                if quota is not None and trio.current_time() >= next_disk:
                    began = time.perf_counter()
                    usage = await self.sandbox.run_in_thread(_quota.measure, self.workdir, None)
                    if usage.allocated >= quota:
                        return "disk"
                    cost = time.perf_counter() - began
                    next_disk = trio.current_time() + max(DISK_WATCH_MIN, 20 * cost)

        return watch

    async def _measured_usage(self) -> int:
        if self._usage is None:
            usage = await self.sandbox.run_in_thread(_quota.measure, self.workdir, None)
            self._usage = usage.allocated
        return self._usage

    async def read_file(self, path: str) -> bytes:
        self._check_open()
        return await self.sandbox.run_in_thread(
            _paths.read_file, self.workdir, path, self.sandbox.options.max_file_bytes
        )

    async def write_file(self, path: str, content: bytes | str) -> None:
        self._check_open()
        if isinstance(content, str):
            data = content.encode("utf-8")
        elif isinstance(content, bytes | bytearray | memoryview):
            data = bytes(content)
        else:
            raise SandboxError(f"content must be bytes or str, not {type(content).__name__}")
        _paths.split_user_path(path)  # refuse a bad path before saying anything about size
        limit = self.sandbox.options.max_file_bytes
        if len(data) > limit:
            raise SandboxError(f"cannot write '{path}': {len(data)} bytes is more than the sandbox's limit of {limit}")
        quota = self.sandbox.options.disk_quota_bytes
        if quota is not None:
            await self._check_quota(path, len(data), quota)
        await self.sandbox.run_in_thread(_paths.write_file, self.workdir, path, data)
        if self._usage is not None:
            # The old content's blocks are not subtracted: an overestimate until the next
            # measurement, never a write let through over the quota.
            self._usage += _quota.allocation(len(data))

    async def _check_quota(self, path: str, size: int, quota: int) -> None:
        needed = _quota.allocation(size)
        if await self._measured_usage() + needed <= quota:
            return
        # Near the quota: measure afresh, and count what the write replaces.
        usage = await self.sandbox.run_in_thread(_quota.measure, self.workdir, None)
        replaced = await self.sandbox.run_in_thread(_paths.allocated, self.workdir, path)
        self._usage = usage.allocated
        if usage.allocated - replaced + needed > quota:
            raise SandboxError(
                f"cannot write '{path}': the session's disk quota of {quota} bytes would be exceeded "
                f"(the work directory takes {usage.allocated} bytes; this file needs {needed})"
            )

    async def list_dir(self, path: str = ".") -> list[DirEntry]:
        self._check_open()
        entries = await self.sandbox.run_in_thread(_paths.list_dir, self.workdir, path)
        return [DirEntry(name, is_dir, size) for name, is_dir, size in entries]

    async def close(self, reason: str) -> None:
        """Kill the commands still running; the work directory is kept. Idempotent."""
        if self._closed:
            return
        self._closed = True
        kill_running(self._running)
        self.sandbox._forget(self)


def _argv(command: Sequence[str] | str) -> list[str]:
    if isinstance(command, str):
        if not command.strip():
            raise SandboxError("the command is empty")
        return ["/bin/sh", "-c", command]
    argv = list(command)
    if not argv:
        raise SandboxError("the command is empty")
    for arg in argv:
        if not isinstance(arg, str):
            raise SandboxError(f"command arguments must be strings, not {type(arg).__name__}")
        if "\x00" in arg:
            raise SandboxError("command arguments must not contain NUL bytes")
    return argv


def _check_program(name: str, path: str, cwd: str) -> None:
    """Refuse a program that is not there, as starting it directly would have.

    With limits, the command is started by a wrapper shell, whose own ``exec`` failure
    would read as exit status 127 rather than the ``SandboxError`` callers rely on.
    """
    if "/" in name:
        candidate = os.path.join(cwd, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return
        reason = "Permission denied" if os.path.exists(candidate) else "No such file or directory"
    elif shutil.which(name, path=path) is not None:
        return
    else:
        reason = "No such file or directory"
    raise SandboxError(f"cannot start command '{name}': {reason}")


async def _drain(slot: CgroupSlot) -> None:
    """Kill what is left in the command's cgroup until it is empty (a fork bomb refills it
    between two passes, but not past ``pids.max``, and killed processes fork no more)."""
    with trio.CancelScope(shield=True):
        for attempt in range(DRAIN_TRIES):
            if not slot.pids():
                return
            slot.kill()
            # Usually one process just killed (bubblewrap's init): it is gone in well
            # under a millisecond, so look again soon, then less often.
            await trio.sleep(min(0.0002 * 2**attempt, 0.01))


def _verdict(
    completed: Completed,
    before: tuple[int, int],
    after: tuple[int, int],
    usage: _quota.Usage | None,
    used_before: int,
    quota: int | None,
    cut: bool,
    size_is_quota: bool,
) -> LimitName | None:
    """Which limit stopped the command, from what it left behind (see ``_limits``)."""
    if completed.timed_out:
        return None
    if completed.stopped is not None:
        return completed.stopped  # type: ignore[return-value]
    if after[0] > before[0]:
        return "memory"
    if after[1] > before[1]:
        return "processes"
    size_limit: LimitName = "disk" if size_is_quota else "file_size"
    by_status = exit_limit(completed.returncode)
    if by_status == "file_size":
        return size_limit
    if by_status is not None:
        return by_status
    if quota is not None and usage is not None and usage.allocated > max(quota, used_before):
        return "disk"
    # A process cut at the file size limit whose parent carried on (a shell script): a
    # file changed during the command, not there so before, holds exactly the limit.
    if cut:
        return size_limit
    return None


def _make_workdir(workdir: str) -> None:
    try:
        os.mkdir(workdir, 0o700)
    except FileExistsError:
        if os.path.islink(workdir) or not os.path.isdir(workdir):
            raise NotADirectoryError(workdir) from None


def _remove_tree(path: str) -> None:
    """``rmtree``, also when commands removed permissions from directories inside."""
    try:
        shutil.rmtree(path)
        return
    except PermissionError:
        pass
    os.chmod(path, 0o700)
    for directory, subdirs, _files in os.walk(path):
        for name in subdirs:
            child = os.path.join(directory, name)
            if not os.path.islink(child):
                os.chmod(child, 0o700)
    shutil.rmtree(path)

