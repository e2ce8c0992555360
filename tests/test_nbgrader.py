"""The notebooks as nbgrader assignments, end to end.

* The committed student edition (``notebooks/student/``) is exactly what
  ``python scripts/build_student.py`` builds with nbgrader.
* In a scratch course, nbgrader releases every notebook and grades four
  submissions of each: the instructor's solutions score full marks; the
  release handed in untouched scores 0, runs top to bottom and fails only in
  the exercises' test cells, each saying "not done yet"; answers that call
  the kit's (or PyTorch's) reference score 0, each test saying "write this
  one yourself"; a notebook that switches off the check and replaces the
  kit's references scores 0.
* The student edition's test cells hold no function that could be pasted
  in as an answer.
"""
from __future__ import annotations

import ast
import csv
import json
import shutil
from pathlib import Path

import nbformat

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


# Answers that call the reference the test compares with (some through an
# alias bound before the test runs): each would be right, and each must score 0.
COPIES = {
    "ex00_1_params_and_bytes": """def params_and_bytes(model):
    n = kit.metrics.count_parameters(model)["total"]
    return n, 4 * n""",
    "ex00_2_accuracy": """evaluate = kit.training.evaluate

def accuracy(model, X, y, batch_size=100):
    return evaluate(model, X, y, batch_size=batch_size)["accuracy"]""",
    "ex01_1_global_masks": """def global_masks(weights, amount):
    layers = {n: nn.Linear(w.shape[1], w.shape[0], bias=False) for n, w in weights.items()}
    with torch.no_grad():
        for n, w in weights.items():
            layers[n].weight.copy_(w)
    prune.global_unstructured([(m, "weight") for m in layers.values()],
                              pruning_method=prune.L1Unstructured, amount=amount)
    return {n: m.weight_mask for n, m in layers.items()}""",
    "ex01_2_neuron_mask": """import copy as _copy
from torch.nn.utils.prune import ln_structured as _ln

def neuron_mask(layer, amount):
    return _ln(_copy.deepcopy(layer), "weight", amount=amount, n=1, dim=0).weight_mask""",
    "ex01_3_sparsity_report": """def sparsity_report(model):
    return kit.pruning.sparsity(model)""",
    "ex02_1_mask_weight": """def mask_weight_(layer, mask):
    return prune.custom_from_mask(layer, "weight", mask)""",
    "ex02_2_penalty_descent": """def penalty_descent(w, kind, lam, lr, steps):
    layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(w)
    opt = torch.optim.SGD(layer.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        (lam * kit.training.weight_penalty(layer, kind)).backward()
        opt.step()
    return layer.weight.detach()""",
    "ex02_3_rewind": """def rewind(pruned, init):
    return kit.pruning.rewind(pruned, init)""",
    "ex03_1_soft_targets_and_entropy": """def soft_targets_and_entropy(logits, T):
    p = torch.softmax(logits / T, dim=-1)
    return p, -torch.where(p > 0, p * torch.log2(p), torch.zeros_like(p)).sum(dim=-1)""",
    "ex03_2_kd_gradient": """def kd_gradient(student_logits, teacher_logits, labels, T, alpha):
    z = student_logits.detach().clone().requires_grad_(True)
    loss = kit.distillation.distillation_loss(z, teacher_logits, labels, T=T, alpha=alpha)
    return torch.autograd.grad(loss, z)[0]""",
    "ex03_3_recall_and_others": """def recall_and_others(model, X, y, cls, shift):
    shifted = kit.distillation.shift_bias(model, cls, shift)
    others = y != cls
    return (kit.distillation.class_recall(shifted, X, y, cls),
            kit.training.evaluate(shifted, X[others], y[others])["accuracy"])""",
    "ex04_1_int8_per_column": """def int8_per_column(w):
    layer = nn.Linear(w.shape[0], w.shape[1], bias=False)
    layer.weight = nn.Parameter(w.T.clone())
    w_back = kit.quantization.Int8Linear(layer).weight.T
    return w_back, (w - w_back).abs().amax(dim=0)""",
    "ex04_2_csr_bytes": """def csr_bytes(w):
    return kit.metrics.csr_bytes(w)""",
    "ex04_3_pareto_front": """def pareto_front(rows, x):
    fig = kit.plots.pareto(rows, x=x)
    line = next(l for l in fig.axes[0].get_lines() if l.get_label() == "Pareto front")
    return [(c, a / 100) for c, a in zip(line.get_xdata().tolist(), line.get_ydata().tolist())]""",
}

# A notebook that switches the check off and makes the kit's references agree
# with answers that return 0 (the trial that once scored 4/4 on notebook 00).
SABOTAGE = """import helpers
helpers.exercises.same = lambda *a, **k: None
kit.exercises.same = lambda *a, **k: None
kit.metrics.count_parameters = lambda model: {"total": 0, "nonzero": 0}
kit.training.evaluate = lambda *a, **k: {"accuracy": 0, "loss": 0}
"""


