"""Cost and budgets: a price table turns token usage into dollars, and budgets end runs.

``Price`` is what one model costs per million tokens; the store prices each model
call's ``Usage`` with the price of the call's model ref (``Usage.cost``), so the cost
is recorded with the usage (``usage.recorded``) and sums into ``RunResult.usage`` and
``session.usage`` like the tokens do. A provider that reports a cost itself keeps it.

``Budget`` limits tokens and cost per run and per session. The run loop checks it
before every model call and after a model call that asked for tools (so the tools of a
step that went over do not run); an exceeded budget ends the run ``failed`` with the
error code ``budget.exceeded``, after what the run produced is in the log.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._choices import model_ref_problem
from ._records import Usage
from ._tables import expect, key_path
from ._validation import ValidationFailed, structure_strictly
from .errors import BudgetExceeded

if TYPE_CHECKING:
    from ._fold import RunInfo

__all__ = ["Budget", "Costs", "Price", "resolve_costs"]

PER: Final = 1_000_000


def _rate(_instance: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not (value >= 0 and math.isfinite(value)):
        raise ValueError(
            f"{attribute.name} must be a non-negative number of dollars per million tokens, got {value!r}"
        )


def _limit(_instance: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive number, got {value!r}")


@attrs.frozen(kw_only=True)
class Price:
    """What a model costs, in US dollars per million tokens.

    ``input`` prices prompt tokens and ``output`` answer tokens; ``cached`` prompt
    tokens read from a prompt cache (default: ``input``), ``cache_write`` prompt tokens
    written to one (default: ``input``), ``reasoning`` the output tokens spent thinking
    (default: ``output``). Every rate is a non-negative number.
    """

    input: float = attrs.field(validator=_rate)
    output: float = attrs.field(validator=_rate)
    cached: float | None = attrs.field(default=None, validator=_rate)
    cache_write: float | None = attrs.field(default=None, validator=_rate)
    reasoning: float | None = attrs.field(default=None, validator=_rate)

    def cost(self, usage: Usage) -> float:
        """The dollars ``usage`` costs at these rates. ``Usage.input_tokens`` counts
        cached tokens too, and ``output_tokens`` the reasoning ones: each token is priced
        once, at its own rate."""
        cached = usage.cache_read_tokens
        written = usage.cache_write_tokens
        fresh = max(0, usage.input_tokens - cached - written)
        thought = min(usage.reasoning_tokens, usage.output_tokens)
        said = usage.output_tokens - thought
        dollars = (
            fresh * self.input
            + cached * (self.input if self.cached is None else self.cached)
            + written * (self.input if self.cache_write is None else self.cache_write)
            + said * self.output
            + thought * (self.output if self.reasoning is None else self.reasoning)
        )
        return dollars / PER


@attrs.frozen(kw_only=True)
class Budget:
    """Limits on what runs may use; ``None`` is no limit.

    ``max_run_tokens`` / ``max_run_cost`` bound one run (across its model calls, and
    across a wait for approval), ``max_session_tokens`` / ``max_session_cost`` a
    session's whole life. Tokens are ``Usage.total_tokens`` (input plus output); cost
    is in US dollars, from the store's prices. A run that reaches a limit ends
    ``failed`` with error code ``budget.exceeded``; the session stays usable.
    """

    max_run_tokens: int | None = attrs.field(default=None, validator=_limit)
    max_run_cost: float | None = attrs.field(default=None, validator=_limit)
    max_session_tokens: int | None = attrs.field(default=None, validator=_limit)
    max_session_cost: float | None = attrs.field(default=None, validator=_limit)

    @property
    def limits_cost(self) -> bool:
        return self.max_run_cost is not None or self.max_session_cost is not None


@attrs.frozen
class Costs:
    """A store's prices (by model ref) and budget."""

    prices: Mapping[str, Price] = attrs.field(factory=dict)
    budget: Budget = Budget()

    def priced(self, model: str, usage: Usage) -> Usage:
        """``usage`` with its cost, unless the provider reported one or ``model`` has no price."""
        price = self.prices.get(model)
        if usage.cost is not None or price is None:
            return usage
        return attrs.evolve(usage, cost=price.cost(usage))

    def check(self, run: RunInfo | None, session: Usage) -> None:
        """``BudgetExceeded`` if the run's or the session's usage reached a limit."""
        budget = self.budget
        used = run.usage if run is not None else Usage()
        for scope, usage, tokens, dollars in (
            ("run", used, budget.max_run_tokens, budget.max_run_cost),
            ("session", session, budget.max_session_tokens, budget.max_session_cost),
        ):
            if tokens is not None and usage.total_tokens >= tokens:
                raise BudgetExceeded(
                    f"the {scope}'s token budget is used up: {usage.total_tokens} of "
                    f"{tokens} tokens (max_{scope}_tokens)"
                )
            if dollars is not None and (usage.cost or 0.0) >= dollars:
                raise BudgetExceeded(
                    f"the {scope}'s cost budget is used up: ${usage.cost or 0.0:.4f} of "
                    f"${dollars:.4f} (max_{scope}_cost)"
                )


def resolve_costs(
    prices: Any, budget: Any, *, models: Sequence[tuple[str, str]], errors: list[str]
) -> Costs | None:
    """Validate ``prices`` (model ref -> ``Price`` or table) and ``budget`` (``Budget``
    or table), one ``"path: message"`` line per problem in ``errors``.

    ``models`` are the ``(path, model ref)`` pairs the store starts with: a cost budget
    needs a price for each, or its limit could never be reached.
    """
    count = len(errors)
    table: dict[str, Price] = {}
    if expect({} if prices is None else prices, Mapping, "prices", errors):
        for ref, entry in (prices or {}).items():
            at = key_path("prices", str(ref))
            problem = model_ref_problem(ref, None) if isinstance(ref, str) else "not a model ref"
            if problem is not None:
                errors.append(f"{at}: {problem}")
            elif isinstance(entry, Price):
                table[ref] = entry
            elif expect(entry, Mapping, at, errors):
                try:
                    table[ref] = structure_strictly(dict(entry), Price, root=at)
                except ValidationFailed as exc:
                    errors.extend(exc.errors)
    limits = Budget()
    if isinstance(budget, Budget):
        limits = budget
    elif expect({} if budget is None else budget, Mapping, "budget", errors):
        try:
            limits = structure_strictly(dict(budget or {}), Budget, root="budget")
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if limits.limits_cost:
        which = "max_run_cost" if limits.max_run_cost is not None else "max_session_cost"
        for path, ref in models:
            if ref not in table:
                errors.append(
                    f"budget.{which}: {path} '{ref}' has no price, so its cost is unknown "
                    f'(add [prices."{ref}"])'
                )
    return Costs(table, limits) if len(errors) == count else None
