"""A throwaway PostgreSQL cluster: ``initdb`` into a temporary directory, ``pg_ctl`` on
127.0.0.1 and a free port, removed afterwards. Used by the tests and by bench/w9.

The server runs as an unprivileged user (PostgreSQL refuses to run as root): the
current user when it is not root, otherwise ``harness-pg`` (created with ``useradd``
when missing) through ``runuser``. The binaries are found under
``/usr/lib/postgresql/*/bin`` (Debian's layout), then on ``PATH``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["Cluster", "ClusterUnavailable", "find_bin"]

SERVER_USER = "harness-pg"


class ClusterUnavailable(RuntimeError):
    """PostgreSQL's server programs are not installed here (or cannot be run)."""


def find_bin() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``; ``ClusterUnavailable`` if none."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]), reverse=True)
    if versions:
        return Path(versions[0]).parent
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    raise ClusterUnavailable(
        "PostgreSQL's server programs (initdb, pg_ctl) are not installed: apt-get install -y postgresql"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One server; ``dsn`` reaches it as the superuser ``postgres`` (trust auth on loopback)."""

    def __init__(self) -> None:
        self.bin = find_bin()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            self._ensure_user()
        self.dir = Path(tempfile.mkdtemp(prefix="harness-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = _free_port()
        self.running = False
        if self.as_root:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.dir.chmod(0o700)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ensure_user(self) -> None:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
                check=True, capture_output=True,
            )

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin / program), *args]
        if self.as_root:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, cwd=self.dir)
        if check and done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{program} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}\n{log}")
        return done

    def init(self) -> Cluster:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-sync",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\nmax_connections = 200\n"
                "fsync = on\nlog_min_messages = warning\n"
            )
        return self

    def start(self) -> Cluster:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
        self.running = True
        return self

    def restart(self) -> None:
        """``pg_ctl restart`` (fast shutdown: open connections are cut)."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-m", "fast", "restart")

    def stop(self) -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", "immediate", "stop", check=False)
            self.running = False

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        try:
            return self.init().start()
        except BaseException:
            self.remove()
            raise

    def __exit__(self, *exc: object) -> None:
        self.remove()
