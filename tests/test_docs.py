"""The documentation cannot drift from the code.

1. Every ```python block of README.md and docs/*.md runs: the blocks of one page run in order in one
   fresh namespace (a page may build on its earlier blocks), in a temporary working directory, with
   matplotlib on Agg and tinyconv's global state reset. ```text, ```bash and other blocks are not run.
2. Every relative link (and image) in those pages points to a file that exists, and a link into a
   Markdown page with ``#anchor`` names a heading of that page.
3. A link to code with a line anchor, such as ``[`Conv2D.backward_linear`](../tinyconv/layers/conv.py#L65-L73)``,
   must name a symbol in backticks (``Class.method`` for a method) and span exactly its lines, from the
   ``def`` (or first decorator) to its last line, so a line link fails here, with the lines it should
   point to, as soon as the code moves or grows.
"""
from __future__ import annotations

import ast
from code import InteractiveConsole
import sys
import traceback
import re
from pathlib import Path

import matplotlib
import pytest

import tinyconv
from tinyconv import kernels
from tinyconv.layers import reset_names

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
from markdown_blocks import PYTHON_TAGS, fenced_blocks  # noqa: E402  (one reader of fences: the site's too)



def python_blocks(path: Path):
    return [(line, code) for info, line, code in fenced_blocks(path.read_text()) if info in PYTHON_TAGS]


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def reset_tinyconv_state() -> None:
    tinyconv.set_floatx("float32")
    tinyconv.set_seed(0)
    tinyconv.set_device("cpu")
    kernels.use_reference_kernels(False)
    reset_names()


PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p)]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=page_id)
def test_snippets_run(page: Path, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)  # files a snippet writes (log.csv, run.npz, ...) land here
    reset_tinyconv_state()
    namespace = {"__name__": "__docs__"}
    repository_root = set(ROOT.iterdir())
    try:
        for line, code in python_blocks(page):
            # Pad with blank lines so a traceback's line number is the line in the Markdown file.
            compiled = compile("\n" * (line - 1) + code, str(page), "exec")
            exec(compiled, namespace)
    finally:
        plt.close("all")
        reset_tinyconv_state()
    left = sorted(p.name for p in set(ROOT.iterdir()) - repository_root)
    assert not left, f"{page_id(page)}: its snippets wrote {left} into the repository root"


