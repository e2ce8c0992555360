"""The notebooks in a real JupyterLab, driven by headless Chromium.

Unit tests that set slider values in Python cannot see the most common
classroom failure: a widget that never renders because the front-end package
is missing or does not match ipywidgets. So this test starts JupyterLab from
the kit's own environment on 127.0.0.1, opens every notebook in Debian's
Chromium through Playwright, runs all cells and checks that no cell fails,
that every widget renders, and that moving the λ slider (01) and the
temperature slider (03) redraws the figure. A second test disables the widget
front-end and checks that the same checks then fail.

Screenshots of the two widgets go to ``$KIT_SCREENSHOT_DIR`` (default: a
temporary folder); ``KIT_UPDATE_SCREENSHOTS=1`` writes them to
``docs/screenshots/`` for the README. Without Chromium or Playwright the tests
skip, except under CI (``CI=true``), where they fail.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RUN_TIMEOUT_S = 400  # one notebook, cold cache, slow machine
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _need_browser():
    missing = []
    if CHROMIUM is None:
        missing.append("chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright)")
    if missing:
        reason = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI must install them (.ci/run)")
        pytest.skip(reason)


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@contextmanager
def jupyterlab(tmp: Path, notebooks: list[Path], *, widgets_disabled: bool = False):
    """Run JupyterLab on 127.0.0.1 over copies of ``notebooks``; yield (url, token).

    Settings: no news or update prompts, no windowing (every cell in the DOM),
    and the app exposed as ``window.jupyterapp`` so the test can run commands.
    """
    work, settings, config = tmp / "work", tmp / "settings", tmp / "config"
    work.mkdir(parents=True)
    for nb in notebooks:  # copies: autosave must never touch the repository
        shutil.copy(nb, work / nb.name)
    _write_json(settings / "@jupyterlab/apputils-extension/notification.jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False})
    _write_json(settings / "@jupyterlab/notebook-extension/tracker.jupyterlab-settings",
                {"windowingMode": "none"})
    page_config = {"disabledExtensions": {"@jupyter-widgets/jupyterlab-manager": True}} \
        if widgets_disabled else {}
    _write_json(config / "labconfig" / "page_config.json", page_config)
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config)}
    env.pop("KIT_CACHE_DIR", None)  # the kit's own cache, shared with nbval's run
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
           "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={work}", f"--LabApp.user_settings_dir={settings}",
           f"--LabApp.workspaces_dir={tmp / 'workspaces'}", "--LabApp.expose_app_in_browser=True",
           "--ServerApp.open_browser=False"]
    log = open(tmp / "jupyterlab.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("JupyterLab did not start:\n"
                                   + (tmp / "jupyterlab.log").read_text(errors="replace")[-3000:])
            time.sleep(0.5)
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def chromium():
    """Yield a function that opens a fresh page (its own browser context)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield lambda: browser.new_context(
                viewport={"width": 1400, "height": 1000}).new_page()
        finally:
            browser.close()


# JavaScript run in the page, against JupyterLab's own model of the notebook.
# A widget output whose front-end is missing falls back to another renderer
# (its text/plain repr), which marks the output node with data-mime-type.
# (undefined until JupyterLab has started: a predicate must not throw meanwhile)
_JS_FIND = ("(name) => window.jupyterapp && window.jupyterapp.shell && "
            "Array.from(window.jupyterapp.shell.widgets('main'))"
            ".find(w => w.context && w.context.path === name)")
_JS_STATE = """(name) => {
  const nb = (%s)(name);
  if (!nb || !nb.content || !nb.content.model) return null;
  const cells = nb.content.model.cells;
  let pending = 0, errors = [], widgets = 0, fallbacks = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code' || !c.sharedModel.getSource().trim()) continue;
    if (c.executionCount === null) pending++;
    const outputs = c.outputs.toJSON();
    const view = nb.content.widgets[i];
    for (let j = 0; j < outputs.length; j++) {
      const o = outputs[j];
      if (o.output_type === 'error') errors.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
      if (!(o.data && o.data['%s'])) continue;
      widgets++;
      const child = view.outputArea && view.outputArea.widgets[j];
      const node = child && child.node.querySelector('.jp-OutputArea-output');
      if (!node || node.hasAttribute('data-mime-type')) fallbacks.push(`cell ${i}`);
    }
  }
  const kernel = nb.sessionContext.session && nb.sessionContext.session.kernel;
  return {pending, errors, widgets, fallbacks, status: kernel ? kernel.status : 'none'};
}""" % (_JS_FIND, WIDGET_MIME)


