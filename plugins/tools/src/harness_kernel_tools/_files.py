"""The ``files`` kit: read, write, edit, list, glob and grep through the session's sandbox."""

from __future__ import annotations

import regex
import trio

from harness_kernel import Tool, ToolContext, tool
from harness_kernel.errors import SandboxError, SandboxPathError, SandboxUnavailable, ToolError

from ._options import FilesKitOptions, approval_for
from ._search import glob_regex, grep_text, join, literal_prefix, walk

__all__ = ["files_kit"]

GREP_LINE_CHARS = 300
BINARY_SNIFF = 8192


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def files_kit(options: FilesKitOptions | None = None) -> list[Tool]:
    """The tools of the ``files`` kit, configured by ``options``."""
    options = options if options is not None else FilesKitOptions()
    read = approval_for(options.approvals, "read")
    edit = approval_for(options.approvals, "edit")

    async def load(ctx: ToolContext, path: str, *, strict: bool = False) -> str:
        data = await ctx.sandbox.read_file(path)
        if len(data) > options.max_file_bytes:
            raise ToolError(
                f"'{path}' has {len(data)} bytes, more than the limit of {options.max_file_bytes}; "
                "look at parts of it with grep or the shell instead"
            )
        if b"\x00" in data[:BINARY_SNIFF]:
            raise ToolError(f"'{path}' is a binary file ({len(data)} bytes); it is not shown as text")
        if not strict:
            return data.decode("utf-8", errors="replace")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"'{path}' is not valid UTF-8 text, so it cannot be edited as text") from None

    @tool(
        approval=read,
        category="read",
        description=(
            "Read a text file of the workspace. Lines come numbered (a number, a tab, then the "
            f"line; the numbers are not part of the file). Returns up to {options.max_lines} lines "
            "from `offset`; use `offset` and `limit` to read long files in parts."
        ),
    )
    async def read_file(ctx: ToolContext, path: str, offset: int = 1, limit: int | None = None) -> str:
        """Read a file.

        Args:
            path: The file, relative to the workspace.
            offset: The first line to return, counting from 1.
            limit: How many lines to return at most.
        """
        if offset < 1:
            raise ToolError("offset counts lines from 1")
        if limit is not None and limit < 1:
            raise ToolError("limit must be at least 1")
        text = await load(ctx, path)
        lines = text.split("\n")
        if text.endswith("\n"):
            lines.pop()
        total = len(lines) if text else 0
        if total == 0:
            return f"'{path}' is empty"
        if offset > total:
            raise ToolError(f"offset {offset} is past the end of '{path}', which has {_plural(total, 'line')}")
        wanted = min(total, offset + (limit or options.max_lines) - 1)
        rows: list[str] = []
        size, last = 0, offset - 1
        for number in range(offset, wanted + 1):
            line = lines[number - 1]
            if len(line) > options.max_line_chars:
                line = line[: options.max_line_chars] + " [... line cut]"
            row = f"{number:>6}\t{line}"
            if rows and size + len(row) + 1 > options.max_output_chars:
                break
            rows.append(row)
            size += len(row) + 1
            last = number
        body = "\n".join(rows)
        if last < total:
            body += f"\n[lines {offset}-{last} of {total}; continue with offset={last + 1}]"
        elif offset > 1:
            body += f"\n[lines {offset}-{last} of {total}]"
        return body

    @tool(
        approval=edit,
        category="edit",
        description=(
            "Create a file in the workspace, or replace its whole content. Parent directories "
            "are created. To change part of an existing file, prefer edit_file."
        ),
    )
    async def write_file(ctx: ToolContext, path: str, content: str) -> str:
        """Write a file.

        Args:
            path: The file, relative to the workspace.
            content: The complete new content.
        """
        await ctx.sandbox.write_file(path, content)
        return f"wrote {_plural(len(content.encode('utf-8')), 'byte')} to '{path}'"

    @tool(
        approval=edit,
        category="edit",
        description=(
            "Edit a text file by exact string replacement: `old_text` must occur in the file "
            "exactly (whitespace and indentation included) and exactly once, unless "
            "`replace_all` is true. Include enough surrounding lines to make it unique. "
            "Copy text from read_file without the line-number prefix."
        ),
    )
    async def edit_file(
        ctx: ToolContext, path: str, old_text: str, new_text: str, replace_all: bool = False
    ) -> str:
        """Edit a file.

        Args:
            path: The file, relative to the workspace.
            old_text: The exact text to replace.
            new_text: The text to put in its place.
            replace_all: Replace every occurrence instead of exactly one.
        """
        if not old_text:
            raise ToolError("old_text is empty; to create or overwrite a file use write_file")
        if old_text == new_text:
            raise ToolError("old_text and new_text are the same; nothing would change")
        text = await load(ctx, path, strict=True)
        count = text.count(old_text)
        if count == 0:
            raise ToolError(
                f"old_text was not found in '{path}'; it must match exactly, including whitespace "
                "and indentation (read the file again to copy it)"
            )
        if count > 1 and not replace_all:
            raise ToolError(
                f"old_text occurs {count} times in '{path}'; include more surrounding text to make "
                "it unique, or set replace_all to replace every occurrence"
            )
        line = text.count("\n", 0, text.index(old_text)) + 1
        updated = text.replace(old_text, new_text) if replace_all else text.replace(old_text, new_text, 1)
        await ctx.sandbox.write_file(path, updated)
        replaced = count if replace_all else 1
        return f"replaced {_plural(replaced, 'occurrence')} in '{path}' (first at line {line})"

    @tool(
        approval=read,
        category="read",
        description="List a directory of the workspace: subdirectories end with '/', files show their size.",
    )
    async def list_dir(ctx: ToolContext, path: str = ".") -> str:
        """List a directory.

        Args:
            path: The directory, relative to the workspace.
        """
        entries = await ctx.sandbox.list_dir(path)
        if not entries:
            return f"'{path}' is empty"
        rows: list[str] = []
        size = 0
        for entry in entries:
            row = f"{entry.name}/" if entry.is_dir else f"{entry.name}  ({_plural(entry.size, 'byte')})"
            if rows and size + len(row) + 1 > options.max_output_chars:
                rows.append(f"[... {len(entries) - len(rows)} more entries not shown]")
                break
            rows.append(row)
            size += len(row) + 1
        return "\n".join(rows)

    @tool(
        approval=read,
        category="read",
        description=(
            "Find paths in the workspace matching a glob pattern: `*` and `?` within a name, "
            "`**` for any number of directories (`**/*.py` finds Python files at any depth). "
            f"Returns workspace-relative paths, sorted, at most {options.max_results}; "
            "directories end with '/'."
        ),
    )
    async def glob(ctx: ToolContext, pattern: str, path: str = ".") -> str:
        """Find paths by pattern.

        Args:
            pattern: The glob pattern, relative to `path`.
            path: The directory to search from, relative to the workspace.
        """
        prefix, rest = literal_prefix(pattern)
        matcher = glob_regex("/".join(rest))
        base = join(path, *prefix)
        try:
            found = await walk(
                ctx.sandbox, base, skip_dirs=options.skip_dirs,
                max_depth=None if "**" in rest else len(rest), budget=options.max_walk_entries,
            )
        except (SandboxPathError, SandboxUnavailable):
            raise
        except SandboxError:
            if not prefix:
                raise
            return f"no paths match '{pattern}'"
        matches = sorted(
            join(base, relative) + ("/" if entry.is_dir else "")
            for relative, entry in found.entries
            if matcher.match(relative)
        )
        if not matches:
            lines = [f"no paths match '{pattern}'"]
        else:
            lines = matches[: options.max_results]
            if len(matches) > options.max_results:
                lines.append(f"[{len(matches) - options.max_results} more matches not shown; narrow the pattern]")
        if found.stopped:
            lines.append(
                f"[the search stopped after {options.max_walk_entries} entries; search a narrower path]"
            )
        return "\n".join(lines)

    @tool(
        approval=read,
        category="read",
        description=(
            "Search file contents in the workspace with a regular expression (Python syntax). "
            "Returns matching lines as `path:line: text`, at most "
            f"{options.max_results}. `path` may be a directory (searched recursively) or a file; "
            "`glob` keeps only files whose name (or, with a '/', whose path) matches it."
        ),
    )
    async def grep(
        ctx: ToolContext, pattern: str, path: str = ".", glob: str | None = None, ignore_case: bool = False
    ) -> str:
        """Search file contents.

        Args:
            pattern: The regular expression.
            path: The directory or file to search, relative to the workspace.
            glob: Only search files matching this glob, e.g. '*.py'.
            ignore_case: Match letters regardless of case.
        """
        flags = regex.MULTILINE | (regex.IGNORECASE if ignore_case else 0)
        try:
            compiled = regex.compile(pattern, flags)
        except regex.error as exc:
            raise ToolError(f"invalid regular expression: {exc}") from None
        filter_ = glob_regex(glob) if glob else None
        files: list[tuple[str, str, int | None]] = []  # (workspace path, relative path, size)
        stopped = False
        try:
            found = await walk(
                ctx.sandbox, path, skip_dirs=options.skip_dirs, max_depth=None,
                budget=options.max_walk_entries,
            )
            stopped = found.stopped
            files = [(join(path, rel), rel, e.size) for rel, e in found.entries if not e.is_dir]
        except (SandboxPathError, SandboxUnavailable):
            raise
        except SandboxError as not_a_directory:
            try:
                await ctx.sandbox.read_file(path)
            except SandboxError:
                raise not_a_directory from None
            files = [(path, path.rsplit("/", 1)[-1], None)]
        lines: list[str] = []
        too_big = 0
        size = 0
        full = False
        for workspace_path, relative, file_size in files:
            if filter_ is not None:
                subject = relative if "/" in (glob or "") else relative.rsplit("/", 1)[-1]
                if not filter_.match(subject):
                    continue
            if file_size is not None and file_size > options.max_file_bytes:
                too_big += 1
                continue
            try:
                data = await ctx.sandbox.read_file(workspace_path)
            except SandboxError:
                continue  # vanished, unreadable or a special file: not searchable
            if len(data) > options.max_file_bytes:
                too_big += 1
                continue
            if b"\x00" in data[:BINARY_SNIFF]:
                continue
            text = data.decode("utf-8", errors="replace")
            remaining = options.max_results - len(lines)
            try:
                hits = await trio.to_thread.run_sync(grep_text, compiled, text, remaining + 1, options.regex_timeout)
            except TimeoutError:
                raise ToolError(
                    f"the pattern ran longer than {options.regex_timeout}s on '{workspace_path}'; "
                    "simplify it (avoid nested repetition such as (a+)+)"
                ) from None
            for number, line in hits:
                if len(lines) >= options.max_results:
                    full = True
                    break
                shown = line if len(line) <= GREP_LINE_CHARS else line[:GREP_LINE_CHARS] + " [...]"
                row = f"{workspace_path}:{number}: {shown}"
                if lines and size + len(row) + 1 > options.max_output_chars:
                    full = True
                    break
                lines.append(row)
                size += len(row) + 1
            if full:
                break
        if not lines:
            lines.append("no matches")
        if full:
            lines.append(f"[stopped after {len(lines)} matching lines; narrow the pattern, path or glob]")
        if stopped:
            lines.append(f"[the search stopped after {options.max_walk_entries} entries; search a narrower path]")
        if too_big:
            lines.append(f"[{_plural(too_big, 'file')} over {options.max_file_bytes} bytes not searched]")
        return "\n".join(lines)

    return [read_file, write_file, edit_file, list_dir, glob, grep]
