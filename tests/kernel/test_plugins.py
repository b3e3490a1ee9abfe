"""The plugin system: entry-point loading, operator controls, listing, hook isolation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from harness_kernel import (
    MemoryLogSink,
    MemoryStorage,
    PluginRegistry,
    define_agent,
    hookimpl,
)
from harness_kernel.errors import ConfigError, PluginError, PluginLoadError

from .helpers import calls_then_answers, open_store


def _install(root: Path, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """A real installed distribution: dist-info with entry points, plus its modules."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[harness_kernel]\n{lines}\n")
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site directory on sys.path with one broken and one working plugin installed."""
    _install(tmp_path, "hk-broken", "0.3", {"broken": "hk_broken_mod"}, {"hk_broken_mod": "raise ImportError('missing native lib')\n"})
    _install(
        tmp_path, "hk-good", "1.2.0", {"good": "hk_good_mod"},
        {"hk_good_mod": """
            from harness_kernel import hookimpl, MemoryStorage

            class GoodStorage(MemoryStorage):
                pass

            @hookimpl
            def harness_kernel_storage(register):
                register("good", GoodStorage)
                register("memory", GoodStorage)  # overrides the builtin, which is trylast
         """},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("HARNESS_KERNEL_PLUGINS", raising=False)
    monkeypatch.delenv("HARNESS_KERNEL_DISABLE_AUTOLOAD", raising=False)
    return tmp_path


def _rows(registry: PluginRegistry) -> dict[tuple[str, str], object]:
    return {(r.kind, r.name): r for r in registry.listing() if r.status != "shadowed"}


def test_a_plugin_that_fails_to_import_is_reported_and_skipped(site: Path) -> None:
    """The broken plugin is listed as failed with its error; the good one still loads."""
    rows = _rows(PluginRegistry())
    broken = rows[("?", "broken")]
    assert (broken.status, broken.distribution, broken.version) == ("failed", "hk-broken", "0.3")
    assert "ImportError: missing native lib" in broken.error
    good = rows[("storage", "good")]
    assert (good.status, good.distribution, good.version, good.plugin) == ("loaded", "hk-good", "1.2.0", "good")


def test_strict_mode_fails_the_start_on_a_broken_plugin(site: Path) -> None:
    """With strict loading, a plugin that cannot import stops the store from starting."""
    with pytest.raises(PluginLoadError, match="'broken' \\(hk-broken\\) failed to load"):
        PluginRegistry(strict=True)


def test_an_installed_plugin_overrides_a_builtin_of_the_same_name(site: Path) -> None:
    """Builtins are trylast: the installed 'memory' storage wins, the builtin is shadowed."""
    registry = PluginRegistry()
    memory = registry.get("storage", "memory")
    assert (memory.plugin, memory.distribution) == ("good", "hk-good")
    shadowed = [r for r in registry.listing() if r.name == "memory" and r.kind == "storage" and r.status == "shadowed"]
    assert [r.distribution for r in shadowed] == ["harness-kernel"]


def test_the_allow_list_environment_variable_blocks_other_plugins(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HARNESS_KERNEL_PLUGINS lets only the named plugins load; builtins always load."""
    monkeypatch.setenv("HARNESS_KERNEL_PLUGINS", "good")
    rows = _rows(PluginRegistry())
    assert rows[("?", "broken")].status == "blocked"
    assert rows[("storage", "good")].status == "loaded"
    assert rows[("storage", "memory")].distribution == "hk-good"
    monkeypatch.setenv("HARNESS_KERNEL_PLUGINS", "")
    rows = _rows(PluginRegistry())
    assert ("storage", "good") not in rows
    assert rows[("storage", "memory")].distribution == "harness-kernel"


