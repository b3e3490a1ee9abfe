"""Per-command resource limits: the options, the wrapper that applies them, the verdict.

Limits reach a command in two ways, both fixed before the command's first instruction:

- ``setrlimit`` values (CPU seconds, file size, open files; address space and process
  count when no cgroup does it better), set by a ``/bin/sh`` wrapper that then ``exec``s
  the command (or bubblewrap). A shell, not ``preexec_fn``: forking the host's Python
  process to run a hook costs milliseconds per command on a large host; one exec of
  ``sh`` costs a fraction of one.
- a cgroup (``_cgroup``) the same wrapper joins first, so every process the command
  starts is counted against the memory and process limits of its tree.

Which limit stopped a command is read afterwards from what the kernel left behind: the
cgroup's OOM and pids counters, the signal of the command (``SIGXCPU``, ``SIGXFSZ``, or
``128 + N`` from a shell or bubblewrap), the largest file in the work directory.
"""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Mapping, Sequence
from typing import Literal, TypeAlias

import attrs

from harness_kernel.errors import SandboxError

__all__ = [
    "LIMIT_NAMES",
    "WRAPPER_FAILED",
    "CommandLimits",
    "LimitName",
    "Rlimits",
    "exit_limit",
    "wrapper_argv",
]

LimitName: TypeAlias = Literal["cpu", "memory", "processes", "file_size", "disk"]
LIMIT_NAMES: tuple[LimitName, ...] = ("cpu", "memory", "processes", "file_size", "disk")

WRAPPER_FAILED = 125
"""Exit status of the wrapper when it could not join the cgroup or set a limit."""
WRAPPER_MESSAGE = "harness-sandbox: cannot apply the limits of the command"

_MINIMUMS = {
    "cpu_seconds": 1,
    "memory_bytes": 16 << 20,
    "processes": 1,
    "file_size_bytes": 0,
    "open_files": 16,
}


@attrs.frozen
class CommandLimits:
    """What one command (its whole process tree where the host allows) may use.

    Each value is a number, or ``None`` for no limit. ``exec(..., limits={...})`` overrides
    some of them for one command. See ``docs/sandboxes.md`` for how each is enforced.
    """

    cpu_seconds: int | None = 300
    """CPU time, per process (``RLIMIT_CPU``): ``SIGXCPU`` at the limit, ``SIGKILL`` a second later."""
    memory_bytes: int | None = 2 << 30
    """Resident memory of the whole tree (cgroup), else address space per process (``RLIMIT_AS``)."""
    processes: int | None = 256
    """Processes and threads of the whole tree (cgroup ``pids``), else ``RLIMIT_NPROC``."""
    file_size_bytes: int | None = 1 << 30
    """Largest file a process may write (``RLIMIT_FSIZE``, in steps of 512 bytes)."""
    open_files: int | None = 1024
    """Open file descriptors per process (``RLIMIT_NOFILE``)."""

    def __attrs_post_init__(self) -> None:
        # ValueError: the kernel reports it with the options' path when it validates a table.
        for name, minimum in _MINIMUMS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}: must be a whole number or null, not {type(value).__name__}")
            if value < minimum:
                raise ValueError(f"{name}: must be at least {minimum}")

    @classmethod
    def unlimited(cls) -> CommandLimits:
        """No limit at all (what the sandbox did before limits existed)."""
        return cls(None, None, None, None, None)

    @property
    def enabled(self) -> bool:
        return any(getattr(self, name) is not None for name in _MINIMUMS)

    def overridden(self, overrides: CommandLimits | Mapping[str, int | None] | None) -> CommandLimits:
        """These limits with ``overrides`` applied (a whole ``CommandLimits``, or some fields).

        Raises ``SandboxError`` for an unknown name or a bad value.
        """
        if overrides is None:
            return self
        if isinstance(overrides, CommandLimits):
            return overrides
        if not isinstance(overrides, Mapping):
            raise SandboxError(f"limits must be a mapping or CommandLimits, not {type(overrides).__name__}")
        unknown = sorted(set(overrides) - set(_MINIMUMS))
        if unknown:
            raise SandboxError(f"unknown limit {unknown[0]!r} (known: {', '.join(_MINIMUMS)})")
        try:
            return attrs.evolve(self, **overrides)
        except ValueError as exc:
            raise SandboxError(f"invalid limits: {exc}") from exc


