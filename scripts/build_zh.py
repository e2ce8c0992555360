"""Build the Simplified Chinese edition (``notebooks/zh-CN/``) from the English one.

The English notebooks are the one source of truth. The Chinese text lives in a
catalogue, one file per notebook in ``translations/zh-CN/``: each entry starts
with a marker line that names a markdown cell by its id and by a hash of the
English source it was translated from,

    <!-- cell 17648a5f en:0123456789ab -->
    # 00 · 背景：为什么要让网络变小？
    ...

and the Chinese text follows, up to the next marker. Code spans, formulas and
link targets must appear in the translation as they are in the English. The
build copies each
English notebook whole (code cells, outputs, figures, metadata) and replaces
only the source of its markdown cells by their translations, so the two
editions cannot disagree on a line of code or a number. The student edition
(``notebooks/zh-CN/student/``) is built the same way from
``notebooks/student/``: nbgrader never changes a markdown cell, so the same
catalogue serves both.

When an English markdown cell changes, its hash no longer matches and the
build refuses, naming the notebook and the cell, until the translation is
updated and its marker carries the new hash (the message gives it).

The bilingual glossary has one source too, ``docs/glossary.md``: the build
writes its table into the glossary cell of the English appendix A (English
definitions) and into that cell's catalogue entry (Chinese definitions).

    python scripts/build_zh.py            # write notebooks/zh-CN/ (and student/)
    python scripts/build_zh.py --check    # exit 1 if stale, missing or out of date
    python scripts/build_zh.py --stub     # append entries for untranslated cells
                                          # (English text as a placeholder)
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
LANG = "zh-CN"
MARKER = re.compile(r"^<!-- cell (?P<id>[A-Za-z0-9_-]+) en:(?P<hash>[0-9a-f]{12}) -->$", re.M)
CJK = re.compile(r"[\u4e00-\u9fff]")
# What a translation must carry over unchanged: code spans, math, link targets.
CODE = re.compile(r"`(?:[^`\n]|\n(?!\n))+`")  # a code span may wrap too
MATH = re.compile(r"\$\$.+?\$\$|\$(?:[^$\n]|\n(?!\n))+\$", re.S)  # inline math may wrap
LINK = re.compile(r"\]\(([^)\s]+)\)")


def source_hash(text: str) -> str:
    """The first 12 hex digits of the SHA-256 of an English cell's source."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def lost_markup(english: str, chinese: str) -> list[str]:
    """The code spans, formulas and link targets of ``english`` that
    ``chinese`` does not contain (whitespace inside a formula may differ)."""
    def squash(t: str) -> str:
        return re.sub(r"\s+", " ", t)

    zh = squash(chinese)
    lost = [m for m in CODE.findall(english) + MATH.findall(english) if squash(m) not in zh]
    lost += [f"]({t})" for t in LINK.findall(english) if f"]({t})" not in zh]
    return lost


@dataclass(frozen=True)
class Entry:
    cell_id: str
    en_hash: str
    text: str


def marker(cell_id: str, en_hash: str) -> str:
    return f"<!-- cell {cell_id} en:{en_hash} -->"


def read_catalogue(path: Path) -> dict[str, Entry]:
    """The entries of one catalogue file, by cell id (empty if it does not exist)."""
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    found = list(MARKER.finditer(text))
    entries: dict[str, Entry] = {}
    for m, nxt in zip(found, found[1:] + [None]):
        body = text[m.end():nxt.start() if nxt else len(text)].strip("\n")
        if m["id"] in entries:
            raise ValueError(f"{path.name}: cell {m['id']} has two entries")
        entries[m["id"]] = Entry(m["id"], m["hash"], body)
    return entries


GLOSSARY_CELL = ("A_article_errata", "a2df06ee")  # (notebook, cell id) that holds the table


@dataclass(frozen=True)
class Term:
    zh: str
    en: str
    definition_en: str
    definition_zh: str
    notebook: str
    in_article: bool


def read_glossary(path: Path) -> list[Term]:
    """The rows of the table in ``docs/glossary.md``
    (| 中文 | English | definition | 释义 | notebook |; a trailing \\* marks
    a term of the source article)."""
    terms = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cols) != 5 or cols[0] in ("中文", "---"):
            continue
        zh = cols[0].removesuffix("\\*").strip()
        terms.append(Term(zh, cols[1], cols[2], cols[3], cols[4], zh != cols[0]))
    return terms


