"""The docs site builds offline with `mkdocs build --strict` (no warnings: no broken link, anchor or missing page),
renders every notebook from notebooks/ with its stored figures, documents every name `import ditlab` offers, and a
browser shows a notebook page's figures with every request outside 127.0.0.1 blocked. The README stays a landing
page: at most 200 lines, a picture in its first screen, no machine-specific paths.

Needs the `docs` extra (`pip install -e ".[docs]"`, part of `test`); skipped with the reason without it. The browser
test (marked `browser`) needs chromium and playwright as tests/test_browser.py does, and fails instead of skipping
with DITLAB_REQUIRE_BROWSER=1 (.ci/run). The build takes seconds (mkdocs-jupyter caches the converted notebooks in
.cache/mkdocs-jupyter).
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _png_outputs(path) -> int:
    nb = json.loads(path.read_text())
    return sum("image/png" in o.get("data", {}) for c in nb["cells"] if c["cell_type"] == "code"
               for o in c.get("outputs", []))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e \".[docs]\")")
    pytest.importorskip("mkdocs_jupyter", reason="mkdocs-jupyter is not installed (pip install -e \".[docs]\")")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed (pip install -e \".[docs]\")")
    out = tmp_path_factory.mktemp("docs") / "site"
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"})
    log = p.stdout + p.stderr
    assert p.returncode == 0, log[-4000:]
    warnings = [line for line in log.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert not warnings, "\n".join(warnings)
    return out


def test_the_site_builds_strict_without_warnings(site):
    assert (site / "index.html").exists() and (site / "assets" / "samples.png").exists()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert (site / f"{page.stem}.html").exists(), page.name


def test_every_notebook_has_a_page_with_its_stored_figures(site):
    assert len(NOTEBOOKS) >= 12
    for nb in NOTEBOOKS:
        html = (site / "notebooks" / f"{nb.stem}.html").read_text()
        figures = len(re.findall(r'<img[^>]+src="data:image/png;base64,', html))
        assert figures >= _png_outputs(nb), f"{nb.name}: {figures} figures on the page, {_png_outputs(nb)} stored"
        assert 'href="' + nb.name not in html, f"{nb.name}: a link to a notebook file instead of its page"
    assert (site / "notebooks" / "index.html").exists()  # the instructor notes, notebooks/README.md


def test_the_api_page_lists_every_name_of_import_ditlab(site):
    import ditlab

    html = (site / "api.html").read_text()
    assert {"train", "sample", "build_model"} <= set(ditlab.__all__)
    headings = set(re.findall(r'class="doc doc-heading">\s*([\w.]+)', html))
    missing = [name for name in ditlab.__all__ if f"ditlab.{name}" not in headings]
    assert not missing, f"not on the API page: {missing}"
    assert "Train a DiT" in html  # docstrings, not just names


def test_the_readme_is_a_landing_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, len(lines)
    assert any(re.match(r"!\[.*\]\(docs/assets/\w+\.png\)", line) for line in lines[:25]), "no picture in the first screen"
    assert (ROOT / "docs" / "assets" / "samples.png").stat().st_size < 50_000


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_no_machine_specific_paths_or_load_remarks(page):
    text = page.read_text()
    for bad in ("../shared", "/work/", "load average", "shared machine", "quiet machine", "uptime"):
        assert bad not in text, f"{page.name} mentions {bad!r}"


# ---------------------------------------------------------------- in a browser

CHROMIUM = os.environ.get("DITLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("DITLAB_REQUIRE_BROWSER") == "1"  # .ci/run sets it: there a missing browser is a failure


def _browser_missing() -> str | None:
    if CHROMIUM is None:
        return "no chromium on PATH (apt-get install chromium, or set DITLAB_CHROMIUM)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e \".[browser]\")"
    return None


@pytest.fixture
def server(site):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.browser
@pytest.mark.skipif(_browser_missing() is not None and not REQUIRED, reason=str(_browser_missing()))
def test_a_notebook_page_shows_its_figures_offline(server):
    from playwright.sync_api import sync_playwright

    expected = _png_outputs(ROOT / "notebooks" / "01_patchify.ipynb")
    blocked = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])  # --no-sandbox: CI runs as root
        try:
            page = browser.new_page()

            def route(r):  # the site must work without the network: everything but the local server is refused
                if r.request.url.startswith(server) or r.request.url.startswith("data:"):
                    r.continue_()
                else:
                    blocked.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            for path, least, title in (("notebooks/01_patchify.html", expected, "patchify"), ("index.html", 1, "ditlab")):
                page.goto(server + path, wait_until="load")
                page.wait_for_function("[...document.images].every(i => i.complete)", timeout=30_000)
                assert title in page.title().lower(), page.title()
                sizes = page.eval_on_selector_all("article img", "els => els.map(i => [i.src, i.naturalWidth])")
                local = [(src[:60], width) for src, width in sizes if src.startswith((server, "data:"))]  # not badges
                assert len(local) >= least, f"{path}: {len(local)} figures, expected {least}"
                broken = [src for src, width in local if width == 0]
                assert not broken, f"{path}: figures that did not load: {broken}"
        finally:
            browser.close()
