"""A deployment in a temporary directory and a way to run the real CLI against it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs

REPO = Path(__file__).resolve().parents[2]

AGENT_MODULE = textwrap.dedent(
    '''
    """A scripted agent for the CLI tests; it also registers the "testmodel" provider."""

    import attrs
    import trio

    from harness_kernel import TextDelta, Finish, ToolResultPart, define_agent, hookimpl, tool
    from harness_kernel.errors import BadRequest
    from harness_kernel.testing import Reply, ScriptedProvider, ToolCall


    @tool
    async def lookup(q: str) -> str:
        """Look a word up."""
        return f"definition of {q}"


    @tool(approval="ask", category="edit")
    async def write_note(text: str) -> str:
        """Write a note."""
        return f"wrote {len(text)} characters"


    agent = define_agent(name="tester", instructions="Test.", tools=[lookup, write_note])


    async def slow(request):
        yield TextDelta("thinking ")
        await trio.sleep(3600)
        yield Finish("stop")


    def main(request):
        last = request.messages[-1]
        if last.role == "tool":
            return Reply(text=f"tool said: {last.parts[0].content}")
        text = last.text
        if text.startswith("note "):
            return Reply(text="Writing it.", tool_calls=[ToolCall("write_note", {"text": text[5:]})])
        if text.startswith("lookup "):
            return Reply(tool_calls=[ToolCall("lookup", {"q": text[7:]})])
        if text == "fail":
            raise BadRequest("the scripted model refused")
        if text == "slow":
            return slow(request)
        return Reply(text=f"You said: {text}")


    @attrs.frozen
    class KeyedOptions:
        api_key: str = attrs.field(metadata={"secret": True})
        region: str = "eu"


    @hookimpl
    def harness_kernel_providers(register):
        register("testmodel", lambda: ScriptedProvider({"main": main}, name="testmodel"))
        register("keyed", lambda options: ScriptedProvider({}, name="keyed"), options=KeyedOptions)
    '''
)

CONFIG = textwrap.dedent(
    """
    agent = "{module}:agent"
    default_model = "testmodel/main"
    storage = {{ plugin = "sqlite", options = {{ path = "${{CONFIG_DIR}}/{db}" }} }}

    [[plugins]]
    module = "{module}"

    [[providers]]
    plugin = "testmodel"
    """
)


async def seed(config: Path, sends: list[tuple[str, str, dict[str, str]]]) -> None:
    """Create sessions in-process (fast) through the same configuration."""
    from harness_kernel.config import open_store_from_config

    async with open_store_from_config(config) as store:
        for session_id, message, labels in sends:
            await store.send(session_id, message, **labels)


def run_parallel(*calls: tuple[str, ...], config: Path) -> list[Result]:
    """Several independent CLI runs at once (each a tuple of arguments)."""
    processes = [
        subprocess.Popen([*command(), "--config", str(config), *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=child_env())
        for args in calls
    ]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        results.append(Result(process.returncode, stdout, stderr))
    return results


@attrs.frozen
class Result:
    returncode: int
    stdout: str
    stderr: str


def command() -> list[str]:
    """The installed console script of this environment."""
    script = Path(sys.executable).with_name("harness-kernel")
    assert script.exists(), "the kernel must be installed (harness-kernel console script)"
    return [str(script)]


FAST_PLUGINS = "sqlite,logging"
"""The entry points the test deployments use: loading only these keeps each CLI start
short (the plugin listing test loads everything)."""


def child_env(plugins: str | None = FAST_PLUGINS, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_KERNEL_")}
    env.update(PYTHONUNBUFFERED="1", NO_COLOR="1", **extra)
    if plugins is not None:
        env["HARNESS_KERNEL_PLUGINS"] = plugins
    return env


def run_cli(*args: str, config: Path | None = None, input: str | None = None,
            env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
    """Run ``harness-kernel [--config CONFIG] ARGS`` in a subprocess; real stdout/stderr."""
    prefix = ["--config", str(config)] if config is not None else []
    completed = subprocess.run(
        [*command(), *prefix, *args], input=input, capture_output=True, text=True,
        env=env or child_env(), cwd=cwd, timeout=120, check=False,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def write_deployment(directory: Path, *, module: str = "cli_agent", db: str = "sessions.db",
                     extra: str = "") -> Path:
    """Write the agent module and a harness.toml using it; returns the config path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{module}.py").write_text(AGENT_MODULE)
    config = directory / "harness.toml"
    config.write_text(CONFIG.format(module=module, db=db) + extra)
    return config
