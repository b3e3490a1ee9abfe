"""The files kit on a real workspace: what the model gets back from each tool."""

from __future__ import annotations

import re

import pytest

from harness_kernel.errors import SandboxPathError, ToolArgumentsInvalid, ToolError
from harness_kernel_local_sandbox import LocalSandboxSession
from tests.tools.conftest import Kit


async def test_read_file_numbers_lines_and_pages(files: Kit, workspace: LocalSandboxSession) -> None:
    """Lines come numbered; offset and limit select a range and the footer says how to go on."""
    await workspace.write_file("poem.txt", "".join(f"line {n}\n" for n in range(1, 11)))
    assert await files("read_file", path="poem.txt", limit=2) == (
        "     1\tline 1\n     2\tline 2\n[lines 1-2 of 10; continue with offset=3]"
    )
    assert await files("read_file", path="poem.txt", offset=9) == "     9\tline 9\n    10\tline 10\n[lines 9-10 of 10]"
    whole = await files("read_file", path="poem.txt")
    assert whole.splitlines()[-1] == "    10\tline 10"
    with pytest.raises(ToolError, match=re.escape("past the end of 'poem.txt', which has 10 lines")):
        await files("read_file", path="poem.txt", offset=11)
    with pytest.raises(ToolError, match="from 1"):
        await files("read_file", path="poem.txt", offset=0)


async def test_read_file_limits(make_files, workspace: LocalSandboxSession) -> None:
    """Big files, binary files and long lines are reported instead of flooding the model."""
    files = make_files(max_file_bytes=100, max_line_chars=10, max_lines=3)
    await workspace.write_file("big.txt", "x" * 101)
    await workspace.write_file("blob.bin", b"\x00\x01\x02")
    await workspace.write_file("long.txt", "0123456789abcdef\nshort\n")
    await workspace.write_file("many.txt", "a\nb\nc\nd\n")
    await workspace.write_file("empty.txt", "")
    with pytest.raises(ToolError, match="101 bytes, more than the limit of 100"):
        await files("read_file", path="big.txt")
    with pytest.raises(ToolError, match="binary file"):
        await files("read_file", path="blob.bin")
    assert await files("read_file", path="long.txt") == "     1\t0123456789 [... line cut]\n     2\tshort"
    assert (await files("read_file", path="many.txt")).endswith("[lines 1-3 of 4; continue with offset=4]")
    assert await files("read_file", path="empty.txt") == "'empty.txt' is empty"


async def test_write_then_edit(files: Kit, workspace: LocalSandboxSession) -> None:
    """write_file creates parents; edit_file replaces one exact, unique occurrence."""
    assert await files("write_file", path="src/app.py", content="x = 1\ny = 2\n") == "wrote 12 bytes to 'src/app.py'"
    result = await files("edit_file", path="src/app.py", old_text="y = 2", new_text="y = 3")
    assert result == "replaced 1 occurrence in 'src/app.py' (first at line 2)"
    assert await workspace.read_file("src/app.py") == b"x = 1\ny = 3\n"


async def test_edit_file_refuses_missing_or_ambiguous_text(files: Kit, workspace: LocalSandboxSession) -> None:
    """A missing or repeated old_text is an error and leaves the file unchanged; replace_all opts in."""
    await workspace.write_file("a.txt", "same\nsame\nother\n")
    with pytest.raises(ToolError, match="not found"):
        await files("edit_file", path="a.txt", old_text="absent", new_text="x")
    with pytest.raises(ToolError, match="occurs 2 times"):
        await files("edit_file", path="a.txt", old_text="same", new_text="new")
    with pytest.raises(ToolError, match="empty"):
        await files("edit_file", path="a.txt", old_text="", new_text="x")
    with pytest.raises(ToolError, match="the same"):
        await files("edit_file", path="a.txt", old_text="other", new_text="other")
    assert await workspace.read_file("a.txt") == b"same\nsame\nother\n"
    result = await files("edit_file", path="a.txt", old_text="same", new_text="new", replace_all=True)
    assert result == "replaced 2 occurrences in 'a.txt' (first at line 1)"
    assert await workspace.read_file("a.txt") == b"new\nnew\nother\n"


async def test_edit_file_refuses_non_utf8_files(files: Kit, workspace: LocalSandboxSession) -> None:
    """A file that is not UTF-8 is not rewritten (no silent replacement characters)."""
    await workspace.write_file("latin1.txt", "café".encode("latin-1"))
    with pytest.raises(ToolError, match="not valid UTF-8"):
        await files("edit_file", path="latin1.txt", old_text="caf", new_text="cafe")
    assert await workspace.read_file("latin1.txt") == "café".encode("latin-1")


async def test_list_dir(files: Kit, workspace: LocalSandboxSession) -> None:
    """Directories end with '/', files show sizes."""
    await workspace.write_file("b.txt", "hello")
    await workspace.write_file("a/x.txt", "")
    assert await files("list_dir") == "a/\nb.txt  (5 bytes)"
    assert await files("list_dir", path="a") == "x.txt  (0 bytes)"
    await workspace.write_file("e/.keep", "")
    assert await files("list_dir", path="e") == ".keep  (0 bytes)"


