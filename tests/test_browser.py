"""The widgets as a student sees them: JupyterLab and Voilà driven by a real browser (Playwright for Python on the
system's chromium; nothing is downloaded).

JupyterLab runs on 127.0.0.1 with a random port and token over copies of notebooks 10 and 11; every cell runs in
smoke mode; each widget must render (no "Error displaying widget", no raw `HBox(...)` text, no error output, no red
⚠ line from a callback), fit the notebook area, show its images at their own size, and respond: a changed control
or a press of Sample changes the image, the Gflops on the page equal `estimate_flops`, the scrubber's caption says
the slider's step. `ditlab playground` (Voilà) is opened and sampled too. Screenshots go to runs/browser/ (or
$DITLAB_BROWSER_SHOTS) for review. A test of the test shows that a widget callback that raises fails the checks.

Runs when chromium (or $DITLAB_CHROMIUM) and playwright are installed (`pip install -e ".[test,browser]"`,
`apt-get install chromium`); skipped with the reason otherwise, failed instead with DITLAB_REQUIRE_BROWSER=1 (.ci/run).
Marked `browser`: `pytest -m browser` runs only it. About a minute and a half on 2 cores.
"""
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("DITLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(os.environ.get("DITLAB_BROWSER_SHOTS", ROOT / "runs" / "browser"))
VIEWPORT = dict(width=1400, height=1000)  # the laptop window, file browser open: a ~1000 px notebook area


def _missing() -> str | None:
    if CHROMIUM is None:
        return "no chromium on PATH (apt-get install chromium, or set DITLAB_CHROMIUM)"
    for module, extra in (("playwright", "browser"), ("voila", "app"), ("jupyterlab", "core")):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e \".[{extra}]\")"
    return None


REQUIRED = os.environ.get("DITLAB_REQUIRE_BROWSER") == "1"  # .ci/run sets it: there a missing browser is a failure
pytestmark = [pytest.mark.browser, pytest.mark.skipif(_missing() is not None and not REQUIRED, reason=str(_missing()))]


# ---------------------------------------------------------------- servers and browser

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """The server and every kernel it started (its own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1, random port and token, serving copies of notebooks 10 and 11 (their outputs are
    saved there, not in the repository); cells run in smoke mode. Always shut down."""
    root = tmp_path_factory.mktemp("lab")
    work = root / "notebooks"
    work.mkdir()
    for name in ("10_scaling_explorer.ipynb", "11_sampling_playground.ipynb"):
        shutil.copy(ROOT / "notebooks" / name, work / name)
    tracker = root / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none",  # every cell in the page, not only the visible ones
                                   "autoStartDefaultKernel": True}))  # no "Select Kernel" dialog
    news = root / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "DITLAB_SMOKE": "1", "JUPYTER_CONFIG_DIR": str(root / "config"),
           "JUPYTER_RUNTIME_DIR": str(root / "runtime")}
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={work}", f"--LabApp.user_settings_dir={root / 'settings'}",
           f"--LabApp.workspaces_dir={root / 'workspaces'}"] + (["--allow-root"] if os.geteuid() == 0 else [])
    with open(root / "lab.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None, (root / "lab.log").read_text()[-3000:]
                time.sleep(0.4)
        else:
            raise AssertionError("JupyterLab did not start: " + (root / "lab.log").read_text()[-3000:])
        yield dict(base=base, token=token, work=work)
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser():
    if _missing():
        pytest.fail(f"DITLAB_REQUIRE_BROWSER=1 but {_missing()}")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):  # only this run's screenshots in the folder
        old.unlink()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])  # --no-sandbox: CI runs as root
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    context.close()


# ---------------------------------------------------------------- JupyterLab: open and run a notebook

def _run_all(page, lab, name: str, timeout_s: float = 900) -> None:  # a hang guard, not a speed check
    """Open the notebook, "Run All Cells" from the menu, wait until every code cell has run."""
    try:
        _run_all_cells(page, lab, name, timeout_s)
    except Exception:
        page.screenshot(path=SHOTS / f"FAILED_run_all_{name}.png")
        dialogs = page.locator(".jp-Dialog").all_inner_texts()
        if dialogs:
            raise AssertionError(f"{name}: a dialog is open: {dialogs}")
        raise


def _run_all_cells(page, lab, name: str, timeout_s: float) -> None:
    page.goto(f"{lab['base']}/lab/tree/{name}?reset&token={lab['token']}")  # reset: only this notebook open
    page.wait_for_selector(".jp-Notebook .jp-CodeCell")
    idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    idle.wait_for(timeout=90_000)  # the kernel is up

    def prompts():
        return page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()

    end = time.monotonic() + timeout_s
    dialogs = []
    for _ in range(3):  # JupyterLab may replace the first kernel just after opening; the queued cells are lost then
        _dismiss_dialogs(page, dialogs)
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        idle_since = None
        while time.monotonic() < end:
            if all(re.search(r"\[\d+\]", p) for p in prompts()):
                return
            if idle.count() and not any("*" in p for p in prompts()):
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 5:  # idle with cells not run: run all again
                    break
            else:
                idle_since = None
            time.sleep(0.5)
    page.screenshot(path=SHOTS / f"FAILED_run_all_{name}.png")
    raise AssertionError(f"{name}: cells still running or not run after {timeout_s:.0f} s: {prompts()}; "
                         f"dialogs: {dialogs}")


