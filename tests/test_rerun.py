"""Students run cells again all the time. Every code cell of every English
notebook is executed twice in a row, on a cache that starts empty (so the
first run trains and the second loads), and the second run must print what
the first printed.

"Printed" is the text a reader sees: streams, and the plain-text form of
results and displays, after the same sanitising nbval applies (timings,
memory addresses, figure sizes). Figures are not compared: their text twin
is. Cells that measure wall-clock speed print different numbers every time
by nature; for them (``TIMED``) digits are masked and only the words must
agree. The Chinese edition runs the same code cells (tests/test_translation.py),
so the English run covers it.
"""
from __future__ import annotations

import configparser
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# Cells whose printout is a wall-clock measurement: (notebook, cell id).
TIMED = {("01_hard_pruning.ipynb", "b7be5cd8"),  # dense vs 90% zeros latency
         ("01_hard_pruning.ipynb", "54b956d4")}  # 32 neurons vs baseline latency


def _sanitisers() -> list[tuple[re.Pattern, str]]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "tests" / "nbval_sanitize.cfg")
    return [(re.compile(cfg[s]["regex"]), cfg[s]["replace"]) for s in cfg.sections()]


SANITISE = _sanitisers()


def printed(outputs: list, *, timed: bool = False) -> str:
    """The text of a cell's outputs as nbval sees it after sanitising."""
    parts = []
    for out in outputs:
        if out.output_type == "stream":
            head = f"[{out.name}] "
            if parts and parts[-1].startswith(head):  # a stream arrives in chunks
                parts[-1] += out.text
            else:
                parts.append(head + out.text)
        elif out.output_type in ("execute_result", "display_data"):
            text = out.get("data", {}).get("text/plain")
            if text is not None and "application/vnd.jupyter.widget-view+json" not in out.data:
                parts.append(f"[{out.output_type}] {text}")
        elif out.output_type == "error":
            parts.append(f"[error] {out.ename}: {out.evalue}")
    text = "\n".join(parts)
    for pattern, replacement in SANITISE:
        text = pattern.sub(replacement, text)
    if timed:
        text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text


def test_timed_cells_exist():
    """Every cell named in TIMED is a code cell of the notebook it names."""
    ids = {nb.name: {c.get("id") for c in nbformat.read(nb, as_version=4).cells
                     if c.cell_type == "code"} for nb in NOTEBOOKS}
    for name, cell_id in TIMED:
        assert cell_id in ids.get(name, set()), (name, cell_id)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_cell_run_twice_prints_the_same(path, isolated_cache):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    changed = []
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            timed = (path.name, cell.get("id")) in TIMED
            client.execute_cell(cell, index)
            first = printed(cell.outputs, timed=timed)
            client.execute_cell(cell, index)
            second = printed(cell.outputs, timed=timed)
            if first != second:
                changed.append(f"cell {index} ({cell.get('id')}):\n--- first\n{first}\n"
                               f"--- second\n{second}")
    assert not changed, f"{path.name}: run again, these cells print something else:\n\n" + \
        "\n\n".join(changed)
