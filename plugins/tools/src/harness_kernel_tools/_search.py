"""Walking a workspace through ``SandboxSession.list_dir``, glob patterns and grep matching.

Only the sandbox's file API is used, so searching works with any sandbox that offers
files, whether or not it can run commands.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import deque
from collections.abc import Sequence

import attrs
import regex

from harness_kernel.contracts import DirEntry, SandboxSession
from harness_kernel.errors import ToolError

__all__ = ["Walk", "glob_regex", "grep_text", "join", "literal_prefix", "walk"]


def join(*parts: str) -> str:
    """Join workspace-relative paths, dropping empty and ``.`` parts (``"."`` if none).

    A leading ``/`` and ``..`` parts are kept, so the sandbox sees (and refuses) them.
    """
    pieces = [piece for part in parts for piece in part.split("/") if piece not in ("", ".")]
    if parts and parts[0].startswith("/"):
        return "/" + "/".join(pieces)
    return "/".join(pieces) or "."


def _segment_regex(segment: str) -> str:
    out, index = [], 0
    while index < len(segment):
        char = segment[index]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = segment.find("]", index + 2 if segment[index + 1 : index + 2] in ("!", "^") else index + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = segment[index + 1 : end]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                index = end
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex matching workspace-relative paths against a glob pattern.

    ``*`` and ``?`` stay within one path segment, ``[abc]``/``[!abc]`` are classes, and a
    ``**`` segment matches any number of directories (zero included).
    """
    segments = [s for s in pattern.split("/") if s not in ("", ".")]
    if not segments:
        raise ToolError("the glob pattern is empty")
    out = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
        else:
            out.append(_segment_regex(segment) + ("" if last else "/"))
    try:
        return re.compile("^" + "".join(out) + "$")
    except re.error as exc:
        raise ToolError(f"invalid glob pattern '{pattern}': {exc}") from None


def literal_prefix(pattern: str) -> tuple[list[str], list[str]]:
    """Split a glob into its leading segments without wildcards and the rest."""
    segments = [s for s in pattern.split("/") if s not in ("", ".")]
    for index, segment in enumerate(segments):
        if segment == "**" or any(c in segment for c in "*?["):
            return segments[:index], segments[index:]
    return segments[:-1], segments[-1:]


@attrs.define
class Walk:
    """The entries found under a directory, and whether the walk stopped at its budget."""

    entries: list[tuple[str, DirEntry]] = attrs.field(factory=list)
    visited: int = 0
    stopped: bool = False


async def walk(
    sandbox: SandboxSession,
    start: str,
    *,
    skip_dirs: Sequence[str],
    max_depth: int | None,
    budget: int,
) -> Walk:
    """Every entry under ``start`` (paths relative to it), breadth first, sorted per level.

    Links are not followed (``list_dir`` reports them as files), directories named in
    ``skip_dirs`` are listed but not entered, and at most ``budget`` entries are visited.
    """
    result = Walk()
    queue: deque[tuple[str, int]] = deque([("", 0)])
    while queue:
        relative, depth = queue.popleft()
        for entry in await sandbox.list_dir(join(start, relative)):
            if result.visited >= budget:
                result.stopped = True
                return result
            result.visited += 1
            path = join(relative, entry.name)
            result.entries.append((path, entry))
            if entry.is_dir and entry.name not in skip_dirs and (max_depth is None or depth + 1 < max_depth):
                queue.append((path, depth + 1))
    return result


def grep_text(
    pattern: regex.Pattern[str], text: str, limit: int, timeout: float
) -> list[tuple[int, str]]:
    """``(line number, line)`` of the first ``limit`` lines where ``pattern`` matches.

    The pattern is searched line by line semantics-wise (``^``/``$`` are line anchors);
    a match spanning lines is reported on its first line. Raises ``TimeoutError`` when
    the pattern runs longer than ``timeout`` seconds. Runs in a worker thread.
    """
    found: list[tuple[int, str]] = []
    line_starts: list[int] | None = None
    last_line = 0
    for match in pattern.finditer(text, timeout=timeout):
        if line_starts is None:
            line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        number = _line_of(line_starts, match.start())
        if number == last_line:
            continue
        last_line = number
        start = line_starts[number - 1]
        end = text.find("\n", start)
        found.append((number, text[start : end if end != -1 else len(text)]))
        if len(found) >= limit:
            break
    return found


def _line_of(line_starts: list[int], offset: int) -> int:
    return bisect_right(line_starts, offset)