def glossary_cells(terms: list[Term]) -> tuple[str, str]:
    """The glossary cell of appendix A: (English source, Chinese translation)."""
    def row(t: Term, definition: str) -> str:
        mark = " \\*" if t.in_article else ""
        return f"| {t.zh}{mark} | {t.en} | {definition} | {t.notebook} |"

    en = ["## Glossary: the article's terms and the kit's", "",
          f"{len(terms)} terms in Simplified Chinese and English, what each means, and the",
          "notebook that teaches it. Terms marked \\* are the source article's own; the",
          "rest are the kit's. `docs/glossary.md` has the same table with the",
          "definitions in both languages.", "",
          "| 中文 | English | what it means | notebook |", "| --- | --- | --- | --- |"]
    zh = ["## 术语表：原文的术语与本套件的术语", "",
          f"{len(terms)} 个术语的中英文对照、释义，以及讲解它的笔记本。标 \\* 的是原文"
          "自己使用的术语，其余是本套件的术语。`docs/glossary.md` 中有同一张表，"
          "附中英文两种释义。", "",  # one line: a line break between Chinese characters shows
          "| 中文 | English | 释义 | 笔记本 |", "| --- | --- | --- | --- |"]
    en += [row(t, t.definition_en) for t in terms]
    zh += [row(t, t.definition_zh) for t in terms]
    return "\n".join(en), "\n".join(zh)


