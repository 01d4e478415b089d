"""The fenced code blocks of a Markdown page: what the test suite runs and the site executes."""
from __future__ import annotations

import re

FENCE = re.compile(r"^(?P<indent>[ ]{0,3})(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")
PYTHON_TAGS = {"python", "py", "python3"}


def fenced_blocks(text: str, with_span: bool = False):
    """Yield ``(info, first_line_number, code)`` for every fenced block (line numbers from 1).

    With ``with_span``, yield ``(first, last)`` 0-based indices of the fence lines instead.
    """
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, indent = match["fence"], len(match["indent"])
        info = match["info"].strip().split()[0].lower() if match["info"].strip() else ""
        start = i + 1
        j = start
        while j < len(lines) and not (lines[j].strip().startswith(fence[0] * len(fence))
                                      and set(lines[j].strip()) == {fence[0]}):
            j += 1
        body = [line[indent:] if line[:indent].isspace() else line for line in lines[start:j]]
        yield (i, j) if with_span else (info, start + 1, "\n".join(body) + "\n")
        i = j + 1
