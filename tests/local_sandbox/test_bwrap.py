"""Isolation level ``bwrap``: commands cannot write outside the work directory or use the network."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from harness_kernel.contracts import SessionInfo
from tests.local_sandbox._support import needs_bwrap

CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10).close()\n"
    "except OSError as exc:\n"
    "    print('refused:', exc)\n"
    "    sys.exit(1)\n"
    "print('connected')\n"
)


def python_binds() -> tuple[str, ...]:
    """What the test's own interpreter needs to run inside the sandbox (read-only)."""
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    return tuple(sorted(p for p in paths if not p.startswith(("/usr", "/bin", "/lib"))))


async def test_commands_cannot_write_outside_the_work_directory(make_sandbox, tmp_path: Path) -> None:
    """Writes to the host outside the work directory fail or land in throw-away mounts; the
    host never sees them. Writes inside the work directory reach the host."""
    needs_bwrap()
    sandbox = make_sandbox(isolation="bwrap")
    box = await sandbox.open(SessionInfo("jail", "agent"))
    sibling = await sandbox.open(SessionInfo("neighbour", "agent"))
    targets = [
        tmp_path / "outside.txt",
        Path(sandbox.root) / "in-root.txt",
        Path(sibling.workdir) / "planted.txt",
        Path("/usr/hk-test-planted"),
        Path("/etc/hk-test-planted"),
        Path("/tmp") / f"hk-test-planted-{os.getpid()}",
    ]
    script = "; ".join(f"(mkdir -p '{t.parent}'; echo x > '{t}') 2>/dev/null" for t in targets)
    result = await box.exec(f"{script}; echo inside > inside.txt; touch \"$HOME/home.txt\"")
    assert result.ok, result.stderr
    for target in targets:
        assert not target.exists(), f"the command wrote {target} on the host"
    assert await sibling.list_dir() == []
    assert await box.read_file("inside.txt") == b"inside\n"
    assert [e.name for e in await box.list_dir()] == ["home.txt", "inside.txt"]
    denied = await box.exec("echo x > /usr/hk-test-planted")
    assert not denied.ok
    assert "Read-only file system" in denied.stderr


async def test_commands_cannot_reach_a_server_on_loopback(make_sandbox) -> None:
    """A TCP server the test runs on 127.0.0.1 is reachable without isolation and not from bwrap."""
    needs_bwrap()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    accepted = []

    async def serve() -> None:
        while True:
            stream = await listeners[0].accept()
            accepted.append(stream)
            await stream.aclose()

    argv = [sys.executable, "-c", CONNECT, str(port)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        open_box = await make_sandbox(isolation="none").open(SessionInfo("net-open", "agent"))
        reachable = await open_box.exec(argv, timeout=60)
        assert reachable.stdout.strip() == "connected", reachable.stderr
        assert len(accepted) == 1

        jailed = await make_sandbox(isolation="bwrap", ro_binds=python_binds()).open(SessionInfo("net-jail", "agent"))
        blocked = await jailed.exec(argv, timeout=60)
        assert blocked.exit_code == 1, blocked.stderr
        assert blocked.stdout.startswith("refused:")
        assert len(accepted) == 1
        nursery.cancel_scope.cancel()
    await listeners[0].aclose()


async def test_secrets_in_etc_and_home_are_not_mounted(make_sandbox) -> None:
    """Only a short list of /etc files is visible, and the host's home directories are not."""
    needs_bwrap()
    box = await make_sandbox(isolation="bwrap").open(SessionInfo("etc", "agent"))
    result = await box.exec("ls /etc; ls /root /home 2>&1; test -e /etc/shadow && echo SHADOW")
    assert "SHADOW" not in result.stdout
    assert "passwd" in result.stdout.split()
    assert "No such file or directory" in result.stdout


async def test_network_option_shares_the_host_network(make_sandbox) -> None:
    """network = true keeps the host's network namespace (the loopback server is reachable)."""
    needs_bwrap()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            while True:
                await (await listeners[0].accept()).aclose()

        nursery.start_soon(serve)
        box = await make_sandbox(isolation="bwrap", network=True, ro_binds=python_binds()).open(
            SessionInfo("net", "agent")
        )
        result = await box.exec([sys.executable, "-c", CONNECT, str(port)], timeout=60)
        assert result.stdout.strip() == "connected", result.stdout + result.stderr
        nursery.cancel_scope.cancel()
    await listeners[0].aclose()


async def test_read_only_binds_under_tmp_are_visible(make_sandbox, tmp_path: Path) -> None:
    """A ro_binds path under /tmp (a virtualenv there, say) is not hidden by the private /tmp."""
    needs_bwrap()
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data.txt").write_text("from the host")
    assert str(shared).startswith("/tmp/")
    box = await make_sandbox(isolation="bwrap", ro_binds=(str(shared),)).open(SessionInfo("binds", "agent"))
    result = await box.exec(["cat", str(shared / "data.txt")], timeout=60)
    assert (result.exit_code, result.stdout) == (0, "from the host"), result.stderr
    denied = await box.exec(["sh", "-c", f"echo x > {shared}/new.txt"], timeout=60)
    assert denied.exit_code != 0
    assert not (shared / "new.txt").exists()
