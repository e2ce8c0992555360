"""The Simplified Chinese edition: the English notebooks with translated prose.

nbval does not run ``notebooks/zh-CN/`` (pyproject ignores it): instead these
tests prove that every Chinese notebook is its English twin cell for cell,
with the same ids, the same code, the same outputs and the same metadata, and
only the markdown translated. So what nbval checks in the English edition
holds for the Chinese one, at no extra run time. They also check that every
translation is there, fresh (its English source has not changed since) and
Chinese, and that the staleness check names the cell that changed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from jupyterlab_server.translation_utils import get_language_packs

from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent

build_zh = load_script("build_zh")
LAYOUT = build_zh.Layout(ROOT)
ENGLISH = LAYOUT.notebooks()
PAIRS = build_zh.pairs(LAYOUT)
CJK = build_zh.CJK
WIDE = r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef“”‘’…—]"


def _id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_there_are_six_notebooks_in_each_edition():
    assert [p.name for p in ENGLISH] == [
        "00_background.ipynb", "01_hard_pruning.ipynb", "02_soft_pruning.ipynb",
        "03_distillation.ipynb", "04_comparison.ipynb", "A_article_errata.ipynb"]
    assert len(PAIRS) == 12  # instructor and student edition of each


@pytest.mark.parametrize("nb", ENGLISH, ids=[p.stem for p in ENGLISH])
def test_every_prose_cell_has_a_fresh_chinese_translation(nb):
    assert build_zh.problems(LAYOUT, nb) == []


def test_the_chinese_edition_is_what_the_build_writes():
    assert build_zh.main(["--check"]) == 0, "run: python scripts/build_zh.py"


@pytest.mark.parametrize("en, zh", [(en, zh) for en, _, zh in PAIRS],
                         ids=[_id(zh) for _, _, zh in PAIRS])
def test_code_cells_outputs_and_metadata_are_the_english_ones(en, zh):
    a = json.loads(en.read_text(encoding="utf-8"))
    b = json.loads(zh.read_text(encoding="utf-8"))
    assert {k: v for k, v in a.items() if k != "cells"} == \
        {k: v for k, v in b.items() if k != "cells"}
    assert [(c["id"], c["cell_type"]) for c in a["cells"]] == \
        [(c["id"], c["cell_type"]) for c in b["cells"]]
    for ca, cb in zip(a["cells"], b["cells"]):
        if ca["cell_type"] == "code":
            assert ca == cb, f"{_id(zh)}: code cell {ca['id']} differs from {_id(en)}"
        else:
            assert {k: v for k, v in ca.items() if k != "source"} == \
                {k: v for k, v in cb.items() if k != "source"}
            assert CJK.search("".join(cb["source"])), f"{_id(zh)}: cell {cb['id']} is not Chinese"


def _soft_breaks_between_wide_characters(text: str) -> list[str]:
    """Lines of a paragraph that end and continue in Chinese: Markdown turns
    the line break into a space, which shows between two Chinese characters."""
    bad, fence = [], False
    lines = text.split("\n")
    for a, b in zip(lines, lines[1:]):
        if a.lstrip().startswith("```"):
            fence = not fence
        if fence or not a.strip() or not b.strip() or a.lstrip().startswith(("#", "|")):
            continue
        if b.lstrip().startswith(("#", "|", "- ", "* ", "> ", "```")) or re.match(r"\s*\d+\. ", b):
            continue
        if re.search(WIDE + r"$", a.rstrip()) and re.match(WIDE, b.strip()):
            bad.append(a.strip()[-12:] + " / " + b.strip()[:12])
    return bad


@pytest.mark.parametrize("nb", ENGLISH, ids=[p.stem for p in ENGLISH])
def test_chinese_paragraphs_are_not_broken_between_characters(nb):
    entries = build_zh.read_catalogue(LAYOUT.catalogue_of(nb))
    bad = {e.cell_id: found for e in entries.values()
           if (found := _soft_breaks_between_wide_characters(e.text))}
    assert bad == {}, "join these lines (a line break between Chinese characters shows as a space)"


def _first_uses_without_english(text: str, terms) -> list[str]:
    """Glossary terms whose first use in ``text`` is not followed by the English
    in parentheses (剪枝（pruning）); code, formulas and longer terms that
    contain the term (硬剪枝 for 剪枝) are skipped."""
    for pattern in (re.compile(r"```.*?```", re.S), build_zh.CODE, build_zh.MATH):
        text = pattern.sub("", text)
    longest_first = sorted((t.zh for t in terms), key=len, reverse=True)
    bad = []
    for t in terms:
        masked = text
        for other in longest_first:
            if other != t.zh and t.zh in other:
                masked = masked.replace(other, "□" * len(other))
        i = masked.find(t.zh)
        if i < 0:
            continue
        gloss = re.match(r"[*”’]*(?:[\u4e00-\u9fff]{0,3}\s*[（(]|，)\s*([^）)（(]{0,80})",
                         masked[i + len(t.zh):])
        keys = {t.en.split()[0][:5], *re.findall(r"\(([A-Z]+)\)", t.en)}
        if not gloss or not any(k.lower() in gloss.group(1).lower() for k in keys):
            bad.append(f"{t.zh} ({t.en}): …{masked[max(0, i - 10):i + len(t.zh) + 10]}…")
    return bad


@pytest.mark.parametrize("nb", ENGLISH, ids=[p.stem for p in ENGLISH])
def test_each_term_is_glossed_in_english_at_its_first_use(nb):
    terms = build_zh.read_glossary(LAYOUT.glossary)
    cells = nbformat.read(LAYOUT.chinese / nb.name, 4).cells
    text = "\n".join(c.source for c in cells
                     if c.cell_type == "markdown" and c.id != build_zh.GLOSSARY_CELL[1])
    assert _first_uses_without_english(text, terms) == []


def test_the_first_use_check_sees_a_missing_gloss():
    terms = build_zh.read_glossary(LAYOUT.glossary)
    assert _first_uses_without_english("先做硬剪枝（hard pruning），再做剪枝（pruning）。", terms) == []
    assert _first_uses_without_english("卷积神经网络（CNN）的*掩码*（mask）。", terms) == []
    assert [b.split(" ")[0] for b in _first_uses_without_english(
        "先剪枝，再剪枝（pruning），然后微调。", terms)] == ["剪枝", "微调"]


def test_the_glossary_has_40_terms_and_both_editions_carry_it():
    terms = build_zh.read_glossary(LAYOUT.glossary)
    assert len(terms) >= 40
    assert len({t.zh for t in terms}) == len(terms) and len({t.en for t in terms}) == len(terms)
    assert {t.notebook for t in terms} <= {"00", "01", "02", "03", "04", "A"}
    assert all(t.definition_en and CJK.search(t.definition_zh) for t in terms)
    assert build_zh.sync_glossary(LAYOUT, write=False) == []
    stem, cell_id = build_zh.GLOSSARY_CELL
    for path in (LAYOUT.english / f"{stem}.ipynb", LAYOUT.chinese / f"{stem}.ipynb"):
        cell = next(c for c in nbformat.read(path, 4).cells if c.id == cell_id)
        for t in terms:
            assert f"| {t.zh}" in cell.source and f"| {t.en} |" in cell.source, (path, t.zh)
    en_cell, zh_cell = build_zh.glossary_cells(terms)
    assert all(t.definition_en in en_cell and t.definition_zh in zh_cell for t in terms)


# --- the build itself, in a scratch copy of the repository ---------------------

@pytest.fixture
def scratch(tmp_path):
    """A copy of what the build reads and writes; return its Layout."""
    for rel in ("notebooks", "translations", "docs"):
        shutil.copytree(ROOT / rel, tmp_path / rel,
                        ignore=shutil.ignore_patterns("*.png", "results", ".ipynb_checkpoints"))
    return build_zh.Layout(tmp_path)


def _markdown_cell(path: Path, n: int = 0):
    nb = nbformat.read(path, 4)
    return nb, [c for c in nb.cells if c.cell_type == "markdown"][n]


def test_a_changed_english_cell_is_named_until_its_translation_is_updated(scratch, capsys):
    layout = scratch
    assert build_zh.main(["--check"], layout=layout) == 0
    en = layout.english / "01_hard_pruning.ipynb"
    nb, cell = _markdown_cell(en, 2)
    cell.source += "\n\nOne more sentence."
    nbformat.write(nb, en)
    new_hash = build_zh.source_hash(cell.source)
    zh = layout.chinese / "01_hard_pruning.ipynb"
    before = zh.read_bytes()

    assert build_zh.main(["--check"], layout=layout) == 1
    said = capsys.readouterr().out
    assert f"notebooks/01_hard_pruning.ipynb, cell {cell.id}: the English text changed" in said
    assert f"en:{new_hash}" in said
    assert [line for line in said.splitlines() if ", cell " in line] == [
        line for line in said.splitlines() if cell.id in line]  # that cell only
    assert build_zh.main([], layout=layout) == 1  # the build refuses ...
    assert zh.read_bytes() == before  # ... and writes nothing

    cat = layout.catalogue_of(en)
    old = build_zh.read_catalogue(cat)[cell.id].text
    build_zh.set_entry(cat, cell.id, new_hash, old + "\n\n再加一句。")
    assert build_zh.main([], layout=layout) == 0
    assert build_zh.main(["--check"], layout=layout) == 0
    _, rebuilt = _markdown_cell(zh, 2)
    assert rebuilt.id == cell.id and rebuilt.source.endswith("再加一句。")
    _, rebuilt_student = _markdown_cell(layout.chinese / "student" / "01_hard_pruning.ipynb", 2)
    assert rebuilt_student.source == rebuilt.source


def test_missing_untranslated_orphaned_and_damaged_entries_are_reported(scratch):
    layout = scratch
    en = layout.english / "02_soft_pruning.ipynb"
    cat = layout.catalogue_of(en)
    nb = nbformat.read(en, 4)
    md = [c for c in nb.cells if c.cell_type == "markdown"]
    entries = build_zh.read_catalogue(cat)
    with_code = next(c for c in md[2:] if "`" in entries[c.id].text)
    build_zh.set_entry(cat, md[1].id, build_zh.source_hash(md[1].source), md[1].source)
    build_zh.set_entry(cat, "deadbeef", "0" * 12, "一个不存在的单元格。")
    damaged = re.sub(r"`[^`]+`", "代码", entries[with_code.id].text)
    build_zh.set_entry(cat, with_code.id, entries[with_code.id].en_hash, damaged)
    text = cat.read_text(encoding="utf-8")
    first = build_zh.MARKER.search(text)
    nxt = build_zh.MARKER.search(text, first.end())
    cat.write_text(text[:first.start()] + text[nxt.start():], encoding="utf-8")  # drop one

    found = "\n".join(build_zh.problems(layout, en))
    assert f"cell {md[0].id}: no translation" in found
    assert f"cell {md[1].id}: the entry in translations/zh-CN/02_soft_pruning.md is still " \
           "the English text" in found
    assert "entry for cell deadbeef, which is not a markdown cell" in found
    assert f"cell {with_code.id}: the translation in translations/zh-CN/02_soft_pruning.md " \
           "lacks `" in found


def test_a_hand_edited_chinese_notebook_is_out_of_date(scratch, capsys):
    zh = scratch.chinese / "03_distillation.ipynb"
    nb, cell = _markdown_cell(zh)
    cell.source += "手改。"
    nbformat.write(nb, zh)
    assert build_zh.main(["--check"], layout=scratch) == 1
    assert "out of date: notebooks/zh-CN/03_distillation.ipynb" in capsys.readouterr().out


def test_a_changed_glossary_is_copied_into_both_editions(scratch):
    path = scratch.glossary
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("| 剪掉绝对值最小的权重 |", "| 剪掉绝对值最小的那些权重 |"),
                    encoding="utf-8")
    assert build_zh.sync_glossary(scratch, write=False) == [
        "translations/zh-CN/A_article_errata.md (glossary cell a2df06ee)"]
    assert build_zh.main([], layout=scratch) == 0
    _, = [c for c in nbformat.read(scratch.chinese / "A_article_errata.ipynb", 4).cells
          if c.id == "a2df06ee" and "剪掉绝对值最小的那些权重" in c.source]
    assert build_zh.main(["--check"], layout=scratch) == 0


def test_a_formula_that_wraps_lines_is_still_one_formula():
    en = "Adds $\\lambda \\sum_i\n|w_i|$ to the loss, with `prune.l1_unstructured(\nlayer)`."
    assert build_zh.lost_markup(en, "在损失中加上 $\\lambda \\sum_i |w_i|$，用"
                                    " `prune.l1_unstructured( layer)`。") == []
    assert build_zh.lost_markup(en, "在损失中加上 $\\lambda$。") == [
        "`prune.l1_unstructured(\nlayer)`", "$\\lambda \\sum_i\n|w_i|$"]


def test_binder_carries_jupyterlabs_chinese_language_pack():
    reqs = (ROOT / "binder" / "requirements.txt").read_text(encoding="utf-8")
    assert re.search(r"^jupyterlab-language-pack-zh-CN\b", reqs, re.M)
    packs, _ = get_language_packs("en")
    if "zh_CN" not in packs:
        reason = "pip install -r tests/requirements-browser.txt installs the language pack"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    assert packs["zh_CN"]["nativeName"].startswith("中文")
