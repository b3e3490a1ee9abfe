"""The chat page at ``/`` in a real browser: Debian's headless Chromium, driven through
its chromedriver by selenium, against a real ``harness-kernel serve`` process.

Everything is asserted from the page's DOM. When a step fails, a screenshot and the
page's HTML are written to the test's temp dir (the failure message names them).
Under ``CI=true`` a missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import HERE, KEYS, Server, digest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
PATIENCE = 60.0  # a hang guard for each wait, not a speed assertion


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the root pyproject's dev extra)"
    for program in (CHROMIUM, CHROMEDRIVER):
        if not os.access(program, os.X_OK):
            return f"{program} is missing (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser test needs a browser under CI: {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,900", f"--user-data-dir={tmp_path / 'profile'}",
                     "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        options.add_argument(argument)
    service = DriverService(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(PATIENCE)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def chat_server(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    """serve for the browser agent (one API key, so the page asks for it)."""
    folder = tmp_path / "service"
    folder.mkdir()
    for name in ("shop_agent.py", "browser_agent.py"):
        shutil.copy(HERE / name, folder / name)
    (folder / "harness.toml").write_text(
        f"""agent = "browser_agent:agent"
default_model = "browser/shop"
storage = {{ plugin = "sqlite", options = {{ path = "{folder / 'chat.db'}" }} }}

[[plugins]]
module = "browser_agent"

[[providers]]
plugin = "browser"

[[server.keys]]
principal = "alice"
tenant = "acme"
hash = "{digest(KEYS['alice'])}"
""",
        encoding="utf-8",
    )
    flag = tmp_path / "story-seen"
    server = Server(folder / "harness.toml", env={"BROWSER_STORY_FLAG": str(flag)}).start()
    try:
        yield server, flag
    finally:
        server.kill()


class Page:
    """The chat page in the browser, with waits that name what they wait for."""

    def __init__(self, driver: Any, server: Server) -> None:
        from selenium.webdriver.common.by import By

        self.driver, self.server, self.by = driver, server, By
        self.base = server.url

    def wait(self, what: str, condition: Callable[[], Any]) -> Any:
        from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            # The page re-renders lists as they change: an element read mid-render is stale.
            return WebDriverWait(
                self.driver, PATIENCE, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
            ).until(lambda _: condition())
        except TimeoutException:
            raise AssertionError(f"the page never showed {what}") from None

    def texts(self, selector: str) -> list[str]:
        return [e.text.strip() for e in self.driver.find_elements(self.by.CSS_SELECTOR, selector)]

    def find(self, selector: str) -> Any:
        return self.driver.find_element(self.by.CSS_SELECTOR, selector)

    def send(self, text: str) -> None:
        from selenium.webdriver.common.keys import Keys

        box = self.find("#message")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    def open_with_key(self) -> str:
        """Load the page, give it the key, start a session; the session's id."""
        from selenium.webdriver.common.keys import Keys

        self.driver.get(self.base + "/")
        # The page itself needs no key; the API does, so the page asks for one.
        self.wait("the key form", lambda: self.find("#key-form").is_displayed())
        self.find("#api-key").send_keys(KEYS["alice"] + Keys.ENTER)
        self.wait("the key form gone", lambda: not self.find("#key-form").is_displayed())
        self.find("#new-session").click()
        session_id: str = self.wait("a new session in the sidebar", lambda: self.find(".session.selected").get_attribute("data-id"))
        return session_id

    def keep_evidence(self, folder: Path) -> None:
        shot, html = folder / "failure.png", folder / "failure.html"
        self.driver.save_screenshot(str(shot))
        html.write_text(self.driver.page_source, encoding="utf-8")
        print(f"screenshot: {shot}\npage: {html}\nserver log:\n{self.server.logs}")


def test_a_person_chats_approves_and_finds_the_history_after_a_reload(
    browser: Any, chat_server: tuple[Server, Path], tmp_path: Path
) -> None:
    """Give the key, create a session, send and watch the answer stream in, approve a
    tool call, tag and pin the session, reload: the history and the metadata are there."""
    server, story_flag = chat_server
    driver = browser
    page = Page(driver, server)
    wait, texts, send, find = page.wait, page.texts, page.send, page.find

    try:
        session_id = page.open_with_key()
        assert driver.current_url.endswith("#" + session_id)

        # The answer streams in: its first words are on the page while the run still
        # waits (the model goes on only once the test has seen them).
        send("tell a story")
        wait("the user's message", lambda: texts(".msg.user") == ["tell a story"])
        streamed = wait("the streamed words", lambda: [
            t for t in texts(".msg.streaming") if "Once upon a time there was a shop." in t])
        assert streamed == ["Once upon a time there was a shop."]
        story_flag.touch()
        wait("the finished answer", lambda: "Once upon a time there was a shop. The end." in texts(".msg.assistant"))
        wait("the streaming bubble gone", lambda: not texts(".msg.streaming"))

        # A tool call that needs approval: its arguments, Approve; then its result.
        send("refund 42")
        shown = wait("the approval", lambda: texts(".approval"))
        assert len(shown) == 1
        assert "refund" in shown[0]
        assert '"order": "42"' in shown[0]
        find(".approval [data-action=approve]").click()
        wait("the answer after the approval", lambda: "Done: refunded 42" in texts(".msg.assistant"))
        wait("the tool result", lambda: "→ refunded 42" in texts(".tool-call .result"))
        wait("no approval left", lambda: not driver.find_elements(page.by.CSS_SELECTOR, ".approval"))

        # The sidebar shows the derived title and the preview of the last answer.
        item = f'.session[data-id="{session_id}"]'
        wait("the title and preview", lambda: texts(f"{item} .title") == ["tell a story"]
             and texts(f"{item} .preview") == ["Done: refunded 42"])

        # Rename, tag and pin it.
        title = find("#title")
        title.clear()
        title.send_keys("Story and refund")
        find("#tags").send_keys("demo vip")
        find("#pinned").click()
        find("#save-meta").click()
        wait("the new metadata in the sidebar", lambda: texts(f"{item} .title") == ["★Story and refund"]
             and texts(f"{item} .tag") == ["demo", "vip"])

        # A reload shows the whole history again (from the API, not from memory).
        driver.refresh()
        wait("the history after the reload", lambda: texts("#transcript .msg.user") == ["tell a story", "refund 42"])
        assistant = texts("#transcript .msg.assistant")
        assert "Once upon a time there was a shop. The end." in assistant
        assert "Done: refunded 42" in assistant
        call = find(".tool-call")
        assert "refund" in call.text
        assert '"order": "42"' in call.text
        assert "→ refunded 42" in call.text
        assert find("#title").get_attribute("value") == "Story and refund"
        assert find("#tags").get_attribute("value") == "demo vip"
        assert find("#pinned").is_selected()
        assert texts(".session.selected .title") == ["★Story and refund"]
    except BaseException:
        page.keep_evidence(tmp_path)
        raise


