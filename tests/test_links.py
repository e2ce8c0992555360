"""README's Colab/Binder links and the notebooks' Colab cells follow pyproject's address."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _sync():
    spec = importlib.util.spec_from_file_location("sync_links", ROOT / "scripts" / "sync_links.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
