"""Path confinement: every file operation is resolved beneath the work directory.

A path is resolved one component at a time from an open descriptor of the work
directory, with ``O_NOFOLLOW`` and ``dir_fd`` at every step (what ``openat2`` with
``RESOLVE_BENEATH`` does in the kernel, written portably). Symbolic links are followed
by reading them and resolving their target the same way: a target that leaves the work
directory, through ``..`` or an absolute path elsewhere, is refused. Because every step
opens relative to a descriptor already checked, swapping a component for a symlink
between the check and the use makes the open fail (``ELOOP``) instead of escaping.

These functions block (file system calls); the sandbox runs them in worker threads.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections import deque

import attrs

from harness_kernel.errors import SandboxError, SandboxPathError

__all__ = ["allocated", "list_dir", "read_file", "resolve_dir", "split_user_path", "write_file"]

MAX_SYMLINKS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _shown(path: str) -> str:
    text = path if len(path) <= 200 else path[:200] + "..."
    return text.encode("unicode_escape").decode("ascii")


def split_user_path(path: object) -> list[str]:
    """The components of a path relative to the work directory.

    Refused with ``SandboxPathError``: non-strings, NUL bytes, absolute paths and any
    ``..`` component (even one that would stay inside: the rule is simpler to state and
    to check than the exception). ``""`` and ``"."`` name the work directory itself.
    """
    if not isinstance(path, str):
        raise SandboxPathError(f"a path must be a string, not {type(path).__name__}")
    if "\x00" in path:
        raise SandboxPathError(f"path '{_shown(path)}' contains a NUL byte")
    if path.startswith("/"):
        raise SandboxPathError(
            f"absolute path '{_shown(path)}' is not allowed: use a path relative to the work directory"
        )
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise SandboxPathError(f"path '{_shown(path)}' contains '..': paths must stay inside the work directory")
    return parts


@attrs.define
class Resolved:
    """Where a path leads: ``name`` inside the directory open as ``parent_fd``.

    ``name`` is ``None`` when the path is the work directory itself. ``parts`` are the
    resolved components relative to the work directory (symlinks followed). The caller
    owns ``parent_fd`` and closes it.
    """

    parent_fd: int
    name: str | None
    parts: list[str]

    def close(self) -> None:
        os.close(self.parent_fd)


def _escape(user_path: str) -> SandboxPathError:
    return SandboxPathError(
        f"path '{_shown(user_path)}' leads outside the work directory (through a symbolic link)"
    )


def _os_error(exc: OSError, user_path: str, action: str) -> SandboxError:
    shown = _shown(user_path)
    if exc.errno == errno.ENOENT:
        return SandboxError(f"cannot {action} '{shown}': no such file or directory")
    if exc.errno == errno.ENOTDIR:
        return SandboxError(f"cannot {action} '{shown}': a component of the path is not a directory")
    if exc.errno == errno.EISDIR:
        return SandboxError(f"cannot {action} '{shown}': it is a directory")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return SandboxError(f"cannot {action} '{shown}': permission denied")
    if exc.errno == errno.ELOOP:
        return SandboxPathError(f"cannot {action} '{shown}': the path changed while it was being resolved")
    reason = exc.strerror or type(exc).__name__
    return SandboxError(f"cannot {action} '{shown}': {reason}")


def resolve(workdir: str, user_path: str, *, create_parents: bool = False, action: str = "open") -> Resolved:
    """Resolve ``user_path`` beneath ``workdir`` (a canonical absolute path).

    The last component is followed when it is a symlink, and need not exist. With
    ``create_parents`` missing intermediate directories are created.
    """
    parts = split_user_path(user_path)
    try:
        root_fd = os.open(workdir, _DIR_FLAGS)
    except OSError as exc:
        raise SandboxError("the work directory is missing (was the workspace destroyed?)") from exc
    fds = [root_fd]
    names: list[str] = []
    pending = deque(parts)
    links = 0
    try:
        while pending:
            name = pending.popleft()
            if name in ("", "."):
                continue
            if name == "..":  # only symlink targets bring these
                if not names:
                    raise _escape(user_path)
                os.close(fds.pop())
                names.pop()
                continue
            current = fds[-1]
            try:
                info: os.stat_result | None = os.stat(name, dir_fd=current, follow_symlinks=False)
            except FileNotFoundError:
                info = None
            except OSError as exc:
                raise _os_error(exc, user_path, action) from exc
            if info is not None and stat.S_ISLNK(info.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise SandboxPathError(f"path '{_shown(user_path)}': too many levels of symbolic links")
                try:
                    target = os.readlink(name, dir_fd=current)
                except OSError as exc:
                    raise _os_error(exc, user_path, action) from exc
                if target.startswith("/"):
                    inside = _beneath(workdir, target)
                    if inside is None:
                        raise _escape(user_path)
                    while len(fds) > 1:
                        os.close(fds.pop())
                    names.clear()
                    target_parts = inside
                else:
                    target_parts = target.split("/")
                pending.extendleft(reversed(target_parts))
                continue
            if not pending:
                result = Resolved(os.dup(current), name, [*names, name])
                return result
            if info is None:
                if not create_parents:
                    raise SandboxError(f"cannot {action} '{_shown(user_path)}': no such file or directory")
                try:
                    os.mkdir(name, 0o777, dir_fd=current)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise _os_error(exc, user_path, action) from exc
            elif not stat.S_ISDIR(info.st_mode):
                raise SandboxError(
                    f"cannot {action} '{_shown(user_path)}': '{'/'.join([*names, name])}' is not a directory"
                )
            try:
                fds.append(os.open(name, _DIR_FLAGS, dir_fd=current))
            except OSError as exc:
                raise _os_error(exc, user_path, action) from exc
            names.append(name)
        return Resolved(os.dup(fds[-1]), None, names)
    finally:
        for fd in fds:
            os.close(fd)


def _beneath(workdir: str, target: str) -> list[str] | None:
    """The components of absolute ``target`` below ``workdir``, or ``None`` if outside.

    Lexical on purpose: the remainder is then resolved component by component.
    """
    if target == workdir:
        return []
    prefix = workdir.rstrip("/") + "/"
    if not target.startswith(prefix):
        return None
    return target[len(prefix) :].split("/")


def read_file(workdir: str, user_path: str, max_bytes: int) -> bytes:
    """The content of a regular file; refuses directories, devices, FIFOs and big files."""
    resolved = resolve(workdir, user_path, action="read")
    try:
        if resolved.name is None:
            raise SandboxError(f"cannot read '{_shown(user_path)}': it is a directory")
        try:
            # O_NONBLOCK: opening a FIFO must not hang; it is refused just below.
            fd = os.open(
                resolved.name,
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                dir_fd=resolved.parent_fd,
            )
        except OSError as exc:
            raise _os_error(exc, user_path, "read") from exc
    finally:
        resolved.close()
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise SandboxError(f"cannot read '{_shown(user_path)}': it is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise SandboxError(f"cannot read '{_shown(user_path)}': not a regular file")
        if info.st_size > max_bytes:
            raise SandboxError(
                f"cannot read '{_shown(user_path)}': {info.st_size} bytes is more than the "
                f"sandbox's limit of {max_bytes} bytes"
            )
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:  # the file grew while being read
                raise SandboxError(
                    f"cannot read '{_shown(user_path)}': more than the sandbox's limit of {max_bytes} bytes"
                )
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise _os_error(exc, user_path, "read") from exc
    finally:
        os.close(fd)


def allocated(workdir: str, user_path: str) -> int:
    """Bytes allocated to the file ``user_path`` leads to; 0 when it does not exist yet."""
    try:
        resolved = resolve(workdir, user_path, action="write")
    except SandboxError:
        return 0  # a missing parent: the write creates it (refused there if the path is bad)
    try:
        if resolved.name is None:
            return 0
        try:
            return os.stat(resolved.name, dir_fd=resolved.parent_fd, follow_symlinks=False).st_blocks * 512
        except OSError:
            return 0
    finally:
        resolved.close()


def write_file(workdir: str, user_path: str, data: bytes) -> None:
    """Replace the file atomically (a temporary file renamed over it), keeping its mode.

    Parent directories are created. Readers see the old or the new content, never a
    mix. A symlink at the final name is followed when it points inside the work
    directory (the target is replaced); the rename itself never follows links.
    """
    resolved = resolve(workdir, user_path, create_parents=True, action="write")
    try:
        name, parent = resolved.name, resolved.parent_fd
        if name is None:
            raise SandboxError(f"cannot write '{_shown(user_path)}': it is the work directory")
        mode: int | None = None
        try:
            info = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _os_error(exc, user_path, "write") from exc
        else:
            if stat.S_ISDIR(info.st_mode):
                raise SandboxError(f"cannot write '{_shown(user_path)}': it is a directory")
            if stat.S_ISREG(info.st_mode):
                mode = stat.S_IMODE(info.st_mode)
        temporary = f".{name[:64]}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(
                temporary,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o666,
                dir_fd=parent,
            )
        except OSError as exc:
            raise _os_error(exc, user_path, "write") from exc
        renamed = False
        try:
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                if mode is not None:
                    os.fchmod(fd, mode)
            finally:
                os.close(fd)
            os.rename(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
            renamed = True
        except OSError as exc:
            raise _os_error(exc, user_path, "write") from exc
        finally:
            if not renamed:
                try:
                    os.unlink(temporary, dir_fd=parent)
                except OSError:
                    pass
    finally:
        resolved.close()


def list_dir(workdir: str, user_path: str) -> list[tuple[str, bool, int]]:
    """``(name, is_dir, size)`` of each entry, sorted by name.

    Entries are described without following symlinks (a link is reported as a file of
    the link's own size), so listing never reveals anything outside the work directory.
    """
    dir_fd = open_dir(workdir, user_path, "list")
    try:
        entries = []
        with os.scandir(dir_fd) as iterator:
            for entry in iterator:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                    size = 0 if is_dir else entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:  # removed while listing
                    continue
                entries.append((entry.name, is_dir, size))
    except OSError as exc:
        raise _os_error(exc, user_path, "list") from exc
    finally:
        os.close(dir_fd)
    entries.sort(key=lambda item: item[0])
    return entries


def open_dir(workdir: str, user_path: str, action: str) -> int:
    """A descriptor of the directory ``user_path`` leads to (the caller closes it)."""
    resolved = resolve(workdir, user_path, action=action)
    try:
        if resolved.name is None:
            return os.dup(resolved.parent_fd)
        try:
            return os.open(resolved.name, _DIR_FLAGS, dir_fd=resolved.parent_fd)
        except OSError as exc:
            raise _os_error(exc, user_path, action) from exc
    finally:
        resolved.close()


def resolve_dir(workdir: str, user_path: str) -> str:
    """The absolute path of an existing directory beneath ``workdir`` (for ``cwd``).

    The directory is checked through descriptors; the path returned is then used by
    ``exec``, so a command running concurrently could swap a component for a symlink in
    between. That is harmless: with isolation ``none`` the command could change directory
    anywhere itself, and under ``bwrap`` nothing outside the work directory is writable.
    """
    resolved = resolve(workdir, user_path, action="use as working directory")
    try:
        if resolved.name is not None:
            try:
                info = os.stat(resolved.name, dir_fd=resolved.parent_fd, follow_symlinks=False)
            except OSError as exc:
                raise _os_error(exc, user_path, "use as working directory") from exc
            if not stat.S_ISDIR(info.st_mode):
                raise SandboxError(f"cannot use '{_shown(user_path)}' as working directory: not a directory")
    finally:
        resolved.close()
    return os.path.join(workdir, *resolved.parts)
