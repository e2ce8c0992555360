"""benchmarks/bench_training.py runs end to end in its quick mode and reports
what the README's table quotes: the two epochs, the matmul bound, the ratios."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "bench_training.py"
ROWS = ("article epoch: per-sample DataLoader (PIL + ToTensor)",
        "kit epoch: index batches of in-memory tensors",
        "matmul bound: 5 GEMMs x 55 steps")  # 3,500 images in batches of 64


def test_quick_mode_prints_the_table_and_writes_its_figures(tmp_path, warm_embedded_cache):
    out = tmp_path / "results" / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's helpers, its cache
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1",
                           "--out", str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr

    table = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert table[0] == "| what | ms | / kit epoch | / matmul bound |"
    assert [line.split(" | ")[0].lstrip("| ") for line in table[2:]] == list(ROWS)
    r = json.loads(out.read_text())
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left
    assert (r["quick"], r["samples"], r["batch_size"], r["machine"]["threads"]) == \
        (True, 3500, 64, 1)
    assert r["steps"] == math.ceil(3500 / 64)
    assert all(r[k] > 0 for k in ("article_epoch_s", "kit_epoch_s", "step_gemms_s"))
    assert math.isclose(r["matmul_bound_s"], r["step_gemms_s"] * r["steps"])
    kit, bound = r["kit_epoch_s"], r["matmul_bound_s"]
    assert table[3].startswith(f"| {ROWS[1]} | {kit * 1e3:.1f} | 1.00x | ")
    assert table[4] == f"| {ROWS[2]} | {bound * 1e3:.1f} | {bound / kit:.2f}x | 1.00x |"
    summary = re.search(r"kit epoch = ([\d.]+) ms, matmul bound = ([\d.]+) ms, ratio ([\d.]+)x",
                        proc.stdout)
    assert summary and summary.groups() == (f"{kit * 1e3:.1f}", f"{bound * 1e3:.1f}",
                                            f"{kit / bound:.2f}")


def test_quick_mode_refuses_zero_threads():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "0"],
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "--threads must be >= 1, got 0" in proc.stderr
