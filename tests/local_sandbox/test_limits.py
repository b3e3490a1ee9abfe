"""Per-command limits and the disk quota, with real processes at both isolation levels.

Every limit here is small (64 processes, 256 MiB, 2 CPU seconds, 1 MiB files, a 32 MiB
quota) and every command has a timeout, so a broken limit cannot take the test machine
down: the worst case is a command killed at its timeout, and a failed test.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from harness_kernel.contracts import SessionInfo
from harness_kernel.errors import SandboxError
from harness_kernel_local_sandbox import (
    CommandLimits,
    LocalSandbox,
    LocalSandboxOptions,
    LocalSandboxSession,
)
from tests.local_sandbox._support import live_processes_with, needs_cgroup, wait_until

HANG_GUARD = 120  # seconds; a guard against hanging forever, not a speed assertion
TIMEOUT = 60  # the commands' own timeout: a limit that works stops them long before
QUOTA = 32 << 20
SMALL = CommandLimits(
    cpu_seconds=2, memory_bytes=256 << 20, processes=64, file_size_bytes=1 << 20, open_files=256
)


@attrs.define
class Pair:
    """Two sessions of one sandbox: ``box`` runs the offending command, ``other`` must not notice."""

    sandbox: LocalSandbox
    box: LocalSandboxSession
    other: LocalSandboxSession


@pytest.fixture
async def pair(make_sandbox: Callable[..., LocalSandbox], isolation: str) -> Pair:
    sandbox = make_sandbox(isolation=isolation, limits=SMALL, disk_quota_bytes=QUOTA)
    box = await sandbox.open(SessionInfo(f"limited-{secrets.token_hex(3)}", "agent"))
    other = await sandbox.open(SessionInfo(f"bystander-{secrets.token_hex(3)}", "agent"))
    return Pair(sandbox, box, other)


async def run(box: LocalSandboxSession, command: str, **options: object):  # type: ignore[no-untyped-def]
    with trio.fail_after(HANG_GUARD):
        return await box.exec(command, timeout=TIMEOUT, **options)  # type: ignore[arg-type]


async def size_of(box: LocalSandboxSession, name: str) -> int:
    return next(entry.size for entry in await box.list_dir() if entry.name == name)


async def assert_still_usable(pair: Pair) -> None:
    """The session that hit the limit runs a normal command, and so does its neighbour."""
    for box in (pair.box, pair.other):
        result = await run(box, "echo fine > fine.txt && cat fine.txt")
        assert (result.exit_code, result.stdout, result.limit) == (0, "fine\n", None), result


async def test_a_fork_bomb_is_stopped_at_the_process_limit(pair: Pair) -> None:
    """A fork bomb is killed when its tree reaches the process limit (a cgroup: root is
    not exempt), no process of it is left on the host, and a neighbour session running
    commands meanwhile is unaffected."""
    needs_cgroup()
    marker = secrets.token_hex(8)
    neighbour: list[int | None] = []

    async def neighbour_commands() -> None:
        for _ in range(5):
            neighbour.append((await run(pair.other, "echo alive")).exit_code)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(neighbour_commands)
        result = await run(pair.box, f"bomb() {{ bomb & bomb; }}; bomb # {marker}")
    assert result.limit == "processes", result
    assert not result.timed_out
    assert neighbour == [0] * 5
    await wait_until(lambda: not live_processes_with(marker), "no process of the fork bomb runs on the host")
    await assert_still_usable(pair)


async def test_a_memory_hog_is_stopped_at_its_memory_limit(pair: Pair) -> None:
    """A shell holding 600 MB in a variable is killed at 256 MiB, reported as ``memory``."""
    needs_cgroup()
    result = await run(pair.box, "x=$(head -c 600000000 /dev/zero | tr '\\0' a); echo survived")
    assert result.limit == "memory", result
    assert not result.ok
    assert "survived" not in result.stdout
    await assert_still_usable(pair)


async def test_a_cpu_spinner_is_stopped_at_its_cpu_time(pair: Pair) -> None:
    """A busy loop gets SIGXCPU after 2 CPU seconds, well before its timeout, reported as ``cpu``."""
    result = await run(pair.box, "while :; do :; done")
    assert result.limit == "cpu", result
    assert not result.timed_out
    assert not result.ok
    await assert_still_usable(pair)


async def test_a_file_beyond_the_size_limit_is_cut(pair: Pair) -> None:
    """Writing 5 MiB to a file stops at 1 MiB: the file holds exactly the limit, the writer
    died of SIGXFSZ and the result says ``file_size`` even though the shell carried on."""
    result = await run(pair.box, "head -c 5242880 /dev/zero > big.bin; echo carried on")
    assert result.limit == "file_size", result
    assert result.stdout == "carried on\n"
    assert await size_of(pair.box, "big.bin") == 1 << 20
    await assert_still_usable(pair)


async def test_a_disk_filler_is_stopped_at_the_session_quota(make_sandbox, isolation: str) -> None:
    """One big file is cut at the space the quota leaves; a filler writing many files is
    killed when the directory reaches the quota. Both say ``disk``; write_file refuses to
    go over; after cleaning up, the session and its neighbour work normally."""
    limits = attrs.evolve(SMALL, file_size_bytes=256 << 20)
    sandbox = make_sandbox(isolation=isolation, limits=limits, disk_quota_bytes=QUOTA)
    pair = Pair(
        sandbox,
        await sandbox.open(SessionInfo("filler", "agent")),
        await sandbox.open(SessionInfo("bystander", "agent")),
    )
    one = await run(pair.box, "head -c 104857600 /dev/zero > fill.bin")
    assert one.limit == "disk", one
    assert await size_of(pair.box, "fill.bin") <= QUOTA
    many = await run(pair.box, "i=0; while :; do head -c 1048576 /dev/zero > f$i.bin; i=$((i+1)); done")
    assert many.limit == "disk", many
    assert not many.timed_out
    with pytest.raises(SandboxError, match="disk quota"):
        await pair.box.write_file("more.bin", b"x" * (QUOTA // 2))
    cleanup = await run(pair.box, "rm -f ./*.bin")
    assert cleanup.ok, cleanup
    await pair.box.write_file("small.txt", "fits")
    assert await pair.box.read_text("small.txt") == "fits"
    await assert_still_usable(pair)


async def test_write_file_is_refused_over_the_quota(make_sandbox) -> None:
    """write_file checks the quota before writing; replacing a file counts only the difference."""
    sandbox = make_sandbox(disk_quota_bytes=1 << 20)
    box = await sandbox.open(SessionInfo("quota", "agent"))
    await box.write_file("a.bin", b"a" * (600 << 10))
    with pytest.raises(SandboxError, match="disk quota of 1048576 bytes"):
        await box.write_file("b.bin", b"b" * (600 << 10))
    assert [e.name for e in await box.list_dir()] == ["a.bin"]
    await box.write_file("a.bin", b"c" * (700 << 10))  # replaces: fits
    assert len(await box.read_file("a.bin")) == 700 << 10


async def test_limits_are_overridden_per_command(make_sandbox, isolation: str) -> None:
    """``exec(limits=...)`` changes one command's limits; the next one gets the defaults again."""
    sandbox = make_sandbox(isolation=isolation, limits=SMALL)
    box = await sandbox.open(SessionInfo("override", "agent"))
    cut = await run(box, "head -c 4096 /dev/zero > f.bin", limits={"file_size_bytes": 1024})
    assert cut.limit == "file_size"
    assert await size_of(box, "f.bin") == 1024
    whole = await run(box, "head -c 4096 /dev/zero > f.bin")
    assert (whole.ok, whole.limit) == (True, None)
    unlimited = await run(box, "ulimit -t", limits=CommandLimits.unlimited())
    assert unlimited.stdout.strip() == "unlimited"
    assert (await run(box, "ulimit -n")).stdout.strip() == "256"
    with pytest.raises(SandboxError, match="unknown limit 'cpu'"):
        await box.exec("true", limits={"cpu": 1})
    with pytest.raises(SandboxError, match="cpu_seconds: must be at least 1"):
        await box.exec("true", limits={"cpu_seconds": 0})


