"""What a host can rely on from create_session_store: errors as raised, ownership, agents."""

from __future__ import annotations

import re

import attrs
import pytest

from harness_kernel import MemoryLogSink, MemoryStorage, define_agent, hookimpl
from harness_kernel.errors import ConfigError, StorageError

from .helpers import open_store


async def test_an_exception_in_the_store_block_comes_back_as_raised() -> None:
    """The host's own exception is not wrapped in an ExceptionGroup by the store."""
    with pytest.raises(ValueError, match="host bug"):
        async with open_store():
            raise ValueError("host bug")


async def test_a_bad_default_model_is_a_plain_config_error() -> None:
    """A default model no provider serves fails the start with ConfigError."""
    with pytest.raises(ConfigError, match=re.escape("default_model: no configured provider serves 'openai/gpt' (configured namespaces: scripted)")):
        async with open_store(default_model="openai/gpt"):
            pass


async def test_log_sink_instances_belong_to_the_caller() -> None:
    """The store closes sinks it built from names, never instances handed to it."""

    class Counting(MemoryLogSink):
        closed = 0

        async def aclose(self) -> None:
            Counting.closed += 1

    sink = Counting()
    async with open_store(logging={"sinks": [sink]}) as store:
        await store.send("s", "hi")
    assert Counting.closed == 0
    assert sink.records


async def test_the_first_host_plugin_listed_wins() -> None:
    """Two host plugin objects registering one name: the first in the list wins."""

    class First(MemoryStorage):
        pass

    class Second(MemoryStorage):
        pass

    def plugin(cls):
        class Plugin:
            @hookimpl
            def harness_kernel_storage(self, register) -> None:
                register("shared", cls)

        return Plugin()

    async with open_store(plugins=[plugin(First), plugin(Second)], storage="shared") as store:
        assert type(store.storage) is First


async def test_a_store_refuses_sessions_of_another_agent() -> None:
    """Hydrating a session recorded by agent alpha in a store for beta is an error."""
    storage = MemoryStorage()
    async with open_store(agent=define_agent(name="alpha"), storage=storage) as store:
        await store.send("s1", "hi")
    async with open_store(agent=define_agent(name="beta"), storage=storage) as store:
        with pytest.raises(ConfigError, match="belongs to agent 'alpha'"):
            await store.get_or_create("s1")


@attrs.define
class VaultOptions:
    password: str = attrs.field(metadata={"secret": True})


class VaultStorage(MemoryStorage):
    """A storage whose errors carelessly mention its password."""

    def __init__(self, options: VaultOptions) -> None:
        super().__init__()
        self.password = options.password

    async def append(self, session_id, events, expected_seq) -> None:
        if len(self._entries[session_id].events) >= 2:
            raise StorageError(f"disk full (login {self.password})")
        await super().append(session_id, events, expected_seq)


class VaultPlugin:
    @hookimpl
    def harness_kernel_storage(self, register) -> None:
        register("vault", VaultStorage, options=VaultOptions)


async def test_secret_options_of_any_plugin_kind_are_masked() -> None:
    """A storage's secret option never reaches logs or a run's error."""
    sink = MemoryLogSink()
    async with open_store(
        plugins=[VaultPlugin()], storage="vault", storage_options={"password": "hunter2-very-secret"},
        logging={"sinks": [sink]},
    ) as store:
        result = await store.send("s1", "hi")
    assert result.status == "failed"
    assert result.error.message == "disk full (login [redacted])"
    assert "hunter2-very-secret" not in sink.text()
    assert "[redacted]" in sink.text()
