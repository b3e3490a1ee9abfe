"""``@tool``: a function becomes a tool with a JSON schema and validated arguments.

The schema the model sees and the validation of what the model sends come from the
same place, the function's signature: an attrs class is generated from the parameters
and cattrs structures the arguments into it strictly (no coercion, no extra keys).
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, NoReturn, TypeAlias, Union, get_args, get_origin, overload

import attrs
import trio

from ._validation import ValidationFailed, structure_strictly
from .codec import converter
from .contracts import SandboxSession, ToolSpec
from .errors import ConfigError, ToolArgumentsInvalid

__all__ = ["ApprovalPolicy", "SuspendRun", "Tool", "ToolContext", "ask_user", "tool"]

ApprovalDecision: TypeAlias = Literal["auto", "ask", "deny"]
ApprovalPolicy: TypeAlias = ApprovalDecision | Callable[[Mapping[str, Any]], ApprovalDecision]
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class SuspendRun(BaseException):
    """Raised by ``ToolContext.suspend`` to park the run. A BaseException so that a tool's
    ``except Exception`` cannot swallow it; the kernel catches it around the tool."""

    def __init__(self, payload: Any) -> None:
        super().__init__("the tool suspended the run")
        self.payload = payload


@attrs.frozen
class ToolContext:
    """What a tool receives as its first parameter (when it declares one).

    ``sandbox`` is the session's workspace, ``resources`` the host's dependencies handed
    to ``create_session_store(resources=...)``, ``state`` the session state at the call.
    """

    session_id: str
    run_id: str
    call_id: str
    tool_name: str
    sandbox: SandboxSession
    resources: Mapping[str, Any]
    labels: Mapping[str, str]
    state: Any
    log: Any
    _suspend: Callable[[Any], Awaitable[Any]] | None = None

    async def suspend(self, payload: Any = None) -> NoReturn:
        """Park the run until ``session.resume(call_id, data)``; ``data`` then becomes
        this call's result. Never returns: code after it does not run (the run may resume
        in another process). ``payload`` (JSON) tells the host what is needed."""
        if self._suspend is None:
            from .errors import ToolError

            raise ToolError("this tool cannot suspend here")
        await self._suspend(payload)
        raise AssertionError("unreachable: suspend always raises")


def _type_schema(tp: Any, where: str) -> dict[str, Any]:
    if tp is Any:
        return {}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is type(None):
        return {"type": "null"}
    origin, args = get_origin(tp), get_args(tp)
    schema: dict[str, Any]
    if origin is typing.Annotated:
        schema = _type_schema(args[0], where)
        described = [a for a in args[1:] if isinstance(a, str)]
        if described:
            schema["description"] = described[0]
        return schema
    if origin is Literal:
        kinds = {type(a) for a in args}
        schema = {"enum": list(args)}
        names = {str: "string", int: "integer", bool: "boolean", float: "number"}
        if len(kinds) == 1 and next(iter(kinds)) in names:
            schema["type"] = names[next(iter(kinds))]
        return schema
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        inner = [_type_schema(a, where) for a in options]
        if len(options) < len(args):
            inner.append({"type": "null"})
        return {"anyOf": inner}
    if origin in (list, Sequence, tuple, set, frozenset, typing.Sequence) or tp in (list, tuple):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise ConfigError(f"{where}: only tuple[X, ...] is supported, not {tp!r}")
        item = args[0] if args else Any
        return {"type": "array", "items": _type_schema(item, where)}
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        if args and args[0] is not str:
            raise ConfigError(f"{where}: dict keys must be str")
        value = args[1] if args else Any
        return {"type": "object", "additionalProperties": _type_schema(value, where)}
    if isinstance(tp, type) and attrs.has(tp):
        hints = typing.get_type_hints(tp, include_extras=True)
        props, required = {}, []
        for field in attrs.fields(tp):
            props[field.name] = _type_schema(hints.get(field.name, Any), f"{where}.{field.name}")
            if field.default is attrs.NOTHING:
                required.append(field.name)
        return {
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": False,
        }
    raise ConfigError(f"{where}: type {tp!r} is not supported in tool signatures")


def _docstring_parts(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """The description and the per-parameter texts of a Google-style ``Args:`` section."""
    doc = inspect.getdoc(fn) or ""
    match = re.search(r"^(?:Args|Arguments|Parameters):[ \t]*$", doc, flags=re.M)
    if match is None:
        return doc.strip(), {}
    head, block = doc[: match.start()], doc[match.end() :]
    params: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        entry = re.match(r"^\s{0,8}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
        if entry:
            current = entry.group(1)
            params[current] = entry.group(2).strip()
        elif current and line.strip():
            params[current] = f"{params[current]} {line.strip()}"
        elif not line.strip():
            current = None
    return head.strip(), params


@attrs.frozen
class Tool:
    """A tool an agent can call. Build one with ``@tool``."""

    name: str
    description: str
    function: Callable[..., Any]
    parameters: Mapping[str, Any]
    arguments_class: type
    takes_context: bool
    approval: ApprovalPolicy = "auto"
    category: str | None = None
    approval_timeout: float | None = None

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)

    def validate(self, arguments: Any) -> dict[str, Any]:
        """The arguments structured and checked against the signature.

        Raises ``ToolArgumentsInvalid`` listing every problem by path (never the values).
        """
        if not isinstance(arguments, Mapping):
            raise ToolArgumentsInvalid(f"arguments for '{self.name}' must be a JSON object")
        try:
            value: Any = structure_strictly(dict(arguments), self.arguments_class)
        except ValidationFailed as exc:
            lines = "; ".join(line.removeprefix(": ") for line in exc.errors)
            raise ToolArgumentsInvalid(f"invalid arguments for '{self.name}': {lines}") from None
        return {f.name: getattr(value, f.name) for f in attrs.fields(self.arguments_class)}

    async def invoke(self, ctx: ToolContext, arguments: Mapping[str, Any]) -> str:
        """Call the function and render its return value as the text the model sees.

        A synchronous function runs in a worker thread so it cannot block the loop.
        """
        call_args = (ctx,) if self.takes_context else ()
        if inspect.iscoroutinefunction(self.function):
            value = await self.function(*call_args, **arguments)
        else:
            # abandon_on_cancel: an abort must not wait for a blocking function to return.
            value = await trio.to_thread.run_sync(
                lambda: self.function(*call_args, **arguments), abandon_on_cancel=True
            )
        return render_result(value)


def render_result(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(converter.unstructure(value), ensure_ascii=False, default=str)


def _build(
    fn: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    approval: ApprovalPolicy,
    category: str | None,
    approval_timeout: float | None,
) -> Tool:
    tool_name = name or fn.__name__
    if not _TOOL_NAME.match(tool_name):
        raise ConfigError(f"tool name {tool_name!r} must match [A-Za-z0-9_-]{{1,64}}")
    if not callable(approval) and approval not in ("auto", "ask", "deny"):
        raise ConfigError(
            f"tool '{tool_name}': approval must be 'auto', 'ask', 'deny' or a callable"
        )
    hints = typing.get_type_hints(fn, include_extras=True)
    params = list(inspect.signature(fn).parameters.values())
    takes_context = bool(params) and (
        hints.get(params[0].name) is ToolContext or params[0].name in ("ctx", "context")
    )
    if takes_context:
        params = params[1:]
    summary, param_docs = _docstring_parts(fn)
    fields: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in params:
        where = f"tool '{tool_name}' parameter '{param.name}'"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise ConfigError(
                f"{where}: *args, **kwargs and positional-only parameters are not supported"
            )
        if param.name not in hints:
            raise ConfigError(f"{where} needs a type annotation")
        schema = _type_schema(hints[param.name], where)
        if param.name in param_docs and "description" not in schema:
            schema["description"] = param_docs[param.name]
        properties[param.name] = schema
        if param.default is param.empty:
            required.append(param.name)
            fields[param.name] = attrs.field(type=hints[param.name])
        else:
            fields[param.name] = attrs.field(type=hints[param.name], default=param.default)
        if param.default is not param.empty:
            try:
                json.dumps(param.default)
                schema.setdefault("default", param.default)
            except TypeError:
                pass
    arguments_class = attrs.make_class(f"{tool_name}_arguments", fields, frozen=True)
    parameters = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    return Tool(
        name=tool_name,
        description=description or summary or tool_name,
        function=fn,
        parameters=parameters,
        arguments_class=arguments_class,
        takes_context=takes_context,
        approval=approval,
        category=category,
        approval_timeout=approval_timeout,
    )


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    approval: ApprovalPolicy = "auto",
    category: str | None = None,
    approval_timeout: float | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    approval: ApprovalPolicy = "auto",
    category: str | None = None,
    approval_timeout: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function into a ``Tool``; bare ``@tool`` and ``@tool(...)`` both work.

    The docstring's first part is the description; an ``Args:`` section describes
    parameters. A first parameter annotated ``ToolContext`` (or named ``ctx``) receives
    the call's context. Supported parameter types: str, int, float, bool, Literal,
    Optional/unions, list, dict[str, X] and attrs classes.
    """
    options = dict(
        name=name,
        description=description,
        approval=approval,
        category=category,
        approval_timeout=approval_timeout,
    )
    if fn is not None:
        return _build(fn, **options)  # type: ignore[arg-type]
    return lambda f: _build(f, **options)  # type: ignore[arg-type]


@tool
async def ask_user(ctx: ToolContext, question: str, choices: list[str] | None = None) -> str:
    """Ask the user a question and wait for the answer.

    Args:
        question: the question, as the user will read it
        choices: the answers to choose from, if the question has a fixed set
    """
    await ctx.suspend({"question": question, "choices": choices})
