"""The notebooks as nbgrader assignments, end to end.

* The committed student edition (``notebooks/student/``) is exactly what
  ``python scripts/build_student.py`` builds with nbgrader.
* In a scratch course, nbgrader releases every notebook; a student who hands
  in the release untouched scores 0 on every exercise, and the instructor's
  solutions score full marks. The untouched release runs top to bottom: the
  only cells that fail are the exercises' test cells, and each says "not done
  yet".
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
build_student = load_script("build_student")

pytest.importorskip("nbgrader", reason="pip install -r requirements.txt installs nbgrader")


def grade_cells(nb: dict) -> dict[str, int]:
    """{grade_id: points} of a notebook's autograded test cells."""
    return {c["metadata"]["nbgrader"]["grade_id"]: c["metadata"]["nbgrader"]["points"]
            for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade")}


def test_the_student_edition_is_what_nbgrader_builds():
    built = build_student.build()
    assert sorted(built) == [p.name for p in build_student.notebooks()]
    stale = build_student.stale(built)
    assert stale == [], (f"notebooks/student/ is out of date for {stale}: "
                         "run python scripts/build_student.py and commit the result")


def test_the_student_edition_has_no_solutions_and_no_hidden_tests():
    for path in sorted(build_student.STUDENT.glob("*.ipynb")):
        text = path.read_text()
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS"):
            assert marker not in text, f"{path.name} still holds {marker!r}"
        nb = json.loads(text)
        assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A scratch course: every notebook released, handed in twice (untouched,
    and with the instructor's solutions), autograded and exported."""
    course = tmp_path_factory.mktemp("course")
    names = build_student.make_course(course)
    for name in names:
        build_student.nbgrader(course, "generate_assignment", name, "--force")
    for student in ("solved", "stub"):
        build_student.nbgrader(course, "db", "student", "add", student)
    for name in names:
        for student, src in (("solved", course / "source"), ("stub", course / "release")):
            dst = course / "submitted" / student / name
            dst.mkdir(parents=True)
            shutil.copyfile(src / name / f"{name}.ipynb", dst / f"{name}.ipynb")
        build_student.nbgrader(course, "autograde", name, "--force")
    build_student.nbgrader(course, "export")
    with open(course / "grades.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return course, names, rows


# The appendix is read, not graded; it is released too, so that a course holds
# every notebook, and it must run in the grader without an error.
READING_ONLY = {"A_article_errata"}


def test_every_chapter_has_exercises_worth_points(graded):
    course, names, _ = graded
    assert READING_ONLY <= set(names)
    for name in names:
        cells = grade_cells(json.loads((course / "source" / name / f"{name}.ipynb").read_text()))
        if name in READING_ONLY:
            assert cells == {}, (name, cells)
        else:
            assert len(cells) >= 2 and all(p > 0 for p in cells.values()), (name, cells)


def test_untouched_release_scores_zero_and_solutions_full_marks(graded):
    course, names, rows = graded
    score = {(r["assignment"], r["student_id"]): (float(r["score"]), float(r["max_score"]))
             for r in rows}
    for name in names:
        points = sum(grade_cells(json.loads(
            (course / "source" / name / f"{name}.ipynb").read_text())).values())
        assert score[(name, "stub")] == (0.0, points), name
        assert score[(name, "solved")] == (points, points), name


def test_the_untouched_release_fails_only_in_the_test_cells_saying_not_done_yet(graded):
    course, names, _ = graded
    for name in names:
        nb = json.loads((course / "autograded" / "stub" / name / f"{name}.ipynb").read_text())
        failed = {}
        for cell in nb["cells"]:
            errors = [o for o in cell.get("outputs", []) if o["output_type"] == "error"]
            if errors:
                failed[cell["metadata"].get("nbgrader", {}).get("grade_id", cell.get("id"))] = \
                    errors[0]["evalue"]
        assert set(failed) == set(grade_cells(nb)), (name, failed)
        for grade_id, message in failed.items():
            assert message.startswith("not done yet"), (name, grade_id, message)


def test_nbgrader_releases_the_chinese_notebooks_as_the_translation_build_does(monkeypatch):
    """scripts/build_zh.py makes the Chinese student edition by translating the
    English one, on the ground that nbgrader never changes a markdown cell;
    releasing the Chinese instructor notebooks with nbgrader gives the same files."""
    chinese = sorted((ROOT / "notebooks" / "zh-CN").glob("*.ipynb"))
    assert len(chinese) == 6, "run: python scripts/build_zh.py"
    monkeypatch.setattr(build_student, "notebooks", lambda: chinese)
    built = build_student.build()
    for name, blob in built.items():
        committed = ROOT / "notebooks" / "zh-CN" / "student" / name
        assert json.loads(blob) == json.loads(committed.read_bytes()), name