async def test_limits_without_cgroups_still_stop_cpu_and_file_size(make_sandbox, isolation: str) -> None:
    """With ``cgroup = "off"`` the setrlimit limits still hold, and the sandbox says which
    mechanism each limit uses."""
    sandbox = make_sandbox(isolation=isolation, limits=SMALL, cgroup="off")
    assert sandbox.cgroups is None
    assert sandbox.limit_mechanisms["memory"].startswith("setrlimit RLIMIT_AS")
    box = await sandbox.open(SessionInfo("rlimits", "agent"))
    assert (await run(box, "while :; do :; done")).limit == "cpu"
    assert (await run(box, "head -c 2097152 /dev/zero > f.bin")).limit == "file_size"
    assert (await run(box, "echo ok")).stdout == "ok\n"


async def test_the_mechanisms_are_reported_at_start(make_sandbox, caplog: pytest.LogCaptureFixture) -> None:
    """The sandbox logs, and keeps in ``limit_mechanisms``, how it enforces each limit; as
    root the process limit comes from a cgroup (RLIMIT_NPROC would not bind)."""
    with caplog.at_level(logging.INFO, logger="harness_kernel_local_sandbox"):
        sandbox = make_sandbox()
    assert set(sandbox.limit_mechanisms) == {"cpu", "memory", "processes", "file_size", "open_files", "disk"}
    lines = [r.getMessage() for r in caplog.records if r.name == "harness_kernel_local_sandbox"]
    assert any(line.startswith("local sandbox limits: cpu: setrlimit RLIMIT_CPU") for line in lines)
    if os.geteuid() == 0:
        needs_cgroup()
        assert sandbox.limit_mechanisms["processes"].startswith("cgroup v")


