"""The options reference: every registered component and its options, as Markdown.

Descriptions come from the options classes themselves: a field's ``metadata["doc"]``,
else the string literal written right under the field (an attribute docstring), else
an ``Args:``/``Attributes:`` entry of the class docstring.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import re
import textwrap
import typing
from collections.abc import Iterable
from typing import Any

import attrs

from .._plugins import KINDS, PluginRegistry, Registration
from ..errors import HarnessError

__all__ = ["field_docs", "options_reference", "type_label"]

KIND_TITLES = {
    "provider": ("Model providers", "[[providers]]"),
    "storage": ("Storage", "[storage]"),
    "sandbox": ("Sandboxes", "[sandbox]"),
    "log_sink": ("Log sinks", "[[logging.sinks]]"),
    "retry_policy": ("Retry policies", "[error_policy.retry] (options under `model`)"),
    "tools": ("Tool kits", "[tools.<kit>]"),
    "tracing": ("Tracing", "[tracing]"),
}


def _docstring_entries(doc: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    section = re.search(
        r"^\s*(?:Args|Arguments|Attributes|Options|Parameters):\s*$", doc, flags=re.M
    )
    if section is None:
        return entries
    current = None
    for line in doc[section.end() :].splitlines():
        match = re.match(r"^\s{2,}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
        if match:
            current = match.group(1)
            entries[current] = match.group(2).strip()
        elif current and line.strip() and line.startswith("      "):
            entries[current] += " " + line.strip()
        elif not line.strip():
            current = None
    return entries


def field_docs(cls: type) -> dict[str, str]:
    """Descriptions of the fields of an attrs options class (may be incomplete)."""
    docs = _docstring_entries(inspect.getdoc(cls) or "")
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        tree = None
    if tree is not None and tree.body and isinstance(tree.body[0], ast.ClassDef):
        body = tree.body[0].body
        for node, following in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    for field in attrs.fields(cls):
        doc = field.metadata.get("doc") or field.metadata.get("help")
        if isinstance(doc, str):
            docs[field.name] = " ".join(doc.split())
    return docs


def type_label(tp: Any) -> str:
    """A short, readable name of a field type: ``str``, ``int | None``, ``list[str]``."""
    if tp is type(None):
        return "None"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    text = repr(tp)
    text = re.sub(r"\btyping\.", "", text)
    text = re.sub(r"\bcollections\.abc\.", "", text)
    text = re.sub(r"<class '([\w.]+)'>", lambda m: m.group(1).rpartition(".")[2], text)
    return text.replace("NoneType", "None")


def _default(field: attrs.Attribute[Any]) -> str:
    from .._toml import toml_value as _toml_value

    default = field.default
    if default is attrs.NOTHING:
        return "required"
    factory = getattr(default, "factory", None)
    if factory is not None:
        if getattr(default, "takes_self", False):
            return "(computed)"
        try:
            default = factory()
        except Exception:
            return "(computed)"
    if default is None:
        return "unset"
    try:
        return f"`{_toml_value(default)}`"
    except HarnessError:
        return f"`{default!r}`"


def _markdown(text: str) -> str:
    """reStructuredText double-backtick literals become Markdown code spans."""
    return text.replace("``", "`")


def _cell(text: str) -> str:
    return _markdown(text).replace("|", "\\|").replace("\n", " ")


def options_table(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    secret = {f.name for f in attrs.fields(cls) if f.metadata.get("secret")}
    lines = ["| option | type | default | description |", "|---|---|---|---|"]
    for field in attrs.fields(cls):
        description = docs.get(field.name, "")
        if field.name in secret:
            description = (description + " Secret: masked in logs and `config check`.").strip()
        lines.append(
            f"| `{field.name}` | `{_cell(type_label(hints.get(field.name, Any)))}` | "
            f"{_cell(_default(field))} | {_cell(description)} |"
        )
    return lines


def _summary(reg: Registration) -> str:
    for candidate in (reg.options, reg.factory):
        doc = inspect.getdoc(candidate) if candidate is not None else None
        if doc and not (isinstance(candidate, type) and doc.startswith(f"{candidate.__name__}(")):
            first = doc.strip().split("\n\n")[0]
            return _markdown(" ".join(first.split()))
    return ""


def options_reference(
    registry: PluginRegistry, *, distributions: Iterable[str] | None = None
) -> str:
    """Markdown: one section per kind, one subsection per component with its options."""
    wanted = set(distributions) if distributions is not None else None
    out: list[str] = []
    for kind in KINDS:
        regs = [
            registry.get(kind, name)
            for name in registry.names(kind)
            if wanted is None or registry.get(kind, name).distribution in wanted
        ]
        if not regs:
            continue
        title, where = KIND_TITLES[kind]
        out += [f"### {title}", "", f"Configured in `{where}`.", ""]
        for reg in regs:
            out.append(f"#### `{reg.name}` ({reg.distribution or 'not from a distribution'})")
            out.append("")
            summary = _summary(reg)
            if summary:
                out += [summary, ""]
            if reg.options is None:
                out += ["No options.", ""]
            else:
                out += [*options_table(reg.options), ""]
    return "\n".join(out).rstrip("\n") + "\n"
