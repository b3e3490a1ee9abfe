"""The compaction policy: a token budget per model, when to compact, what to keep, and
who writes the summary (see ``_compact`` for how it is applied)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import attrs

from ._records import Message
from .errors import ConfigError

__all__ = ["SUMMARY_INSTRUCTIONS", "CompactionInput", "CompactionPolicy", "Summarizer"]

SUMMARY_INSTRUCTIONS: Final = (
    "You compact a conversation for the assistant that continues it. Write a concise "
    "summary of the conversation below (and of the earlier summary, if there is one): "
    "the user's goals, decisions made, facts learnt, tool results that still matter and "
    "open questions. Write only the summary."
)


@attrs.frozen
class CompactionInput:
    """What a summarizer gets: the previous summary (``None`` the first time) and the
    messages of the events ``first_seq``..``last_seq`` it is to summarize with it."""

    session_id: str
    previous_summary: str | None
    messages: tuple[Message, ...]
    first_seq: int
    last_seq: int


Summarizer = Callable[[CompactionInput], "str | Awaitable[str]"]


def _budget(instance: Any, attribute: Any, value: Any) -> None:
    values = value.values() if isinstance(value, Mapping) else [value]
    for item in values:
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise ConfigError(
                f"compaction budget must be a positive number of tokens, got {item!r}"
            )


def _ratio(instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigError(f"compaction {attribute.name} must be a ratio in (0, 1], got {value!r}")


@attrs.frozen
class CompactionPolicy:
    """When and how a session's model context is compacted (``define_agent(compaction=)``).

    ``budget``: the context size in tokens, one number or per model ref (``"*"`` for the
    rest; a model without one is never compacted by the policy). ``trigger``: compact
    before a model call whose context exceeds ``trigger * budget``. ``keep``: how much
    of the newest conversation stays verbatim (``keep * budget`` tokens at most, but
    always the newest message). ``summarizer``: a model ref, or a host function
    ``fn(CompactionInput) -> str`` (sync or async); ``None`` uses the run's model.
    ``instructions``: the system prompt of a summarizing model call.
    """

    budget: int | Mapping[str, int] = attrs.field(validator=_budget)
    trigger: float = attrs.field(default=0.8, validator=_ratio)
    keep: float = attrs.field(default=0.3, validator=_ratio)
    summarizer: str | Summarizer | None = None
    instructions: str = SUMMARY_INSTRUCTIONS

    def budget_for(self, model: str) -> int | None:
        """The budget of ``model`` (a ref), or ``None`` when it has none."""
        if isinstance(self.budget, Mapping):
            return self.budget.get(model, self.budget.get("*"))
        return self.budget