def open_and_run_all(page, url: str, token: str, name: str) -> dict:
    """Open notebook ``name`` in a fresh workspace, clear it, run all cells;
    return its final state."""
    page.goto(f"{url}/lab/tree/{name}?reset&token={token}")
    page.wait_for_function(
        "(name) => { const nb = (%s)(name); const s = nb && nb.sessionContext.session;"
        " return s && s.kernel && s.kernel.status === 'idle'; }" % _JS_FIND,
        arg=name, timeout=120_000)
    page.evaluate("(name) => { const nb = (%s)(name);"
                  " window.jupyterapp.shell.activateById(nb.id); }" % _JS_FIND, name)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    state = None
    while time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        state = page.evaluate(_JS_STATE, name)
        if state and (state["errors"] or (state["pending"] == 0 and state["status"] == "idle")):
            break
    else:
        pytest.fail(f"{name}: cells still running after {RUN_TIMEOUT_S} s: {state}")
    page.wait_for_timeout(1500)  # let the last outputs render
    return page.evaluate(_JS_STATE, name)


def widget_problems(page, state: dict) -> list[str]:
    """What is wrong with the widgets on the page (empty when all rendered)."""
    problems = []
    broken = page.get_by_text("Error displaying widget").count()
    if broken:
        problems.append(f"{broken} x 'Error displaying widget'")
    if state["fallbacks"]:
        problems.append(f"widget outputs shown as plain text in {state['fallbacks']}")
    return problems


def explorer_with(page, text: str):
    """The widget box (VBox) of the explorer whose controls show ``text``."""
    return page.locator(".widget-vbox").filter(
        has=page.locator(".widget-label", has_text=text)).first


def move_slider_and_check_redraw(page, box, label: str, presses: int, shot: Path) -> None:
    """Focus the slider labelled ``label`` in ``box``, press the right arrow,
    and require the figure in ``box`` to change; screenshot the box."""
    box.scroll_into_view_if_needed()
    img = box.locator("img").first
    img.wait_for(timeout=30_000)
    before = img.get_attribute("src")
    slider = box.locator(".widget-slider").filter(
        has=page.locator(".widget-label", has_text=label)).first
    handle = slider.locator(".noUi-handle").first
    handle.focus()
    for _ in range(presses):
        page.keyboard.press("ArrowRight")
    handle.blur()  # some sliders only commit on change
    page.wait_for_function(
        "([el, src]) => { const i = el.querySelector('img'); return i && i.src !== src; }",
        arg=[box.element_handle(), before], timeout=30_000)
    last, stable = None, 0
    while stable < 5:  # each key press redraws: wait for the last figure
        page.wait_for_timeout(300)
        src = box.locator("img").first.get_attribute("src")
        stable = stable + 1 if src == last else 0
        last = src
    shot.parent.mkdir(parents=True, exist_ok=True)
    box.screenshot(path=str(shot))


def screenshot_dir(tmp_path: Path) -> Path:
    if os.environ.get("KIT_UPDATE_SCREENSHOTS") == "1":
        return ROOT / "docs" / "screenshots"
    return Path(os.environ.get("KIT_SCREENSHOT_DIR", tmp_path / "screenshots"))


def test_notebooks_run_and_widgets_render_in_jupyterlab(tmp_path):
    _need_browser()
    shots = screenshot_dir(tmp_path)
    with jupyterlab(tmp_path, [ROOT / "notebooks" / n for n in NOTEBOOKS]) as (url, token), \
            chromium() as new_page:
        for name in NOTEBOOKS:
            page = new_page()
            state = open_and_run_all(page, url, token, name)
            assert state["errors"] == [], f"{name}: {state['errors']}"
            assert widget_problems(page, state) == [], name
            if name.startswith("01_"):
                box = explorer_with(page, "λ")
                move_slider_and_check_redraw(page, box, "λ", 2, shots / "lambda_explorer.png")
            if name.startswith("03_"):
                box = explorer_with(page, "test digit")
                move_slider_and_check_redraw(page, box, "T", 10,
                                             shots / "temperature_explorer.png")
            page.evaluate("() => window.jupyterapp.commands.execute('kernelmenu:shutdown')")
            page.context.close()
    assert (shots / "lambda_explorer.png").is_file()
    assert (shots / "temperature_explorer.png").is_file()


def test_missing_widget_frontend_is_detected(tmp_path):
    """With the widget front-end disabled, the checks above must fail."""
    _need_browser()
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {},
                     "outputs": [], "source": "import ipywidgets as w\nw.IntSlider(value=3)"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    src = tmp_path / "src" / "widget_probe.ipynb"
    _write_json(src, nb)
    for disabled in (False, True):
        with jupyterlab(tmp_path / f"lab-{disabled}", [src], widgets_disabled=disabled) as \
                (url, token), chromium() as new_page:
            page = new_page()
            state = open_and_run_all(page, url, token, src.name)
            assert state["errors"] == [] and state["widgets"] == 1
            problems = widget_problems(page, state)
            assert bool(problems) == disabled, problems
