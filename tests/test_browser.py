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
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
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


# --- the Chinese edition: every glyph of its prose is drawn --------------------

ZH_NOTEBOOKS = sorted((ROOT / "notebooks" / "zh-CN").glob("*.ipynb"))

# For each text node of the rendered markdown (formulas excluded), draw each
# distinct character in the node's own font on a canvas and compare it with
# characters no font has: an unassigned code point and a Tangut ideograph (no
# CJK font covers Tangut). A character drawn exactly like them, or not drawn at
# all, is a missing glyph ("tofu"). Canvas text goes through the same font
# fallback as the page's text.
_JS_MISSING_GLYPHS = """(extra) => {
  const canvas = document.createElement('canvas');
  canvas.width = 48; canvas.height = 48;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  const ink = (ch, font) => {
    ctx.clearRect(0, 0, 48, 48);
    ctx.font = font; ctx.textBaseline = 'top'; ctx.fillStyle = '#000';
    ctx.fillText(ch, 4, 4);
    const d = ctx.getImageData(0, 0, 48, 48).data;
    let h = 0, any = false;
    for (let i = 3; i < d.length; i += 4) { h = (h * 31 + d[i]) >>> 0; any = any || d[i] > 0; }
    return any ? String(h) : 'blank';
  };
  const byFont = new Map();
  const add = (ch, font) => {
    if (!byFont.has(font)) byFont.set(font, new Set());
    byFont.get(font).add(ch);
  };
  for (const root of document.querySelectorAll('.jp-MarkdownOutput')) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!el || el.closest('mjx-container, .MathJax, script, style')) continue;
      const s = getComputedStyle(el);
      const font = `${s.fontStyle} ${s.fontWeight} 32px ${s.fontFamily}`;
      for (const ch of n.textContent) if (ch.codePointAt(0) > 127 && ch.trim()) add(ch, font);
    }
  }
  const missing = [], checked = [];
  for (const [font, chars] of byFont) {
    for (const ch of extra) chars.add(ch);
    const tofu = new Set(['\\u0378', '\\u{17000}'].map(c => ink(c, font)));
    for (const ch of chars) {
      const h = ink(ch, font);
      checked.push(ch);
      if (h === 'blank' || tofu.has(h)) missing.push(ch);
    }
  }
  const text = Array.from(document.querySelectorAll('.jp-MarkdownOutput'))
    .map(e => e.innerText).join('\\n');
  return {missing: Array.from(new Set(missing)), checked: new Set(checked).size,
          cjk: (text.match(/[\\u4e00-\\u9fff]/g) || []).length,
          leftover: (text.match(/.{0,12}\\*\\*.{0,12}/g) || [])};
}"""


def open_rendered(page, url: str, token: str, name: str) -> None:
    """Open notebook ``name`` and wait until its markdown cells are rendered."""
    page.goto(f"{url}/lab/tree/{name}?reset&token={token}")
    page.wait_for_function(
        "(name) => { const nb = (%s)(name); return nb && nb.content && nb.content.widgets"
        " .filter(w => w.model.type === 'markdown').every(w => w.rendered); }" % _JS_FIND,
        arg=name, timeout=120_000)
    page.wait_for_timeout(1500)  # fonts and formulas


def test_chinese_notebooks_render_every_glyph_of_their_prose(tmp_path):
    """Each Chinese notebook's prose is drawn without missing glyphs (needs a
    CJK font: .ci/run installs Debian's fonts-noto-cjk), and with no Markdown
    left unrendered (a ``**`` next to Chinese punctuation can fail to close)."""
    _need_browser()
    assert len(ZH_NOTEBOOKS) == 6, "run: python scripts/build_zh.py"
    with jupyterlab(tmp_path, ZH_NOTEBOOKS) as (url, token), chromium() as new_page:
        page = new_page()
        open_rendered(page, url, token, ZH_NOTEBOOKS[0].name)
        control = page.evaluate(_JS_MISSING_GLYPHS, ["\u0379"])  # unassigned: must be caught
        assert "\u0379" in control["missing"], "the glyph check cannot see a missing glyph"
        for nb in ZH_NOTEBOOKS:
            page = new_page()
            open_rendered(page, url, token, nb.name)
            found = page.evaluate(_JS_MISSING_GLYPHS, [])
            assert found["cjk"] > 500, f"{nb.name}: the Chinese prose did not render"
            assert found["missing"] == [], \
                f"{nb.name}: {len(found['missing'])} of {found['checked']} characters have " \
                f"no glyph, e.g. {''.join(found['missing'][:20])} (apt-get install fonts-noto-cjk)"
            assert found["leftover"] == [], f"{nb.name}: unrendered Markdown {found['leftover']}"
            page.evaluate("() => window.jupyterapp.commands.execute('kernelmenu:shutdown')")
            page.context.close()