def solution_cells(nb) -> list:
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]


def copycat(release: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(release, as_version=4)
    for cell in solution_cells(nb):
        cell.source = COPIES[cell.metadata.nbgrader.grade_id]
    return nb


def saboteur(release: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(release, as_version=4)
    for i, cell in enumerate(solution_cells(nb)):
        name = ast.parse(COPIES[cell.metadata.nbgrader.grade_id]).body[-1].name
        cell.source = (SABOTAGE if i == 0 else "") + f"def {name}(*args, **kwargs):\n    return 0"
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A scratch course: every notebook released, handed in four times (the
    instructor's solutions, the release untouched, copies of the references,
    sabotage), autograded and exported, with the course's own model cache."""
    course = tmp_path_factory.mktemp("course")
    names = build_student.make_course(course)
    for name in names:
        build_student.nbgrader(course, "generate_assignment", name, "--force")
    students = ("solved", "stub", "copycat", "saboteur")
    for student in students:
        build_student.nbgrader(course, "db", "student", "add", student)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KIT_CACHE_DIR", str(course / ".kit-cache"))
        for name in names:
            release = course / "release" / name / f"{name}.ipynb"
            for student in students:
                dst = course / "submitted" / student / name
                dst.mkdir(parents=True)
                if student == "solved":
                    shutil.copyfile(course / "source" / name / f"{name}.ipynb", dst / f"{name}.ipynb")
                elif student == "stub" or name in READING_ONLY:
                    shutil.copyfile(release, dst / f"{name}.ipynb")
                else:
                    nb = (copycat if student == "copycat" else saboteur)(release)
                    nbformat.write(nb, dst / f"{name}.ipynb")
                (dst / "timestamp.txt").write_text("2026-12-07 12:00:00 UTC\n")
            build_student.nbgrader(course, "autograde", name, "--force")
    build_student.nbgrader(course, "export")
    with open(course / "grades.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return course, names, rows


def failed_tests(course: Path, student: str, name: str) -> dict[str, str]:
    """{grade_id: error message} of the test cells that failed in a graded notebook."""
    nb = json.loads((course / "autograded" / student / name / f"{name}.ipynb").read_text())
    return {c["metadata"]["nbgrader"]["grade_id"]: o["evalue"]
            for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade")
            for o in c.get("outputs", []) if o["output_type"] == "error"}


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


def test_only_the_instructors_solutions_score(graded):
    course, names, rows = graded
    score = {(r["assignment"], r["student_id"]): (float(r["score"]), float(r["max_score"]))
             for r in rows}
    for name in names:
        points = sum(grade_cells(json.loads(
            (course / "source" / name / f"{name}.ipynb").read_text())).values())
        assert score[(name, "solved")] == (points, points), name
        for student in ("stub", "copycat", "saboteur"):
            assert score[(name, student)] == (0.0, points), (name, student)
    assert all(r["timestamp"] for r in rows), "every submission was handed in with its time"


def test_a_copy_of_the_reference_is_told_to_write_it_itself(graded):
    course, names, _ = graded
    for name in set(names) - READING_ONLY:
        errors = failed_tests(course, "copycat", name)
        assert set(errors) == set(grade_cells(json.loads(
            (course / "source" / name / f"{name}.ipynb").read_text()))), name
        for grade_id, message in errors.items():
            assert message.startswith("write this one yourself"), (name, grade_id, message)


def test_replacing_the_check_or_the_references_scores_nothing(graded):
    course, names, _ = graded
    for name in set(names) - READING_ONLY:
        for grade_id, message in failed_tests(course, "saboteur", name).items():
            assert "replaced in this notebook" in message, (name, grade_id, message)


@pytest.mark.parametrize("edition", ["student", "zh-CN/student"])
def test_the_visible_tests_hold_no_answer_to_paste(edition):
    """A visible test cell only calls the grader: it defines no function,
    lambda or class that could be pasted in as an answer."""
    for path in sorted((ROOT / "notebooks" / edition).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if not cell.metadata.get("nbgrader", {}).get("grade"):
                continue
            defined = [type(n).__name__ for n in ast.walk(ast.parse(cell.source))
                       if isinstance(n, (ast.FunctionDef, ast.Lambda, ast.ClassDef))]
            assert defined == [], (path.name, cell.metadata.nbgrader.grade_id, defined)
            assert "helpers.exercises" in cell.source and ".check(" in cell.source, \
                (path.name, cell.metadata.nbgrader.grade_id)


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
    monkeypatch.setattr(build_student, "notebooks", lambda source=None: chinese)
    built = build_student.build()
    for name, blob in built.items():
        committed = ROOT / "notebooks" / "zh-CN" / "student" / name
        assert json.loads(blob) == json.loads(committed.read_bytes()), name
