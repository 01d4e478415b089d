"""tinyconv's docstrings are plain text (they read the same in an editor and in ``help()``), with
formulas such as ``|x|`` and ``dy * m``; reStructuredText would read ``|...|`` as a substitution and
``*...*`` as emphasis. This turns them into the text they are before autodoc renders them: those
characters escaped outside ````code```` and ``$...$`` (a few docstrings write TeX between dollars, as
the Markdown pages do: it becomes ``:math:``), and a blank line before a block indented deeper than
the line above it (reStructuredText requires one)."""
from __future__ import annotations

import re

CODE_OR_MATH = re.compile(r"(``.*?``|\$[^$]+\$)")


def escape(line: str) -> str:
    def plain(piece: str) -> str:
        if piece.startswith("``"):
            return piece
        if piece.startswith("$"):
            return f":math:`{piece[1:-1]}`"
        return piece.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")
    return "".join(plain(piece) for piece in CODE_OR_MATH.split(line))


def indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def plain_text(app, what, name, obj, options, lines):
    out: list[str] = []
    for line in lines:
        if out and out[-1].strip() and line.strip() and indent(line) > indent(out[-1]) \
                and not out[-1].rstrip().endswith("::") and not re.match(r"\s*[-=]{3,}\s*$", out[-1]):
            out.append("")
        out.append(escape(line))
    lines[:] = out


def setup(app):
    app.connect("autodoc-process-docstring", plain_text)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
