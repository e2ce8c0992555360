"""Build the student edition of the notebooks with nbgrader.

The notebooks in ``notebooks/`` are the instructor edition: valid nbgrader
source notebooks whose exercises hold their solutions between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` and whose test cells hold
hidden tests between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``.
This script copies them into a scratch nbgrader course (one assignment per
notebook, configured by ``course/nbgrader_config.py``), runs
``nbgrader generate_assignment`` on each, and writes the released notebooks
(solutions replaced by a stub that raises "not done yet", hidden tests and
outputs removed, test cells locked) to ``notebooks/student/``.

    python scripts/build_student.py                 # write notebooks/student/
    python scripts/build_student.py --check         # exit 1 if it is out of date
    python scripts/build_student.py --course DIR    # lay out a course in DIR (and only there)
    python scripts/build_student.py --course DIR --source PRIVATE
                                                    # the course from a private copy of notebooks/

``--course`` leaves ``notebooks/student/`` alone: the course's ``release/``
holds what students get, its ``source/`` the solutions and hidden tests.
With ``--source``, the instructor notebooks come from ``PRIVATE`` (a copy of
``notebooks/`` whose hidden tests and solutions an instructor who grades for
credit has changed, kept out of any public repository).

nbgrader runs ``alembic`` to create its gradebook, so this Python's ``bin/``
is put first on ``PATH`` for it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "course" / "nbgrader_config.py"
STUDENT = ROOT / "notebooks" / "student"


def notebooks(source: Path | None = None) -> list[Path]:
    """The instructor edition (or the one in ``source``), in order."""
    return sorted((source or ROOT / "notebooks").glob("*.ipynb"))


def nbgrader(course: Path, *args: str) -> None:
    """Run ``nbgrader ARGS`` in ``course``; raise with its output if it fails."""
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep
           + os.environ.get("PATH", "")}
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def source_notebook(path: Path) -> nbformat.NotebookNode:
    """The instructor notebook at ``path`` without what only its last run wrote
    into the metadata (execution timestamps, the widgets' saved state): the
    student edition then changes only when the notebook's cells do."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    return nb


def make_course(course: Path, source: Path | None = None) -> list[str]:
    """Lay out an nbgrader course in ``course``: the config, and each notebook
    (of ``notebooks/``, or of ``source``) as the source of an assignment named
    after it. Return the assignment names."""
    found = notebooks(source)
    if not found:
        raise ValueError(f"source must be a folder of notebooks, {source} holds none")
    course.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CONFIG, course / "nbgrader_config.py")
    names = []
    for nb in found:
        src = course / "source" / nb.stem
        src.mkdir(parents=True, exist_ok=True)
        nbformat.write(source_notebook(nb), src / nb.name)
        names.append(nb.stem)
    return names


def release(course: Path, source: Path | None = None) -> dict[str, bytes]:
    """Generate every assignment of ``course``; return {file name: released notebook}."""
    out = {}
    for name in make_course(course, source):
        nbgrader(course, "generate_assignment", name, "--force")
        out[f"{name}.ipynb"] = (course / "release" / name / f"{name}.ipynb").read_bytes()
    return out


def build() -> dict[str, bytes]:
    """The student edition as ``generate_assignment`` writes it, built in a scratch course."""
    with tempfile.TemporaryDirectory(prefix="kit-course-") as tmp:
        return release(Path(tmp))


def stale(built: dict[str, bytes]) -> list[str]:
    """The student notebooks that differ from ``built`` (or are missing, or extra)."""
    have = {p.name: p.read_bytes() for p in STUDENT.glob("*.ipynb")} if STUDENT.exists() else {}
    return sorted(n for n in set(have) | set(built) if have.get(n) != built.get(n))


def write(built: dict[str, bytes]) -> None:
    STUDENT.mkdir(parents=True, exist_ok=True)
    for p in STUDENT.glob("*.ipynb"):
        if p.name not in built:
            p.unlink()
    for name, blob in built.items():
        tmp = STUDENT / f".{name}.tmp"
        tmp.write_bytes(blob)
        os.replace(tmp, STUDENT / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if notebooks/student/ differs from a fresh build")
    parser.add_argument("--course", type=Path,
                        help="lay out an nbgrader course here (config, source/, release/); "
                             "notebooks/student/ is left alone")
    parser.add_argument("--source", type=Path,
                        help="with --course: take the instructor notebooks from this folder "
                             "(a private copy of notebooks/) instead of notebooks/")
    args = parser.parse_args(argv)
    if args.source and not args.course:
        parser.error("--source needs --course (notebooks/student/ is built from notebooks/ only)")
    if args.course:
        if args.check:
            parser.error("--check compares notebooks/student/ with a fresh build; "
                         "leave out --course")
        built = release(args.course.resolve(), args.source.resolve() if args.source else None)
        print(f"laid out {len(built)} assignments in {args.course}: source/ (solutions and "
              "hidden tests: never hand it out), release/ (what students get)")
        return 0
    built = build()
    if args.check:
        bad = stale(built)
        if bad:
            print("out of date: " + ", ".join(f"notebooks/student/{n}" for n in bad)
                  + "; run python scripts/build_student.py")
            return 1
        print("notebooks/student/ is up to date")
        return 0
    write(built)
    print(f"wrote {len(built)} notebooks to notebooks/student/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
