"""The course site: docs/ built by Sphinx with warnings as errors (which runs every page's code),
then every page opened in headless Chromium, offline: no console errors, every formula typeset by
MathJax (no TeX left in the visible text), every image loaded, every link inside the site pointing
at a file and an anchor that exist, and the search page finding ``im2col``; every page with code
downloads as a notebook whose cells run top to bottom in an empty folder and leave it empty. Skipped, saying what is missing, without the docs extra,
Selenium or Debian's ``chromium`` and ``chromium-driver``."""
import functools
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[1]
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    for module in ("sphinx", "myst_parser"):
        pytest.importorskip(module, reason="needs the docs extra (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site") / "html"
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                             str(ROOT / "docs"), str(out), "-d", str(out.parent / "doctrees")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs Selenium (pip install selenium)")
    if not Path(CHROMEDRIVER).exists():
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


class Targets(HTMLParser):
    """The ids of a page, and the targets of its links and images."""

    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.links.append(attrs["src"])


@functools.lru_cache(maxsize=None)
def parse(path: Path) -> Targets:
    targets = Targets()
    targets.feed(path.read_text(encoding="utf-8"))
    return targets


def pages(site: Path) -> list[Path]:
    return sorted(site.glob("*.html"))


def test_every_page_of_the_course_is_in_the_site(site):
    built = {p.stem for p in pages(site)}
    assert {p.stem for p in (ROOT / "docs").glob("*.md")} <= built


def test_every_link_inside_the_site_resolves(site):
    broken = []
    for page in [*pages(site), *sorted((site / "_code").rglob("*.html"))]:
        for link in parse(page).links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//"):
                continue  # outside the site (none is loaded when a page is read)
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: {link} (no file)")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in parse(target).ids:
                broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
    assert not broken, "\n".join(broken[:30])


VISIBLE_TEXT = """
const copy = document.body.cloneNode(true);
copy.querySelectorAll('pre, code, script, style, mjx-container, .highlight').forEach(e => e.remove());
return copy.textContent;
"""
WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
if (!window.MathJax || !MathJax.startup) { done('no MathJax'); return; }
MathJax.startup.promise.then(() => done('ok'), e => done('MathJax failed: ' + e));
"""


def test_every_page_renders_offline_in_chromium(site, browser):
    problems = []
    for page in pages(site):
        browser.get(page.as_uri())
        has_math = bool(browser.find_elements("css selector", ".math"))
        if has_math:
            state = browser.execute_async_script(WAIT_FOR_MATHJAX)
            if state != "ok":
                problems.append(f"{page.name}: {state}")
            untypeset = browser.execute_script(
                "return [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container')).length")
            if untypeset:
                problems.append(f"{page.name}: {untypeset} formulas not typeset")
        text = browser.execute_script(VISIBLE_TEXT)
        for tex in ("$$", "\\frac", "\\partial", "\\sum", "\\begin{"):
            if tex in text:
                problems.append(f"{page.name}: raw TeX {tex!r} in the visible text")
        missing = browser.execute_script(
            "return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        problems += [f"{page.name}: image not loaded: {src}" for src in missing]
        errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        problems += [f"{page.name}: console: {message}" for message in errors]
    assert not problems, "\n".join(problems[:40])


RUN_NOTEBOOK = """
import json, sys
cells = [c for c in json.load(open(sys.argv[1]))["cells"] if c["cell_type"] == "code"]
namespace = {"__name__": "__main__"}
for number, cell in enumerate(cells):
    exec(compile("".join(cell["source"]), f"cell {number + 1}", "exec"), namespace)
"""


def pages_with_code() -> list[Path]:
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    from markdown_blocks import PYTHON_TAGS, fenced_blocks
    return [p for p in sorted((ROOT / "docs").glob("*.md"))
            if any(info in PYTHON_TAGS for info, _, _ in fenced_blocks(p.read_text()))]


def test_every_tutorial_page_downloads_as_a_notebook_that_runs(site, tmp_path):
    for page in pages_with_code():
        notebook_path = site / "_notebooks" / f"{page.stem}.ipynb"
        assert notebook_path.is_file(), f"{page.name}: no notebook"
        assert f'href="_notebooks/{page.stem}.ipynb"' in (site / f"{page.stem}.html").read_text()
        notebook = json.loads(notebook_path.read_text())
        assert notebook["nbformat"] == 4 and notebook["cells"][0]["cell_type"] == "markdown"
        folder = tmp_path / page.stem
        folder.mkdir()
        result = subprocess.run([sys.executable, "-c", RUN_NOTEBOOK, str(notebook_path)], cwd=folder,
                                capture_output=True, text=True, timeout=600, env={**os.environ, "MPLBACKEND": "Agg"})
        assert result.returncode == 0, f"{page.name}'s notebook fails: {result.stderr[-2000:]}"
        assert not list(folder.iterdir()), f"{page.name}'s notebook wrote into the folder it ran in"


def test_the_site_shows_what_the_code_printed(site):
    """conv2d.md's blocks print (the output size, the gradients checked); its page shows it."""
    page = (site / "conv2d.html").read_text()
    assert page.count('class="cell-output') >= 1
    assert "Download this page as a notebook" in page


def test_the_search_finds_im2col(site, browser):
    browser.get((site / "search.html").as_uri() + "?q=im2col")
    from selenium.webdriver.support.ui import WebDriverWait
    results = WebDriverWait(browser, 30).until(
        lambda driver: driver.find_elements("css selector", "ul.search li") or None)
    names = [r.text for r in results]
    assert any("Conv2D" in name or "im2col" in name.lower() for name in names), names
