"""File operations of the local sandbox stay inside the session's work directory."""

from __future__ import annotations

import os
import stat
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
import trio

from harness_kernel.contracts import SessionInfo
from harness_kernel.errors import SandboxError, SandboxPathError
from harness_kernel_local_sandbox import LocalSandboxSession, workspace_name

ESCAPING = ["../outside.txt", "/etc/passwd", "a/../../outside.txt", "a/..", "nul\x00byte", "..", "./../x"]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the sandbox root holding a file that must never be read or changed."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text("host secret")
    return directory


def workdir(box: LocalSandboxSession) -> Path:
    return Path(box.workdir)


def relative_path(target: Path, start: Path) -> str:
    return os.path.relpath(target, start)


def exists(path: str | Path) -> bool:
    return os.path.lexists(path)


@pytest.mark.parametrize("path", ESCAPING)
async def test_escaping_paths_are_refused_by_every_operation(box: LocalSandboxSession, path: str) -> None:
    """'..', absolute paths and NUL bytes raise SandboxPathError for read, write, list and cwd."""
    with pytest.raises(SandboxPathError):
        await box.read_file(path)
    with pytest.raises(SandboxPathError):
        await box.write_file(path, "x")
    with pytest.raises(SandboxPathError):
        await box.list_dir(path)
    with pytest.raises(SandboxPathError):
        await box.exec(["true"], cwd=path)
    assert not (workdir(box).parent / "outside.txt").exists()


async def test_a_symlink_pointing_out_is_refused(box: LocalSandboxSession, outside: Path) -> None:
    """A link inside the work directory to a file outside can be neither read nor written through."""
    (workdir(box) / "link.txt").symlink_to(outside / "secret.txt")
    (workdir(box) / "abs-dir").symlink_to(outside)
    with pytest.raises(SandboxPathError):
        await box.read_file("link.txt")
    with pytest.raises(SandboxPathError):
        await box.write_file("link.txt", "overwritten")
    assert (outside / "secret.txt").read_text() == "host secret"
    with pytest.raises(SandboxPathError):
        await box.list_dir("abs-dir")


async def test_a_path_through_a_symlinked_directory_is_refused(box: LocalSandboxSession, outside: Path) -> None:
    """A relative link to a directory outside cannot be walked through for any operation."""
    relative = relative_path(outside, workdir(box))
    (workdir(box) / "dir").symlink_to(relative)
    (workdir(box) / "nested").mkdir()
    (workdir(box) / "nested" / "up").symlink_to("../../")
    for path in ("dir/secret.txt", "nested/up/outside/secret.txt"):
        with pytest.raises(SandboxPathError):
            await box.read_file(path)
    with pytest.raises(SandboxPathError):
        await box.write_file("dir/new.txt", "x")
    with pytest.raises(SandboxPathError):
        await box.write_file("dir/sub/new.txt", "x")
    with pytest.raises(SandboxPathError):
        await box.exec(["pwd"], cwd="dir")
    assert sorted(os.listdir(outside)) == ["secret.txt"]


async def test_symlinks_that_stay_inside_are_followed(box: LocalSandboxSession) -> None:
    """Relative and absolute links that resolve inside the work directory work like their targets."""
    await box.write_file("real/data.txt", "inside")
    (workdir(box) / "rel").symlink_to("real")
    (workdir(box) / "abs.txt").symlink_to(workdir(box) / "real" / "data.txt")
    (workdir(box) / "real" / "back").symlink_to("../real/./data.txt")
    assert await box.read_file("rel/data.txt") == b"inside"
    assert await box.read_file("abs.txt") == b"inside"
    assert await box.read_file("real/back") == b"inside"
    await box.write_file("abs.txt", "through the link")
    assert (workdir(box) / "real" / "data.txt").read_text() == "through the link"
    assert (workdir(box) / "abs.txt").is_symlink()
    result = await box.exec(["pwd", "-P"], cwd="rel")
    assert result.stdout.strip() == str(workdir(box) / "real")


async def test_symlink_loops_are_an_error_not_a_hang(box: LocalSandboxSession) -> None:
    """A cycle of links fails with SandboxPathError."""
    (workdir(box) / "a").symlink_to("b")
    (workdir(box) / "b").symlink_to("a")
    with pytest.raises(SandboxPathError, match="too many levels"):
        await box.read_file("a")


async def test_missing_files_and_wrong_kinds_are_sandbox_errors(box: LocalSandboxSession) -> None:
    """Reading a directory, a FIFO or a missing file, or writing over a directory, fails cleanly."""
    os.mkfifo(workdir(box) / "fifo")
    await box.write_file("dir/file.txt", "x")
    with pytest.raises(SandboxError, match="no such file"):
        await box.read_file("missing.txt")
    with pytest.raises(SandboxError, match="directory"):
        await box.read_file("dir")
    with pytest.raises(SandboxError, match="not a regular file"):
        await box.read_file("fifo")
    with pytest.raises(SandboxError, match="directory"):
        await box.write_file("dir", "x")
    with pytest.raises(SandboxError, match="not a directory"):
        await box.write_file("dir/file.txt/below", "x")
    with pytest.raises(SandboxError, match="no such file"):
        await box.list_dir("missing")
    with pytest.raises(SandboxError, match="no such file"):
        await box.exec(["true"], cwd="missing")


