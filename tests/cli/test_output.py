"""How the CLI renders a run: streamed text once, tool activity as notes."""

from __future__ import annotations

import io

from harness_kernel import Event, Message, TextDelta, TextPart
from harness_kernel._display import DisplayState
from harness_kernel._records import MessageAdded, ToolStarted
from harness_kernel.cli._output import EventPrinter, table


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
