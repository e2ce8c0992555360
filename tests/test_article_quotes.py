"""Every passage the kit quotes from the source article is the article's text,
character for character.

A quote of the article is text in 「」 in the Chinese catalogues
(``translations/zh-CN/*.md``), and Chinese text in "..." in the markdown of
the English notebooks. Each must occur in one line of
``tests/article_quotes.txt``: the passages the kit quotes, copied verbatim from
the article, one per line (the article itself is not part of the kit). A
second test checks each of those lines against the article, and runs only
where the article's copy sits next to the repository (``../shared/seed``).

Nothing is normalised except line breaks: a quote that wraps in the source is
joined (with no space between two Chinese characters, else with one space).
An ellipsis (…) inside a quote marks an omission: the parts around it must
occur, in order, in the same line.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
QUOTES = ROOT / "tests" / "article_quotes.txt"
SEED = Path(__file__).resolve().parents[2] / "shared" / "seed"

CJK = load_script("build_zh").CJK
WIDE = r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]"
ZH_QUOTE = re.compile(r"「([^「」]*)」")
EN_QUOTE = re.compile(r'"([^"]*)"')
CODE = re.compile(r"```.*?```|`[^`]*`", re.S)  # quotes inside code are code


def _join_lines(text: str) -> str:
    """``text`` with each line break (and the indentation around it) removed:
    nothing between two wide characters, one space otherwise."""
    def glue(m: re.Match) -> str:
        a, b = m.group(1), m.group(2)
        return a + ("" if re.match(WIDE, a) and re.match(WIDE, b) else " ") + b
    return re.sub(r"(\S)[ \t]*\n[ \t]*(\S)", glue, text)


def article_lines() -> list[str]:
    return [line for line in QUOTES.read_text(encoding="utf-8").splitlines() if line]


def chinese_quotes() -> list[tuple[str, str]]:
    """(where, quote) for every 「...」 in the Chinese catalogues."""
    found = []
    for path in sorted((ROOT / "translations" / "zh-CN").glob("*.md")):
        for q in ZH_QUOTE.findall(path.read_text(encoding="utf-8")):
            found.append((path.relative_to(ROOT).as_posix(), _join_lines(q)))
    return found


def english_quotes() -> list[tuple[str, str]]:
    """(where, quote) for every "..." holding Chinese text in the markdown of
    the English notebooks."""
    found = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(path, 4).cells:
            if cell.cell_type != "markdown":
                continue
            for q in EN_QUOTE.findall(CODE.sub("", cell.source)):
                if CJK.search(q):
                    found.append((f"{path.relative_to(ROOT).as_posix()}, cell {cell.id}",
                                  _join_lines(q)))
    return found


def quoted_in(quote: str, line: str) -> bool:
    """Whether ``quote`` occurs in ``line``; the parts of a quote with an
    ellipsis must occur in order."""
    start = 0
    for part in (p for p in re.split(r"…+", quote) if p):
        i = line.find(part, start)
        if i < 0:
            return False
        start = i + len(part)
    return True


def unquoted(quotes: list[tuple[str, str]], lines: list[str]) -> list[str]:
    return [f"{where}: {q!r}" for where, q in quotes
            if not any(quoted_in(q, line) for line in lines)]


def test_the_kit_quotes_the_article():
    assert len(chinese_quotes()) >= 20 and len(english_quotes()) >= 10


def test_every_chinese_quote_is_the_articles_text():
    assert unquoted(chinese_quotes(), article_lines()) == [], \
        "not the article's words (copy the passage from the article into tests/article_quotes.txt)"


def test_every_english_quote_of_the_chinese_is_the_articles_text():
    assert unquoted(english_quotes(), article_lines()) == [], \
        "not the article's words (copy the passage from the article into tests/article_quotes.txt)"


def test_every_line_of_the_quote_file_is_quoted_somewhere():
    quotes = [q for _, q in chinese_quotes() + english_quotes()]
    unused = [line for line in article_lines()
              if not any(quoted_in(q, line) for q in quotes)]
    assert unused == [], "no longer quoted: remove these lines from tests/article_quotes.txt"


def test_the_quote_check_sees_a_changed_character():
    lines = ["硬剪枝会永久地删除被剪掉的神经元和连接,"
             "而软剪枝则会将被剪掉的神经元和连接设置为零"]
    assert unquoted([("x", "连接,而软剪枝")], lines) == []
    assert unquoted([("x", "连接, 而软剪枝")], lines) == ["x: '连接, 而软剪枝'"]
    assert unquoted([("x", "连接，而软剪枝")], lines) != []  # a full-width comma differs
    assert unquoted([("x", "…被剪掉的神经元…设置为零")], lines) == []
    assert unquoted([("x", "设置为零…被剪掉的")], lines) != []  # parts out of order
    assert _join_lines("删除一部分\n  神经元") == "删除一部分神经元"
    assert _join_lines("传统\ntransferred learning") == "传统 transferred learning"


def _seed_text() -> str:
    files = sorted(p for p in SEED.glob("*") if p.is_file()) if SEED.is_dir() else []
    return "\n".join(p.read_text(encoding="utf-8").replace("\r\n", "\n") for p in files)


@pytest.mark.skipif(not _seed_text(),
                    reason="the article's copy (../shared/seed) is not here")
def test_every_line_of_the_quote_file_is_in_the_article():
    text = _seed_text()
    assert [line for line in article_lines() if line not in text] == []
