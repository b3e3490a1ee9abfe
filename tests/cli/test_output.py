"""How the CLI renders a run: streamed text once, tool activity as notes."""

from __future__ import annotations

import io

from harness_kernel import (
    Event,
    FilePart,
    ImagePart,
    Message,
    ReasoningDelta,
    ReasoningPart,
    TextDelta,
    TextPart,
)
from harness_kernel._display import DisplayState
from harness_kernel._records import MessageAdded, ToolStarted
from harness_kernel.cli._output import DIM, NORMAL, EventPrinter, message_lines, table


def test_text_streamed_through_display_state_is_not_printed_twice() -> None:
    """A run followed through display_state (no stream of its own) prints its answer as
    it grows, and the recorded message does not repeat it."""
    out = io.StringIO()
    printer = EventPrinter("bot", out, out)
    for text in ("Do", "Done", "Done."):
        printer.display(DisplayState(mode="default", current_message=text))
    printer.feed(Event(7, MessageAdded(Message("assistant", (TextPart("Done."),)))))
    printer.display(DisplayState(mode="default", current_message=""))
    printer.feed(Event(8, MessageAdded(Message("assistant", (TextPart("Next"),)))))
    assert out.getvalue() == "bot> Done.\nbot> Next\n"


def test_deltas_then_tool_notes_on_their_own_lines() -> None:
    """Streamed deltas form one line; a tool note starts on a new line, on the notes
    stream."""
    out, notes = io.StringIO(), io.StringIO()
    printer = EventPrinter("bot", out, notes, prefix=False)
    printer.feed(TextDelta("Looking "))
    printer.feed(TextDelta("it up."))
    printer.feed(Event(3, ToolStarted("c1", "lookup", {"q": "x"})))
    printer.feed(Event(4, MessageAdded(Message("assistant", (TextPart("Looking it up."),)))))
    printer.finish()
    assert out.getvalue() == "Looking it up.\n"
    assert notes.getvalue() == '  [tool] lookup {"q": "x"}\n'


def test_tables_align_columns() -> None:
    """Columns are padded to the widest cell; None shows as '-'."""
    out = io.StringIO()
    table(("ID", "STATUS", "NOTE"), [("a", "idle", None), ("long-id", "running", "x")], out)
    assert out.getvalue() == "ID       STATUS   NOTE\na        idle     -\nlong-id  running  x\n"


def test_streamed_reasoning_is_dimmed_in_its_own_block_before_the_answer() -> None:
    """Reasoning deltas print dimmed (ANSI faint, reset before the answer) on a line of
    their own; the answer follows with the agent's prefix."""
    out = io.StringIO()
    printer = EventPrinter("bot", out, out, color=True)
    printer.feed(ReasoningDelta("The user wants "))
    printer.feed(ReasoningDelta("a greeting."))
    printer.feed(TextDelta("Hello!"))
    printer.feed(Event(5, MessageAdded(Message("assistant", (ReasoningPart("The user wants a greeting."), TextPart("Hello!"))))))
    assert out.getvalue() == f"{DIM}bot> The user wants a greeting.{NORMAL}\nbot> Hello!\n"


def test_without_a_terminal_reasoning_is_marked_instead_of_styled() -> None:
    """Piped output carries no escape codes: the block is marked [thinking]; a run
    continued without a stream shows the recorded reasoning the same way."""
    out = io.StringIO()
    printer = EventPrinter("bot", out, out)
    assert printer.color is False
    message = Message("assistant", (ReasoningPart("Plan first."), ReasoningPart(redacted=True, encrypted="x"), TextPart("Done.")))
    printer.feed(Event(5, MessageAdded(message)))
    assert out.getvalue() == "bot> [thinking] Plan first.…\nbot> Done.\n"


def test_images_and_files_show_as_placeholder_lines() -> None:
    """An image or file is one placeholder line (kind, media type, size or where it
    is), in a recorded answer and in `sessions show`'s rendering of a user message."""
    out = io.StringIO()
    printer = EventPrinter("bot", out, out)
    chart = ImagePart("image/png", b"\x89PNG" + bytes(3000))
    printer.feed(Event(5, MessageAdded(Message("assistant", (TextPart("Here:"), chart)))))
    assert out.getvalue() == "bot> Here:\n[image image/png, 3 KB]\n"
    asked = Message.user("What is this?", ImagePart(url="https://example.invalid/cat.jpg"),
                         FilePart("application/pdf", b"%PDF", name="report.pdf"), FilePart("text/plain", ref="doc:42"))
    assert message_lines(asked, color=False) == [
        "user> What is this?",
        "user> [image https://example.invalid/cat.jpg]",
        "user> [file report.pdf application/pdf, 4 bytes]",
        "user> [file text/plain ref doc:42]",
    ]
    thought = Message("assistant", (ReasoningPart("hmm", summary=True), TextPart("ok")))
    assert message_lines(thought, color=True) == [f"{DIM}assistant> [thinking summary] hmm{NORMAL}", "assistant> ok"]
