"""MCP servers declared on the store: ``create_session_store(mcp_servers=[...])`` and
``[[mcp_servers]]`` in ``harness.toml``, with real servers (stdio subprocess and
streamable HTTP on 127.0.0.1)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from harness_kernel import create_session_store, define_agent, tool
from harness_kernel.config import ConfigFileError, load_config, open_store_from_config
from harness_kernel.errors import ConfigError
from harness_kernel.testing import ScriptedProvider
from tests.mcp.conftest import HERE, ask, caller

SERVER = str(HERE / "server_app.py")


@tool(approval="auto")
async def local_note(text: str) -> str:
    """A local tool next to the servers' tools."""
    return f"noted {text}"


async def test_store_level_servers_add_their_tools_to_the_agents_own(http_url: str) -> None:
    """Both kinds of server in one list; the agent keeps its own tools and gains the
    servers' (named ``<server>__<tool>``), with per-tool approvals."""
    servers = [
        {"name": "local", "command": sys.executable, "args": [SERVER, "stdio"], "approval": "auto"},
        {"name": "web", "url": http_url, "tool_approvals": {"add": "auto"}},
    ]
    async with create_session_store(
        agent=define_agent(name="both", tools=[local_note]),
        providers=[ScriptedProvider({"caller": caller})],
        default_model="scripted/caller",
        mcp_servers=servers,
    ) as store:
        assert (await store.send("s1", ask("local__add", a=2, b=5))).text == "7"
        assert (await store.send("s1", ask("web__add", a=1, b=1))).text == "2"
        assert (await store.send("s1", ask("local_note", text="x"))).text == "noted x"
        asked = await store.send("s1", ask("web__pid"))
        assert asked.status == "waiting_approval"  # the server's default: ask


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        ([{"name": "x"}], "mcp_servers[0].command: required field missing"),
        ([{"name": "x", "command": "c", "url": "http://h/"}], "give either 'command' (a stdio server) or 'url' (an HTTP server), not both"),
        ([{"name": "x", "command": 3}], "mcp_servers[0].command: expected str, got int"),
        ([{"name": "x", "command": "c", "headers": {"a": "b"}}], "'headers' does not apply to a stdio server"),
        ([{"name": "x", "url": "ftp://h"}], "url must start with http:// or https://"),
        ([{"name": "x", "command": "c", "approvel": "auto"}], "mcp_servers[0]: unknown key(s): approvel (did you mean 'approval'?)"),
        ({"name": "x"}, "mcp_servers: expected an array of tables, got table"),
    ],
)
async def test_bad_server_entries_are_reported_under_mcp_servers(servers: object, expected: str) -> None:
    """Nothing is started; the problem names ``mcp_servers[i]``."""
    with pytest.raises(ConfigError) as info:
        async with create_session_store(
            agent=define_agent(name="a"),
            providers=[ScriptedProvider({"caller": caller})],
            default_model="scripted/caller",
            mcp_servers=servers,  # type: ignore[arg-type]
        ):
            pass
    assert expected in str(info.value)


async def test_without_the_mcp_plugin_the_shorthand_names_the_distribution() -> None:
    """Autoloading off: no ``mcp`` kit, and the error says where it comes from."""
    with pytest.raises(ConfigError, match="no tool kit named 'mcp' is installed; the harness-kernel-mcp distribution"):
        async with create_session_store(
            agent=define_agent(name="a"),
            providers=[ScriptedProvider({"caller": caller})],
            default_model="scripted/caller",
            mcp_servers=[{"name": "x", "command": "c"}],
            autoload_plugins=False,
        ):
            pass


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "mcp_agent.py").write_text(
        textwrap.dedent(
            """
            from harness_kernel import define_agent
            from harness_kernel.testing import ScriptedProvider
            from harness_kernel import hookimpl
            from tests.mcp.conftest import caller

            agent = define_agent(name="configured")

            @hookimpl
            def harness_kernel_providers(register):
                register("callers", lambda: ScriptedProvider({"caller": caller}, name="callers"))
            """
        )
    )
    config = tmp_path / "harness.toml"
    config.write_text(
        textwrap.dedent(
            """
            agent = "mcp_agent:agent"
            default_model = "callers/caller"
            [[plugins]]
            module = "mcp_agent"
            [[providers]]
            plugin = "callers"
            """
        )
        + textwrap.dedent(body)
    )
    return config


async def test_mcp_servers_in_harness_toml_run_through_the_store(tmp_path: Path) -> None:
    """``[[mcp_servers]]`` in the file: validated by load_config, started when the store
    opens, and written back the same way by ``to_toml``."""
    config = write(
        tmp_path,
        f"""
        [[mcp_servers]]
        name = "calc"
        command = {sys.executable!r}
        args = [{SERVER!r}, "stdio"]
        approval = "auto"
        """,
    )
    loaded = load_config(config)
    assert "[[mcp_servers]]" in loaded.to_toml()
    assert "[tools.mcp]" not in loaded.to_toml()
    (tmp_path / "again.toml").write_text(loaded.to_toml(mask_secrets=False))
    assert load_config(tmp_path / "again.toml").to_data() == loaded.to_data()
    async with open_store_from_config(loaded) as store:
        assert (await store.send("s1", ask("calc__add", a=20, b=22))).text == "42"


def test_bad_mcp_servers_in_harness_toml_are_reported_with_their_path(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """
        [[mcp_servers]]
        name = "ok"
        command = "x"

        [[mcp_servers]]
        name = "bad"
        command = "x"
        call_timeout = "soon"
        """,
    )
    with pytest.raises(ConfigFileError) as info:
        load_config(config)
    assert "mcp_servers[1].call_timeout: expected float, got str" in info.value.errors