async def test_write_is_atomic_and_keeps_the_file_mode(box: LocalSandboxSession) -> None:
    """Rewriting an executable keeps it executable and leaves no temporary files behind."""
    await box.write_file("run.sh", "#!/bin/sh\necho one\n")
    os.chmod(workdir(box) / "run.sh", 0o755)
    await box.write_file("run.sh", "#!/bin/sh\necho two\n")
    assert stat.S_IMODE(os.stat(workdir(box) / "run.sh").st_mode) == 0o755
    result = await box.exec(["./run.sh"])
    assert result.stdout == "two\n"
    assert [e.name for e in await box.list_dir(".")] == ["run.sh"]


async def test_list_dir_does_not_follow_links(box: LocalSandboxSession, outside: Path) -> None:
    """Listing reports a link as an entry of its own, never the size or kind of what is outside."""
    (workdir(box) / "out").symlink_to(outside)
    await box.write_file("b.txt", "12345")
    await box.write_file("a/x", "")
    entries = await box.list_dir()
    assert [(e.name, e.is_dir, e.size) for e in entries] == [
        ("a", True, 0),
        ("b.txt", False, 5),
        ("out", False, len(os.fsencode(outside))),
    ]


async def test_file_size_limit(make_sandbox, tmp_path: Path) -> None:
    """Files over max_file_bytes are neither read nor written."""
    sandbox = make_sandbox(max_file_bytes=10)
    box = await sandbox.open(SessionInfo("limits", "agent"))
    with pytest.raises(SandboxError, match="limit"):
        await box.write_file("big.txt", "x" * 11)
    (Path(box.workdir) / "big.txt").write_text("y" * 11)
    with pytest.raises(SandboxError, match="limit"):
        await box.read_file("big.txt")
    await box.write_file("ok.txt", "x" * 10)
    assert await box.read_file("ok.txt") == b"x" * 10


async def test_workspace_names_are_safe_and_distinct(make_sandbox) -> None:
    """Ids differing only in case get separate directories, named inside the root."""
    sandbox = make_sandbox()
    upper = await sandbox.open(SessionInfo("Customer-42", "agent"))
    lower = await sandbox.open(SessionInfo("customer-42", "agent"))
    odd = await sandbox.open(SessionInfo("a.b:c@d", "agent"))
    await upper.write_file("who.txt", "upper")
    await lower.write_file("who.txt", "lower")
    assert await upper.read_file("who.txt") == b"upper"
    assert await lower.read_file("who.txt") == b"lower"
    for box in (upper, lower, odd):
        assert Path(box.workdir).parent == Path(sandbox.root)
        assert Path(box.workdir).name == workspace_name(box.session_id)
    assert Path(upper.workdir).name.startswith("customer-42-")
    assert workspace_name("..") != ".."


async def test_destroy_removes_only_that_workspace_even_with_locked_directories(make_sandbox) -> None:
    """destroy deletes the session's directory (also one a command made unwritable) and nothing else."""
    sandbox = make_sandbox()
    doomed = await sandbox.open(SessionInfo("doomed", "agent"))
    kept = await sandbox.open(SessionInfo("kept", "agent"))
    await doomed.write_file("locked/inner/file.txt", "x")
    await kept.write_file("file.txt", "still here")
    result = await doomed.exec("chmod 000 locked/inner && chmod 500 locked")
    assert result.ok
    await sandbox.destroy("doomed")
    assert not exists(doomed.workdir)
    assert sorted(os.listdir(sandbox.root)) == [Path(kept.workdir).name]
    assert await kept.read_file("file.txt") == b"still here"
    with pytest.raises(SandboxError, match="closed"):
        await doomed.read_file("locked/inner/file.txt")


async def test_a_racing_symlink_swap_never_lets_a_read_out(make_sandbox, outside: Path) -> None:
    """While another thread keeps swapping a directory and a link to the outside under one name,
    reads and listings through it either act inside or are refused: the outside is never reached.
    (Writes resolve their path with the same descriptor-relative walk.)"""
    sandbox = make_sandbox()
    box = await sandbox.open(SessionInfo("race", "agent"))
    base = Path(box.workdir)
    (base / "d.real").mkdir()
    (base / "d.real" / "secret.txt").write_text("inside")
    (base / "d.link").symlink_to(outside)
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            for name in ("d.real", "d.link"):
                os.rename(base / name, base / "d")
                os.rename(base / "d", base / name)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the threads as finely as possible
    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    outcomes: Counter[str] = Counter()
    try:
        for _ in range(400):
            try:
                content = await box.read_file("d/secret.txt")
                names = [e.name for e in await box.list_dir("d")]
            except SandboxPathError:
                outcomes["refused"] += 1
            except SandboxError:
                outcomes["missing"] += 1
            else:
                assert content == b"inside"
                assert names == ["secret.txt"]
                outcomes["inside"] += 1
    finally:
        stop.set()
        await trio.to_thread.run_sync(thread.join)
        sys.setswitchinterval(interval)
    assert outcomes["inside"], outcomes
    assert outcomes["refused"], outcomes
