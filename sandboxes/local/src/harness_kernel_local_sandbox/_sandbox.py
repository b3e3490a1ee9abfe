"""``LocalSandbox``: one work directory per session on this host, commands as subprocesses."""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
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

from . import _paths
from ._bwrap import bwrap_argv, probe_bwrap
from ._exec import kill_running, run_process_group
from ._options import LocalSandboxOptions

__all__ = ["LocalSandbox", "LocalSandboxSession", "workspace_name"]

T = TypeVar("T")
THREADS = 8
"""File operations of one sandbox running at once in worker threads."""


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
        """Kill every command still running in any workspace."""
        for boxes in list(self._live.values()):
            for box in list(boxes):
                await box.close("store_closed")

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
    ) -> ExecResult:
        """Run an argv list, or a string with ``/bin/sh -c``, in the work directory.

        See ``SandboxSession.exec``. A command killed by a signal has ``exit_code=None``
        and ``signal`` set (under ``bwrap``: exit code ``128 + N``, as a shell reports it,
        except for timeouts, which always report ``SIGKILL``).
        """
        self._check_open()
        program = _argv(command)
        sandbox = self.sandbox
        if cwd is None:
            directory = self.workdir
        else:
            directory = await sandbox.run_in_thread(_paths.resolve_dir, self.workdir, cwd)
        environment = sandbox.environment(self.workdir, env)
        data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
        if data is not None and not isinstance(data, bytes | bytearray):
            raise SandboxError(f"stdin must be bytes or str, not {type(stdin).__name__}")
        if timeout is None:
            timeout = sandbox.options.default_timeout
        if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
            raise SandboxError("timeout must be a positive number of seconds")
        argv = program
        if sandbox.bwrap is not None:
            options = sandbox.options
            argv = [
                *bwrap_argv(
                    sandbox.bwrap, workdir=self.workdir, cwd=directory,
                    network=options.network, ro_binds=options.ro_binds,
                ),
                *program,
            ]
        completed = await run_process_group(
            argv,
            cwd=directory,
            env=environment,
            stdin=bytes(data) if data is not None else None,
            timeout=timeout,
            limit=sandbox.options.max_output_bytes,
            running=self._running,
        )
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
        return ExecResult(
            exit_code=code if code >= 0 else None,
            stdout=completed.stdout.text(),
            stderr=stderr,
            signal=-code if code < 0 else None,
            timed_out=completed.timed_out,
            stdout_truncated=completed.stdout.truncated,
            stderr_truncated=completed.stderr.truncated,
            duration_ms=completed.duration_ms,
        )

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
        await self.sandbox.run_in_thread(_paths.write_file, self.workdir, path, data)

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