class RecordingConsole(InteractiveConsole):
    """Python's interactive shell, fed a pasted block line by line; records what it reports."""

    def __init__(self, namespace):
        super().__init__(namespace)
        self.errors: list[str] = []

    def showsyntaxerror(self, filename=None, **kwargs):
        self.errors.append("".join(traceback.format_exception_only(*sys.exc_info()[:2])).strip())

    def showtraceback(self):
        self.errors.append("".join(traceback.format_exception_only(*sys.exc_info()[:2])).strip())


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=page_id)
def test_snippets_paste_into_a_python_shell_and_run_again(page: Path, tmp_path, monkeypatch):
    """A student pastes each block into ``python`` (where a blank line ends an indented block), in an
    empty folder, twice: nothing fails, and nothing is left in that folder (a snippet that writes
    files writes them into a temporary folder of its own)."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = tmp_path / "current"
    folder.mkdir()
    monkeypatch.chdir(folder)
    try:
        for attempt in ("first", "second"):
            reset_tinyconv_state()
            console = RecordingConsole({"__name__": "__console__"})
            for line, code_text in python_blocks(page):
                for text in code_text.splitlines():
                    console.push(text)
                console.push("")  # the Enter after the paste
                assert not console.errors, (f"{page_id(page)} line {line}, {attempt} run: pasted into a shell, "
                                            f"the block fails: {console.errors[0]}")
            plt.close("all")
    finally:
        plt.close("all")
        reset_tinyconv_state()
    assert not list(folder.iterdir()), (f"{page_id(page)}: its snippets wrote {sorted(p.name for p in folder.iterdir())} "
                                        "into the current folder")


# --- links ------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[(?P<text>(?:[^\[\]]|\[[^\]]*\])*)\]\((?P<target><[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\)")
REFERENCE_DEFINITION = re.compile(r"^[ ]{0,3}\[(?P<text>[^\]]+)\]:\s*(?P<target>\S+)", re.MULTILINE)
HTML_SOURCE = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*["'](?P<target>[^"']+)["']""")
LINE_ANCHOR = re.compile(r"^L(?P<start>\d+)(?:-L(?P<end>\d+))?$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def without_code_blocks(text: str) -> str:
    """The page with fenced code blocks blanked out (line numbers kept)."""
    lines = text.splitlines()
    for first, last in fenced_blocks(text, with_span=True):
        for k in range(first, min(last, len(lines) - 1) + 1):
            lines[k] = ""
    return "\n".join(lines)


def links(path: Path):
    """``(text, target)`` for every link, image and HTML src/href of a page, outside code blocks."""
    text = without_code_blocks(path.read_text())
    found = [(m["text"], m["target"].strip("<>")) for m in LINK.finditer(text)]
    found += [(m["text"], m["target"]) for m in REFERENCE_DEFINITION.finditer(text)]
    found += [("", m["target"]) for m in HTML_SOURCE.finditer(text)]
    return found


def relative_links(path: Path):
    return [(t, target) for t, target in links(path)
            if target and not EXTERNAL.match(target) and not target.startswith("#")]


def heading_slugs(path: Path) -> set[str]:
    """The anchors a code host gives the headings of a Markdown page (GitHub's rule)."""
    slugs: set[str] = set()
    seen: dict[str, int] = {}
    for line in without_code_blocks(path.read_text()).splitlines():
        match = re.match(r"^[ ]{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match[1].strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        slugs.add(slug if count == 0 else f"{slug}-{count}")
    return slugs


def symbol_lines(source: Path) -> dict[str, list[tuple[int, int]]]:
    """Every def, class and module-level assignment of a Python file, by qualified name
    (``Class.method``) and by bare name -> [(first line, last line)], decorators included."""
    found: dict[str, list[tuple[int, int]]] = {}

    def add(names, node):
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        for name in names:
            found.setdefault(name, []).append((first, node.end_lineno))

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                add({prefix + child.name, child.name}, child)
                visit(child, prefix + child.name + ".")
            elif not prefix and isinstance(child, (ast.Assign, ast.AnnAssign)):
                targets = child.targets if isinstance(child, ast.Assign) else [child.target]
                add({t.id for t in targets if isinstance(t, ast.Name)}, child)
            elif not isinstance(child, (ast.Lambda, ast.expr)):
                visit(child, prefix)  # defs inside if/try blocks keep the enclosing prefix

    visit(ast.parse(source.read_text()), "")
    return found


def symbol_places(text: str, source: Path) -> tuple[str, list[tuple[int, int]]]:
    """The symbol a link's text names (first backticked name, call parentheses dropped) and its places:
    ``Class.method`` is looked up as such; leading module names (``tinyconv.diagnostics.gradcheck.check``) are dropped."""
    named = re.findall(r"`([^`]+)`", text)
    if not named:
        return "", []
    parts = named[0].split("(")[0].strip().split(".")
    while len(parts) > 1 and parts[0][:1].islower():
        parts = parts[1:]
    name = ".".join(parts)
    return name, symbol_lines(source).get(name, [])
@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_exist(page: Path):
    problems = []
    for text, target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve()
        if not destination.exists():
            problems.append(f"[{text}]({target}): {destination} does not exist")
        elif anchor and destination.suffix == ".md" and anchor not in heading_slugs(destination):
            problems.append(f"[{text}]({target}): no heading with anchor #{anchor} in {file_part}")
    assert not problems, f"{page_id(page)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_line_anchors_span_the_named_symbol(page: Path):
    """A line link spans exactly the symbol it names, from its def (or first decorator) to its last line."""
    problems = []
    for text, target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        match = LINE_ANCHOR.match(anchor)
        if not match:
            continue
        source = (page.parent / file_part).resolve()
        if not source.exists():
            continue  # reported by test_relative_links_exist
        if source.suffix != ".py":
            problems.append(f"[{text}]({target}): line links are checked in Python files only")
            continue
        span = (int(match["start"]), int(match["end"] or match["start"]))
        symbol, places = symbol_places(text, source)
        if not symbol:
            problems.append(f"[{text}]({target}): a line link must name its symbol in backticks")
        elif not places:
            problems.append(f"[{text}]({target}): {file_part} defines no `{symbol}`")
        elif span not in places:
            problems.append(f"[{text}]({target}): `{symbol}` spans "
                            + " or ".join(f"#L{a}-L{b}" for a, b in places) + f" of {file_part}")
    assert not problems, f"{page_id(page)}:\n" + "\n".join(problems)


def test_line_anchor_check_sees_methods_and_whole_spans(tmp_path):
    """Guards the check itself: ``Class.method`` resolves to that method, and only the full span counts."""
    source = tmp_path / "module.py"
    source.write_text("class A:\n    def run(self):\n        return 1\n\n\nclass B:\n    @staticmethod\n"
                      "    def run():\n        x = 2\n        return x\n\n\nLIMIT = (\n    3)\n")
    assert symbol_places("`A.run`", source) == ("A.run", [(2, 3)])
    assert symbol_places("`B.run()`", source) == ("B.run", [(7, 10)])
    assert symbol_places("`run`", source)[1] == [(2, 3), (7, 10)]
    assert symbol_places("`pkg.module.LIMIT`", source) == ("LIMIT", [(13, 14)])
    assert symbol_places("`C.run`", source)[1] == []


def test_collector_sees_the_pages():
    """Guards the collector itself: the README has Python snippets and the docs folder has pages."""
    assert python_blocks(ROOT / "README.md")
    assert (ROOT / "docs" / "index.md") in PAGES


def fix_line_anchors(page: Path) -> int:
    """Point every line link of ``page`` back at its symbol's current lines; returns how many changed."""
    text = page.read_text()
    changed = 0

    def repoint(match: re.Match) -> str:
        nonlocal changed
        link_text, target = match["text"], match["target"]
        file_part, _, anchor = target.partition("#")
        source = (page.parent / file_part).resolve()
        if not LINE_ANCHOR.match(anchor) or source.suffix != ".py" or not source.exists():
            return match[0]
        places = symbol_places(link_text, source)[1]
        if len(places) != 1:
            return match[0]
        new = f"{file_part}#L{places[0][0]}-L{places[0][1]}"
        if new != target:
            changed += 1
        return match[0].replace(f"({target}", f"({new}", 1)

    page.write_text(LINK.sub(repoint, text))
    return changed


@pytest.mark.slow
def test_make_figures_runs(tmp_path):
    """docs/make_figures.py runs and writes every figure that the pages show."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "docs" / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.main(["--out", str(tmp_path)])
    finally:
        reset_tinyconv_state()
    made = {p.name for p in tmp_path.glob("*.png")}
    assert {"im2col.png", "conv-input-gradient.png", "receptive-field.png", "initialization.png",
            "gradcheck-step-size.png"} <= made


def test_gradient_checking_text_quotes_its_figure():
    """What gradient-checking.md says of its figure holds on any CPU: the float64 V with its floor in
    the stated range of steps and errors, the float32 floor far above the 1e-6 bound, the float32
    curve stuck near 1 for tiny steps. (The exact best step varies between CPUs; the page says so.)"""
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "docs" / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = " ".join((ROOT / "docs" / "gradient-checking.md").read_text().split())
    for sentence in (r"floor lies between $h = 10^{-6}$ and $h = 10^{-3}$, with an error below $10^{-9}$",
                     r"best between $h = 10^{-3}$ and $h = 10^{-1}$, with an error between $10^{-5}$ and $10^{-3}$",
                     r"Below $h \approx 10^{-6}$ the float32 curve is stuck near 1", "moves a little from one CPU"):
        assert sentence in text, sentence
    steps = np.logspace(-12, 0, 49)
    try:
        errors = {dtype: module.central_difference_errors(dtype, steps) for dtype in ("float64", "float32")}
    finally:
        reset_tinyconv_state()
    e64, e32 = errors["float64"], errors["float32"]
    best = int(np.argmin(e64))
    assert 1e-6 <= steps[best] <= 1e-3 and e64[best] < 1e-9, (steps[best], e64[best])
    # The V: round-off on the left and truncation on the right each lose at least a factor 100.
    assert e64[steps <= 1e-10].min() > 100 * e64[best] and e64[steps >= 1e-1].min() > 100 * e64[best]
    assert np.all(np.diff(e64[steps >= 1e-2]) > 0), "truncation grows with h"
    default = int(np.argmin(abs(np.log10(steps) + 5)))
    assert e64[default] < 10 * e64[best], "the default h = 1e-5 is on the floor"
    best = int(np.argmin(e32))
    assert 1e-3 <= steps[best] <= 1e-1 and 1e-5 <= e32[best] <= 1e-3, (steps[best], e32[best])
    assert e32[steps <= 1e-7].min() > 0.1


if __name__ == "__main__":
    # python tests/test_docs.py docs/conv2d.md ...  re-points the line links of the given pages
    # (only symbols defined once in their file; check the result with git diff).
    import sys

    for name in sys.argv[1:]:
        print(f"{name}: {fix_line_anchors(Path(name).resolve())} line links updated")