@attrs.frozen
class Rlimits:
    """The ``setrlimit`` values of one command, in the units the kernel takes (bytes, seconds)."""

    cpu_seconds: int | None = None
    address_space: int | None = None
    processes: int | None = None
    file_size: int | None = None
    open_files: int | None = None

    @property
    def empty(self) -> bool:
        return attrs.astuple(self) == (None,) * 5


def _hard(which: int) -> int | None:
    hard = resource.getrlimit(which)[1]
    return None if hard == resource.RLIM_INFINITY else hard


def _capped(value: int | None, hard: int | None) -> int | None:
    """An unprivileged host cannot raise a hard limit: never ask for more than it has."""
    if value is None:
        return None
    return value if hard is None else min(value, hard)


def _shell_script(rlimits: Rlimits, cgroup_files: int, nproc_flag: str) -> str:
    steps = []
    if cgroup_files:
        joins = " && ".join(f'echo $$ >"${index}"' for index in range(1, cgroup_files + 1))
        steps.append(f"{{ {joins}; }} 2>/dev/null")
    # The soft CPU limit first (SIGXCPU, which says which limit it was), the hard one a
    # second later (SIGKILL, for a process that ignores SIGXCPU). Soft before hard: a
    # hard limit below the current soft one is refused.
    cpu = _capped(rlimits.cpu_seconds, _hard(resource.RLIMIT_CPU))
    if cpu is not None:
        steps.append(f"ulimit -S -t {cpu}")
        steps.append(f"ulimit -H -t {_capped(cpu + 1, _hard(resource.RLIMIT_CPU))}")
    fsize = _capped(rlimits.file_size, _hard(resource.RLIMIT_FSIZE))
    if fsize is not None:
        steps.append(f"ulimit -f {fsize // 512}")  # POSIX: 512-byte blocks
    nofile = _capped(rlimits.open_files, _hard(resource.RLIMIT_NOFILE))
    if nofile is not None:
        steps.append(f"ulimit -n {nofile}")
    address = _capped(rlimits.address_space, _hard(resource.RLIMIT_AS))
    if address is not None:
        steps.append(f"ulimit -v {address // 1024}")
    nproc = _capped(rlimits.processes, _hard(resource.RLIMIT_NPROC))
    if nproc is not None:
        steps.append(f"ulimit {nproc_flag} {nproc}")
    script = " && ".join(steps)
    return f"{script} || {{ echo '{WRAPPER_MESSAGE}' >&2; exit {WRAPPER_FAILED}; }}; shift {cgroup_files}; exec \"$@\""


def wrapper_argv(
    argv: Sequence[str], *, rlimits: Rlimits, cgroup_procs: Sequence[str], nproc_flag: str = "-u"
) -> list[str]:
    """``argv`` run by a ``/bin/sh`` that first joins the cgroups and sets the rlimits."""
    if rlimits.empty and not cgroup_procs:
        return list(argv)
    script = _shell_script(rlimits, len(cgroup_procs), nproc_flag)
    return ["/bin/sh", "-c", script, "sh", *cgroup_procs, *argv]


def wrapper_failed(code: int, stderr: str) -> bool:
    return code == WRAPPER_FAILED and stderr.startswith(WRAPPER_MESSAGE)


def exit_limit(returncode: int) -> LimitName | None:
    """The limit a command's status points to: death by ``SIGXCPU``/``SIGXFSZ``, or the
    ``128 + N`` a shell or bubblewrap reports for a child that died so."""
    for number, name in ((signal.SIGXCPU, "cpu"), (signal.SIGXFSZ, "file_size")):
        if returncode in (-number, 128 + number):
            return name  # type: ignore[return-value]
    return None


def nproc_flag() -> str:
    """The ``ulimit`` option of ``/bin/sh`` for the process count: ``-u`` (bash, busybox),
    ``-p`` (dash)."""
    import subprocess

    for flag in ("-u", "-p"):
        try:
            done = subprocess.run(
                ["/bin/sh", "-c", f"ulimit {flag}"], capture_output=True, timeout=10, check=False,
                env={"PATH": "/usr/bin:/bin"},
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip() and not done.stderr:
            return flag
    return "-u"


def user_tasks() -> int:
    """Processes and threads the host user runs now: ``RLIMIT_NPROC`` counts them all."""
    uid = os.getuid()
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                count += len(os.listdir(f"/proc/{entry}/task"))
        except OSError:
            continue
    return count