@dataclass(frozen=True)
class Layout:
    """Where the editions and the catalogue live (a test builds in a scratch copy)."""
    root: Path

    @property
    def english(self) -> Path:
        return self.root / "notebooks"

    @property
    def chinese(self) -> Path:
        return self.root / "notebooks" / LANG

    @property
    def catalogue(self) -> Path:
        return self.root / "translations" / LANG

    def notebooks(self) -> list[Path]:
        """The English instructor notebooks, in order."""
        return sorted(self.english.glob("*.ipynb"))

    def catalogue_of(self, nb: Path) -> Path:
        return self.catalogue / f"{nb.stem}.md"

    @property
    def glossary(self) -> Path:
        return self.root / "docs" / "glossary.md"

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` through a temporary file and a rename: a reader never
    sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """``nb`` as ``nbformat.write`` saves it."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def set_entry(path: Path, cell_id: str, en_hash: str, text: str) -> None:
    """Put (replace or append) the entry for ``cell_id`` in the catalogue at ``path``."""
    old = path.read_text(encoding="utf-8")
    found = list(MARKER.finditer(old))
    block = f"{marker(cell_id, en_hash)}\n{text.strip(chr(10))}\n"
    for m, nxt in zip(found, found[1:] + [None]):
        if m["id"] == cell_id:
            end = nxt.start() if nxt else len(old)
            new = old[:m.start()] + block + ("\n" if nxt else "") + old[end:]
            break
    else:
        new = old.rstrip("\n") + "\n\n" + block
    write_atomically(path, new)


def sync_glossary(layout: Layout, write: bool) -> list[str]:
    """Bring appendix A's glossary cell (English) and its catalogue entry
    (Chinese) in line with ``docs/glossary.md``; return what was (or, without
    ``write``, would be) changed."""
    stem, cell_id = GLOSSARY_CELL
    nb_path = layout.english / f"{stem}.ipynb"
    en, zh = glossary_cells(read_glossary(layout.glossary))
    nb = nbformat.read(nb_path, as_version=4)
    cell = next(c for c in nb.cells if c.id == cell_id)
    changed = []
    if cell.source != en:
        changed.append(f"{layout.rel(nb_path)} (glossary cell {cell_id})")
        if write:
            cell.source = en
            write_atomically(nb_path, notebook_text(nb))
    cat = layout.catalogue_of(nb_path)
    entry = read_catalogue(cat).get(cell_id)
    if entry is None or entry.en_hash != source_hash(en) or entry.text != zh:
        changed.append(f"{layout.rel(cat)} (glossary cell {cell_id})")
        if write:
            set_entry(cat, cell_id, source_hash(en), zh)
    return changed


def problems(layout: Layout, nb_path: Path) -> list[str]:
    """What keeps the translation of one English notebook from being built:
    markdown cells with no entry, with a stale hash or with no Chinese text,
    and entries for cells the notebook no longer has. Empty when all is well."""
    nb = nbformat.read(nb_path, as_version=4)
    cat_path = layout.catalogue_of(nb_path)
    entries = read_catalogue(cat_path)
    where, cat = layout.rel(nb_path), layout.rel(cat_path)
    out = []
    markdown_ids = set()
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        markdown_ids.add(cell.id)
        want = source_hash(cell.source)
        entry = entries.get(cell.id)
        if entry is None:
            out.append(f"{where}, cell {cell.id}: no translation in {cat} "
                       f"(add one under {marker(cell.id, want)}, or run --stub)")
        elif entry.en_hash != want:
            out.append(f"{where}, cell {cell.id}: the English text changed since it was "
                       f"translated (catalogue en:{entry.en_hash}, English now en:{want}); "
                       f"update the translation in {cat} and its marker to "
                       f"{marker(cell.id, want)}")
        elif entry.text.strip() == cell.source.strip():
            out.append(f"{where}, cell {cell.id}: the entry in {cat} is still the English text")
        elif not CJK.search(entry.text):
            out.append(f"{where}, cell {cell.id}: the entry in {cat} has no Chinese text")
        elif lost := lost_markup(cell.source, entry.text):
            out.append(f"{where}, cell {cell.id}: the translation in {cat} lacks "
                       + ", ".join(lost))
    for cell_id in entries:
        if cell_id not in markdown_ids:
            out.append(f"{where}: {cat} has an entry for cell {cell_id}, "
                       "which is not a markdown cell of the notebook (remove it)")
    return out


def translated(nb: nbformat.NotebookNode, entries: dict[str, Entry]) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose markdown cells hold their translations; every
    other cell, output and piece of metadata is copied unchanged."""
    out = copy.deepcopy(nb)
    for cell in out.cells:
        if cell.cell_type == "markdown":
            cell.source = entries[cell.id].text
    return out


def pairs(layout: Layout) -> list[tuple[Path, Path, Path]]:
    """(English notebook, its catalogue, Chinese notebook) for both editions."""
    out = []
    for nb in layout.notebooks():
        cat = layout.catalogue_of(nb)
        out.append((nb, cat, layout.chinese / nb.name))
        student = layout.english / "student" / nb.name
        if student.exists():
            out.append((student, cat, layout.chinese / "student" / nb.name))
    return out


def build(layout: Layout) -> dict[Path, str]:
    """{Chinese notebook path: its text}; raise ValueError listing every
    problem if any translation is missing or stale."""
    bad = [p for nb in layout.notebooks() for p in problems(layout, nb)]
    if bad:
        raise ValueError("the Chinese edition cannot be built:\n  " + "\n  ".join(bad))
    return {zh: notebook_text(translated(nbformat.read(en, as_version=4), read_catalogue(cat)))
            for en, cat, zh in pairs(layout)}


def existing(layout: Layout) -> list[Path]:
    """The Chinese notebooks on disk, both editions."""
    return [p for d in (layout.chinese, layout.chinese / "student") for p in d.glob("*.ipynb")]


def stale(layout: Layout, built: dict[Path, str]) -> list[str]:
    """The Chinese notebooks that differ from ``built`` (or are missing, or extra)."""
    have = {p: p.read_text(encoding="utf-8") for p in existing(layout)}
    return sorted(layout.rel(p) for p in set(have) | set(built) if have.get(p) != built.get(p))


def write(layout: Layout, built: dict[Path, str]) -> None:
    for p in existing(layout):
        if p not in built:
            p.unlink()
    for path, text in built.items():
        write_atomically(path, text)


def stub(layout: Layout) -> list[str]:
    """Append an entry, with the English text as a placeholder, for every
    markdown cell that has none; return the cells stubbed."""
    done = []
    for nb_path in layout.notebooks():
        nb = nbformat.read(nb_path, as_version=4)
        cat = layout.catalogue_of(nb_path)
        entries = read_catalogue(cat)
        new = [cell for cell in nb.cells if cell.cell_type == "markdown" and cell.id not in entries]
        if new and not cat.exists():
            write_atomically(cat, (
                f"<!-- Translation catalogue of notebooks/{nb_path.name} (Simplified Chinese).\n"
                "Each entry: a marker with the cell id and the hash of the English source,\n"
                "then the Chinese text. scripts/build_zh.py builds the notebook from it. -->\n"))
        for cell in new:
            set_entry(cat, cell.id, source_hash(cell.source), cell.source)
            done.append(f"{layout.rel(nb_path)}, cell {cell.id}")
    return done


def main(argv: list[str] | None = None, layout: Layout | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a translation is stale or notebooks/zh-CN/ is out of date")
    parser.add_argument("--stub", action="store_true",
                        help="append placeholder entries for markdown cells with none")
    args = parser.parse_args(argv)
    layout = layout or Layout(ROOT)
    if args.stub:
        for line in stub(layout):
            print("stubbed:", line)
        return 0
    glossary = sync_glossary(layout, write=not args.check)
    if glossary and args.check:
        print("glossary out of date: " + ", ".join(glossary)
              + "; run python scripts/build_zh.py")
    try:
        built = build(layout)
    except ValueError as exc:
        print(exc)
        return 1
    if args.check:
        out = stale(layout, built)
        if out:
            print("out of date: " + ", ".join(out) + "; run python scripts/build_zh.py")
        if out or glossary:
            return 1
        print(f"notebooks/{LANG}/ is up to date")
        return 0
    write(layout, built)
    print(f"wrote {len(built)} notebooks to notebooks/{LANG}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
