"""Helpers for the local sandbox tests: the bwrap probe and process inspection."""

from __future__ import annotations

import functools
import os
import secrets
import tempfile
from collections.abc import Callable

import pytest
import trio

from harness_kernel.errors import ConfigError
from harness_kernel_local_sandbox import LocalSandbox, LocalSandboxOptions


@functools.cache
def bwrap_problem() -> str | None:
    """Why bubblewrap cannot be used on this host, or ``None`` when it works.

    The same probe the sandbox runs when a store starts: it reports a missing ``bwrap``
    or the kernel refusing to create namespaces, with bubblewrap's own message.
    """
    root = tempfile.mkdtemp(prefix="hk-bwrap-probe-")
    try:
        LocalSandbox(LocalSandboxOptions(root=root, isolation="bwrap"))
    except ConfigError as exc:
        return str(exc)
    finally:
        os.rmdir(root)
    return None


def missing(component: str, problem: str) -> None:
    """Skip a test whose component this host lacks; under ``CI=true`` fail instead:
    CI installs every component (``.ci/run``), so a missing one there is a broken CI."""
    message = f"{component} is unusable on this host, so it cannot be tested here: {problem}"
    if under_ci():
        pytest.fail(f"{message} (CI={os.environ['CI']}: CI must provide it, see .ci/run)", pytrace=False)
    pytest.skip(message)


def under_ci() -> bool:
    """``CI`` set the way CI services set it (``true``, ``1``, ``yes``)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def needs_bwrap() -> None:
    problem = bwrap_problem()
    if problem is not None:
        missing("isolation 'bwrap'", problem)


@functools.cache
def cgroup_problem() -> str | None:
    """Why commands get no cgroup for memory and processes here, or ``None`` when they do."""
    root = tempfile.mkdtemp(prefix="hk-cgroup-probe-")
    try:
        sandbox = LocalSandbox(LocalSandboxOptions(root=root))
        try:
            controllers = sandbox.cgroups.controllers if sandbox.cgroups is not None else {}
            if {"memory", "pids"} <= set(controllers):
                return None
            return f"{sandbox.limit_mechanisms['memory']}; {sandbox.limit_mechanisms['processes']}"
        finally:
            if sandbox.cgroups is not None:
                sandbox.cgroups.close()
    finally:
        os.rmdir(root)


def needs_cgroup() -> None:
    problem = cgroup_problem()
    if problem is not None:
        missing("a cgroup per command (memory and pids)", problem)



def live_processes_with(marker: str) -> list[int]:
    """Pids of processes (not zombies) whose command line contains ``marker``."""
    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                cmdline = file.read()
            with open(f"/proc/{entry}/stat", "rb") as file:
                state = file.read().rpartition(b")")[2].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != b"Z":
            found.append(int(entry))
    return found


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            state = file.read().rpartition(b")")[2].split()[0]
    except OSError:
        return False
    return state != b"Z"


async def wait_until(predicate: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    """Poll ``predicate`` until true; fail with ``what`` after ``limit`` seconds (a hang guard)."""
    # Polling: process exit in another namespace has no event to wait on.
    for _ in range(int(limit / 0.02)):
        if predicate():
            return
        await trio.sleep(0.02)
    raise AssertionError(f"timed out waiting until {what}")


def unique_sleep() -> str:
    """A ``sleep`` duration that doubles as a marker to find the process in /proc."""
    return f"{secrets.randbelow(90000) + 10000}.{secrets.randbelow(900) + 100}"