def test_disabling_autoload_loads_only_builtins(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HARNESS_KERNEL_DISABLE_AUTOLOAD=1 skips every entry point; builtins remain."""
    monkeypatch.setenv("HARNESS_KERNEL_DISABLE_AUTOLOAD", "1")
    registry = PluginRegistry()
    assert registry.names("storage") == ["memory"]
    assert {r.distribution for r in registry.listing()} == {"harness-kernel"}


def test_the_listing_names_every_builtin_with_kind_and_version() -> None:
    """The builtins are listed like any plugin: kind, name, distribution, version."""
    rows = _rows(PluginRegistry(autoload=False))
    expected = {("storage", "memory"), ("sandbox", "noop"), ("provider", "scripted"), ("log_sink", "memory"), ("retry_policy", "none")}
    assert expected <= set(rows)
    for key in expected:
        assert rows[key].distribution == "harness-kernel"
        assert rows[key].version
        assert rows[key].status == "loaded"


async def test_an_unknown_plugin_name_is_a_clear_config_error() -> None:
    """Naming a storage nobody registered lists what is installed."""
    with pytest.raises(ConfigError, match="unknown storage plugin 'nope' \\(installed: memory\\)"):
        async with open_store(storage="nope"):
            pass


async def test_plugin_options_are_validated_with_paths() -> None:
    """A bad option value is reported with its exact path; unknown keys too."""
    with pytest.raises(ConfigError) as info:
        async with open_store(logging={"sinks": [{"plugin": "memory", "options": {"max_records": "many", "x": 1}}]}):
            pass
    message = str(info.value)
    assert "logging.sinks[0].options.max_records: expected int, got str" in message
    assert "logging.sinks[0].options: unknown key(s): x" in message
    with pytest.raises(ConfigError, match=r"storage\.options\.path: unknown key \(storage 'memory' takes no options\)"):
        async with open_store(storage_options={"path": "x"}):
            pass


def test_a_misspelled_hook_fails_loudly() -> None:
    """check_pending: implementing a hook that does not exist is an error, not silence."""

    class Typo:
        @hookimpl
        def run_startedd(self, session_id):
            pass

    with pytest.raises(PluginError, match="unknown hook"):
        PluginRegistry(plugins=[Typo()], autoload=False)


class Recorder:
    """A plugin object observing lifecycle hooks, some sync and some async."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def session_opened(self, session_id: str) -> None:
        self.calls.append(f"opened:{session_id}")

    @hookimpl
    async def run_started(self, run_id: str, model: str) -> None:
        await trio.lowlevel.checkpoint()
        self.calls.append(f"run_started:{model}")

    @hookimpl
    def before_model_call(self, request):
        self.calls.append("before_model_call")
        return None

    @hookimpl
    async def after_model_call(self, text: str) -> None:
        self.calls.append(f"after_model_call:{text}")

    @hookimpl
    def before_tool_call(self, tool: str, arguments: dict) -> None:
        self.calls.append(f"before_tool_call:{tool}:{arguments}")

    @hookimpl
    def after_tool_call(self, tool: str, outcome: str) -> None:
        self.calls.append(f"after_tool_call:{tool}:{outcome}")

    @hookimpl
    def run_finished(self, result) -> None:
        self.calls.append(f"run_finished:{result.status}")

    @hookimpl
    def session_closed(self, session_id: str, reason: str) -> None:
        self.calls.append(f"closed:{reason}")


async def test_lifecycle_hooks_fire_in_order_and_awaitables_are_awaited() -> None:
    """Every lifecycle hook runs at its point; async implementations are awaited."""
    recorder = Recorder()
    async with open_store({"main": calls_then_answers()}, plugins=[recorder]) as store:
        result = await store.send("s1", "word")
        await store.close("s1")
    assert result.status == "completed"
    assert recorder.calls == [
        "opened:s1",
        "run_started:scripted/main",
        "before_model_call",
        "after_model_call:",
        "before_tool_call:lookup:{'q': 'word'}",
        "after_tool_call:lookup:ok",
        "before_model_call",
        "after_model_call:ok: result",
        "run_finished:completed",
        "closed:close",
    ]


async def test_an_observer_that_raises_is_disabled_and_the_run_completes() -> None:
    """A raising observer is logged once and not called again for that session."""
    calls: list[str] = []

    class Flaky:
        @hookimpl
        def on_event(self, event) -> None:
            calls.append(event.type)
            raise RuntimeError("observer bug")

    sink = MemoryLogSink()
    async with open_store({"main": calls_then_answers()}, plugins=[Flaky()], logging={"sinks": [sink]}) as store:
        first = await store.send("s1", "one")
        second = await store.send("s1", "two")
        other = await store.send("s2", "three")
    assert (first.status, second.status, other.status) == ("completed", "completed", "completed")
    assert calls == ["run.started", "run.started"]  # once per session, then disabled
    failures = [r for r in sink.records if r["event"] == "hook_failed"]
    assert [(r["hook"], r["disabled"], r["error"]) for r in failures] == [("on_event", True, "RuntimeError: observer bug")] * 2


async def test_before_model_call_may_replace_the_request() -> None:
    """The request a before_model_call hook returns is the one the provider receives."""
    seen: list[str] = []

    class Rewriter:
        @hookimpl
        def before_model_call(self, request):
            import attrs

            return attrs.evolve(request, system="rewritten")

    def handler(request):
        seen.append(request.system)
        from harness_kernel.testing import Reply

        return Reply(text="ok")

    async with open_store({"main": handler}, plugins=[Rewriter()]) as store:
        await store.send("s", "hi")
    assert seen == ["rewritten"]


async def test_before_tool_call_can_deny_and_the_model_sees_the_reason() -> None:
    """A before_tool_call veto becomes a denied tool result; the run completes."""

    class Guard:
        @hookimpl
        def before_tool_call(self, tool: str) -> str | None:
            return "lookups are off today" if tool == "lookup" else None

    async with open_store({"main": calls_then_answers()}, plugins=[Guard()]) as store:
        result = await store.send("s", "x")
    assert result.status == "completed"
    assert result.text == "error: denied: lookups are off today"


async def test_a_raising_before_tool_call_fails_closed() -> None:
    """A policy hook that raises denies the call instead of letting it run unchecked."""
    ran: list[str] = []

    class Broken:
        @hookimpl
        def before_tool_call(self) -> None:
            raise RuntimeError("policy service down")

    from harness_kernel import tool

    @tool
    def lookup(q: str) -> str:  # same name as the shared tool, records execution
        ran.append(q)
        return "result"

    agent = define_agent(name="guarded", tools=[lookup])
    async with open_store({"main": calls_then_answers()}, plugins=[Broken()], agent=agent) as store:
        result = await store.send("s", "x")
    assert ran == []
    assert result.text == "error: denied: a policy check failed, so the call was not run"


async def test_classify_error_overrides_the_reported_error() -> None:
    """classify_error can replace the sanitized error of a failed run."""
    from harness_kernel import ErrorInfo
    from harness_kernel.errors import ProviderUnavailable

    class Classifier:
        @hookimpl
        def classify_error(self, error):
            return ErrorInfo("ops.upstream", "the model service is down, try later", True)

    def down(_request):
        raise ProviderUnavailable("503 from upstream")

    async with open_store({"main": down}, plugins=[Classifier()]) as store:
        result = await store.send("s", "x")
    assert result.status == "failed"
    assert result.error == ErrorInfo("ops.upstream", "the model service is down, try later", True)


async def test_extra_plugin_objects_can_register_components() -> None:
    """create_session_store(plugins=[...]) accepts registration hooks too."""

    class Extra:
        @hookimpl
        def harness_kernel_storage(self, register) -> None:
            register("scratch", MemoryStorage)

    async with open_store(plugins=[Extra()], storage="scratch") as store:
        assert type(store.storage) is MemoryStorage
        assert ("storage", "scratch", "loaded") in {(r.kind, r.name, r.status) for r in store.plugins()}


