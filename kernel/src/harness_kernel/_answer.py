"""Judging a run's answer against its output type (see ``_output``): accept it, or send
it back to the model with what was wrong, or fail the run past the allowed repairs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ._log import SessionLog
from ._output import FINAL_ANSWER, native_output, parse_answer, problems, structure_answer
from ._records import Message, MessageAdded, ToolCallPart, ToolOutcome
from ._runtime import Runtime
from ._validation import ValidationFailed
from .errors import OutputInvalid

__all__ = ["AnswerCheck"]

FinishCall = Callable[[Any, ToolCallPart, ToolOutcome, str], Awaitable[None]]


class AnswerCheck:
    """Checks the answers of one session's runs against their output types."""

    def __init__(self, runtime: Runtime, log: SessionLog, finish_call: FinishCall) -> None:
        self._rt = runtime
        self._log = log
        self._finish_call = finish_call

    def native(self, model: str) -> bool:
        provider, _ = self._rt.resolve_model(model)
        return native_output(provider)

    async def judge(self, run: Any, assistant: Message) -> bool:
        """Whether ``assistant`` ends ``run`` with a valid answer (then ``run.output``
        holds it). An answer that does not fit goes back to the model; past the
        agent's ``output_retries`` the run fails with ``OutputInvalid``."""
        cls: type = run.output_type
        if self.native(run.model):
            if assistant.tool_calls:
                return False  # a tool round first; the answer comes after
            try:
                run.output = structure_answer(cls, parse_answer(assistant.text))
                return True
            except ValidationFailed as exc:
                await self._refused(run, cls, problems(exc), None)
                return False
        answer = next((c for c in assistant.tool_calls if c.name == FINAL_ANSWER), None)
        if answer is None:
            if assistant.tool_calls:
                return False
            await self._refused(run, cls, "no answer was given", None)
            return False
        try:
            value = structure_answer(cls, answer.arguments)
        except ValidationFailed as exc:
            await self._refused(run, cls, problems(exc), answer)
            return False
        await self._finish_call(run, answer, "ok", "accepted")
        for call in assistant.tool_calls:
            if call is not answer:
                await self._finish_call(run, call, "error", "not run: the final answer was given")
        run.output = value
        return True

    async def _refused(self, run: Any, cls: type, why: str, call: ToolCallPart | None) -> None:
        run.output_failures += 1
        retries = self._rt.agent.output_retries
        what = f"the answer does not match {cls.__name__}: {why}"
        if call is not None:
            # The call gets its result either way, so the history stays valid for models.
            await self._finish_call(run, call, "invalid_arguments", f"{what}; call it again")
        if run.output_failures > retries:
            raise OutputInvalid(f"{what} (after {retries} repair{'s' if retries != 1 else ''})")
        if call is None:
            again = (
                "Answer again, with JSON only."
                if self.native(run.model)
                else f"Call '{FINAL_ANSWER}' with the answer."
            )
            repair = Message.user(f"{what[0].upper()}{what[1:]}. {again}")
            await self._log.append(run.id, MessageAdded(repair))
