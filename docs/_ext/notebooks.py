"""Every tutorial page as a notebook, and the site showing what its code printed and drew.

When the site is built, each page's Python blocks run in order in a fresh Python process, in an
empty temporary folder, as a student running the notebook top to bottom would; what each block
prints, the figures it leaves open and the pictures it saves are kept. The page shows them under the block, and
``_notebooks/<page>.ipynb`` (linked at the top of the page) holds the same blocks as code cells,
the text between them as Markdown cells, and those outputs. A block that fails fails the build.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from docutils import nodes
from sphinx.util import logging

from markdown_blocks import PYTHON_TAGS, fenced_blocks

logger = logging.getLogger(__name__)
FOLDER = "_notebooks"

# Runs in the child process: the blocks (JSON on stdin) one by one, like notebook cells.
RUNNER = r"""
import contextlib, io, json, pathlib, sys, traceback
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
blocks = json.load(sys.stdin)
namespace = {"__name__": "__main__"}
results, seen = [], set()
for number, code in enumerate(blocks):
    out = io.StringIO()
    error = None
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"<cell {number + 1}>", "exec"), namespace)
    except Exception:
        error = traceback.format_exc()
    figures = []
    for path in sorted(pathlib.Path(".").rglob("*.png")):  # pictures the block saved (TMPDIR is here)
        if path not in seen:
            seen.add(path)
            figures.append(path.read_bytes().hex())
    for figure in map(plt.figure, plt.get_fignums()):
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
        figures.append(buffer.getvalue().hex())
    plt.close("all")
    results.append({"stdout": out.getvalue(), "figures": figures, "error": error})
    if error:
        break
print(json.dumps(results))
"""


def python_cells(text: str) -> list[tuple[int, int, str]]:
    """(first fence line, last fence line, code) of each Python block, 0-based lines."""
    spans = list(fenced_blocks(text, with_span=True))
    blocks = list(fenced_blocks(text))
    return [(first, last, code) for (first, last), (info, _, code) in zip(spans, blocks) if info in PYTHON_TAGS]


def run_cells(app, docname, source):
    cells = python_cells(source[0])
    if not cells:
        return
    with tempfile.TemporaryDirectory() as folder:
        # The blocks' temporary folders go inside this one, where the runner finds the pictures they save.
        (Path(folder) / "tmp").mkdir()
        done = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps([code for _, _, code in cells]),
                              capture_output=True, text=True, cwd=folder, timeout=600,
                              env={**os.environ, "MPLBACKEND": "Agg", "TMPDIR": str(Path(folder) / "tmp")})
    if done.returncode != 0:
        logger.warning(f"{docname}: its code could not run: {done.stderr[-2000:]}", location=docname)
        return
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for number, result in enumerate(results):
        if result["error"]:
            logger.warning(f"{docname}: Python block {number + 1} fails:\n{result['error']}", location=docname)
    app.env.tinyconv_cells[docname] = {"source": source[0], "results": results}


def show_outputs(app, doctree):
    """Under each Python block, what it printed and drew; a notebook link at the top of the page."""
    docname = app.env.docname
    cells = app.env.tinyconv_cells.get(docname)
    if cells is None:
        return
    blocks = [node for node in doctree.findall(nodes.literal_block) if node.get("language") in PYTHON_TAGS]
    results = cells["results"]
    if len(blocks) != len(python_cells(cells["source"])):
        logger.warning(f"{docname}: {len(blocks)} Python blocks in the page, {len(results)} ran", location=docname)
        return
    for block, result in zip(blocks, results):
        shown = []
        if result["stdout"]:
            output = nodes.literal_block(result["stdout"], result["stdout"], classes=["cell-output"])
            output["language"] = "text"
            shown.append(output)
        for figure in result["figures"]:
            data = base64.b64encode(bytes.fromhex(figure)).decode("ascii")
            shown.append(nodes.raw("", f'<p class="cell-figure"><img alt="a picture this block drew or saved" '
                                       f'src="data:image/png;base64,{data}"></p>', format="html"))
        if shown:
            block.parent.insert(block.parent.index(block) + 1, shown)
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is not None:
        link = (f'<p class="notebook-link"><a href="{FOLDER}/{docname}.ipynb" download>Download this page as a '
                'notebook</a> (its code runs top to bottom, in any folder)</p>')
        section.insert(1, nodes.raw("", link, format="html"))


def notebook(source: str, results: list) -> dict:
    """The page as a Jupyter notebook (format 4.5): Markdown between the Python blocks, and the blocks
    as code cells with their outputs."""
    lines = source.splitlines()
    cells, start = [], 0

    def markdown(text):
        if text.strip():
            cells.append({"cell_type": "markdown", "id": f"cell-{len(cells)}", "metadata": {},
                          "source": text.strip("\n").splitlines(keepends=True)})

    for number, (first, last, code) in enumerate(python_cells(source)):
        markdown("\n".join(lines[start:first]))
        result = results[number] if number < len(results) else {"stdout": "", "figures": []}
        outputs = ([{"name": "stdout", "output_type": "stream", "text": result["stdout"].splitlines(keepends=True)}]
                   if result["stdout"] else [])
        outputs += [{"output_type": "display_data", "metadata": {},
                     "data": {"image/png": base64.b64encode(bytes.fromhex(f)).decode("ascii"),
                              "text/plain": ["<Figure>"]}} for f in result["figures"]]
        cells.append({"cell_type": "code", "execution_count": number + 1, "id": f"cell-{len(cells)}",
                      "metadata": {}, "outputs": outputs, "source": code.rstrip("\n").splitlines(keepends=True)})
        start = last + 1
    markdown("\n".join(lines[start:]))
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                          "name": "python3"},
                                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def write_notebooks(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    folder = Path(app.outdir) / FOLDER
    folder.mkdir(exist_ok=True)
    for docname, cells in app.env.tinyconv_cells.items():
        text = json.dumps(notebook(cells["source"], cells["results"]), indent=1, ensure_ascii=False)
        (folder / f"{docname}.ipynb").write_text(text + "\n", encoding="utf-8")


def init_env(app, env, docnames):
    if not hasattr(env, "tinyconv_cells"):
        env.tinyconv_cells = {}


def purge(app, env, docname):
    getattr(env, "tinyconv_cells", {}).pop(docname, None)


def merge(app, env, docnames, other):
    env.tinyconv_cells.update(other.tinyconv_cells)


def setup(app):
    app.connect("env-before-read-docs", init_env)
    app.connect("env-purge-doc", purge)
    app.connect("env-merge-info", merge)
    app.connect("source-read", run_cells, priority=400)  # before code_pages rewrites the links
    app.connect("doctree-read", show_outputs)
    app.connect("build-finished", write_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
