"""The agent the browser test deploys: the shop's model and tools, plus a story that
streams its first words and then waits until the test has seen them on the page (it
creates the file named by $BROWSER_STORY_FLAG), so the test never races the stream."""

from __future__ import annotations

import os

import attrs
import trio
from shop_agent import refund, shop_model  # type: ignore[import-not-found]

from harness_kernel import Finish, ModelRequest, TextDelta, ask_user, define_agent, hookimpl
from harness_kernel.hookspecs import Register
from harness_kernel.testing import ScriptedProvider

agent = define_agent(name="browser-shop", tools=[refund, ask_user])
_shop = ScriptedProvider({"shop": shop_model}, name="shop")


async def story_or_shop(request: ModelRequest):  # type: ignore[no-untyped-def]
    last = request.messages[-1]
    if last.role == "user" and last.text == "tell a story":
        yield TextDelta("Once upon a time ")
        yield TextDelta("there was a shop. ")
        flag = trio.Path(os.environ["BROWSER_STORY_FLAG"])
        # The signal is a file the test process creates: no trio.Event reaches across.
        while not await flag.exists():  # noqa: ASYNC110
            await trio.sleep(0.05)
        yield TextDelta("The end.")
        yield Finish("stop")
        return
    async for event in _shop.stream(attrs.evolve(request, model="shop")):
        yield event


@hookimpl
def harness_kernel_providers(register: Register) -> None:
    register("browser", lambda: ScriptedProvider({"shop": story_or_shop}, name="browser"))
