"""Session metadata through the service: titles, previews, tags and pins are shown,
set with PATCH, listed with filters and an order, and never cross tenants."""

from __future__ import annotations

import uuid

from .conftest import Server
from .test_api import new_session


def test_a_session_shows_its_title_and_preview_after_a_run(server: Server) -> None:
    """The first message titles the session and the answer previews it, in the session
    view and in the listing."""
    client = server.client()
    session_id = new_session(client)
    assert client.get(f"/v1/sessions/{session_id}").json()["title"] == ""
    client.post(f"/v1/sessions/{session_id}/messages", json={"text": "where is my order?"})
    view = client.get(f"/v1/sessions/{session_id}").json()
    assert (view["title"], view["preview"], view["tags"], view["pinned"]) == (
        "where is my order?", "You said: where is my order?", [], False,
    )
    listed = {s["id"]: s for s in client.get("/v1/sessions").json()["items"]}
    assert listed[session_id]["title"] == "where is my order?"
    assert listed[session_id]["preview"] == "You said: where is my order?"


def test_patch_renames_tags_and_pins(server: Server) -> None:
    """PATCH changes only the fields it names and answers with the session view; the
    listing filters on tags (all of them) and pinned, and sorts by last update."""
    client = server.client()
    team = uuid.uuid4().hex[:8]
    first, second, third = (new_session(client, team=team) for _ in range(3))
    view = client.patch(f"/v1/sessions/{first}", json={"title": "Refunds", "tags": ["vip", "eu"]}).json()
    assert (view["title"], view["tags"], view["pinned"]) == ("Refunds", ["eu", "vip"], False)
    view = client.patch(f"/v1/sessions/{first}", json={"pinned": True}).json()
    assert (view["title"], view["tags"], view["pinned"]) == ("Refunds", ["eu", "vip"], True)
    client.patch(f"/v1/sessions/{third}", json={"tags": ["vip"]})

    def listed(**params: object) -> list[str]:
        items = client.get("/v1/sessions", params={"label": f"team:{team}", **params}).json()["items"]
        return [s["id"] for s in items]

    assert listed(tag="vip") == [third, first]
    assert listed(tag=["vip", "eu"]) == [first]
    assert listed(pinned="true") == [first]
    assert listed(pinned="false") == [third, second]
    client.post(f"/v1/sessions/{second}/messages", json={"text": "hi"})
    assert listed(order="updated") == [second, third, first]
    page = client.get("/v1/sessions", params={"label": f"team:{team}", "order": "updated", "limit": 2}).json()
    rest = client.get(
        "/v1/sessions",
        params={"label": f"team:{team}", "order": "updated", "limit": 2, "cursor": page["next_cursor"]},
    ).json()
    assert [s["id"] for s in page["items"] + rest["items"]] == [second, third, first]


def test_bad_metadata_is_a_problem_and_changes_nothing(server: Server) -> None:
    """A bad value is a 400 (a wrong type a 422) naming the field; the session keeps its
    metadata."""
    client = server.client()
    session_id = new_session(client)
    client.patch(f"/v1/sessions/{session_id}", json={"title": "kept"})
    for body, status in (
        ({"title": "x" * 201}, 400),
        ({"tags": ["two words"]}, 400),
        ({"tags": "vip"}, 422),
        ({"pinned": "yes"}, 422),
        ({"colour": "red"}, 422),
    ):
        response = client.patch(f"/v1/sessions/{session_id}", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert client.get(f"/v1/sessions/{session_id}").json()["title"] == "kept"
    for params in ({"pinned": "maybe"}, {"order": "title"}, {"tag": "two words"}):
        assert client.get("/v1/sessions", params=params).status_code == 400, params


def test_another_tenant_neither_sees_nor_changes_metadata(server: Server) -> None:
    """Bob (tenant globex) cannot rename alice's session (a 404 like a missing one), and
    a tag filter lists only his own sessions."""
    alice, bob = server.client("alice"), server.client("bob")
    tag = f"t{uuid.uuid4().hex[:8]}"
    hers = new_session(alice)
    alice.patch(f"/v1/sessions/{hers}", json={"tags": [tag], "title": "secret plans"})
    response = bob.patch(f"/v1/sessions/{hers}", json={"title": "mine now"})
    assert response.status_code == 404
    assert response.json()["code"] == "session.not_found"
    assert bob.get("/v1/sessions", params={"tag": tag}).json()["items"] == []
    assert alice.get(f"/v1/sessions/{hers}").json()["title"] == "secret plans"
    assert [s["id"] for s in alice.get("/v1/sessions", params={"tag": tag}).json()["items"]] == [hers]
