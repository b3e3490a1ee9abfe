"""Auth and tenancy: a table of keys x sessions x endpoints, every cell checked; wrong,
missing and revoked keys; body limits; rate limits; keys never in the logs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from harness_kernel.errors import ConfigError

from .conftest import KEYS, Server, sse_events, write_config

OWNERS = ("alice", "carol", "bob")
"""Who creates a session: alice and carol are tenant acme (carol is also scoped to her
own sessions), bob is tenant globex."""
SEES = {
    "alice": {"alice", "carol"},
    "carol": {"carol"},
    "bob": {"bob"},
    "admin": {"alice", "carol", "bob"},
    "from_env": {"alice", "carol"},
}
ENDPOINTS = (
    ("GET", ""),
    ("PATCH", ""),
    ("GET", "/runs"),
    ("GET", "/history"),
    ("GET", "/display"),
    ("GET", "/approvals"),
    ("GET", "/suspensions"),
    ("POST", "/abort"),
    ("POST", "/btw"),
    ("POST", "/follow-ups"),
    ("GET", "/runs/run_none/events"),
    ("POST", "/approvals/apr_none/approve"),
)
BODIES = {"/btw": {"question": "q"}, "/follow-ups": {"text": "later"}, "": {"pinned": False}}


@pytest.fixture(scope="module")
def sessions(server: Server) -> dict[str, str]:
    created = {}
    for owner in OWNERS:
        response = server.client(owner).post("/v1/sessions", json={"id": f"t-{owner}-{uuid.uuid4().hex[:8]}"})
        assert response.status_code == 201, response.text
        created[owner] = response.json()["id"]
    return created


def _call(client: httpx.Client, method: str, session_id: str, suffix: str) -> httpx.Response:
    return client.request(method, f"/v1/sessions/{session_id}{suffix}", json=BODIES.get(suffix, {}))


@pytest.mark.parametrize("who", sorted(SEES))
def test_every_key_reaches_exactly_its_tenants_sessions(server: Server, sessions: dict[str, str], who: str) -> None:
    """For every session and endpoint: the key's own tenant's sessions answer as for
    anyone; another tenant's answer exactly as a session that does not exist."""
    client = server.client(who)
    for owner, session_id in sessions.items():
        for method, suffix in ENDPOINTS:
            response = _call(client, method, session_id, suffix)
            if owner in SEES[who]:
                assert response.status_code not in (401, 403), (who, owner, suffix, response.text)
                if response.status_code == 404:  # the run or the approval, never the session
                    assert response.json()["code"] != "session.not_found", (who, owner, suffix)
            else:
                missing = _call(client, method, "never-created", suffix)
                assert response.status_code == missing.status_code == 404, (who, owner, suffix)
                hidden = response.json()
                assert hidden["code"] == "session.not_found"
                assert hidden["detail"].replace(session_id, "X") == missing.json()["detail"].replace("never-created", "X")


@pytest.mark.parametrize("who", sorted(SEES))
def test_listing_shows_only_visible_sessions(server: Server, sessions: dict[str, str], who: str) -> None:
    """The session list is filtered by the key's tenant (and principal)."""
    listed = set()
    cursor = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = server.client(who).get("/v1/sessions", params=params).json()
        listed |= {s["id"] for s in page["items"]}
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert {owner for owner, sid in sessions.items() if sid in listed} == SEES[who]


def test_a_tenant_cannot_label_its_way_into_another(server: Server) -> None:
    """Creating with another tenant's label is refused; filtering on it lists nothing."""
    bob = server.client("bob")
    refused = bob.post("/v1/sessions", json={"labels": {"tenant_id": "acme"}})
    assert refused.status_code == 403
    assert refused.json()["code"] == "auth.forbidden"
    assert bob.get("/v1/sessions", params={"label": "tenant_id:acme"}).json()["items"] == []


def test_only_the_admin_deletes_across_tenants(server: Server) -> None:
    """Delete obeys the same scoping: bob cannot delete acme's session, the admin can."""
    session_id = server.client("alice").post("/v1/sessions", json={}).json()["id"]
    assert server.client("bob").delete(f"/v1/sessions/{session_id}").status_code == 404
    assert server.client("admin").delete(f"/v1/sessions/{session_id}").status_code == 204
    assert server.client("alice").get(f"/v1/sessions/{session_id}").status_code == 404


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong-key"}, {"authorization": f"Bearer {KEYS['revoked']}"},
     {"x-api-key": "wrong-key"}, {"authorization": "Basic abc"}],
    ids=["missing", "wrong", "revoked", "wrong-x-api-key", "not-bearer"],
)
def test_no_valid_key_no_access(server: Server, headers: dict[str, str]) -> None:
    """Without a valid key every API route is a 401 problem; health still answers."""
    client = httpx.Client(base_url=server.url, headers=headers, timeout=60)
    with client:
        for path in ("/v1/sessions", "/v1/sessions/x", "/v1/events"):
            response = client.get(path)
            assert response.status_code == 401
            assert response.json()["code"] in ("auth.missing_key", "auth.invalid_key")
            assert "www-authenticate" in response.headers
        assert client.get("/healthz").status_code == 200


def test_the_x_api_key_header_works_too(server: Server) -> None:
    with httpx.Client(base_url=server.url, headers={"x-api-key": KEYS["alice"]}, timeout=60) as client:
        assert client.get("/v1/sessions").status_code == 200


