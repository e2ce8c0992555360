"""README's Colab/Binder links and the notebooks' Colab cells follow pyproject's address."""
from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent


def _sync():
    return load_script("sync_links")


def test_links_and_colab_cells_match_the_repository_setting():
    sync = _sync()
    assert sync.main(["--check"]) == 0, "run: python scripts/sync_links.py"
    url, slug = sync.repository()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for nb in sync.notebooks():
        assert f"colab.research.google.com/github/{slug}/blob/main/notebooks/{nb.name}" in readme
        assert f"mybinder.org/v2/gh/{slug}/HEAD?labpath=notebooks%2F{nb.name}" in readme
        student = ROOT / sync.student_path(nb)
        assert student.is_file(), f"{student} is missing: run python scripts/build_student.py"
        assert f"colab.research.google.com/github/{slug}/blob/main/{sync.student_path(nb)}" in readme
        assert f"labpath=notebooks%2Fstudent%2F{nb.name}" in readme
        first_student = "".join(json.loads(student.read_text(encoding="utf-8"))["cells"][0]["source"])
        assert f'repo = "{url}"' in first_student
        first = "".join(json.loads(nb.read_text(encoding="utf-8"))["cells"][0]["source"])
        assert "NBVAL_SKIP" in first and 'if "google.colab" in sys.modules' in first
        assert f'repo = "{url}"' in first


def test_a_changed_address_is_reported(monkeypatch):
    sync = _sync()
    monkeypatch.setattr(sync, "repository",
                        lambda: ("https://github.com/someone/else", "someone/else"))
    assert sync.main(["--check"]) == 1  # --check writes nothing


def test_the_chinese_readme_links_the_chinese_notebooks_and_both_readmes_link_each_other():
    sync = _sync()
    _, slug = sync.repository()
    en = (ROOT / "README.md").read_text(encoding="utf-8")
    zh = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    assert "[简体中文](README.zh-CN.md)" in en.splitlines()[2]  # just under the title
    assert "[English](README.md)" in zh.splitlines()[2]
    for nb in sync.notebooks():
        for path in (f"notebooks/zh-CN/{nb.name}", sync.student_path(nb, "notebooks/zh-CN")):
            assert (ROOT / path).is_file(), f"{path} is missing: run python scripts/build_zh.py"
            assert f"colab.research.google.com/github/{slug}/blob/main/{path}" in zh
            assert f"labpath={path.replace('/', '%2F')})" in zh
            assert f"]({path})" in zh
        assert f"](notebooks/{nb.name})" not in zh  # the Chinese README opens the Chinese notebooks


def _broken_links(path: Path, text: str) -> list[str]:
    """The relative link targets in ``text`` (the Markdown of ``path``) that
    name no file, or no heading of a Markdown file."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        to = path.parent / file if file else path
        if not to.exists() or (anchor and to.suffix == ".md" and anchor not in _anchors(to)):
            broken.append(target)
    return broken


def test_relative_links_of_both_readmes_and_the_glossary_resolve():
    for name in ("README.md", "README.zh-CN.md", "docs/glossary.md"):
        path = ROOT / name
        assert _broken_links(path, path.read_text(encoding="utf-8")) == [], name


def test_links_in_the_notebooks_of_every_edition_resolve():
    notebooks = sorted(p for p in (ROOT / "notebooks").glob("**/*.ipynb")
                       if ".ipynb_checkpoints" not in p.parts)
    assert len(notebooks) == 24  # six, English and Chinese, instructor and student
    for nb in notebooks:
        for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "markdown":
                assert _broken_links(nb, "".join(cell["source"])) == [], (nb, cell["id"])


def _anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file (lower case,
    punctuation other than hyphens dropped, spaces turned into hyphens)."""
    heads = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}