def test_limits_are_on_by_default() -> None:
    """A new config gets every limit and a disk quota without asking."""
    options = LocalSandboxOptions()
    assert options.limits == CommandLimits()
    assert None not in attrs.astuple(options.limits)
    assert options.disk_quota_bytes == 4 << 30
    assert options.cgroup == "auto"


_FIELDS = {"cpu_seconds": 1, "memory_bytes": 16 << 20, "processes": 1, "file_size_bytes": 0, "open_files": 16}


@given(st.sampled_from(sorted(_FIELDS)), st.integers(min_value=-(1 << 40), max_value=1 << 40))
def test_limit_values_are_validated(name: str, value: int) -> None:
    """A value at or above its minimum is kept; below it is refused with the field's name."""
    if value >= _FIELDS[name]:
        assert getattr(CommandLimits(**{name: value}), name) == value
    else:
        with pytest.raises(ValueError, match=f"^{name}: must be at least"):
            CommandLimits(**{name: value})


@given(st.sampled_from(sorted(_FIELDS)), st.one_of(st.booleans(), st.floats(), st.text(max_size=3)))
def test_limit_values_must_be_whole_numbers(name: str, value: object) -> None:
    """Booleans, floats and strings are not limits."""
    with pytest.raises(ValueError, match=f"^{name}: must be a whole number or null"):
        CommandLimits(**{name: value})  # type: ignore[arg-type]


@given(st.dictionaries(st.sampled_from(sorted(_FIELDS)), st.one_of(st.none(), st.integers(1 << 24, 1 << 40))))
def test_overrides_replace_only_the_named_limits(overrides: dict[str, int | None]) -> None:
    """``overridden`` keeps every limit not named and takes the named ones as given."""
    merged = CommandLimits().overridden(overrides)
    for name in _FIELDS:
        expected = overrides[name] if name in overrides else getattr(CommandLimits(), name)
        assert getattr(merged, name) == expected