def test_oversized_bodies_are_refused(server: Server) -> None:
    """A body over max_body_bytes is a 413, declared or streamed without a length."""
    client = server.client()
    session_id = client.post("/v1/sessions", json={}).json()["id"]
    big = client.post(f"/v1/sessions/{session_id}/messages", json={"text": "x" * 5000})
    assert big.status_code == 413
    assert big.json()["code"] == "request.too_large"

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"x" * 1000

    streamed = client.post(f"/v1/sessions/{session_id}/messages", content=chunks())
    assert streamed.status_code == 413
    assert client.get(f"/v1/sessions/{session_id}/runs").json()["items"] == []


def test_a_flood_from_one_key_is_limited_while_another_is_served(server: Server) -> None:
    """The 5-a-minute key gets 429 with Retry-After after its burst; alice does not."""
    flooder, alice = server.client("limited"), server.client("alice")
    statuses = [flooder.get("/v1/sessions").status_code for _ in range(12)]
    assert statuses[:5] == [200] * 5
    assert set(statuses[5:]) == {429}
    limited = flooder.get("/v1/sessions")
    assert limited.json()["code"] == "server.rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert all(alice.get("/v1/sessions").status_code == 200 for _ in range(12))


@pytest.mark.parametrize("who", ["bob", "admin"])
def test_the_store_event_stream_is_scoped_too(server: Server, who: str) -> None:
    """bob's stream never shows the events of acme's sessions; the admin's shows both."""
    alice, bob = server.client("alice"), server.client("bob")
    theirs = alice.post("/v1/sessions", json={}).json()["id"]
    mine = bob.post("/v1/sessions", json={}).json()["id"]
    with server.client(who).stream("GET", "/v1/events", headers={"accept": "text/event-stream"}) as response:
        alice.post(f"/v1/sessions/{theirs}/messages", json={"text": "secret"})
        bob.post(f"/v1/sessions/{mine}/messages", json={"text": "mine"})
        sessions = set()
        for item in sse_events(response):
            sessions.add(item["data"]["session_id"])
            if item["data"]["session_id"] == mine and item["data"].get("event", {}).get("type") == "run.finished":
                break
    assert mine in sessions
    assert (theirs in sessions) is (who == "admin")


def test_browsers_of_the_configured_origin_may_call(server: Server) -> None:
    """CORS: a preflight from a listed origin is allowed (without a key), another is not."""
    anonymous = server.client(None)
    asked = {"access-control-request-method": "POST", "access-control-request-headers": "authorization"}
    allowed = anonymous.options("/v1/sessions", headers={"origin": "https://app.example", **asked})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    refused = anonymous.options("/v1/sessions", headers={"origin": "https://evil.example", **asked})
    assert refused.status_code == 400
    answered = server.client().get("/v1/sessions", headers={"origin": "https://app.example"})
    assert answered.headers["access-control-allow-origin"] == "https://app.example"


def test_keys_never_appear_in_the_logs(server: Server) -> None:
    """After every test above (the access log on), nothing the server printed holds a
    key, though it logged the requests."""
    server.client("alice").get("/v1/sessions/nope")
    assert server.wait_for_log('"GET /v1/sessions/nope 1.1" 404')
    for key in KEYS.values():
        assert key not in server.logs


def test_a_taken_port_is_a_configuration_error(server: Server, tmp_path: Path) -> None:
    """serve on the port another server holds exits 2 naming the address."""
    port = server.url.rsplit(":", 1)[1]
    done = subprocess.run(
        [sys.executable, "-m", "harness_kernel.cli", "serve", "--config", str(write_config(tmp_path)), "--port", port],
        capture_output=True, text=True, timeout=60, env={**os.environ, "SHOP_SERVICE_KEY": "k"},
    )
    assert done.returncode == 2
    assert f"server: cannot listen on 127.0.0.1:{port}" in done.stderr


def test_without_keys_the_service_stays_on_loopback(tmp_path: Path) -> None:
    """No [[server.keys]]: serving on a non-loopback address is a configuration error."""
    from harness_kernel.server import serve

    config = write_config(tmp_path, server_table="\n[server]\nport = 0\n")
    with pytest.raises(ConfigError, match="loopback"):
        serve(str(config), host="0.0.0.0")


def test_without_keys_on_loopback_no_key_is_needed(tmp_path: Path) -> None:
    """The quickstart shape: no keys, 127.0.0.1, open to the local machine."""
    running = Server(write_config(tmp_path, server_table="")).start()
    try:
        client = running.client(None)
        created = client.post("/v1/sessions", json={"id": "open-1"})
        assert created.status_code == 201
        assert client.post("/v1/sessions/open-1/messages", json={"text": "hi"}).json()["text"] == "You said: hi"
    finally:
        running.kill()


def test_serve_without_the_extra_names_it(tmp_path: Path) -> None:
    """With starlette or hypercorn missing, serve fails with a message naming the extra."""
    config = write_config(tmp_path)
    code = (
        "import sys; sys.modules['hypercorn'] = None\n"
        "from harness_kernel.cli import main\n"
        f"sys.exit(main(['serve', '--config', {str(config)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "harness-kernel[server]" in done.stderr
    assert "hypercorn" in done.stderr
