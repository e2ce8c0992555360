"""Keep every place that names the repository's address in step with one setting.

The address is ``[project.urls] Repository`` in ``pyproject.toml``. From it this
script writes the README's table of "Open in Colab" / "Launch Binder" links for
both editions, the instructor's (``notebooks/``) and the students'
(``notebooks/student/``), between the ``<!-- links:start -->`` and
``<!-- links:end -->`` markers, and the ``repo = "..."`` line of each instructor
notebook's Colab cell (the student edition is built from those by
``scripts/build_student.py``, which copies the cell).

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
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def student_path(nb: Path) -> str:
    """Where the student edition of the instructor notebook ``nb`` lives."""
    return f"notebooks/student/{nb.name}"


def open_links(slug: str, path: str) -> str:
    colab = f"https://colab.research.google.com/github/{slug}/blob/main/{path}"
    binder = f"https://mybinder.org/v2/gh/{slug}/HEAD?labpath={path.replace('/', '%2F')}"
    return f"[Open in Colab]({colab}) · [Launch Binder]({binder})"


def links_block(slug: str) -> str:
    rows = ["| notebook | instructor edition (solutions) | student edition (exercises to do) |",
            "| --- | --- | --- |"]
    for nb in notebooks():
        path = f"notebooks/{nb.name}"
        rows.append(f"| [{nb.stem}]({path}) ([student]({student_path(nb)})) | "
                    f"{open_links(slug, path)} | {open_links(slug, student_path(nb))} |")
    return "\n".join([START, *rows, END])


def synced_readme(text: str, slug: str) -> str:
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md must contain the markers {START} and {END}")
    return pattern.sub(lambda _: links_block(slug), text)


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
    targets = [(ROOT / "README.md", lambda t: synced_readme(t, slug))]
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
