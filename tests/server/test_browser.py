"""The chat page at ``/`` in a real browser: Debian's headless Chromium, driven through
its chromedriver by selenium, against a real ``harness-kernel serve`` process.

Everything is asserted from the page's DOM. When a step fails, a screenshot and the
page's HTML are written to the test's temp dir (the failure message names them).
Under ``CI=true`` a missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
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


def test_a_person_chats_approves_and_finds_the_history_after_a_reload(
    browser: Any, chat_server: tuple[Server, Path], tmp_path: Path
) -> None:
    """Give the key, create a session, send and watch the answer stream in, approve a
    tool call, tag and pin the session, reload: the history and the metadata are there."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    server, story_flag = chat_server
    driver = browser

    def wait(what: str, condition: Callable[[], Any]) -> Any:
        try:
            # The page re-renders lists as they change: an element read mid-render is stale.
            return WebDriverWait(
                driver, PATIENCE, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
            ).until(lambda _: condition())
        except TimeoutException:
            raise AssertionError(f"the page never showed {what}") from None

    def texts(selector: str) -> list[str]:
        return [e.text.strip() for e in driver.find_elements(By.CSS_SELECTOR, selector)]

    def send(text: str) -> None:
        box = driver.find_element(By.ID, "message")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    try:
        driver.get(server.url + "/")
        # The page itself needs no key; the API does, so the page asks for one.
        wait("the key form", lambda: driver.find_element(By.ID, "key-form").is_displayed())
        driver.find_element(By.ID, "api-key").send_keys(KEYS["alice"] + Keys.ENTER)
        wait("the key form gone", lambda: not driver.find_element(By.ID, "key-form").is_displayed())

        driver.find_element(By.ID, "new-session").click()
        session_id = wait("a new session in the sidebar", lambda: driver.find_element(
            By.CSS_SELECTOR, ".session.selected").get_attribute("data-id"))
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
        driver.find_element(By.CSS_SELECTOR, ".approval [data-action=approve]").click()
        wait("the answer after the approval", lambda: "Done: refunded 42" in texts(".msg.assistant"))
        wait("the tool result", lambda: "→ refunded 42" in texts(".tool-call .result"))
        wait("no approval left", lambda: not driver.find_elements(By.CSS_SELECTOR, ".approval"))

        # The sidebar shows the derived title and the preview of the last answer.
        item = f'.session[data-id="{session_id}"]'
        wait("the title and preview", lambda: texts(f"{item} .title") == ["tell a story"]
             and texts(f"{item} .preview") == ["Done: refunded 42"])

        # Rename, tag and pin it.
        title = driver.find_element(By.ID, "title")
        title.clear()
        title.send_keys("Story and refund")
        driver.find_element(By.ID, "tags").send_keys("demo vip")
        driver.find_element(By.ID, "pinned").click()
        driver.find_element(By.ID, "save-meta").click()
        wait("the new metadata in the sidebar", lambda: texts(f"{item} .title") == ["★Story and refund"]
             and texts(f"{item} .tag") == ["demo", "vip"])

        # A reload shows the whole history again (from the API, not from memory).
        driver.refresh()
        wait("the history after the reload", lambda: texts("#transcript .msg.user") == ["tell a story", "refund 42"])
        assistant = texts("#transcript .msg.assistant")
        assert "Once upon a time there was a shop. The end." in assistant
        assert "Done: refunded 42" in assistant
        call = driver.find_element(By.CSS_SELECTOR, ".tool-call")
        assert "refund" in call.text
        assert '"order": "42"' in call.text
        assert "→ refunded 42" in call.text
        assert driver.find_element(By.ID, "title").get_attribute("value") == "Story and refund"
        assert driver.find_element(By.ID, "tags").get_attribute("value") == "demo vip"
        assert driver.find_element(By.ID, "pinned").is_selected()
        assert texts(".session.selected .title") == ["★Story and refund"]
    except BaseException:
        shot, html = tmp_path / "failure.png", tmp_path / "failure.html"
        driver.save_screenshot(str(shot))
        html.write_text(driver.page_source, encoding="utf-8")
        print(f"screenshot: {shot}\npage: {html}\nserver log:\n{server.logs}")
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
