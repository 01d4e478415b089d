"""Links from the pages to the code they explain, as pages of the site.

On GitHub a link such as ``[Conv2D.forward](../tinyconv/layers/conv.py#L73-L85)`` opens the file at
those lines. In the site the same link opens ``_code/tinyconv/layers/conv.py.html#L-73``: the file,
highlighted, with an anchor on every line. The Markdown stays as it is (the test suite checks its
line anchors against the code); this extension rewrites the links as Sphinx reads each page and
writes one page per linked file.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

from docutils import nodes
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_for_filename
from pygments.util import ClassNotFound

ROOT = Path(__file__).resolve().parents[2]
SCHEME = "tinyconv-code"
LINK = re.compile(r"\]\(\.\./((?:tinyconv|examples|benchmarks|tests)/[^)#\s]+)(?:#L(\d+)(?:-L\d+)?)?\)")


def rewrite_links(app, docname, source):
    """``](../path#L10-L20)`` -> ``](tinyconv-code:path#L-10)``, a link MyST leaves to us."""
    files = app.env.tinyconv_code_files.setdefault(docname, set())

    def replace(match):
        path, line = match.group(1), match.group(2)
        if not (ROOT / path).is_file():
            return match.group(0)  # left to Sphinx, which warns about it
        files.add(path)
        return f"]({SCHEME}:{path}" + (f"#L-{line}" if line else "") + ")"

    source[0] = LINK.sub(replace, source[0])


def resolve_links(app, doctree, docname):
    for ref in doctree.findall(nodes.reference):
        uri = ref.get("refuri", "")
        if uri.startswith(SCHEME + ":"):
            path, _, anchor = uri[len(SCHEME) + 1:].partition("#")
            target = app.builder.get_relative_uri(docname, f"_code/{path}")
            ref["refuri"] = target + (f"#{anchor}" if anchor else "")
            ref["classes"].append("code-link")


def code_pages(app):
    """One page per linked file: its lines highlighted, each with an anchor ``L-<n>``."""
    wanted = sorted(set().union(*app.env.tinyconv_code_files.values()))
    formatter = HtmlFormatter(linenos="inline", lineanchors="L", anchorlinenos=True, cssclass="highlight")
    for path in wanted:
        text = (ROOT / path).read_text(encoding="utf-8")
        try:
            lexer = get_lexer_for_filename(path)
        except ClassNotFound:
            body = f"<pre>{html.escape(text)}</pre>"
        else:
            body = highlight(text, lexer, formatter)
        yield f"_code/{path}", {"title": path, "body": f"<h1><code>{html.escape(path)}</code></h1>{body}"}, "page.html"


def purge(app, env, docname):
    getattr(env, "tinyconv_code_files", {}).pop(docname, None)


def merge(app, env, docnames, other):
    env.tinyconv_code_files.update(other.tinyconv_code_files)


def init_env(app, env, docnames):
    if not hasattr(env, "tinyconv_code_files"):
        env.tinyconv_code_files = {}


def setup(app):
    app.connect("env-before-read-docs", init_env)
    app.connect("source-read", rewrite_links)
    app.connect("doctree-resolved", resolve_links)
    app.connect("html-collect-pages", code_pages)
    app.connect("env-purge-doc", purge)
    app.connect("env-merge-info", merge)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
