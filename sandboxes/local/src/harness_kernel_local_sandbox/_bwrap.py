"""The ``bwrap`` isolation level: the command line for bubblewrap, and the start-up probe.

Inside: the host's system directories read-only (``/usr`` and the ``/bin``, ``/lib``
links or directories), a short list of harmless ``/etc`` files, a private ``/proc``,
a minimal ``/dev``, an empty ``/tmp``, and the session's work directory, writable, at
the same path as on the host. New user, PID, IPC, UTS, cgroup and network namespaces
(the network one is skipped with ``network = true``); no capabilities; the sandbox dies
with its parent and runs in a new terminal session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from harness_kernel.errors import ConfigError

__all__ = ["ETC_FILES", "SYSTEM_DIRS", "bwrap_argv", "find_bwrap", "probe_bwrap"]

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = (
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/pki",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/debian_version",
)
"""Read from ``/etc`` when present: what programs need to link, resolve names and
verify certificates. Not ``/etc`` as a whole: it can hold secrets (``shadow``, keys)."""


def find_bwrap(program: str) -> str | None:
    """The absolute path of bubblewrap: ``program`` itself if it is a path, else via PATH."""
    if "/" in program:
        return program if os.access(program, os.X_OK) else None
    return shutil.which(program)


def bwrap_argv(
    bwrap: str,
    *,
    workdir: str,
    cwd: str,
    network: bool,
    ro_binds: Sequence[str],
) -> list[str]:
    """The bubblewrap command line that runs a command (appended after it) in the sandbox."""
    argv = [
        bwrap,
        "--die-with-parent",
        "--new-session",
        "--unshare-all",
        *(["--share-net"] if network else []),
        "--cap-drop", "ALL",
    ]
    for directory in SYSTEM_DIRS:
        if os.path.islink(directory):
            argv += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            argv += ["--ro-bind", directory, directory]
    for path in ETC_FILES:
        argv += ["--ro-bind-try", path, path]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    # bwrap mounts in order: extra binds come after the private /tmp, or one under /tmp
    # (a virtualenv there, say) would be hidden by it.
    for path in ro_binds:
        argv += ["--ro-bind-try", path, path]
    argv += [
        "--bind", workdir, workdir,
        "--chdir", cwd,
        "--",
    ]
    return argv


def probe_bwrap(program: str, root: str, *, network: bool, ro_binds: Sequence[str]) -> str:
    """Check that bubblewrap runs a command here; returns its path.

    Raises ``ConfigError`` saying what is missing or why the kernel refused (user
    namespaces disabled or restricted, typically). Called when the store starts.
    """
    path = find_bwrap(program)
    if path is None:
        raise ConfigError(
            f"sandbox 'local' with isolation = 'bwrap' needs bubblewrap, and '{program}' was not "
            "found (install the 'bubblewrap' package, set the 'bwrap' option to its path, or "
            "use isolation = 'none')"
        )
    argv = [*bwrap_argv(path, workdir=root, cwd=root, network=network, ro_binds=ro_binds), "true"]
    try:
        completed = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env={"PATH": "/usr/bin:/bin"},
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"sandbox 'local': bubblewrap ('{path}') could not be run: {exc}") from exc
    if completed.returncode != 0:
        detail = completed.stderr.decode("utf-8", errors="replace").strip() or f"exit status {completed.returncode}"
        raise ConfigError(
            f"sandbox 'local': bubblewrap ('{path}') cannot create a sandbox on this host: {detail} "
            "(it needs unprivileged user namespaces: check the sysctls "
            "kernel.unprivileged_userns_clone, user.max_user_namespaces and "
            "kernel.apparmor_restrict_unprivileged_userns, or the container's seccomp profile)"
        )
    return path
