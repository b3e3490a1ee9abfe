"""Every distribution of the repository builds as a wheel, installs into a fresh virtual
environment outside the repository, and the quickstart runs there from its config file
through the installed `harness-kernel` console script, with plugins found through the
installed metadata only (no source tree on the path).

One virtual environment is built per test session (pip may fetch dependencies).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DIST_ROOTS = ("kernel", "providers", "storage_backends", "sandboxes", "plugins")

pytestmark = pytest.mark.slow


def distribution_dirs() -> list[Path]:
    found = []
    for root in DIST_ROOTS:
        for pyproject in sorted((REPO / root).rglob("pyproject.toml")):
            if not any(part.startswith(".") for part in pyproject.relative_to(REPO).parts):
                found.append(pyproject.parent)
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything pointing back at the repository or its venv."""
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("HARNESS_KERNEL_")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO)))
    env.update(PYTHONUNBUFFERED="1", NO_COLOR="1", PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def run(args: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                               env=clean_env(), timeout=900, check=False)
    assert completed.returncode == 0, f"{args[:4]} failed:\n{completed.stdout}\n{completed.stderr}"
    return completed


@pytest.fixture(scope="session")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment (outside the repository) holding every repository wheel."""
    root = tmp_path_factory.mktemp("packaging")
    assert REPO not in root.parents
    pip = [sys.executable, "-m", "pip", "--python"]
    # One build environment with the build backend serves every distribution (a fresh
    # isolated environment per wheel would triple the time for the same wheels).
    builder = root / "build-env"
    run([sys.executable, "-m", "venv", "--without-pip", builder], cwd=root)
    run([*pip, builder / "bin" / "python", "install", "--quiet", "hatchling>=1.21"], cwd=root)
    wheels = root / "wheels"
    run([*pip, builder / "bin" / "python", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", wheels, *distribution_dirs()], cwd=root)
    built = sorted(wheels.glob("*.whl"))
    assert len(built) == len(distribution_dirs())
    target = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", target], cwd=root)
    run([*pip, target / "bin" / "python", "install", "--quiet", *built], cwd=root)
    return target


def test_every_distribution_installs_and_registers_from_its_metadata(venv: Path) -> None:
    """In the fresh environment the kernel is imported from site-packages, and
    `harness-kernel plugins` lists every repository distribution as loaded."""
    where = run([venv / "bin" / "python", "-c", "import harness_kernel; print(harness_kernel.__file__)"],
                cwd=venv).stdout.strip()
    assert where.startswith(str(venv))
    listing = run([venv / "bin" / "harness-kernel", "plugins"], cwd=venv).stdout
    rows = [line.split() for line in listing.splitlines()[1:]]
    names = {tomllib.loads((d / "pyproject.toml").read_text())["project"]["name"] for d in distribution_dirs()}
    loaded = {row[3] for row in rows if row[5] == "loaded"}
    assert names <= loaded
    assert not [row for row in rows if row[5] == "failed"]


def test_the_kernel_wheel_ships_the_chat_page(venv: Path) -> None:
    """The service's web page (three static files) is inside the installed package (read
    as package data: importing ``harness_kernel.server`` needs the ``server`` extra)."""
    check = (
        "from importlib import resources; "
        "web = resources.files('harness_kernel') / 'server' / 'web'; "
        "print(sorted(p.name for p in web.iterdir() if p.is_file()))"
    )
    listed = run([venv / "bin" / "python", "-c", check], cwd=venv).stdout.strip()
    assert listed == "['app.css', 'app.js', 'index.html']"


def test_the_quickstart_runs_from_its_config_through_the_console_script(venv: Path, tmp_path: Path) -> None:
    """The quickstart directory, copied outside the repository, runs with the installed
    console script: a streamed answer, a tool call approved, and the session answered
    from its history after a restart."""
    quickstart = tmp_path / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", quickstart,
                    ignore=shutil.ignore_patterns(".harness", "__pycache__", "quickstart.py"))
    output = run([venv / "bin" / "python", quickstart / "run_config_demo.py"], cwd=tmp_path).stdout
    assert "$ harness-kernel chat demo" in output
    assert "notes> Hello! I keep notes for you." in output
    assert "[approval needed] save_note" in output
    assert "[approved]" in output
    assert "notes> Done: saved note 'reminder'" in output
    assert "== a restart: three new processes, each on the same storage ==" in output
    assert "You have 1 note(s): saved note 'reminder' (29 characters)." in output