async def tree(workspace: LocalSandboxSession) -> None:
    for path in (
        "README.md", "setup.py", "src/pkg/__init__.py", "src/pkg/core.py", "src/pkg/data.json",
        "tests/test_core.py", ".git/objects/ab.py", "docs/a1.md", "docs/b2.md",
    ):
        await workspace.write_file(path, f"# {path}\n")


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**/*.py", ".", ["setup.py", "src/pkg/__init__.py", "src/pkg/core.py", "tests/test_core.py"]),
        ("*.py", ".", ["setup.py"]),
        ("src/**", ".", ["src/pkg/", "src/pkg/__init__.py", "src/pkg/core.py", "src/pkg/data.json"]),
        ("pkg/*.json", "src", ["src/pkg/data.json"]),
        ("docs/[a]?.md", ".", ["docs/a1.md"]),
        ("docs/[!a]*", ".", ["docs/b2.md"]),
        ("src/pkg/core.py", ".", ["src/pkg/core.py"]),
        ("nowhere/*.py", ".", ["no paths match 'nowhere/*.py'"]),
        (".git/**/*.py", ".", [".git/objects/ab.py"]),
    ],
)
async def test_glob(files: Kit, workspace: LocalSandboxSession, pattern: str, path: str, expected: list[str]) -> None:
    """Glob patterns match workspace-relative paths; skipped directories (.git) are only searched
    when the pattern names them."""
    await tree(workspace)
    assert (await files("glob", pattern=pattern, path=path)).splitlines() == expected


async def test_glob_caps_results_and_walks(make_files, workspace: LocalSandboxSession) -> None:
    """Past max_results or max_walk_entries the output says so."""
    for n in range(5):
        await workspace.write_file(f"d/f{n}.txt", "")
    capped = await make_files(max_results=2)("glob", pattern="**/*.txt")
    assert capped.splitlines() == ["d/f0.txt", "d/f1.txt", "[3 more matches not shown; narrow the pattern]"]
    walked = await make_files(max_walk_entries=3)("glob", pattern="**/*.txt")
    assert walked.splitlines()[-1] == "[the search stopped after 3 entries; search a narrower path]"


async def test_grep(files: Kit, workspace: LocalSandboxSession) -> None:
    """Matches come as path:line: text; glob filters files; a file path searches just that file."""
    await tree(workspace)
    await workspace.write_file("src/pkg/core.py", "import os\n\ndef Main():\n    return os.getcwd()\n")
    await workspace.write_file("blob.bin", b"def main\x00")
    assert await files("grep", pattern=r"^def \w+") == "src/pkg/core.py:3: def Main():"
    assert await files("grep", pattern="def main", ignore_case=True, glob="*.py") == "src/pkg/core.py:3: def Main():"
    assert await files("grep", pattern="os", path="src/pkg/core.py") == (
        "src/pkg/core.py:1: import os\nsrc/pkg/core.py:4:     return os.getcwd()"
    )
    assert await files("grep", pattern="#", glob="docs/*.md") == "docs/a1.md:1: # docs/a1.md\ndocs/b2.md:1: # docs/b2.md"
    assert await files("grep", pattern="nothing-like-this") == "no matches"
    assert await files("grep", pattern="objects") == "no matches"  # .git is skipped


async def test_grep_caps_and_errors(make_files, workspace: LocalSandboxSession) -> None:
    """Result caps are announced; bad and runaway patterns are errors the model can act on."""
    await workspace.write_file("many.txt", "hit\n" * 10)
    await workspace.write_file("evil.txt", "x" * 5000)
    capped = await make_files(max_results=3)("grep", pattern="hit")
    assert capped.splitlines() == [
        "many.txt:1: hit", "many.txt:2: hit", "many.txt:3: hit",
        "[stopped after 3 matching lines; narrow the pattern, path or glob]",
    ]
    files = make_files(regex_timeout=0.2)
    with pytest.raises(ToolError, match="invalid regular expression"):
        await files("grep", pattern="(unclosed")
    with pytest.raises(ToolError, match=re.escape("ran longer than 0.2s on 'evil.txt'")):
        await files("grep", pattern="(x+x+)+y")


async def test_paths_outside_the_workspace_reach_the_model_as_sandbox_errors(files: Kit) -> None:
    """Escaping paths fail with the sandbox's own error, for every file tool."""
    for name, arguments in [
        ("read_file", {"path": "../x"}),
        ("write_file", {"path": "/etc/passwd", "content": "x"}),
        ("edit_file", {"path": "../x", "old_text": "a", "new_text": "b"}),
        ("list_dir", {"path": ".."}),
        ("glob", {"pattern": "*", "path": "../.."}),
        ("glob", {"pattern": "../*"}),
        ("grep", {"pattern": "x", "path": "/etc"}),
    ]:
        with pytest.raises(SandboxPathError):
            await files(name, **arguments)


async def test_arguments_are_validated_strictly(files: Kit) -> None:
    """Wrong types or unknown arguments are refused before the tool runs."""
    with pytest.raises(ToolArgumentsInvalid):
        await files("read_file", path="a", offset="1")
    with pytest.raises(ToolArgumentsInvalid):
        await files("write_file", path="a", content="x", mode="w")