def _dismiss_dialogs(page, seen: list) -> None:
    """Accept any JupyterLab dialog (e.g. a kernel choice), remembering its text."""
    dialog = page.locator(".jp-Dialog")
    for _ in range(3):
        if not dialog.count():
            return
        seen.append(dialog.first.inner_text()[:300])
        dialog.first.locator(".jp-Dialog-button.jp-mod-accept").first.click()
        page.wait_for_timeout(500)


def _cell(page, source_snippet: str):
    """The code cell whose source contains `source_snippet`."""
    return page.locator(".jp-CodeCell", has=page.locator(".jp-InputArea-editor", has_text=source_snippet))


def check_page(page) -> int:
    """Every widget rendered and no error anywhere on the page; returns the number of widget images."""
    outputs = page.locator(".jp-OutputArea-output").all_inner_texts()  # (the markdown may quote the message)
    assert not [t for t in outputs if "Error displaying widget" in t], "a widget did not render"
    raw = [t for t in page.locator(".jp-OutputArea-output pre").all_inner_texts()
           if re.match(r"\s*(HBox|VBox|Tab|Image|Dropdown|IntSlider|Button)\(", t)]
    assert not raw, f"widgets shown as raw text instead of rendered: {raw[:2]}"
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, f"a cell raised: {errors.first.inner_text()[:500]}"
    red = [t for t in page.locator(".widget-html-content").all_inner_texts() if "⚠" in t]
    assert not red, f"a widget callback failed: {red}"
    return page.locator("img.widget-image").count()


def check_layout(page) -> None:
    """No widget output wider than the notebook area; every widget image at its own pixel size."""
    too_wide = page.evaluate("""() => [...document.querySelectorAll('.jp-OutputArea-output')]
        .filter(o => o.querySelector('.jupyter-widgets') && o.scrollWidth > o.clientWidth + 1)
        .map(o => [o.scrollWidth, o.clientWidth])""")
    assert not too_wide, f"widget outputs wider than the notebook area (scroll, client px): {too_wide}"
    scaled = page.evaluate("""() => [...document.querySelectorAll('img.widget-image')]
        .filter(i => i.naturalWidth && Math.abs(i.getBoundingClientRect().width - i.naturalWidth) > 0.5)
        .map(i => [i.naturalWidth, i.getBoundingClientRect().width])""")
    assert not scaled, f"images stretched or shrunk (PNG px, shown px): {scaled}"


def changed_image(page, image, action, what: str, timeout_ms: int = 60_000) -> bytes:
    """Do `action`, wait until `image` shows a new PNG, return its pixels (a screenshot of the element)."""
    before = image.get_attribute("src")
    action()
    try:
        page.wait_for_function("([el, src]) => el.getAttribute('src') !== src", arg=[image.element_handle(), before],
                               timeout=timeout_ms)
    except Exception as e:  # playwright's TimeoutError
        raise AssertionError(f"{what}: the image did not change ({type(e).__name__})") from None
    page.wait_for_timeout(200)  # the new image decoded and painted
    return image.screenshot()


def _dropdown(scope, label: str):
    return scope.locator(".widget-dropdown", has=scope.page.locator("label", has_text=label)).locator("select")


def _toggle(scope, label: str, option: str):
    group = scope.locator(".widget-toggle-buttons", has=scope.page.locator("label", has_text=label))
    return group.locator("button", has_text=re.compile(f"^{re.escape(option)}$"))


def _set_slider(scope, label: str, value) -> None:
    slider = scope.locator(".widget-slider", has=scope.page.locator("label", has_text=label))
    readout = slider.locator(".widget-readout")
    readout.click()
    readout.press("Control+a")
    readout.type(str(value))
    readout.press("Enter")


def _sample(scope):
    return scope.locator("button", has_text=re.compile(r"^Sample$"))


# ---------------------------------------------------------------- the tests