def test_the_page_loads_nothing_from_elsewhere(chat_server: tuple[Server, Path]) -> None:
    """The page and its two files are served without a key, under a policy that lets
    the browser load nothing but this origin's files; the page names no other origin."""
    server, _ = chat_server
    client = server.client(None)
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    for path in ("/ui/app.js", "/ui/app.css"):
        asset = client.get(path)
        assert asset.status_code == 200, path
        assert "http://" not in asset.text
        assert "https://" not in asset.text
    assert "http" not in page.text.replace('http-equiv', '')
    assert client.get("/v1/sessions").status_code == 401  # the data still needs the key


def test_a_person_denies_answers_and_aborts(browser: Any, chat_server: tuple[Server, Path], tmp_path: Path) -> None:
    """Deny a tool call with a reason (the model reads it), answer a suspended question,
    and abort a run that is still streaming (its partial answer is kept)."""
    server, _ = chat_server
    page = Page(browser, server)
    try:
        page.open_with_key()
        page.send("refund 7")
        page.wait("the approval", lambda: page.texts(".approval"))
        page.find(".approval .reason").send_keys("not today")
        page.find(".approval [data-action=deny]").click()
        page.wait("the answer after the denial", lambda: [t for t in page.texts(".msg.assistant") if t.startswith("Done:")])
        assert "not today" in page.texts(".tool-call .result")[0]
        assert "error" in page.find(".tool-call .result").get_attribute("class")
        assert "not today" in page.texts(".msg.assistant")[-1]

        page.send("ask")
        question = page.wait("the suspended question", lambda: page.texts(".suspension"))
        assert "which colour?" in question[0]
        page.find(".suspension input").send_keys("blue")
        page.find(".suspension [data-action=resume]").click()
        page.wait("the answer after the reply", lambda: "blue" in page.texts(".msg.assistant")[-1])
        page.wait("no question left", lambda: not page.texts(".suspension"))

        page.send("tell a story")  # the test never lets this story end
        page.wait("the streamed words", lambda: "Once upon a time there was a shop." in page.texts(".msg.streaming"))
        page.wait("the abort button", lambda: page.find("#abort").is_displayed())
        page.find("#abort").click()
        page.wait("the run stopped", lambda: not page.texts(".msg.streaming") and not page.find("#abort").is_displayed())
        page.wait("the partial answer kept", lambda: "Once upon a time there was a shop." in page.texts(".msg.assistant"))
    except BaseException:
        page.keep_evidence(tmp_path)
        raise


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 in front of the service; ``cut()`` breaks every open
    connection at once, as a flaky network would."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self.lock:
            doomed, self.open = self.open, []
        for end in doomed:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


def test_a_dropped_stream_resumes_without_losing_or_repeating_anything(
    browser: Any, chat_server: tuple[Server, Path], tmp_path: Path
) -> None:
    """The connection breaks while an answer streams, and the run finishes on the server
    meanwhile; the page reconnects from the last event id it saw and shows the whole
    answer, once."""
    server, story_flag = chat_server
    proxy = CuttableProxy(server.url)
    page = Page(browser, server)
    page.base = proxy.url
    try:
        session_id = page.open_with_key()
        page.send("tell a story")
        page.wait("the streamed words", lambda: "Once upon a time there was a shop." in page.texts(".msg.streaming"))
        proxy.cut()  # the event stream breaks mid-answer
        story_flag.touch()  # the run ends on the server while the page reconnects
        api = server.client("alice")
        page.wait("the run ending on the server", lambda: api.get(f"/v1/sessions/{session_id}").json()["status"] == "idle")
        page.wait("the whole answer", lambda: "Once upon a time there was a shop. The end." in page.texts(".msg.assistant"))
        page.wait("the streaming bubble gone", lambda: not page.texts(".msg.streaming"))
        assert page.texts(".msg.user") == ["tell a story"]
        assert page.texts(".msg.assistant") == ["Once upon a time there was a shop. The end."]
    except BaseException:
        page.keep_evidence(tmp_path)
        raise
    finally:
        proxy.close()
