"""Keep every place that names the repository's address in step with one setting.

The address is ``[project.urls] Repository`` in ``pyproject.toml``. From it this
script writes the README's table of "Open in Colab" / "Launch Binder" links for
both editions, the instructor's (``notebooks/``) and the students'
(``notebooks/student/``), between the ``<!-- links:start -->`` and
``<!-- links:end -->`` markers; the same table for the Chinese notebooks
(``notebooks/zh-CN/``) in README.zh-CN.md; and the ``repo = "..."`` line of
each instructor notebook's Colab cell (the student and Chinese editions copy
the cell: ``scripts/build_student.py``, ``scripts/build_zh.py``).

    python scripts/sync_links.py           # rewrite what is out of date
    python scripts/sync_links.py --check   # exit 1 if anything is out of date
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- links:start -->", "<!-- links:end -->"
REPO_LINE = re.compile(r'(    repo = ")[^"]*(")')


def repository() -> tuple[str, str]:
    """Return (url, "owner/name") from pyproject.toml."""
    found = re.search(r'^Repository\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(),
                      re.M)
    if not found:
        raise SystemExit("pyproject.toml must set [project.urls] Repository")
    url = found.group(1)
    m = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)/?", url)
    if not m:
        raise SystemExit(f"[project.urls] Repository must be a GitHub address, got {url!r}")
    return url, m.group(1)


def notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


# Per README: the folder of its notebooks, and the words of its links table.
EDITIONS = {
    "README.md": {
        "folder": "notebooks", "student": "student", "colab": "Open in Colab",
        "binder": "Launch Binder", "open": " (", "close": ")",
        "head": "| notebook | instructor edition (solutions) | student edition (exercises to do) |"},
    "README.zh-CN.md": {
        "folder": "notebooks/zh-CN", "student": "学生版", "colab": "在 Colab 中打开",
        "binder": "启动 Binder", "open": "（", "close": "）",
        "head": "| 笔记本 | 教师版（含答案） | 学生版（待完成的练习） |"},
}


def student_path(nb: Path, folder: str = "notebooks") -> str:
    """Where the student edition of the instructor notebook ``nb`` lives
    (``folder``: ``notebooks`` or the Chinese edition's ``notebooks/zh-CN``)."""
    return f"{folder}/student/{nb.name}"


def open_links(slug: str, path: str, readme: str = "README.md") -> str:
    words = EDITIONS[readme]
    colab = f"https://colab.research.google.com/github/{slug}/blob/main/{path}"
    binder = f"https://mybinder.org/v2/gh/{slug}/HEAD?labpath={path.replace('/', '%2F')}"
    return f"[{words['colab']}]({colab}) · [{words['binder']}]({binder})"


def links_block(slug: str, readme: str = "README.md") -> str:
    words = EDITIONS[readme]
    rows = [words["head"], "| --- | --- | --- |"]
    for nb in notebooks():
        path, student = f"{words['folder']}/{nb.name}", student_path(nb, words["folder"])
        rows.append(f"| [{nb.stem}]({path}){words['open']}[{words['student']}]({student})"
                    f"{words['close']} | "
                    f"{open_links(slug, path, readme)} | {open_links(slug, student, readme)} |")
    return "\n".join([START, *rows, END])


def synced_readme(text: str, slug: str, readme: str = "README.md") -> str:
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{readme} must contain the markers {START} and {END}")
    return pattern.sub(lambda _: links_block(slug, readme), text)


def synced_notebook(text: str, url: str) -> str:
    nb = json.loads(text)
    cell = nb["cells"][0]
    source = "".join(cell["source"])
    if "google.colab" not in source:
        raise SystemExit("the first cell of each notebook must be the Colab cell")
    new = REPO_LINE.sub(lambda m: f"{m.group(1)}{url}{m.group(2)}", source)
    if new == source:
        return text
    cell["source"] = new.splitlines(keepends=True)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report, exit 1 if stale")
    args = parser.parse_args(argv)
    url, slug = repository()
    stale = []
    targets = [(ROOT / readme, lambda t, r=readme: synced_readme(t, slug, r)) for readme in EDITIONS]
    targets += [(nb, lambda t: synced_notebook(t, url)) for nb in notebooks()]
    for path, sync in targets:
        old = path.read_text(encoding="utf-8")
        new = sync(old)
        if new != old:
            stale.append(path.relative_to(ROOT).as_posix())
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if stale:
        print(("out of date: " if args.check else "updated: ") + ", ".join(stale))
    return 1 if (stale and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
