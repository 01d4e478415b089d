"""Sphinx's settings for the course site: ``python -m sphinx -W -b html docs docs/_build/html``.

The pages are MyST Markdown read as they are (``$...$`` and ``$$...$$`` math, heading anchors);
the math is typeset in the browser by MathJax served from the site itself (the
sphinx-mathjax-offline package), so the site needs no network when it is read. The API pages
render the docstrings (``autodoc``, NumPy-style sections by ``napoleon``; ``_ext/plain_docstrings.py``
reads them as the plain text they are), ``_ext/code_pages.py`` turns every link to the repository's
code into a page of the site with line anchors, and ``_ext/notebooks.py`` runs each page's code at
build time, shows what it printed and drew, and offers the page as a notebook.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tinyconv itself, for autodoc
sys.path.insert(0, os.path.join(HERE, "_ext"))

project = "tinyconv"
author = "the tinyconv developers"
copyright = "the tinyconv developers"
root_doc = "index"
extensions = ["myst_parser", "sphinx-mathjax-offline", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "code_pages",
              "plain_docstrings", "notebooks"]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 4  # [text](page.md#a-heading) as on GitHub
myst_url_schemes = ["http", "https", "mailto", "tinyconv-code"]  # the last: code_pages.py's links
exclude_patterns = ["_build", "figures/*.py"]
html_theme = "alabaster"
html_title = "tinyconv: the course"
html_theme_options = {"description": "A convolutional network from scratch, explicit backprop on NumPy",
                      "fixed_sidebar": True}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_numpy_docstring = True
napoleon_google_docstring = False