def test_scaling_explorer_in_jupyterlab(page, lab):
    from ditlab.eval import estimate_flops, gflops_text
    from ditlab.model import get_config

    _run_all(page, lab, "10_scaling_explorer.ipynb")
    assert check_page(page) >= 2
    check_layout(page)
    explorer = _cell(page, "widgets.scaling_explorer(")
    explorer.scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / "10_explorer_XL2.png", full_page=False)
    gflops = explorer.locator("b.gflops")
    assert gflops.inner_text() == gflops_text(estimate_flops(get_config("DiT-XL/2")) / 1e9)
    plot = explorer.locator("img.widget-image").last
    first = plot.screenshot()
    changed_image(page, plot, lambda: _dropdown(explorer, "size").select_option("S"), "size S")
    after = changed_image(page, plot, lambda: _toggle(explorer, "patch p", "8").click(), "patch 8")
    assert after != first
    page.wait_for_function("el => el.textContent.includes('DiT-S/8')", arg=explorer.locator(".widget-html-content")
                           .first.element_handle())
    assert gflops.inner_text() == gflops_text(estimate_flops(get_config("DiT-S/8")) / 1e9)
    _dropdown(explorer, "image px").select_option("512")
    page.wait_for_function("el => el.textContent.includes('512 px')", arg=explorer.locator(".widget-html-content")
                           .first.element_handle())
    assert gflops.inner_text() == gflops_text(estimate_flops(get_config("DiT-S/8", input_size=64)) / 1e9)
    check_page(page)
    check_layout(page)
    explorer.screenshot(path=SHOTS / "10_explorer_S8_512px.png")


def test_sampling_playground_and_scrubber_in_jupyterlab(page, lab):
    _run_all(page, lab, "11_sampling_playground.ipynb")
    assert check_page(page) >= 2
    check_layout(page)
    play = _cell(page, "widgets.playground(")
    image = play.locator("img.widget-image")
    first = image.screenshot()
    _set_slider(play, "seed", 5)
    other = changed_image(page, image, lambda: _sample(play).click(), "Sample, seed 5")
    assert other != first
    _set_slider(play, "seed", 0)
    again = changed_image(page, image, lambda: _sample(play).click(), "Sample, seed 0 again")
    assert again == first, "the same seed and settings gave a different grid"
    _dropdown(play, "class").select_option(label="7")
    _toggle(play, "sampler", "ddpm").click()
    sevens = changed_image(page, image, lambda: _sample(play).click(), "Sample, class 7 with ddpm")
    assert sevens != first
    check_page(page)
    check_layout(page)
    play.screenshot(path=SHOTS / "11_playground_class7_ddpm.png")

    scrub = _cell(page, "widgets.scrubber(")
    frame = scrub.locator("img.widget-image")
    start = frame.screenshot()
    readout = scrub.locator(".widget-slider", has=page.locator("label", has_text="step")).locator(".widget-readout")
    for step in ("3", "1"):
        if readout.inner_text().strip() != step:
            changed_image(page, frame, lambda: _set_slider(scrub, "step", step), f"step {step}")
        assert readout.inner_text().strip() == step
        assert scrub.locator("b.step").inner_text() == step, "the caption says another step than the slider"
    assert frame.screenshot() == start  # step 1 again: the same frame
    check_page(page)
    check_layout(page)
    scrub.screenshot(path=SHOTS / "11_scrubber.png")


def test_a_failing_widget_callback_fails_the_checks(page, lab):
    """The test of the test: a playground whose sampling raises must fail `changed_image` and `check_page`."""
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(
        "from ditlab.teach import explore, widgets\n"
        "box = widgets.playground('digits-p4', n=4, steps=2)\n"
        "def broken(*args, **kwargs):\n    raise RuntimeError('deliberately broken callback')\n"
        "explore.sample_grid = broken\nbox")]
    nbformat.write(nb, lab["work"] / "broken.ipynb")
    _run_all(page, lab, "broken.ipynb")
    assert check_page(page) == 1  # it renders
    play = _cell(page, "widgets.playground(")
    with pytest.raises(AssertionError, match="did not change"):
        changed_image(page, play.locator("img.widget-image"), lambda: _sample(play).click(), "broken Sample",
                      timeout_ms=5_000)
    with pytest.raises(AssertionError, match="deliberately broken callback"):
        check_page(page)
    play.screenshot(path=SHOTS / "broken_callback.png")


def test_ditlab_playground_serves_the_app(page):
    from ditlab.playground import start, stop

    proc, url = start(port=0, n=4, steps=3)
    try:
        page.goto(url)
        page.wait_for_selector("img.widget-image", timeout=120_000)
        page.get_by_text("Sampling playground").first.wait_for()
        assert "import" not in page.locator("body").inner_text()  # no code on the page
        image = page.locator("img.widget-image").first
        page.locator("select").nth(1).select_option(label="3")  # class
        changed_image(page, image, lambda: _sample(page).first.click(), "Voilà Sample, class 3")
        assert check_page(page) >= 1
        page.screenshot(path=SHOTS / "voila_playground.png", full_page=True)
        page.locator(".lm-TabBar-tab", has_text="Scaling explorer").click()
        page.locator("b.gflops").wait_for()
    finally:
        stop(proc)
    assert proc.poll() is not None
